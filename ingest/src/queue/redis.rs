//! The Redis sink: RPUSH to the QueuedTracking lists, batched across concurrent requests.
//!
//! Requests hand their entries to one of `redis.pool_size` writer tasks over a channel; a writer
//! takes everything waiting (up to [`MAX_JOBS_PER_PIPELINE`] jobs), sends it as one pipeline of
//! RPUSHes on its own connection, and answers each request with the result of its own commands.
//! So throughput does not depend on round trips, and a request is answered only after Redis
//! acknowledged its entries. Entries of one request keep their order (one pipeline, in order).
//!
//! Queue writes are never retried by the client library: the pool runs with
//! `max_command_attempts = 1` and every pipeline with `fail_fast` and `max_attempts = 1`, so
//! fred neither queues a write while disconnected nor re-sends one that was in flight when a
//! connection dropped. A write is classified by what is known about it ([`EnqueueError`]): not
//! sent (not connected), rejected by Redis (error replies), or outcome unknown (sent, no reply)
//! — the last may have been stored once by Redis and is answered 503, never re-sent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use fred::prelude::{
    Builder, ClientLike as _, Config as FredConfig, ListInterface as _, Options, Pool,
    ReconnectPolicy, ServerConfig,
};
use fred::types::Value as RedisValue;
use futures::future::BoxFuture;
use futures::FutureExt as _;
use tier_config::{RedisBackend, RedisConfig};
use tokio::sync::{mpsc, oneshot};

use super::{EnqueueError, QueueEntry, Readiness, Sink};

/// Most request jobs sent in one pipeline.
pub const MAX_JOBS_PER_PIPELINE: usize = 512;
/// Jobs that may wait for one writer before requests are held back.
const CHANNEL_DEPTH: usize = 4096;

struct Job {
    entries: Vec<QueueEntry>,
    done: oneshot::Sender<Result<(), EnqueueError>>,
}

/// The Redis connection settings as fred needs them.
pub fn fred_config(cfg: &RedisConfig) -> FredConfig {
    let server = match cfg.backend {
        RedisBackend::Standalone => ServerConfig::new_centralized(cfg.host.clone(), cfg.port),
        RedisBackend::Sentinel => ServerConfig::new_sentinel(
            vec![(cfg.host.clone(), cfg.port)],
            cfg.sentinel_master.clone(),
        ),
        RedisBackend::Cluster => ServerConfig::new_clustered(vec![(cfg.host.clone(), cfg.port)]),
    };
    FredConfig {
        server,
        database: (cfg.backend != RedisBackend::Cluster).then_some(cfg.database),
        password: cfg.password.clone(),
        fail_fast: true,
        ..FredConfig::default()
    }
}

/// Per-command options of every queue write: fail at once when not connected, never re-send.
pub fn write_once_options(timeout: Duration) -> Options {
    Options {
        max_attempts: Some(1),
        fail_fast: true,
        timeout: Some(timeout),
        ..Options::default()
    }
}

/// Builds (does not connect) a pool whose commands are never re-sent after a connection loss.
pub fn write_once_pool(cfg: &RedisConfig, size: usize) -> Result<Pool, String> {
    Builder::from_config(fred_config(cfg))
        .with_performance_config(|p| p.default_command_timeout = cfg.command_timeout)
        .with_connection_config(|c| {
            c.connection_timeout = cfg.command_timeout;
            c.max_command_attempts = 1;
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
        .build_pool(size.max(1))
        .map_err(|e| e.details().to_owned())
}

/// Connects once without retries, to report a wrong address or password at start-up.
pub async fn check_reachable(cfg: &RedisConfig) -> Result<(), String> {
    let client = Builder::from_config(fred_config(cfg))
        .with_connection_config(|c| c.connection_timeout = cfg.command_timeout)
        .build()
        .map_err(|e| e.details().to_owned())?;
    let init = tokio::time::timeout(cfg.command_timeout + Duration::from_secs(1), client.init())
        .await
        .map_err(|_| "connection timed out".to_owned())?;
    let result = match init {
        Ok(_) => client
            .ping::<String>(None)
            .await
            .map(|_| ())
            .map_err(|e| e.details().to_owned()),
        Err(e) => Err(e.details().to_owned()),
    };
    let _ = client.quit().await;
    result
}

/// The Redis sink. Dropping it lets the writers finish their queued jobs and stop.
pub struct RedisSink {
    senders: Vec<mpsc::Sender<Job>>,
    next: AtomicUsize,
    pool: Pool,
    key_prefix: String,
    timeout: Duration,
    writers: Vec<tokio::task::JoinHandle<()>>,
}

impl RedisSink {
    /// Connects a pool of `cfg.pool_size` connections and starts one writer per connection.
    pub async fn connect(cfg: &RedisConfig, key_prefix: &str) -> Result<Self, String> {
        let pool = write_once_pool(cfg, cfg.pool_size)?;
        tokio::time::timeout(cfg.command_timeout + Duration::from_secs(1), pool.init())
            .await
            .map_err(|_| "connection timed out".to_owned())?
            .map_err(|e| e.details().to_owned())?;
        let mut senders = Vec::new();
        let mut writers = Vec::new();
        for client in pool.clients() {
            let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
            senders.push(tx);
            let writer = Writer {
                client: client.clone(),
                prefix: key_prefix.to_owned(),
                timeout: cfg.command_timeout,
            };
            writers.push(tokio::spawn(writer.run(rx)));
        }
        Ok(Self {
            senders,
            next: AtomicUsize::new(0),
            pool,
            key_prefix: key_prefix.to_owned(),
            timeout: cfg.command_timeout,
            writers,
        })
    }

    /// Whether Redis answers a PING within `redis.command_timeout`.
    pub async fn ping(&self) -> bool {
        let ping = self.pool.next().ping::<String>(None);
        matches!(tokio::time::timeout(self.timeout, ping).await, Ok(Ok(_)))
    }

    /// One connection of the pool, for the spool's replayer (same write-once settings).
    pub fn client(&self) -> &fred::prelude::Client {
        self.pool.next()
    }

    /// `redis.command_timeout`.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The key prefix entries are written under.
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// Stops accepting jobs, waits for the writers to flush what they have, and disconnects.
    pub async fn close(mut self) {
        self.senders.clear();
        for writer in self.writers.drain(..) {
            let _ = writer.await;
        }
        let _ = self.pool.quit().await;
    }
}

impl Sink for RedisSink {
    fn enqueue(&self, entries: Vec<QueueEntry>) -> BoxFuture<'_, Result<(), EnqueueError>> {
        async move {
            if entries.is_empty() {
                return Ok(());
            }
            if self.senders.is_empty() {
                return Err(EnqueueError::Closed);
            }
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.senders.len();
            let (done, answer) = oneshot::channel();
            self.senders[i]
                .send(Job { entries, done })
                .await
                .map_err(|_| EnqueueError::Closed)?;
            answer.await.map_err(|_| EnqueueError::Closed)?
        }
        .boxed()
    }

    fn readiness(&self) -> BoxFuture<'_, Readiness> {
        async move {
            let redis = self.ping().await;
            Readiness {
                accepts: redis,
                detail: format!("redis={redis}"),
            }
        }
        .boxed()
    }
}

struct Writer {
    client: fred::prelude::Client,
    prefix: String,
    timeout: Duration,
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.recv().await {
            let mut jobs = vec![first];
            while jobs.len() < MAX_JOBS_PER_PIPELINE {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            self.write(jobs).await;
        }
    }

    async fn write(&self, jobs: Vec<Job>) {
        if !self.client.is_connected() {
            // Nothing is handed to fred while it is disconnected: these entries were certainly
            // not stored and may go to the spool.
            for job in jobs {
                let _ = job
                    .done
                    .send(Err(EnqueueError::NotSent("disconnected".into())));
            }
            return;
        }
        let pipeline = self.client.pipeline();
        let once = pipeline.with_options(&write_once_options(self.timeout));
        let mut buffered = true;
        let mut answers = Vec::with_capacity(jobs.len());
        for job in jobs {
            answers.push((job.entries.len(), job.done));
            for entry in job.entries {
                let key = matomo_wire::queue_key(&self.prefix, entry.queue_id);
                let value = RedisValue::Bytes(Bytes::from(entry.bytes));
                let queued: Result<(), _> = once.rpush(key, value).await;
                buffered &= queued.is_ok();
            }
        }
        let total: usize = answers.iter().map(|(n, _)| n).sum();
        let results = if buffered {
            // fred applies the same timeout; this one only guards against a stuck router.
            let limit = self.timeout + Duration::from_millis(500);
            match tokio::time::timeout(limit, pipeline.try_all::<RedisValue>()).await {
                Ok(results) if results.len() == total => Ok(results),
                Ok(results) => Err(EnqueueError::Unknown(
                    results
                        .into_iter()
                        .find_map(|r| r.err())
                        .map_or_else(|| "short pipeline reply".into(), |e| e.details().to_owned()),
                )),
                Err(_) => Err(EnqueueError::Unknown("timed out".into())),
            }
        } else {
            Err(EnqueueError::NotSent(
                "could not buffer the pipeline".into(),
            ))
        };
        let mut offset = 0;
        for (n, done) in answers {
            let outcome = match &results {
                Ok(results) => job_outcome(&results[offset..offset + n]),
                Err(e) => Err(e.clone()),
            };
            offset += n;
            let _ = done.send(outcome);
        }
    }
}

/// The outcome of one job from its commands' replies: all stored, none stored (every reply an
/// error, e.g. OOM), or some of each — then retrying or spooling would duplicate the stored
/// ones, so the outcome counts as unknown.
fn job_outcome(replies: &[Result<RedisValue, fred::error::Error>]) -> Result<(), EnqueueError> {
    let failed: Vec<&fred::error::Error> =
        replies.iter().filter_map(|r| r.as_ref().err()).collect();
    match failed.first() {
        None => Ok(()),
        Some(e) if failed.len() == replies.len() => {
            Err(EnqueueError::Rejected(e.details().to_owned()))
        }
        Some(e) => Err(EnqueueError::Unknown(format!(
            "{} of {} entries refused: {}",
            failed.len(),
            replies.len(),
            e.details()
        ))),
    }
}
