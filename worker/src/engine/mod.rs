//! The queue worker engine: N tasks share the QueuedTracking shards through Redis locks, drain
//! each shard in order in batches, hand the batches to a [`BatchProcessor`] inside one MySQL
//! transaction together with a progress marker, commit, then trim the list.
//!
//! - [`lock`]: QueuedTracking-compatible shard locks and their heartbeat.
//! - [`progress`]: the exactly-once progress marker (`<prefix>tier_queue_progress`).
//! - [`deadletter`]: entries that can never be processed, with reason and original bytes.
//! - [`processor`]: the seam to the tracker ([`BatchProcessor`]).
//! - [`redis`]: connection, the engine's own key names and Lua scripts.
//! - `shard`: recovery, reading and trimming while one shard is held; `batch`: one batch (and
//!   its bisection, planned by `bisect`, when MySQL refuses it) over the entries in `hand`;
//!   `pool`: the worker tasks.
//!
//! The engine never changes Matomo's tables itself and never trims an entry before the rows
//! written for it are committed. See `docs/worker.md` for the exactly-once argument.

mod batch;
mod bisect;
pub mod deadletter;
pub mod error;
mod hand;
pub mod lock;
mod pool;
pub mod processor;
pub mod progress;
pub mod redis;
mod shard;
mod tracker_adapter;

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use deadletter::{DeadLetter, DeadLetters};
pub use error::EngineError;
pub use processor::{BatchProcessor, ProcessError, SetResult};
pub use progress::{Marker, ProgressStore};

use crate::metrics::Metrics;

/// Everything the engine needs to know, taken from the tier configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineOptions {
    /// Prefix of every Redis key (`queue.key_prefix`; empty in production).
    pub key_prefix: String,
    /// Matomo table prefix (`database.tables_prefix`), for the progress table.
    pub tables_prefix: String,
    /// Number of queues (`queue.num_queue_workers`).
    pub num_queues: u16,
    /// Entries per batch (`queue.num_requests_to_process`).
    pub batch_size: usize,
    /// Worker tasks in this process (`worker.pool_size`).
    pub pool_size: usize,
    /// Lock TTL (`worker.lock_ttl`), renewed every third of it.
    pub lock_ttl: Duration,
    /// Longest a remainder smaller than a batch waits (`worker.max_batch_wait`).
    pub max_batch_wait: Duration,
    /// Pause after a pass that found nothing to do (`worker.idle_sleep`).
    pub idle_sleep: Duration,
    /// First back-off after a transient failure (`worker.min_backoff`).
    pub min_backoff: Duration,
    /// Longest back-off (`worker.max_backoff`).
    pub max_backoff: Duration,
    /// Batches processed under one lock before the shard is given back so other shards get a
    /// turn (the per-shard cache is rebuilt after that).
    pub max_batches_per_lock: usize,
    /// Work only on this queue (`process --queue-id`).
    pub only_queue: Option<u16>,
    /// Consecutive transient failures of one span (deadlock, lock wait or statement timeout,
    /// lost connection) after which, if MySQL answers `SELECT 1`, the span is treated as
    /// suspect and bisected like a data error; 0 turns the suspect rule off.
    pub suspect_after: u32,
    /// Test hook: after this many commits, stop before trimming and hang (so a test can kill
    /// the process between COMMIT and LTRIM). Set by the binary from
    /// `MATOMO_WORKER_TEST_PAUSE_AFTER_COMMIT`; never set in production.
    pub pause_after_commit: Option<u64>,
}

impl EngineOptions {
    /// The options a configuration asks for.
    pub fn from_config(config: &tier_config::Config) -> Self {
        Self {
            key_prefix: config.queue.key_prefix.clone(),
            tables_prefix: config.database.tables_prefix.clone(),
            num_queues: config.queue.num_queue_workers,
            batch_size: config.queue.num_requests_to_process,
            pool_size: config.worker.pool_size,
            lock_ttl: config.worker.lock_ttl,
            max_batch_wait: config.worker.max_batch_wait,
            idle_sleep: config.worker.idle_sleep,
            min_backoff: config.worker.min_backoff,
            max_backoff: config.worker.max_backoff,
            max_batches_per_lock: 100,
            suspect_after: 5,
            only_queue: None,
            pause_after_commit: None,
        }
    }

    fn validate(&self) -> Result<(), EngineError> {
        if self.num_queues == 0 || self.num_queues > 4096 {
            return Err(EngineError::Options(format!(
                "num_queues must be 1..=4096, got {}",
                self.num_queues
            )));
        }
        if self.batch_size == 0 {
            return Err(EngineError::Options("batch_size must be at least 1".into()));
        }
        if self.pool_size == 0 {
            return Err(EngineError::Options("pool_size must be at least 1".into()));
        }
        if let Some(q) = self.only_queue {
            if q >= self.num_queues {
                return Err(EngineError::Options(format!(
                    "queue {q} does not exist ({} queues)",
                    self.num_queues
                )));
            }
        }
        Ok(())
    }

    /// The queues this engine works on.
    pub fn queues(&self) -> Vec<u16> {
        match self.only_queue {
            Some(q) => vec![q],
            None => (0..self.num_queues).collect(),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Batches committed.
    pub batches: u64,
    /// Entries whose rows were committed.
    pub processed: u64,
    /// Entries set aside in dead-letter lists.
    pub dead_lettered: u64,
    /// Entries dropped without trace (as PHP would).
    pub dropped: u64,
    /// Entries found already committed (after a crash) and trimmed without reprocessing.
    pub already_committed: u64,
    /// Requests recorded by the processor.
    pub requests_recorded: u64,
}

impl RunSummary {
    fn add(&mut self, other: &RunSummary) {
        self.batches += other.batches;
        self.processed += other.processed;
        self.dead_lettered += other.dead_lettered;
        self.dropped += other.dropped;
        self.already_committed += other.already_committed;
        self.requests_recorded += other.requests_recorded;
    }
}

/// State shared by the engine's tasks.
struct Shared<P: BatchProcessor> {
    redis: fred::clients::Pool,
    mysql: mysql_async::Pool,
    processor: Arc<P>,
    opts: EngineOptions,
    metrics: Arc<Metrics>,
    progress: ProgressStore,
    scripts: redis::Scripts,
    /// Queues one of this process's tasks is working on (saves useless lock attempts).
    claimed: Mutex<HashSet<u16>>,
    /// Commits so far (for the test hook).
    commits: AtomicU64,
    shutdown: CancellationToken,
}

impl<P: BatchProcessor> Shared<P> {
    /// Claims `queue` for the calling task until the returned guard is dropped — also when the
    /// task unwinds from a panic, so a queue is never left claimed by a task that is gone.
    /// `None`: another task of this process has it.
    fn claim(&self, queue: u16) -> Option<Claim<'_, P>> {
        let inserted = self.claimed().insert(queue);
        // Built only when this call inserted it: dropping a guard releases the queue.
        inserted.then(|| Claim { sh: self, queue })
    }

    fn claimed(&self) -> std::sync::MutexGuard<'_, HashSet<u16>> {
        self.claimed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A queue claimed by one task of this process; released on drop.
struct Claim<'a, P: BatchProcessor> {
    sh: &'a Shared<P>,
    queue: u16,
}

impl<P: BatchProcessor> Drop for Claim<'_, P> {
    fn drop(&mut self) {
        self.sh.claimed().remove(&self.queue);
    }
}

/// The engine: cheap to clone, all clones share one pool of work.
pub struct Engine<P: BatchProcessor> {
    shared: Arc<Shared<P>>,
}

impl<P: BatchProcessor> Clone for Engine<P> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<P: BatchProcessor> Engine<P> {
    /// Prepares an engine: validates the options, creates the progress table when missing and
    /// loads the Lua scripts. `shutdown` stops every run gracefully (the batch in hand is
    /// finished or rolled back, locks are released).
    pub async fn new(
        redis: fred::clients::Pool,
        mysql: mysql_async::Pool,
        processor: Arc<P>,
        opts: EngineOptions,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Result<Self, EngineError> {
        opts.validate()?;
        let progress = ProgressStore::new(&opts.tables_prefix);
        progress.ensure_table(&mysql).await?;
        let scripts = redis::Scripts::default();
        scripts.load_all(&redis).await?;
        Ok(Self {
            shared: Arc::new(Shared {
                redis,
                mysql,
                processor,
                opts,
                metrics,
                progress,
                scripts,
                claimed: Mutex::new(HashSet::new()),
                commits: AtomicU64::new(0),
                shutdown,
            }),
        })
    }

    /// The options in force.
    pub fn options(&self) -> &EngineOptions {
        &self.shared.opts
    }

    /// The token that stops the engine.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shared.shutdown.clone()
    }
}
