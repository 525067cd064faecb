//! The typed settings every binary of the tier reads.
//!
//! This module owns the *shape* of the configuration and its defaults; it never does I/O.
//! Loading (TOML file, Matomo `config.ini.php`, environment, flags) and validation live in
//! sibling modules and produce a [`Config`] that the binaries treat as read-only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole configuration. Every section has defaults that suit the local stack
/// (`deploy/local/up`), so an empty TOML file is a valid configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Redis holding the QueuedTracking lists and locks.
    pub redis: RedisConfig,
    /// The Matomo MySQL/MariaDB database.
    pub database: DatabaseConfig,
    /// Queue layout shared by ingest and workers (`[QueuedTracking]` in Matomo's config).
    pub queue: QueueConfig,
    /// Matomo-wide settings (`[General]`, `[Tracker]`) and upstream data files.
    pub matomo: MatomoConfig,
    /// The HTTP ingest node.
    pub ingest: IngestConfig,
    /// The queue worker pool.
    pub worker: WorkerConfig,
    /// Logging.
    pub log: LogConfig,
}

/// How Redis is deployed (`useWhatRedisBackendType`: 1 standalone, 2 sentinel, 3 cluster).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RedisBackend {
    /// One Redis server (QueuedTracking backend type 1).
    #[default]
    Standalone,
    /// Redis Sentinel (type 2): `host`/`port` name a sentinel, `sentinel_master` the service.
    Sentinel,
    /// Redis Cluster (type 3).
    Cluster,
}

/// Redis connection settings (`[QueuedTracking] redisHost redisPort redisDatabase redisPassword`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// Host name or IP address, or the path of a Unix domain socket: a host that starts with
    /// `/` is one, as in QueuedTracking (standalone Redis only; the port is then unused).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Logical database number.
    pub database: u8,
    /// Optional password (AUTH). Never logged.
    pub password: Option<String>,
    /// Deployment type.
    pub backend: RedisBackend,
    /// Sentinel master name, for `backend = "sentinel"`.
    pub sentinel_master: String,
    /// Connections in the client pool. An ingest node opens at least one per lane
    /// (`ingest.threads`) and runs one writer per connection; a writer gathers the entries of
    /// its own lane's requests (see `docs/ingest.md`, "Redis writes"). A worker uses at least
    /// two per worker task plus two.
    pub pool_size: usize,
    /// Timeout for one command.
    #[serde(with = "humantime_secs")]
    pub command_timeout: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 6379,
            database: 0,
            password: None,
            backend: RedisBackend::Standalone,
            sentinel_master: "mymaster".into(),
            pool_size: 1,
            command_timeout: Duration::from_secs(5),
        }
    }
}

impl RedisConfig {
    /// Whether `host` is the path of a Unix domain socket (it starts with `/`, QueuedTracking's
    /// test).
    pub fn is_unix_socket(&self) -> bool {
        self.host.starts_with('/')
    }
}

/// MySQL/MariaDB settings (`[database]` in Matomo's config).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// User name.
    pub username: String,
    /// Password. Never logged.
    pub password: String,
    /// Database (schema) name.
    pub dbname: String,
    /// Prefix of every Matomo table, `matomo_` by default.
    pub tables_prefix: String,
    /// Connections in the pool.
    pub pool_size: usize,
}

impl DatabaseConfig {
    /// A Matomo table's full name: `tables_prefix` + `name` (`log_visit` → `matomo_log_visit`).
    pub fn table(&self, name: &str) -> String {
        format!("{}{}", self.tables_prefix, name)
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 3306,
            username: "matomo".into(),
            password: "matomo".into(),
            dbname: "matomo".into(),
            tables_prefix: "matomo_".into(),
            pool_size: 8,
        }
    }
}

/// Queue layout, shared by every ingest node and worker (`[QueuedTracking]`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Number of queues (shards), 1..=4096 (`numQueueWorkers`). Ingest and workers must agree.
    pub num_queue_workers: u16,
    /// Entries a worker takes per batch (`numRequestsToProcess`, 25 in PHP; larger is faster).
    pub num_requests_to_process: usize,
    /// Prefix put before every Redis key this tier uses. Empty in production (PHP-compatible
    /// keys); tests set a random prefix to isolate themselves.
    pub key_prefix: String,
    /// How the ingest compresses queue entries (`auto`: decided at start-up from Redis).
    pub compression: CompressionSetting,
}

/// `queue.compression` as configured: `auto`, or one [`EntryCompression`] by its name.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
pub enum CompressionSetting {
    /// Decided by each ingest node at start-up: [`EntryCompression::None`] when Redis
    /// compresses list nodes itself (`list-compress-depth` above 0: Redis' LZF over a whole
    /// node finds what consecutive entries share, which no per-entry encoder can), else
    /// [`EntryCompression::Default`] (also when Redis refuses `CONFIG GET`).
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// Always this mode.
    #[serde(untagged)]
    Fixed(EntryCompression),
}

impl CompressionSetting {
    /// The mode itself, or `None` for [`CompressionSetting::Auto`].
    pub fn fixed(self) -> Option<EntryCompression> {
        match self {
            Self::Auto => None,
            Self::Fixed(mode) => Some(mode),
        }
    }

    /// What `auto` resolves to for a Redis whose `list-compress-depth` is `depth` (`None`: it
    /// could not be read).
    pub fn resolve(self, depth: Option<u32>) -> EntryCompression {
        self.fixed().unwrap_or(match depth {
            Some(d) if d > 0 => EntryCompression::None,
            _ => EntryCompression::Default,
        })
    }
}

impl From<EntryCompression> for CompressionSetting {
    fn from(mode: EntryCompression) -> Self {
        Self::Fixed(mode)
    }
}

/// How queue entries are stored. Every choice is read by QueuedTracking's PHP worker (it
/// `gzuncompress`es and falls back to the raw value) and by ours. Redis' own list compression
/// (`list-compress-depth`) stores `None` entries in less memory than any of the others.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
pub enum EntryCompression {
    /// zlib data from the ingest's own encoder (hash chains, lazy matching, dynamic Huffman
    /// codes): entries as small as zlib level 9's (about 3 % smaller than PHP's level 6) for
    /// less CPU than zlib level 6; any zlib reader (PHP's `gzuncompress`) decodes them.
    #[default]
    #[serde(rename = "default")]
    Default,
    /// zlib at PHP's default level: the bytes `gzcompress()` writes, byte for byte.
    #[serde(rename = "zlib")]
    Zlib,
    /// zlib data from a greedy fixed-Huffman encoder: the least CPU of the compressed forms,
    /// entries about a quarter larger than `Default`'s.
    #[serde(rename = "fast")]
    Fast,
    /// Raw JSON: the least CPU; about 1.6 times as large in Redis as `Default` unless Redis
    /// compresses its list nodes, and then about two thirds of `Default`'s size.
    #[serde(rename = "none")]
    None,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            num_queue_workers: 4,
            num_requests_to_process: 500,
            key_prefix: String::new(),
            compression: CompressionSetting::default(),
        }
    }
}

/// Matomo's own settings (`[General]`, `[Tracker]`) and where upstream data files live.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MatomoConfig {
    /// `[General] salt`: hashes token_auth and enters config_id. Never logged.
    pub salt: String,
    /// A folder laid out like a Matomo install's `vendor/matomo/`
    /// (`device-detector/regexes/`, `searchengine-and-social-list/`, `referrer-spam-list/`).
    pub vendor_dir: Option<PathBuf>,
    /// A MaxMind-format GeoIP database (GeoLite2/DB-IP City or Country).
    pub geoip_db: Option<PathBuf>,
    /// Which DeviceDetector release's algorithm to reproduce; it must match the regex files
    /// in `vendor_dir` (Matomo 5.1 ships 6.3, Matomo 5.2+ ships 6.4).
    pub device_detector: DeviceDetectorRelease,
    /// `[Tracker]` settings.
    pub tracker: TrackerSettings,
}

/// The DeviceDetector release whose algorithm the worker reproduces.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
pub enum DeviceDetectorRelease {
    /// Read `VERSION` from `<vendor_dir>/device-detector/DeviceDetector.php` when the install
    /// has it; 6.4 otherwise.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// DeviceDetector 6.3.x (Matomo 5.1).
    #[serde(rename = "6.3")]
    V6_3,
    /// DeviceDetector 6.4.x (Matomo 5.2 and later).
    #[serde(rename = "6.4")]
    V6_4,
}

impl DeviceDetectorRelease {
    /// The concrete release: `Auto` is settled from the PHP source's `VERSION` constant when
    /// `php_source` (the text of `DeviceDetector.php`) is given, else 6.4.
    pub fn resolve(self, php_source: Option<&str>) -> DeviceDetectorRelease {
        if self != DeviceDetectorRelease::Auto {
            return self;
        }
        let version = php_source.and_then(|src| {
            let at = src.find("const VERSION")?;
            let rest = &src[at..];
            let start = rest.find(['\'', '"'])? + 1;
            let end = start + rest[start..].find(['\'', '"'])?;
            Some(rest[start..end].to_owned())
        });
        let mut parts = version
            .as_deref()
            .unwrap_or("")
            .split('.')
            .map(|p| p.parse::<u32>().ok());
        match (parts.next().flatten(), parts.next().flatten()) {
            (Some(major), Some(minor)) if major < 6 || (major == 6 && minor <= 3) => {
                DeviceDetectorRelease::V6_3
            }
            _ => DeviceDetectorRelease::V6_4,
        }
    }
}

/// The `[Tracker]` settings the tier honours, with Matomo 5's defaults.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerSettings {
    /// `record_statistics`: when false, matomo.php answers 503 and records nothing.
    pub record_statistics: bool,
    /// `visit_standard_length` in seconds (1800).
    pub visit_standard_length: u64,
    /// `window_look_back_for_visitor` in seconds (0).
    pub window_look_back_for_visitor: u64,
    /// `trust_visitors_cookies`.
    pub trust_visitors_cookies: bool,
    /// `enable_userid_overwrites_visitorid`.
    pub enable_userid_overwrites_visitorid: bool,
    /// `create_new_visit_when_campaign_changes`.
    pub create_new_visit_when_campaign_changes: bool,
    /// `create_new_visit_when_website_referrer_changes`.
    pub create_new_visit_when_website_referrer_changes: bool,
    /// `create_new_visit_after_midnight`.
    pub create_new_visit_after_midnight: bool,
    /// `create_new_visit_after_x_actions` (10000).
    pub create_new_visit_after_x_actions: u32,
    /// `page_maximum_length` (1024).
    pub page_maximum_length: usize,
    /// `tracking_requests_require_authentication_when_custom_timestamp_newer_than` (86400).
    pub tracking_requests_require_authentication_when_custom_timestamp_newer_than: u64,
    /// `tracking_requests_require_authentication` (true).
    pub tracking_requests_require_authentication: bool,
    /// `enable_fingerprinting_across_websites` (false).
    pub enable_fingerprinting_across_websites: bool,
    /// `exclude_requests_from_bots` is per request (`bots=1`); this mirrors `[Tracker] ignore_visits_cookie_name`.
    pub ignore_visits_cookie_name: String,
    /// `[Tracker] exclude_requests`: comma-separated segment-like rules (`e_c==Media`,
    /// `action_name=@privacy`); a request matching any of them is not recorded.
    pub exclude_requests: String,
    /// `[General] action_title_category_delimiter`: when not empty, page titles are split on it,
    /// each part trimmed and empty parts dropped.
    pub action_title_category_delimiter: String,
    /// `[General] proxy_client_headers[]`, e.g. `HTTP_X_FORWARDED_FOR`.
    pub proxy_client_headers: Vec<String>,
    /// `[General] proxy_ips[]`: peers trusted to set the client headers (IPs or CIDR ranges).
    pub proxy_ips: Vec<String>,
}

impl Default for TrackerSettings {
    fn default() -> Self {
        Self {
            record_statistics: true,
            visit_standard_length: 1800,
            window_look_back_for_visitor: 0,
            trust_visitors_cookies: false,
            enable_userid_overwrites_visitorid: true,
            create_new_visit_when_campaign_changes: true,
            create_new_visit_when_website_referrer_changes: false,
            create_new_visit_after_midnight: true,
            create_new_visit_after_x_actions: 10_000,
            page_maximum_length: 1024,
            tracking_requests_require_authentication_when_custom_timestamp_newer_than: 86_400,
            tracking_requests_require_authentication: true,
            enable_fingerprinting_across_websites: false,
            ignore_visits_cookie_name: "matomo_ignore".into(),
            exclude_requests: String::new(),
            action_title_category_delimiter: String::new(),
            proxy_client_headers: Vec::new(),
            proxy_ips: Vec::new(),
        }
    }
}

/// The HTTP ingest node.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Address that serves hits, `/healthz`, `/readyz` and `/metrics`.
    pub listen: SocketAddr,
    /// Threads that serve connections and write to Redis (one single-threaded runtime each);
    /// 0: `TOKIO_WORKER_THREADS` when set, else one per CPU the process may use.
    pub threads: usize,
    /// Queue writes to a standalone Redis go over each writer's own connection, a batch's
    /// RPUSH commands in one socket write (`false`: through the fred client, as Sentinel and
    /// Cluster always do).
    pub direct_redis_writes: bool,
    /// Path prefix the tracker lives under, e.g. `/ma/` (`/` by default).
    pub path_prefix: String,
    /// Folder served for `matomo.js`, `piwik.js` and other static files (e.g. a Matomo install).
    pub static_dir: Option<PathBuf>,
    /// Largest request body accepted, in bytes (413 above).
    pub max_body_bytes: usize,
    /// Largest number of entries in one bulk request.
    pub max_bulk_requests: usize,
    /// Longest request URI accepted, in bytes (414 above).
    pub max_url_bytes: usize,
    /// Time allowed to read headers and body (slow clients get 408).
    #[serde(with = "humantime_secs")]
    pub read_timeout: Duration,
    /// How often the site / token cache is refreshed from MySQL.
    #[serde(with = "humantime_secs")]
    pub site_cache_refresh: Duration,
    /// Local spool used while Redis is unavailable or over budget.
    pub spool: SpoolConfig,
    /// Redis memory guard: above `high` bytes of `used_memory` hits go to the spool until it
    /// falls below `low`. 0 disables the guard.
    pub redis_memory_high_bytes: u64,
    /// Low watermark of the Redis memory guard (0: the high watermark).
    pub redis_memory_low_bytes: u64,
    /// Redis guard on queue lengths: above this many entries in all queue lists together, hits
    /// go to the spool until they fall to `redis_queue_low_entries`. 0 disables it.
    pub redis_queue_high_entries: u64,
    /// Low watermark of the queue-length guard (0: the high watermark).
    pub redis_queue_low_entries: u64,
    /// On shutdown, how long `/readyz` fails while the node still serves, so load balancers
    /// stop sending before the listener closes.
    #[serde(with = "humantime_secs")]
    pub shutdown_grace: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("valid default address"),
            threads: 0,
            direct_redis_writes: true,
            path_prefix: "/".into(),
            static_dir: None,
            max_body_bytes: 8 * 1024 * 1024,
            max_bulk_requests: 10_000,
            max_url_bytes: 16 * 1024,
            read_timeout: Duration::from_secs(30),
            site_cache_refresh: Duration::from_secs(30),
            spool: SpoolConfig::default(),
            redis_memory_high_bytes: 0,
            redis_memory_low_bytes: 0,
            redis_queue_high_entries: 0,
            redis_queue_low_entries: 0,
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// The ingest node's local disk spool.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Folder of the spool segments; `None` disables the spool (Redis down → 503).
    pub dir: Option<PathBuf>,
    /// Largest total size of the spool in bytes (503 beyond).
    pub max_bytes: u64,
    /// `always` (fsync before answering), `interval` (every `fsync_interval`) or `never`.
    pub fsync: FsyncPolicy,
    /// Period of the `interval` fsync policy.
    #[serde(with = "humantime_secs")]
    pub fsync_interval: Duration,
    /// A Redis write slower than this sends the following hits to the spool until Redis answers
    /// a PING within it (the slow write itself keeps its own outcome: it cannot be recalled).
    #[serde(with = "humantime_secs")]
    pub redis_deadline: Duration,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            dir: None,
            max_bytes: 1024 * 1024 * 1024,
            fsync: FsyncPolicy::Always,
            fsync_interval: Duration::from_secs(1),
            redis_deadline: Duration::from_secs(2),
        }
    }
}

/// When the spool calls fsync.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Before every acknowledgement.
    #[default]
    Always,
    /// Periodically.
    Interval,
    /// Left to the OS.
    Never,
}

/// The queue worker pool.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Address that serves `/healthz`, `/readyz` and `/metrics`.
    pub listen: SocketAddr,
    /// Worker tasks in this process; each takes one shard lock at a time.
    pub pool_size: usize,
    /// TTL of a shard lock (QueuedTracking uses 60 s); renewed at a third of it while working.
    #[serde(with = "humantime_secs")]
    pub lock_ttl: Duration,
    /// Longest a remainder smaller than a batch waits before it is processed anyway.
    #[serde(with = "humantime_secs")]
    pub max_batch_wait: Duration,
    /// Pause of a worker that found every shard empty or locked.
    #[serde(with = "humantime_secs")]
    pub idle_sleep: Duration,
    /// First back-off after a transient failure (doubles up to `max_backoff`).
    #[serde(with = "humantime_secs")]
    pub min_backoff: Duration,
    /// Longest back-off after transient failures.
    #[serde(with = "humantime_secs")]
    pub max_backoff: Duration,
    /// Limit of one statement in the worker's MySQL sessions (MariaDB `max_statement_time`,
    /// MySQL `max_execution_time`, which only limits SELECT); zero turns it off.
    #[serde(with = "humantime_secs")]
    pub statement_timeout: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9180".parse().expect("valid default address"),
            pool_size: 2,
            lock_ttl: Duration::from_secs(60),
            max_batch_wait: Duration::from_secs(1),
            idle_sleep: Duration::from_millis(100),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(60),
        }
    }
}

/// Log output.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// An `EnvFilter` directive such as `info` or `matomo_worker=debug,info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

/// Every setting's default value as text, keyed by dotted name (for `--help` and the docs).
/// Settings without a default (`None`) are absent.
pub fn default_values() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Ok(toml::Value::Table(table)) = toml::Value::try_from(Config::default()) {
        flatten("", &table, &mut out);
    }
    out
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => flatten(&path, inner, out),
            toml::Value::String(s) if s.is_empty() => {
                out.insert(path, "\"\"".into());
            }
            toml::Value::String(s) => {
                out.insert(path, s.clone());
            }
            other => {
                out.insert(path, other.to_string());
            }
        }
    }
}

/// Durations in the TOML file are written as seconds (integer or float): `lock_ttl = 60`,
/// `idle_sleep = 0.1`.
mod humantime_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        if !secs.is_finite() || secs < 0.0 {
            return Err(serde::de::Error::custom(format!(
                "a duration must be a non-negative number of seconds, got {secs}"
            )));
        }
        Ok(Duration::from_secs_f64(secs))
    }
}

#[cfg(test)]
mod device_detector_release_tests {
    use super::DeviceDetectorRelease as R;

    #[test]
    fn auto_reads_the_php_version_constant() {
        let php =
            |v: &str| format!("class DeviceDetector\n{{\n    public const VERSION = '{v}';\n");
        assert_eq!(R::Auto.resolve(Some(&php("6.3.2"))), R::V6_3);
        assert_eq!(R::Auto.resolve(Some(&php("6.1.0"))), R::V6_3);
        assert_eq!(R::Auto.resolve(Some(&php("6.4.1"))), R::V6_4);
        assert_eq!(R::Auto.resolve(Some(&php("7.0.0"))), R::V6_4);
        assert_eq!(R::Auto.resolve(Some("no constant here")), R::V6_4);
        assert_eq!(R::Auto.resolve(None), R::V6_4);
    }

    #[test]
    fn an_explicit_release_wins() {
        assert_eq!(R::V6_3.resolve(None), R::V6_3);
        assert_eq!(
            R::V6_4.resolve(Some("public const VERSION = '6.3.0';")),
            R::V6_4
        );
    }
}

#[cfg(test)]
mod compression_setting_tests {
    use super::{CompressionSetting as S, EntryCompression, QueueConfig};

    #[test]
    fn compression_words_read_from_toml() {
        let read = |text: &str| toml::from_str::<QueueConfig>(text).map(|q| q.compression);
        assert_eq!(read("").ok(), Some(S::Auto));
        assert_eq!(read("compression = \"auto\"").ok(), Some(S::Auto));
        assert_eq!(
            read("compression = \"zlib\"").ok(),
            Some(S::Fixed(EntryCompression::Zlib))
        );
        assert_eq!(
            read("compression = \"none\"").ok(),
            Some(S::Fixed(EntryCompression::None))
        );
        assert!(read("compression = \"gzip\"").is_err());
    }

    #[test]
    fn auto_compression_follows_redis_list_compression() {
        assert_eq!(S::default(), S::Auto);
        assert_eq!(S::Auto.resolve(Some(1)), EntryCompression::None);
        assert_eq!(S::Auto.resolve(Some(3)), EntryCompression::None);
        assert_eq!(S::Auto.resolve(Some(0)), EntryCompression::Default);
        assert_eq!(S::Auto.resolve(None), EntryCompression::Default);
        for mode in [
            EntryCompression::Default,
            EntryCompression::Zlib,
            EntryCompression::Fast,
            EntryCompression::None,
        ] {
            let fixed = S::from(mode);
            assert_eq!(fixed.fixed(), Some(mode));
            assert_eq!(fixed.resolve(Some(1)), mode);
            assert_eq!(fixed.resolve(None), mode);
        }
    }
}
