//! The periodic writers: every `--metrics_rotate_interval` seconds the registry is rotated
//! once (counters become deltas since the previous rotation, gauges keep their current value)
//! and the result goes to the log (`--metrics_log`) and/or to StatsD (`--statsd_host`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Counter, Gauge, Metric, Metrics};
use crate::config::MetricsConfig;

/// The rotation interval when `--metrics_rotate_interval` is 0.
const DEFAULT_ROTATE_SECS: u64 = 15;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("unknown --statsd_tags_format {0:?}: expected datadog, influxdb or graphite")]
    TagsFormat(String),
    #[error("invalid --statsd_host {0:?}: expected host:port")]
    StatsdHost(String),
}

/// Starts the rotation task when a writer is configured. Logs what each writer does.
pub fn spawn_writers(
    config: &MetricsConfig,
    metrics: Arc<Metrics>,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<(), SetupError> {
    let secs = match config.rotate_interval_secs {
        0 => DEFAULT_ROTATE_SECS,
        n => n,
    };
    let statsd = match config.statsd.host.as_str() {
        "" => None,
        _ => Some(StatsdSender::from_config(config)?),
    };
    if config.log {
        if config.log_filter.is_empty() {
            tracing::info!(context = "metrics", interval = secs, "log metrics");
        } else {
            let fields = config.log_filter.join(",");
            tracing::info!(context = "metrics", interval = secs, fields, "log metrics");
        }
    }
    if let Some(sender) = &statsd {
        let tags = if config.tags.is_empty() {
            String::new()
        } else {
            let pairs: Vec<String> = config
                .tags
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect();
            format!(
                ", tags=map[{}], style={}",
                pairs.join(" "),
                config.statsd.tags_format
            )
        };
        tracing::info!(
            context = "metrics",
            "Send statsd metrics to {} with every {secs}s (prefix={}{tags})",
            sender.target,
            config.statsd.prefix
        );
    }
    if !config.log && statsd.is_none() {
        return Ok(());
    }
    let log_filter = config.log.then(|| config.log_filter.clone());
    let mut statsd = statsd;
    let shutdown = shutdown.clone();
    tracker.spawn(async move {
        let every = Duration::from_secs(secs);
        let mut tick = interval_at(Instant::now() + every, every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut rotation = Rotation::default();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            let samples = rotation.rotate(&metrics);
            if let Some(filter) = &log_filter {
                log_record(&samples, filter);
            }
            if let Some(sender) = statsd.as_mut() {
                sender.send(&samples).await;
            }
        }
    });
    Ok(())
}

/// Turns cumulative counters into per-interval deltas.
#[derive(Default)]
struct Rotation {
    last: [u64; Counter::ALL.len()],
}

impl Rotation {
    /// Every registered metric: counters as the delta since the previous call (the first
    /// call gives the cumulative value), gauges as they are.
    fn rotate(&mut self, metrics: &Metrics) -> Vec<(Metric, u64)> {
        metrics
            .registered()
            .map(|metric| match metric {
                Metric::Counter(c) => {
                    let now = metrics.get(c);
                    let delta = now.saturating_sub(self.last[c as usize]);
                    self.last[c as usize] = now;
                    (metric, delta)
                }
                Metric::Gauge(g) => (metric, metrics.gauge(g)),
            })
            .collect()
    }
}

/// One INFO record with an empty message, `context=metrics` and one attribute per metric,
/// sorted by name; an empty `filter` keeps every metric.
fn log_record(samples: &[(Metric, u64)], filter: &[String]) {
    use Counter as C;
    use Gauge as G;
    use Metric::{Counter as Mc, Gauge as Mg};
    let v = |metric: Metric| -> Option<u64> {
        if !filter.is_empty() && !filter.iter().any(|f| f == metric.name()) {
            return None;
        }
        samples.iter().find(|(m, _)| *m == metric).map(|(_, v)| *v)
    };
    // Attribute names are the metric names, written out in sorted order (a unit test checks
    // them against the registry); absent values (`None`) are not recorded.
    tracing::info!(
        context = "metrics",
        broadcast_msg_total = v(Mc(C::BroadcastMsg)),
        broadcast_streams_num = v(Mg(G::BroadcastStreamsNum)),
        broker_errors_total = v(Mc(C::BrokerErrors)),
        client_msg_total = v(Mc(C::ClientMsg)),
        clients_num = v(Mg(G::ClientsNum)),
        clients_uniq_num = v(Mg(G::ClientsUniqNum)),
        data_rcvd_total = v(Mc(C::DataRcvd)),
        data_sent_total = v(Mc(C::DataSent)),
        disconnect_queue_size = v(Mg(G::DisconnectQueueSize)),
        disconnected_slow_clients_total = v(Mc(C::DisconnectedSlowClients)),
        failed_auths_total = v(Mc(C::FailedAuths)),
        failed_broadcast_msg_total = v(Mc(C::FailedBroadcastMsg)),
        failed_client_msg_total = v(Mc(C::FailedClientMsg)),
        failed_server_msg_total = v(Mc(C::FailedServerMsg)),
        goroutines_num = v(Mg(G::GoroutinesNum)),
        grpc_active_conn_num = v(Mg(G::GrpcActiveConn)),
        mem_sys_bytes = v(Mg(G::MemSysBytes)),
        publications_total = v(Mc(C::Publications)),
        pubsub_dropped_total = v(Mc(C::PubSubDropped)),
        remote_commands_total = v(Mc(C::RemoteCommands)),
        rpc_call_total = v(Mc(C::RpcCall)),
        rpc_canceled_total = v(Mc(C::RpcCanceled)),
        rpc_capacity_num = v(Mg(G::RpcCapacity)),
        rpc_connect_deferred_total = v(Mc(C::RpcConnectDeferred)),
        rpc_error_total = v(Mc(C::RpcError)),
        rpc_inflight_num = v(Mg(G::RpcInflight)),
        rpc_pending_num = v(Mg(G::RpcPending)),
        rpc_retries_total = v(Mc(C::RpcRetries)),
        rpc_timeout_total = v(Mc(C::RpcTimeout)),
        server_msg_total = v(Mc(C::ServerMsg)),
        service_reconnects_total = v(Mc(C::ServiceReconnects)),
        sse_clients_num = v(Mg(G::SseClients)),
        subscriptions_limit_exceeded_total = v(Mc(C::SubscriptionsLimitExceeded)),
        timeout_server_msg_total = v(Mc(C::TimeoutServerMsg)),
        ""
    );
}

/// How global tags are attached to a StatsD line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TagsFormat {
    /// `name:1|c|#k:v,k2:v2`
    Datadog,
    /// `name,k=v,k2=v2:1|c`
    Influxdb,
    /// `name;k=v;k2=v2:1|c`
    Graphite,
}

impl TagsFormat {
    fn parse(value: &str) -> Option<TagsFormat> {
        match value {
            "datadog" => Some(TagsFormat::Datadog),
            "influxdb" => Some(TagsFormat::Influxdb),
            "graphite" => Some(TagsFormat::Graphite),
            _ => None,
        }
    }
}

/// Builds StatsD lines: `<prefix><name>[name tags]:<value>|c|g[suffix tags]`.
struct LineFormat {
    prefix: String,
    /// Tags placed right after the name (InfluxDB, Graphite).
    name_tags: String,
    /// Tags placed after the type (Datadog).
    suffix_tags: String,
}

impl LineFormat {
    fn new<'a>(
        prefix: &str,
        tags: impl IntoIterator<Item = (&'a String, &'a String)>,
        format: TagsFormat,
    ) -> LineFormat {
        let (kv, first, other) = match format {
            TagsFormat::Datadog => (':', "|#", ","),
            TagsFormat::Influxdb => ('=', ",", ","),
            TagsFormat::Graphite => ('=', ";", ";"),
        };
        let pairs: Vec<String> = tags
            .into_iter()
            .map(|(k, v)| format!("{k}{kv}{v}"))
            .collect();
        let rendered = if pairs.is_empty() {
            String::new()
        } else {
            format!("{first}{}", pairs.join(other))
        };
        let (name_tags, suffix_tags) = match format {
            TagsFormat::Datadog => (String::new(), rendered),
            _ => (rendered, String::new()),
        };
        LineFormat {
            prefix: prefix.to_string(),
            name_tags,
            suffix_tags,
        }
    }

    fn line(&self, metric: Metric, value: u64) -> String {
        let kind = if metric.is_counter() { "c" } else { "g" };
        format!(
            "{}{}{}:{value}|{kind}{}",
            self.prefix,
            metric.name(),
            self.name_tags,
            self.suffix_tags
        )
    }
}

/// Packs newline-terminated lines into packets of at most `max` bytes. A line that alone
/// exceeds the limit travels in a packet of its own.
fn packets(lines: impl IntoIterator<Item = String>, max: usize) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    for line in lines {
        if !current.is_empty() && current.len() + line.len() + 1 > max {
            packets.push(std::mem::take(&mut current));
        }
        current.extend_from_slice(line.as_bytes());
        current.push(b'\n');
    }
    if !current.is_empty() {
        packets.push(current);
    }
    packets
}

/// Sends rotations to a StatsD server over UDP. The target is resolved on first use (and
/// again after a send error), so a server that starts later is picked up.
struct StatsdSender {
    target: String,
    format: LineFormat,
    max_packet: usize,
    socket: Option<(UdpSocket, SocketAddr)>,
    /// A failure was reported and nothing succeeded since (one warning per outage).
    failing: bool,
}

impl StatsdSender {
    fn from_config(config: &MetricsConfig) -> Result<StatsdSender, SetupError> {
        let statsd = &config.statsd;
        let format = TagsFormat::parse(&statsd.tags_format)
            .ok_or_else(|| SetupError::TagsFormat(statsd.tags_format.clone()))?;
        let valid_port = statsd
            .host
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid_port {
            return Err(SetupError::StatsdHost(statsd.host.clone()));
        }
        Ok(StatsdSender {
            target: statsd.host.clone(),
            format: LineFormat::new(&statsd.prefix, &config.tags, format),
            max_packet: statsd.max_packet_size,
            socket: None,
            failing: false,
        })
    }

    async fn send(&mut self, samples: &[(Metric, u64)]) {
        let lines = samples.iter().map(|&(m, v)| self.format.line(m, v));
        let packets = packets(lines, self.max_packet);
        let result = async {
            let (socket, target) = self.connect().await?;
            for packet in &packets {
                socket.send_to(packet, *target).await?;
            }
            Ok::<_, std::io::Error>(())
        }
        .await;
        match result {
            Ok(()) => self.failing = false,
            Err(error) => {
                self.socket = None;
                if !self.failing {
                    self.failing = true;
                    tracing::warn!(
                        context = "statsd",
                        "cannot send metrics to {}: {error}",
                        self.target
                    );
                }
            }
        }
    }

    async fn connect(&mut self) -> std::io::Result<&(UdpSocket, SocketAddr)> {
        if self.socket.is_none() {
            let target = tokio::net::lookup_host(&self.target)
                .await?
                .next()
                .ok_or_else(|| std::io::Error::other("no address"))?;
            let local = if target.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            self.socket = Some((UdpSocket::bind(local).await?, target));
        }
        Ok(self.socket.as_ref().expect("set above"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    use super::*;
    use crate::metrics::Registration;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn counters_rotate_into_deltas_and_gauges_stay_current() {
        let metrics = Metrics::default();
        let mut rotation = Rotation::default();
        let value =
            |samples: &[(Metric, u64)], m: Metric| samples.iter().find(|(s, _)| *s == m).unwrap().1;
        let broadcast = Metric::Counter(Counter::BroadcastMsg);
        let clients = Metric::Gauge(Gauge::ClientsNum);

        metrics.add(Counter::BroadcastMsg, 5);
        metrics.set(Gauge::ClientsNum, 2);
        let first = rotation.rotate(&metrics);
        assert_eq!(value(&first, broadcast), 5, "first rotation: cumulative");
        assert_eq!(value(&first, clients), 2);

        let second = rotation.rotate(&metrics);
        assert_eq!(value(&second, broadcast), 0);
        assert_eq!(value(&second, clients), 2, "gauges are not deltas");

        metrics.add(Counter::BroadcastMsg, 3);
        let third = rotation.rotate(&metrics);
        assert_eq!(value(&third, broadcast), 3);
        assert_eq!(
            metrics.get(Counter::BroadcastMsg),
            8,
            "the registry stays cumulative"
        );
    }

    #[test]
    fn statsd_lines_in_each_tags_format() {
        let clients = Metric::Gauge(Gauge::ClientsNum);
        let msgs = Metric::Counter(Counter::ClientMsg);
        let none = LineFormat::new("anycable_go.", &tags(&[]), TagsFormat::Datadog);
        assert_eq!(none.line(msgs, 4), "anycable_go.client_msg_total:4|c");
        assert_eq!(none.line(clients, 2), "anycable_go.clients_num:2|g");

        let t = tags(&[("env", "prod"), ("region", "eu")]);
        let datadog = LineFormat::new("ac.", &t, TagsFormat::Datadog);
        assert_eq!(
            datadog.line(clients, 2),
            "ac.clients_num:2|g|#env:prod,region:eu"
        );
        let influx = LineFormat::new("ac.", &t, TagsFormat::Influxdb);
        assert_eq!(
            influx.line(msgs, 4),
            "ac.client_msg_total,env=prod,region=eu:4|c"
        );
        let graphite = LineFormat::new("", &t, TagsFormat::Graphite);
        assert_eq!(
            graphite.line(clients, 0),
            "clients_num;env=prod;region=eu:0|g"
        );
    }

    #[test]
    fn tags_formats() {
        assert_eq!(TagsFormat::parse("datadog"), Some(TagsFormat::Datadog));
        assert_eq!(TagsFormat::parse("influxdb"), Some(TagsFormat::Influxdb));
        assert_eq!(TagsFormat::parse("graphite"), Some(TagsFormat::Graphite));
        assert_eq!(TagsFormat::parse("statsite"), None);
        let mut config = MetricsConfig::default();
        config.statsd.host = "localhost:8125".into();
        config.statsd.tags_format = "nope".into();
        assert!(matches!(
            StatsdSender::from_config(&config),
            Err(SetupError::TagsFormat(_))
        ));
        config.statsd.tags_format = "graphite".into();
        assert!(StatsdSender::from_config(&config).is_ok());
        for bad in ["localhost", "localhost:", ":8125", "localhost:port"] {
            config.statsd.host = bad.into();
            assert!(
                matches!(
                    StatsdSender::from_config(&config),
                    Err(SetupError::StatsdHost(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn packets_respect_the_size_limit() {
        let lines: Vec<String> = (0..10).map(|i| format!("metric_{i}:{i}|c")).collect();
        // Each line is 12 bytes, 13 with its newline.
        let packed = packets(lines.clone(), 40);
        assert_eq!(packed.len(), 4);
        assert!(packed.iter().all(|p| p.len() <= 40));
        let joined: Vec<u8> = packed.concat();
        let expected: String = lines.iter().map(|l| format!("{l}\n")).collect();
        assert_eq!(String::from_utf8(joined).unwrap(), expected);
        // Exactly at the limit still fits.
        assert_eq!(packets(lines.clone(), 26).len(), 5);
        // A line larger than the limit goes alone.
        let big = packets(vec!["x".repeat(50), "y".into()], 20);
        assert_eq!(
            big,
            vec![
                format!("{}\n", "x".repeat(50)).into_bytes(),
                b"y\n".to_vec()
            ]
        );
        assert!(packets(Vec::<String>::new(), 10).is_empty());
    }

    /// Every metric (all optional ones on, with a tag) travels in two default-size packets:
    /// one no longer suffices since `subscriptions_limit_exceeded_total` was added (1450 bytes).
    #[test]
    fn the_default_set_fits_two_default_packets() {
        let metrics = Metrics::new(Registration {
            rpc: true,
            sse: true,
            grpc: true,
            distributed_broker: false,
            services: false,
            readiness: [false; 6],
        });
        let format = LineFormat::new(
            "anycable_go.",
            &tags(&[("env", "production")]),
            TagsFormat::Datadog,
        );
        let lines: Vec<String> = metrics
            .snapshot()
            .into_iter()
            .map(|(m, v)| format.line(m, v))
            .collect();
        let sent = packets(lines.clone(), 1400);
        assert_eq!(sent.len(), 2);
        assert!(sent.iter().all(|p| p.len() <= 1400));
        let every_line: String = lines.iter().map(|l| format!("{l}\n")).collect();
        assert_eq!(sent.concat(), every_line.into_bytes());
    }

    /// The fields of one event: (name, value) in order.
    type Recorded = Vec<(String, String)>;

    /// Records the fields of every event.
    struct Capture(Arc<Mutex<Vec<Recorded>>>);

    struct Fields(Recorded);

    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0
                .push((field.name().to_string(), format!("{value:?}")));
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.push((field.name().to_string(), value.to_string()));
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut fields = Fields(Vec::new());
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    fn logged(samples: &[(Metric, u64)], filter: &[&str]) -> Recorded {
        let events = Arc::new(Mutex::new(Vec::new()));
        let filter: Vec<String> = filter.iter().map(|s| s.to_string()).collect();
        tracing::subscriber::with_default(Capture(events.clone()), || log_record(samples, &filter));
        let mut events = events.lock().unwrap();
        assert_eq!(events.len(), 1);
        events.pop().unwrap()
    }

    #[test]
    fn log_record_has_every_metric_sorted_by_name() {
        let metrics = Metrics::new(Registration {
            rpc: true,
            sse: true,
            grpc: true,
            distributed_broker: false,
            services: false,
            readiness: [false; 6],
        });
        metrics.add(Counter::ClientMsg, 7);
        let fields = logged(&metrics.snapshot(), &[]);
        assert_eq!(fields[0], ("message".into(), String::new()));
        assert_eq!(fields[1], ("context".into(), "metrics".into()));
        let names: Vec<&str> = fields[2..].iter().map(|(k, _)| k.as_str()).collect();
        let mut expected: Vec<&str> = metrics.registered().map(Metric::name).collect();
        expected.sort_unstable();
        assert_eq!(names, expected);
        assert!(fields.contains(&("client_msg_total".into(), "7".into())));
    }

    #[test]
    fn log_record_leaves_out_unregistered_and_filtered_metrics() {
        let metrics = Metrics::new(Registration {
            rpc: false,
            sse: false,
            grpc: false,
            distributed_broker: false,
            services: false,
            readiness: [false; 6],
        });
        let fields = logged(&metrics.snapshot(), &[]);
        assert!(!fields.iter().any(|(k, _)| k.starts_with("rpc_")));
        assert!(!fields.iter().any(|(k, _)| k == "sse_clients_num"));

        let fields = logged(
            &metrics.snapshot(),
            &["clients_num", "unknown", "mem_sys_bytes"],
        );
        let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            ["message", "context", "clients_num", "mem_sys_bytes"]
        );
    }
}
