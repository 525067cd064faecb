//! The batch pipeline while one shard's lock is held: recover from the progress marker, then
//! read → decode → process in one transaction with the marker → commit → trim, with the next
//! batch read while the current one commits.
//!
//! Invariants: an entry is trimmed only after the transaction holding its rows (or its dead
//! letter decision) committed; a transaction is committed only after the marker row was found
//! unchanged and the lock was renewed; a transient failure rolls back and retries the same
//! batch; a poison entry is set aside and the rest of the batch goes on.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::prelude::*;
use matomo_wire::RequestSet;
use mysql_async::TxOpts;

use super::deadletter::DeadLetter;
use super::error::EngineError;
use super::lock::{Heartbeat, ShardLock};
use super::processor::{BatchProcessor, ProcessError, SetResult};
use super::progress::{batch_digest, new_batch_id, DeadLetterNote, Marker};
use super::redis::{dead_letter_key, trimmed_key};
use super::{RunSummary, Shared};
use crate::metrics::{EntryOutcome, LockEvent, RequestOutcome, Service};

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
async fn read_range<P: BatchProcessor>(
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
    sh: &'a Shared<P>,
    lock: Arc<ShardLock>,
    queue: u16,
    queue_key: String,
    /// The batch id the marker row must still carry when we commit the next batch.
    expected_batch_id: String,
    entries_total: u64,
    /// In a `Mutex` only so `&ShardRun` is `Send` whatever the cache type; accessed with
    /// `get_mut` (never locked).
    cache: std::sync::Mutex<P::Cache>,
    pub(super) summary: RunSummary,
}

/// Outcome of one attempt at writing a batch.
enum Attempt {
    Committed {
        marker: Marker,
        results: Vec<SetResult>,
        next: Option<Vec<Bytes>>,
    },
    Transient(String, Service),
    Poison {
        index: usize,
        reason: String,
        dead_letter: bool,
    },
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
        let mut prefetched: Option<Vec<Bytes>> = None;
        for _ in 0..self.sh.opts.max_batches_per_lock.max(1) {
            if self.sh.shutdown.is_cancelled() {
                return Ok(());
            }
            let entries = match prefetched.take() {
                Some(entries) => entries,
                None => self.read(0, batch).await?,
            };
            if entries.is_empty() {
                return Ok(());
            }
            if entries.len() < batch
                && !force_partial
                && !head_is_due(&entries[0], self.sh.opts.max_batch_wait)
            {
                return Ok(());
            }
            prefetched = self.process(entries).await?;
        }
        Ok(())
    }

    async fn read(&self, start: usize, count: usize) -> Result<Vec<Bytes>, EngineError> {
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
        self.summary.already_committed += (len - dead) as u64;
        self.summary.dead_lettered += dead as u64;
        tracing::info!(queue = self.queue, batch = %marker.batch_id, len, "found a committed but untrimmed batch at the head; trimmed it without reprocessing");
        Ok(())
    }

    /// Trims `entries` (the batch of `marker`) with the compare-lock script, pushing the
    /// batch's dead letters. `Ok(false)` when the lock is not ours any more.
    async fn trim(&self, marker: &Marker, entries: &[Bytes]) -> Result<bool, EngineError> {
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

    /// Processes one batch to the end (committed and trimmed). Returns the read-ahead of the
    /// next batch when it is a full one.
    async fn process(&mut self, entries: Vec<Bytes>) -> Result<Option<Vec<Bytes>>, EngineError> {
        let started = Instant::now();
        let sh = self.sh;
        let mut dead: Vec<DeadLetterNote> = Vec::new();
        let mut positions: Vec<u32> = Vec::with_capacity(entries.len());
        let mut sets: Vec<RequestSet> = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            match matomo_wire::decode(entry) {
                Ok(set) => {
                    positions.push(index);
                    sets.push(set);
                }
                Err(e) => dead.push(DeadLetterNote {
                    index,
                    reason: format!("undecodable: {e}"),
                }),
            }
        }
        let mut dropped = 0usize;
        let mut backoff = Backoff::new(sh.opts.min_backoff, sh.opts.max_backoff);
        let digest = batch_digest(&entries);
        let (marker, results, next) = loop {
            if sh.shutdown.is_cancelled() {
                return Err(EngineError::Shutdown);
            }
            if self.lock.is_lost() {
                return Err(EngineError::LockLost { queue: self.queue });
            }
            match self.attempt(&entries, &digest, &sets, &dead).await? {
                Attempt::Committed {
                    marker,
                    results,
                    next,
                } => break (marker, results, next),
                Attempt::Transient(message, service) => {
                    sh.metrics.retries.inc();
                    sh.metrics.error(service);
                    tracing::warn!(queue = self.queue, error = %message, "batch rolled back after a transient failure; retrying");
                    self.cache = std::sync::Mutex::new(sh.processor.new_cache());
                    backoff.sleep(sh).await?;
                }
                Attempt::Poison {
                    index,
                    reason,
                    dead_letter,
                } => {
                    self.cache = std::sync::Mutex::new(sh.processor.new_cache());
                    if index >= sets.len() {
                        // A processor bug; retrying the same batch would loop forever.
                        tracing::error!(queue = self.queue, index, "processor reported a poison index outside the batch; retrying after back-off");
                        backoff.sleep(sh).await?;
                        continue;
                    }
                    let position = positions.remove(index);
                    sets.remove(index);
                    tracing::warn!(queue = self.queue, position, reason = %reason, dead_letter, "request set can never be processed; setting it aside");
                    if dead_letter {
                        dead.push(DeadLetterNote {
                            index: position,
                            reason,
                        });
                        dead.sort_by_key(|n| n.index);
                    } else {
                        dropped += 1;
                    }
                }
            }
        };
        let commits = sh.commits.fetch_add(1, Ordering::SeqCst) + 1;
        if sh.opts.pause_after_commit == Some(commits) {
            eprintln!(
                "matomo-worker test hook: paused after commit {commits} (queue {})",
                self.queue
            );
            std::future::pending::<()>().await;
        }
        if !self.trim(&marker, &entries).await? {
            // Committed but not trimmed: the next holder of the lock trims it from the marker.
            self.expected_batch_id = marker.batch_id;
            return Err(EngineError::LockLost { queue: self.queue });
        }
        self.expected_batch_id = marker.batch_id.clone();
        self.entries_total = marker.entries_total;

        let n_dead = dead.len();
        let processed = entries.len() - n_dead - dropped;
        let (recorded, skipped) = results
            .iter()
            .fold((0, 0), |(r, s), x| (r + x.recorded, s + x.skipped));
        let m = &sh.metrics;
        m.entries(self.queue, EntryOutcome::Processed, processed);
        m.entries(self.queue, EntryOutcome::DeadLettered, n_dead);
        m.entries(self.queue, EntryOutcome::Dropped, dropped);
        m.requests(RequestOutcome::Recorded, recorded);
        m.requests(RequestOutcome::Skipped, skipped);
        m.batch_size.observe(entries.len() as f64);
        m.batch_duration.observe(started.elapsed().as_secs_f64());
        self.summary.batches += 1;
        self.summary.processed += processed as u64;
        self.summary.dead_lettered += n_dead as u64;
        self.summary.dropped += dropped as u64;
        self.summary.requests_recorded += recorded as u64;
        tracing::debug!(
            queue = self.queue,
            entries = entries.len(),
            processed,
            dead = n_dead,
            dropped,
            "batch committed and trimmed"
        );
        Ok(next.filter(|n| n.len() == sh.opts.batch_size))
    }

    /// One transaction: fence on the marker, process, write the marker, renew the lock, commit
    /// (reading the next batch meanwhile).
    async fn attempt(
        &mut self,
        entries: &[Bytes],
        digest: &str,
        sets: &[RequestSet],
        dead: &[DeadLetterNote],
    ) -> Result<Attempt, EngineError> {
        let sh = self.sh;
        let mut tx = match sh.mysql.start_transaction(TxOpts::default()).await {
            Ok(tx) => tx,
            Err(e) => return Ok(Attempt::Transient(e.to_string(), Service::Mysql)),
        };
        match sh
            .progress
            .check_in_tx(&mut tx, &self.queue_key, &self.expected_batch_id)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                let _ = tx.rollback().await;
                return Err(EngineError::Fenced { queue: self.queue });
            }
            Err(e) => {
                let _ = tx.rollback().await;
                return Ok(Attempt::Transient(e.to_string(), Service::Mysql));
            }
        }
        let results = if sets.is_empty() {
            Vec::new()
        } else {
            let cache = self
                .cache
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match sh.processor.process_batch(&mut tx, cache, sets).await {
                Ok(results) => results,
                Err(ProcessError::Transient(message)) => {
                    let _ = tx.rollback().await;
                    return Ok(Attempt::Transient(message, Service::Mysql));
                }
                Err(ProcessError::Poison {
                    index,
                    reason,
                    dead_letter,
                }) => {
                    let _ = tx.rollback().await;
                    return Ok(Attempt::Poison {
                        index,
                        reason,
                        dead_letter,
                    });
                }
            }
        };
        if results.len() != sets.len() {
            tracing::warn!(
                queue = self.queue,
                sets = sets.len(),
                results = results.len(),
                "processor returned a result count different from the set count"
            );
        }
        let marker = Marker {
            batch_id: new_batch_id(),
            batch_len: u32::try_from(entries.len()).unwrap_or(u32::MAX),
            batch_digest: digest.to_owned(),
            dead_letters: dead.to_vec(),
            entries_total: self.entries_total + entries.len() as u64,
        };
        if let Err(e) = sh
            .progress
            .write_in_tx(&mut tx, &self.queue_key, &marker)
            .await
        {
            let _ = tx.rollback().await;
            return Ok(Attempt::Transient(e.to_string(), Service::Mysql));
        }
        // Commit only with a freshly renewed lock: a full TTL to finish the COMMIT.
        match self.lock.extend().await {
            Ok(true) => {}
            Ok(false) => {
                let _ = tx.rollback().await;
                return Err(EngineError::LockLost { queue: self.queue });
            }
            Err(e) => {
                let _ = tx.rollback().await;
                return Ok(Attempt::Transient(e.to_string(), Service::Redis));
            }
        }
        let batch = sh.opts.batch_size;
        let queue_key = self.queue_key.as_str();
        let read_ahead = async {
            if entries.len() == batch {
                read_range(sh, queue_key, batch, batch).await.ok()
            } else {
                None
            }
        };
        let commit_started = Instant::now();
        let (committed, next) = tokio::join!(tx.commit(), read_ahead);
        sh.metrics
            .commit_latency
            .observe(commit_started.elapsed().as_secs_f64());
        if let Err(e) = committed {
            sh.metrics.error(Service::Mysql);
            return Err(EngineError::CommitUncertain {
                queue: self.queue,
                message: e.to_string(),
            });
        }
        Ok(Attempt::Committed {
            marker,
            results,
            next,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
