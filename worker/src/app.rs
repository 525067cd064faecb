//! Start-up and the long-running modes of the worker binary: connect to Redis and MySQL (one
//! clear error naming the settings when that fails), build the tracker and the engine, serve
//! `/healthz`, `/readyz`, `/metrics`, and run the pool (`run`) or process cycles (`process`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable as _;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::engine::{Engine, EngineError, EngineOptions, RunSummary};
use crate::metrics::Metrics;
use crate::tracker::{Tracker, TrackerError};

/// Why the worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Redis unreachable or refusing the credentials.
    #[error(
        "cannot connect to Redis at {url} (settings redis.host, redis.port, redis.database, redis.password): {source}"
    )]
    Redis {
        /// The URL with the password redacted.
        url: String,
        /// The client's error.
        source: fred::error::Error,
    },
    /// Redis Cluster is configured, which the engine cannot use.
    #[error(
        "redis.backend = cluster is not supported by matomo-worker: its lock and trim scripts touch the queue, lock, trimmed-batch and dead-letter keys, which lie in different hash slots (CROSSSLOT); use standalone or sentinel"
    )]
    ClusterUnsupported,
    /// MySQL unreachable or refusing the credentials.
    #[error(
        "cannot connect to MySQL at {url} (settings database.host, database.port, database.username, database.password, database.dbname): {source}"
    )]
    Mysql {
        /// The URL with the password redacted.
        url: String,
        /// The driver's error.
        source: mysql_async::Error,
    },
    /// The tracker could not load its configuration tables or data files.
    #[error("cannot start the tracker: {0}")]
    Tracker(#[from] TrackerError),
    /// The engine refused its options or could not prepare its table/scripts.
    #[error("cannot start the engine: {0}")]
    Engine(#[from] EngineError),
    /// The HTTP address is not available.
    #[error("cannot listen on {addr} (setting worker.listen): {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Connected backends.
#[derive(Clone)]
pub struct Backends {
    /// The configuration in force.
    pub config: tier_config::Config,
    /// Redis.
    pub redis: fred::clients::Pool,
    /// MySQL.
    pub mysql: mysql_async::Pool,
}

/// Connects to Redis only (commands that do not need MySQL).
pub async fn connect_redis(
    config: &tier_config::Config,
) -> Result<fred::clients::Pool, StartupError> {
    crate::engine::redis::connect(config)
        .await
        .map_err(|source| StartupError::Redis {
            url: config.redis_url_redacted(),
            source,
        })
}

/// The session settings Matomo's database adapter applies to every connection.
pub const MATOMO_SQL_MODE: &str = "SET sql_mode = 'NO_AUTO_VALUE_ON_ZERO'";

/// The statement that limits how long one statement of a session may run on a server whose
/// `SELECT VERSION()` is `server_version`; `None` when `timeout` is zero (no limit).
///
/// MariaDB: `max_statement_time` in seconds, for every statement. MySQL: `max_execution_time`
/// in milliseconds, which only limits read-only SELECTs (writes are bounded there by
/// `innodb_lock_wait_timeout` only).
pub fn statement_timeout_sql(server_version: &str, timeout: Duration) -> Option<String> {
    if timeout.is_zero() {
        None
    } else if server_version.to_ascii_lowercase().contains("mariadb") {
        Some(format!(
            "SET SESSION max_statement_time = {}",
            timeout.as_secs_f64()
        ))
    } else {
        Some(format!(
            "SET SESSION max_execution_time = {}",
            timeout.as_millis().max(1)
        ))
    }
}

/// Connects to MySQL (with Matomo's session `sql_mode` and the worker's statement timeout,
/// `worker.statement_timeout`) and checks the connection works.
pub async fn connect_mysql(
    config: &tier_config::Config,
) -> Result<mysql_async::Pool, StartupError> {
    let err = |source| StartupError::Mysql {
        url: config.mysql_url_redacted(),
        source,
    };
    let opts = mysql_async::Opts::from_url(&config.mysql_url()).map_err(|e| err(e.into()))?;
    let max = config
        .database
        .pool_size
        .max(config.worker.pool_size * 2 + 2);
    let constraints = mysql_async::PoolConstraints::new(0, max).unwrap_or_default();
    // Matomo's own connections run with `sql_mode = NO_AUTO_VALUE_ON_ZERO` (core/Db.php
    // SQL_MODE), i.e. without STRICT_TRANS_TABLES: an out-of-range number is clamped and an
    // over-long string cut, with a warning. Without this, a server whose default is strict
    // (MariaDB's is) rejects rows PHP writes, e.g. a negative `visitor_seconds_since_order`.
    let mut init = vec![MATOMO_SQL_MODE.to_owned()];
    // The server flavour decides how the statement timeout is set.
    let mut probe = mysql_async::Conn::new(opts.clone()).await.map_err(err)?;
    let version: Option<String> = probe.query_first("SELECT VERSION()").await.map_err(err)?;
    let _ = probe.disconnect().await;
    let version = version.unwrap_or_default();
    if let Some(sql) = statement_timeout_sql(&version, config.worker.statement_timeout) {
        init.push(sql);
    }
    let opts = mysql_async::OptsBuilder::from_opts(opts)
        .init(init)
        .pool_opts(mysql_async::PoolOpts::default().with_constraints(constraints));
    let pool = mysql_async::Pool::new(opts);
    let mut conn = pool.get_conn().await.map_err(err)?;
    conn.ping().await.map_err(err)?;
    Ok(pool)
}

/// Connects to both, for the engine (`run`, `process`): refuses Redis Cluster first.
pub async fn connect(config: &tier_config::Config) -> Result<Backends, StartupError> {
    if config.redis.backend == tier_config::RedisBackend::Cluster {
        return Err(StartupError::ClusterUnsupported);
    }
    let redis = connect_redis(config).await?;
    let mysql = connect_mysql(config).await?;
    Ok(Backends {
        config: config.clone(),
        redis,
        mysql,
    })
}

/// Builds the engine over the tracker core; `warm_up`: compile the device-detection patterns
/// in the background ([`Tracker::warm_up`]), for long-running workers.
pub async fn tracker_engine(
    backends: &Backends,
    opts: EngineOptions,
    warm_up: bool,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<Engine<Tracker>, StartupError> {
    let tracker = Arc::new(Tracker::new(&backends.config, backends.mysql.clone()).await?);
    if warm_up {
        // In the background: batches are processed meanwhile, compiling what they need.
        let t = tracker.clone();
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            match t.warm_up() {
                Ok(()) => tracing::info!(
                    secs = started.elapsed().as_secs_f64(),
                    "device detection patterns compiled"
                ),
                Err(e) => tracing::warn!(error = %e, "device detection patterns"),
            }
        });
    }
    Ok(Engine::new(
        backends.redis.clone(),
        backends.mysql.clone(),
        tracker,
        opts,
        metrics,
        shutdown,
    )
    .await?)
}

/// Engine options from the configuration plus the test hook environment variable
/// `MATOMO_WORKER_TEST_PAUSE_AFTER_COMMIT` (for crash tests only).
pub fn engine_options(config: &tier_config::Config) -> EngineOptions {
    let mut opts = EngineOptions::from_config(config);
    opts.pause_after_commit = std::env::var("MATOMO_WORKER_TEST_PAUSE_AFTER_COMMIT")
        .ok()
        .and_then(|v| v.trim().parse().ok());
    opts
}

/// `run`: the worker pool with its HTTP endpoints, until `shutdown` fires.
pub async fn run(
    backends: Backends,
    shutdown: CancellationToken,
) -> Result<RunSummary, StartupError> {
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry));
    let addr = backends.config.worker.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Listen { addr, source })?;
    let engine = tracker_engine(
        &backends,
        engine_options(&backends.config),
        true,
        metrics,
        shutdown.clone(),
    )
    .await?;
    let http = crate::http::HttpState::new(
        registry,
        backends.redis.clone(),
        backends.mysql.clone(),
        shutdown.clone(),
    );
    match crate::commands::check::eviction_warning(&backends.redis).await {
        Ok(None) => {}
        Ok(Some(risk)) => tracing::warn!("Redis maxmemory-policy: {risk}"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read Redis maxmemory-policy (CONFIG disabled?); make sure it is noeviction")
        }
    }
    let server = tokio::spawn(crate::http::serve(listener, http, shutdown.clone()));
    tracing::info!(
        %addr,
        queues = backends.config.queue.num_queue_workers,
        tasks = backends.config.worker.pool_size,
        batch = backends.config.queue.num_requests_to_process,
        "matomo-worker running"
    );
    let summary = engine.run().await?;
    let _ = server.await;
    Ok(summary)
}

/// `process`: `cycles` passes over the queues (0: until shutdown), `sleep` apart. `once` also
/// takes every remainder smaller than a batch without waiting.
pub async fn process(
    backends: Backends,
    queue_id: Option<u16>,
    once: bool,
    cycles: u64,
    sleep: Duration,
    shutdown: CancellationToken,
) -> Result<RunSummary, StartupError> {
    let (_, metrics) = crate::metrics::standalone();
    let mut opts = engine_options(&backends.config);
    opts.only_queue = queue_id;
    let engine = tracker_engine(&backends, opts, false, metrics, shutdown.clone()).await?;
    let mut total = RunSummary::default();
    let mut cycle = 0u64;
    loop {
        let started = std::time::Instant::now();
        let summary = if once {
            engine.drain().await?
        } else {
            engine.drain_due().await?
        };
        let secs = started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            summary.processed as f64 / secs
        } else {
            0.0
        };
        tracing::info!(
            processed = summary.processed,
            dead_lettered = summary.dead_lettered,
            already_committed = summary.already_committed,
            "this worker finished queue processing with {rate:.2} entries/s ({} entries in {secs:.2} s)",
            summary.processed
        );
        total.processed += summary.processed;
        total.batches += summary.batches;
        total.dead_lettered += summary.dead_lettered;
        total.dropped += summary.dropped;
        total.already_committed += summary.already_committed;
        total.requests_recorded += summary.requests_recorded;
        cycle += 1;
        if once || (cycles != 0 && cycle >= cycles) || shutdown.is_cancelled() {
            return Ok(total);
        }
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = shutdown.cancelled() => return Ok(total),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_timeout_follows_the_server_flavour() {
        let minute = Duration::from_secs(60);
        assert_eq!(
            statement_timeout_sql("10.11.6-MariaDB-0+deb12u1", minute).as_deref(),
            Some("SET SESSION max_statement_time = 60")
        );
        assert_eq!(
            statement_timeout_sql("10.11.6-MariaDB", Duration::from_millis(1500)).as_deref(),
            Some("SET SESSION max_statement_time = 1.5")
        );
        assert_eq!(
            statement_timeout_sql("8.0.36", minute).as_deref(),
            Some("SET SESSION max_execution_time = 60000")
        );
        assert_eq!(statement_timeout_sql("8.0.36", Duration::ZERO), None);
    }
}
