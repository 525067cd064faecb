//! The enqueue path: accepted requests → QueuedTracking 5.1 entries → a [`Sink`].
//!
//! [`entries_for`] is pure: it routes each request to `hexdec(first 3 hex of the visitor id) %
//! numQueueWorkers` exactly as the PHP plugin does, keeps the order of requests within a queue,
//! and encodes one `RequestSet` per queue (a bulk request is split per queue, as
//! `Manager::addRequestSetToQueues` does), each with its own `tierEntryId`.
//!
//! [`Sink`] is the durability boundary: `enqueue` resolves only once the entries are stored
//! (Redis acknowledged them, or the local spool has them on disk). [`redis::RedisSink`] writes
//! to Redis; [`crate::spool::SpoolingSink`] puts the local disk spool in front of it.

mod batch;
pub mod codec;
pub mod direct;
mod quick_zlib;
pub mod redis;
mod socket;

use futures::future::BoxFuture;
use matomo_wire::envelope::StateEnv;
use matomo_wire::{queue_id_for_visitor, visitor_id_for_queue, ParamLookup, Params, WritePhpArray};
pub use tier_config::EntryCompression;

use crate::env::ServerVars;

/// One encoded entry and the queue it goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    /// Queue (shard) id, `0..numQueueWorkers`.
    pub queue_id: u16,
    /// `gzcompress(json_encode(state))`.
    pub bytes: Vec<u8>,
}

/// Why entries could not be stored. Transient: the client may retry.
///
/// The variants say what is known about the write: [`EnqueueError::NotSent`] and
/// [`EnqueueError::Rejected`] mean Redis did not store the entries (they may go to the spool);
/// [`EnqueueError::Unknown`] means the write reached the connection and its outcome is unknown —
/// Redis may have stored it once, it is never sent again, and it must not be spooled either.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EnqueueError {
    /// Redis was not connected; nothing was sent.
    #[error("redis not connected: {0}")]
    NotSent(String),
    /// Redis answered every command with an error (e.g. OOM); nothing was stored.
    #[error("redis refused the write: {0}")]
    Rejected(String),
    /// The write was sent but no reply came (connection lost, timeout): it may have been
    /// stored once. It is never re-sent.
    #[error("redis write outcome unknown: {0}")]
    Unknown(String),
    /// The local spool is full (`ingest.spool.max_bytes`).
    #[error("local spool full")]
    SpoolFull,
    /// The local spool could not write.
    #[error("local spool write failed: {0}")]
    Spool(String),
    /// The node is shutting down and no longer writes.
    #[error("the queue writer has stopped")]
    Closed,
}

impl EnqueueError {
    /// Whether Redis certainly did not store the entries, so they may be written elsewhere
    /// (the spool) without risking a duplicate.
    pub fn certainly_not_stored(&self) -> bool {
        matches!(self, Self::NotSent(_) | Self::Rejected(_))
    }
}

/// What `/readyz` reports about a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Whether the sink accepts hits now.
    pub accepts: bool,
    /// `key=value` words for the `/readyz` body, e.g. `redis=true spool=off`.
    pub detail: String,
}

/// Where accepted entries go. `enqueue` resolves after the entries are durable.
pub trait Sink: Send + Sync + 'static {
    /// Stores `entries` (in order per queue).
    fn enqueue(&self, entries: Vec<QueueEntry>) -> BoxFuture<'_, Result<(), EnqueueError>>;
    /// Whether the sink accepts hits, and what `/readyz` says about it.
    fn readiness(&self) -> BoxFuture<'_, Readiness>;
}

/// Everything a request set shares: environment, token, receive time. The default is an empty
/// environment, no token, time 0.
#[derive(Debug, Clone, Default)]
pub struct Envelope<'h> {
    /// `env.server` (borrowing the request's headers).
    pub server: ServerVars<'h>,
    /// `env.cookie`.
    pub cookie: Params,
    /// `tokenAuth` (`None` is PHP's `false`).
    pub token_auth: Option<String>,
    /// Receive time, Unix seconds.
    pub time: i64,
}

/// Routing and encoding settings.
#[derive(Debug, Clone, Copy)]
pub struct Routing {
    /// `numQueueWorkers`.
    pub num_queues: u16,
    /// `[Tracker] enable_userid_overwrites_visitorid`.
    pub uid_overwrites_visitor_id: bool,
    /// `queue.compression`.
    pub compression: EntryCompression,
}

impl Default for Routing {
    /// QueuedTracking's and Matomo's defaults: one queue (`numQueueWorkers = 1`), `uid`
    /// overwrites the visitor id, entries as PHP's `gzcompress` writes them.
    fn default() -> Self {
        Self {
            num_queues: 1,
            uid_overwrites_visitor_id: true,
            compression: EntryCompression::Default,
        }
    }
}

/// One accepted request: its parameters and the IP the queue is chosen by (`cip` when
/// authenticated, else the client IP). The parameters are a [`Params`] map (bulk requests) or
/// the single-hit path's [`crate::parse::Hit`].
#[derive(Debug)]
pub struct Routed<'a, P: ?Sized = Params> {
    /// Raw parameters, as received.
    pub params: &'a P,
    /// The IP string Matomo's `getIpString()` would return.
    pub ip: &'a str,
}

/// Encodes `requests` into one entry per queue. `new_id` yields unique entry ids.
///
/// The entries are written straight from the borrowed parameters and envelope (nothing is
/// copied into a [`matomo_wire::RequestSet`] first); the bytes are those of `matomo_wire::envelope::state_json`
/// for the same request set.
pub fn entries_for<P: ParamLookup + WritePhpArray + ?Sized>(
    requests: &[Routed<'_, P>],
    envelope: &Envelope<'_>,
    routing: Routing,
    mut new_id: impl FnMut() -> String,
) -> Vec<QueueEntry> {
    let queue_of: Vec<u16> = requests
        .iter()
        .map(|r| {
            let visitor = visitor_id_for_queue(r.params, r.ip, routing.uid_overwrites_visitor_id);
            queue_id_for_visitor(&visitor, routing.num_queues)
        })
        .collect();
    // Queues in the order of their first request, each once.
    let mut queues: Vec<u16> = Vec::with_capacity(1);
    for &queue_id in &queue_of {
        if !queues.contains(&queue_id) {
            queues.push(queue_id);
        }
    }
    queues
        .into_iter()
        .map(|queue_id| {
            let id = new_id();
            let env = StateEnv {
                server: &envelope.server,
                cookie: &envelope.cookie,
                token_auth: envelope.token_auth.as_deref(),
                time: envelope.time,
                entry_id: Some(&id),
            };
            let in_queue = requests
                .iter()
                .zip(&queue_of)
                .filter(|(_, q)| **q == queue_id)
                .map(|(r, _)| r.params);
            QueueEntry {
                queue_id,
                bytes: codec::encode_state(in_queue, &env, routing.compression),
            }
        })
        .collect()
}

/// A random 16-hex-digit entry id (lower case, zero-padded: `format!("{:016x}")` without the
/// formatting machinery, one id per hit).
pub fn random_entry_id() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = rand::random::<u64>();
    (0..16)
        .rev()
        .map(|i| char::from(HEX[(n >> (i * 4)) as usize & 0xf]))
        .collect()
}

#[cfg(test)]
mod tests {
    use matomo_wire::decode;
    use serde_json::json;

    use super::*;
    use crate::env::ServerValue;

    fn p(v: serde_json::Value) -> Params {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn bulk_is_split_per_queue_in_order() {
        let a1 = p(json!({"idsite":"1","_id":"0000000000000001","n":"1"}));
        let b1 = p(json!({"idsite":"1","_id":"0010000000000001","n":"2"}));
        let a2 = p(json!({"idsite":"1","_id":"0000000000000002","n":"3"}));
        let routed: Vec<Routed<'_>> = [&a1, &b1, &a2]
            .into_iter()
            .map(|params| Routed {
                params,
                ip: "1.2.3.4",
            })
            .collect();
        let env = Envelope {
            server: {
                let mut server = ServerVars::default();
                server.set("REMOTE_ADDR", ServerValue::Str("1.2.3.4".into()));
                server
            },
            cookie: Params::new(),
            token_auth: Some("tok".into()),
            time: 42,
        };
        let mut n = 0;
        let entries = entries_for(
            &routed,
            &env,
            Routing {
                num_queues: 16,
                ..Routing::default()
            },
            || {
                n += 1;
                format!("id{n}")
            },
        );
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].queue_id, 0);
        assert_eq!(entries[1].queue_id, 1);
        let first = decode(&entries[0].bytes).expect("decodes");
        assert_eq!(first.requests, vec![a1, a2]);
        assert_eq!(first.token_auth.as_deref(), Some("tok"));
        assert_eq!(first.time, 42);
        assert_eq!(first.entry_id.as_deref(), Some("id1"));
        let second = decode(&entries[1].bytes).expect("decodes");
        assert_eq!(second.requests, vec![b1]);
        assert_eq!(second.entry_id.as_deref(), Some("id2"));
    }

    #[test]
    fn entry_ids_are_16_hex() {
        let id = random_entry_id();
        assert_eq!(id.len(), 16);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(random_entry_id(), random_entry_id());
    }
}
