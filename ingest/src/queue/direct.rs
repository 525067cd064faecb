//! A writer's own connection to a standalone Redis: a batch's RPUSH commands encoded into one
//! buffer, written with one call, and their replies read back in order (RESP2).
//!
//! fred handles every other Redis command of the node (PINGs, `CONFIG GET`, the spool's
//! replays) and every queue write to Sentinel or Cluster. For the hot path it costs ~3.7 µs of
//! the node's CPU per command (building, routing and answering it through its connection
//! task; docs/ingest.md, "Session 14"), more than the rest of a hit's encoding; here a command
//! costs its bytes. `ingest.direct_redis_writes = false` puts the queue writes back on fred.
//!
//! The semantics are the write-once ones of [`super::redis`]: a batch is written at most once;
//! a command is "not sent" when nothing of the batch reached the socket, "rejected" for an error
//! reply, "unknown" when it was written and its reply did not come (connection lost, protocol
//! error, `redis.command_timeout`). Any of the last closes the connection, so nothing is ever
//! written late. A closed connection is opened again in the background (at once, then after
//! 100 ms doubling up to 2 s between attempts); meanwhile writes are "not sent" at once, as
//! fred's fail-fast does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::EnqueueError;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `SELECT`ed when not 0.
    pub database: u8,
    /// `AUTH`, when set.
    pub password: Option<String>,
    /// Bounds a connection attempt, and a batch's write and replies.
    pub timeout: Duration,
}

/// An open connection: the socket and the bytes read, of which those from `start` on are not
/// yet parsed.
#[derive(Debug)]
pub struct Stream {
    socket: TcpStream,
    read: Vec<u8>,
    start: usize,
}

/// Room made in the read buffer before each read.
const READ_CHUNK: usize = 4096;
/// A reply line longer than this (these commands' replies are a few bytes; an error reply a
/// sentence) means the connection does not speak RESP as expected.
const MAX_REPLY_LINE: usize = 64 * 1024;

/// The write buffer kept between batches is trimmed back to this after a larger batch.
const KEPT_WRITE_CAPACITY: usize = 256 * 1024;
/// Reconnect delays: the first attempt is immediate (Redis closing an idle connection, its
/// `timeout` setting, should not hold the next hits), then 100 ms, doubling up to 2 s.
const SECOND_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(2);

/// One writer's connection, which may be closed.
#[derive(Debug)]
pub struct DirectConn {
    endpoint: Endpoint,
    stream: Option<Stream>,
    /// Shared with the sink's readiness check.
    connected: Arc<AtomicBool>,
    /// The delay before the next reconnect attempt.
    retry: Duration,
    write: Vec<u8>,
}

impl Endpoint {
    /// Opens a connection: TCP (no Nagle), `AUTH` and `SELECT` as configured, all within
    /// `timeout`.
    pub async fn connect(&self) -> Result<Stream, String> {
        tokio::time::timeout(self.timeout, self.connect_unbounded())
            .await
            .map_err(|_| "connection timed out".to_owned())?
    }

    async fn connect_unbounded(&self) -> Result<Stream, String> {
        let socket = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| e.to_string())?;
        socket.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut stream = Stream {
            socket,
            read: Vec::new(),
            start: 0,
        };
        if let Some(password) = &self.password {
            stream.setup(&[b"AUTH", password.as_bytes()]).await?;
        }
        if self.database != 0 {
            let database = self.database.to_string();
            stream.setup(&[b"SELECT", database.as_bytes()]).await?;
        }
        Ok(stream)
    }
}

impl Stream {
    /// Sends one set-up command and expects `+OK`.
    async fn setup(&mut self, args: &[&[u8]]) -> Result<(), String> {
        let mut buf = Vec::new();
        encode_command(&mut buf, args);
        self.socket
            .write_all(&buf)
            .await
            .map_err(|e| e.to_string())?;
        let name = String::from_utf8_lossy(args[0]).into_owned();
        match self.reply().await.map_err(|e| e.to_string())? {
            Reply::Status(status) if status == "OK" => Ok(()),
            Reply::Error(error) => Err(format!("{name}: {error}")),
            other => Err(format!("{name}: unexpected reply {other:?}")),
        }
    }

    /// Reads the next reply. Replies to RPUSH, AUTH and SELECT are one line each.
    async fn reply(&mut self) -> std::io::Result<Reply> {
        loop {
            let unread = &self.read[self.start..];
            if let Some(end) = memchr::memmem::find(unread, b"\r\n") {
                let reply = parse_line(&unread[..end]);
                self.start += end + 2;
                if self.start == self.read.len() {
                    self.read.clear();
                    self.start = 0;
                }
                return Ok(reply);
            }
            if unread.len() > MAX_REPLY_LINE {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "reply line too long",
                ));
            }
            self.read.drain(..self.start);
            self.start = 0;
            self.read.reserve(READ_CHUNK);
            if self.socket.read_buf(&mut self.read).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

/// A one-line RESP2 reply.
#[derive(Debug, PartialEq)]
enum Reply {
    /// `:n`.
    Integer,
    /// `+text`.
    Status(String),
    /// `-text`.
    Error(String),
    /// Anything else: not a reply these commands get.
    Unexpected(String),
}

fn parse_line(line: &[u8]) -> Reply {
    let text = || String::from_utf8_lossy(&line[1..]).into_owned();
    match line.first() {
        Some(b':') if line.len() > 1 => Reply::Integer,
        Some(b'+') => Reply::Status(text()),
        Some(b'-') => Reply::Error(text()),
        _ => Reply::Unexpected(String::from_utf8_lossy(line).into_owned()),
    }
}

/// Appends `args` as one RESP2 command (an array of bulk strings).
fn encode_command(buf: &mut Vec<u8>, args: &[&[u8]]) {
    encode_header(buf, b'*', args.len());
    for arg in args {
        encode_header(buf, b'$', arg.len());
        buf.extend_from_slice(arg);
        buf.extend_from_slice(b"\r\n");
    }
}

fn encode_header(buf: &mut Vec<u8>, kind: u8, n: usize) {
    buf.push(kind);
    buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    buf.extend_from_slice(b"\r\n");
}

/// Appends `RPUSH key values...`.
fn encode_rpush(buf: &mut Vec<u8>, key: &[u8], values: &[Bytes]) {
    encode_header(buf, b'*', values.len() + 2);
    for arg in [&b"RPUSH"[..], key]
        .into_iter()
        .chain(values.iter().map(|v| &v[..]))
    {
        encode_header(buf, b'$', arg.len());
        buf.extend_from_slice(arg);
        buf.extend_from_slice(b"\r\n");
    }
}

/// How far a batch got before it failed.
#[derive(Debug, Default)]
struct Progress {
    written: usize,
    replies: Vec<Result<(), EnqueueError>>,
}

impl DirectConn {
    /// A writer's connection over `stream`, opened by [`Endpoint::connect`].
    pub fn new(endpoint: Endpoint, stream: Stream, connected: Arc<AtomicBool>) -> Self {
        connected.store(true, Ordering::Relaxed);
        Self {
            endpoint,
            stream: Some(stream),
            connected,
            retry: Duration::ZERO,
            write: Vec::new(),
        }
    }

    /// The flag that says whether the connection is open, for the readiness check.
    pub fn open_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.connected)
    }

    /// Whether the connection is open.
    pub fn is_open(&self) -> bool {
        self.stream.is_some()
    }

    /// The next reconnect attempt: after the current delay, which then grows (see
    /// [`SECOND_RETRY`]). Needs no borrow of the connection, so jobs are answered while it runs.
    pub fn reconnect(&mut self) -> impl std::future::Future<Output = Result<Stream, String>> {
        let endpoint = self.endpoint.clone();
        let delay = self.retry;
        self.retry = (self.retry * 2).clamp(SECOND_RETRY, LAST_RETRY);
        async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            endpoint.connect().await
        }
    }

    /// Takes a connection a [`Self::reconnect`] opened.
    pub fn reopened(&mut self, stream: Stream) {
        self.stream = Some(stream);
        self.retry = Duration::ZERO;
        self.connected.store(true, Ordering::Relaxed);
        tracing::info!("redis queue writer reconnected");
    }

    fn close(&mut self, why: &str) {
        if self.stream.take().is_some() {
            tracing::warn!(reason = why, "redis queue writer connection closed");
        }
        self.connected.store(false, Ordering::Relaxed);
    }

    /// Waits until the idle connection has something to read: Redis closed it (or sent what no
    /// command asked for). Pending forever while closed.
    pub async fn readable(&self) {
        match &self.stream {
            Some(stream) => {
                let _ = stream.socket.readable().await;
            }
            None => std::future::pending().await,
        }
    }

    /// After [`Self::readable`]: closes the connection if it was closed by Redis or carries
    /// unasked-for bytes (a readiness without either is let go).
    pub fn check_idle(&mut self) {
        let Some(stream) = &self.stream else { return };
        let mut byte = [0u8; 1];
        match stream.socket.try_read(&mut byte) {
            Ok(0) => self.close("closed by redis"),
            Ok(_) => self.close("unexpected bytes from redis"),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => self.close(&e.to_string()),
        }
    }

    /// Writes `commands` (key, values) as one RPUSH each and returns each one's outcome, in
    /// order.
    pub async fn rpush_all(
        &mut self,
        commands: &[(&[u8], &[Bytes])],
    ) -> Vec<Result<(), EnqueueError>> {
        let Some(stream) = self.stream.as_mut() else {
            let not_sent = EnqueueError::NotSent("disconnected".into());
            return vec![Err(not_sent); commands.len()];
        };
        self.write.clear();
        for (key, values) in commands {
            encode_rpush(&mut self.write, key, values);
        }
        let mut progress = Progress {
            written: 0,
            replies: Vec::with_capacity(commands.len()),
        };
        let exchange = exchange(stream, &self.write, commands.len(), &mut progress);
        let failure = match tokio::time::timeout(self.endpoint.timeout, exchange).await {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error),
            Err(_) => Some("Request timed out.".to_owned()),
        };
        if self.write.capacity() > KEPT_WRITE_CAPACITY {
            self.write = Vec::new();
        }
        let Progress {
            written,
            mut replies,
        } = progress;
        if let Some(error) = failure {
            self.close(&error);
            let rest = if written == 0 {
                EnqueueError::NotSent(error)
            } else {
                EnqueueError::Unknown(error)
            };
            replies.resize(commands.len(), Err(rest));
        }
        replies
    }
}

/// Writes `bytes`, then reads `count` replies into `progress` (kept by the caller when a
/// timeout cuts this short). An error means the connection is no longer usable.
async fn exchange(
    stream: &mut Stream,
    bytes: &[u8],
    count: usize,
    progress: &mut Progress,
) -> Result<(), String> {
    while progress.written < bytes.len() {
        match stream.socket.write(&bytes[progress.written..]).await {
            Ok(0) => return Err("connection closed while writing".into()),
            Ok(n) => progress.written += n,
            Err(e) => return Err(e.to_string()),
        }
    }
    while progress.replies.len() < count {
        match stream.reply().await.map_err(|e| e.to_string())? {
            Reply::Integer => progress.replies.push(Ok(())),
            Reply::Error(error) => progress.replies.push(Err(EnqueueError::Rejected(error))),
            other => return Err(format!("unexpected reply to RPUSH: {other:?}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpush_is_an_array_of_bulk_strings() {
        let mut buf = Vec::new();
        encode_rpush(&mut buf, b"q_1", &[Bytes::from_static(b"ab"), Bytes::new()]);
        assert_eq!(
            buf,
            b"*4\r\n$5\r\nRPUSH\r\n$3\r\nq_1\r\n$2\r\nab\r\n$0\r\n\r\n"
        );
        let mut setup = Vec::new();
        encode_command(&mut setup, &[b"SELECT", b"12"]);
        assert_eq!(setup, b"*2\r\n$6\r\nSELECT\r\n$2\r\n12\r\n");
    }

    #[test]
    fn reply_lines_by_their_first_byte() {
        assert_eq!(parse_line(b":17"), Reply::Integer);
        assert_eq!(parse_line(b"+OK"), Reply::Status("OK".into()));
        assert_eq!(
            parse_line(b"-OOM command not allowed"),
            Reply::Error("OOM command not allowed".into())
        );
        assert_eq!(parse_line(b":"), Reply::Unexpected(":".into()));
        assert_eq!(parse_line(b"$3"), Reply::Unexpected("$3".into()));
        assert_eq!(parse_line(b""), Reply::Unexpected(String::new()));
    }
}
