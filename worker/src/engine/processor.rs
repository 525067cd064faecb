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
    /// Deadlock, lock wait or statement timeout, lost connection…: the engine rolls back and
    /// retries the same batch after a back-off. Nothing is lost. When the same batch keeps
    /// failing this way while MySQL answers a health probe, the engine treats it as suspect
    /// and bisects it (see `docs/worker.md`).
    #[error("transient: {0}")]
    Transient(String),
    /// MySQL cannot take work now, or its schema or privileges are wrong: rolled back and
    /// retried after a back-off like `Transient`, but never blamed on an entry.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// MySQL refused a value without saying which entry it came from: the engine rolls back
    /// and bisects the batch until the entry is isolated, then dead-letters it with this
    /// message.
    #[error("data refused: {0}")]
    Data(String),
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

impl ProcessError {
    /// The error for a failed MySQL statement, by the worker's one classification
    /// ([`super::error::classify_mysql`]).
    pub fn from_mysql(e: &mysql_async::Error) -> Self {
        use super::error::{classify_mysql, MysqlFailure};
        match classify_mysql(e) {
            MysqlFailure::Contention => ProcessError::Transient(e.to_string()),
            MysqlFailure::Unavailable | MysqlFailure::Setup => {
                ProcessError::Unavailable(e.to_string())
            }
            MysqlFailure::Data => ProcessError::Data(e.to_string()),
        }
    }
}

/// Turns batches of decoded queue entries into rows.
pub trait BatchProcessor: Send + Sync + 'static {
    /// State kept between batches of one shard while the engine holds its lock (e.g. a visitor
    /// cache). Thrown away after any rollback or lock loss.
    type Cache: Send + 'static;

    /// Work on a batch done ahead of its turn (see [`BatchProcessor::read_ahead`]).
    type Ahead: Send + 'static;

    /// A fresh per-shard cache.
    fn new_cache(&self) -> Self::Cache;

    /// CPU work on the next batch that depends on no row any batch writes, done on a blocking
    /// thread while the batch in front of it is written. The engine hands it to
    /// [`BatchProcessor::process_batch`] with exactly these sets, on the first attempt only;
    /// anything else (a retry, a bisected span, a set put aside) goes without. `None`: nothing
    /// to do ahead.
    fn read_ahead(&self, sets: &[RequestSet]) -> Option<Self::Ahead> {
        let _ = sets;
        None
    }

    /// Writes the rows of `sets` (in queue order) through `tx`; one result per set, in order.
    fn process_batch<'a>(
        &'a self,
        tx: &'a mut Transaction<'static>,
        cache: &'a mut Self::Cache,
        sets: &'a [RequestSet],
        ahead: Option<Self::Ahead>,
    ) -> impl Future<Output = Result<Vec<SetResult>, ProcessError>> + Send + 'a;
}
