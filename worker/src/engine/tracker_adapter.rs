//! The production processor: the tracker core behind the engine's [`BatchProcessor`] seam.
//! Only maps types; all tracking logic lives in `crate::tracker`.

use matomo_wire::RequestSet;
use mysql_async::Transaction;

use super::processor::{BatchProcessor, ProcessError, SetResult};
use crate::tracker::{Ahead, BatchError, ShardCache, Tracker};

impl BatchProcessor for Tracker {
    type Cache = ShardCache;
    type Ahead = Ahead;

    fn new_cache(&self) -> ShardCache {
        self.new_shard_cache()
    }

    fn read_ahead(&self, sets: &[RequestSet]) -> Option<Ahead> {
        Tracker::read_ahead(self, sets)
    }

    async fn process_batch<'a>(
        &'a self,
        tx: &'a mut Transaction<'static>,
        cache: &'a mut ShardCache,
        sets: &'a [RequestSet],
        ahead: Option<Ahead>,
    ) -> Result<Vec<SetResult>, ProcessError> {
        match Tracker::process_batch(self, tx, cache, sets, ahead).await {
            Ok(outcome) => Ok(outcome
                .sets
                .into_iter()
                .map(|s| SetResult {
                    recorded: s.recorded,
                    skipped: s.skipped,
                })
                .collect()),
            Err(BatchError::Transient(message)) => Err(ProcessError::Transient(message)),
            Err(BatchError::Unavailable(message)) => Err(ProcessError::Unavailable(message)),
            Err(BatchError::Data(message)) => Err(ProcessError::Data(message)),
            Err(BatchError::Poison {
                index,
                reason,
                dead_letter,
            }) => Err(ProcessError::Poison {
                index,
                reason,
                dead_letter,
            }),
        }
    }
}
