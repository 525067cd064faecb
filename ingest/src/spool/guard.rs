//! The Redis guard: polls `INFO memory` and the queue lengths every second and keeps Redis
//! under the configured budget with hysteresis — above a high watermark new hits go to the
//! spool (or are refused with 503 when no spool is configured), and replay resumes only once
//! every watched value is back under its low watermark. It also warns when Redis may evict
//! keys (`maxmemory-policy` other than `noeviction`), which would silently drop queue lists or
//! worker locks.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::{Builder, ClientLike as _, ListInterface as _, ReconnectPolicy};
use fred::types::InfoKind;
use tier_config::Config;
use tokio_util::sync::CancellationToken;

use super::metrics::SpoolMetrics;
use super::sink::Gate;
use crate::queue::redis::fred_config;

/// How often the guard polls.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// The budget: 0 disables a watermark pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Budget {
    /// `ingest.redis_memory_high_bytes`.
    pub memory_high: u64,
    /// `ingest.redis_memory_low_bytes`.
    pub memory_low: u64,
    /// `ingest.redis_queue_high_entries`.
    pub queue_high: u64,
    /// `ingest.redis_queue_low_entries`.
    pub queue_low: u64,
}

impl Budget {
    /// The budget configured in `config`.
    pub fn from_config(config: &Config) -> Self {
        let i = &config.ingest;
        // An unset low watermark means "the high one" (no hysteresis), not "0", which would
        // never be reached again.
        let low = |low: u64, high: u64| if low == 0 { high } else { low };
        Self {
            memory_high: i.redis_memory_high_bytes,
            memory_low: low(i.redis_memory_low_bytes, i.redis_memory_high_bytes),
            queue_high: i.redis_queue_high_entries,
            queue_low: low(i.redis_queue_low_entries, i.redis_queue_high_entries),
        }
    }

    /// Whether any watermark is set.
    pub fn enabled(&self) -> bool {
        self.memory_high > 0 || self.queue_high > 0
    }

    /// The next state from the current one and a poll's values (hysteresis).
    pub fn over(&self, was_over: bool, used_memory: u64, queued: u64) -> bool {
        let memory_on = self.memory_high > 0;
        let queue_on = self.queue_high > 0;
        if was_over {
            let memory_low = !memory_on || used_memory <= self.memory_low;
            let queue_low = !queue_on || queued <= self.queue_low;
            !(memory_low && queue_low)
        } else {
            (memory_on && used_memory >= self.memory_high)
                || (queue_on && queued >= self.queue_high)
        }
    }
}

/// The fields of `INFO memory` the guard reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemoryInfo {
    /// `used_memory`.
    pub used_memory: u64,
    /// `maxmemory` (0: no limit).
    pub maxmemory: u64,
    /// `maxmemory_policy`.
    pub policy: String,
}

/// Parses the text of `INFO memory`.
pub fn parse_info(text: &str) -> MemoryInfo {
    let mut info = MemoryInfo::default();
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once(':') else {
            continue;
        };
        match key {
            "used_memory" => info.used_memory = value.parse().unwrap_or(0),
            "maxmemory" => info.maxmemory = value.parse().unwrap_or(0),
            "maxmemory_policy" => info.policy = value.to_owned(),
            _ => {}
        }
    }
    info
}

/// Runs the guard until `shutdown`. Polls only when a watermark is set; the eviction-policy
/// warning is given once in any case.
pub async fn run(
    config: Config,
    gate: Arc<Gate>,
    metrics: SpoolMetrics,
    shutdown: CancellationToken,
) {
    let budget = Budget::from_config(&config);
    let timeout = config.redis.command_timeout;
    let built = fred_config(&config.redis).and_then(|fred| {
        Builder::from_config(fred)
            .with_performance_config(|p| p.default_command_timeout = timeout)
            .with_connection_config(|c| c.connection_timeout = timeout)
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
            .build()
            .map_err(|e| e.details().to_owned())
    });
    let client = match built {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "redis guard: cannot build a client; guard disabled");
            return;
        }
    };
    if let Err(error) = client.init().await {
        tracing::warn!(%error, "redis guard: cannot connect; the guard retries every second");
    }
    let keys: Vec<String> = (0..config.queue.num_queue_workers.max(1))
        .map(|id| matomo_wire::queue_key(&config.queue.key_prefix, id))
        .collect();
    let mut warned = false;
    let mut tick = tokio::time::interval(POLL_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let info = match client.info::<String>(Some(InfoKind::Memory)).await {
            Ok(text) => parse_info(&text),
            Err(error) => {
                tracing::debug!(%error, "redis guard: INFO memory failed");
                continue;
            }
        };
        if !warned {
            warned = true;
            if info.policy != "noeviction" {
                tracing::warn!(
                    policy = %info.policy,
                    "Redis maxmemory-policy is not noeviction: under memory pressure Redis may \
                     evict queue lists or worker locks and lose hits; set maxmemory-policy \
                     noeviction"
                );
            }
        }
        if !budget.enabled() {
            continue;
        }
        let queued = if budget.queue_high > 0 {
            match queued_entries(&client, &keys).await {
                Ok(n) => n,
                Err(error) => {
                    tracing::debug!(%error, "redis guard: LLEN failed");
                    continue;
                }
            }
        } else {
            0
        };
        let was = gate.over_budget.load(Ordering::Relaxed);
        let over = budget.over(was, info.used_memory, queued);
        if over != was {
            gate.over_budget.store(over, Ordering::Relaxed);
            if over {
                tracing::warn!(
                    used_memory = info.used_memory,
                    queued,
                    "Redis over budget: new hits go to the spool"
                );
            } else {
                tracing::info!(
                    used_memory = info.used_memory,
                    queued,
                    "Redis back under the low watermark: replay resumes"
                );
            }
        }
        metrics.guard(over, info.used_memory, queued);
    }
    let _ = client.quit().await;
}

async fn queued_entries(
    client: &fred::prelude::Client,
    keys: &[String],
) -> Result<u64, fred::error::Error> {
    let pipeline = client.pipeline();
    for key in keys {
        let () = pipeline.llen(key.as_str()).await?;
    }
    let lengths: Vec<u64> = pipeline.all().await?;
    Ok(lengths.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hysteresis_between_the_watermarks() {
        let b = Budget {
            memory_high: 100,
            memory_low: 50,
            ..Budget::default()
        };
        assert!(!b.over(false, 99, 0));
        assert!(b.over(false, 100, 0));
        assert!(b.over(true, 70, 0), "stays over between the watermarks");
        assert!(!b.over(true, 50, 0));
        assert!(!b.over(false, 70, 0), "stays under between the watermarks");
    }

    #[test]
    fn both_budgets_must_be_low_to_resume() {
        let b = Budget {
            memory_high: 100,
            memory_low: 50,
            queue_high: 10,
            queue_low: 5,
        };
        assert!(b.over(false, 0, 10));
        assert!(b.over(true, 0, 6));
        assert!(b.over(true, 60, 0));
        assert!(!b.over(true, 50, 5));
        assert!(!Budget::default().enabled());
        assert!(!Budget::default().over(false, u64::MAX, u64::MAX));
    }

    #[test]
    fn an_unset_low_watermark_is_the_high_one() {
        let mut config = Config::default();
        config.ingest.redis_memory_high_bytes = 100;
        let b = Budget::from_config(&config);
        assert_eq!(b.memory_low, 100);
        assert!(b.over(false, 100, 0));
        assert!(!b.over(true, 100, 0), "resumes at the high watermark");
    }

    #[test]
    fn info_memory_is_parsed() {
        let text = "# Memory\r\nused_memory:1234\r\nused_memory_human:1.21K\r\nmaxmemory:0\r\nmaxmemory_policy:allkeys-lru\r\n";
        let info = parse_info(text);
        assert_eq!(
            info,
            MemoryInfo {
                used_memory: 1234,
                maxmemory: 0,
                policy: "allkeys-lru".into()
            }
        );
    }
}
