//! The queue worker: drains QueuedTracking shards in order and writes Matomo's log tables.
//!
//! `tracker` turns decoded hits into Matomo rows (the PHP tracker's logic, in Rust); the engine
//! (locks, batches, exactly-once progress markers, dead letters) feeds it.

pub mod tracker;
