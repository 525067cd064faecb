//! The batch pipeline while one shard's lock is held: recover from the progress marker, then
//! read → decode → process in one transaction with the marker → commit → trim, with the next
//! batch read, decoded and read ahead by the processor while the current one is written.
//!
//! Invariants: an entry is trimmed only after the transaction holding its rows (or its dead
//! letter decision) committed; a transaction is committed only after the marker row was found
//! unchanged and the lock was renewed; a transient failure rolls back and retries the same
//! batch; a poison entry is set aside and the rest of the batch goes on.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fred::prelude::*;

use super::batch::Next;
use super::deadletter::DeadLetter;
use super::error::EngineError;
use super::hand::InHand;
use super::lock::{Heartbeat, ShardLock};
use super::processor::BatchProcessor;
use super::progress::{batch_digest, Marker};
use super::redis::{dead_letter_key, trimmed_key};
use super::{RunSummary, Shared};
use crate::metrics::{DeadLetterReason, EntryOutcome, LockEvent, Service};

/// Exponential back-off between retries of the same batch.
pub(super) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(super) fn new(min: Duration, max: Duration) -> Self {
        Self {
            next: min.max(Duration::from_millis(1)),
            max: max.max(min),
        }
    }

    /// Sleeps for the current delay (doubling it), or returns `Shutdown` when asked to stop.
    pub(super) async fn sleep<P: BatchProcessor>(
        &mut self,
        sh: &Shared<P>,
    ) -> Result<(), EngineError> {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        tokio::select! {
            () = tokio::time::sleep(delay) => Ok(()),
            () = sh.shutdown.cancelled() => Err(EngineError::Shutdown),
        }
    }
}

/// Whether a remainder (fewer entries than a batch) may be processed now: its head entry has
/// waited `max_batch_wait` (by the `time` ingest stamped on it), or cannot be decoded.
pub(super) fn head_is_due(head: &[u8], max_wait: Duration) -> bool {
    match matomo_wire::decode(head) {
        Ok(set) => {
            let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
            now - set.time as f64 >= max_wait.as_secs_f64()
        }
        Err(_) => true,
    }
}

/// Entries `start..start+count` of a queue list.
pub(super) async fn read_range<P: BatchProcessor>(
    sh: &Shared<P>,
    queue_key: &str,
    start: usize,
    count: usize,
) -> Result<Vec<Bytes>, EngineError> {
    let stop = i64::try_from(start + count).unwrap_or(i64::MAX) - 1;
    let start = i64::try_from(start).unwrap_or(i64::MAX);
    sh.redis.lrange(queue_key, start, stop).await.map_err(|e| {
        sh.metrics.error(Service::Redis);
        EngineError::Redis(e)
    })
}

/// One held shard.
pub(super) struct ShardRun<'a, P: BatchProcessor> {
    pub(super) sh: &'a Shared<P>,
    pub(super) lock: Arc<ShardLock>,
    pub(super) queue: u16,
    pub(super) queue_key: String,
    /// The batch id the marker row must still carry when we commit the next batch.
    pub(super) expected_batch_id: String,
    pub(super) entries_total: u64,
    /// In a `Mutex` only so `&ShardRun` is `Send` whatever the cache type; accessed with
    /// `get_mut` (never locked).
    pub(super) cache: std::sync::Mutex<P::Cache>,
    pub(super) summary: RunSummary,
}

impl<'a, P: BatchProcessor> ShardRun<'a, P> {
    /// Works on the shard of `lock` until it is empty (or only a young remainder is left and
    /// `force_partial` is false), `max_batches_per_lock` batches were done, or shutdown.
    pub(super) async fn work(
        sh: &'a Shared<P>,
        lock: Arc<ShardLock>,
        force_partial: bool,
    ) -> Result<RunSummary, EngineError> {
        let metrics = sh.metrics.clone();
        // Losses are counted once, when the run ends because of them.
        let heartbeat = Heartbeat::start(lock.clone(), move |ok| {
            if ok {
                metrics.lock(LockEvent::Renewed);
            }
        });
        let queue = lock.queue_id();
        let mut run = ShardRun {
            sh,
            queue,
            queue_key: matomo_wire::queue_key(&sh.opts.key_prefix, queue),
            lock,
            expected_batch_id: String::new(),
            entries_total: 0,
            cache: std::sync::Mutex::new(sh.processor.new_cache()),
            summary: RunSummary::default(),
        };
        let result = run.work_inner(force_partial).await;
        heartbeat.stop();
        match result {
            Ok(()) | Err(EngineError::Shutdown) => Ok(run.summary),
            Err(e) => {
                if matches!(e, EngineError::LockLost { .. } | EngineError::Fenced { .. }) {
                    sh.metrics.lock(LockEvent::Lost);
                }
                tracing::warn!(queue, error = %e, done = run.summary.processed, "gave the queue up");
                Err(e)
            }
        }
    }

    async fn work_inner(&mut self, force_partial: bool) -> Result<(), EngineError> {
        self.recover().await?;
        let batch = self.sh.opts.batch_size;
        let mut next: Option<Next<P::Ahead>> = None;
        let turns = self.sh.opts.max_batches_per_lock.max(1);
        for turn in 1..=turns {
            if self.sh.shutdown.is_cancelled() {
                return Ok(());
            }
            let (hand, ahead) = match next.take() {
                // Always a full batch.
                Some(next) => (next.hand, next.ahead),
                None => {
                    let entries = self.read(0, batch).await?;
                    if entries.is_empty() {
                        return Ok(());
                    }
                    if entries.len() < batch
                        && !force_partial
                        && !head_is_due(&entries[0], self.sh.opts.max_batch_wait)
                    {
                        return Ok(());
                    }
                    (InHand::decode(entries), None)
                }
            };
            // The last turn before the lock is given back reads nothing ahead.
            next = self.process(hand, ahead, turn < turns).await?;
        }
        Ok(())
    }

    pub(super) async fn read(&self, start: usize, count: usize) -> Result<Vec<Bytes>, EngineError> {
        read_range(self.sh, &self.queue_key, start, count).await
    }

    /// After taking the lock: if the last committed batch is still at the head of the queue
    /// (a crash between COMMIT and LTRIM), trim it now instead of processing it again.
    async fn recover(&mut self) -> Result<(), EngineError> {
        let sh = self.sh;
        let marker = sh
            .progress
            .load_settled(&sh.mysql, &self.queue_key)
            .await
            .inspect_err(|_| {
                sh.metrics.error(Service::Mysql);
            })?;
        self.expected_batch_id = marker.batch_id.clone();
        self.entries_total = marker.entries_total;
        if marker.batch_id.is_empty() || marker.batch_len == 0 {
            return Ok(());
        }
        let trimmed: Option<String> = sh
            .redis
            .get(trimmed_key(&sh.opts.key_prefix, self.queue))
            .await?;
        if trimmed.as_deref() == Some(marker.batch_id.as_str()) {
            return Ok(());
        }
        let len = marker.batch_len as usize;
        let head = self.read(0, len).await?;
        if head.len() != len || batch_digest(&head) != marker.batch_digest {
            tracing::warn!(
                queue = self.queue,
                batch = %marker.batch_id,
                len,
                "the last committed batch is not at the queue head and was not trimmed by us; assuming another worker (PHP?) trimmed it"
            );
            return Ok(());
        }
        let trimmed = self.trim(&marker, &head).await?;
        if !trimmed {
            return Err(EngineError::LockLost { queue: self.queue });
        }
        let dead = marker.dead_letters.len();
        sh.metrics
            .entries(self.queue, EntryOutcome::AlreadyCommitted, len - dead);
        sh.metrics
            .entries(self.queue, EntryOutcome::DeadLettered, dead);
        sh.metrics.dead_letters(DeadLetterReason::Recovered, dead);
        self.summary.already_committed += (len - dead) as u64;
        self.summary.dead_lettered += dead as u64;
        tracing::info!(queue = self.queue, batch = %marker.batch_id, len, "found a committed but untrimmed batch at the head; trimmed it without reprocessing");
        Ok(())
    }

    /// Trims `entries` (the batch of `marker`) with the compare-lock script, pushing the
    /// batch's dead letters. `Ok(false)` when the lock is not ours any more.
    pub(super) async fn trim(
        &self,
        marker: &Marker,
        entries: &[Bytes],
    ) -> Result<bool, EngineError> {
        let sh = self.sh;
        let prefix = &sh.opts.key_prefix;
        let keys = vec![
            self.lock.key().to_owned(),
            self.queue_key.clone(),
            trimmed_key(prefix, self.queue),
            dead_letter_key(prefix, self.queue),
        ];
        let mut args = vec![
            Value::from(self.lock.value()),
            Value::from(i64::from(marker.batch_len)),
            Value::from(marker.batch_id.as_str()),
        ];
        for note in &marker.dead_letters {
            let bytes = entries
                .get(note.index as usize)
                .map(|b| b.as_ref())
                .unwrap_or_default();
            args.push(Value::from(
                DeadLetter::new(self.queue, note.reason.as_str(), bytes).to_json(),
            ));
        }
        let mut backoff = Backoff::new(sh.opts.min_backoff, sh.opts.max_backoff);
        loop {
            match sh
                .scripts
                .trim
                .run::<i64>(&sh.redis, keys.clone(), args.clone())
                .await
            {
                Ok(0) => return Ok(false),
                Ok(_) => return Ok(true),
                Err(e) => {
                    sh.metrics.error(Service::Redis);
                    if self.lock.is_lost() {
                        return Ok(false);
                    }
                    tracing::warn!(queue = self.queue, error = %e, "trim failed; retrying");
                    // Not interrupted by shutdown: the batch is committed, trimming it is part
                    // of finishing the batch in hand. The heartbeat bounds how long we try.
                    tokio::time::sleep(backoff.next).await;
                    backoff.next = (backoff.next * 2).min(backoff.max);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use matomo_wire::RequestSet;

    fn entry_at(time: i64) -> Vec<u8> {
        matomo_wire::encode(&RequestSet {
            time,
            ..RequestSet::default()
        })
    }

    #[test]
    fn remainders_wait_for_their_head_to_age() {
        let now = chrono::Utc::now().timestamp();
        assert!(!head_is_due(&entry_at(now + 5), Duration::from_secs(1)));
        assert!(head_is_due(&entry_at(now - 5), Duration::from_secs(1)));
        assert!(head_is_due(b"not an entry", Duration::from_secs(3600)));
    }
}
