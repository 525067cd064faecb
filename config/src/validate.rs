//! Start-up validation of a merged [`Config`]: ranges, relations between settings, files that
//! must exist. Pure checks on values and the local file system; never the network.
//!
//! Each failure is one [`ConfigError::Invalid`] naming the setting, its value (secrets redacted),
//! the problem and where the value came from.

use std::path::Path;

use crate::error::{ConfigError, Origin};
use crate::settings::{Config, FsyncPolicy, RedisBackend};

/// Sub-folders a `matomo.vendor_dir` must have (the layout of a Matomo install's `vendor/matomo/`).
pub const VENDOR_SUBDIRS: &[&str] = &[
    "device-detector/regexes",
    "searchengine-and-social-list",
    "referrer-spam-list",
];

/// What [`is_safe_table_prefix`] requires, as the refusal says it.
pub const TABLE_PREFIX_RULE: &str = "may only contain letters, digits and _";

/// Whether a table prefix may be put into SQL as it is: letters, digits and `_` only.
pub fn is_safe_table_prefix(prefix: &str) -> bool {
    prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks `config`. `with_matomo_config` says whether a Matomo config.ini.php was read (then the
/// salt is required); `origin` tells where a setting's value came from.
pub fn validate(
    config: &Config,
    with_matomo_config: bool,
    origin: &dyn Fn(&str) -> Origin,
) -> Result<(), ConfigError> {
    let fail = |key: &str, value: String, problem: &str| ConfigError::Invalid {
        key: key.to_string(),
        value,
        problem: problem.to_string(),
        origin: Box::new(origin(key)),
    };
    let check = |ok: bool, key: &str, value: String, problem: &str| {
        if ok {
            Ok(())
        } else {
            Err(fail(key, value, problem))
        }
    };

    let q = &config.queue;
    check(
        (1..=4096).contains(&q.num_queue_workers),
        "queue.num_queue_workers",
        q.num_queue_workers.to_string(),
        "must be between 1 and 4096",
    )?;
    check(
        q.num_requests_to_process >= 1,
        "queue.num_requests_to_process",
        q.num_requests_to_process.to_string(),
        "must be at least 1",
    )?;
    check(
        q.key_prefix
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control()),
        "queue.key_prefix",
        format!("{:?}", q.key_prefix),
        "must not contain spaces or control characters",
    )?;

    let r = &config.redis;
    check(
        !r.host.trim().is_empty(),
        "redis.host",
        "\"\"".into(),
        "must not be empty",
    )?;
    check(
        r.port != 0 || r.is_unix_socket(),
        "redis.port",
        "0".into(),
        "must be a TCP port from 1 to 65535 (0 only with a Unix socket as redis.host)",
    )?;
    check(
        !r.host.contains("://"),
        "redis.host",
        format!("{:?}", r.host),
        "takes a host name or address (for sentinel or cluster a comma-separated host[:port] \
         list) or a Unix socket path, not a URL; TLS to Redis (phpredis' tls://) is not \
         supported: terminate it in a local proxy such as stunnel and name the proxy here",
    )?;
    if !r.is_unix_socket() {
        let servers = r
            .servers()
            .map_err(|problem| fail("redis.host", format!("{:?}", r.host), &problem))?;
        check(
            servers.len() == 1 || r.backend != RedisBackend::Standalone,
            "redis.host",
            format!("{:?}", r.host),
            "lists several hosts, which only redis.backend = \"sentinel\" or \"cluster\" takes",
        )?;
    }
    check(
        !r.is_unix_socket() || r.backend == RedisBackend::Standalone,
        "redis.host",
        format!("{:?}", r.host),
        "is a Unix socket path, which only redis.backend = \"standalone\" can use",
    )?;
    check(
        r.pool_size >= 1,
        "redis.pool_size",
        r.pool_size.to_string(),
        "must be at least 1",
    )?;
    check(
        !r.command_timeout.is_zero(),
        "redis.command_timeout",
        "0".into(),
        "must be greater than 0",
    )?;
    check(
        r.backend != RedisBackend::Sentinel || !r.sentinel_master.trim().is_empty(),
        "redis.sentinel_master",
        "\"\"".into(),
        "is required when redis.backend = \"sentinel\"",
    )?;

    let d = &config.database;
    check(
        !d.host.trim().is_empty(),
        "database.host",
        "\"\"".into(),
        "must not be empty",
    )?;
    check(
        d.port != 0,
        "database.port",
        "0".into(),
        "must be a TCP port from 1 to 65535",
    )?;
    check(
        !d.username.is_empty(),
        "database.username",
        "\"\"".into(),
        "must not be empty",
    )?;
    check(
        !d.dbname.is_empty()
            && d.dbname
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$'),
        "database.dbname",
        format!("{:?}", d.dbname),
        "must be a non-empty database name (letters, digits, _ - $)",
    )?;
    check(
        is_safe_table_prefix(&d.tables_prefix),
        "database.tables_prefix",
        format!("{:?}", d.tables_prefix),
        TABLE_PREFIX_RULE,
    )?;
    check(
        d.pool_size >= 1,
        "database.pool_size",
        d.pool_size.to_string(),
        "must be at least 1",
    )?;

    let m = &config.matomo;
    check(
        !with_matomo_config || !m.salt.is_empty(),
        "matomo.salt",
        "\"\"".into(),
        "is empty: the Matomo config has no [General] salt, needed to check token_auth and compute config_id",
    )?;
    if let Some(dir) = &m.vendor_dir {
        check(
            dir.is_dir(),
            "matomo.vendor_dir",
            dir.display().to_string(),
            "is not a folder",
        )?;
        if let Some(missing) = VENDOR_SUBDIRS.iter().find(|sub| !dir.join(sub).is_dir()) {
            return Err(fail(
                "matomo.vendor_dir",
                dir.display().to_string(),
                &format!(
                    "has no {missing}/ (expected the layout of a Matomo install's vendor/matomo/)"
                ),
            ));
        }
    }
    if let Some(file) = &m.geoip_db {
        check(
            file.is_file(),
            "matomo.geoip_db",
            file.display().to_string(),
            "is not a readable file",
        )?;
    }
    for (i, entry) in m.tracker.proxy_ips.iter().enumerate() {
        let ok = entry.parse::<std::net::IpAddr>().is_ok() || entry.parse::<ipnet::IpNet>().is_ok();
        check(
            ok,
            "matomo.tracker.proxy_ips",
            format!("[{i}] {entry:?}"),
            "is neither an IP address nor a CIDR range",
        )?;
    }
    check(
        m.tracker.visit_standard_length >= 1,
        "matomo.tracker.visit_standard_length",
        "0".into(),
        "must be at least 1 second",
    )?;
    check(
        m.tracker.create_new_visit_after_x_actions >= 1,
        "matomo.tracker.create_new_visit_after_x_actions",
        "0".into(),
        "must be at least 1",
    )?;
    check(
        m.tracker.page_maximum_length >= 1,
        "matomo.tracker.page_maximum_length",
        "0".into(),
        "must be at least 1",
    )?;

    let i = &config.ingest;
    check(
        i.path_prefix.starts_with('/') && i.path_prefix.ends_with('/'),
        "ingest.path_prefix",
        format!("{:?}", i.path_prefix),
        "must start and end with /",
    )?;
    if let Some(dir) = &i.static_dir {
        check(
            dir.is_dir(),
            "ingest.static_dir",
            dir.display().to_string(),
            "is not a folder",
        )?;
    }
    check(
        i.max_body_bytes >= 1,
        "ingest.max_body_bytes",
        "0".into(),
        "must be at least 1",
    )?;
    check(
        i.max_bulk_requests >= 1,
        "ingest.max_bulk_requests",
        "0".into(),
        "must be at least 1",
    )?;
    check(
        i.max_url_bytes >= 1,
        "ingest.max_url_bytes",
        "0".into(),
        "must be at least 1",
    )?;
    check(
        !i.read_timeout.is_zero(),
        "ingest.read_timeout",
        "0".into(),
        "must be greater than 0",
    )?;
    check(
        !i.site_cache_refresh.is_zero(),
        "ingest.site_cache_refresh",
        "0".into(),
        "must be greater than 0",
    )?;
    check(
        i.redis_memory_low_bytes <= i.redis_memory_high_bytes,
        "ingest.redis_memory_low_bytes",
        i.redis_memory_low_bytes.to_string(),
        "must not exceed ingest.redis_memory_high_bytes",
    )?;
    check(
        i.redis_queue_low_entries <= i.redis_queue_high_entries,
        "ingest.redis_queue_low_entries",
        i.redis_queue_low_entries.to_string(),
        "must not exceed ingest.redis_queue_high_entries",
    )?;
    if let Some(dir) = &i.spool.dir {
        check(
            !dir.exists() || dir.is_dir(),
            "ingest.spool.dir",
            dir.display().to_string(),
            "exists but is not a folder",
        )?;
        let parent_ok = dir.exists()
            || dir
                .parent()
                .is_none_or(|p| p.as_os_str().is_empty() || Path::new(p).is_dir());
        check(
            parent_ok,
            "ingest.spool.dir",
            dir.display().to_string(),
            "cannot be created: its parent folder does not exist",
        )?;
    }
    check(
        i.spool.fsync != FsyncPolicy::Interval || !i.spool.fsync_interval.is_zero(),
        "ingest.spool.fsync_interval",
        "0".into(),
        "must be greater than 0 when ingest.spool.fsync = \"interval\"",
    )?;

    let w = &config.worker;
    check(
        (1..=4096).contains(&w.pool_size),
        "worker.pool_size",
        w.pool_size.to_string(),
        "must be between 1 and 4096",
    )?;
    check(
        w.lock_ttl.as_secs() >= 1,
        "worker.lock_ttl",
        format!("{}", w.lock_ttl.as_secs_f64()),
        "must be at least 1 second",
    )?;
    check(
        w.min_backoff <= w.max_backoff,
        "worker.min_backoff",
        format!("{}", w.min_backoff.as_secs_f64()),
        "must not exceed worker.max_backoff",
    )?;

    check(
        tracing_subscriber::EnvFilter::try_new(&config.log.level).is_ok(),
        "log.level",
        format!("{:?}", config.log.level),
        "is not a valid filter (e.g. info, or matomo_worker=debug,info)",
    )?;
    Ok(())
}
