//! Network clients shared by every component that talks to the same service: Redis (the
//! `redis` and `redisx` broadcasters, Redis pub/sub, the Redis broker) and how their
//! long-lived connections come back after a failure; NATS (the `nats` broadcaster, NATS
//! pub/sub, the NATS broker) client options.

pub mod nats;
pub mod reconnect;
pub mod redis;
