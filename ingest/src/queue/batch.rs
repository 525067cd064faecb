//! Coalesced Redis writes: the entries of concurrent requests that are ready at the same moment
//! go to Redis as one RPUSH per queue.
//!
//! Each writer task runs on a lane, with its own connection. A request hands its entries to a
//! writer of its lane as one [`Job`] and waits for the outcome of each of them. The writer takes
//! the first job, then every job already waiting (up to [`BATCH_ENTRIES`] entries or about
//! [`BATCH_BYTES`]), and writes them as one multi-value RPUSH per queue — the values in job
//! order, and within a job in the request's order. While that batch is in flight the next one
//! gathers. Per hit this saves a command, a socket write and a Redis command dispatch.
//!
//! A writer writes through a [`Transport`]: by default on a standalone Redis its own connection
//! ([`super::direct`]: the batch's commands encoded into one buffer and written at once), else
//! a fred client, to which all the batch's commands are handed in the same poll so its router
//! mostly writes them with one flush (fred's own `Pipeline` flushes after every command). fred
//! costs the node ~3.7 µs per command (docs/ingest.md, "Session 14"); the direct connection
//! about the bytes it copies. A direct writer woken by a first job yields once before it
//! gathers, so the lane's sockets are polled and the requests ready by then join the batch.
//!
//! A multi-value RPUSH is one command, executed atomically: all its values are stored or none.
//! So every entry of a command gets that command's outcome, classified as before (stored, not
//! sent, rejected, unknown: [`super::redis`]), and a request's outcome combines the outcomes of
//! its entries exactly as when each entry was its own command. A writer never sends while its
//! connection is down (the batch is "not sent") and never re-sends.

use std::time::Duration;

use bytes::Bytes;
use fred::prelude::{ClientLike as _, ListInterface as _};
use fred::types::{Key, Value as RedisValue};
use tokio::sync::{mpsc, oneshot};

use super::direct::{DirectConn, Stream};
use super::redis::{classify, write_once_options};
use super::{EnqueueError, QueueEntry};

/// Most entries written in one batch.
pub const BATCH_ENTRIES: usize = 512;
/// A batch takes no more jobs once it holds this many entry bytes.
pub const BATCH_BYTES: usize = 4 * 1024 * 1024;

/// The outcome of each entry of a job, in the job's order.
pub type JobOutcome = Vec<Result<(), EnqueueError>>;

/// One request's entries and where to send their outcomes.
#[derive(Debug)]
pub struct Job {
    /// The entries, in the request's order.
    pub entries: Vec<QueueEntry>,
    /// Receives one outcome per entry.
    pub done: oneshot::Sender<JobOutcome>,
}

/// What a writer writes through.
pub enum Transport {
    /// A fred client (Sentinel, Cluster, or `ingest.direct_redis_writes = false`).
    Client(fred::prelude::Client),
    /// The writer's own connection ([`super::direct`]), boxed: it holds its buffers.
    Direct(Box<DirectConn>),
}

/// Runs one writer on `transport` until every sender of `jobs` is gone.
pub async fn run_writer(
    transport: Transport,
    jobs: mpsc::UnboundedReceiver<Job>,
    key_prefix: String,
    timeout: Duration,
) {
    let keys = QueueKeys::new(key_prefix);
    match transport {
        Transport::Client(client) => run_client_writer(client, jobs, keys, timeout).await,
        Transport::Direct(conn) => run_direct_writer(*conn, jobs, keys).await,
    }
}

async fn run_client_writer(
    client: fred::prelude::Client,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    mut keys: QueueKeys,
    timeout: Duration,
) {
    while let Some(first) = jobs.recv().await {
        let batch = gather(first, &mut jobs);
        write_batch(&client, batch, &mut keys, timeout).await;
    }
}

/// What woke a direct writer.
enum Event {
    Job(Option<Job>),
    Reopened(Result<Stream, String>),
    /// The idle connection became readable (`false`: it can no longer be watched).
    Readable(bool),
}

async fn run_direct_writer(
    mut conn: DirectConn,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    mut keys: QueueKeys,
) {
    let mut reconnect = None;
    loop {
        if !conn.is_open() && reconnect.is_none() {
            reconnect = Some(Box::pin(conn.reconnect()));
        }
        // A connection Redis closed is noticed before the next job is written to it, so that
        // job is "not sent" (spooled) rather than "unknown".
        let event = tokio::select! {
            biased;
            watchable = conn.readable(), if conn.is_open() => Event::Readable(watchable),
            opened = async { reconnect.as_mut().expect("guarded").await }, if reconnect.is_some() => {
                Event::Reopened(opened)
            }
            job = jobs.recv() => Event::Job(job),
        };
        match event {
            Event::Job(None) => break,
            Event::Job(Some(first)) => {
                // Let the lane poll its sockets once before gathering: requests that arrived
                // meanwhile join this batch instead of the next one. Larger batches mean fewer
                // RPUSH commands and reads for Redis (session 16: 4.9 against 5.8 µs of Redis
                // CPU per hit, and fewer node wake-ups), for a scheduler round of delay.
                tokio::task::yield_now().await;
                let batch = gather(first, &mut jobs);
                write_direct(&mut conn, batch, &mut keys).await;
            }
            Event::Reopened(opened) => {
                reconnect = None;
                match opened {
                    Ok(stream) => conn.reopened(stream),
                    Err(error) => tracing::warn!(%error, "redis queue writer could not reconnect"),
                }
            }
            Event::Readable(watchable) => conn.check_idle(watchable),
        }
    }
}

/// `first` and every job already waiting, up to [`BATCH_ENTRIES`] entries or about
/// [`BATCH_BYTES`].
fn gather(first: Job, jobs: &mut mpsc::UnboundedReceiver<Job>) -> Vec<Job> {
    let mut entries = first.entries.len();
    let mut bytes: usize = first.entries.iter().map(|e| e.bytes.len()).sum();
    let mut batch = vec![first];
    while entries < BATCH_ENTRIES && bytes < BATCH_BYTES {
        let Ok(job) = jobs.try_recv() else { break };
        entries += job.entries.len();
        bytes += job.entries.iter().map(|e| e.bytes.len()).sum::<usize>();
        batch.push(job);
    }
    batch
}

/// The queue keys, each formatted once (a [`Key`] clone shares its bytes).
struct QueueKeys {
    prefix: String,
    keys: Vec<Option<Key>>,
}

impl QueueKeys {
    fn new(prefix: String) -> Self {
        Self {
            prefix,
            keys: Vec::new(),
        }
    }

    /// Formats the key of `queue_id` unless it already is.
    fn ensure(&mut self, queue_id: u16) -> &Key {
        let index = usize::from(queue_id);
        if index >= self.keys.len() {
            self.keys.resize(index + 1, None);
        }
        self.keys[index]
            .get_or_insert_with(|| Key::from(matomo_wire::queue_key(&self.prefix, queue_id)))
    }

    fn get(&mut self, queue_id: u16) -> Key {
        self.ensure(queue_id).clone()
    }

    /// The bytes of the key of `queue_id`, which [`Self::ensure`] formatted.
    fn formatted(&self, queue_id: u16) -> &[u8] {
        self.keys[usize::from(queue_id)]
            .as_ref()
            .expect("the key was formatted by ensure")
            .as_bytes()
    }
}

/// The RPUSH commands of a batch and, for each job, which command carries each of its entries.
#[derive(Debug, Default, PartialEq)]
struct Plan {
    /// (queue, values) in the order each queue first appears.
    commands: Vec<(u16, Vec<Vec<u8>>)>,
    /// Per job, per entry: the index of its command.
    slots: Vec<Vec<usize>>,
}

fn plan(jobs: impl IntoIterator<Item = Vec<QueueEntry>>) -> Plan {
    let mut plan = Plan::default();
    for entries in jobs {
        let mut job_slots = Vec::with_capacity(entries.len());
        for entry in entries {
            let index = match plan.commands.iter().position(|(q, _)| *q == entry.queue_id) {
                Some(index) => index,
                None => {
                    plan.commands.push((entry.queue_id, Vec::new()));
                    plan.commands.len() - 1
                }
            };
            plan.commands[index].1.push(entry.bytes);
            job_slots.push(index);
        }
        plan.slots.push(job_slots);
    }
    plan
}

/// The plan of `batch` and where each job's outcomes go.
fn split(batch: Vec<Job>) -> (Plan, Vec<oneshot::Sender<JobOutcome>>) {
    let mut senders = Vec::with_capacity(batch.len());
    let plan = plan(batch.into_iter().map(|job| {
        senders.push(job.done);
        job.entries
    }));
    (plan, senders)
}

/// Sends each job the outcomes of its entries' commands.
fn answer(
    slots: Vec<Vec<usize>>,
    senders: Vec<oneshot::Sender<JobOutcome>>,
    results: &[Result<(), EnqueueError>],
) {
    for (job_slots, done) in slots.into_iter().zip(senders) {
        // A request that went away no longer waits for its outcome.
        let _ = done.send(job_slots.iter().map(|&i| results[i].clone()).collect());
    }
}

async fn write_direct(conn: &mut DirectConn, batch: Vec<Job>, keys: &mut QueueKeys) {
    let (plan, senders) = split(batch);
    for (queue_id, _) in &plan.commands {
        keys.ensure(*queue_id);
    }
    let commands: Vec<(&[u8], &[Vec<u8>])> = plan
        .commands
        .iter()
        .map(|(queue_id, values)| (keys.formatted(*queue_id), &values[..]))
        .collect();
    let results = conn.rpush_all(&commands).await;
    answer(plan.slots, senders, &results);
}

async fn write_batch(
    client: &fred::prelude::Client,
    batch: Vec<Job>,
    keys: &mut QueueKeys,
    timeout: Duration,
) {
    let (plan, senders) = split(batch);
    let results: Vec<Result<(), EnqueueError>> = if client.is_connected() {
        let once = client.with_options(&write_once_options(timeout));
        // All commands are handed to fred in join_all's first poll, in order, so they reach the
        // connection back to back.
        let writes = plan.commands.into_iter().map(|(queue_id, values)| {
            let key = keys.get(queue_id);
            let values: Vec<RedisValue> = values
                .into_iter()
                .map(|v| RedisValue::Bytes(Bytes::from(v)))
                .collect();
            once.rpush::<i64, _, _>(key, values)
        });
        let replies = futures::future::join_all(writes).await;
        let connected = client.is_connected();
        replies
            .iter()
            .map(|reply| match reply {
                Ok(_) => Ok(()),
                Err(error) => Err(classify(error, connected)),
            })
            .collect()
    } else {
        // Nothing is handed to fred while it is disconnected: certainly not stored.
        let not_sent = EnqueueError::NotSent("disconnected".into());
        vec![Err(not_sent); plan.commands.len()]
    };
    answer(plan.slots, senders, &results);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_command_per_queue_in_job_then_request_order() {
        let entry = |queue_id, text: &str| QueueEntry {
            queue_id,
            bytes: text.into(),
        };
        let plan = plan([
            vec![entry(3, "a1"), entry(0, "a2"), entry(3, "a3")],
            vec![entry(0, "b1")],
            vec![entry(7, "c1"), entry(3, "c2")],
        ]);
        let commands: Vec<(u16, Vec<&[u8]>)> = plan
            .commands
            .iter()
            .map(|(q, values)| (*q, values.iter().map(|v| v.as_ref()).collect()))
            .collect();
        assert_eq!(
            commands,
            vec![
                (3, vec![&b"a1"[..], b"a3", b"c2"]),
                (0, vec![&b"a2"[..], b"b1"]),
                (7, vec![&b"c1"[..]]),
            ]
        );
        assert_eq!(plan.slots, vec![vec![0, 1, 0], vec![1], vec![2, 0]]);
    }
}
