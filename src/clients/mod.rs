//! Network clients shared by every component that talks to the same service: Redis (the
//! `redis` and `redisx` broadcasters, Redis pub/sub, the Redis broker) and how their
//! long-lived connections come back after a failure.

pub mod reconnect;
pub mod redis;
