//! The local disk spool: where accepted hits go while Redis cannot take them, until the replayer
//! moves them to Redis in their original order.
//!
//! - [`record`]: the checksummed record format (pure);
//! - [`store`]: segment files, the persisted read cursor, recovery on open;
//! - [`Spool`] (here): the append path and the shared counters; `writer`: the thread that
//!   group-commits appends (one write and, under `fsync = "always"`, one fsync for everything
//!   waiting) and answers each caller only after its records are written (and synced);
//! - [`sink`]: [`SpoolingSink`], the [`crate::queue::Sink`] that decides between Redis and the
//!   spool, and the replayer task;
//! - [`guard`]: the Redis memory/queue-length guard;
//! - [`metrics`]: the spool's and the guard's metrics.
//!
//! The spool never decides on its own to drop an acknowledged hit: a full spool refuses new ones
//! (503), a corrupt record is skipped and counted, and nothing else is removed before the
//! replayer has pushed it to Redis.

pub mod guard;
pub mod metrics;
pub mod record;
pub mod sink;
pub mod store;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tier_config::{FsyncPolicy, SpoolConfig};
use tokio::sync::oneshot;

pub use sink::SpoolingSink;
use store::{Appender, Batch, Position, Recovered};
use writer::Writer;

use crate::queue::{EnqueueError, QueueEntry};
use metrics::SpoolMetrics;

/// Smallest and largest segment size; the target is an eighth of `max_bytes` between these.
const MIN_SEGMENT_BYTES: u64 = 1024 * 1024;
const MAX_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Why the spool could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("ingest.spool.dir = {dir}: {source}")]
pub struct OpenError {
    dir: String,
    source: std::io::Error,
}

/// State shared by the writer thread, the replayer and the request path.
#[derive(Debug)]
struct Shared {
    /// Segments present and their committed lengths (what readers may read).
    segments: BTreeMap<u64, u64>,
    /// First record not yet replayed.
    cursor: Position,
    /// Valid records not yet replayed.
    entries: u64,
    /// Bytes of all segment files.
    bytes: u64,
    /// Set when the writer refused a request for lack of room; cleared by the next successful
    /// write or replayed batch.
    full: bool,
}

impl Shared {
    /// Bytes not yet replayed: what counts against `max_bytes`. (Segments before the cursor's
    /// are deleted as the cursor passes them; the replayed head of the cursor's segment stays on
    /// disk until that segment is passed too, so the folder can hold up to one segment more.)
    fn pending_bytes(&self) -> u64 {
        let consumed = if self.segments.contains_key(&self.cursor.segment) {
            self.cursor.offset
        } else {
            0
        };
        self.bytes.saturating_sub(consumed)
    }

    fn end(&self) -> Position {
        self.segments
            .iter()
            .next_back()
            .map(|(&segment, &offset)| Position { segment, offset })
            .unwrap_or_default()
    }
}

struct AppendJob {
    entries: Vec<QueueEntry>,
    done: oneshot::Sender<Result<(), EnqueueError>>,
}

/// The spool of one ingest node.
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    policy: FsyncPolicy,
    node_id: String,
    shared: Arc<Mutex<Shared>>,
    metrics: SpoolMetrics,
    jobs: Mutex<Option<std_mpsc::Sender<AppendJob>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Spool {
    /// Opens `cfg.dir` (recovering what a previous run left) and starts the writer thread.
    pub fn open(cfg: &SpoolConfig, dir: &Path, metrics: SpoolMetrics) -> Result<Self, OpenError> {
        let open_error = |source| OpenError {
            dir: dir.display().to_string(),
            source,
        };
        let Recovered {
            mut segments,
            cursor,
            entries,
            truncated_bytes,
            node_id,
        } = store::recover(dir).map_err(open_error)?;
        if truncated_bytes > 0 {
            metrics.truncated(truncated_bytes);
        }
        let (segment, len) = match segments.iter().next_back() {
            Some((&n, &len)) => (n, len),
            None => (cursor.segment.max(1), 0),
        };
        let appender = Appender::open(dir, segment, len).map_err(open_error)?;
        segments.insert(segment, len);
        // Keep the cursor inside what exists: a fresh folder starts at the first segment, and a
        // cursor past the end (segment files removed by hand) must not hide new appends.
        let first = segments.keys().next().copied().unwrap_or(segment);
        let end = Position {
            segment,
            offset: len,
        };
        let cursor = if cursor.segment < first {
            Position {
                segment: first,
                offset: 0,
            }
        } else {
            cursor.min(end)
        };
        let shared = Shared {
            bytes: segments.values().sum(),
            segments,
            cursor,
            entries,
            full: false,
        };
        if entries > 0 {
            tracing::info!(entries, dir = %dir.display(), "spool holds entries from a previous run; replaying when Redis is healthy");
        }
        let shared = Arc::new(Mutex::new(shared));
        let (tx, rx) = std_mpsc::channel();
        let writer = Writer {
            appender,
            shared: shared.clone(),
            max_bytes: cfg.max_bytes,
            segment_target: (cfg.max_bytes / 8).clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES),
            policy: cfg.fsync,
            interval: cfg.fsync_interval,
            metrics: metrics.clone(),
            unsynced: false,
            last_sync: Instant::now(),
        };
        let handle = std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(open_error)?;
        let spool = Self {
            dir: dir.to_owned(),
            max_bytes: cfg.max_bytes,
            policy: cfg.fsync,
            node_id,
            shared,
            metrics,
            jobs: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
        };
        spool.publish();
        Ok(spool)
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock cannot leave the counters half-updated in a way that
        // matters more than stopping the node would; keep going with the inner value.
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This spool's id (names its replay marker in Redis).
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Appends `entries`; resolves after they are written (and synced under `always`).
    pub async fn append(&self, entries: Vec<QueueEntry>) -> Result<(), EnqueueError> {
        let (done, answer) = oneshot::channel();
        {
            let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            let Some(jobs) = jobs.as_ref() else {
                return Err(EnqueueError::Closed);
            };
            jobs.send(AppendJob { entries, done })
                .map_err(|_| EnqueueError::Closed)?;
        }
        answer.await.map_err(|_| EnqueueError::Closed)?
    }

    /// Whether every spooled record has been replayed.
    pub fn is_empty(&self) -> bool {
        let shared = self.lock();
        shared.cursor >= shared.end()
    }

    /// Entries waiting for replay.
    pub fn entries(&self) -> u64 {
        self.lock().entries
    }

    /// Whether the spool has room for more (it may still refuse a large request).
    pub fn has_room(&self) -> bool {
        let shared = self.lock();
        !shared.full && shared.pending_bytes() < self.max_bytes
    }

    /// Reads the next batch to replay (blocking file I/O).
    pub fn read_batch(&self, max_records: usize, max_bytes: usize) -> std::io::Result<Batch> {
        let (segments, cursor) = {
            let shared = self.lock();
            (shared.segments.clone(), shared.cursor)
        };
        store::read_batch(&self.dir, &segments, cursor, max_records, max_bytes)
    }

    /// Marks `batch` as replayed: moves and persists the cursor and deletes the segments it
    /// passed (blocking file I/O).
    pub fn commit(&self, batch: &Batch) -> std::io::Result<()> {
        let sync = self.policy != FsyncPolicy::Never;
        store::write_cursor(&self.dir, batch.end, sync)?;
        let passed: Vec<u64> = {
            let mut shared = self.lock();
            shared.cursor = batch.end;
            shared.full = false;
            shared.entries = shared.entries.saturating_sub(batch.records.len() as u64);
            let newest = shared.end().segment;
            shared
                .segments
                .range(..batch.end.segment.min(newest))
                .map(|(&n, _)| n)
                .collect()
        };
        for n in &passed {
            match std::fs::remove_file(store::segment_path(&self.dir, *n)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            let mut shared = self.lock();
            if let Some(len) = shared.segments.remove(n) {
                shared.bytes = shared.bytes.saturating_sub(len);
            }
        }
        if !passed.is_empty() && sync {
            store::sync_dir(&self.dir)?;
        }
        self.metrics
            .replayed(batch.records.len() as u64, batch.corrupt);
        self.publish();
        Ok(())
    }

    /// Copies the counters to the gauges.
    pub fn publish(&self) {
        let shared = self.lock();
        self.metrics
            .state(shared.bytes, shared.entries, shared.segments.len() as u64);
    }

    /// The spool's metrics.
    pub fn metrics(&self) -> &SpoolMetrics {
        &self.metrics
    }

    /// Stops the writer after it has written (and synced) what it was given.
    pub fn close(&self) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(queue_id: u16, text: &str) -> QueueEntry {
        QueueEntry {
            queue_id,
            bytes: text.as_bytes().to_vec(),
        }
    }

    #[tokio::test]
    async fn append_read_commit_and_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = SpoolConfig::default();
        let spool = Spool::open(&cfg, dir.path(), SpoolMetrics::default()).expect("open");
        assert!(spool.is_empty(), "a fresh spool is empty");
        spool
            .append(vec![entry(1, "a"), entry(2, "b")])
            .await
            .expect("append");
        spool.append(vec![entry(3, "c")]).await.expect("append");
        assert!(!spool.is_empty());
        assert_eq!(spool.entries(), 3);
        let batch = spool.read_batch(2, 1 << 20).expect("read");
        let got: Vec<&[u8]> = batch.records.iter().map(|(_, r)| &r.bytes[..]).collect();
        assert_eq!(got, vec![&b"a"[..], b"b"]);
        spool.commit(&batch).expect("commit");
        assert_eq!(spool.entries(), 1);
        spool.close();
        drop(spool);

        let spool = Spool::open(&cfg, dir.path(), SpoolMetrics::default()).expect("reopen");
        assert_eq!(spool.entries(), 1, "the cursor survived");
        let batch = spool.read_batch(10, 1 << 20).expect("read");
        assert_eq!(batch.records.len(), 1);
        assert_eq!(batch.records[0].1.queue_id, 3);
        spool.commit(&batch).expect("commit");
        assert!(spool.is_empty());
    }

    #[tokio::test]
    async fn a_full_spool_refuses_and_reports_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = SpoolConfig {
            max_bytes: 100,
            ..SpoolConfig::default()
        };
        let spool = Spool::open(&cfg, dir.path(), SpoolMetrics::default()).expect("open");
        spool
            .append(vec![entry(0, &"x".repeat(60))])
            .await
            .expect("fits");
        let refused = spool.append(vec![entry(0, &"y".repeat(60))]).await;
        assert!(
            matches!(refused, Err(EnqueueError::SpoolFull)),
            "{refused:?}"
        );
        assert!(!spool.has_room());
        let batch = spool.read_batch(10, 1 << 20).expect("read");
        spool.commit(&batch).expect("commit");
        assert!(spool.has_room(), "replay frees the room");
    }
}
