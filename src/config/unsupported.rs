//! Settings of features the server does not implement yet (see `flags::BUILT`).

use super::flags::{find_flag, Feature, FlagDef, FLAGS};
use super::print::setting_value;
use super::{BroadcastAdapter, BrokerAdapter, Choice, Config, PubSubAdapter, RpcImpl};

/// Flags whose "differs from default" test is value-specific, checked in `special_cases`.
const SPECIAL: &[&str] = &[
    "broadcast_adapter",
    "pubsub",
    "broker",
    "rpc_impl",
    "metrics_log_formatter",
];

impl Config {
    /// One message per not-built setting whose effective value differs from its default, naming the
    /// flag, e.g. `--broker=memory: the memory broker is not implemented yet`.
    pub fn unsupported_settings(&self) -> Vec<String> {
        let defaults = Config::default();
        let mut messages = self.special_cases();
        for flag in FLAGS
            .iter()
            .filter(|f| !f.feature.is_built() && !SPECIAL.contains(&f.name))
        {
            // Without RPC (--norpc) the RPC settings are simply unused.
            if flag.feature == Feature::Rpc && self.norpc {
                continue;
            }
            let value = setting_value(self, flag);
            if value != setting_value(&defaults, flag) {
                let shown = match (&value, flag.secret) {
                    (Some(v), false) => format!("={}", v.to_text(flag.kind)),
                    _ => String::new(),
                };
                messages.push(format!(
                    "{}{shown}: {} is not implemented yet",
                    display_name(flag),
                    flag.feature.description()
                ));
            }
        }
        messages
    }

    fn special_cases(&self) -> Vec<String> {
        let mut messages = Vec::new();
        let built = |feature: Feature| feature.is_built();
        for adapter in &self.broadcast_adapters {
            let feature = match adapter {
                BroadcastAdapter::Http => continue,
                BroadcastAdapter::Nats => Feature::Nats,
                BroadcastAdapter::Redis | BroadcastAdapter::RedisX => Feature::Redis,
            };
            if !built(feature) {
                let all: Vec<&str> = self.broadcast_adapters.iter().map(|a| a.as_str()).collect();
                messages.push(format!(
                    "--broadcast_adapter={}: the {adapter} broadcaster is not implemented yet",
                    all.join(",")
                ));
            }
        }
        let pubsub_ready = match self.pubsub_adapter {
            PubSubAdapter::Unset | PubSubAdapter::None => true,
            PubSubAdapter::Redis | PubSubAdapter::Nats => built(Feature::PubSub),
        };
        if !pubsub_ready {
            messages.push(format!(
                "--pubsub={0}: the {0} pub/sub is not implemented yet",
                self.pubsub_adapter
            ));
        }
        let broker_ready = match self.broker.adapter {
            BrokerAdapter::Unset | BrokerAdapter::None => true,
            BrokerAdapter::Memory | BrokerAdapter::Nats | BrokerAdapter::Redis => {
                built(Feature::Broker)
            }
        };
        if !broker_ready {
            messages.push(format!(
                "--broker={0}: the {0} broker is not implemented yet",
                self.broker.adapter
            ));
        }
        if self.redis.url.contains(',') {
            messages.push(
                "--redis_url: Redis Cluster (a comma-separated list of URLs) is not implemented yet"
                    .to_string(),
            );
        }
        if !self.metrics.log_formatter.is_empty() {
            messages.push(format!(
                "--metrics_log_formatter={}: mruby metrics formatters exist only in mruby builds of AnyCable-Go and are not supported (use --metrics_log, --metrics_http or --statsd_host)",
                self.metrics.log_formatter
            ));
        }
        if matches!(self.rpc.implementation, RpcImpl::Grpc | RpcImpl::Http) && !built(Feature::Rpc)
        {
            messages.push(format!(
                "--rpc_impl={}: the RPC client is not implemented yet",
                self.rpc.implementation
            ));
        }
        messages
    }
}

/// `--flag` for real flags, `[section] key` for file-only settings.
fn display_name(flag: &FlagDef) -> String {
    if find_flag(flag.name).is_some() {
        return format!("--{}", flag.name);
    }
    match flag.toml.and_then(|k| k.split_once('.')) {
        Some((section, key)) => format!("[{section}] {key}"),
        None => flag.name.to_string(),
    }
}
