//! Reconciliation at the end of a run: hits the targets accepted against rows MySQL holds.
//!
//! Per hit kind, what an accepted hit must leave behind: page views, site searches, events,
//! downloads, outlinks and content hits exactly one `log_link_visit_action` row tagged with the
//! hit's `pv_id`; an ecommerce order on an ecommerce site exactly one `log_conversion` row whose
//! `idorder` is the hit's order id. Manual goals (at most one conversion per visit unless the
//! goal allows several) and pings (which only update the visit) have no exact expectation and
//! are reported as not reconciled. A hit with no row is lost, extra rows are duplicates, rows of
//! hits the target did not acknowledge (timeouts after a durable write) are unexpected.

use std::collections::{BTreeMap, HashMap};

use hdrhistogram::Histogram;
use mysql_async::prelude::Queryable;
use serde::Serialize;

use crate::ledger::Ledger;
use crate::probe::ProbeError;
use crate::stats::{latency_histogram, percentile_curve, summarize, LatencySummary};
use crate::tag::RunTag;
use crate::visitor::HitKind;

/// Counts for one hit kind.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct KindCounts {
    /// Hits generated.
    pub generated: u64,
    /// Hits acknowledged with 2xx.
    pub accepted: u64,
    /// Rows expected for them.
    pub expected: u64,
    /// Hits with at least one row.
    pub stored: u64,
    /// Accepted hits with no row.
    pub lost: u64,
    /// Rows beyond the first of a hit.
    pub duplicated: u64,
    /// Rows of hits that were not acknowledged.
    pub unexpected: u64,
}

/// The `reconciliation` object of the JSON result.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Reconciliation {
    /// `complete`, or `skipped` when MySQL was not reachable or not probed.
    pub status: String,
    /// Hits the targets acknowledged with 2xx (all kinds).
    pub accepted: u64,
    /// Rows expected from the accepted hits of reconciled kinds.
    pub expected: Option<u64>,
    /// Accepted hits of reconciled kinds whose row is there.
    pub stored: Option<u64>,
    /// Accepted hits of reconciled kinds with no row.
    pub lost: Option<u64>,
    /// Rows beyond one per hit.
    pub duplicated: Option<u64>,
    /// Hits the targets refused as invalid (400, or counted `invalid` in a bulk answer).
    pub invalid: u64,
    /// Rows of hits whose request failed or timed out (stored although not acknowledged).
    pub unexpected: Option<u64>,
    /// Accepted hits without an exact row expectation (goals, pings).
    pub not_reconciled: u64,
    /// Per hit kind.
    pub by_kind: BTreeMap<String, KindCounts>,
    /// Accept-to-row lag of action hits (first sighting by the row probe; resolution = the
    /// sample interval).
    pub lag: Option<LatencySummary>,
    /// HDR percentile curve of the lag: (percentile, ms).
    pub lag_curve: Vec<(f64, f64)>,
    /// What the numbers mean or why they are missing.
    pub note: String,
}

impl Reconciliation {
    /// The object when no database check was possible.
    pub fn skipped(accepted: u64, invalid: u64, why: &str) -> Self {
        Self {
            status: "skipped".into(),
            accepted,
            expected: None,
            stored: None,
            lost: None,
            duplicated: None,
            invalid,
            unexpected: None,
            not_reconciled: 0,
            by_kind: BTreeMap::new(),
            lag: None,
            lag_curve: Vec::new(),
            note: why.to_owned(),
        }
    }
}

/// Rows found per hit: action rows by `pv_id`, order rows by `idorder`.
#[derive(Debug, Default)]
pub struct FoundRows {
    /// Rows per hit number.
    pub per_seq: HashMap<u64, u64>,
    /// Sites with ecommerce enabled (`None`: the `site` table could not be read).
    pub ecommerce_sites: Option<Vec<u32>>,
}

/// Reads the rows of this run from MySQL.
pub async fn find_rows(
    pool: &mysql_async::Pool,
    table_prefix: &str,
    tag: &RunTag,
    start_watermark: u64,
) -> Result<FoundRows, ProbeError> {
    let mut conn = pool.get_conn().await?;
    let mut found = FoundRows::default();
    // CAST … AS BINARY: idpageview's collation is case-insensitive, tags are not.
    let actions: Vec<(Vec<u8>, u64)> = conn
        .exec(
            format!(
                "SELECT CAST(idpageview AS BINARY) AS pv, COUNT(*) FROM `{table_prefix}log_link_visit_action` \
                 WHERE idlink_va > ? AND CAST(idpageview AS BINARY) LIKE ? GROUP BY pv"
            ),
            (start_watermark, format!("{}%", tag.short())),
        )
        .await?;
    for (pv, n) in actions {
        if let Some(seq) = std::str::from_utf8(&pv)
            .ok()
            .and_then(|p| tag.seq_of_pv_id(p))
        {
            *found.per_seq.entry(seq).or_default() += n;
        }
    }
    let orders: Vec<(String, u64)> = conn
        .exec(
            format!("SELECT idorder, COUNT(*) FROM `{table_prefix}log_conversion` WHERE idorder LIKE ? GROUP BY idorder"),
            (format!("{}%", tag.order_id_prefix()),),
        )
        .await?;
    for (idorder, n) in orders {
        if let Some(seq) = tag.seq_of_order_id(&idorder) {
            *found.per_seq.entry(seq).or_default() += n;
        }
    }
    found.ecommerce_sites = conn
        .query::<u32, _>(format!(
            "SELECT idsite FROM `{table_prefix}site` WHERE ecommerce = 1"
        ))
        .await
        .ok();
    Ok(found)
}

/// Compares the ledger with the rows found.
pub fn reconcile(
    ledger: &Ledger,
    found: &FoundRows,
    accepted: u64,
    invalid: u64,
) -> Reconciliation {
    let mut by_kind: BTreeMap<HitKind, KindCounts> = BTreeMap::new();
    let mut lag: Histogram<u64> = latency_histogram();
    let mut not_reconciled = 0;
    for seq in 0..ledger.generated() {
        let Some(kind) = ledger.kind(seq) else {
            continue;
        };
        let c = by_kind.entry(kind).or_default();
        c.generated += 1;
        let acknowledged = ledger.accepted_at(seq);
        let rows = found.per_seq.get(&seq).copied().unwrap_or(0);
        let expects_row = match kind {
            k if k.writes_action_row() => true,
            HitKind::Order => found
                .ecommerce_sites
                .as_ref()
                .is_none_or(|s| s.contains(&ledger.site(seq))),
            _ => false,
        };
        if acknowledged.is_some() {
            c.accepted += 1;
        }
        if !expects_row {
            if acknowledged.is_some() {
                not_reconciled += 1;
            }
            continue;
        }
        match acknowledged {
            Some(at) => {
                c.expected += 1;
                if rows == 0 {
                    c.lost += 1;
                } else {
                    c.stored += 1;
                    c.duplicated += rows - 1;
                }
                if let (true, Some(seen)) = (kind.writes_action_row(), ledger.seen_at(seq)) {
                    let us = (seen.saturating_sub(at).as_micros() as u64).max(1);
                    let _ = lag.record(us);
                }
            }
            None => c.unexpected += rows,
        }
    }
    let sum = |f: fn(&KindCounts) -> u64| by_kind.values().map(f).sum::<u64>();
    let lost = sum(|c| c.lost);
    let duplicated = sum(|c| c.duplicated);
    Reconciliation {
        status: "complete".into(),
        accepted,
        expected: Some(sum(|c| c.expected)),
        stored: Some(sum(|c| c.stored)),
        lost: Some(lost),
        duplicated: Some(duplicated),
        invalid,
        unexpected: Some(sum(|c| c.unexpected)),
        not_reconciled,
        by_kind: by_kind.into_iter().map(|(k, v)| (k.name().to_owned(), v)).collect(),
        lag: (!lag.is_empty()).then(|| summarize(&lag)),
        lag_curve: percentile_curve(&lag),
        note: format!(
            "{} lost and {} duplicated among hits with an exact row expectation; goals and pings are counted as not reconciled",
            lost, duplicated
        ),
    }
}
