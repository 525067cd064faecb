//! One typed, validated configuration for every binary of the tier.
//!
//! - [`settings`] — the shape and defaults ([`Config`]).
//! - [`registry`] — every setting's name, type, environment variable and meaning.
//! - `load`: [`CommonArgs`] (flags every binary flattens) and [`load()`], which merges
//!   defaults ← QueuedTracking's stored settings ← Matomo `config.ini.php` ← TOML ←
//!   environment ← flags and validates once; `stored` (feature `mysql`) reads the stored
//!   settings from Matomo's database for `load_matomo`.
//! - [`matomo_ini`] — the parser for Matomo's `config.ini.php`; `queued_tracking` maps its
//!   Redis server lists.
//! - [`validate`] — the start-up checks; [`ConfigError`] renders as one line naming the setting.
//! - [`logging`] — [`init_tracing`].
//! - `redis_client` (feature `fred`) — fred's client configuration from `[redis]`;
//!   `redis_servers` — the servers `redis.host` lists ([`RedisServer`]).
//! - [`schema`] — the Matomo DDL of `deploy/schema/matomo.sql` for local set-up and tests.
//!
//! Loading happens once at start-up; a bad setting stops the binary with one line naming the
//! setting and the problem. Reachability of Redis and MySQL is checked by the binaries.
#![deny(missing_docs)]

pub mod error;
pub mod load;
pub mod logging;
pub mod matomo_ini;
mod queued_tracking;
#[cfg(feature = "fred")]
mod redis_client;
mod redis_servers;
pub mod registry;
pub mod runtime;
pub mod schema;
pub mod settings;
#[cfg(feature = "mysql")]
mod stored;
mod urls;
pub mod validate;

#[cfg(test)]
mod load_tests;

use std::path::PathBuf;

pub use error::{ConfigError, Origin};
pub use load::{load, load_with_env, load_with_stored, CommonArgs, StoredSettings};
pub use logging::init_tracing;
#[cfg(feature = "fred")]
pub use redis_client::fred_config_from_url;
pub use redis_servers::RedisServer;
pub use runtime::worker_threads_from_env;
pub use settings::*;
#[cfg(feature = "mysql")]
pub use stored::{load_matomo, load_matomo_with_env, read_stored, LoadError};

/// The shared data folder (`/work/shared` in development): `MATOMO_SHARED_DIR` if set, else
/// `<workspace root>/../shared`. `None` when it does not exist; tests that need it print why
/// they skip.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("MATOMO_SHARED_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("..")
            .join("shared"),
    };
    dir.is_dir().then_some(dir)
}

/// The workspace root (where `deploy/` and `docs/` live).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}
