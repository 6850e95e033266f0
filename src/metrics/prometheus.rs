//! The Prometheus endpoint (`--metrics_http`): every registered counter, then every gauge, in
//! the text exposition format, with `--metrics_tags` as labels.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::Response;

use super::Metrics;
use crate::http::Body;

/// The fixed prefix of every exported name.
pub const PREFIX: &str = "anycable_go_";

/// Serves the registry in the Prometheus text format.
pub struct Exporter {
    metrics: Arc<Metrics>,
    /// `{k="v", k2="v2"}`, or empty without tags.
    labels: String,
}

impl Exporter {
    pub fn new(metrics: Arc<Metrics>, tags: &BTreeMap<String, String>) -> Exporter {
        Exporter {
            metrics,
            labels: labels(tags),
        }
    }

    /// The whole exposition: counters first, then gauges, each block after an empty line.
    pub fn render(&self) -> String {
        let mut text = String::new();
        for metric in self.metrics.registered() {
            let name = metric.name();
            let kind = if metric.is_counter() {
                "counter"
            } else {
                "gauge"
            };
            let _ = write!(
                text,
                "\n# HELP {PREFIX}{name} {help}\n# TYPE {PREFIX}{name} {kind}\n{PREFIX}{name}{labels} {value}\n",
                help = metric.help(),
                labels = self.labels,
                value = self.metrics.value(metric),
            );
        }
        text
    }

    /// The answer to any request on the metrics path.
    pub fn respond(&self) -> Response<Body> {
        let mut response = Response::new(Full::new(Bytes::from(self.render())));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

/// Renders tags as a label set, sorted by name. Values are escaped as the format requires
/// (backslash, double quote, newline); ordinary values come out verbatim.
fn labels(tags: &BTreeMap<String, String>) -> String {
    if tags.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = tags
        .iter()
        .map(|(k, v)| {
            let escaped = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{escaped}\"")
        })
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Counter, Gauge, Registration};

    fn exporter(tags: &[(&str, &str)], registration: Registration) -> (Arc<Metrics>, Exporter) {
        let metrics = Arc::new(Metrics::new(registration));
        let tags = tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (metrics.clone(), Exporter::new(metrics, &tags))
    }

    #[test]
    fn blocks_with_help_type_and_value() {
        let (metrics, exporter) = exporter(&[], Registration::default());
        metrics.add(Counter::BroadcastMsg, 3);
        metrics.set(Gauge::ClientsNum, 7);
        let text = exporter.render();
        assert!(text.starts_with("\n# HELP anycable_go_client_msg_total "));
        assert!(text.contains(
            "\n# HELP anycable_go_broadcast_msg_total Stream messages handed to the local hub\n\
             # TYPE anycable_go_broadcast_msg_total counter\n\
             anycable_go_broadcast_msg_total 3\n"
        ));
        assert!(text.contains(
            "\n# HELP anycable_go_clients_num Authenticated sessions currently connected\n\
             # TYPE anycable_go_clients_num gauge\n\
             anycable_go_clients_num 7\n"
        ));
        assert!(text.contains("anycable_go_rpc_pending_num 0\n"));
        assert!(!text.contains("sse_clients_num"));
        // Counters, then gauges.
        let last_counter = text
            .rfind("TYPE anycable_go_rpc_canceled_total counter")
            .unwrap();
        let first_gauge = text.find(" gauge\n").unwrap();
        assert!(last_counter < first_gauge);
        // Every block is exactly: empty line, HELP, TYPE, sample.
        let blocks: Vec<&str> = text.split("\n\n").collect();
        assert_eq!(blocks.len(), metrics.registered().count());
        for block in &text[1..].split("\n\n").collect::<Vec<_>>() {
            let lines: Vec<&str> = block.trim_end().lines().collect();
            assert_eq!(lines.len(), 3, "{block:?}");
            assert!(lines[0].starts_with("# HELP anycable_go_"));
            assert!(lines[1].starts_with("# TYPE anycable_go_"));
            assert!(lines[2].starts_with("anycable_go_"));
        }
    }

    #[test]
    fn tags_become_labels() {
        let (_, exporter) = exporter(
            &[("node_id", "xyz"), ("env", "production")],
            Registration {
                rpc: false,
                sse: true,
                grpc: false,
                distributed_broker: false,
                services: false,
                readiness: [false; 6],
            },
        );
        let text = exporter.render();
        assert!(text.contains("\nanycable_go_clients_num{env=\"production\", node_id=\"xyz\"} 0\n"));
        assert!(text.contains("anycable_go_sse_clients_num{"));
        assert!(!text.contains("rpc_"));
    }

    #[test]
    fn label_values_are_escaped() {
        let tags = [("a".to_string(), "x\"y\\z".to_string())].into();
        assert_eq!(labels(&tags), "{a=\"x\\\"y\\\\z\"}");
        assert_eq!(labels(&BTreeMap::new()), "");
    }
}
