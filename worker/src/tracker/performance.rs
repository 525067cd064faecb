//! PagePerformance's `PerformanceDataProcessor`: a request that is not a page view (a ping, an
//! event, a goal…) carrying `pv_id` and `pf_*` timings writes those timings onto the page view
//! with that id in its visit — the first action row whose `idpageview` equals `pv_id` and whose
//! URL is a page URL (type 1), else whose name is a page title (type 4).
//!
//! The hit only queues a [`PerfUpdate`]; [`apply`] resolves them before the batch's rows are
//! written: rows stored by earlier batches are looked up with PHP's query and updated, rows of
//! this batch are changed in memory.

use mysql_async::prelude::Queryable;
use mysql_async::Transaction;

use super::actions::{types, ActionSpec, Kind, PERF};
use super::batch::{PendingAction, ShardCache};
use super::hit::BatchState;
use super::php;
use super::sql::{self, Val};
use super::{BatchError, Tracker};

/// Timings to write onto an earlier page view.
#[derive(Debug, Clone)]
pub struct PerfUpdate {
    /// Visit index in the shard cache.
    pub visit: usize,
    /// The request's `pv_id` as sent.
    pub pv_id: String,
    /// Action rows of the batch queued before the request finished (its own row included).
    pub pending_before: usize,
    /// `time_*` columns with the values to set.
    pub cols: Vec<(&'static str, Val)>,
}

/// The timings a request writes onto an earlier page view: None for page views (they carry
/// their own), without `pv_id`, or without any `pf_*` above -1.
pub fn timings(
    req: &super::request::Request<'_>,
    action: Option<&ActionSpec>,
) -> Option<(String, Vec<(&'static str, Val)>)> {
    if action.is_some_and(|a| a.kind == Kind::Pageview) {
        return None;
    }
    let pv_id = req.str("pv_id");
    if php::empty_str(&pv_id) {
        return None;
    }
    let cols: Vec<(&'static str, Val)> = PERF
        .iter()
        .filter_map(|(param, col)| {
            let v = req.int(param, -1);
            (v > -1).then_some((*col, Val::Int(v)))
        })
        .collect();
    (!cols.is_empty()).then_some((pv_id, cols))
}

/// What `getPageViewId` needs to know about an action row of this batch.
#[derive(Debug, Clone, Default)]
pub struct PageViewKey {
    /// `idpageview` as stored (at most 6 characters).
    pub idpageview: String,
    /// `idaction_url` is a page URL (type 1).
    pub url_is_page: bool,
    /// `idaction_name` is a page title (type 4).
    pub name_is_title: bool,
}

impl PageViewKey {
    /// The key of an action about to be queued.
    pub fn of(spec: &ActionSpec, idpageview: &str) -> PageViewKey {
        let has = |column: &str, kind: u8| {
            spec.lookup(column)
                .is_some_and(|l| l.kind == kind && !l.name.is_empty())
        };
        PageViewKey {
            idpageview: idpageview.to_owned(),
            url_is_page: has("idaction_url", types::PAGE_URL),
            name_is_title: has("idaction_name", types::PAGE_TITLE),
        }
    }
}

/// `idpageview = ?` under the column's collation (case-insensitive, trailing spaces ignored).
fn same_pageview(stored: &str, pv_id: &str) -> bool {
    stored.trim_end_matches(' ').to_lowercase() == pv_id.trim_end_matches(' ').to_lowercase()
}

async fn stored_row(
    t: &Tracker,
    tx: &mut Transaction<'static>,
    idvisit: u64,
    pv_id: &str,
    (column, kind): (&str, u8),
) -> Result<Option<u64>, BatchError> {
    let sql = format!(
        "SELECT l.idlink_va FROM `{}` l LEFT JOIN `{}` a ON l.{column} = a.idaction \
         WHERE l.idvisit = {idvisit} AND l.idpageview = {} AND a.type = {kind} \
         ORDER BY l.idlink_va LIMIT 1",
        t.table("log_link_visit_action"),
        t.table("log_action"),
        {
            let mut quoted = String::new();
            Val::Str(pv_id.to_owned()).render(&mut quoted);
            quoted
        },
    );
    Ok(tx.query_first(sql).await?)
}

fn pending_row(
    pending: &[PendingAction],
    u: &PerfUpdate,
    matches: impl Fn(&PageViewKey) -> bool,
) -> Option<usize> {
    pending[..u.pending_before.min(pending.len())]
        .iter()
        .position(|a| {
            a.visit == u.visit && same_pageview(&a.key.idpageview, &u.pv_id) && matches(&a.key)
        })
}

/// Resolves the batch's timing updates in request order: stored rows get an UPDATE now, rows
/// of this batch are changed before they are inserted. Call before the rows are written.
pub async fn apply(
    t: &Tracker,
    tx: &mut Transaction<'static>,
    cache: &ShardCache,
    st: &mut BatchState,
) -> Result<(), BatchError> {
    let table = t.table("log_link_visit_action");
    for u in std::mem::take(&mut st.perf_updates) {
        let v = cache.visit(u.visit);
        let idvisit = (!v.is_new).then_some(v.idvisit).filter(|id| *id != 0);
        let mut stored = None;
        let mut pending = None;
        for (column, kind) in [
            ("idaction_url", types::PAGE_URL),
            ("idaction_name", types::PAGE_TITLE),
        ] {
            if let Some(idvisit) = idvisit {
                stored = stored_row(t, tx, idvisit, &u.pv_id, (column, kind)).await?;
            }
            if stored.is_none() {
                pending = pending_row(&st.pending, &u, |k| {
                    if kind == types::PAGE_URL {
                        k.url_is_page
                    } else {
                        k.name_is_title
                    }
                });
            }
            if stored.is_some() || pending.is_some() {
                break;
            }
        }
        if let Some(id) = stored {
            tx.query_drop(sql::update_one(&table, "idlink_va", id as i64, &u.cols))
                .await?;
        } else if let Some(i) = pending {
            let row = &mut st.pending[i].cols;
            for (col, val) in &u.cols {
                row.retain(|(c, _)| c != col);
                row.push((col, val.clone()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pageview_ids_compare_like_the_column() {
        assert!(same_pageview("AbC123", "abc123"));
        assert!(same_pageview("abc", "abc  "));
        assert!(!same_pageview("abc123", "abc1234"));
    }
}
