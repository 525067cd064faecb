//! The local disk spool: where accepted hits go while Redis cannot take them, until the replayer
//! moves them to Redis in their original order.
//!
//! - [`record`]: the checksummed record format (pure);
//! - [`store`]: segment files, the persisted read cursor, recovery on open;
//! - [`Spool`] (here): the append path — one writer thread that group-commits appends (one write
//!   and, under `fsync = "always"`, one fsync for everything waiting) and answers each caller only
//!   after its records are written (and synced) — plus the shared counters;
//! - [`sink`]: [`SpoolingSink`], the [`crate::queue::Sink`] that decides between Redis and the
//!   spool, and the replayer task;
//! - [`guard`]: the Redis memory/queue-length guard;
//! - [`metrics`]: the spool's and the guard's metrics.
//!
//! The spool never decides on its own to drop an acknowledged hit: a full spool refuses new ones
//! (503), a corrupt record is skipped and counted, and nothing else is removed before the replay
//! marker in Redis covers it.

pub mod guard;
pub mod metrics;
pub mod record;
pub mod sink;
pub mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tier_config::{FsyncPolicy, SpoolConfig};
use tokio::sync::oneshot;

pub use sink::SpoolingSink;
use store::{Appender, Batch, Position, Recovered};

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
            None => (1, 0),
        };
        let appender = Appender::open(dir, segment, len).map_err(open_error)?;
        segments.insert(segment, len);
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

/// The writer thread: owns the newest segment.
struct Writer {
    appender: Appender,
    shared: Arc<Mutex<Shared>>,
    max_bytes: u64,
    segment_target: u64,
    policy: FsyncPolicy,
    interval: Duration,
    metrics: SpoolMetrics,
    unsynced: bool,
    last_sync: Instant,
}

impl Writer {
    fn run(mut self, rx: std_mpsc::Receiver<AppendJob>) {
        let tick = self.interval.max(Duration::from_millis(10));
        loop {
            let first = match rx.recv_timeout(tick) {
                Ok(job) => job,
                Err(std_mpsc::RecvTimeoutError::Timeout) => {
                    self.sync_if_due();
                    continue;
                }
                Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut jobs = vec![first];
            while let Ok(job) = rx.try_recv() {
                jobs.push(job);
                if jobs.len() >= 1024 {
                    break;
                }
            }
            self.write(jobs);
        }
        if self.unsynced && self.policy != FsyncPolicy::Never {
            let _ = self.appender.sync();
        }
    }

    fn sync_if_due(&mut self) {
        if self.unsynced
            && self.policy == FsyncPolicy::Interval
            && self.last_sync.elapsed() >= self.interval
        {
            match self.appender.sync() {
                Ok(()) => {
                    self.unsynced = false;
                    self.last_sync = Instant::now();
                }
                Err(error) => tracing::warn!(%error, "spool fsync failed"),
            }
        }
    }

    /// Appends every job that fits, syncs once, publishes the new lengths (only then may the
    /// replayer read them), and answers each job.
    fn write(&mut self, jobs: Vec<AppendJob>) {
        let start = (self.appender.segment, self.appender.len);
        let mut sealed: Vec<(u64, u64)> = Vec::new();
        let mut written = Vec::with_capacity(jobs.len());
        let mut failed = false;
        let mut pending = 0u64;
        let mut entries = 0u64;
        let used = self.lock_shared().pending_bytes();
        for job in jobs {
            if failed {
                let _ = job
                    .done
                    .send(Err(EnqueueError::Spool("write failed".into())));
                continue;
            }
            let mut buf = Vec::new();
            for entry in &job.entries {
                record::encode_into(&mut buf, entry.queue_id, &entry.bytes);
            }
            if used + pending + buf.len() as u64 > self.max_bytes {
                self.metrics.full();
                self.lock_shared().full = true;
                let _ = job.done.send(Err(EnqueueError::SpoolFull));
                continue;
            }
            if self.appender.len > 0 && self.appender.len + buf.len() as u64 > self.segment_target {
                let old = (self.appender.segment, self.appender.len);
                if let Err(e) = self.appender.roll(self.policy != FsyncPolicy::Never) {
                    tracing::error!(error = %e, "spool segment roll failed");
                    failed = true;
                    let _ = job.done.send(Err(EnqueueError::Spool(e.to_string())));
                    continue;
                }
                sealed.push(old);
            }
            if let Err(e) = self.appender.append(&buf) {
                tracing::error!(error = %e, "spool write failed");
                failed = true;
                let _ = job.done.send(Err(EnqueueError::Spool(e.to_string())));
                continue;
            }
            pending += buf.len() as u64;
            entries += job.entries.len() as u64;
            written.push(job.done);
        }
        if written.is_empty() {
            return;
        }
        if self.policy == FsyncPolicy::Always {
            if let Err(e) = self.appender.sync() {
                tracing::error!(error = %e, "spool fsync failed; refusing the hits of this write");
                // Cut the unsynced records off again so they are never replayed; across a
                // segment roll that is not possible and they may still be replayed once.
                if sealed.is_empty() && self.appender.segment == start.0 {
                    let _ = self.appender.rewind(start.1);
                } else {
                    self.publish(&sealed, pending, 0);
                }
                for done in written {
                    let _ = done.send(Err(EnqueueError::Spool(format!("fsync: {e}"))));
                }
                return;
            }
            self.last_sync = Instant::now();
        } else {
            self.unsynced = true;
            self.sync_if_due();
        }
        self.publish(&sealed, pending, entries);
        self.metrics.written(entries);
        for done in written {
            let _ = done.send(Ok(()));
        }
    }

    fn lock_shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes what was written visible to the replayer and the counters.
    fn publish(&self, sealed: &[(u64, u64)], bytes: u64, entries: u64) {
        let mut shared = self.lock_shared();
        for &(segment, len) in sealed {
            shared.segments.insert(segment, len);
        }
        shared
            .segments
            .insert(self.appender.segment, self.appender.len);
        shared.bytes += bytes;
        shared.entries += entries;
        if entries > 0 {
            shared.full = false;
        }
        self.metrics
            .state(shared.bytes, shared.entries, shared.segments.len() as u64);
    }
}
