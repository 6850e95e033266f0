//! Log output in AnyCable-Go's shapes: text lines `2024-03-06 10:35:39.297 INF message k=v`
//! and JSON objects `{"time":..,"level":"INFO","msg":..,k:v}`, with `nodeid` on every record.
//! Times are UTC.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::{LogConfig, LogFormat, LogLevel};

/// Installs the global subscriber. Call once, at start-up.
pub fn init(config: &LogConfig, node_id: &str) {
    let level = match config.level {
        LogLevel::Debug => Level::DEBUG,
        LogLevel::Info => Level::INFO,
        LogLevel::Warn => Level::WARN,
        LogLevel::Error => Level::ERROR,
    };
    let format = Format {
        json: config.format == LogFormat::Json,
        colors: config.format == LogFormat::Text && std::io::stdout().is_terminal(),
        node_id: node_id.to_string(),
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stdout)
        .event_format(format)
        .init();
}

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
        let time = timestamp();
        if self.json {
            let mut object = serde_json::Map::new();
            object.insert("time".into(), time.into());
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
                "\x1b[2m{time}\x1b[0m \x1b[{color}m{short}\x1b[0m {}",
                fields.message
            )?;
        } else {
            write!(writer, "{time} {short} {}", fields.message)?;
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

/// `YYYY-MM-DD HH:MM:SS.mmm` in UTC.
fn timestamp() -> String {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let day_secs = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60,
        since_epoch.subsec_millis()
    )
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
}
