//! Redis plumbing of the engine: connecting, the key names the engine adds next to
//! QueuedTracking's, and the Lua scripts (loaded once, run by SHA, re-sent on `NOSCRIPT`).
//!
//! QueuedTracking's own keys (`trackingQueueV1[_<id>]`, `QueuedTrackingLock<id>`) come from
//! `matomo_wire`; this module only adds the engine's private keys, which never start with
//! either of those names so PHP tooling (`KEYS QueuedTrackingLock*`) does not see them.

use std::time::Duration;

use fred::prelude::*;
use sha1::{Digest as _, Sha1};

/// The dead-letter list of queue `queue_id`: JSON records `{reason, queue, time, entry_base64}`.
pub fn dead_letter_key(prefix: &str, queue_id: u16) -> String {
    format!("{prefix}tierDeadLetter_{queue_id}")
}

/// The id of the last batch of queue `queue_id` that was trimmed (set atomically with the
/// LTRIM), compared with the MySQL progress marker after a crash.
pub fn trimmed_key(prefix: &str, queue_id: u16) -> String {
    format!("{prefix}tierTrimmedBatch_{queue_id}")
}

/// Connects a fred pool from the tier configuration. Fails fast (one error) when Redis is
/// unreachable or refuses the password; reconnects on its own afterwards.
pub async fn connect(config: &tier_config::Config) -> Result<Pool, Error> {
    let redis_config = config.fred_config()?;
    let timeout = config.redis.command_timeout;
    let pool = Builder::from_config(redis_config)
        .with_connection_config(|c| {
            c.connection_timeout = timeout.max(Duration::from_millis(100));
            c.internal_command_timeout = timeout.max(Duration::from_millis(100));
            // The engine retries at its own level with idempotent scripts; a command silently
            // re-sent by the client after a reconnect could otherwise trim twice.
            c.max_command_attempts = 1;
        })
        .with_performance_config(|p| {
            p.default_command_timeout = timeout;
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
        .build_pool(config.redis.pool_size.max(1))?;
    pool.init().await?;
    Ok(pool)
}

/// A Lua script known by its SHA-1, run with EVALSHA and re-sent with EVAL when the server
/// answers `NOSCRIPT` (after a restart or `SCRIPT FLUSH`).
#[derive(Debug, Clone)]
pub struct LuaScript {
    lua: &'static str,
    sha: String,
}

impl LuaScript {
    /// Wraps a script; its SHA-1 is computed locally.
    pub fn new(lua: &'static str) -> Self {
        Self {
            lua,
            sha: hex::encode(Sha1::digest(lua.as_bytes())),
        }
    }

    /// The script's SHA-1 (hex).
    pub fn sha(&self) -> &str {
        &self.sha
    }

    /// `SCRIPT LOAD`s the script (once at start-up; EVALSHA works afterwards).
    pub async fn load(&self, redis: &Pool) -> Result<(), Error> {
        let sha: String = redis.script_load(self.lua).await?;
        if sha != self.sha {
            return Err(Error::new(
                ErrorKind::Unknown,
                format!("SCRIPT LOAD returned {sha}, expected {}", self.sha),
            ));
        }
        Ok(())
    }

    /// Runs the script: EVALSHA, falling back to EVAL on `NOSCRIPT`.
    pub async fn run<R: FromValue>(
        &self,
        redis: &Pool,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> Result<R, Error> {
        match redis
            .evalsha(self.sha.as_str(), keys.clone(), args.clone())
            .await
        {
            Err(e) if e.details().starts_with("NOSCRIPT") => redis.eval(self.lua, keys, args).await,
            other => other,
        }
    }
}

/// Extends a lock only if it still holds our value (QueuedTracking's `expireIfKeyHasValue`).
pub const EXTEND_LUA: &str = r#"if redis.call("GET", KEYS[1]) == ARGV[1] then
    return redis.call("EXPIRE", KEYS[1], ARGV[2])
else
    return 0
end"#;

/// Deletes a lock only if it still holds our value (QueuedTracking's `deleteIfKeyHasValue`).
pub const RELEASE_LUA: &str = r#"if redis.call("GET", KEYS[1]) == ARGV[1] then
    return redis.call("DEL", KEYS[1])
else
    return 0
end"#;

/// Trims a committed batch off the head of a queue, only while we hold the lock, exactly once
/// per batch id, and pushes the batch's dead letters in the same step.
///
/// KEYS: lock, queue, trimmed-batch key, dead-letter list. ARGV: lock value, entries to trim,
/// batch id, dead-letter records…  Returns 1 when trimmed, 2 when that batch id was already
/// trimmed (a re-sent command), 0 when the lock is not ours (nothing changed).
pub const TRIM_LUA: &str = r#"if redis.call("GET", KEYS[1]) ~= ARGV[1] then
    return 0
end
if redis.call("GET", KEYS[3]) == ARGV[3] then
    return 2
end
redis.call("LTRIM", KEYS[2], tonumber(ARGV[2]), -1)
redis.call("SET", KEYS[3], ARGV[3])
for i = 4, #ARGV do
    redis.call("RPUSH", KEYS[4], ARGV[i])
end
return 1"#;

/// Moves one dead letter back to the tail of a queue if it is still the head of the dead-letter
/// list. KEYS: dead-letter list, queue. ARGV: the record, the original entry bytes.
pub const REPLAY_LUA: &str = r#"if redis.call("LINDEX", KEYS[1], 0) ~= ARGV[1] then
    return 0
end
redis.call("LPOP", KEYS[1])
redis.call("RPUSH", KEYS[2], ARGV[2])
return 1"#;

/// The engine's scripts, with their SHAs.
#[derive(Debug, Clone)]
pub struct Scripts {
    /// Compare-and-expire.
    pub extend: LuaScript,
    /// Compare-and-delete.
    pub release: LuaScript,
    /// Compare-lock-then-LTRIM.
    pub trim: LuaScript,
    /// Dead-letter replay.
    pub replay: LuaScript,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            extend: LuaScript::new(EXTEND_LUA),
            release: LuaScript::new(RELEASE_LUA),
            trim: LuaScript::new(TRIM_LUA),
            replay: LuaScript::new(REPLAY_LUA),
        }
    }
}

impl Scripts {
    /// Loads every script into the server's cache.
    pub async fn load_all(&self, redis: &Pool) -> Result<(), Error> {
        for script in [&self.extend, &self.release, &self.trim, &self.replay] {
            script.load(redis).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_keys_do_not_collide_with_queued_tracking_names() {
        for key in [dead_letter_key("", 3), trimmed_key("", 3)] {
            assert!(!key.starts_with(matomo_wire::QUEUE_KEY_BASE), "{key}");
            assert!(!key.starts_with(matomo_wire::LOCK_KEY_BASE), "{key}");
        }
        assert_eq!(dead_letter_key("t:", 0), "t:tierDeadLetter_0");
    }

    #[test]
    fn script_sha_is_sha1_of_the_source() {
        let s = LuaScript::new("return ARGV[1]");
        assert_eq!(s.sha(), "098e0f0d1448c0a81dafe820f66d460eb09263da");
    }
}
