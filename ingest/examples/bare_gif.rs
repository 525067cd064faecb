//! The baseline of the load comparison: a bare axum server that answers every request with the
//! same 43-byte GIF and headers `matomo-ingest` sends, and does nothing else.
//!
//! `cargo run --release -p matomo-ingest --example bare_gif -- 127.0.0.1:8090 [WORK_US]`
//!
//! With `WORK_US` (a number of microseconds, fractions allowed) each request first burns about
//! that much CPU time in a loop calibrated at start-up: a bare server made as costly per
//! request as another server, so that the two can be compared at half of *their own* peaks
//! (`latency.sh`'s `BARE_WORK_US`). It shows what the machine itself does to the tail of any
//! server of that capacity, whatever the server does with its CPU.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::http::header;
use axum::response::IntoResponse;
use axum::Router;
use matomo_ingest::http::response::GIF;

/// Loop rounds per request for `WORK_US`; 0 without it.
static ROUNDS: OnceLock<u64> = OnceLock::new();

/// `rounds` steps of a xorshift generator the optimiser cannot remove.
fn burn(rounds: u64) -> u64 {
    let mut x = std::hint::black_box(0x9e37_79b9_7f4a_7c15_u64);
    for _ in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    std::hint::black_box(x)
}

/// Rounds of [`burn`] per microsecond: the best of ten samples of ~2 ms each (on the test
/// machine), so a sample the scheduler interrupted does not count.
fn rounds_per_micro() -> f64 {
    let sample = 1_250_000;
    (0..10)
        .map(|_| {
            let start = Instant::now();
            burn(sample);
            sample as f64 / start.elapsed().max(Duration::from_nanos(1)).as_secs_f64() / 1e6
        })
        .fold(0.0, f64::max)
}

async fn gif() -> impl IntoResponse {
    let rounds = ROUNDS.get().copied().unwrap_or(0);
    if rounds > 0 {
        burn(rounds);
    }
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
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8090".into());
    let work_us = match args.next() {
        None => 0.0,
        Some(text) => match text.parse::<f64>() {
            Ok(us) if us.is_finite() && us >= 0.0 => us,
            _ => {
                eprintln!("WORK_US must be a number of microseconds, not {text:?}");
                std::process::exit(2);
            }
        },
    };
    let rounds = if work_us > 0.0 {
        (work_us * rounds_per_micro()).round() as u64
    } else {
        0
    };
    ROUNDS.get_or_init(|| rounds);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    if rounds > 0 {
        println!("bare GIF server on {addr}, {work_us} µs of CPU per request ({rounds} rounds)");
    } else {
        println!("bare GIF server on {addr}");
    }
    axum::serve(listener, Router::new().fallback(gif)).await
}
