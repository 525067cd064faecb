//! [`SpoolingSink`]: the node's [`Sink`] — Redis when it can take hits, the local spool when it
//! cannot — and the replayer that moves spooled entries to Redis in their original order.
//!
//! Routing of a request's entries:
//! - spool empty, Redis healthy, under budget → written to Redis. If Redis certainly did not
//!   store them (not connected, error replies) they go to the spool instead; if the outcome is
//!   unknown (sent, no reply) the request gets 503 and nothing is re-sent; either way Redis is
//!   marked down so the following hits go to the spool. A write slower than
//!   `ingest.spool.redis_deadline` is still answered with its own result, but marks Redis down
//!   too.
//! - otherwise (Redis down, over budget, or the spool still holds entries — so a visitor's hits
//!   keep their order) → appended to the spool.
//! - no spool configured → Redis only; over budget → 503.
//!
//! The replayer, while the spool holds entries and Redis answers a PING within the deadline and
//! is under budget, reads a batch, pushes it with one Lua script per batch and then advances the
//! persisted cursor. The script also stores, under `<prefix>tierSpoolReplayed_<node id>`, the
//! position of the last record it pushed and skips records at or before it, so a crash between
//! the script and the cursor write re-sends the batch without duplicating it. (Redis Cluster
//! cannot run that script across queue keys; there each record is a plain RPUSH and that crash
//! window can duplicate one batch.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::prelude::{ClientLike as _, ListInterface as _, LuaInterface as _};
use fred::types::Value as RedisValue;
use futures::future::BoxFuture;
use futures::FutureExt as _;
use tier_config::{Config, RedisBackend};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::metrics::SpoolMetrics;
use super::store::Batch;
use super::Spool;
use crate::queue::redis::{write_once_options, RedisSink};
use crate::queue::{EnqueueError, QueueEntry, Readiness, Sink};

/// Most records replayed in one script.
const REPLAY_RECORDS: usize = 512;
/// About the most entry bytes replayed in one script.
const REPLAY_BYTES: usize = 4 * 1024 * 1024;
/// Pause of the replayer when there is nothing to do or Redis is down.
const IDLE: Duration = Duration::from_millis(100);
/// Pause after a failed replay batch.
const REPLAY_BACKOFF: Duration = Duration::from_secs(1);

/// Pushes the records of a batch that are after the marker, then moves the marker.
/// KEYS[1] = marker, KEYS[i+1] = queue of record i; ARGV[2i-1] = position key, ARGV[2i] = entry.
const REPLAY_SCRIPT: &str = r"
local done = redis.call('GET', KEYS[1]) or ''
local last = done
for i = 2, #KEYS do
  local pos = ARGV[2 * i - 3]
  if pos > done then
    redis.call('RPUSH', KEYS[i], ARGV[2 * i - 2])
    last = pos
  end
end
if last ~= done then
  redis.call('SET', KEYS[1], last)
end
return #KEYS - 1
";

/// Flags the request path, the replayer and the guard share.
#[derive(Debug, Default)]
pub struct Gate {
    /// Set when a Redis write failed or was slow; cleared by the replayer's health check.
    pub redis_down: AtomicBool,
    /// Set by the guard while Redis is over budget.
    pub over_budget: AtomicBool,
}

/// The node's sink: Redis, with the local spool in front of it when one is configured.
pub struct SpoolingSink {
    redis: Arc<RedisSink>,
    spool: Option<Arc<Spool>>,
    gate: Arc<Gate>,
    deadline: Duration,
    metrics: SpoolMetrics,
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl SpoolingSink {
    /// Starts the replayer (with a spool) and the guard.
    pub fn start(
        redis: RedisSink,
        spool: Option<Spool>,
        config: &Config,
        metrics: SpoolMetrics,
    ) -> Self {
        let redis = Arc::new(redis);
        let spool = spool.map(Arc::new);
        let gate = Arc::new(Gate::default());
        let stop = CancellationToken::new();
        let mut tasks = vec![tokio::spawn(super::guard::run(
            config.clone(),
            gate.clone(),
            metrics.clone(),
            stop.clone(),
        ))];
        let deadline = config.ingest.spool.redis_deadline;
        if let Some(spool) = &spool {
            let replayer = Replayer {
                redis: redis.clone(),
                spool: spool.clone(),
                gate: gate.clone(),
                deadline,
                marker: format!(
                    "{}tierSpoolReplayed_{}",
                    config.queue.key_prefix,
                    spool.node_id()
                ),
                atomic: config.redis.backend != RedisBackend::Cluster,
            };
            tasks.push(tokio::spawn(replayer.run(stop.clone())));
        }
        Self {
            redis,
            spool,
            gate,
            deadline,
            metrics,
            stop,
            tasks: Mutex::new(tasks),
        }
    }

    /// Stops the replayer and the guard, flushes the spool and the Redis writers.
    pub async fn close(self) {
        self.stop.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
        if let Some(spool) = self.spool {
            let _ = tokio::task::spawn_blocking(move || spool.close()).await;
        }
        match Arc::try_unwrap(self.redis) {
            Ok(redis) => redis.close().await,
            Err(_) => tracing::warn!("redis writer still referenced at shutdown"),
        }
    }

    async fn to_redis_or_spool(
        &self,
        spool: &Spool,
        entries: Vec<QueueEntry>,
    ) -> Result<(), EnqueueError> {
        let started = Instant::now();
        let result = self.redis.enqueue(entries.clone()).await;
        if started.elapsed() > self.deadline && !self.gate.redis_down.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(elapsed = ?started.elapsed(), "Redis slower than ingest.spool.redis_deadline: spooling new hits");
        }
        match result {
            Ok(()) => Ok(()),
            Err(error) if error.certainly_not_stored() => {
                self.mark_down(&error);
                spool.append(entries).await
            }
            Err(error) => {
                self.mark_down(&error);
                Err(error)
            }
        }
    }

    fn mark_down(&self, error: &EnqueueError) {
        if matches!(error, EnqueueError::Unknown(_)) {
            self.metrics.unknown_outcome();
        }
        if !self.gate.redis_down.swap(true, Ordering::Relaxed) {
            tracing::warn!(%error, "Redis write failed: spooling new hits until Redis is healthy");
        }
    }
}

impl Sink for SpoolingSink {
    fn enqueue(&self, entries: Vec<QueueEntry>) -> BoxFuture<'_, Result<(), EnqueueError>> {
        async move {
            if entries.is_empty() {
                return Ok(());
            }
            let over = self.gate.over_budget.load(Ordering::Relaxed);
            let Some(spool) = &self.spool else {
                if over {
                    return Err(EnqueueError::Rejected(
                        "Redis over its memory/queue budget and no spool configured".into(),
                    ));
                }
                let result = self.redis.enqueue(entries).await;
                if let Err(EnqueueError::Unknown(_)) = &result {
                    self.metrics.unknown_outcome();
                }
                return result;
            };
            let down = self.gate.redis_down.load(Ordering::Relaxed);
            if down || over || !spool.is_empty() {
                spool.append(entries).await
            } else {
                self.to_redis_or_spool(spool, entries).await
            }
        }
        .boxed()
    }

    fn readiness(&self) -> BoxFuture<'_, Readiness> {
        async move {
            // While a failed write has marked Redis down (until the replayer's PING succeeds),
            // answer at once instead of waiting for another PING to time out.
            let redis = !self.gate.redis_down.load(Ordering::Relaxed) && self.redis.ping().await;
            let over = self.gate.over_budget.load(Ordering::Relaxed);
            let guard = if over { "over" } else { "ok" };
            match &self.spool {
                None => Readiness {
                    accepts: redis && !over,
                    detail: format!("redis={redis} guard={guard} spool=off"),
                },
                Some(spool) => {
                    let room = spool.has_room();
                    let state = if !room {
                        "full".to_owned()
                    } else if spool.is_empty() {
                        "empty".to_owned()
                    } else {
                        format!("spooling entries={}", spool.entries())
                    };
                    Readiness {
                        accepts: room || (redis && !over && spool.is_empty()),
                        detail: format!("redis={redis} guard={guard} spool={state}"),
                    }
                }
            }
        }
        .boxed()
    }
}

struct Replayer {
    redis: Arc<RedisSink>,
    spool: Arc<Spool>,
    gate: Arc<Gate>,
    deadline: Duration,
    marker: String,
    atomic: bool,
}

impl Replayer {
    async fn run(self, stop: CancellationToken) {
        let mut pause = Duration::ZERO;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = IDLE;
            if self.gate.redis_down.load(Ordering::Relaxed) {
                if !self.healthy().await {
                    self.spool.metrics().replaying(false);
                    continue;
                }
                self.gate.redis_down.store(false, Ordering::Relaxed);
                tracing::info!("Redis healthy again");
            }
            if self.gate.over_budget.load(Ordering::Relaxed) || self.spool.is_empty() {
                self.spool.metrics().replaying(false);
                continue;
            }
            self.spool.metrics().replaying(true);
            match self.replay_one().await {
                Ok(true) => pause = Duration::ZERO,
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, "spool replay failed; retrying when Redis is healthy");
                    self.gate.redis_down.store(true, Ordering::Relaxed);
                    // Redis may answer PING but refuse writes (OOM): do not spin.
                    pause = REPLAY_BACKOFF;
                }
            }
        }
        self.spool.metrics().replaying(false);
    }

    async fn healthy(&self) -> bool {
        let started = Instant::now();
        self.redis.ping().await && started.elapsed() <= self.deadline
    }

    /// Replays one batch; `Ok(true)` when it moved the cursor.
    async fn replay_one(&self) -> Result<bool, String> {
        let spool = self.spool.clone();
        let batch =
            tokio::task::spawn_blocking(move || spool.read_batch(REPLAY_RECORDS, REPLAY_BYTES))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("reading the spool: {e}"))?;
        if batch.records.is_empty() && batch.end == batch.start {
            return Ok(false);
        }
        if !batch.records.is_empty() {
            self.push(&batch).await?;
        }
        let spool = self.spool.clone();
        tokio::task::spawn_blocking(move || spool.commit(&batch))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("writing the spool cursor: {e}"))?;
        Ok(true)
    }

    async fn push(&self, batch: &Batch) -> Result<(), String> {
        let client = self.redis.client();
        let once = client.with_options(&write_once_options(self.redis.timeout()));
        let prefix = self.redis.key_prefix();
        if self.atomic {
            let mut keys = Vec::with_capacity(batch.records.len() + 1);
            let mut args = Vec::with_capacity(batch.records.len() * 2);
            keys.push(self.marker.clone());
            for (position, record) in &batch.records {
                keys.push(matomo_wire::queue_key(prefix, record.queue_id));
                args.push(RedisValue::String(position.key().into()));
                args.push(RedisValue::Bytes(Bytes::from(record.bytes.clone())));
            }
            let _: i64 = once
                .eval(REPLAY_SCRIPT, keys, args)
                .await
                .map_err(|e| e.details().to_owned())?;
        } else {
            for (_, record) in &batch.records {
                let key = matomo_wire::queue_key(prefix, record.queue_id);
                let value = RedisValue::Bytes(Bytes::from(record.bytes.clone()));
                let _: i64 = once
                    .rpush(key, value)
                    .await
                    .map_err(|e| e.details().to_owned())?;
            }
        }
        Ok(())
    }
}
