//! Log output in AnyCable-Go's shapes: text lines `2024-03-06 10:35:39.297 INF message k=v`
//! and JSON objects `{"time":..,"level":"INFO","msg":..,k:v}` (`time` in RFC 3339), with
//! `nodeid` on every record. Times are UTC.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{Directive, EnvFilter, LevelFilter};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::{LogConfig, LogFormat, LogLevel};

/// Installs the global subscriber. Call once, at start-up.
///
/// The server's own records are shown from the configured level. Dependencies (hyper, h2,
/// tonic, async-nats, rustls, ...) trace their internals at debug level, which is noise for an
/// operator: they are shown from `warn` unless `RUST_LOG` asks for more (its directives are
/// applied on top, e.g. `RUST_LOG=h2=debug`).
pub fn init(config: &LogConfig, node_id: &str) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let (filter, invalid) = filter(config.level, rust_log.as_deref());
    let format = Format {
        json: config.format == LogFormat::Json,
        colors: config.format == LogFormat::Text && std::io::stdout().is_terminal(),
        node_id: node_id.to_string(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .event_format(format)
        .init();
    for directive in invalid {
        tracing::warn!("RUST_LOG: ignoring invalid directive {directive:?}");
    }
}

/// The filter for `level` and the `RUST_LOG` directives, and the directives that could not be
/// parsed.
fn filter(level: LogLevel, rust_log: Option<&str>) -> (EnvFilter, Vec<String>) {
    let own = match level {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    };
    let dependencies = own.min(LevelFilter::WARN);
    let mut filter = EnvFilter::default()
        .add_directive(dependencies.into())
        .add_directive(
            format!("{OWN_TARGET}={own}")
                .parse()
                .expect("a target and a level make a directive"),
        );
    let mut invalid = Vec::new();
    for directive in rust_log.unwrap_or_default().split(',').map(str::trim) {
        if directive.is_empty() {
            continue;
        }
        match directive.parse::<Directive>() {
            Ok(directive) => filter = filter.add_directive(directive),
            Err(_) => invalid.push(directive.to_string()),
        }
    }
    (filter, invalid)
}

/// The target prefix of every record this crate (library and binaries) emits.
const OWN_TARGET: &str = "anycable_rs";

struct Format {
    json: bool,
    colors: bool,
    node_id: String,
}

impl<S, N> FormatEvent<S, N> for Format
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        fields.pairs.push(("nodeid".into(), self.node_id.clone()));
        let level = *event.metadata().level();
        let now = Now::read();
        if self.json {
            let mut object = serde_json::Map::new();
            object.insert("time".into(), now.rfc3339().into());
            object.insert("level".into(), level.as_str().into());
            object.insert("msg".into(), fields.message.into());
            for (key, value) in fields.pairs {
                object.insert(key, value.into());
            }
            return writeln!(writer, "{}", serde_json::Value::Object(object));
        }
        let (short, color) = match level {
            Level::ERROR => ("ERR", "31"),
            Level::WARN => ("WRN", "33"),
            Level::INFO => ("INF", "32"),
            _ => ("DBG", "34"),
        };
        if self.colors {
            write!(
                writer,
                "\x1b[2m{}\x1b[0m \x1b[{color}m{short}\x1b[0m {}",
                now.text(),
                fields.message
            )?;
        } else {
            write!(writer, "{} {short} {}", now.text(), fields.message)?;
        }
        for (key, value) in fields.pairs {
            if value.contains(char::is_whitespace) || value.is_empty() {
                write!(writer, " {key}={value:?}")?;
            } else {
                write!(writer, " {key}={value}")?;
            }
        }
        writeln!(writer)
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.pairs
                .push((field.name().to_string(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.pairs.push((field.name().to_string(), text));
        }
    }
}

/// The wall-clock time of a record, in UTC.
struct Now {
    date: (i64, u32, u32),
    /// Seconds into the day.
    seconds: u64,
    nanos: u32,
}

impl Now {
    fn read() -> Now {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Now::at(since_epoch.as_secs(), since_epoch.subsec_nanos())
    }

    fn at(secs: u64, nanos: u32) -> Now {
        Now {
            date: civil_from_days((secs / 86_400) as i64),
            seconds: secs % 86_400,
            nanos,
        }
    }

    /// `YYYY-MM-DD HH:MM:SS.mmm`, the reference's text format.
    fn text(&self) -> String {
        let (year, month, day) = self.date;
        format!(
            "{year:04}-{month:02}-{day:02} {}.{:03}",
            self.clock(),
            self.nanos / 1_000_000
        )
    }

    /// RFC 3339 as Go writes `time.RFC3339Nano` in JSON logs: up to nine fraction digits,
    /// trailing zeros left out (`2024-03-06T10:35:39.2971Z`).
    fn rfc3339(&self) -> String {
        let (year, month, day) = self.date;
        let mut text = format!("{year:04}-{month:02}-{day:02}T{}", self.clock());
        if self.nanos > 0 {
            let fraction = format!("{:09}", self.nanos);
            text.push('.');
            text.push_str(fraction.trim_end_matches('0'));
        }
        text.push('Z');
        text
    }

    fn clock(&self) -> String {
        format!(
            "{:02}:{:02}:{:02}",
            self.seconds / 3600,
            self.seconds / 60 % 60,
            self.seconds % 60
        )
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
    }

    #[test]
    fn timestamps() {
        // 2024-03-06 10:35:39 UTC
        let at = |nanos| Now::at(1_709_721_339, nanos);
        assert_eq!(at(297_100_000).text(), "2024-03-06 10:35:39.297");
        assert_eq!(at(297_100_000).rfc3339(), "2024-03-06T10:35:39.2971Z");
        assert_eq!(at(0).rfc3339(), "2024-03-06T10:35:39Z");
        assert_eq!(at(5).rfc3339(), "2024-03-06T10:35:39.000000005Z");
    }

    #[test]
    fn dependencies_stay_at_warn_unless_rust_log_asks() {
        let (filter, invalid) = filter(LogLevel::Debug, None);
        let text = filter.to_string();
        assert!(text.contains("anycable_rs=debug"), "{text}");
        assert!(text.contains("warn"), "{text}");
        assert!(invalid.is_empty());
        let (filter, invalid) = filter_with(LogLevel::Error, "h2=debug, h2=loud");
        let text = filter.to_string();
        assert!(text.contains("anycable_rs=error"), "{text}");
        assert!(text.contains("h2=debug"), "{text}");
        assert!(!text.contains("warn"), "{text}");
        assert_eq!(invalid, ["h2=loud"]);
    }

    fn filter_with(level: LogLevel, rust_log: &str) -> (EnvFilter, Vec<String>) {
        filter(level, Some(rust_log))
    }
}
