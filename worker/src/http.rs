//! The worker's HTTP endpoints on `worker.listen` (127.0.0.1:9180 by default): `/healthz`
//! (the process is alive), `/readyz` (Redis and MySQL answer and we are not shutting down;
//! fails first on shutdown) and `/metrics` (Prometheus text).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use fred::prelude::*;
use mysql_async::prelude::Queryable as _;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// What the handlers need.
#[derive(Clone)]
pub struct HttpState {
    registry: Arc<Registry>,
    redis: Pool,
    mysql: mysql_async::Pool,
    shutdown: CancellationToken,
}

impl HttpState {
    /// State over the process's registry and backends.
    pub fn new(
        registry: Registry,
        redis: Pool,
        mysql: mysql_async::Pool,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            registry: Arc::new(registry),
            redis,
            mysql,
            shutdown,
        }
    }
}

/// The router.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serves until `shutdown` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    shutdown: CancellationToken,
) {
    let app = router(state);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<HttpState>) -> (StatusCode, String) {
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into());
    }
    let redis =
        tokio::time::timeout(Duration::from_secs(1), state.redis.ping::<String>(None)).await;
    if !matches!(redis, Ok(Ok(_))) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "redis unavailable\n".into(),
        );
    }
    let mysql = tokio::time::timeout(Duration::from_secs(1), async {
        let mut conn = state.mysql.get_conn().await?;
        conn.ping().await
    })
    .await;
    if !matches!(mysql, Ok(Ok(()))) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "mysql unavailable\n".into(),
        );
    }
    (StatusCode::OK, "ready\n".into())
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::render(&state.registry),
    )
}
