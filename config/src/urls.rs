//! Connection URLs for Redis (fred) and MySQL (mysql_async) built from the settings, plus
//! redacted forms for logs. Passwords are percent-encoded in the URL and never appear in the
//! redacted forms.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::redis_servers::join_host_port;
use crate::settings::{Config, RedisBackend, RedisConfig};

/// Everything but unreserved URL characters gets encoded in user info.
const USERINFO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn enc(s: &str) -> String {
    utf8_percent_encode(s, USERINFO).to_string()
}

impl Config {
    /// A fred connection URL: `redis://`, `redis-sentinel://…?sentinelServiceName=…` or
    /// `redis-cluster://…`, with the extra hosts of a comma-separated `redis.host` as `node=`;
    /// for a Unix socket `redis+unix:///path?db=N`, whose `db` fred itself ignores (read it with
    /// `fred_config_from_url`, feature `fred`).
    pub fn redis_url(&self) -> String {
        self.redis.url(false)
    }

    /// [`Config::redis_url`] with the password replaced by `***`, for logs.
    pub fn redis_url_redacted(&self) -> String {
        self.redis.url(true)
    }

    /// A mysql_async URL (`mysql://user:password@host:port/dbname`), for `Opts::from_url`.
    pub fn mysql_url(&self) -> String {
        self.mysql_url_inner(false)
    }

    /// [`Config::mysql_url`] with the password replaced by `***`, for logs.
    pub fn mysql_url_redacted(&self) -> String {
        self.mysql_url_inner(true)
    }

    fn mysql_url_inner(&self, redact: bool) -> String {
        let d = &self.database;
        let password = if redact {
            "***".to_string()
        } else {
            enc(&d.password)
        };
        let host = if d.host.contains(':') && !d.host.starts_with('[') {
            format!("[{}]", d.host)
        } else {
            d.host.clone()
        };
        format!(
            "mysql://{}:{}@{}:{}/{}",
            enc(&d.username),
            password,
            host,
            d.port,
            enc(&d.dbname)
        )
    }
}

impl RedisConfig {
    /// The URL of [`Config::redis_url`], its password replaced by `***` when `redact`.
    pub(crate) fn url(&self, redact: bool) -> String {
        let r = self;
        if r.is_unix_socket() {
            return unix_socket_url(r.password.as_deref(), &r.host, r.database, redact);
        }
        let scheme = match r.backend {
            RedisBackend::Standalone => "redis",
            RedisBackend::Sentinel => "redis-sentinel",
            RedisBackend::Cluster => "redis-cluster",
        };
        let auth = match r.password.as_deref() {
            Some(p) if !p.is_empty() => {
                format!(":{}@", if redact { "***".to_string() } else { enc(p) })
            }
            _ => String::new(),
        };
        let servers = match r.servers() {
            Ok(servers) => servers,
            // Not an address (refused at start-up): shown as it is.
            Err(_) => return format!("{scheme}://{auth}{}", r.host),
        };
        let mut hosts = servers.iter().map(|s| join_host_port(&s.host, s.port));
        let Some(first) = hosts.next() else {
            return format!("{scheme}://{auth}{}", r.host);
        };
        let mut query: Vec<String> = Vec::new();
        if r.backend == RedisBackend::Sentinel {
            query.push(format!("sentinelServiceName={}", enc(&r.sentinel_master)));
        }
        query.extend(hosts.map(|h| format!("node={h}")));
        let db = if r.backend == RedisBackend::Cluster {
            String::new()
        } else {
            format!("/{}", r.database)
        };
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        format!("{scheme}://{auth}{first}{db}{query}")
    }
}

/// Characters of a socket path written as they are in a URL path; the rest is percent-encoded.
const PATH: &AsciiSet = &USERINFO.remove(b'/');

/// `redis+unix://[:password@localhost]/path[?db=N]`: fred's form for a Unix socket (it needs a
/// host name before credentials, and ignores it), with the database as a query parameter.
fn unix_socket_url(password: Option<&str>, path: &str, database: u8, redact: bool) -> String {
    let auth = match password {
        Some(p) if !p.is_empty() => {
            format!(
                ":{}@localhost",
                if redact { "***".to_string() } else { enc(p) }
            )
        }
        _ => String::new(),
    };
    let path = utf8_percent_encode(path, PATH);
    let db = if database == 0 {
        String::new()
    } else {
        format!("?db={database}")
    };
    format!("redis+unix://{auth}{path}{db}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls() {
        let mut c = Config::default();
        assert_eq!(c.redis_url(), "redis://127.0.0.1:6379/0");
        c.redis.password = Some("p@ss:/w".into());
        c.redis.database = 3;
        assert_eq!(c.redis_url(), "redis://:p%40ss%3A%2Fw@127.0.0.1:6379/3");
        assert_eq!(c.redis_url_redacted(), "redis://:***@127.0.0.1:6379/3");
        c.redis.password = None;
        c.redis.backend = RedisBackend::Sentinel;
        c.redis.host = "s1, s2:26380".into();
        c.redis.port = 26379;
        assert_eq!(
            c.redis_url(),
            "redis-sentinel://s1:26379/3?sentinelServiceName=mymaster&node=s2:26380"
        );
        c.redis.backend = RedisBackend::Cluster;
        assert_eq!(c.redis_url(), "redis-cluster://s1:26379?node=s2:26380");
    }

    #[test]
    fn unix_socket_urls() {
        let mut c = Config::default();
        c.redis.host = "/run/redis/redis server.sock".into();
        assert_eq!(c.redis_url(), "redis+unix:///run/redis/redis%20server.sock");
        c.redis.database = 3;
        c.redis.password = Some("p@ss".into());
        assert_eq!(
            c.redis_url(),
            "redis+unix://:p%40ss@localhost/run/redis/redis%20server.sock?db=3"
        );
        assert_eq!(
            c.redis_url_redacted(),
            "redis+unix://:***@localhost/run/redis/redis%20server.sock?db=3"
        );
    }

    #[test]
    fn connection_failures_name_the_settings_without_secrets() {
        let mut c = Config::default();
        c.database.password = "topsecret".into();
        let line = crate::ConfigError::mysql_failed(
            &c,
            "Server error: `ERROR 28000 (1045): Access denied for user 'matomo'@'localhost'`",
        )
        .to_string();
        assert!(
            line.starts_with(
                "config error: database.username/database.password: cannot use MySQL: "
            ),
            "{line}"
        );
        assert!(
            line.ends_with("(mysql://matomo:***@127.0.0.1:3306/matomo)")
                && !line.contains("topsecret"),
            "{line}"
        );
        let line = crate::ConfigError::mysql_failed(&c, "Unknown database 'x'").to_string();
        assert!(
            line.starts_with("config error: database.dbname: "),
            "{line}"
        );
        let line =
            crate::ConfigError::redis_failed(&c, "Connection refused (os error 111)").to_string();
        assert_eq!(line, "config error: redis.host/redis.port: cannot use Redis: Connection refused (os error 111) (redis://127.0.0.1:6379/0)");
        let line = crate::ConfigError::redis_failed(&c, "WRONGPASS invalid username-password pair")
            .to_string();
        assert!(line.starts_with("config error: redis.password: "), "{line}");
        assert_eq!(c.database.table("log_visit"), "matomo_log_visit");
    }

    #[test]
    fn mysql_urls() {
        let mut c = Config::default();
        assert_eq!(c.mysql_url(), "mysql://matomo:matomo@127.0.0.1:3306/matomo");
        c.database.password = "a b&c".into();
        assert_eq!(
            c.mysql_url(),
            "mysql://matomo:a%20b%26c@127.0.0.1:3306/matomo"
        );
        assert_eq!(
            c.mysql_url_redacted(),
            "mysql://matomo:***@127.0.0.1:3306/matomo"
        );
        c.database.host = "::1".into();
        assert!(c.mysql_url().contains("@[::1]:3306/"));
    }
}
