//! Sending hits over HTTP: single GETs, single POSTs, or bulk POSTs, and reading the answer.
//!
//! Only a 2xx answer counts as accepted. A bulk answer in Matomo's JSON
//! (`{"status":"success","tracked":N,"invalid":M}`) says how many entries were accepted and how
//! many refused; a 2xx bulk answer without JSON (QueuedTracking's GIF) accepts every entry.

use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use crate::target::Target;
use crate::visitor::Hit;

/// How hits are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One GET per hit, parameters in the query string (the JavaScript tracker's image request).
    Get,
    /// One POST per hit, parameters form-encoded in the body (the tracker's `sendBeacon`).
    Post,
    /// Several hits per POST as `{"requests":[...]}` (import_logs.py, server-side SDKs).
    Bulk,
}

/// The HTTP client shared by all sends.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A client with a connection pool sized for an open-model run.
pub fn http_client(max_idle_per_target: usize) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(max_idle_per_target)
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The target answered.
    Answered {
        /// HTTP status.
        status: u16,
        /// Hits the target accepted (2xx; for bulk, `tracked` when the answer says).
        accepted: u32,
        /// Hits the target refused as invalid (4xx; for bulk, `invalid`).
        invalid: u32,
    },
    /// No complete answer within the timeout.
    Timeout,
    /// Connection or protocol failure.
    Failed(String),
}

/// What a bulk request is made of, and the answer's shape.
#[derive(serde::Deserialize)]
struct BulkAnswer {
    tracked: Option<u32>,
    invalid: Option<u32>,
}

/// Builds the HTTP request for `hits` (one hit unless the mode is bulk).
pub fn build_request(
    target: &Target,
    mode: Mode,
    hits: &[Hit],
    token_auth: Option<&str>,
) -> Result<Request<Full<Bytes>>, http::Error> {
    let base = target.url.as_str();
    match mode {
        Mode::Get => {
            let hit = &hits[0];
            let mut q = hit.query.clone();
            if let Some(t) = token_auth {
                q.push_str("&token_auth=");
                q.push_str(t);
            }
            Request::builder()
                .method(Method::GET)
                .uri(format!("{base}?{q}"))
                .header(header::USER_AGENT, hit.user_agent)
                .header(header::ACCEPT_LANGUAGE, hit.language)
                .body(Full::new(Bytes::new()))
        }
        Mode::Post => {
            let hit = &hits[0];
            let mut body = hit.query.clone();
            body.push_str("&send_image=0");
            if let Some(t) = token_auth {
                body.push_str("&token_auth=");
                body.push_str(t);
            }
            Request::builder()
                .method(Method::POST)
                .uri(base)
                .header(header::USER_AGENT, hit.user_agent)
                .header(header::ACCEPT_LANGUAGE, hit.language)
                .header(
                    header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded; charset=UTF-8",
                )
                .body(Full::new(Bytes::from(body)))
        }
        Mode::Bulk => {
            let requests: Vec<String> = hits.iter().map(|h| format!("?{}", h.query)).collect();
            let mut body = serde_json::json!({ "requests": requests });
            if let Some(t) = token_auth {
                body["token_auth"] = serde_json::Value::String(t.to_owned());
            }
            Request::builder()
                .method(Method::POST)
                .uri(base)
                .header(
                    header::USER_AGENT,
                    concat!("matomo-loadgen/", env!("CARGO_PKG_VERSION")),
                )
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
        }
    }
}

/// Sends one request and reads the whole answer.
pub async fn send(
    client: &HttpClient,
    request: Request<Full<Bytes>>,
    hits: u32,
    bulk: bool,
    timeout: Duration,
) -> Outcome {
    let exchange = async {
        let response = client.request(request).await.map_err(|e| error_chain(&e))?;
        let status = response.status();
        let is_json = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| error_chain(&e))?
            .to_bytes();
        Ok::<_, String>(classify(status, hits, bulk && is_json, &body))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => Outcome::Failed(e),
        Err(_) => Outcome::Timeout,
    }
}

fn classify(status: StatusCode, hits: u32, bulk_json: bool, body: &[u8]) -> Outcome {
    let code = status.as_u16();
    if status.is_success() {
        if bulk_json {
            if let Ok(answer) = serde_json::from_slice::<BulkAnswer>(body) {
                let tracked = answer.tracked.unwrap_or(hits).min(hits);
                let invalid = answer.invalid.unwrap_or(0).min(hits - tracked);
                return Outcome::Answered {
                    status: code,
                    accepted: tracked,
                    invalid,
                };
            }
        }
        return Outcome::Answered {
            status: code,
            accepted: hits,
            invalid: 0,
        };
    }
    let invalid = if status == StatusCode::BAD_REQUEST {
        hits
    } else {
        0
    };
    Outcome::Answered {
        status: code,
        accepted: 0,
        invalid,
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_2xx_accepts_and_bulk_json_is_read() {
        assert_eq!(
            classify(StatusCode::OK, 1, false, b"GIF89a"),
            Outcome::Answered {
                status: 200,
                accepted: 1,
                invalid: 0
            }
        );
        assert_eq!(
            classify(StatusCode::NO_CONTENT, 1, false, b""),
            Outcome::Answered {
                status: 204,
                accepted: 1,
                invalid: 0
            }
        );
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, 1, false, b""),
            Outcome::Answered {
                status: 503,
                accepted: 0,
                invalid: 0
            }
        );
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, 3, true, b""),
            Outcome::Answered {
                status: 400,
                accepted: 0,
                invalid: 3
            }
        );
        assert_eq!(
            classify(
                StatusCode::OK,
                10,
                true,
                br#"{"status":"success","tracked":8,"invalid":2}"#
            ),
            Outcome::Answered {
                status: 200,
                accepted: 8,
                invalid: 2
            }
        );
        assert_eq!(
            classify(StatusCode::OK, 10, true, b"not json"),
            Outcome::Answered {
                status: 200,
                accepted: 10,
                invalid: 0
            }
        );
    }
}
