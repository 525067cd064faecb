//! The Redis sink: RPUSH to the QueuedTracking lists.
//!
//! Each writer (`redis.pool_size`, at least one per lane) runs on lane `i % lanes` with its own
//! connection: on a standalone Redis a direct one ([`super::direct`]) beside a single fred client
//! for PINGs, `CONFIG GET` and the spool's replays; on Sentinel or Cluster, or with
//! `ingest.direct_redis_writes = false`, a fred client of the pool. A request hands its entries
//! to a writer of its own lane (taking turns when the lane has several), and a writer writes the
//! entries of all requests waiting for it as one multi-value RPUSH per queue
//! ([`super::batch`]). A request is answered only after Redis acknowledged all its entries.
//!
//! Queue writes are never retried and never written late. The direct connection writes a batch
//! once and closes on any doubt ([`super::direct`]); through fred, the pool runs
//! with `max_command_attempts = 1`, and every write with `fail_fast` (refused at once while fred
//! is disconnected), `max_attempts = 1` (a command in flight when a connection drops is failed,
//! not re-sent after the reconnect) and fred's own `timeout` (a command that timed out while
//! still queued inside fred is dropped, never written afterwards — a tokio timeout around a
//! pipeline would not do that). Each write is classified by what is known about it
//! ([`EnqueueError`]): not sent (disconnected), rejected by Redis (an error reply such as OOM or
//! LOADING), or outcome unknown (written, no reply) — the last may have been stored once by
//! Redis and is answered 503, never re-sent.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fred::error::{Error as FredError, ErrorKind};
use fred::prelude::{
    Builder, ClientLike as _, Config as FredConfig, Options, Pool, ReconnectPolicy,
};
use futures::future::BoxFuture;
use futures::FutureExt as _;
use tier_config::RedisConfig;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::batch::{run_writer, Job, Transport};
use super::direct::{Address, DirectConn, Endpoint};
use super::{EnqueueError, QueueEntry, Readiness, Sink};
use crate::lanes::{self, Lanes};

/// The Redis connection settings as fred needs them (tier-config's, for every deployment and a
/// Unix socket), failing fast while disconnected.
pub fn fred_config(cfg: &RedisConfig) -> Result<FredConfig, String> {
    let mut config = cfg.fred_config().map_err(|e| e.details().to_owned())?;
    config.fail_fast = true;
    Ok(config)
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
    Builder::from_config(fred_config(cfg)?)
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
    let client = Builder::from_config(fred_config(cfg)?)
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

/// The Redis sink.
pub struct RedisSink {
    pool: Pool,
    next: AtomicUsize,
    /// One per connection: the job queues of the writer tasks.
    writers: Vec<mpsc::UnboundedSender<Job>>,
    writer_tasks: Vec<JoinHandle<()>>,
    /// How many lanes the writers are spread over.
    lanes: usize,
    /// Per direct writer ([`super::direct`]): whether its connection is open.
    direct_open: Vec<Arc<AtomicBool>>,
    key_prefix: String,
    timeout: Duration,
}

impl RedisSink {
    /// Redis' `list-compress-depth` (`CONFIG GET`), or why it could not be read: managed Redis
    /// services often refuse or rename `CONFIG`.
    pub async fn list_compress_depth(&self) -> Result<u32, String> {
        let command = fred::types::CustomCommand::new_static("CONFIG", None, false);
        let reply: fred::types::Value = self
            .pool
            .next()
            .custom(command, vec!["GET", "list-compress-depth"])
            .await
            .map_err(|e| e.details().to_owned())?;
        let value = match &reply {
            // RESP2: [name, value]; RESP3: {name: value}.
            fred::types::Value::Array(items) if items.len() == 2 => items[1].as_string(),
            fred::types::Value::Map(map) => map
                .clone()
                .inner()
                .into_values()
                .next()
                .and_then(|v| v.as_string()),
            _ => None,
        };
        value
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("unexpected reply to CONFIG GET list-compress-depth: {reply:?}"))
    }

    /// Connects `cfg.pool_size` writers, at least one per lane: each a fred client, or with
    /// `direct` (a standalone Redis and `ingest.direct_redis_writes`) its own connection
    /// ([`super::direct`]) beside one fred client for everything else. Writer `i` runs on
    /// lane `i % lanes.len()`, so a lane's requests are written on their own thread.
    pub async fn connect(
        cfg: &RedisConfig,
        key_prefix: &str,
        lanes: &Lanes,
        direct: bool,
    ) -> Result<Self, String> {
        let writers = cfg.pool_size.max(lanes.len());
        let pool = write_once_pool(cfg, if direct { 1 } else { writers })?;
        let connects = pool.clients().iter().enumerate().map(|(i, client)| {
            let client = client.clone();
            lanes
                .handle(i)
                .spawn(async move { client.init().await.map(drop) })
        });
        let connected = futures::future::join_all(connects);
        let results = tokio::time::timeout(cfg.command_timeout + Duration::from_secs(1), connected)
            .await
            .map_err(|_| "connection timed out".to_owned())?;
        for result in results {
            result
                .map_err(|e| format!("connection task failed: {e}"))?
                .map_err(|e| e.details().to_owned())?;
        }
        let transports: Vec<Transport> = if direct {
            let endpoint = Endpoint {
                address: Address::of(cfg)?,
                database: cfg.database,
                password: cfg.password.clone(),
                timeout: cfg.command_timeout,
            };
            let opens = (0..writers).map(|i| {
                let endpoint = endpoint.clone();
                lanes
                    .handle(i)
                    .spawn(async move { endpoint.connect().await })
            });
            let mut transports = Vec::with_capacity(writers);
            for opened in futures::future::join_all(opens).await {
                let stream = opened.map_err(|e| format!("connection task failed: {e}"))??;
                let open = Arc::new(AtomicBool::new(true));
                transports.push(Transport::Direct(Box::new(DirectConn::new(
                    endpoint.clone(),
                    stream,
                    open,
                ))));
            }
            transports
        } else {
            pool.clients()
                .iter()
                .cloned()
                .map(Transport::Client)
                .collect()
        };
        let direct_open = transports
            .iter()
            .filter_map(|t| match t {
                Transport::Direct(conn) => Some(conn.open_flag()),
                Transport::Client(_) => None,
            })
            .collect();
        let (writers, writer_tasks) = transports
            .into_iter()
            .enumerate()
            .map(|(i, transport)| {
                let (jobs, queued) = mpsc::unbounded_channel();
                let task = lanes.handle(i).spawn(run_writer(
                    transport,
                    queued,
                    key_prefix.to_owned(),
                    cfg.command_timeout,
                ));
                (jobs, task)
            })
            .unzip();
        Ok(Self {
            pool,
            next: AtomicUsize::new(0),
            writers,
            writer_tasks,
            lanes: lanes.len(),
            direct_open,
            key_prefix: key_prefix.to_owned(),
            timeout: cfg.command_timeout,
        })
    }

    /// The writer for a request: one of its own lane's, or any, in turn, off the lanes.
    fn writer(&self) -> &mpsc::UnboundedSender<Job> {
        let index = writer_index(
            self.writers.len(),
            self.lanes,
            lanes::current(),
            lanes::next_turn,
        );
        &self.writers[index]
    }

    /// Whether Redis answers a PING within `redis.command_timeout` on every fred connection
    /// and every direct writer's connection is open: each lane writes through its own, so one
    /// that is down fails that lane's hits.
    pub async fn ping(&self) -> bool {
        if !self
            .direct_open
            .iter()
            .all(|open| open.load(Ordering::Relaxed))
        {
            return false;
        }
        let pings = self.pool.clients().iter().map(|client| async move {
            let ping = client.ping::<String>(None);
            matches!(tokio::time::timeout(self.timeout, ping).await, Ok(Ok(_)))
        });
        futures::future::join_all(pings)
            .await
            .into_iter()
            .all(|ok| ok)
    }

    /// One connection of the pool (same write-once settings), for the spool's replayer.
    pub fn client(&self) -> &fred::prelude::Client {
        let clients = self.pool.clients();
        &clients[self.next.fetch_add(1, Ordering::Relaxed) % clients.len()]
    }

    /// `redis.command_timeout`.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The key prefix entries are written under.
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// Lets the writers finish the jobs they have, waits for commands in flight and
    /// disconnects.
    pub async fn close(self) {
        drop(self.writers);
        for task in self.writer_tasks {
            let _ = task.await;
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
            let writer = self.writer();
            let (done, outcomes) = oneshot::channel();
            if writer.send(Job { entries, done }).is_err() {
                return Err(EnqueueError::Closed);
            }
            match outcomes.await {
                Ok(outcomes) => outcome(&outcomes),
                // The writer is gone and may have sent the entries.
                Err(_) => Err(EnqueueError::Unknown("the Redis writer stopped".into())),
            }
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

/// Which of `count` writers (writer `i` runs on lane `i % lanes`, `count >= lanes`) takes a
/// request from `lane`: one of that lane's, taking turns (`turn`, called only when the lane has
/// several) — or, off the lanes, any writer in turn.
fn writer_index(
    count: usize,
    lanes: usize,
    lane: Option<usize>,
    turn: impl FnOnce() -> usize,
) -> usize {
    match lane {
        Some(lane) if lane < lanes && lane < count => {
            let on_lane = (count - lane).div_ceil(lanes);
            if on_lane > 1 {
                lane + lanes * (turn() % on_lane)
            } else {
                lane
            }
        }
        _ => turn() % count,
    }
}

/// What is known about one failed write; `connected` is fred's connection state when the
/// replies were in.
///
/// A write that fred had written to a connection that then died is failed by fred with an IO
/// error *before* it leaves the connected state. So a timeout seen while fred is not connected
/// belongs to a write still queued inside fred behind the reconnect: never written, and — its
/// timeout flag is set — never written later either.
pub(super) fn classify(error: &FredError, connected: bool) -> EnqueueError {
    let details = error.details().to_owned();
    match error.kind() {
        // fred's fail-fast check refuses before anything is queued.
        ErrorKind::Canceled if details == "Connection closed unexpectedly." => {
            EnqueueError::NotSent(details)
        }
        ErrorKind::Timeout if !connected => EnqueueError::NotSent(format!(
            "{details} (queued behind a reconnect, never written)"
        )),
        ErrorKind::IO | ErrorKind::Timeout | ErrorKind::Canceled => EnqueueError::Unknown(details),
        _ if is_error_reply(&details) => EnqueueError::Rejected(details),
        _ => EnqueueError::Unknown(details),
    }
}

/// Whether `details` is an error reply from Redis (`OOM …`, `LOADING …`, `ERR …`): its first
/// word is an upper-case error code. Errors fred makes up itself are sentences.
fn is_error_reply(details: &str) -> bool {
    let code = details.split_whitespace().next().unwrap_or_default();
    code.len() >= 2 && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// The outcome of one request from the outcomes of its entries: all stored; none stored and
/// none possibly stored (each refused or not sent); otherwise unknown — retrying or spooling
/// then could duplicate the entries Redis may have stored.
fn outcome(outcomes: &[Result<(), EnqueueError>]) -> Result<(), EnqueueError> {
    let errors: Vec<&EnqueueError> = outcomes.iter().filter_map(|r| r.as_ref().err()).collect();
    let Some(first) = errors.first() else {
        return Ok(());
    };
    if errors.len() == outcomes.len() && errors.iter().all(|e| e.certainly_not_stored()) {
        return Err((*first).clone());
    }
    match errors.iter().find(|e| !e.certainly_not_stored()) {
        Some(unknown) => Err((*unknown).clone()),
        None => Err(EnqueueError::Unknown(format!(
            "{} of {} entries stored, the rest refused: {first}",
            outcomes.len() - errors.len(),
            outcomes.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lane_takes_turns_over_its_own_writers_only() {
        for lanes in 1..=4 {
            for count in lanes..=9 {
                for lane in 0..lanes {
                    let mut picked = std::collections::BTreeSet::new();
                    for turn in 0..20 {
                        let index = writer_index(count, lanes, Some(lane), || turn);
                        assert!(index < count, "{count} writers, {lanes} lanes: {index}");
                        assert_eq!(index % lanes, lane, "{count} writers, {lanes} lanes");
                        picked.insert(index);
                    }
                    let own: std::collections::BTreeSet<usize> =
                        (lane..count).step_by(lanes).collect();
                    assert_eq!(picked, own, "{count} writers, {lanes} lanes, lane {lane}");
                }
            }
        }
    }

    #[test]
    fn off_the_lanes_any_writer_takes_its_turn() {
        let picked: Vec<usize> = (0..6).map(|t| writer_index(3, 2, None, || t)).collect();
        assert_eq!(picked, [0, 1, 2, 0, 1, 2]);
        // A lane the sink was not built for (never the case in `serve`) is treated the same.
        assert_eq!(writer_index(3, 2, Some(5), || 4), 1);
    }

    #[test]
    fn one_writer_per_lane_needs_no_turns() {
        let index = writer_index(2, 2, Some(1), || panic!("no turn needed"));
        assert_eq!(index, 1);
    }

    #[test]
    fn redis_error_replies_are_rejections_fred_errors_are_not() {
        let oom = FredError::new(
            ErrorKind::Unknown,
            "OOM command not allowed when used memory > 'maxmemory'.",
        );
        assert!(matches!(classify(&oom, true), EnqueueError::Rejected(_)));
        let loading = FredError::new(ErrorKind::Unknown, "LOADING Redis is loading");
        assert!(matches!(
            classify(&loading, true),
            EnqueueError::Rejected(_)
        ));
        let io = FredError::new(ErrorKind::IO, "Connection Closed");
        assert!(matches!(classify(&io, false), EnqueueError::Unknown(_)));
        let timeout = FredError::new(ErrorKind::Timeout, "Request timed out.");
        assert!(matches!(classify(&timeout, true), EnqueueError::Unknown(_)));
        assert!(matches!(
            classify(&timeout, false),
            EnqueueError::NotSent(_)
        ));
        let made_up = FredError::new(ErrorKind::Unknown, "Too many failed write attempts.");
        assert!(matches!(classify(&made_up, true), EnqueueError::Unknown(_)));
        let fail_fast = FredError::new(ErrorKind::Canceled, "Connection closed unexpectedly.");
        assert!(matches!(
            classify(&fail_fast, true),
            EnqueueError::NotSent(_)
        ));
    }

    #[test]
    fn a_partly_stored_request_is_unknown() {
        let oom = || {
            Err(classify(
                &FredError::new(ErrorKind::Unknown, "OOM no"),
                true,
            ))
        };
        assert!(outcome(&[Ok(()), Ok(())]).is_ok());
        assert!(matches!(
            outcome(&[oom(), oom()]),
            Err(EnqueueError::Rejected(_))
        ));
        assert!(matches!(
            outcome(&[Ok(()), oom()]),
            Err(EnqueueError::Unknown(_))
        ));
        let io = Err(classify(&FredError::new(ErrorKind::IO, "closed"), false));
        assert!(matches!(
            outcome(&[oom(), io]),
            Err(EnqueueError::Unknown(_))
        ));
        let not_sent = || Err(EnqueueError::NotSent("disconnected".into()));
        assert!(matches!(
            outcome(&[not_sent(), oom()]),
            Err(EnqueueError::NotSent(_))
        ));
    }
}
