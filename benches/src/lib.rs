//! matomo-loadgen: the load harness of the tracking tier.
//!
//! It answers "how many hits can this tier take, and where does it break?" for our tier and
//! for a PHP Matomo alike, since it speaks only the Tracking HTTP API. Layout:
//!
//! - [`visitor`]: the deterministic model of visitors, visits and hits (no I/O);
//! - [`target`]: tracking endpoints and how visitors are bound to them;
//! - [`schedule`]: open-model rate profiles (constant, ramp, steps) and due times;
//! - [`client`]: GET / POST / bulk requests and how answers count;
//! - [`runner`]: the dispatcher, send tasks and the live progress line;
//! - [`stats`]: counters and HDR latency histograms, per target and per second;
//! - [`tag`] and [`ledger`]: how each hit is found again in MySQL, and what happened to it;
//! - [`probe`]: queue depth per shard from Redis and new rows from MySQL during the run;
//! - [`reconcile`]: accepted hits against stored rows at the end;
//! - [`report`]: the JSON result, the self-contained HTML report, thresholds;
//! - [`validate`] and [`presets`]: the pre-flight check and the `capacity` /
//!   `build-then-drain` procedures;
//! - [`session`]: one whole session (validate, probe, load, drain, reconcile, result);
//! - [`pace`]: one target's latency at a fixed rate from a generator of small, steady cost;
//! - [`cli`]: command-line settings turned into the above.
#![deny(missing_docs)]

pub mod cli;
pub mod client;
pub mod ledger;
pub mod pace;
pub mod presets;
pub mod probe;
pub mod reconcile;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod session;
pub mod stats;
pub mod tag;
pub mod target;
pub mod validate;
pub mod visitor;
