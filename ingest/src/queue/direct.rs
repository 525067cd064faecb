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
//! a command is "not sent" when not all of its bytes reached the socket (Redis runs only whole
//! commands), "rejected" for an error reply, "unknown" when it was written whole and its reply
//! did not come (connection lost, protocol error, `redis.command_timeout`). Any of the last
//! closes the connection, over TCP with a reset, so the node writes nothing of it later (over a
//! Unix socket a write's bytes are already in Redis' receive queue). A connection opens
//! with `AUTH` and `SELECT` as configured and a `PING`; a closed one is opened again in the
//! background (at once, then after 100 ms doubling up to 2 s between attempts, reset by a batch
//! that succeeds); meanwhile writes are "not sent" at once, as fred's fail-fast does.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::Sleep;

pub use super::socket::Address;
use super::socket::Socket;
use super::EnqueueError;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// A host and port, or a Unix socket.
    pub address: Address,
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
    socket: Socket,
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
/// `timeout` setting, should not hold the next hits), then 100 ms, doubling up to 2 s. The
/// delay starts again from the immediate attempt once a connection has carried a batch or
/// lived [`LAST_RETRY`]: one that a server drops right after the set-up keeps it growing.
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
    /// When the open connection was opened.
    opened_at: Instant,
    /// The encoded batch, kept between batches.
    write: Vec<u8>,
    /// Where each command of the batch ends in `write`.
    ends: Vec<usize>,
    /// Bounds each batch by `endpoint.timeout`: one timer for the connection's life, moved
    /// forward for each batch, instead of a new one per batch. A new timer due before every
    /// other timer of the lane makes tokio wake the lane's driver through its eventfd (a
    /// `write` system call per batch); a timer whose deadline has not passed yet, moved to a
    /// later one, is only marked, with no lock and no wake-up (after an idle spell longer than
    /// the timeout it is registered again, once). Created on the first batch, on the lane's
    /// runtime.
    batch_timer: Option<Pin<Box<Sleep>>>,
}

impl Endpoint {
    /// Opens a connection (TCP with no Nagle and keepalive, or a Unix socket), `AUTH` and
    /// `SELECT` as configured and a `PING`, all within `timeout`.
    pub async fn connect(&self) -> Result<Stream, String> {
        tokio::time::timeout(self.timeout, self.connect_unbounded())
            .await
            .map_err(|_| "connection timed out".to_owned())?
    }

    async fn connect_unbounded(&self) -> Result<Stream, String> {
        let socket = Socket::connect(&self.address)
            .await
            .map_err(|e| e.to_string())?;
        let mut stream = Stream {
            socket,
            read: Vec::new(),
            start: 0,
        };
        // AUTH and SELECT as configured, and always a PING: a server that accepts the TCP
        // connection and then refuses (maxclients, protected mode, a proxy in front of a Redis
        // that is down) fails here, in the reconnect's backoff, not on the first batch.
        let database = self.database.to_string();
        let mut setup: Vec<(&[&[u8]], &str)> = Vec::new();
        let auth: [&[u8]; 2];
        if let Some(password) = &self.password {
            auth = [b"AUTH", password.as_bytes()];
            setup.push((&auth, "OK"));
        }
        let select: [&[u8]; 2] = [b"SELECT", database.as_bytes()];
        if self.database != 0 {
            setup.push((&select, "OK"));
        }
        setup.push((&[b"PING"], "PONG"));
        let mut buf = Vec::new();
        for (args, _) in &setup {
            encode_command(&mut buf, args);
        }
        stream
            .socket
            .write_all(&buf)
            .await
            .map_err(|e| format!("set-up: {e}"))?;
        for (args, expected) in &setup {
            let name = String::from_utf8_lossy(args[0]).into_owned();
            match stream.reply().await.map_err(|e| format!("{name}: {e}"))? {
                Reply::Status(status) if status == *expected => {}
                Reply::Error(error) => return Err(format!("{name}: {error}")),
                other => return Err(format!("{name}: unexpected reply {other:?}")),
            }
        }
        if stream.has_unread() {
            return Err("unexpected bytes after the set-up replies".into());
        }
        Ok(stream)
    }
}

impl Stream {
    /// Reads the next reply. Replies to RPUSH, AUTH, SELECT and PING are one line each.
    async fn reply(&mut self) -> std::io::Result<Reply> {
        loop {
            let unread = &self.read[self.start..];
            if let Some(lf) = memchr::memchr(b'\n', unread) {
                let line = unread[..lf].strip_suffix(b"\r").ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "reply line without CR")
                })?;
                let reply = parse_line(line);
                self.start += lf + 1;
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

    /// Whether bytes were read past the last reply parsed: nothing asked for them.
    fn has_unread(&self) -> bool {
        self.start < self.read.len()
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
    encode_array(buf, args.len(), args.iter().copied());
}

/// Appends an array of `len` bulk strings, `args`.
fn encode_array<'a>(buf: &mut Vec<u8>, len: usize, args: impl IntoIterator<Item = &'a [u8]>) {
    encode_header(buf, b'*', len);
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
fn encode_rpush(buf: &mut Vec<u8>, key: &[u8], values: &[Vec<u8>]) {
    let args = [&b"RPUSH"[..], key]
        .into_iter()
        .chain(values.iter().map(|v| &v[..]));
    encode_array(buf, values.len() + 2, args);
}

/// How far a batch got before it failed.
#[derive(Debug)]
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
            opened_at: Instant::now(),
            write: Vec::new(),
            ends: Vec::new(),
            batch_timer: None,
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
    /// [`SECOND_RETRY`]) until a batch succeeds on a connection again. Needs no borrow of the
    /// connection, so jobs are answered while it runs.
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

    /// Takes a connection a [`Self::reconnect`] opened. The delay before the next attempt is
    /// reset only once a batch succeeds on it or it lived [`LAST_RETRY`]: a server that answers
    /// the set-up and then drops every connection is retried at the growing delay, not in a
    /// loop.
    pub fn reopened(&mut self, stream: Stream) {
        self.stream = Some(stream);
        self.opened_at = Instant::now();
        self.connected.store(true, Ordering::Relaxed);
        tracing::info!("redis queue writer reconnected");
    }

    /// Drops the connection, over TCP with a reset (`SO_LINGER` 0): bytes of a failed batch
    /// still in the send buffer are discarded, not delivered after the failure was answered.
    fn close(&mut self, why: &str) {
        if let Some(stream) = self.stream.take() {
            if self.opened_at.elapsed() >= LAST_RETRY {
                self.retry = Duration::ZERO;
            }
            stream.socket.discard_unsent_on_close();
            tracing::warn!(reason = why, "redis queue writer connection closed");
        }
        self.connected.store(false, Ordering::Relaxed);
    }

    /// Waits until the idle connection has something to read: Redis closed it (or sent what no
    /// command asked for). Pending forever while closed. `false` if the socket can no longer
    /// be watched (its runtime is shutting down).
    pub async fn readable(&self) -> bool {
        match &self.stream {
            Some(stream) => stream.socket.readable().await.is_ok(),
            None => std::future::pending().await,
        }
    }

    /// After [`Self::readable`]: closes the connection if it was closed by Redis, carries
    /// unasked-for bytes or cannot be watched (`watchable` false); a readiness without any of
    /// these is let go.
    pub fn check_idle(&mut self, watchable: bool) {
        let Some(stream) = &self.stream else { return };
        if !watchable {
            return self.close("the connection can no longer be watched");
        }
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
    ///
    /// On a failure a command without its reply is "unknown" when all its bytes were written
    /// (Redis may have run it), "not sent" when they were not: Redis runs a command only once
    /// it has all of it, and the connection is closed, so a cut-off command is never run.
    pub async fn rpush_all(
        &mut self,
        commands: &[(&[u8], &[Vec<u8>])],
    ) -> Vec<Result<(), EnqueueError>> {
        let Some(stream) = self.stream.as_mut() else {
            let not_sent = EnqueueError::NotSent("disconnected".into());
            return vec![Err(not_sent); commands.len()];
        };
        self.write.clear();
        self.ends.clear();
        for (key, values) in commands {
            encode_rpush(&mut self.write, key, values);
            self.ends.push(self.write.len());
        }
        let mut progress = Progress {
            written: 0,
            replies: Vec::with_capacity(commands.len()),
        };
        let deadline = tokio::time::Instant::now() + self.endpoint.timeout;
        let timer = self
            .batch_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        timer.as_mut().reset(deadline);
        let exchange = exchange(stream, &self.write, commands.len(), &mut progress);
        let outcome = tokio::select! {
            biased;
            done = exchange => Ok(done),
            () = timer.as_mut() => Err(()),
        };
        let failure = match outcome {
            // Every command has its reply, yet more follows: the replies may be out of step
            // with the commands, so none of them is trusted.
            Ok(Ok(())) if stream.has_unread() => {
                progress.replies.clear();
                Some("unexpected bytes after the replies".to_owned())
            }
            Ok(Ok(())) => {
                self.retry = Duration::ZERO;
                None
            }
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
            replies.extend(unanswered(&self.ends[replies.len()..], written, &error));
        }
        replies
    }
}

/// The outcomes of commands that got no reply, given where each ends in the batch and how many
/// of its bytes were written when `error` ended it: "unknown" for a command written whole (Redis
/// may have run it), "not sent" for one that was not (Redis runs only whole commands, and the
/// connection is closed, so the rest never arrives).
fn unanswered<'a>(
    ends: &'a [usize],
    written: usize,
    error: &'a str,
) -> impl Iterator<Item = Result<(), EnqueueError>> + 'a {
    ends.iter().map(move |&end| {
        Err(if end <= written {
            EnqueueError::Unknown(error.to_owned())
        } else {
            EnqueueError::NotSent(format!("{error} (not written)"))
        })
    })
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
        encode_rpush(&mut buf, b"q_1", &[b"ab".to_vec(), Vec::new()]);
        assert_eq!(
            buf,
            b"*4\r\n$5\r\nRPUSH\r\n$3\r\nq_1\r\n$2\r\nab\r\n$0\r\n\r\n"
        );
        let mut setup = Vec::new();
        encode_command(&mut setup, &[b"SELECT", b"12"]);
        assert_eq!(setup, b"*2\r\n$6\r\nSELECT\r\n$2\r\n12\r\n");
    }

    #[test]
    fn a_command_without_its_reply_is_unknown_only_when_written_whole() {
        // Three commands ending at 10, 25 and 40 bytes; 25 bytes were written.
        let outcomes: Vec<_> = unanswered(&[10, 25, 40], 25, "cut").collect();
        assert!(matches!(&outcomes[0], Err(EnqueueError::Unknown(e)) if e == "cut"));
        assert!(
            matches!(&outcomes[1], Err(EnqueueError::Unknown(_))),
            "ends exactly there"
        );
        assert!(
            matches!(&outcomes[2], Err(EnqueueError::NotSent(e)) if e == "cut (not written)"),
            "{outcomes:?}"
        );
        let none_written: Vec<_> = unanswered(&[10], 0, "down").collect();
        assert!(matches!(&none_written[..], [Err(EnqueueError::NotSent(_))]));
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
