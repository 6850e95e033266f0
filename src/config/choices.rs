//! The closed sets of the configuration (adapters, modes, units), parsed once at load time so
//! the rest of the server matches on enums. Each variant keeps its flag text: `--print-config`
//! and the startup log print it back unchanged.

use super::ConfigError;

/// A closed set of setting values with the text each one is written as.
pub trait Choice: Copy + Sized + 'static {
    /// Every value, in the order error messages list them.
    const ALL: &'static [Self];

    fn as_str(self) -> &'static str;

    fn from_name(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == text)
    }
}

/// Parses the value of `--{flag}`; the error lists the accepted values (not the empty one that
/// stands for "not given").
pub(crate) fn parse_choice<T: Choice>(flag: &str, text: &str) -> Result<T, ConfigError> {
    T::from_name(text).ok_or_else(|| {
        let names: Vec<&str> = T::ALL
            .iter()
            .map(|c| c.as_str())
            .filter(|name| !name.is_empty())
            .collect();
        ConfigError::InvalidValue {
            origin: format!("--{flag}"),
            value: text.to_string(),
            reason: format!("must be one of: {}", names.join(", ")),
        }
    })
}

macro_rules! choice {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident = $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$variant_meta])* $variant, )*
        }

        impl Choice for $name {
            const ALL: &'static [Self] = &[$($name::$variant),*];

            fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )*
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

choice! {
    /// `--broadcast_adapter`: where publications come from besides the REST API.
    pub enum BroadcastAdapter {
        /// `POST /_broadcast` (`--http_broadcast_*`).
        Http = "http",
        /// The legacy Redis Pub/Sub channel (`--redis_channel`).
        Redis = "redis",
        /// A Redis Stream read through a consumer group (`--redisx_*`).
        RedisX = "redisx",
        /// A NATS subject (`--nats_channel`).
        Nats = "nats",
    }
}

choice! {
    /// `--pubsub`: node-to-node delivery of publications.
    #[derive(Default)]
    pub enum PubSubAdapter {
        /// Not given: no pub/sub, but a Redis URL, the `redisx` broadcaster or a preset may still
        /// pick one at load time. Kept apart from `None` so `--print-config` prints it back as
        /// not given and presets leave an explicit `none` alone.
        #[default]
        Unset = "",
        None = "none",
        Redis = "redis",
        Nats = "nats",
    }
}

choice! {
    /// `--broker`: where reliable streams keep history, sessions and presence.
    #[derive(Default)]
    pub enum BrokerAdapter {
        /// Not given: no broker, unless the `broker` preset picks the memory one.
        #[default]
        Unset = "",
        None = "none",
        Memory = "memory",
        Nats = "nats",
        Redis = "redis",
    }
}

impl BrokerAdapter {
    /// A broker shared by every node (the others keep nothing or keep it in this process).
    pub fn is_distributed(self) -> bool {
        matches!(self, BrokerAdapter::Nats | BrokerAdapter::Redis)
    }

    /// Whether reliable streams are on at all.
    pub fn is_enabled(self) -> bool {
        !matches!(self, BrokerAdapter::Unset | BrokerAdapter::None)
    }
}

choice! {
    /// `--rpc_impl`; see [`super::Config::rpc_impl`] for the one in use.
    #[derive(Default)]
    pub enum RpcImpl {
        /// Not given: HTTP RPC when `--rpc_host` is an `http(s)://` URL, gRPC otherwise.
        #[default]
        Auto = "",
        Grpc = "grpc",
        Http = "http",
        None = "none",
    }
}

choice! {
    /// `--disconnect_mode`: which ended sessions the backend hears about.
    #[derive(Default)]
    pub enum DisconnectMode {
        /// Sessions that had any answer from the backend.
        #[default]
        Auto = "auto",
        /// Every authenticated session, even those the backend never saw.
        Always = "always",
        Never = "never",
    }
}

choice! {
    /// Unit of the ping timestamp (`--ping_timestamp_precision`, `?ptp=`).
    #[derive(Default)]
    pub enum Precision {
        #[default]
        Seconds = "s",
        Millis = "ms",
        Nanos = "ns",
    }
}

choice! {
    /// `--presets`: platform defaults applied at start (`presets.rs`). `none` in the setting
    /// disables detection; it is not a preset.
    pub enum Preset {
        Fly = "fly",
        Heroku = "heroku",
        Broker = "broker",
    }
}
