//! The HTTP surface: shared [`AppState`], the router, and the operational endpoints.
//!
//! - `{prefix}*.php` (`matomo.php`, `piwik.php`, and any other `.php` under the prefix, as
//!   operators rewrite them behind HAProxy) → [`tracker::handle`];
//! - `{prefix}matomo.js`, `{prefix}piwik.js`, `{prefix}js/…` → [`static_files`], compressed;
//! - `/healthz` (alive), `/readyz` (Redis answers or the spool takes hits, site cache loaded,
//!   not shutting down),
//!   `/metrics` (Prometheus text).
//!
//! Also here: [`bulk_encode`] (a bulk's entries parsed, checked and encoded in bounded chunks).

pub mod bulk_encode;
pub mod response;
pub mod static_files;
pub mod tracker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use axum::Router;
use http::{header, StatusCode};
use tower_http::compression::CompressionLayer;

use crate::env::ProxyPolicy;
use crate::metrics::{Endpoint, Metrics, Outcome};
use crate::queue::{Routing, Sink};
use crate::sites::SiteCache;
use static_files::{Served, StaticFiles};

/// The query string of an HTTP/1 request: the request target's bytes after the first `?`, up
/// to a `#` if one follows. Present only when the target has a `?`; the URI of such a request
/// holds its path alone. (HTTP/2 requests keep their query in the URI.)
#[derive(Debug, Clone)]
pub struct RawQuery(pub Bytes);

impl RawQuery {
    /// The query of a request: its [`RawQuery`] extension, else the URI's query, else empty.
    pub fn of(parts: &http::request::Parts) -> &[u8] {
        match parts.extensions.get::<RawQuery>() {
            Some(RawQuery(bytes)) => bytes,
            None => parts.uri.query().map_or(&[], str::as_bytes),
        }
    }
}

/// Settings the handlers read on every request.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Path prefix, starting and ending with `/`.
    pub path_prefix: String,
    /// `ingest.max_body_bytes`.
    pub max_body_bytes: usize,
    /// `ingest.max_bulk_requests`.
    pub max_bulk_requests: usize,
    /// `ingest.max_url_bytes`.
    pub max_url_bytes: usize,
    /// `ingest.read_timeout` (headers and body).
    pub read_timeout: Duration,
    /// `[Tracker] record_statistics`.
    pub record_statistics: bool,
    /// `[Tracker] tracking_requests_require_authentication`.
    pub require_auth: bool,
    /// `[Tracker] tracking_requests_require_authentication_when_custom_timestamp_newer_than`.
    pub cdt_auth_threshold: i64,
    /// `[Tracker] ignore_visits_cookie_name`.
    pub ignore_cookie: String,
    /// Queue routing.
    pub routing: Routing,
}

/// Everything the handlers share.
pub struct AppState {
    /// Per-request settings.
    pub settings: Settings,
    /// Where accepted hits go.
    pub sink: Arc<dyn Sink>,
    /// The site/token cache.
    pub sites: Arc<SiteCache>,
    /// Telemetry.
    pub metrics: Arc<Metrics>,
    /// Trusted proxies.
    pub proxy: ProxyPolicy,
    /// Static files, when `ingest.static_dir` is set.
    pub statics: Option<StaticFiles>,
    /// Cleared when shutdown starts, so `/readyz` fails first.
    pub accepting: AtomicBool,
}

/// Builds the router.
pub fn router(state: Arc<AppState>) -> Router {
    let prefix = state.settings.path_prefix.clone();
    let statics = Router::new()
        .route(&format!("{prefix}matomo.js"), get(static_file))
        .route(&format!("{prefix}piwik.js"), get(static_file))
        .route(
            &format!("{prefix}js/{{*path}}"),
            axum::routing::any(static_file),
        )
        .layer(CompressionLayer::new().gzip(true).br(true));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(statics)
        .fallback(dispatch)
        .with_state(state)
}

/// Everything that is not an operational or static route: `.php` under the prefix is the
/// tracker; anything else is 404.
async fn dispatch(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let path = req.uri().path();
    if path.starts_with(&state.settings.path_prefix) && path.ends_with(".php") {
        return tracker::handle(state, req).await;
    }
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

async fn static_file(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let path = req.uri().path();
    if path.ends_with(".php") {
        // Matomo's js/tracker.php and js/index.php are tracker endpoints too.
        return tracker::handle(state, req).await;
    }
    let rel = path
        .strip_prefix(&state.settings.path_prefix)
        .unwrap_or(path)
        .to_owned();
    let Some(statics) = &state.statics else {
        state.metrics.request(Endpoint::Static, Outcome::NotFound);
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let (served, response) = statics.serve(&rel, req.headers()).await;
    let outcome = match served {
        Served::Full => Outcome::Served,
        Served::NotModified => Outcome::NotModified,
        Served::Missing => Outcome::NotFound,
    };
    state.metrics.request(Endpoint::Static, outcome);
    response
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let accepting = state.accepting.load(Ordering::Relaxed);
    let cache = state.sites.snapshot().is_some();
    let sink = state.sink.readiness().await;
    let body = format!("accepting={accepting} site_cache={cache} {}\n", sink.detail);
    let status = if accepting && cache && sink.accepts {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut response = Response::new(Body::from(state.metrics.encode()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    response
}
