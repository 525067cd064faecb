//! `lock-status`: every held queue lock with its remaining TTL, and `--unlock KEY` to remove a
//! stuck one (QueuedTracking's `queuedtracking:lock-status`).

use std::io::Write;

use fred::prelude::*;

use super::{keys_matching, CommandError};

/// One held lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLock {
    /// The key.
    pub key: String,
    /// Remaining TTL in ms (`None`: no expiry set).
    pub ttl_ms: Option<i64>,
}

/// The locks currently held (`<prefix>QueuedTrackingLock*`).
pub async fn held_locks(redis: &Pool, key_prefix: &str) -> Result<Vec<HeldLock>, CommandError> {
    let pattern = format!("{key_prefix}{}*", matomo_wire::LOCK_KEY_BASE);
    let mut out = Vec::new();
    for key in keys_matching(redis, &pattern).await? {
        let ttl: i64 = redis.pttl(&key).await?;
        match ttl {
            -2 => continue, // expired meanwhile
            -1 => out.push(HeldLock { key, ttl_ms: None }),
            ms => out.push(HeldLock {
                key,
                ttl_ms: Some(ms),
            }),
        }
    }
    Ok(out)
}

/// Prints the held locks; with `unlock`, first deletes that lock if it is held.
pub async fn lock_status(
    redis: &Pool,
    key_prefix: &str,
    unlock: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let held = held_locks(redis, key_prefix).await?;
    if let Some(key) = unlock {
        if held.iter().any(|l| l.key == key) {
            let _: i64 = redis.del(key).await?;
            writeln!(out, "Key {key} unlocked")?;
        } else {
            writeln!(out, "{key} is not or no longer locked")?;
        }
        writeln!(out)?;
    }
    let held = held_locks(redis, key_prefix).await?;
    if held.is_empty() {
        writeln!(out, "No queue is locked.")?;
    }
    for lock in held {
        match lock.ttl_ms {
            Some(ms) => writeln!(out, "\"{}\" is locked for {ms} ms", lock.key)?,
            None => writeln!(out, "\"{}\" is locked without expiry", lock.key)?,
        }
        writeln!(out, "Set option --unlock={} to unlock the queue.", lock.key)?;
        writeln!(out)?;
    }
    Ok(())
}
