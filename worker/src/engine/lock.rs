//! Shard ownership with QueuedTracking-compatible locks, and the heartbeat that keeps them.
//!
//! A lock is the Redis string `QueuedTrackingLock<id>` set with `SET NX EX ttl` to a random
//! value, extended with compare-and-expire and released with compare-and-delete — the same key,
//! value and script semantics as the PHP plugin, so PHP and Rust workers exclude each other.
//! While we hold a lock a heartbeat task renews it every `ttl / 3`; once a renewal finds the
//! value changed (or renewals fail for longer than the TTL) the lock is marked lost and the
//! batch pipeline rolls back instead of committing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::*;
use rand::Rng as _;
use tokio::task::JoinHandle;

use super::redis::Scripts;

/// One held shard lock.
#[derive(Debug)]
pub struct ShardLock {
    redis: Pool,
    scripts: Scripts,
    queue_id: u16,
    key: String,
    value: String,
    ttl_secs: i64,
    lost: AtomicBool,
}

impl ShardLock {
    /// Tries to take the lock of `queue_id` (`SET key value NX EX ttl`). `None` when another
    /// worker (Rust or PHP) holds it.
    pub async fn try_acquire(
        redis: &Pool,
        scripts: &Scripts,
        key_prefix: &str,
        queue_id: u16,
        ttl: Duration,
    ) -> Result<Option<ShardLock>, Error> {
        let key = matomo_wire::lock_key(key_prefix, queue_id);
        let value = random_lock_value();
        let ttl_secs = ttl_seconds(ttl);
        let set: Option<String> = redis
            .set(
                &key,
                value.as_str(),
                Some(Expiration::EX(ttl_secs)),
                Some(SetOptions::NX),
                false,
            )
            .await?;
        Ok(set.map(|_| ShardLock {
            redis: redis.clone(),
            scripts: scripts.clone(),
            queue_id,
            key,
            value,
            ttl_secs,
            lost: AtomicBool::new(false),
        }))
    }

    /// The queue this lock guards.
    pub fn queue_id(&self) -> u16 {
        self.queue_id
    }

    /// The Redis key of the lock.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Our random value (what the compare scripts compare with).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The TTL set on every renewal.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_secs.unsigned_abs())
    }

    /// True once a renewal found the lock gone or taken over.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// Marks the lock lost (the pipeline then rolls back).
    pub fn mark_lost(&self) {
        self.lost.store(true, Ordering::Release);
    }

    /// Renews the TTL if the lock still holds our value. `Ok(false)` (and the lock marked lost)
    /// when it does not.
    pub async fn extend(&self) -> Result<bool, Error> {
        if self.is_lost() {
            return Ok(false);
        }
        let keys = vec![self.key.clone()];
        let args = vec![Value::from(self.value.as_str()), Value::from(self.ttl_secs)];
        let extended: i64 = self.scripts.extend.run(&self.redis, keys, args).await?;
        if extended == 0 {
            self.mark_lost();
        }
        Ok(extended != 0)
    }

    /// Deletes the lock if it still holds our value. `Ok(false)` when it was no longer ours.
    pub async fn release(&self) -> Result<bool, Error> {
        let keys = vec![self.key.clone()];
        let args = vec![Value::from(self.value.as_str())];
        let deleted: i64 = self.scripts.release.run(&self.redis, keys, args).await?;
        self.mark_lost();
        Ok(deleted != 0)
    }
}

/// `SET EX` takes whole seconds; never less than one.
fn ttl_seconds(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX)
}

/// A random lock value, 16 hex characters (PHP uses a 12-character unique id; the value is
/// opaque to both sides).
fn random_lock_value() -> String {
    let bytes: [u8; 8] = rand::rng().random();
    hex::encode(bytes)
}

/// The background task renewing a lock.
#[derive(Debug)]
pub struct Heartbeat {
    handle: JoinHandle<()>,
}

impl Heartbeat {
    /// Starts renewing `lock` every `ttl / 3`. The task marks the lock lost when a renewal finds
    /// another value, or when no renewal succeeded for a whole TTL (the key may have expired).
    /// `on_renew` is told the outcome of each attempt (for metrics).
    pub fn start(lock: Arc<ShardLock>, on_renew: impl Fn(bool) + Send + 'static) -> Heartbeat {
        let handle = tokio::spawn(async move {
            let ttl = lock.ttl();
            let interval = (ttl / 3).max(Duration::from_millis(200));
            let mut last_ok = Instant::now();
            loop {
                tokio::time::sleep(interval).await;
                if lock.is_lost() {
                    return;
                }
                match lock.extend().await {
                    Ok(true) => {
                        last_ok = Instant::now();
                        on_renew(true);
                    }
                    Ok(false) => {
                        tracing::warn!(
                            queue = lock.queue_id(),
                            "shard lock taken over; giving the queue up"
                        );
                        on_renew(false);
                        return;
                    }
                    Err(e) => {
                        if last_ok.elapsed() >= ttl {
                            tracing::warn!(queue = lock.queue_id(), error = %e, "could not renew the shard lock within its TTL; treating it as lost");
                            lock.mark_lost();
                            on_renew(false);
                            return;
                        }
                        tracing::debug!(queue = lock.queue_id(), error = %e, "lock renewal failed; retrying");
                    }
                }
            }
        });
        Heartbeat { handle }
    }

    /// Stops the renewals.
    pub fn stop(self) {
        self.handle.abort();
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_at_least_one_second() {
        assert_eq!(ttl_seconds(Duration::from_millis(10)), 1);
        assert_eq!(ttl_seconds(Duration::from_secs(60)), 60);
    }

    #[test]
    fn lock_values_are_random_hex() {
        let a = random_lock_value();
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, random_lock_value());
    }
}
