//! fred's connection settings from the tier's (feature `fred`): the one place where Redis
//! settings become a client configuration, for every binary and the load harness.
//!
//! The settings are built directly from [`RedisConfig::servers`] (fred's URL form cannot name
//! an IPv6 node after the first) or, for a Unix socket, from the path. URLs given by hand (the
//! load harness' `--redis-url`) go through fred's parser, except that fred reads no database
//! from a `redis+unix://` URL and keeps its path percent-encoded, so [`fred_config_from_url`]
//! reads both itself.

use fred::error::{Error, ErrorKind};
use fred::prelude::{Config as FredConfig, Server, ServerConfig};
use fred::types::config::ClusterDiscoveryPolicy;
use percent_encoding::percent_decode_str;

use crate::settings::{Config, RedisBackend, RedisConfig};

impl Config {
    /// fred's configuration for `[redis]`: [`RedisConfig::fred_config`].
    pub fn fred_config(&self) -> Result<FredConfig, Error> {
        self.redis.fred_config()
    }
}

impl RedisConfig {
    /// fred's configuration for these settings (server, password, database); timeouts and
    /// retries are the caller's.
    pub fn fred_config(&self) -> Result<FredConfig, Error> {
        if self.is_unix_socket() {
            return Ok(unix(
                self.host.clone(),
                self.password.clone(),
                self.database,
            ));
        }
        let config_error = |problem: String| Error::new(ErrorKind::Config, problem);
        // fred resolves `host:port` as text, so an IPv6 address goes in brackets.
        let mut hosts: Vec<Server> = self
            .servers()
            .map_err(config_error)?
            .iter()
            .map(|s| Server::new(s.bracketed_host(), s.port))
            .collect();
        let server = match self.backend {
            RedisBackend::Standalone => ServerConfig::Centralized {
                server: hosts.swap_remove(0),
            },
            RedisBackend::Sentinel => ServerConfig::Sentinel {
                hosts,
                service_name: self.sentinel_master.clone(),
            },
            RedisBackend::Cluster => ServerConfig::Clustered {
                hosts,
                policy: ClusterDiscoveryPolicy::default(),
            },
        };
        Ok(FredConfig {
            server,
            password: self.password.clone().filter(|p| !p.is_empty()),
            database: (self.backend != RedisBackend::Cluster).then_some(self.database),
            ..FredConfig::default()
        })
    }
}

/// fred's configuration for a URL, as fred reads it, except that a `redis+unix://` (or
/// `valkey+unix://`) URL's path is percent-decoded and its `db` query parameter is the
/// database, as [`Config::redis_url`](crate::Config::redis_url) writes them.
pub fn fred_config_from_url(url: &str) -> Result<FredConfig, Error> {
    let parsed = url::Url::parse(url).map_err(|e| Error::new(ErrorKind::Config, e.to_string()))?;
    if !parsed.scheme().ends_with("+unix") {
        return FredConfig::from_url(url);
    }
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    let path = decode(parsed.path());
    if !path.starts_with('/') {
        return Err(Error::new(
            ErrorKind::Config,
            "a redis+unix:// URL needs an absolute socket path",
        ));
    }
    let password = parsed.password().map(decode).filter(|p| !p.is_empty());
    let mut database = 0;
    for (key, value) in parsed.query_pairs() {
        if key == "db" {
            database = value.parse().map_err(|_| {
                Error::new(
                    ErrorKind::Config,
                    format!("db={value}: not a database number (0 to 255)"),
                )
            })?;
        }
    }
    Ok(unix(path, password, database))
}

fn unix(path: String, password: Option<String>, database: u8) -> FredConfig {
    FredConfig {
        server: ServerConfig::Unix { path: path.into() },
        password,
        database: Some(database),
        ..FredConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::RedisBackend;

    fn unix_path(config: &FredConfig) -> String {
        match &config.server {
            ServerConfig::Unix { path } => path.display().to_string(),
            other => panic!("not a Unix socket: {other:?}"),
        }
    }

    #[test]
    fn a_socket_path_keeps_its_database_and_password() {
        let mut c = Config::default();
        c.redis.host = "/run/redis/redis server.sock".into();
        c.redis.database = 7;
        c.redis.password = Some("p@ss/w".into());
        for fred in [
            c.fred_config().unwrap(),
            fred_config_from_url(&c.redis_url()).unwrap(),
        ] {
            assert_eq!(unix_path(&fred), "/run/redis/redis server.sock");
            assert_eq!(fred.database, Some(7));
            assert_eq!(fred.password.as_deref(), Some("p@ss/w"));
        }
    }

    #[test]
    fn tcp_deployments_list_every_server() {
        let mut c = Config::default();
        c.redis.database = 2;
        let fred = c.fred_config().unwrap();
        assert_eq!(
            fred.server,
            ServerConfig::new_centralized("127.0.0.1".to_string(), 6379)
        );
        assert_eq!(fred.database, Some(2));
        c.redis.backend = RedisBackend::Sentinel;
        c.redis.host = "s1, ::1 ,[fe80::2]:26380".into();
        c.redis.port = 26379;
        let fred = c.fred_config().unwrap();
        assert_eq!(
            fred.server,
            ServerConfig::Sentinel {
                hosts: vec![
                    Server::new("s1", 26379),
                    Server::new("[::1]", 26379),
                    Server::new("[fe80::2]", 26380),
                ],
                service_name: "mymaster".into(),
            }
        );
        assert_eq!(fred.database, Some(2));
        c.redis.backend = RedisBackend::Cluster;
        let fred = c.fred_config().unwrap();
        match fred.server {
            ServerConfig::Clustered { hosts, .. } => assert_eq!(hosts.len(), 3),
            other => panic!("not Cluster: {other:?}"),
        }
        assert_eq!(fred.database, None, "a cluster has no databases");
    }

    #[test]
    fn bad_unix_urls_are_refused() {
        assert!(fred_config_from_url("redis+unix:///tmp/r.sock?db=300").is_err());
        assert!(fred_config_from_url("redis+unix://localhost").is_err());
        assert_eq!(
            fred_config_from_url("redis+unix:///tmp/r.sock")
                .unwrap()
                .database,
            Some(0)
        );
    }
}
