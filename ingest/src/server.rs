//! Start-up, the accept loop and graceful shutdown.
//!
//! [`serve`] connects Redis and MySQL (a failure is a [`StartupError`] naming the setting), opens
//! the local spool when one is configured, loads the site cache, starts its refresher, the Redis
//! writers, the spool replayer and the Redis guard, and serves HTTP/1.1 and HTTP/2 on
//! the given listener with a header read timeout and a URL length limit. When `shutdown` is
//! cancelled: `/readyz` starts failing, requests are still served for `ingest.shutdown_grace`,
//! then the listener closes, in-flight requests finish, the writers and the spool flush, and
//! `serve` returns.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tier_config::{CompressionSetting, Config, EntryCompression};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::env::{ProxyConfigError, ProxyPolicy};
use crate::http::first_byte::FirstByteDeadline;
use crate::http::static_files::StaticFiles;
use crate::http::{router, tracker, AppState, Settings};
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
    let redis = RedisSink::connect(&config.redis, &config.queue.key_prefix)
        .await
        .map_err(redis_err)?;
    let compression = entry_compression(config.queue.compression, &redis).await;
    let metrics = Arc::new(Metrics::new());
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
    accept_loop(
        listener,
        router(state.clone()),
        &state,
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
    let _ = pool.disconnect().await;
    tracing::info!("ingest node stopped");
    Ok(())
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
    app: Router,
    state: &Arc<AppState>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(state.settings.read_timeout)
        .keep_alive(true);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    // Cancelled when the listener closes: connections still waiting for their first byte close.
    let closing = CancellationToken::new();
    let read_timeout = state.settings.read_timeout;
    let stop_accepting = async {
        shutdown.cancelled().await;
        state.accepting.store(false, Ordering::Relaxed);
        tracing::info!(grace = ?grace, "shutting down: readiness fails, still serving");
        tokio::time::sleep(grace).await;
    };
    tokio::pin!(stop_accepting);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut stop_accepting => break,
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
        let app = app.clone();
        let state = state.clone();
        let service = tower::service_fn(move |req: Request<Incoming>| {
            let app = app.clone();
            let state = state.clone();
            async move { Ok::<_, std::convert::Infallible>(route(app, state, req, peer).await) }
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let closing = closing.clone();
        tokio::spawn(async move {
            // Until the client sends its first byte the connection is only a socket and this
            // small task: hyper's buffers and connection state are made when there is
            // something to read, so silent connections cost little memory.
            tokio::select! {
                ready = stream.readable() => if ready.is_err() { return },
                _ = tokio::time::sleep(read_timeout) => return,
                _ = closing.cancelled() => return,
            }
            let stream = FirstByteDeadline::new(stream, read_timeout);
            let conn =
                builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            if let Err(error) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%error, "connection closed with an error");
            }
        });
    }
    closing.cancel();
    drop(listener);
    tracing::info!("shutting down: listener closed, draining in-flight requests");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within {DRAIN_TIMEOUT:?}");
    }
}

async fn route(
    app: Router,
    state: Arc<AppState>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let url_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if url_len > state.settings.max_url_bytes {
        let mut r = Response::new(Body::from("request URI too long\n"));
        *r.status_mut() = StatusCode::URI_TOO_LONG;
        return r;
    }
    let req = req.map(Body::new);
    if is_tracker_path(req.uri().path(), &state.settings.path_prefix) {
        // The hot path: straight to the tracker, as the router's fallback would send it.
        return tracker::handle_from(state, req, peer).await;
    }
    let mut req = req;
    req.extensions_mut().insert(ConnectInfo(peer));
    match app.oneshot(req).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Whether the router would hand `path` to the tracker through its fallback: `.php` under the
/// prefix, except under `{prefix}js/` (that route serves `.php` through the tracker too, but
/// behind the static files' compression layer, so it stays with the router).
fn is_tracker_path(path: &str, prefix: &str) -> bool {
    path.ends_with(".php")
        && path
            .strip_prefix(prefix)
            .is_some_and(|rest| !rest.starts_with("js/"))
}

#[cfg(test)]
mod tests {
    use super::is_tracker_path;

    #[test]
    fn tracker_paths_are_php_under_the_prefix_outside_js() {
        assert!(is_tracker_path("/matomo.php", "/"));
        assert!(is_tracker_path("/piwik.php", "/"));
        assert!(is_tracker_path("/stats/matomo.php", "/stats/"));
        assert!(is_tracker_path("/anything.php", "/"));
        assert!(!is_tracker_path("/js/tracker.php", "/"));
        assert!(!is_tracker_path("/matomo.php", "/stats/"));
        assert!(!is_tracker_path("/matomo.js", "/"));
        assert!(!is_tracker_path("/healthz", "/"));
    }
}
