//! The Redis servers `redis.host` names: one host for a standalone Redis, a comma-separated
//! list for Sentinel or Cluster, each item `host`, `host:port`, a bare IPv6 address or
//! `[address]:port`, with `redis.port` where an item has no port of its own. A host that is a
//! path is a Unix socket instead ([`RedisConfig::is_unix_socket`]).
//!
//! One parser for the start-up check, the connection URL and the clients, so an address is
//! read the same way everywhere.

use std::fmt::Display;

use crate::settings::RedisConfig;

/// One server: a host name or address (an IPv6 address without brackets) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisServer {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl RedisServer {
    /// The host as it goes before `:port` (an IPv6 address in brackets).
    pub fn bracketed_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

impl RedisConfig {
    /// The servers `redis.host` lists, in order. An error names the item that is not an
    /// address; a Unix socket path is not one (see [`RedisConfig::is_unix_socket`]).
    pub fn servers(&self) -> Result<Vec<RedisServer>, String> {
        let items: Vec<&str> = list_items(&self.host).collect();
        if items.is_empty() {
            return Err("lists no host".into());
        }
        items
            .iter()
            .map(|item| {
                if item.starts_with('/') {
                    return Err(format!(
                        "{item:?}: a Unix socket path can only be the one host of a standalone Redis"
                    ));
                }
                server(item, self.port)
            })
            .collect()
    }
}

/// The non-empty, trimmed items of a comma-separated list (QueuedTracking's host and port
/// lists, `redis.host`).
pub(crate) fn list_items(list: &str) -> impl Iterator<Item = &str> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

/// `host:port`, an IPv6 address in brackets.
pub(crate) fn join_host_port(host: &str, port: impl Display) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn server(item: &str, default_port: u16) -> Result<RedisServer, String> {
    let (host, port) = if let Some(rest) = item.strip_prefix('[') {
        let (address, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{item:?}: an IPv6 address in brackets lacks its ']'"))?;
        match after {
            "" => (address, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (address, Some(port)),
                None => return Err(format!("{item:?}: expected [address]:port")),
            },
        }
    } else {
        match item.split_once(':') {
            Some((host, port)) if !port.contains(':') => (host, Some(port)),
            // No colon, or a bare IPv6 address.
            _ => (item, None),
        }
    };
    let port = match port {
        None => default_port,
        Some(text) => text
            .parse()
            .map_err(|_| format!("{item:?}: {text:?} is not a TCP port"))?,
    };
    if host.is_empty() {
        return Err(format!("{item:?}: no host before the port"));
    }
    Ok(RedisServer {
        host: host.to_owned(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(host: &str) -> Result<Vec<(String, u16)>, String> {
        let config = RedisConfig {
            host: host.into(),
            port: 6379,
            ..RedisConfig::default()
        };
        config
            .servers()
            .map(|list| list.into_iter().map(|s| (s.host, s.port)).collect())
    }

    fn list(items: &[(&str, u16)]) -> Result<Vec<(String, u16)>, String> {
        Ok(items.iter().map(|(h, p)| ((*h).to_owned(), *p)).collect())
    }

    #[test]
    fn every_form_of_an_item() {
        assert_eq!(
            servers("r1, r2:6380 ,::1,[fe80::1]:26379,[::2],10.0.0.1:1"),
            list(&[
                ("r1", 6379),
                ("r2", 6380),
                ("::1", 6379),
                ("fe80::1", 26379),
                ("::2", 6379),
                ("10.0.0.1", 1),
            ])
        );
    }

    #[test]
    fn bad_items_are_named() {
        for (host, expected) in [
            ("r1:port", "\"r1:port\": \"port\" is not a TCP port"),
            ("r1:70000", "\"r1:70000\": \"70000\" is not a TCP port"),
            ("[::1", "lacks its ']'"),
            ("[::1]6380", "expected [address]:port"),
            (":6380", "no host before the port"),
            (" , ", "lists no host"),
            (
                "s1,/run/redis.sock",
                "a Unix socket path can only be the one host",
            ),
        ] {
            let error = servers(host).unwrap_err();
            assert!(error.contains(expected), "{host:?} gave {error}");
        }
    }

    #[test]
    fn brackets_only_for_ipv6() {
        let v6 = RedisServer {
            host: "::1".into(),
            port: 1,
        };
        assert_eq!(v6.bracketed_host(), "[::1]");
        assert_eq!(join_host_port("::1", 1), "[::1]:1");
        assert_eq!(join_host_port("[::1]", 1), "[::1]:1");
        assert_eq!(join_host_port("r1", "2"), "r1:2");
    }
}
