//! The wire contract between ingest, worker and harness: what sits in Redis, byte for byte as
//! QueuedTracking 5.1 writes and reads it.
//!
//! - [`keys`]: list and lock key names, the visitor id used for routing, the shard function.
//! - [`envelope`]: one queue entry (a `RequestSet` state), its zlib + PHP-`json_encode` codec.
//! - [`phpjson`]: a JSON writer that produces exactly what PHP's `json_encode` produces.
//! - [`params`]: what routing, validation and the entry writer read of a request's parameters.
//! - [`php`]: PHP string functions (`Common::sanitizeInputValue` and friends) both sides need.
//!
//! Nothing here does I/O; everything is property-tested for round trips.
#![deny(missing_docs)]

pub mod civil;
mod entities;
pub mod envelope;
pub mod keys;
pub mod params;
pub mod php;
pub mod phpjson;
pub mod plain_json;
pub mod swar;

pub use envelope::{decode, encode, entry_digest, param_str, Params, RequestSet, WireError};
pub use keys::{
    lock_key, queue_id_for_visitor, queue_key, visitor_id_for_queue, LOCK_KEY_BASE, QUEUE_KEY_BASE,
};
pub use params::{ParamLookup, WritePhpArray};
