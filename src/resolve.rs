//! Host names that are loopback by definition. `localhost` and names under `.localhost` mean
//! this machine (RFC 6761, section 6.3), so they are answered here without asking the system:
//! the static binary in an empty root (no /etc/hosts, as in a bare chroot) could not resolve
//! them otherwise, and the default listen host and Redis URL use `localhost`. Every other name
//! goes to the system resolver (glibc: /etc/hosts, then DNS through /etc/resolv.conf).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// The loopback addresses for `host` when it is a localhost name, IPv4 first (as Go's
/// listener prefers it); `None` for any other name.
pub fn localhost(host: &str, port: u16) -> Option<Vec<SocketAddr>> {
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    let is_localhost = name == "localhost" || name.ends_with(".localhost");
    is_localhost.then(|| {
        vec![
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
        ]
    })
}

/// Every address of `host:port`: loopback for localhost names, else from the system resolver.
pub async fn lookup(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    match localhost(host, port) {
        Some(addrs) => Ok(addrs),
        None => Ok(tokio::net::lookup_host((host, port)).await?.collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_names_are_loopback_and_others_are_not() {
        for name in ["localhost", "LocalHost", "localhost.", "redis.localhost"] {
            let addrs = localhost(name, 6379).expect(name);
            assert_eq!(addrs[0], "127.0.0.1:6379".parse().unwrap());
        }
        for name in ["localhost.example.com", "notlocalhost", "127.0.0.1", ""] {
            assert_eq!(localhost(name, 1), None, "{name}");
        }
    }
}
