//! The seam between the engine and the tracker: "turn these queue entries into rows inside this
//! transaction". The engine owns the transaction (it adds its progress marker and commits); the
//! processor must neither commit nor roll back.
//!
//! The production implementation is the tracker core (`crate::tracker`); tests use small real
//! processors writing into their own table of the same MariaDB.

use std::future::Future;

use matomo_wire::RequestSet;
use mysql_async::Transaction;

/// What became of one request set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetResult {
    /// Requests recorded.
    pub recorded: usize,
    /// Requests skipped on purpose (excluded, `rec` not 1, invalid…).
    pub skipped: usize,
}

/// Why a batch could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// MySQL unreachable, deadlock, lock wait timeout…: the engine rolls back and retries the
    /// same batch after a back-off. Nothing is lost.
    #[error("transient: {0}")]
    Transient(String),
    /// Request set `index` (of the slice handed over) can never be processed. The engine rolls
    /// back, sets that entry aside (dead letter, or dropped without trace when `dead_letter` is
    /// false, as PHP leaves none) and re-runs the batch without it.
    #[error("request set {index} can never be processed: {reason}")]
    Poison {
        /// Position in the slice passed to [`BatchProcessor::process_batch`].
        index: usize,
        /// Why.
        reason: String,
        /// Keep it in the dead-letter list (false: drop it).
        dead_letter: bool,
    },
}

/// Turns batches of decoded queue entries into rows.
pub trait BatchProcessor: Send + Sync + 'static {
    /// State kept between batches of one shard while the engine holds its lock (e.g. a visitor
    /// cache). Thrown away after any rollback or lock loss.
    type Cache: Send + 'static;

    /// A fresh per-shard cache.
    fn new_cache(&self) -> Self::Cache;

    /// Writes the rows of `sets` (in queue order) through `tx`; one result per set, in order.
    fn process_batch<'a>(
        &'a self,
        tx: &'a mut Transaction<'static>,
        cache: &'a mut Self::Cache,
        sets: &'a [RequestSet],
    ) -> impl Future<Output = Result<Vec<SetResult>, ProcessError>> + Send + 'a;
}
