//! One batch while its shard is held: decode, then write it as one transaction with the
//! progress marker, commit, trim — or, when MySQL refuses the batch without naming the entry,
//! as a sequence of smaller transactions planned by [`super::bisect`] until the refused entry
//! is isolated and dead-lettered.
//!
//! Every span (a prefix of what is left of the batch) is a batch in the sense of the
//! exactly-once argument: its rows and a marker covering exactly its entries commit together,
//! and it is trimmed off the head of the list before the next span is written. So bisection
//! never weakens exactly-once; it only makes more, smaller transactions.
//!
//! A panic of the processor is contained per span like a data error: rolled back, bisected,
//! and the entry that makes it panic alone dead-lettered (reason `Panic`).
//!
//! Never: dead-letter an entry that did not fail alone; blame entries for an error that says
//! the server is down, read-only or misconfigured; commit a span before the one in front of it
//! was trimmed.

use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt as _;
use mysql_async::prelude::Queryable as _;
use mysql_async::TxOpts;

use super::bisect::{Bisect, Narrowed};
use super::error::EngineError;
use super::hand::{Aside, InHand};
use super::processor::{BatchProcessor, ProcessError, SetResult};
use super::progress::{batch_digest, new_batch_id, Marker};
use super::shard::{Backoff, ShardRun};
use crate::metrics::{BisectCause, DeadLetterReason, EntryOutcome, RequestOutcome, Service};

/// How long the health probe (`SELECT 1`) may take before MySQL counts as not answering.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What became of a span.
enum SpanOutcome {
    /// Committed and trimmed.
    Committed,
    /// MySQL refused it (a data error, or a suspect run of transient failures).
    Refused { message: String, cause: BisectCause },
}

/// Outcome of one transaction attempt.
enum Attempt {
    Committed {
        marker: Marker,
        results: Vec<SetResult>,
    },
    /// Retry after a back-off; `suspect`: may count towards the suspect rule.
    Transient {
        message: String,
        service: Service,
        suspect: bool,
    },
    Data(String),
    Poison {
        index: usize,
        reason: String,
        dead_letter: bool,
    },
    /// The processor panicked (the message); rolled back.
    Panicked(String),
}

/// The text of a panic's payload (`panic!` with a literal or a formatted message).
pub(super) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// The batch after the one in hand, read from the queue, decoded and read ahead by the
/// processor while the one in hand was written.
pub(super) struct Next<A> {
    pub(super) hand: InHand,
    pub(super) ahead: Option<A>,
}

/// Decodes `entries` (the next batch, read from the queue) and lets the processor read it
/// ahead, on a blocking thread.
async fn look_ahead<P: BatchProcessor>(
    processor: Arc<P>,
    entries: Vec<Bytes>,
) -> Option<Next<P::Ahead>> {
    let read = tokio::task::spawn_blocking(move || {
        let hand = InHand::decode(entries);
        let ahead = processor.read_ahead(&hand.sets);
        Next { hand, ahead }
    })
    .await;
    // A panic here costs only the look ahead: the batch is read again at its turn, where a
    // panic that repeats is contained and isolated like any other.
    match read {
        Ok(next) => Some(next),
        Err(e) => {
            tracing::warn!(error = %e, "reading the next batch ahead failed; it is read at its turn instead");
            None
        }
    }
}

impl<P: BatchProcessor> ShardRun<'_, P> {
    /// Processes one batch to the end (every entry committed or set aside, and trimmed), with
    /// the next batch read and read ahead meanwhile when this one is full and `look` is set.
    /// Returns that next batch when this one was written to its end and the next is a full one.
    pub(super) async fn process(
        &mut self,
        hand: InHand,
        ahead: Option<P::Ahead>,
        look: bool,
    ) -> Result<Option<Next<P::Ahead>>, EngineError> {
        // The next batch: the entries after the one in hand, which stays at the head until
        // its first span is trimmed. Read (and answered) before anything of this batch can be
        // trimmed, so the positions cannot move under the read. `None` when fewer than a batch
        // are queued there: the next turn reads the queue again.
        let batch = self.sh.opts.batch_size;
        let following = if look && hand.len() == batch {
            self.read(hand.len(), batch)
                .await
                .ok()
                .filter(|entries| entries.len() == batch)
        } else {
            None
        };
        // Decoded and read ahead while this batch is written; `look` owns what it needs, so
        // `write_batch` can have `self`.
        let processor = self.sh.processor.clone();
        let look = async move { look_ahead(processor, following?).await };
        let (written, next) = tokio::join!(self.write_batch(hand, ahead), look);
        Ok(if written? { next } else { None })
    }

    /// Writes the batch in hand to its end. `Ok(false)`: stopped early to read the queue again
    /// (a suspect entry ends the batch).
    async fn write_batch(
        &mut self,
        mut hand: InHand,
        mut ahead: Option<P::Ahead>,
    ) -> Result<bool, EngineError> {
        let mut plan = Bisect::new(hand.len());
        let mut suspect_rule = self.sh.opts.suspect_after > 0;
        // A suspect entry set aside but not yet confirmed by the entries after it committing.
        let mut unconfirmed: Option<(usize, String)> = None;
        while let Some(span) = plan.next_span() {
            match self
                .write_span(&mut hand, &span, suspect_rule, &mut ahead)
                .await?
            {
                SpanOutcome::Committed => {
                    // The suspect's note committed with this span (normally together with
                    // the entries after it, which is the confirmation).
                    if let Some((position, message)) =
                        unconfirmed.take_if(|(position, _)| span.contains(position))
                    {
                        self.log_isolated(position, BisectCause::Suspect, &message);
                    }
                    plan.committed(&span);
                }
                SpanOutcome::Refused { message, cause } => {
                    if let Some((position, _)) = unconfirmed.take() {
                        // The entries after the suspect fail without it: it was not the cause.
                        tracing::warn!(
                            queue = self.queue,
                            position,
                            error = %message,
                            "the entries after a suspect entry still fail without it; suspicion withdrawn, retrying the batch with back-off only"
                        );
                        hand.withdraw(position);
                        suspect_rule = false;
                        plan.whole_rest();
                        continue;
                    }
                    match plan.refused(&span) {
                        Narrowed::Split => {
                            self.sh.metrics.bisection(cause);
                            tracing::info!(
                                queue = self.queue,
                                span = ?span,
                                ?cause,
                                error = %message,
                                "MySQL refused a span of the batch; splitting it"
                            );
                        }
                        Narrowed::Isolated(position) => match cause {
                            BisectCause::MysqlData => {
                                hand.set_aside(
                                    position,
                                    Aside {
                                        reason: format!("mysql refused the entry: {message}"),
                                        dead_letter: true,
                                        cause: DeadLetterReason::MysqlData,
                                    },
                                );
                                self.log_isolated(position, cause, &message);
                            }
                            BisectCause::Panic => {
                                hand.set_aside(
                                    position,
                                    Aside {
                                        reason: format!(
                                            "the tracker panicked on the entry: {message}"
                                        ),
                                        dead_letter: true,
                                        cause: DeadLetterReason::Panic,
                                    },
                                );
                                self.log_isolated(position, cause, &message);
                            }
                            BisectCause::Suspect if position + 1 == hand.len() => {
                                // Nothing after it to confirm the suspicion: read the queue
                                // again, so the entries queued since come after it.
                                tracing::info!(
                                    queue = self.queue,
                                    position,
                                    "a suspect entry ends the batch; re-reading the queue to confirm it"
                                );
                                return Ok(false);
                            }
                            BisectCause::Suspect => {
                                hand.set_aside(
                                    position,
                                    Aside {
                                        reason: format!(
                                            "suspect: failed alone {} times in a row while MySQL answered: {message}",
                                            self.sh.opts.suspect_after
                                        ),
                                        dead_letter: true,
                                        cause: DeadLetterReason::Suspect,
                                    },
                                );
                                unconfirmed = Some((position, message));
                            }
                        },
                    }
                }
            }
        }
        Ok(true)
    }

    /// The one log line per isolated culprit.
    fn log_isolated(&self, position: usize, cause: BisectCause, message: &str) {
        tracing::warn!(
            queue = self.queue,
            position,
            ?cause,
            error = %message,
            "isolated the queue entry MySQL refuses; moved it to the dead-letter list, the rest of the batch is stored"
        );
    }

    /// Writes `span` until it commits (retrying transient failures with back-off) or MySQL
    /// refuses it.
    async fn write_span(
        &mut self,
        hand: &mut InHand,
        span: &Range<usize>,
        suspect_rule: bool,
        ahead: &mut Option<P::Ahead>,
    ) -> Result<SpanOutcome, EngineError> {
        let started = Instant::now();
        let sh = self.sh;
        let mut backoff = Backoff::new(sh.opts.min_backoff, sh.opts.max_backoff);
        let mut suspect_failures = 0u32;
        loop {
            if sh.shutdown.is_cancelled() {
                return Err(EngineError::Shutdown);
            }
            if self.lock.is_lost() {
                return Err(EngineError::LockLost { queue: self.queue });
            }
            match self.attempt(hand, span, ahead).await? {
                Attempt::Committed { marker, results } => {
                    self.finish_span(hand, span, marker, &results, started)
                        .await?;
                    return Ok(SpanOutcome::Committed);
                }
                Attempt::Transient {
                    message,
                    service,
                    suspect,
                } => {
                    sh.metrics.retries.inc();
                    sh.metrics.error(service);
                    self.reset_cache();
                    tracing::warn!(queue = self.queue, span = ?span, error = %message, "batch rolled back after a transient failure; retrying");
                    suspect_failures = if suspect { suspect_failures + 1 } else { 0 };
                    if suspect_rule
                        && suspect_failures >= sh.opts.suspect_after
                        && self.mysql_answers().await
                    {
                        return Ok(SpanOutcome::Refused {
                            message,
                            cause: BisectCause::Suspect,
                        });
                    }
                    backoff.sleep(sh).await?;
                }
                Attempt::Data(message) => {
                    sh.metrics.error(Service::Mysql);
                    self.reset_cache();
                    return Ok(SpanOutcome::Refused {
                        message,
                        cause: BisectCause::MysqlData,
                    });
                }
                Attempt::Panicked(message) => {
                    // The cache may hold half a batch's changes; like a data error, the span
                    // is bisected until the entry that makes the tracker panic is alone.
                    self.reset_cache();
                    return Ok(SpanOutcome::Refused {
                        message,
                        cause: BisectCause::Panic,
                    });
                }
                Attempt::Poison {
                    index,
                    reason,
                    dead_letter,
                } => {
                    self.reset_cache();
                    let sets = hand.sets_in(span);
                    let Some(&position) = hand
                        .positions
                        .get(sets.start + index)
                        .filter(|_| index < sets.len())
                    else {
                        // A processor bug; retrying the same batch at once would loop.
                        tracing::error!(
                            queue = self.queue,
                            index,
                            "processor reported a poison index outside the batch; retrying after back-off"
                        );
                        backoff.sleep(sh).await?;
                        continue;
                    };
                    tracing::warn!(queue = self.queue, position, reason = %reason, dead_letter, "request set can never be processed; setting it aside");
                    hand.set_aside(
                        position,
                        Aside {
                            reason,
                            dead_letter,
                            cause: DeadLetterReason::Rejected,
                        },
                    );
                }
            }
        }
    }

    fn reset_cache(&mut self) {
        self.cache = std::sync::Mutex::new(self.sh.processor.new_cache());
    }

    /// The health probe of the suspect rule: does MySQL answer `SELECT 1` on a pooled
    /// connection?
    async fn mysql_answers(&self) -> bool {
        let probe = async {
            let mut conn = self.sh.mysql.get_conn().await?;
            conn.query_drop("SELECT 1").await
        };
        matches!(tokio::time::timeout(PROBE_TIMEOUT, probe).await, Ok(Ok(())))
    }

    /// After COMMIT: the test hook, the trim, and the accounting of the span.
    async fn finish_span(
        &mut self,
        hand: &InHand,
        span: &Range<usize>,
        marker: Marker,
        results: &[SetResult],
        started: Instant,
    ) -> Result<(), EngineError> {
        let sh = self.sh;
        let commits = sh.commits.fetch_add(1, Ordering::SeqCst) + 1;
        if sh.opts.pause_after_commit == Some(commits) {
            eprintln!(
                "matomo-worker test hook: paused after commit {commits} (queue {})",
                self.queue
            );
            std::future::pending::<()>().await;
        }
        let entries = &hand.entries[span.clone()];
        if !self.trim(&marker, entries).await? {
            // Committed but not trimmed: the next holder of the lock trims it from the marker.
            self.expected_batch_id = marker.batch_id;
            return Err(EngineError::LockLost { queue: self.queue });
        }
        self.expected_batch_id = marker.batch_id.clone();
        self.entries_total = marker.entries_total;

        let m = &sh.metrics;
        let mut dropped = 0;
        for aside in hand.aside[span.clone()].iter().flatten() {
            if aside.dead_letter {
                m.dead_letters(aside.cause, 1);
            } else {
                dropped += 1;
            }
        }
        let n_dead = marker.dead_letters.len();
        let processed = span.len() - n_dead - dropped;
        let (recorded, skipped) = results
            .iter()
            .fold((0, 0), |(r, s), x| (r + x.recorded, s + x.skipped));
        m.entries(self.queue, EntryOutcome::Processed, processed);
        m.entries(self.queue, EntryOutcome::DeadLettered, n_dead);
        m.entries(self.queue, EntryOutcome::Dropped, dropped);
        m.requests(RequestOutcome::Recorded, recorded);
        m.requests(RequestOutcome::Skipped, skipped);
        m.batch_size.observe(span.len() as f64);
        m.batch_duration.observe(started.elapsed().as_secs_f64());
        self.summary.batches += 1;
        self.summary.processed += processed as u64;
        self.summary.dead_lettered += n_dead as u64;
        self.summary.dropped += dropped as u64;
        self.summary.requests_recorded += recorded as u64;
        tracing::debug!(
            queue = self.queue,
            entries = span.len(),
            processed,
            dead = n_dead,
            dropped,
            "batch committed and trimmed"
        );
        Ok(())
    }

    /// One transaction for `span`: fence on the marker, process (with the read-ahead when the
    /// span is the whole batch as it was read), write the marker, renew the lock, commit.
    async fn attempt(
        &mut self,
        hand: &InHand,
        span: &Range<usize>,
        ahead: &mut Option<P::Ahead>,
    ) -> Result<Attempt, EngineError> {
        let sh = self.sh;
        let transient = |e: mysql_async::Error| Attempt::Transient {
            message: e.to_string(),
            service: Service::Mysql,
            suspect: false,
        };
        let mut tx = match sh.mysql.start_transaction(TxOpts::default()).await {
            Ok(tx) => tx,
            Err(e) => return Ok(transient(e)),
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
                return Ok(transient(e));
            }
        }
        let sets = &hand.sets[hand.sets_in(span)];
        let results = if sets.is_empty() {
            Vec::new()
        } else {
            let cache = self
                .cache
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let ahead = ahead
                .take()
                .filter(|_| hand.pristine && *span == (0..hand.len()));
            // A panic in the processor is a bug some entry triggers: contained here, so it
            // costs that entry (isolated and dead-lettered), never the shard or the pool.
            let processed =
                AssertUnwindSafe(sh.processor.process_batch(&mut tx, cache, sets, ahead))
                    .catch_unwind()
                    .await;
            let processed = match processed {
                Ok(processed) => processed,
                Err(payload) => {
                    let message = panic_message(payload.as_ref());
                    tracing::error!(
                        queue = self.queue,
                        span = ?span,
                        error = %message,
                        "the tracker panicked on this span; rolled back, bisecting it to isolate the entry"
                    );
                    let _ = tx.rollback().await;
                    return Ok(Attempt::Panicked(message));
                }
            };
            match processed {
                Ok(results) => results,
                Err(e) => {
                    let _ = tx.rollback().await;
                    return Ok(match e {
                        ProcessError::Transient(message) => Attempt::Transient {
                            message,
                            service: Service::Mysql,
                            suspect: true,
                        },
                        ProcessError::Unavailable(message) => Attempt::Transient {
                            message,
                            service: Service::Mysql,
                            suspect: false,
                        },
                        ProcessError::Data(message) => Attempt::Data(message),
                        ProcessError::Poison {
                            index,
                            reason,
                            dead_letter,
                        } => Attempt::Poison {
                            index,
                            reason,
                            dead_letter,
                        },
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
        let entries = &hand.entries[span.clone()];
        let marker = Marker {
            batch_id: new_batch_id(),
            batch_len: u32::try_from(entries.len()).unwrap_or(u32::MAX),
            batch_digest: batch_digest(entries),
            dead_letters: hand.notes(span),
            entries_total: self.entries_total + entries.len() as u64,
        };
        if let Err(e) = sh
            .progress
            .write_in_tx(&mut tx, &self.queue_key, &marker)
            .await
        {
            let _ = tx.rollback().await;
            return Ok(transient(e));
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
                return Ok(Attempt::Transient {
                    message: e.to_string(),
                    service: Service::Redis,
                    suspect: false,
                });
            }
        }
        let commit_started = Instant::now();
        let committed = tx.commit().await;
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
        Ok(Attempt::Committed { marker, results })
    }
}
