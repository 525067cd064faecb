//! The worker tasks: each one rotates over the queues, skips empty ones and ones another task
//! of this process holds, takes a queue's lock when it has a full batch (or a remainder whose
//! head waited `max_batch_wait`), drains it, gives the lock back and moves on. Processes on
//! other machines cooperate through the Redis locks only.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use futures::FutureExt as _;
use rand::Rng as _;

use super::batch::panic_message;
use super::lock::ShardLock;
use super::shard::{head_is_due, Backoff, ShardRun};
use super::{BatchProcessor, Engine, EngineError, RunSummary, Shared};
use crate::metrics::{LockEvent, Service};

/// How a task decides it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Until shutdown (the `run` command).
    Continuous,
    /// Until a pass finds nothing to do; remainders are processed without waiting.
    DrainAll,
    /// Until a pass finds nothing to do; remainders wait for `max_batch_wait`.
    DrainDue,
}

/// What one look at a queue gave.
enum Visit {
    Nothing,
    Worked(RunSummary),
    /// Entries are waiting but we could not take them now (locked elsewhere, young remainder,
    /// or the queue was given up after an error).
    Pending,
}

impl<P: BatchProcessor> Engine<P> {
    /// Runs `pool_size` worker tasks (and a gauge sampler) until the shutdown token fires, then
    /// returns once every task finished or rolled back its batch and released its lock.
    pub async fn run(&self) -> Result<RunSummary, EngineError> {
        let sampler = {
            let shared = self.shared.clone();
            tokio::spawn(async move { sample_gauges(shared).await })
        };
        let summary = self.spawn_tasks(Mode::Continuous).await;
        sampler.abort();
        summary
    }

    /// Processes every queue (or `only_queue`) until nothing is left — remainders smaller than
    /// a batch included — then returns. Queues locked by other workers are skipped. This is
    /// `process --once`.
    pub async fn drain(&self) -> Result<RunSummary, EngineError> {
        self.spawn_tasks(Mode::DrainAll).await
    }

    /// One `process` cycle: full batches, and remainders whose head waited `max_batch_wait`.
    pub async fn drain_due(&self) -> Result<RunSummary, EngineError> {
        self.spawn_tasks(Mode::DrainDue).await
    }

    async fn spawn_tasks(&self, mode: Mode) -> Result<RunSummary, EngineError> {
        let tasks: Vec<_> = (0..self.shared.opts.pool_size)
            .map(|_| {
                let shared = self.shared.clone();
                tokio::spawn(async move { supervised(shared, mode).await })
            })
            .collect();
        let mut total = RunSummary::default();
        let mut panicked = None;
        for task in tasks {
            match task.await {
                Ok(Ok(summary)) => total.add(&summary),
                Ok(Err(message)) => panicked = Some(message),
                Err(e) => {
                    tracing::error!(error = %e, "a worker task supervisor failed");
                    panicked = Some(e.to_string());
                }
            }
        }
        match panicked {
            Some(message) => Err(EngineError::TaskPanicked(message)),
            None => Ok(total),
        }
    }
}

/// A worker task, started again when it panics while the pool runs. A panic of the processor
/// is contained per batch (`batch.rs`); this is for one anywhere else in the engine: the task's
/// lock heartbeat stops with it, its lock expires after its TTL, and its queue is taken up
/// again from the last committed batch, so nothing is lost or written twice. A pause first, so
/// a panic that repeats does not spin. A draining run is not restarted: `Err` with the panic,
/// so `process` fails instead of reporting a partial drain as done.
async fn supervised<P: BatchProcessor>(
    sh: Arc<Shared<P>>,
    mode: Mode,
) -> Result<RunSummary, String> {
    loop {
        match AssertUnwindSafe(worker_task(sh.clone(), mode))
            .catch_unwind()
            .await
        {
            Ok(summary) => return Ok(summary),
            Err(payload) => {
                let message = format!("panicked: {}", panic_message(payload.as_ref()));
                if mode != Mode::Continuous || sh.shutdown.is_cancelled() {
                    tracing::error!(error = %message, "a worker task failed");
                    return Err(message);
                }
                tracing::error!(error = %message, "a worker task panicked; starting it again in 1 s");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = sh.shutdown.cancelled() => return Ok(RunSummary::default()),
                }
            }
        }
    }
}

async fn worker_task<P: BatchProcessor>(sh: Arc<Shared<P>>, mode: Mode) -> RunSummary {
    let queues = sh.opts.queues();
    let mut total = RunSummary::default();
    let mut cursor = rand::rng().random_range(0..queues.len());
    let mut backoff = Backoff::new(sh.opts.min_backoff, sh.opts.max_backoff);
    loop {
        if sh.shutdown.is_cancelled() {
            return total;
        }
        let lengths = match queue_lengths(&sh, &queues).await {
            Ok(lengths) => {
                backoff = Backoff::new(sh.opts.min_backoff, sh.opts.max_backoff);
                lengths
            }
            Err(e) => {
                sh.metrics.error(Service::Redis);
                tracing::warn!(error = %e, "cannot read queue lengths; backing off");
                if backoff.sleep(&sh).await.is_err() {
                    return total;
                }
                continue;
            }
        };
        let mut worked = false;
        let mut pending = false;
        for k in 0..queues.len() {
            if sh.shutdown.is_cancelled() {
                return total;
            }
            let i = (cursor + k) % queues.len();
            if lengths[i] == 0 {
                continue;
            }
            match visit(&sh, queues[i], lengths[i], mode).await {
                Visit::Nothing => {}
                Visit::Pending => pending = true,
                Visit::Worked(summary) => {
                    total.add(&summary);
                    worked = true;
                    cursor = i + 1;
                }
            }
        }
        if mode != Mode::Continuous && !worked {
            if pending && mode == Mode::DrainAll && others_work(&sh) {
                // Another task of ours is still on a queue; let it finish before giving up.
            } else {
                return total;
            }
        }
        if !worked {
            tokio::select! {
                () = tokio::time::sleep(sh.opts.idle_sleep) => {}
                () = sh.shutdown.cancelled() => return total,
            }
        }
    }
}

fn others_work<P: BatchProcessor>(sh: &Shared<P>) -> bool {
    !sh.claimed().is_empty()
}

async fn visit<P: BatchProcessor>(sh: &Shared<P>, queue: u16, len: u64, mode: Mode) -> Visit {
    let Some(_claim) = sh.claim(queue) else {
        return Visit::Pending;
    };
    visit_claimed(sh, queue, len, mode).await
}

async fn visit_claimed<P: BatchProcessor>(
    sh: &Shared<P>,
    queue: u16,
    len: u64,
    mode: Mode,
) -> Visit {
    let force_partial = mode == Mode::DrainAll;
    let key = matomo_wire::queue_key(&sh.opts.key_prefix, queue);
    if (len as usize) < sh.opts.batch_size && !force_partial {
        match sh.redis.lindex::<Option<bytes::Bytes>, _>(&key, 0).await {
            Ok(Some(head)) if !head_is_due(&head, sh.opts.max_batch_wait) => return Visit::Pending,
            Ok(None) => return Visit::Nothing,
            Ok(Some(_)) => {}
            Err(e) => {
                sh.metrics.error(Service::Redis);
                tracing::debug!(queue, error = %e, "cannot read queue head");
                return Visit::Pending;
            }
        }
    }
    let lock = match ShardLock::try_acquire(
        &sh.redis,
        &sh.scripts,
        &sh.opts.key_prefix,
        queue,
        sh.opts.lock_ttl,
    )
    .await
    {
        Ok(Some(lock)) => Arc::new(lock),
        Ok(None) => {
            sh.metrics.lock(LockEvent::Contended);
            return Visit::Pending;
        }
        Err(e) => {
            sh.metrics.error(Service::Redis);
            tracing::warn!(queue, error = %e, "cannot take the queue lock");
            return Visit::Pending;
        }
    };
    sh.metrics.lock(LockEvent::Acquired);
    tracing::debug!(queue, "acquired queue lock");
    let result = ShardRun::work(sh, lock.clone(), force_partial).await;
    match lock.release().await {
        Ok(true) => sh.metrics.lock(LockEvent::Released),
        Ok(false) => {}
        Err(e) => {
            sh.metrics.error(Service::Redis);
            tracing::warn!(queue, error = %e, "cannot release the queue lock; it expires on its own");
        }
    }
    match result {
        Ok(summary) if summary.batches > 0 || summary.already_committed > 0 => {
            Visit::Worked(summary)
        }
        Ok(_) => Visit::Nothing,
        Err(_) => {
            // Logged by the shard run; the shard stays for a later pass.
            tokio::time::sleep(Duration::from_millis(10)).await;
            Visit::Pending
        }
    }
}

/// LLEN of every queue in one pipeline.
async fn queue_lengths<P: BatchProcessor>(
    sh: &Shared<P>,
    queues: &[u16],
) -> Result<Vec<u64>, Error> {
    let mut out = Vec::with_capacity(queues.len());
    for chunk in queues.chunks(1024) {
        let pipeline = sh.redis.next().pipeline();
        for &q in chunk {
            let () = pipeline
                .llen(matomo_wire::queue_key(&sh.opts.key_prefix, q))
                .await?;
        }
        let lengths: Vec<u64> = pipeline.all().await?;
        out.extend(lengths);
    }
    Ok(out)
}

/// Every few seconds: queue length, lag (age of the oldest entry) and dead letters per queue.
async fn sample_gauges<P: BatchProcessor>(sh: Arc<Shared<P>>) {
    let queues = sh.opts.queues();
    loop {
        if let Err(e) = sample_once(&sh, &queues).await {
            sh.metrics.error(Service::Redis);
            tracing::debug!(error = %e, "gauge sampling failed");
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            () = sh.shutdown.cancelled() => return,
        }
    }
}

async fn sample_once<P: BatchProcessor>(sh: &Shared<P>, queues: &[u16]) -> Result<(), Error> {
    let lengths = queue_lengths(sh, queues).await?;
    let now = chrono::Utc::now().timestamp();
    for (&q, &len) in queues.iter().zip(&lengths) {
        let labels = crate::metrics::QueueLabels { queue: q };
        sh.metrics
            .queue_length
            .get_or_create(&labels)
            .set(i64::try_from(len).unwrap_or(i64::MAX));
        let lag = if len == 0 {
            0
        } else {
            let head: Option<bytes::Bytes> = sh
                .redis
                .lindex(matomo_wire::queue_key(&sh.opts.key_prefix, q), 0)
                .await?;
            head.and_then(|h| matomo_wire::decode(&h).ok())
                .map_or(0, |set| (now - set.time).max(0))
        };
        sh.metrics.queue_lag.get_or_create(&labels).set(lag);
        let dead: u64 = sh
            .redis
            .llen(super::redis::dead_letter_key(&sh.opts.key_prefix, q))
            .await?;
        sh.metrics
            .dead_letters
            .get_or_create(&labels)
            .set(i64::try_from(dead).unwrap_or(i64::MAX));
    }
    Ok(())
}
