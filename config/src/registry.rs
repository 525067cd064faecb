//! The list of every setting: its dotted name, its type, its environment variable and what it means.
//!
//! This table is the single source for three things: turning environment variables and `--set`
//! strings into typed values, rejecting unknown keys with a clear message, and the settings
//! reference printed by `--help` and kept in `docs/configuration.md`. A unit test checks that it
//! names exactly the fields of [`crate::Config`].

use std::fmt::Write as _;

/// What kind of value a setting holds, which decides how a string from the environment or a
/// `--set` flag is read and how a TOML value is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Free text.
    Str,
    /// Text that is never printed (passwords, the salt).
    Secret,
    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off` from strings).
    Bool,
    /// A whole number from 0 to the given maximum.
    UInt(u64),
    /// Seconds, integer or decimal (`0.1`).
    Secs,
    /// `IP:port`.
    Addr,
    /// A file or folder.
    Path,
    /// One of the listed words.
    Enum(&'static [&'static str]),
    /// A list of strings (comma-separated in the environment and `--set`).
    List,
}

impl Kind {
    /// Human name of the type, for help output and errors.
    pub fn describe(self) -> String {
        match self {
            Kind::Str | Kind::Secret => "string".into(),
            Kind::Bool => "bool".into(),
            Kind::UInt(max) => format!("integer 0..={max}"),
            Kind::Secs => "seconds".into(),
            Kind::Addr => "ip:port".into(),
            Kind::Path => "path".into(),
            Kind::Enum(words) => words.join("|"),
            Kind::List => "list of strings".into(),
        }
    }
}

/// One setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// Dotted name, as in the TOML file (`queue.num_queue_workers`).
    pub key: &'static str,
    /// Value type.
    pub kind: Kind,
    /// What it does.
    pub help: &'static str,
}

impl Setting {
    /// The environment variable that sets it: `MATOMO_TIER__` then the key in upper case with
    /// `.` written as `__` (`MATOMO_TIER__QUEUE__NUM_QUEUE_WORKERS`).
    pub fn env_var(&self) -> String {
        format!(
            "{ENV_PREFIX}{}",
            self.key.replace('.', "__").to_ascii_uppercase()
        )
    }
}

/// Prefix of the environment variables that set settings.
pub const ENV_PREFIX: &str = "MATOMO_TIER__";

const U16: u64 = u16::MAX as u64;
const U32: u64 = u32::MAX as u64;
const U64: u64 = u64::MAX;
const USIZE: u64 = u32::MAX as u64;

macro_rules! s {
    ($key:literal, $kind:expr, $help:literal) => {
        Setting {
            key: $key,
            kind: $kind,
            help: $help,
        }
    };
}

/// Every setting, in the order of the reference documentation.
pub static SETTINGS: &[Setting] = &[
    s!("redis.host", Kind::Str, "Redis host, host:port or IPv6 address (for sentinel/cluster: a comma-separated list of them, all given to the client), or the path of a Unix socket (starting with /; standalone only). Matomo: [QueuedTracking] redisHost (with redisPort's list zipped in)."),
    s!("redis.port", Kind::UInt(U16), "Redis TCP port of the hosts that name none (unused, and may be 0, with a Unix socket); 26379 by default with backend = sentinel. Matomo: [QueuedTracking] redisPort."),
    s!("redis.database", Kind::UInt(255), "Redis logical database. Matomo: [QueuedTracking] redisDatabase."),
    s!("redis.password", Kind::Secret, "Redis AUTH password; empty means none. Never logged. Matomo: [QueuedTracking] redisPassword."),
    s!("redis.backend", Kind::Enum(&["standalone", "sentinel", "cluster"]), "Redis deployment. Matomo: [QueuedTracking] useWhatRedisBackendType 1/2/3."),
    s!("redis.sentinel_master", Kind::Str, "Sentinel master (service) name for backend = sentinel. Matomo: [QueuedTracking] sentinelMasterName."),
    s!("redis.pool_size", Kind::UInt(1024), "Redis connections per process. An ingest node uses at least one per thread (ingest.threads) and writes through one writer per connection; fewer writers batch more entries per command; a worker uses at least 2 x worker.pool_size + 2."),
    s!("redis.command_timeout", Kind::Secs, "Timeout of one Redis command."),
    s!("database.host", Kind::Str, "MySQL/MariaDB host. Matomo: [database] host."),
    s!("database.port", Kind::UInt(U16), "MySQL/MariaDB port. Matomo: [database] port."),
    s!("database.username", Kind::Str, "MySQL user. Matomo: [database] username."),
    s!("database.password", Kind::Secret, "MySQL password. Never logged. Matomo: [database] password."),
    s!("database.dbname", Kind::Str, "Database (schema) name. Matomo: [database] dbname."),
    s!("database.tables_prefix", Kind::Str, "Prefix of Matomo's tables (letters, digits, _). Matomo: [database] tables_prefix."),
    s!("database.pool_size", Kind::UInt(1024), "MySQL connections per process."),
    s!("queue.num_queue_workers", Kind::UInt(U16), "Number of queues (shards), 1..=4096; ingest and workers must agree. Matomo: [QueuedTracking] numQueueWorkers."),
    s!("queue.num_requests_to_process", Kind::UInt(USIZE), "Queue entries a worker takes per batch. Matomo: [QueuedTracking] numRequestsToProcess (25 there)."),
        s!("queue.compression", Kind::Enum(&["auto", "default", "zlib", "fast", "none"]), "How the ingest stores queue entries. auto (recommended) = none when Redis compresses list nodes itself (list-compress-depth 1 or more: Redis' LZF over whole nodes, ~390 B per realistic hit), else default; decided at start-up and logged. default = zlib data from the ingest's own encoder (dynamic Huffman; as small as zlib -9, ~3% smaller than PHP's gzcompress, less CPU than zlib -6), zlib = exactly PHP's gzcompress (byte-identical, zlib level 6), fast = zlib data from a greedy fixed-Huffman encoder (least CPU of the compressed forms, ~25% larger), none = raw JSON (least CPU; ~1.6x larger than default without Redis list compression). PHP and Rust workers read all of them."),
    s!("queue.key_prefix", Kind::Str, "Prefix before every Redis key of the tier; empty in production (PHP-compatible keys), random in tests."),
    s!("matomo.salt", Kind::Secret, "[General] salt: hashes token_auth and enters config_id. Never logged. Required with --matomo-config."),
    s!("matomo.vendor_dir", Kind::Path, "Folder laid out like a Matomo install's vendor/matomo/ (device-detector/regexes, searchengine-and-social-list, referrer-spam-list). Flag --matomo-vendor; defaults to <install>/vendor/matomo beside --matomo-config."),
    s!("matomo.geoip_db", Kind::Path, "MaxMind-format GeoIP database (.mmdb). Flag --geoip-db."),
    s!("matomo.device_detector", Kind::Enum(&["auto", "6.3", "6.4"]), "DeviceDetector release to reproduce; must match the regexes in vendor_dir (Matomo 5.1 ships 6.3, 5.2+ ships 6.4). auto reads VERSION from vendor_dir/device-detector/DeviceDetector.php, else 6.4."),
    s!("matomo.tracker.record_statistics", Kind::Bool, "[Tracker] record_statistics: false answers 503 and records nothing."),
    s!("matomo.tracker.visit_standard_length", Kind::UInt(U32), "[Tracker] visit_standard_length: seconds of inactivity that end a visit."),
    s!("matomo.tracker.window_look_back_for_visitor", Kind::UInt(U32), "[Tracker] window_look_back_for_visitor: seconds to look back when matching a visitor by config_id."),
    s!("matomo.tracker.trust_visitors_cookies", Kind::Bool, "[Tracker] trust_visitors_cookies."),
    s!("matomo.tracker.enable_userid_overwrites_visitorid", Kind::Bool, "[Tracker] enable_userid_overwrites_visitorid."),
    s!("matomo.tracker.create_new_visit_when_campaign_changes", Kind::Bool, "[Tracker] create_new_visit_when_campaign_changes."),
    s!("matomo.tracker.create_new_visit_when_website_referrer_changes", Kind::Bool, "[Tracker] create_new_visit_when_website_referrer_changes."),
    s!("matomo.tracker.create_new_visit_after_midnight", Kind::Bool, "[Tracker] create_new_visit_after_midnight."),
    s!("matomo.tracker.create_new_visit_after_x_actions", Kind::UInt(U32), "[Tracker] create_new_visit_after_x_actions."),
    s!("matomo.tracker.page_maximum_length", Kind::UInt(USIZE), "[Tracker] page_maximum_length: longest stored URL/title."),
    s!("matomo.tracker.tracking_requests_require_authentication_when_custom_timestamp_newer_than", Kind::UInt(U64), "[Tracker] same name: cdt newer than this many seconds needs token_auth."),
    s!("matomo.tracker.tracking_requests_require_authentication", Kind::Bool, "[Tracker] tracking_requests_require_authentication: cip/cdt/... need token_auth."),
    s!("matomo.tracker.enable_fingerprinting_across_websites", Kind::Bool, "[Tracker] enable_fingerprinting_across_websites."),
    s!("matomo.tracker.ignore_visits_cookie_name", Kind::Str, "[Tracker] ignore_visits_cookie_name."),
    s!("matomo.tracker.exclude_requests", Kind::Str, "[Tracker] exclude_requests: comma-separated rules such as e_c==Media or action_name=@privacy (==, !=, =@, !@, =^, =$); matching requests are not recorded."),
    s!("matomo.tracker.action_title_category_delimiter", Kind::Str, "[General] action_title_category_delimiter: when set, page titles are split on it, parts trimmed, empty parts dropped."),
    s!("matomo.tracker.proxy_client_headers", Kind::List, "[General] proxy_client_headers[]: headers holding the client IP, e.g. HTTP_X_FORWARDED_FOR."),
    s!("matomo.tracker.proxy_ips", Kind::List, "[General] proxy_ips[]: peers (IPs or CIDR ranges) trusted to set those headers."),
    s!("ingest.listen", Kind::Addr, "Address serving hits, /healthz, /readyz and /metrics."),
    s!("ingest.threads", Kind::UInt(1024), "Lanes: threads that serve connections and write to Redis, each with its own Redis connection (accepting and background work run on one more thread); 0: TOKIO_WORKER_THREADS when set, else one per CPU the process may use."),
    s!("ingest.direct_redis_writes", Kind::Bool, "Queue writes to a standalone Redis (redis.backend = standalone) go over each writer's own connection, a batch's RPUSH commands encoded and written at once, instead of through the Redis client library (~3.7 us of node CPU per command); same write-once semantics. false: through the client, as Sentinel and Cluster always do."),
    s!("ingest.path_prefix", Kind::Str, "Path the tracker lives under (starts and ends with /)."),
    s!("ingest.static_dir", Kind::Path, "Folder served for matomo.js, piwik.js and other static files."),
    s!("ingest.max_body_bytes", Kind::UInt(U64), "Largest request body accepted (413 above)."),
    s!("ingest.max_bulk_requests", Kind::UInt(USIZE), "Largest number of entries in one bulk request."),
    s!("ingest.max_url_bytes", Kind::UInt(USIZE), "Longest request URI accepted (414 above)."),
    s!("ingest.read_timeout", Kind::Secs, "Time allowed to read headers and body."),
    s!("ingest.site_cache_refresh", Kind::Secs, "How often the site/token cache is refreshed from MySQL."),
    s!("ingest.spool.dir", Kind::Path, "Local spool folder used while Redis is unavailable; unset disables the spool."),
    s!("ingest.spool.max_bytes", Kind::UInt(U64), "Largest total spool size (503 beyond)."),
    s!("ingest.spool.fsync", Kind::Enum(&["always", "interval", "never"]), "When the spool calls fsync."),
    s!("ingest.spool.fsync_interval", Kind::Secs, "Period of the interval fsync policy."),
    s!("ingest.spool.redis_deadline", Kind::Secs, "A Redis write slower than this sends the following hits to the spool until Redis answers a PING within it on every connection of the node."),
    s!("ingest.redis_memory_high_bytes", Kind::UInt(U64), "Redis used_memory above which hits go to the spool; 0 disables the guard."),
    s!("ingest.redis_memory_low_bytes", Kind::UInt(U64), "Redis used_memory at or below which spooling stops (0: the high watermark)."),
    s!("ingest.redis_queue_high_entries", Kind::UInt(U64), "Entries in all queue lists above which hits go to the spool; 0 disables this guard."),
    s!("ingest.redis_queue_low_entries", Kind::UInt(U64), "Entries in all queue lists at or below which spooling stops (0: the high watermark)."),
    s!("ingest.shutdown_grace", Kind::Secs, "On shutdown, how long /readyz fails while hits are still served."),
    s!("worker.listen", Kind::Addr, "Address serving the worker's /healthz, /readyz and /metrics."),
    s!("worker.pool_size", Kind::UInt(4096), "Worker tasks in this process (each holds one shard lock at a time)."),
    s!("worker.lock_ttl", Kind::Secs, "TTL of a shard lock (renewed at a third of it while working)."),
    s!("worker.max_batch_wait", Kind::Secs, "Longest a partial batch waits before it is processed anyway."),
    s!("worker.idle_sleep", Kind::Secs, "Pause of a worker that found every shard empty or locked."),
    s!("worker.min_backoff", Kind::Secs, "First back-off after a transient failure."),
    s!("worker.max_backoff", Kind::Secs, "Longest back-off after transient failures."),
    s!("worker.statement_timeout", Kind::Secs, "Limit of one statement in the worker's MySQL sessions (MariaDB max_statement_time; MySQL max_execution_time, which only limits SELECT); 0 turns it off. A timed-out statement is retried like a deadlock."),
    s!("log.format", Kind::Enum(&["text", "json"]), "Log line format."),
    s!("log.level", Kind::Str, "tracing EnvFilter directive, e.g. info or matomo_worker=debug,info."),
];

/// The setting with this dotted name.
pub fn find(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

/// Whether `prefix` names a section (a table) that holds settings, e.g. `ingest.spool`.
pub fn is_section(prefix: &str) -> bool {
    SETTINGS.iter().any(|s| {
        s.key.len() > prefix.len()
            && s.key.starts_with(prefix)
            && s.key.as_bytes()[prefix.len()] == b'.'
    })
}

/// The setting an environment variable name refers to, if it is one of ours.
pub fn key_for_env(var: &str) -> Option<String> {
    let rest = var.strip_prefix(ENV_PREFIX)?;
    Some(
        rest.split("__")
            .map(str::to_ascii_lowercase)
            .collect::<Vec<_>>()
            .join("."),
    )
}

/// Plain-text reference of every setting, for `--help`.
pub fn help_text() -> String {
    let defaults = crate::settings::default_values();
    let mut out = String::from(
        "Settings (TOML `[section] key = value`, env MATOMO_TIER__SECTION__KEY, or --set section.key=value;\n\
         later sources win: defaults < --matomo-config < --config < environment < flags):\n",
    );
    for s in SETTINGS {
        let default = defaults.get(s.key).map(String::as_str).unwrap_or("(none)");
        let _ = writeln!(
            out,
            "  {} ({}; default {})\n      {}",
            s.key,
            s.kind.describe(),
            default,
            s.help
        );
    }
    out
}

/// Markdown table of every setting, kept in `docs/configuration.md` (a test checks it is current).
pub fn markdown_table() -> String {
    let defaults = crate::settings::default_values();
    let mut out = String::from("| setting | type | default | environment variable | meaning |\n| --- | --- | --- | --- | --- |\n");
    for s in SETTINGS {
        let default = defaults.get(s.key).map(String::as_str).unwrap_or("(none)");
        let _ = writeln!(
            out,
            "| `{}` | {} | `{}` | `{}` | {} |",
            s.key,
            s.kind.describe().replace('|', "\\|"),
            default.replace('|', "\\|"),
            s.env_var(),
            s.help.replace('|', "\\|")
        );
    }
    out
}
