//! A guard for connections that never say anything.
//!
//! hyper's `header_read_timeout` only starts once the HTTP/1 connection exists, and hyper-util's
//! auto (HTTP/1 or HTTP/2) builder first waits, without any limit, for the bytes that tell the
//! versions apart. A client that connects and stays silent would therefore hold a connection
//! (and a file descriptor) forever. [`FirstByteDeadline`] wraps the socket and fails its reads
//! with `TimedOut` when no byte at all arrived within the deadline; after the first byte it is a
//! plain pass-through and hyper's own timeouts take over.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `inner`, whose reads fail with [`io::ErrorKind::TimedOut`] if its first byte does not arrive
/// within the deadline.
#[derive(Debug)]
pub struct FirstByteDeadline<S> {
    inner: S,
    /// Running until the first byte is read; `None` afterwards.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> FirstByteDeadline<S> {
    /// Wraps `inner`; the clock starts now.
    pub fn new(inner: S, within: Duration) -> Self {
        Self {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(within))),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstByteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.deadline = None;
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if expired {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client sent nothing within the read timeout",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FirstByteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test]
    async fn silence_times_out_and_speech_disarms_the_deadline() {
        let within = Duration::from_millis(200);
        let (client, server) = tokio::io::duplex(64);
        let mut guarded = FirstByteDeadline::new(server, within);
        let mut buf = [0u8; 8];
        let error = guarded.read(&mut buf).await.expect_err("times out");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        drop(client);

        let (mut client, server) = tokio::io::duplex(64);
        let mut guarded = FirstByteDeadline::new(server, within);
        client.write_all(b"G").await.expect("write");
        assert_eq!(guarded.read(&mut buf).await.expect("read"), 1);
        // Past the deadline, a pending read just waits.
        let later = tokio::spawn(async move {
            tokio::time::sleep(within * 3).await;
            client.write_all(b"ET").await.expect("write");
            client
        });
        assert_eq!(guarded.read(&mut buf).await.expect("read"), 2);
        drop(later.await.expect("join"));
    }
}
