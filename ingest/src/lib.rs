//! The ingest node: a drop-in `matomo.php` that validates hits at the edge and enqueues them in
//! QueuedTracking 5.1's Redis format.
//!
//! Layout, outside in:
//! - [`server`]: [`serve`] — start-up checks, the accept loop, graceful shutdown.
//! - [`lanes`]: one single-threaded runtime per core that runs connections and Redis writers.
//! - [`conn`]: the HTTP/1.1 connection (heads, bodies, answers; HTTP/2 handed to hyper).
//! - [`http`]: router, the `matomo.php` handler, Matomo's exact responses, static JS, ops endpoints.
//! - [`parse`]: pure parsing of query strings, form bodies and bulk JSON.
//! - [`validate`]: the checks Matomo answers 400 for, against the cached [`sites`] tables.
//! - [`env`]: client IP (trusted proxies) and the `$_SERVER` variables a queued hit carries.
//! - [`queue`]: routing to shards, the wire encoding, and the [`queue::Sink`] that makes a hit
//!   durable (Redis, one multi-value RPUSH per queue for the entries of concurrent requests).
//! - [`spool`]: the local disk spool in front of Redis, its replayer, and the Redis memory guard.
//! - [`metrics`]: the Prometheus registry.
//! - [`allocator`]: start-up tuning of the binary's allocator (mimalloc).
//!
//! A response goes out only after the sink acknowledged the hit (Redis or the spool has it).
#![deny(missing_docs)]

pub mod allocator;
pub mod conn;
pub mod env;
pub mod http;
pub mod lanes;
pub mod metrics;
pub mod parse;
pub mod queue;
pub mod server;
pub mod sites;
pub mod spool;
pub mod validate;

pub use server::{serve, StartupError};
