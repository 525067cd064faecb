//! Operator commands with QueuedTracking's names and meaning, as library functions that write
//! to any [`std::io::Write`] (the binary passes stdout; tests pass a buffer).
//!
//! - [`monitor`]: per-queue length, lag, dead letters and locks, Redis memory, processing rate.
//! - [`lock_status`]: the held locks with their TTL; `--unlock KEY` removes one.
//! - [`print_queued`]: the next batch of each queue, decoded.
//! - [`check`]: the `test` command — connectivity, eviction policy, Lua, lock and list primitives.
//! - [`dead_letter`]: list, show, replay and purge dead letters.

pub mod check;
pub mod dead_letter;
pub mod lock_status;
pub mod monitor;
pub mod print_queued;

use fred::prelude::*;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    /// MySQL failed.
    #[error("mysql: {0}")]
    Mysql(#[from] mysql_async::Error),
    /// Writing the output failed.
    #[error("output: {0}")]
    Io(#[from] std::io::Error),
    /// A dead-letter operation failed.
    #[error("{0}")]
    DeadLetter(#[from] crate::engine::deadletter::DeadLetterError),
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
}

/// The queue ids a command covers: one (`--queue-id`) or all.
pub fn queue_ids(
    config: &tier_config::Config,
    queue_id: Option<u16>,
) -> Result<Vec<u16>, CommandError> {
    let n = config.queue.num_queue_workers;
    match queue_id {
        Some(q) if q >= n => Err(CommandError::Usage(format!(
            "--queue-id {q} does not exist: there are {n} queues (0..{}) (setting queue.num_queue_workers)",
            n.saturating_sub(1)
        ))),
        Some(q) => Ok(vec![q]),
        None => Ok((0..n).collect()),
    }
}

/// Redis keys matching `pattern` (KEYS, as QueuedTracking's lock-status does).
pub async fn keys_matching(redis: &Pool, pattern: &str) -> Result<Vec<String>, fred::error::Error> {
    let mut keys: Vec<String> = redis
        .next()
        .custom(fred::cmd!("KEYS"), vec![pattern.to_owned()])
        .await?;
    keys.sort();
    Ok(keys)
}

/// One `INFO` section as key → value pairs.
pub async fn redis_info(
    redis: &Pool,
    section: &str,
) -> Result<Vec<(String, String)>, fred::error::Error> {
    let text: String = redis
        .next()
        .custom(fred::cmd!("INFO"), vec![section.to_owned()])
        .await?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect())
}

/// A value from [`redis_info`] output.
pub fn info_value<'a>(info: &'a [(String, String)], key: &str) -> Option<&'a str> {
    info.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}
