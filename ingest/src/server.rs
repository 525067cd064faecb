//! Start-up, the accept loop and graceful shutdown.
//!
//! [`serve`] connects Redis and MySQL (a failure is a [`StartupError`] naming the setting), opens
//! the local spool when one is configured, loads the site cache, starts its refresher, the
//! [`Lanes`] with a Redis connection and writer each, the spool replayer and the Redis guard, and
//! serves HTTP/1.1 and HTTP/2 ([`conn`]) on the given listener: it accepts on the caller's
//! runtime and hands each connection to the lane with the fewest open connections.
//!
//! When `shutdown` is cancelled: `/readyz` starts failing, requests are still served for
//! `ingest.shutdown_grace`, then the listener closes, in-flight requests finish, the writers and
//! the spool flush, the lanes stop, and `serve` returns.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tier_config::{CompressionSetting, Config, EntryCompression, RedisBackend};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::conn::{self, Shared};
use crate::env::{ProxyConfigError, ProxyPolicy};
use crate::http::static_files::StaticFiles;
use crate::http::{router, AppState, Settings};
use crate::lanes::Lanes;
use crate::metrics::Metrics;
use crate::queue::redis::{check_reachable, RedisSink};
use crate::queue::Routing;
use crate::sites::SiteCache;
use crate::spool::{OpenError, Spool, SpoolingSink};

/// Why the node could not start. Each renders as one line naming the setting or service.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Redis or MySQL unreachable or refusing us (names the settings to check).
    #[error(transparent)]
    Unreachable(#[from] tier_config::ConfigError),
    /// Bad proxy settings.
    #[error(transparent)]
    Proxy(#[from] ProxyConfigError),
    /// The spool folder could not be opened.
    #[error(transparent)]
    Spool(#[from] OpenError),
    /// A lane's thread or runtime could not be started.
    #[error("ingest.threads: cannot start {threads} lanes: {error}")]
    Lanes {
        /// How many lanes were to start.
        threads: usize,
        /// Why not.
        error: std::io::Error,
    },
    /// The listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}

/// Longest wait for in-flight requests after shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the ingest node on `listener` until `shutdown` is cancelled.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartupError> {
    let redis_err = |reason: String| tier_config::ConfigError::redis_failed(&config, reason);
    check_reachable(&config.redis).await.map_err(redis_err)?;
    let metrics = Arc::new(Metrics::new());
    let threads = lane_count(config.ingest.threads);
    let lanes = Lanes::start(metrics.lane_connections(threads))
        .map_err(|error| StartupError::Lanes { threads, error })?;
    let direct =
        config.ingest.direct_redis_writes && config.redis.backend == RedisBackend::Standalone;
    let redis = RedisSink::connect(&config.redis, &config.queue.key_prefix, &lanes, direct)
        .await
        .map_err(redis_err)?;
    let compression = entry_compression(config.queue.compression, &redis).await;
    metrics.entry_compression(compression);
    let spool = match &config.ingest.spool.dir {
        Some(dir) => Some(Spool::open(
            &config.ingest.spool,
            dir,
            metrics.spool.clone(),
        )?),
        None => None,
    };
    let sink = Arc::new(SpoolingSink::start(
        redis,
        spool,
        &config,
        metrics.spool.clone(),
    ));

    let db = &config.database;
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(db.host.clone())
        .tcp_port(db.port)
        .user(Some(db.username.clone()))
        .pass(Some(db.password.clone()))
        .db_name(Some(db.dbname.clone()))
        .pool_opts(
            mysql_async::PoolOpts::default()
                .with_constraints(mysql_async::PoolConstraints::new(0, 2).unwrap_or_default()),
        );
    let pool = mysql_async::Pool::new(opts);
    let sites = Arc::new(SiteCache::new(
        pool.clone(),
        &db.tables_prefix,
        &config.matomo.salt,
    ));
    let loaded = sites
        .refresh()
        .await
        .map_err(|e| tier_config::ConfigError::mysql_failed(&config, e))?;
    metrics.site_cache(Ok(loaded));
    tracing::info!(sites = loaded, "site cache loaded");

    let tracker = &config.matomo.tracker;
    let state = Arc::new(AppState {
        settings: Settings {
            path_prefix: config.ingest.path_prefix.clone(),
            max_body_bytes: config.ingest.max_body_bytes,
            max_bulk_requests: config.ingest.max_bulk_requests,
            max_url_bytes: config.ingest.max_url_bytes,
            read_timeout: config.ingest.read_timeout,
            record_statistics: tracker.record_statistics,
            require_auth: tracker.tracking_requests_require_authentication,
            cdt_auth_threshold: i64::try_from(
                tracker.tracking_requests_require_authentication_when_custom_timestamp_newer_than,
            )
            .unwrap_or(i64::MAX),
            ignore_cookie: tracker.ignore_visits_cookie_name.clone(),
            routing: Routing {
                num_queues: config.queue.num_queue_workers.max(1),
                uid_overwrites_visitor_id: tracker.enable_userid_overwrites_visitorid,
                compression,
            },
        },
        sink: sink.clone(),
        sites: sites.clone(),
        metrics: metrics.clone(),
        proxy: ProxyPolicy::new(&tracker.proxy_ips, &tracker.proxy_client_headers)?,
        statics: config.ingest.static_dir.clone().map(StaticFiles::new),
        accepting: true.into(),
    });

    let refresher = tokio::spawn(refresh_loop(
        sites,
        metrics,
        config.ingest.site_cache_refresh,
        shutdown.clone(),
    ));
    tracing::info!(addr = %listener.local_addr()?, "ingest node listening");
    let shared = Arc::new(Shared::new(
        router(state.clone()),
        state.clone(),
        lanes.executor(),
    ));
    accept_loop(
        listener,
        &lanes,
        shared,
        shutdown,
        config.ingest.shutdown_grace,
    )
    .await;

    refresher.abort();
    drop(state);
    match Arc::try_unwrap(sink) {
        Ok(sink) => sink.close().await,
        Err(_) => tracing::warn!("queue sink still referenced at shutdown"),
    }
    lanes.stop().await;
    let _ = pool.disconnect().await;
    tracing::info!("ingest node stopped");
    Ok(())
}

/// `ingest.threads`, or one lane per CPU the process may use when it is 0.
fn lane_count(threads: usize) -> usize {
    match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// `queue.compression`, with `auto` decided by the Redis the node writes to (logged either way).
async fn entry_compression(setting: CompressionSetting, redis: &RedisSink) -> EntryCompression {
    if let Some(mode) = setting.fixed() {
        tracing::info!(compression = ?mode, "queue entries: as configured");
        return mode;
    }
    let depth = match redis.list_compress_depth().await {
        Ok(depth) => Some(depth),
        Err(error) => {
            tracing::info!(%error, "queue.compression = auto: cannot read Redis' list-compress-depth, assuming 0");
            None
        }
    };
    let mode = setting.resolve(depth);
    tracing::info!(compression = ?mode, list_compress_depth = ?depth, "queue entries: chosen by queue.compression = auto");
    mode
}

async fn refresh_loop(
    sites: Arc<SiteCache>,
    metrics: Arc<Metrics>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let result = sites.refresh().await;
        metrics.site_cache(result.as_ref().map(|n| *n));
    }
}

/// Accepts connections until `shutdown`, then drains them.
async fn accept_loop(
    listener: TcpListener,
    lanes: &Lanes,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let connections = TaskTracker::new();
    // Cancelled when the listener closes: idle connections close, busy ones after their answer.
    let closing = CancellationToken::new();
    let stop_accepting = async {
        shutdown.cancelled().await;
        shared.state.accepting.store(false, Ordering::Relaxed);
        tracing::info!(grace = ?grace, "shutting down: readiness fails, still serving");
        tokio::time::sleep(grace).await;
    };
    tokio::pin!(stop_accepting);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut stop_accepting => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        // Moved to a lane's reactor: the connection's tasks all run on that lane.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "accepted connection could not be handed to a lane");
                continue;
            }
        };
        let (shared, closing) = (shared.clone(), closing.clone());
        lanes.spawn_connection(connections.track_future(async move {
            match tokio::net::TcpStream::from_std(stream) {
                Ok(stream) => conn::serve_connection(stream, peer, shared, closing).await,
                Err(error) => tracing::warn!(%error, "lane could not register a connection"),
            }
        }));
    }
    closing.cancel();
    drop(listener);
    connections.close();
    tracing::info!("shutting down: listener closed, draining in-flight requests");
    if tokio::time::timeout(DRAIN_TIMEOUT, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within {DRAIN_TIMEOUT:?}");
    }
}
