//! Probes of the stack behind the targets, sampled during the run: queue depth per shard from
//! Redis (`LLEN` of each `trackingQueueV1[_n]` list) and new rows in MySQL's
//! `log_link_visit_action`, whose `idpageview` tags map them back to hits (their first sighting
//! gives the accept-to-row lag).
//!
//! Rows are read by primary key above a cursor, so each sample costs a short index range scan.
//! The cursor stays below the oldest id not seen yet (within a look-back window), because a
//! worker's transaction may commit lower ids after another's higher ones.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fred::prelude::{Builder, ClientLike, KeysInterface, ListInterface};
use mysql_async::prelude::Queryable;
use serde::Serialize;
use tokio::sync::watch;

use crate::ledger::Ledger;
use crate::runner::LiveGauges;
use crate::tag::RunTag;

/// Ids below the highest seen one that are still waited for.
const LOOKBACK_IDS: u64 = 20_000;
/// Rows read per query.
const PAGE: u64 = 20_000;

/// A probe that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Redis refused or failed.
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    /// MySQL refused or failed.
    #[error("mysql: {0}")]
    Mysql(#[from] mysql_async::Error),
    /// No answer in time.
    #[error("{0}: no answer within {1:?}")]
    Timeout(&'static str, Duration),
}

/// Queue depth per shard.
pub struct QueueProbe {
    client: fred::clients::Client,
    keys: Vec<String>,
}

impl QueueProbe {
    /// Connects to Redis (`config`: from the tier's settings, or a URL through
    /// `tier_config::fred_config_from_url`) and watches `num_queues` lists under `key_prefix`.
    pub async fn connect(
        config: fred::prelude::Config,
        key_prefix: &str,
        num_queues: u16,
    ) -> Result<Self, ProbeError> {
        let client = Builder::from_config(config)
            .with_connection_config(|c| c.connection_timeout = Duration::from_secs(3))
            .build()?;
        let wait = Duration::from_secs(5);
        tokio::time::timeout(wait, client.init())
            .await
            .map_err(|_| ProbeError::Timeout("redis", wait))??;
        let keys = (0..num_queues.max(1))
            .map(|i| matomo_wire::queue_key(key_prefix, i))
            .collect();
        Ok(Self { client, keys })
    }

    /// The watched list names.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// Entries in each queue, in shard order.
    pub async fn depths(&self) -> Result<Vec<u64>, ProbeError> {
        let pipeline = self.client.pipeline();
        for key in &self.keys {
            let () = pipeline.llen(key.as_str()).await?;
        }
        Ok(pipeline.all().await?)
    }

    /// Deletes the watched lists (tests and `build-then-drain --flush-queues`).
    pub async fn delete_all(&self) -> Result<(), ProbeError> {
        for key in &self.keys {
            let _: i64 = self.client.del(key.as_str()).await?;
        }
        Ok(())
    }

    /// The client, for tests that push entries.
    pub fn client(&self) -> &fred::clients::Client {
        &self.client
    }
}

/// New action rows, with their tags.
pub struct RowProbe {
    pool: mysql_async::Pool,
    table: String,
    cursor: u64,
    seen: BTreeSet<u64>,
    /// Highest `idlink_va` when the probe started; rows above it are this run's candidates.
    pub start_watermark: u64,
}

/// What one poll of the row probe found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RowPoll {
    /// New rows of any origin.
    pub rows: u64,
    /// New rows carrying one of this run's tags.
    pub tagged: u64,
}

impl RowProbe {
    /// Starts watching `<prefix>log_link_visit_action` from its current highest id.
    pub async fn start(pool: mysql_async::Pool, table_prefix: &str) -> Result<Self, ProbeError> {
        let table = format!("{table_prefix}log_link_visit_action");
        let wait = Duration::from_secs(10);
        let mut conn = tokio::time::timeout(wait, pool.get_conn())
            .await
            .map_err(|_| ProbeError::Timeout("mysql", wait))??;
        let max: Option<u64> = conn
            .query_first(format!("SELECT COALESCE(MAX(idlink_va), 0) FROM `{table}`"))
            .await?;
        let start_watermark = max.unwrap_or(0);
        Ok(Self {
            pool,
            table,
            cursor: start_watermark,
            seen: BTreeSet::new(),
            start_watermark,
        })
    }

    /// Reads rows above the cursor, marks the first sighting of each tagged hit in `ledger`.
    pub async fn poll(
        &mut self,
        tag: &RunTag,
        ledger: &Ledger,
        now: Duration,
    ) -> Result<RowPoll, ProbeError> {
        let mut conn = self.pool.get_conn().await?;
        let mut found = RowPoll::default();
        let mut from = self.cursor;
        loop {
            let rows: Vec<(u64, Option<String>)> = conn
                .exec(
                    format!("SELECT idlink_va, idpageview FROM `{}` WHERE idlink_va > ? ORDER BY idlink_va LIMIT {PAGE}", self.table),
                    (from,),
                )
                .await?;
            let n = rows.len() as u64;
            for (id, pv) in rows {
                from = id;
                if !self.seen.insert(id) {
                    continue;
                }
                found.rows += 1;
                if let Some(seq) = pv.as_deref().and_then(|p| tag.seq_of_pv_id(p)) {
                    if seq < ledger.generated() {
                        ledger.record_seen(seq, now);
                        found.tagged += 1;
                    }
                }
            }
            if n < PAGE {
                break;
            }
        }
        self.advance_cursor();
        Ok(found)
    }

    fn advance_cursor(&mut self) {
        let Some(&max_seen) = self.seen.last() else {
            return;
        };
        let mut expect = self.cursor + 1;
        for id in self.seen.range(self.cursor + 1..) {
            if *id != expect {
                break;
            }
            expect += 1;
        }
        self.cursor = (expect - 1)
            .max(max_seen.saturating_sub(LOOKBACK_IDS))
            .max(self.cursor);
        self.seen = self.seen.split_off(&(self.cursor + 1));
    }
}

/// One sample of the stack.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the start of the run.
    pub t: f64,
    /// Entries per queue (empty when Redis is not probed).
    pub depths: Vec<u64>,
    /// New rows of any origin since the previous sample.
    pub rows: u64,
    /// New rows of this run since the previous sample.
    pub tagged_rows: u64,
}

/// Samples taken so far, shared with the sampler task.
pub type Samples = Arc<Mutex<Vec<Sample>>>;

/// The probes of one run.
pub struct Probes {
    /// Redis, if probed.
    pub queue: Option<QueueProbe>,
    /// MySQL, if probed.
    pub rows: Option<RowProbe>,
}

/// What the sampler shares with the rest of the run.
pub struct SamplerContext {
    /// The run's tag, to recognise its rows.
    pub tag: RunTag,
    /// Where first sightings are recorded.
    pub ledger: Arc<Ledger>,
    /// Figures for the progress line.
    pub gauges: Arc<LiveGauges>,
    /// Where samples go.
    pub samples: Samples,
    /// The run's time origin.
    pub start: Instant,
    /// Time between samples.
    pub interval: Duration,
}

/// Samples the probes every `ctx.interval` until `stop` turns true, then takes a last sample.
/// Returns the probes for the final reconciliation.
pub async fn sample_loop(
    mut probes: Probes,
    ctx: SamplerContext,
    mut stop: watch::Receiver<bool>,
) -> Probes {
    let SamplerContext {
        tag,
        ledger,
        gauges,
        samples,
        start,
        interval,
    } = ctx;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.changed() => true,
        };
        let now = start.elapsed();
        let mut sample = Sample {
            t: now.as_secs_f64(),
            depths: Vec::new(),
            rows: 0,
            tagged_rows: 0,
        };
        if let Some(q) = &probes.queue {
            match q.depths().await {
                Ok(d) => {
                    LiveGauges::set(&gauges.queue_depth, d.iter().sum());
                    sample.depths = d;
                }
                Err(e) => tracing::warn!("queue depth sample failed: {e}"),
            }
        }
        if let Some(r) = &mut probes.rows {
            match r.poll(&tag, &ledger, now).await {
                Ok(p) => {
                    let secs = last.elapsed().as_secs_f64().max(1e-3);
                    LiveGauges::set(
                        &gauges.rows_per_sec,
                        (p.tagged as f64 / secs).round() as u64,
                    );
                    sample.rows = p.rows;
                    sample.tagged_rows = p.tagged;
                }
                Err(e) => tracing::warn!("row sample failed: {e}"),
            }
        }
        last = Instant::now();
        if let Ok(mut s) = samples.lock() {
            s.push(sample);
        }
        if stopping || *stop.borrow() {
            return probes;
        }
    }
}
