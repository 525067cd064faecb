//! The node's HTTP/1.1 server: one task per connection reads request heads ([`head`]) and bodies
//! (with [`chunked`] decoding), hands each request to the tracker or the router, and writes the
//! answer ([`respond`]). Connections that open with the HTTP/2 preface go to hyper ([`h2`]).
//!
//! Why not hyper for HTTP/1: hyper keeps an 8 KiB read buffer and an 8 KiB write buffer for a
//! connection's whole life. Here an idle keep-alive connection holds no buffer at all — only its
//! socket and a small task; the buffer is taken when bytes arrive and dropped when the request is
//! answered (unless a pipelined request is already waiting in it). A tracker answer leaves in one
//! write, head and GIF together.
//!
//! Timeouts follow hyper's as the node used them: the head (and, on a kept-alive connection, the
//! wait for it) must arrive within `ingest.read_timeout`, else the connection closes without an
//! answer; the body within the same time from the end of the head, else 408. When shutdown
//! starts, idle connections close and a request in progress is answered with `connection:
//! close`.

pub mod chunked;
pub mod h2;
pub mod head;
pub mod respond;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use bytes::{Buf as _, Bytes, BytesMut};
use futures::FutureExt as _;
use http::{Method, Request, Response, Version};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::http::tracker::{self, BodyRefusal};
use crate::http::AppState;
use crate::lanes::LaneExecutor;
use crate::metrics::{Endpoint, Outcome};
use chunked::ChunkedDecoder;
use head::{Framing, Head, HeadError, Limits};
use respond::Shape;

/// First allocation for a request's bytes; it grows as a long head or a body needs.
const INITIAL_BUFFER: usize = 8 * 1024;
/// Most a single read may add to a body buffer beyond what has arrived.
const READ_CHUNK: usize = 64 * 1024;
/// After refusing a request whose body is still coming, how long and how much of it to read
/// and drop before closing, so the client sees the answer rather than a reset.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1024 * 1024;

/// What every connection shares.
pub struct Shared {
    /// Everything that is not a tracker path.
    pub app: Router,
    /// The handlers' state.
    pub state: Arc<AppState>,
    /// Head and body limits.
    pub limits: Limits,
    /// Runs HTTP/2 streams, spread over the lanes.
    pub lanes: LaneExecutor,
}

impl Shared {
    /// The node's routes, from `state`; HTTP/2 streams run on `lanes`.
    pub fn new(app: Router, state: Arc<AppState>, lanes: LaneExecutor) -> Self {
        let limits = Limits::for_url(state.settings.max_url_bytes);
        Self {
            app,
            state,
            limits,
            lanes,
        }
    }

    /// Answers one request: tracker paths go straight to the tracker, the rest to the router.
    /// The URL is within `ingest.max_url_bytes` already (HTTP/1: [`head::take_head`]; HTTP/2:
    /// [`h2::serve`]).
    /// A panic while answering (a bug some request triggers) becomes a 500 on the same
    /// connection, counted as `outcome="panic"` and logged, instead of a reset connection.
    pub fn route(
        &self,
        req: Request<Body>,
        peer: SocketAddr,
    ) -> impl std::future::Future<Output = Response<Body>> + '_ {
        // Not an `async fn`, for the reason `contain` gives: `req` would be held twice.
        let tracker_path = self.is_tracker_path(req.uri().path());
        let answer = async move {
            if tracker_path {
                return tracker::handle_from(self.state.clone(), req, peer).await;
            }
            let mut req = req;
            req.extensions_mut().insert(ConnectInfo(peer));
            // Boxed: the router's future is large, and unboxed it would be part of every
            // request's future, which each tracker request copies (into its box, and on).
            match Box::pin(self.app.clone().oneshot(req)).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        };
        contain(answer, move |message| {
            let endpoint = if tracker_path {
                Endpoint::Tracker
            } else {
                Endpoint::Static
            };
            self.state.metrics.request(endpoint, Outcome::Panic);
            tracing::error!(error = %message, "a request handler panicked; answered 500");
        })
    }

    /// Whether the router would hand `path` to the tracker through its fallback: `.php` under
    /// the prefix, except under `{prefix}js/` (that route serves `.php` through the tracker too,
    /// but behind the static files' compression layer, so it stays with the router).
    fn is_tracker_path(&self, path: &str) -> bool {
        is_tracker_path(path, &self.state.settings.path_prefix)
    }

    fn read_timeout(&self) -> Duration {
        self.state.settings.read_timeout
    }
}

/// Runs `answer`; when it panics, tells `on_panic` the panic's message and answers a plain 500.
///
/// A combinator rather than an `async fn`: an `async fn` would hold `answer` twice in its
/// state (the argument, and the future it awaits), and every request's future, copied into
/// its box, would carry both.
fn contain(
    answer: impl std::future::Future<Output = Response<Body>>,
    on_panic: impl FnOnce(&str),
) -> impl std::future::Future<Output = Response<Body>> {
    std::panic::AssertUnwindSafe(answer)
        .catch_unwind()
        .map(|outcome| match outcome {
            Ok(response) => response,
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".into());
                on_panic(&message);
                let mut response = Response::new(Body::from("Internal Server Error\n"));
                *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                response
            }
        })
}

/// See [`Shared::is_tracker_path`].
fn is_tracker_path(path: &str, prefix: &str) -> bool {
    path.ends_with(".php")
        && path
            .strip_prefix(prefix)
            .is_some_and(|rest| !rest.starts_with("js/"))
}

/// Serves one client connection until it closes, times out, or `closing` is cancelled while it
/// is idle.
pub async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    closing: CancellationToken,
) {
    let mut buf = BytesMut::new();
    let mut first = true;
    let durations = shared
        .state
        .metrics
        .request_durations(crate::lanes::current());
    loop {
        let deadline = Instant::now() + shared.read_timeout();
        if buf.is_empty() {
            match wait_for_request(&mut stream, deadline, &closing).await {
                Some(fresh) => buf = fresh,
                None => return,
            }
        }
        let started = std::time::Instant::now();
        let head = match read_head(&mut stream, &mut buf, &shared.limits, deadline, first).await {
            Ok(Some(Start::Http1(head))) => head,
            Ok(Some(Start::Http2)) => {
                let read = std::mem::take(&mut buf).freeze();
                // Boxed: hyper's HTTP/2 connection state is large, and an HTTP/1 connection
                // should not carry its room.
                Box::pin(h2::serve(stream, read, peer, shared, closing)).await;
                return;
            }
            Ok(None) => return,
            Err(refused) => {
                let text = refused.to_string();
                let answer = respond::plain(refused.status(), &text);
                // Boxed, like the exchange below: its drain buffer would otherwise be part of
                // every idle connection's task.
                let _ = Box::pin(answer_and_close(&mut stream, answer, Version::HTTP_11)).await;
                return;
            }
        };
        first = false;
        // Boxed: the request's state lives on the heap only while a request is in progress, so
        // an idle connection's task stays small.
        let exchange = Box::pin(exchange(
            &mut stream,
            &mut buf,
            head,
            peer,
            &shared,
            &closing,
        ));
        let outcome = exchange.await;
        durations.observe(started.elapsed().as_secs_f64());
        match outcome {
            Ok(true) => {}
            Ok(false) | Err(_) => return,
        }
        if buf.is_empty() {
            // Let the allocation go while the connection idles.
            buf = BytesMut::new();
        }
    }
}

/// Idle: waits, without holding a buffer, for the first bytes of the next request; `None` when
/// the client closes, `deadline` passes, or `closing` is cancelled first. Reads go through
/// `poll_read`, which forgets the socket's readiness after a short read, so this waits for new
/// bytes rather than waking for ones already taken; a buffer is kept only for a read that
/// returns bytes.
async fn wait_for_request(
    stream: &mut TcpStream,
    deadline: Instant,
    closing: &CancellationToken,
) -> Option<BytesMut> {
    loop {
        tokio::select! {
            ready = stream.readable() => ready.ok()?,
            () = tokio::time::sleep_until(deadline) => return None,
            () = closing.cancelled() => return None,
        }
        let mut fresh = BytesMut::with_capacity(INITIAL_BUFFER);
        match stream.read_buf(&mut fresh).now_or_never() {
            Some(Ok(0) | Err(_)) => return None,
            Some(Ok(_)) => return Some(fresh),
            None => {}
        }
    }
}

/// What a connection opened with.
#[allow(clippy::large_enum_variant)] // Returned once per request and moved out at once.
enum Start {
    Http1(Head),
    Http2,
}

/// Reads until a whole head is in `buf`. `Ok(None)`: the client closed, failed, or was too slow
/// (the connection ends without an answer, as hyper's header timeout does).
async fn read_head(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    limits: &Limits,
    deadline: Instant,
    first: bool,
) -> Result<Option<Start>, HeadError> {
    loop {
        if !buf.is_empty() {
            match first.then(|| h2::is_preface(buf)) {
                Some(Some(true)) => return Ok(Some(Start::Http2)),
                Some(None) => {}
                Some(Some(false)) | None => {
                    if let Some(head) = head::take_head(buf, limits)? {
                        return Ok(Some(Start::Http1(head)));
                    }
                }
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(buf.len().max(INITIAL_BUFFER));
        }
        if !read_some(stream, buf, deadline).await {
            return Ok(None);
        }
    }
}

/// One read into `buf` before `deadline`; false on end of stream, error or timeout.
async fn read_some(stream: &mut TcpStream, buf: &mut BytesMut, deadline: Instant) -> bool {
    matches!(
        tokio::time::timeout_at(deadline, stream.read_buf(buf)).await,
        Ok(Ok(n)) if n > 0
    )
}

/// Reads the body, answers the request, and tells whether the connection may go on.
async fn exchange(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    head: Head,
    peer: SocketAddr,
    shared: &Shared,
    closing: &CancellationToken,
) -> io::Result<bool> {
    let Head {
        parts,
        framing,
        keep_alive,
        expect_continue,
    } = head;
    let version = parts.version;
    let body = match read_body(stream, buf, framing, expect_continue, shared).await {
        Ok(body) => body,
        Err(None) => return Ok(false),
        Err(Some(refusal)) => {
            let answer = if shared.is_tracker_path(parts.uri.path()) {
                refusal.respond(&shared.state, &parts)
            } else {
                refused_body(refusal)
            };
            return answer_and_close(stream, answer, version)
                .await
                .map(|()| false);
        }
    };
    let shape = Shape {
        version,
        head_only: parts.method == Method::HEAD,
        keep_alive,
    };
    let body = if body.is_empty() {
        Body::empty()
    } else {
        Body::from(body)
    };
    let response = shared.route(Request::from_parts(parts, body), peer).await;
    let shape = Shape {
        keep_alive: shape.keep_alive && !closing.is_cancelled(),
        ..shape
    };
    let write = respond::write_response(stream, response, shape);
    match tokio::time::timeout(shared.read_timeout(), write).await {
        Ok(result) => result,
        Err(_) => Ok(false),
    }
}

/// The whole body as the head framed it. `Err(None)`: the client went away; `Err(Some(_))`: a
/// body to refuse with an answer.
async fn read_body(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    framing: Framing,
    expect_continue: bool,
    shared: &Shared,
) -> Result<Bytes, Option<BodyRefusal>> {
    let max = shared.state.settings.max_body_bytes;
    let deadline = Instant::now() + shared.read_timeout();
    let length = match framing {
        Framing::None => return Ok(Bytes::new()),
        Framing::Length(n) if n > max as u64 => return Err(Some(BodyRefusal::TooLarge)),
        Framing::Length(n) => Some(n as usize),
        Framing::Chunked => None,
    };
    if expect_continue && buf.is_empty() {
        stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .map_err(|_| None)?;
    }
    if let Some(n) = length {
        while buf.len() < n {
            let wanted = n - buf.len();
            read_more(stream, buf, wanted, deadline).await?;
        }
        return Ok(buf.split_to(n).freeze());
    }
    let mut decoder = ChunkedDecoder::new();
    let mut body = Vec::new();
    loop {
        let used = decoder
            .decode(&buf[..], &mut body)
            .map_err(|_| Some(BodyRefusal::Unreadable))?;
        buf.advance(used);
        if body.len() > max {
            return Err(Some(BodyRefusal::TooLarge));
        }
        if decoder.is_done() {
            return Ok(Bytes::from(body));
        }
        read_more(stream, buf, READ_CHUNK, deadline).await?;
    }
}

/// One more read of body bytes (room for up to `wanted` of them) before `deadline`.
async fn read_more(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    wanted: usize,
    deadline: Instant,
) -> Result<(), Option<BodyRefusal>> {
    buf.reserve(wanted.clamp(1024, READ_CHUNK));
    if read_some(stream, buf, deadline).await {
        Ok(())
    } else if Instant::now() >= deadline {
        Err(Some(BodyRefusal::Timeout))
    } else {
        Err(None)
    }
}

/// The plain answer to a refused body outside the tracker.
fn refused_body(refusal: BodyRefusal) -> Response<Body> {
    let (status, reason) = refusal.status_and_reason();
    respond::plain(status, reason)
}

/// Writes a refusal with `connection: close`, then reads and drops what the client is still
/// sending for a moment: closing with unread bytes would reset the connection, and the client
/// could lose the answer.
async fn answer_and_close(
    stream: &mut TcpStream,
    answer: Response<Body>,
    version: Version,
) -> io::Result<()> {
    let shape = Shape {
        version,
        head_only: false,
        keep_alive: false,
    };
    tokio::time::timeout(LINGER, respond::write_response(stream, answer, shape))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    stream.shutdown().await?;
    let mut drained = 0;
    // On the heap: a buffer here would make every exchange's future (which can end here) 4 KB
    // larger, and each request copies that future into its box.
    let mut sink = vec![0u8; 4096];
    let deadline = Instant::now() + LINGER;
    while drained < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, stream.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{contain, is_tracker_path};
    use axum::body::Body;
    use http::{Response, StatusCode};

    #[tokio::test]
    async fn a_panicking_answer_becomes_a_500_and_is_reported() {
        let mut seen = None;
        let response = contain(
            async {
                let n: usize = "x".len();
                if n == 1 {
                    panic!("bug for request {n}");
                }
                Response::new(Body::empty())
            },
            |message| seen = Some(message.to_owned()),
        )
        .await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(seen.as_deref(), Some("bug for request 1"));

        let mut called = false;
        let ok = contain(async { Response::new(Body::from("fine")) }, |_| {
            called = true
        })
        .await;
        assert_eq!(ok.status(), StatusCode::OK);
        assert!(!called);
    }

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
