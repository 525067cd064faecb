//! `monitor`: the state of the queues, refreshed every `interval` (QueuedTracking's
//! `queuedtracking:monitor`): entries and age of the oldest entry per queue, dead letters,
//! which queues are locked, Redis memory, and the rate at which the queues shrink.

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::prelude::*;
use tokio_util::sync::CancellationToken;

use super::lock_status::held_locks;
use super::{info_value, queue_ids, redis_info, CommandError};
use crate::engine::redis::dead_letter_key;

/// One queue's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueState {
    /// Queue id.
    pub queue: u16,
    /// Entries waiting.
    pub entries: u64,
    /// Age in seconds of the oldest entry (by the time ingest stamped on it).
    pub oldest_age_secs: Option<i64>,
    /// Dead letters.
    pub dead_letters: u64,
    /// Remaining lock TTL in ms when locked.
    pub lock_ttl_ms: Option<i64>,
}

/// A snapshot of all queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Per queue.
    pub queues: Vec<QueueState>,
    /// Locks held (all of them, even for queues beyond `num_queue_workers`).
    pub locks: usize,
    /// `used_memory_human`.
    pub used_memory: String,
    /// `used_memory_peak_human`.
    pub used_memory_peak: String,
}

impl Snapshot {
    /// Entries waiting in all queues.
    pub fn total(&self) -> u64 {
        self.queues.iter().map(|q| q.entries).sum()
    }
}

/// Reads one snapshot.
pub async fn snapshot(
    redis: &Pool,
    config: &tier_config::Config,
    queue_id: Option<u16>,
) -> Result<Snapshot, CommandError> {
    let prefix = &config.queue.key_prefix;
    let locks = held_locks(redis, prefix).await?;
    let now = chrono::Utc::now().timestamp();
    let mut queues = Vec::new();
    for q in queue_ids(config, queue_id)? {
        let key = matomo_wire::queue_key(prefix, q);
        let entries: u64 = redis.llen(&key).await?;
        let oldest_age_secs = if entries > 0 {
            let head: Option<Bytes> = redis.lindex(&key, 0).await?;
            head.and_then(|h| matomo_wire::decode(&h).ok())
                .map(|s| (now - s.time).max(0))
        } else {
            None
        };
        let dead_letters: u64 = redis.llen(dead_letter_key(prefix, q)).await?;
        let lock_key = matomo_wire::lock_key(prefix, q);
        let lock_ttl_ms = locks
            .iter()
            .find(|l| l.key == lock_key)
            .map(|l| l.ttl_ms.unwrap_or(-1));
        queues.push(QueueState {
            queue: q,
            entries,
            oldest_age_secs,
            dead_letters,
            lock_ttl_ms,
        });
    }
    let memory = redis_info(redis, "memory").await?;
    Ok(Snapshot {
        queues,
        locks: locks.len(),
        used_memory: info_value(&memory, "used_memory_human")
            .unwrap_or("unknown")
            .to_owned(),
        used_memory_peak: info_value(&memory, "used_memory_peak_human")
            .unwrap_or("unknown")
            .to_owned(),
    })
}

/// Writes a snapshot; `rate` is the entries per second the queues shrank by since the last one.
pub fn write_snapshot(
    out: &mut dyn Write,
    snap: &Snapshot,
    rate: Option<f64>,
) -> std::io::Result<()> {
    writeln!(out, "{}", "-".repeat(64))?;
    writeln!(
        out,
        "{:>7} | {:>12} | {:>10} | {:>8} | lock",
        "queue", "entries", "oldest", "dead"
    )?;
    writeln!(out, "{}", "-".repeat(64))?;
    for q in &snap.queues {
        let age = q
            .oldest_age_secs
            .map_or_else(|| "-".to_owned(), |a| format!("{a} s"));
        let lock = match q.lock_ttl_ms {
            Some(ms) if ms >= 0 => format!("locked ({ms} ms)"),
            Some(_) => "locked (no expiry)".to_owned(),
            None => String::new(),
        };
        writeln!(
            out,
            "{:>7} | {:>12} | {:>10} | {:>8} | {lock}",
            q.queue, q.entries, age, q.dead_letters
        )?;
    }
    writeln!(out, "{}", "-".repeat(64))?;
    let rate = rate.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.1}/s"));
    writeln!(
        out,
        "{} queues | {} entries | drained {rate} | {} used memory ({} peak) | {} workers active",
        snap.queues.len(),
        snap.total(),
        snap.used_memory,
        snap.used_memory_peak,
        snap.locks
    )?;
    Ok(())
}

/// Prints a snapshot every `interval`, `iterations` times (`None`: until `stop`).
pub async fn monitor(
    redis: &Pool,
    config: &tier_config::Config,
    queue_id: Option<u16>,
    iterations: Option<u64>,
    interval: Duration,
    stop: CancellationToken,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    writeln!(
        out,
        "Up to {} workers (queues); a batch is {} entries; remainders wait at most {:.1} s.",
        config.queue.num_queue_workers,
        config.queue.num_requests_to_process,
        config.worker.max_batch_wait.as_secs_f64()
    )?;
    let mut last: Option<(u64, Instant)> = None;
    let mut done = 0u64;
    loop {
        let snap = snapshot(redis, config, queue_id).await?;
        let now = Instant::now();
        let rate = last.map(|(total, at)| {
            let secs = now.duration_since(at).as_secs_f64().max(1e-3);
            (total as f64 - snap.total() as f64) / secs
        });
        write_snapshot(out, &snap, rate)?;
        out.flush()?;
        last = Some((snap.total(), now));
        done += 1;
        if iterations.is_some_and(|n| done >= n) {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = stop.cancelled() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_table_shows_lag_locks_and_totals() {
        let snap = Snapshot {
            queues: vec![
                QueueState {
                    queue: 0,
                    entries: 12,
                    oldest_age_secs: Some(3),
                    dead_letters: 1,
                    lock_ttl_ms: Some(59000),
                },
                QueueState {
                    queue: 1,
                    entries: 0,
                    oldest_age_secs: None,
                    dead_letters: 0,
                    lock_ttl_ms: None,
                },
            ],
            locks: 1,
            used_memory: "1.2M".into(),
            used_memory_peak: "2.0M".into(),
        };
        let mut out = Vec::new();
        write_snapshot(&mut out, &snap, Some(25.0)).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.contains("locked (59000 ms)"), "{text}");
        assert!(text.contains("3 s"), "{text}");
        assert!(text.contains("2 queues | 12 entries | drained 25.0/s | 1.2M used memory (2.0M peak) | 1 workers active"), "{text}");
    }
}
