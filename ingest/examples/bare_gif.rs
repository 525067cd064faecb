//! The baseline of the load comparison: a bare axum server that answers every request with the
//! same 43-byte GIF and headers `matomo-ingest` sends, and does nothing else.
//!
//! `cargo run --release -p matomo-ingest --example bare_gif -- 127.0.0.1:8090`

use axum::http::header;
use axum::response::IntoResponse;
use axum::Router;
use matomo_ingest::http::response::GIF;

async fn gif() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/gif"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        GIF,
    )
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("bare GIF server on {addr}");
    axum::serve(listener, Router::new().fallback(gif)).await
}
