//! The queue worker: drains QueuedTracking shards in order and writes Matomo's log tables.
//!
//! - [`engine`]: locks, ordered batches, exactly-once progress markers, dead letters, the pool
//!   of worker tasks. Generic over [`engine::BatchProcessor`].
//! - [`tracker`]: turns decoded hits into Matomo rows (the PHP tracker's logic, in Rust).
//! - [`commands`]: the operator commands (`monitor`, `lock-status`, `print-queued-requests`,
//!   `test`, `dead-letter`) as library functions writing to any `Write`.
//! - [`http`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`metrics`]: the Prometheus registry and typed metrics.
//! - [`app`]: start-up (connections, clear errors naming the settings), `run` and `process`.

pub mod allocator;
pub mod app;
pub mod commands;
pub mod engine;
pub mod http;
pub mod metrics;
pub mod tracker;
