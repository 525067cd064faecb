//! A raw HTTP/1.1 client for the bad-input tests: sends exact bytes (non-ASCII request lines,
//! lying `Content-Length`s, bodies cut off mid-way) and trickles requests byte by byte, which no
//! well-behaved client library does.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// What came back on a connection before the server closed it.
#[derive(Debug)]
pub struct Answer {
    /// The status code, or `None` when the server closed without answering.
    pub status: Option<u16>,
    /// The raw header block (status line included).
    pub head: String,
    /// The body bytes (everything after the blank line).
    pub body: Vec<u8>,
    /// Time from the first byte sent to the connection's end.
    pub elapsed: Duration,
}

impl Answer {
    fn parse(bytes: &[u8], elapsed: Duration) -> Self {
        let split = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(bytes.len(), |p| p + 4);
        let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
        let status = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok());
        Self {
            status,
            head,
            body: bytes[split..].to_vec(),
            elapsed,
        }
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `request` (which should say `Connection: close`) while reading, and reads until the
/// server closes, failing the test after `limit`. The server may answer and close before
/// everything is written (a 413 on the declared length); the rest of the write then fails.
pub async fn exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> Answer {
    let started = Instant::now();
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let request = request.to_vec();
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(&request).await;
        writer
    });
    let mut received = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let read = tokio::time::timeout(
            limit.saturating_sub(started.elapsed()),
            reader.read(&mut chunk),
        )
        .await
        .unwrap_or_else(|_| panic!("no end of the answer within {limit:?}"));
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
        }
    }
    writing.abort();
    Answer::parse(&received, started.elapsed())
}

/// Sends `request` one byte every `every`, while reading; returns when the server closes the
/// connection (or answers and closes), failing the test after `limit`.
pub async fn trickle(
    addr: SocketAddr,
    request: Vec<u8>,
    every: Duration,
    limit: Duration,
) -> Answer {
    trickle_after(addr, request, 0, every, limit).await
}

/// Like [`trickle`], but the first `at_once` bytes are sent in one write.
pub async fn trickle_after(
    addr: SocketAddr,
    request: Vec<u8>,
    at_once: usize,
    every: Duration,
    limit: Duration,
) -> Answer {
    let started = Instant::now();
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        let (first, rest) = request.split_at(at_once.min(request.len()));
        if writer.write_all(first).await.is_err() {
            return;
        }
        for byte in rest {
            tokio::time::sleep(every).await;
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
        }
        // Everything sent: keep the connection open so only the server can end it.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
    let mut received = Vec::new();
    let read = tokio::time::timeout(limit, reader.read_to_end(&mut received)).await;
    writing.abort();
    assert!(
        read.is_ok(),
        "the server did not end a trickling connection within {limit:?}"
    );
    Answer::parse(&received, started.elapsed())
}
