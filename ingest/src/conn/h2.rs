//! HTTP/2 (prior knowledge, as HAProxy speaks it to backends): a connection that opens with the
//! HTTP/2 preface is handed to hyper's HTTP/2 server, with the bytes already read put back in
//! front of the socket.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::{Buf as _, Bytes};
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::head::HeadError;
use super::{respond, Shared};

/// The client connection preface of HTTP/2.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// `Some(true)` when `start` is the whole preface, `None` while it could still become it,
/// `Some(false)` when it cannot.
pub fn is_preface(start: &[u8]) -> Option<bool> {
    let n = start.len().min(PREFACE.len());
    if start[..n] != PREFACE[..n] {
        Some(false)
    } else if n == PREFACE.len() {
        Some(true)
    } else {
        None
    }
}

/// Serves an HTTP/2 connection whose first bytes, `read`, were already taken off `stream`.
pub async fn serve(
    stream: TcpStream,
    read: Bytes,
    peer: SocketAddr,
    shared: Arc<Shared>,
    closing: CancellationToken,
) {
    // Streams run on every lane: a proxy may multiplex many clients onto one connection.
    let executor = shared.lanes.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        async move {
            let url_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
            if url_len > shared.limits.max_url {
                let refused = HeadError::UriTooLong;
                return Ok::<_, Infallible>(respond::plain(refused.status(), &refused.to_string()));
            }
            Ok(shared.route(req.map(Body::new), peer).await)
        }
    });
    let io = TokioIo::new(Prefixed { read, stream });
    let conn = hyper::server::conn::http2::Builder::new(executor)
        .timer(TokioTimer::new())
        .serve_connection(io, service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = closing.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "HTTP/2 connection closed with an error");
    }
}

/// A socket with bytes already read put back in front.
struct Prefixed {
    read: Bytes,
    stream: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read.has_remaining() {
            let n = self.read.len().min(buf.remaining());
            buf.put_slice(&self.read[..n]);
            self.read.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_preface_early_and_late() {
        assert_eq!(is_preface(b"PRI * HT"), None);
        assert_eq!(is_preface(PREFACE), Some(true));
        assert_eq!(
            is_preface(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0"),
            Some(true)
        );
        assert_eq!(is_preface(b"GET / HTTP/1.1\r\n"), Some(false));
        assert_eq!(is_preface(b"P"), None);
        assert_eq!(is_preface(b"POST"), Some(false));
    }
}
