//! The pre-flight check: every target answers the Tracking HTTP API before any load is sent.
//!
//! Each target gets a tracking request with `rec=0` (Matomo answers 2xx and records nothing)
//! in the run's mode; a bulk run also sends a one-entry bulk request. A target that does not
//! answer 2xx fails the check, and the run does not start.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::{BodyExt, Full};

use crate::client::{self, HttpClient, Mode};
use crate::target::Target;

/// The result of checking one target.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TargetCheck {
    /// The endpoint.
    pub url: String,
    /// Every probe succeeded.
    pub ok: bool,
    /// One line per probe.
    pub lines: Vec<String>,
}

async fn probe(client: &HttpClient, request: Request<Full<Bytes>>, what: &str) -> (bool, String) {
    let started = Instant::now();
    let exchange = async {
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let ctype = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((status, ctype, body.len()))
    };
    match tokio::time::timeout(Duration::from_secs(10), exchange).await {
        Ok(Ok((status, ctype, len))) => {
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            let ok = status.is_success();
            (
                ok,
                format!(
                    "{} {what} → {status} {ctype} ({len} bytes, {ms:.1} ms)",
                    if ok { "ok  " } else { "FAIL" }
                ),
            )
        }
        Ok(Err(e)) => (false, format!("FAIL {what} → {e}")),
        Err(_) => (false, format!("FAIL {what} → no answer within 10 s")),
    }
}

/// Checks every target for `site` in `mode`.
pub async fn check_targets(targets: &[Target], mode: Mode, site: u32) -> Vec<TargetCheck> {
    let client = client::http_client(4);
    let mut out = Vec::new();
    for t in targets {
        let query = format!(
            "idsite={site}&rec=0&url=https%3A%2F%2Fwww.example.com%2Fmatomo-loadgen-validate"
        );
        let mut probes = vec![(
            Request::builder()
                .method(Method::GET)
                .uri(format!("{}?{query}", t.url))
                .header(
                    header::USER_AGENT,
                    concat!("matomo-loadgen/", env!("CARGO_PKG_VERSION")),
                )
                .body(Full::new(Bytes::new())),
            "GET rec=0",
        )];
        if mode == Mode::Post {
            probes.push((
                Request::builder()
                    .method(Method::POST)
                    .uri(t.url.as_str())
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Full::new(Bytes::from(query.clone()))),
                "POST rec=0",
            ));
        }
        if mode == Mode::Bulk {
            probes.push((
                Request::builder()
                    .method(Method::POST)
                    .uri(t.url.as_str())
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from(
                        serde_json::json!({ "requests": [format!("?{query}")] }).to_string(),
                    ))),
                "bulk POST of 1 rec=0 entry",
            ));
        }
        let mut check = TargetCheck {
            url: t.url.clone(),
            ok: true,
            lines: Vec::new(),
        };
        for (request, what) in probes {
            let (ok, line) = match request {
                Ok(r) => probe(&client, r, what).await,
                Err(e) => (false, format!("FAIL {what}: cannot build request: {e}")),
            };
            check.ok &= ok;
            check.lines.push(line);
        }
        out.push(check);
    }
    out
}
