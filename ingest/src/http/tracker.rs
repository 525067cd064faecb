//! The `matomo.php` handler: reads the request, parses it (pure [`crate::parse`]), validates it
//! against the site cache ([`crate::validate`]), encodes and enqueues it ([`crate::queue`]), and
//! answers as Matomo does ([`super::response`]) — only after the sink acknowledged the write.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use http::header;
use http::request::Parts;
use http::{Method, StatusCode};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use matomo_wire::php::sanitize_input_value;
use matomo_wire::{ParamLookup, Params};

use super::bulk_encode::{encode_bulk, Checked};
use super::response::{self, Ctx};
use super::{AppState, RawQuery};
use crate::env::{ip_string, server_vars, tracker_cookies};
use crate::metrics::{Endpoint, Outcome};
use crate::parse::{self, BulkError};
use crate::queue::{entries_for, random_entry_id, EnqueueError, Envelope, QueueEntry, Routed};
use crate::sites::{Grant, Snapshot};
use crate::validate::{validate, Accepted, Context};

/// `GET|POST|… /matomo.php` (and every other tracker path), behind the router: the peer address
/// is the request's [`ConnectInfo`] (127.0.0.1 when there is none, as in handler tests).
pub async fn handle(state: Arc<AppState>, req: Request) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)), |c| c.0);
    handle_from(state, req, peer).await
}

/// [`handle`] for a request from `peer`. The accept loop calls it directly for tracker paths,
/// without the router and the `ConnectInfo` extension: that is the hot path.
pub async fn handle_from(state: Arc<AppState>, req: Request, peer: SocketAddr) -> Response {
    let (parts, body) = req.into_parts();
    if response::is_preflight(&parts.method, &parts.headers) {
        state.metrics.request(Endpoint::Tracker, Outcome::Preflight);
        return response::preflight();
    }
    let ctx = Ctx::new(&parts.method, &parts.headers);
    let body = match read_body(&state, &parts, body).await {
        Ok(body) => body,
        Err(refusal) => return refusal.answer(&state, &ctx),
    };
    state.metrics.body_bytes(body.len());
    let request = Incoming::new(&state, &parts, peer);
    if parse::is_bulk_body(&body) {
        bulk(&state, &ctx, request, &body).await
    } else {
        single(&state, &ctx, request, &parts, &body).await
    }
}

/// What every hit of one HTTP request shares (`env.server` borrows the request's headers).
struct Incoming<'h> {
    client_ip: String,
    envelope_base: Envelope<'h>,
    via_post: bool,
    now: i64,
}

impl<'h> Incoming<'h> {
    fn new(state: &AppState, parts: &'h Parts, peer: SocketAddr) -> Self {
        let client_ip = ip_string(state.proxy.client_ip(peer.ip(), &parts.headers));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let https = parts.uri.scheme_str() == Some("https");
        let server = server_vars(
            &client_ip,
            parts.method.as_str(),
            &parts.headers,
            now,
            https,
        );
        let cookie = tracker_cookies(&parts.headers, &state.settings.ignore_cookie);
        Self {
            client_ip,
            envelope_base: Envelope {
                server,
                cookie,
                token_auth: None,
                time: now,
            },
            via_post: parts.method == Method::POST,
            now,
        }
    }

    fn context<'a>(
        &self,
        state: &AppState,
        snapshot: &'a Snapshot,
        token: Option<&'a str>,
    ) -> Context<'a> {
        Context {
            snapshot,
            token_auth: token,
            via_post: self.via_post,
            now: self.now,
            require_auth: state.settings.require_auth,
            cdt_auth_threshold: state.settings.cdt_auth_threshold,
        }
    }

    /// The IP a request is routed by: an authenticated `cip`, else the client IP.
    fn routing_ip<'a, P: ParamLookup + ?Sized>(
        &'a self,
        params: &'a P,
        accepted: &Accepted,
    ) -> std::borrow::Cow<'a, str> {
        match params.param("cip") {
            Some(cip) if accepted.authenticated && !cip.is_empty() => cip,
            _ => std::borrow::Cow::Borrowed(self.client_ip.as_str()),
        }
    }
}

/// Why a request body was not read; the connection layer refuses bodies for the same reasons
/// before a handler runs ([`BodyRefusal::respond`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRefusal {
    /// Over `ingest.max_body_bytes` (413).
    TooLarge,
    /// Not complete within `ingest.read_timeout` (408).
    Timeout,
    /// Broken framing or a failed read (400).
    Unreadable,
}

impl BodyRefusal {
    /// The status and the one-line reason every answer to this refusal carries.
    pub fn status_and_reason(self) -> (StatusCode, &'static str) {
        match self {
            Self::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
            Self::Timeout => (StatusCode::REQUEST_TIMEOUT, "request body read timed out"),
            Self::Unreadable => (StatusCode::BAD_REQUEST, "could not read the request body"),
        }
    }

    fn answer(self, state: &AppState, ctx: &Ctx) -> Response {
        let outcome = match self {
            Self::TooLarge => Outcome::TooLarge,
            Self::Timeout => Outcome::Timeout,
            Self::Unreadable => Outcome::Invalid,
        };
        state.metrics.request(Endpoint::Tracker, outcome);
        let (status, reason) = self.status_and_reason();
        ctx.failure(status, reason)
    }

    /// The tracker's answer to a request whose body was refused, counted in its metrics.
    pub fn respond(self, state: &AppState, parts: &Parts) -> Response {
        self.answer(state, &Ctx::new(&parts.method, &parts.headers))
    }
}

/// Reads the body within `max_body_bytes` and `read_timeout`.
async fn read_body(state: &AppState, parts: &Parts, body: Body) -> Result<Bytes, BodyRefusal> {
    let max = state.settings.max_body_bytes;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(BodyRefusal::TooLarge);
    }
    if axum::body::HttpBody::is_end_stream(&body) {
        // Nothing to read (a GET): no timer to arm.
        return Ok(Bytes::new());
    }
    let collect = Limited::new(body, max).collect();
    match tokio::time::timeout(state.settings.read_timeout, collect).await {
        Err(_) => Err(BodyRefusal::Timeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(BodyRefusal::TooLarge),
        Ok(Err(_)) => Err(BodyRefusal::Unreadable),
    }
}

async fn single(
    state: &AppState,
    ctx: &Ctx,
    mut req: Incoming<'_>,
    parts: &Parts,
    body: &[u8],
) -> Response {
    // PHP fills $_POST from a form body only for a POST.
    let is_form = parts.method == Method::POST
        && parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(parse::is_form_content_type);
    let query = RawQuery::of(parts);
    let params = parse::single_hit(query, is_form.then_some(body));
    let no_image = parse::wants_no_image(&params);
    let metrics = &state.metrics;
    if !state.settings.record_statistics {
        metrics.request(Endpoint::Tracker, Outcome::Disabled);
        return ctx.api_response(StatusCode::SERVICE_UNAVAILABLE, no_image);
    }
    if params.is_empty() {
        metrics.request(Endpoint::Tracker, Outcome::Notice);
        return ctx.notice(parts.method == Method::GET);
    }
    let Some(snapshot) = state.sites.snapshot() else {
        metrics.request(Endpoint::Tracker, Outcome::Unavailable);
        return ctx.failure(StatusCode::SERVICE_UNAVAILABLE, "site cache not loaded yet");
    };
    let token = params
        .param("token_auth")
        .map(|t| sanitize_input_value(&t))
        .filter(|t| !t.is_empty());
    let accepted = match validate(&params, &req.context(state, &snapshot, token.as_deref())) {
        Ok(accepted) => accepted,
        Err(rejection) => {
            tracing::debug!(%rejection, "invalid tracking request");
            metrics.hits(0, 1);
            metrics.request(Endpoint::Tracker, Outcome::Invalid);
            return ctx.invalid(no_image);
        }
    };
    req.envelope_base.token_auth = token;
    let ip = req.routing_ip(&params, &accepted);
    let entries = entries_for(
        &[Routed {
            params: &params,
            ip: &ip,
        }],
        &req.envelope_base,
        state.settings.routing,
        random_entry_id,
    );
    if let Err(outcome) = enqueue(state, entries).await {
        metrics.request(Endpoint::Tracker, outcome);
        let reason = match outcome {
            Outcome::SpoolFull => {
                "tracking queue unavailable: Redis cannot take hits and the local spool is full"
            }
            _ => "tracking queue unavailable",
        };
        return ctx.failure(StatusCode::SERVICE_UNAVAILABLE, reason);
    }
    metrics.hits(1, 0);
    metrics.request(Endpoint::Tracker, Outcome::Queued);
    ctx.api_response(StatusCode::OK, no_image)
}

async fn bulk(state: &AppState, ctx: &Ctx, mut req: Incoming<'_>, body: &[u8]) -> Response {
    let metrics = &state.metrics;
    let parsed = match parse::parse_bulk(body, state.settings.max_bulk_requests) {
        Ok(parsed) => parsed,
        Err(error) => {
            let (status, outcome) = match error {
                BulkError::TooManyRequests { .. } => {
                    (StatusCode::PAYLOAD_TOO_LARGE, Outcome::TooLarge)
                }
                BulkError::NotJson(_) => (StatusCode::BAD_REQUEST, Outcome::Invalid),
            };
            metrics.request(Endpoint::Bulk, outcome);
            let json = format!(
                "{{\"status\":\"error\",\"tracked\":0,\"invalid\":0,\"message\":{}}}",
                serde_json::Value::String(error.to_string())
            );
            return ctx.bulk(status, json, false);
        }
    };
    metrics.bulk_size(parsed.requests.len());
    if !state.settings.record_statistics {
        metrics.request(Endpoint::Bulk, Outcome::Disabled);
        return ctx.bulk(
            StatusCode::OK,
            response::bulk_json("success", 0, &[], false),
            !parsed.send_image,
        );
    }
    let Some(snapshot) = state.sites.snapshot() else {
        metrics.request(Endpoint::Bulk, Outcome::Unavailable);
        let json = response::bulk_json("error", 0, &[], false);
        return ctx.bulk(StatusCode::SERVICE_UNAVAILABLE, json, false);
    };
    let token = parsed.token_auth.as_deref();
    let is_super_user =
        token.is_some_and(|t| snapshot.grant(t, None, req.via_post, req.now) == Grant::SuperUser);
    req.envelope_base.token_auth = parsed.token_auth.clone();
    let context = req.context(state, &snapshot, token);
    let envelope = &req.envelope_base;
    let check = |params: &Params| match validate(params, &context) {
        Ok(_) if params.is_empty() => Checked::Empty,
        Ok(ok) => Checked::Accepted(req.routing_ip(params, &ok).into_owned()),
        Err(_) => Checked::Invalid,
    };
    let (entries, invalid) = encode_bulk(
        &parsed.requests,
        envelope,
        state.settings.routing,
        check,
        random_entry_id,
    );
    let tracked = parsed.requests.len() - invalid.len();
    if let Err(outcome) = enqueue(state, entries).await {
        metrics.request(Endpoint::Bulk, outcome);
        let json = response::bulk_json("error", 0, &invalid, is_super_user);
        return ctx.bulk(StatusCode::SERVICE_UNAVAILABLE, json, false);
    }
    metrics.hits(tracked, invalid.len());
    metrics.request(Endpoint::Bulk, Outcome::Queued);
    let json = response::bulk_json("success", tracked, &invalid, is_super_user);
    ctx.bulk(StatusCode::OK, json, !parsed.send_image)
}

/// Hands entries to the sink and records the result.
async fn enqueue(state: &AppState, entries: Vec<QueueEntry>) -> Result<(), Outcome> {
    if entries.is_empty() {
        return Ok(());
    }
    let sizes: Vec<(u16, usize)> = entries
        .iter()
        .map(|e| (e.queue_id, e.bytes.len()))
        .collect();
    let started = Instant::now();
    match state.sink.enqueue(entries).await {
        Ok(()) => {
            state.metrics.enqueued(sizes.into_iter(), started.elapsed());
            Ok(())
        }
        Err(error) => {
            state.metrics.redis_error(&error);
            Err(match error {
                EnqueueError::SpoolFull => Outcome::SpoolFull,
                _ => Outcome::Unavailable,
            })
        }
    }
}
