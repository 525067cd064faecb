//! One batch, in four phases: read every request ([`super::prepare`]); resolve all action names
//! and prefetch all unknown visitors with one query each; run the hits in queue order against
//! in-memory visit state ([`super::hit`]); write everything with multi-row INSERTs, the final
//! state of visits stored earlier with one multi-row `UPDATE … JOIN` per 500 visits, and the
//! few remaining single-row UPDATEs (carts, time spent) in one multi-statement round trip.
//!
//! The [`ShardCache`] keeps visits (and their cart items) between batches while the engine holds
//! the shard lock; the engine throws it away after a rollback or a lost lock, because it then
//! holds state that was never committed.

use std::collections::{HashMap, HashSet};

use mysql_async::prelude::Queryable;
use mysql_async::Transaction;

use super::ahead::Ahead;
use super::goals::ItemRow;
use super::hit::{self, BatchState, HitCtx, HitError};
use super::log_action::{self, ActionKey};
use super::prepare::{self, local_day, Prepared, SaltBook};
use super::referrers::ReferrerDetector;
use super::request::Request;
use super::settings::Snapshot;
use super::sql::{self, Val};
use super::visit::{self, LinkRef, Visit};
use super::{BatchError, BatchOutcome, SetOutcome, Tracker};

type Key = (u32, [u8; 8]);

/// Visits known to this shard while its lock is held.
#[derive(Debug, Default)]
pub struct ShardCache {
    visits: Vec<Visit>,
    items: HashMap<usize, Vec<ItemRow>>,
    by_vid: HashMap<Key, Vec<usize>>,
    by_cfg: HashMap<Key, Vec<usize>>,
    by_idvisit: HashMap<u64, usize>,
    loaded_vid: HashSet<Key>,
    loaded_cfg: HashSet<Key>,
    /// Per visit, its row as the database holds it (loaded or last written in this cache's
    /// life), so a write sends only the columns that changed.
    stored: HashMap<usize, Vec<Val>>,
}

/// A visit's row values ([`visit::COLUMNS`] order, first [`visit::NCOLS`]); a link to an
/// action not written yet is NULL.
fn row_of(v: &Visit) -> Vec<Val> {
    v.columns(|l| match l {
        LinkRef::Id(id) => Some(id),
        LinkRef::Pending(_) => None,
    })
}

impl ShardCache {
    /// Adds a visit (a loaded row already known keeps its in-memory version).
    pub(crate) fn add(&mut self, v: Visit) -> usize {
        if v.idvisit != 0 {
            if let Some(&i) = self.by_idvisit.get(&v.idvisit) {
                return i;
            }
        }
        let i = self.visits.len();
        self.by_vid
            .entry((v.idsite, v.idvisitor))
            .or_default()
            .push(i);
        self.by_cfg
            .entry((v.idsite, v.config_id))
            .or_default()
            .push(i);
        if v.idvisit != 0 {
            self.by_idvisit.insert(v.idvisit, i);
            self.stored.insert(i, row_of(&v));
        }
        self.visits.push(v);
        i
    }

    /// The visit at `i`.
    pub(crate) fn visit(&self, i: usize) -> &Visit {
        &self.visits[i]
    }

    /// The visit at `i`, mutable.
    pub(crate) fn visit_mut(&mut self, i: usize) -> &mut Visit {
        &mut self.visits[i]
    }

    /// Re-files visit `i` after its idvisitor changed.
    pub(crate) fn reindex_vid(&mut self, i: usize, old: Key) {
        if let Some(l) = self.by_vid.get_mut(&old) {
            l.retain(|x| *x != i);
        }
        let v = &self.visits[i];
        self.by_vid
            .entry((v.idsite, v.idvisitor))
            .or_default()
            .push(i);
    }

    fn best(&self, list: Option<&Vec<usize>>, ok: impl Fn(&Visit) -> bool) -> Option<usize> {
        list?
            .iter()
            .copied()
            .filter(|i| ok(&self.visits[*i]))
            .max_by_key(|i| (self.visits[*i].last, *i))
    }

    /// Latest visit of a visitor id matching `ok`.
    pub(crate) fn best_by_vid(&self, key: Key, ok: impl Fn(&Visit) -> bool) -> Option<usize> {
        self.best(self.by_vid.get(&key), ok)
    }

    /// Latest visit of a config id matching `ok`.
    pub(crate) fn best_by_cfg(&self, key: Key, ok: impl Fn(&Visit) -> bool) -> Option<usize> {
        self.best(self.by_cfg.get(&key), ok)
    }

    /// Whether the cart items of visit `i` are known.
    pub(crate) fn items_loaded(&self, i: usize) -> bool {
        self.items.contains_key(&i)
    }

    /// Sets the cart items of visit `i`.
    pub(crate) fn set_items(&mut self, i: usize, rows: Vec<ItemRow>) {
        self.items.insert(i, rows);
    }

    /// The cart items of visit `i`.
    pub(crate) fn items_mut(&mut self, i: usize) -> &mut Vec<ItemRow> {
        self.items.entry(i).or_default()
    }

    /// Number of visits held.
    pub fn len(&self) -> usize {
        self.visits.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.visits.is_empty()
    }
}

/// An action row waiting for the end of the batch.
pub struct PendingAction {
    /// Visit index in the shard cache.
    pub visit: usize,
    /// Columns (idvisit added at write time).
    pub cols: Vec<(&'static str, Val)>,
    /// What a later request's timings look the row up by.
    pub key: super::performance::PageViewKey,
}

/// A conversion row waiting for the end of the batch.
pub struct PendingConversion {
    /// Visit index in the shard cache.
    pub visit: usize,
    /// Index of the action it converted on, if any.
    pub action: Option<usize>,
    /// Columns (idvisit and idlink_va added at write time).
    pub cols: Vec<(&'static str, Val)>,
    /// The order id of an ecommerce order.
    pub idorder: Option<String>,
}

/// Visits cached per shard before the cache is dropped and rebuilt from MySQL.
const MAX_CACHED_VISITS: usize = 200_000;

fn render(v: &Val) -> String {
    let mut s = String::new();
    v.render(&mut s);
    s
}

/// Savepoint taken at the start of a batch, so that a pass PHP would abort can be undone
/// without touching what the engine wrote before calling us.
const SAVEPOINT: &str = "matomo_tracker_batch";

/// The outcome of one pass over a batch.
enum Pass {
    /// Rows written.
    Done(BatchOutcome),
    /// Request `failed` of set `set` throws in PHP: QueuedTracking rolls the batch back and
    /// retries it with that set cut to its first `keep` requests ("remove the first one that
    /// failed and all following").
    Failed {
        set: usize,
        keep: usize,
        reason: String,
    },
}

/// A `tracking_failure` row (`Failures::logFailure`).
#[derive(Debug, Clone)]
pub struct Failure {
    idsite: i64,
    idfailure: u8,
    request_url: String,
}

impl Failure {
    fn new(req: &Request<'_>, idfailure: u8) -> Failure {
        let token = req.token_auth().unwrap_or_default();
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in req.params.iter() {
            let v = super::php::raw_string(v).unwrap_or_default();
            let looks_like_token =
                (29..=36).contains(&v.chars().count()) && v.chars().all(|c| c.is_ascii_hexdigit());
            let hidden = ["token_auth", "token", "tokenauth", "token__auth"].contains(&k.as_str())
                || (!token.is_empty() && v == token)
                || looks_like_token;
            q.append_pair(k, if hidden { "__TOKEN_AUTH__" } else { &v });
        }
        Failure {
            idsite: i64::from(req.idsite()),
            idfailure,
            request_url: q.finish(),
        }
    }
}

/// Failed authentications are remembered even when the pass that met them is undone: the row
/// is what Matomo's tracker records for such a request (see docs/compatibility.md).
async fn write_failures(
    t: &Tracker,
    tx: &mut Transaction<'static>,
    failures: &[Failure],
) -> Result<(), BatchError> {
    let mut seen = HashSet::new();
    let now = sql::datetime(chrono::Utc::now().timestamp());
    for f in failures {
        if !seen.insert((f.idsite, f.idfailure)) {
            continue;
        }
        tx.query_drop(format!(
            "INSERT INTO `{}` (idsite, idfailure, date_first_occurred, request_url) VALUES ({}, {}, '{now}', {}) \
             ON DUPLICATE KEY UPDATE idsite = idsite",
            t.table("tracking_failure"),
            f.idsite,
            f.idfailure,
            render(&Val::Str(f.request_url.clone()))
        ))
        .await?;
    }
    Ok(())
}

/// Runs one batch: passes until one completes, each failed pass undone with a savepoint.
pub async fn run(
    t: &Tracker,
    snap: &Snapshot,
    tx: &mut Transaction<'static>,
    cache: &mut ShardCache,
    sets: &[matomo_wire::RequestSet],
    ahead: Option<Ahead>,
) -> Result<BatchOutcome, BatchError> {
    // Only a first pass may use a read-ahead: a later one keeps fewer requests of some set.
    let mut ahead = ahead.filter(|a| a.fits(snap, sets));
    if cache.len() > MAX_CACHED_VISITS {
        *cache = ShardCache::default();
    }
    let mut keep: HashMap<usize, usize> = HashMap::new();
    let mut failures: Vec<Failure> = Vec::new();
    tx.query_drop(format!("SAVEPOINT {SAVEPOINT}")).await?;
    loop {
        let start = PassStart {
            keep: &keep,
            ahead: ahead.take(),
        };
        match pass(t, snap, tx, cache, sets, start, &mut failures).await? {
            Pass::Done(outcome) => {
                write_failures(t, tx, &failures).await?;
                // No RELEASE: the savepoint ends with the transaction, and a later batch in the
                // same transaction replaces it by name; a round trip per batch saved.
                return Ok(outcome);
            }
            Pass::Failed {
                set,
                keep: n,
                reason,
            } => {
                tracing::info!(set, kept = n, %reason, "request throws in PHP: batch re-run without it and the rest of its set");
                tx.query_drop(format!("ROLLBACK TO SAVEPOINT {SAVEPOINT}"))
                    .await?;
                // The cache holds state of the undone pass.
                *cache = ShardCache::default();
                keep.insert(set, n);
            }
        }
    }
}

/// What a pass starts from besides the batch.
struct PassStart<'k> {
    /// Sets cut short (set → requests kept) after a request PHP throws for.
    keep: &'k HashMap<usize, usize>,
    /// The batch's read-ahead (first pass only).
    ahead: Option<Ahead>,
}

async fn pass(
    t: &Tracker,
    snap: &Snapshot,
    tx: &mut Transaction<'static>,
    cache: &mut ShardCache,
    sets: &[matomo_wire::RequestSet],
    start: PassStart<'_>,
    failures: &mut Vec<Failure>,
) -> Result<Pass, BatchError> {
    let PassStart { keep, mut ahead } = start;
    let mut outcome = BatchOutcome {
        sets: vec![SetOutcome::default(); sets.len()],
    };
    // Every request is read once (Request.php's constructor, PrivacyManager's manipulation)
    // and that one reading serves all phases; `None`: unknown site, skipped.
    let mut reqs = t.requests(snap, sets);
    let salts = load_salts(t, snap, tx, &mut reqs).await?;
    let matchers = prepare::url_matchers(snap, &t.campaign);

    // Phase 1: read every request and collect what must be looked up.
    let mut prepared: Vec<Prepared> = Vec::new();
    let mut wanted: Vec<(ActionKey, Option<i64>)> = Vec::new();
    let mut orders: Vec<(u32, String)> = Vec::new();
    for (si, set_reqs) in reqs.iter_mut().enumerate() {
        // Requests tracked without an exception so far (QueuedTracking's `$this->count`,
        // which an unknown site does not increment).
        let mut count = 0usize;
        let limit = keep.get(&si).copied().unwrap_or(usize::MAX);
        for (pi, slot) in set_reqs.iter_mut().enumerate() {
            if pi >= limit {
                outcome.sets[si].skipped += 1;
                continue;
            }
            let Some(req) = slot.as_mut() else {
                outcome.sets[si].skipped += 1;
                continue;
            };
            let mut ids: Vec<u8> = std::mem::take(&mut req.failures);
            let read = ahead
                .as_mut()
                .and_then(|a| a.reads.get_mut(si)?.get_mut(pi)?.take());
            let prepared_one = match read {
                Some(read) => {
                    // The reading ahead made the same calls on its own copy of the request
                    // (each failure kind is recorded once per request).
                    for id in read.failures {
                        if !ids.contains(&id) {
                            ids.push(id);
                        }
                    }
                    read.prepared
                }
                None => {
                    let p = prepare::prepare(t, snap, &salts, req, (si, pi), count, matchers);
                    ids.append(&mut req.failures);
                    p
                }
            };
            failures.extend(ids.into_iter().map(|id| Failure::new(req, id)));
            match prepared_one {
                Ok(Some(p)) => {
                    if let Some(spec) = &p.spec {
                        wanted.extend(
                            spec.lookups
                                .iter()
                                .map(|l| ((l.kind, l.name.clone()), l.prefix)),
                        );
                    }
                    if req.int("idgoal", -1) == 0 {
                        collect_item_names(req, &mut wanted);
                        let id = req.str("ec_id");
                        if !super::php::empty_str(&id) {
                            orders.push((p.idsite, id));
                        }
                    }
                    prepared.push(p);
                }
                Ok(None) => outcome.sets[si].skipped += 1,
                Err(e) => {
                    return Ok(Pass::Failed {
                        set: si,
                        keep: count,
                        reason: e.to_string(),
                    });
                }
            }
            count += 1;
        }
    }

    // Phase 2: resolve action names, prefetch visitors and already stored orders.
    let ids = log_action::resolve(tx, &t.table("log_action"), &t.actions, &wanted).await?;
    prefetch(t, tx, cache, &prepared).await?;
    let mut st = BatchState {
        orders: stored_orders(t, tx, &orders).await?,
        ..BatchState::default()
    };

    // Phase 3: run the hits in order.
    let site_urls = snap.site_url_index();
    let ctx = HitCtx {
        t,
        snap,
        ids: &ids,
        matchers,
        detector: ReferrerDetector {
            lists: &t.lists,
            site_urls,
            campaign: &t.campaign,
        },
    };
    for p in &prepared {
        let Some(req) = reqs[p.set][p.params].as_mut() else {
            continue;
        };
        match hit::handle(&ctx, tx, cache, &mut st, req, p).await {
            Ok(true) => outcome.sets[p.set].recorded += 1,
            Ok(false) => outcome.sets[p.set].skipped += 1,
            Err(HitError::Batch(e)) => return Err(e),
            Err(HitError::Invalid(reason)) => {
                return Ok(Pass::Failed {
                    set: p.set,
                    keep: p.count_before,
                    reason,
                });
            }
        }
    }

    // Phase 4: write.
    super::performance::apply(t, tx, cache, &mut st).await?;
    write(t, tx, cache, &st).await?;
    remember_invalidations(t, tx, &prepared, snap).await?;
    Ok(Pass::Done(outcome))
}

/// Salts for the (site, day) pairs of this batch that the snapshot does not have — the days
/// of its hits, and the four days around today that Matomo creates whenever it caches a site —
/// read from `option`, else created the way `FingerprintSalt::getSalt` does
/// (`{"value":…,"time":…}`), inserted with INSERT IGNORE and read back, so concurrent workers
/// agree on one value.
async fn load_salts(
    t: &Tracker,
    snap: &Snapshot,
    tx: &mut Transaction<'static>,
    reqs: &mut [Vec<Option<Request<'_>>>],
) -> Result<SaltBook, BatchError> {
    let tr = &t.config.matomo.tracker;
    let mut book = SaltBook::default();
    let day_salts_used =
        tr.create_new_visit_after_midnight && !tr.enable_fingerprinting_across_websites;
    let mut need: Vec<(u32, String)> = Vec::new();
    let mut seen: HashSet<(u32, String)> = HashSet::new();
    let mut add = |key: (u32, String), book: &mut SaltBook| {
        if !seen.insert(key.clone()) {
            return;
        }
        if let Some(salt) = t.salts.get(&key) {
            book.known.insert(key, salt);
        } else if let Some(salt) = snap.fingerprint_salt(key.0, &key.1) {
            t.salts.insert(key.clone(), salt.clone());
            book.known.insert(key, salt);
        } else {
            need.push(key);
        }
    };
    let wall = chrono::Utc::now().timestamp();
    let mut sites_seen: HashSet<u32> = HashSet::new();
    let mut days_seen: HashSet<(u32, i64)> = HashSet::new();
    for req in reqs.iter_mut().flatten().flatten() {
        let ts = req.timestamp().unwrap_or(req.now);
        let (idsite, zone) = (req.idsite(), req.site.zone);
        if day_salts_used && days_seen.insert((idsite, zone.day_number(ts))) {
            add((idsite, local_day(&zone, ts)), &mut book);
        }
        // SitesManager::setTrackerCacheWebsite creates the salts of tomorrow, today,
        // yesterday and the day before (wall clock, site time zone) for every site it
        // builds a cache entry for.
        if sites_seen.insert(idsite) {
            for days in [1, 0, -1, -2] {
                add((idsite, local_day(&zone, wall + days * 86_400)), &mut book);
            }
        }
    }
    if need.is_empty() {
        book.resolve(snap, &seen);
        return Ok(book);
    }
    let table = t.table("option");
    let names: Vec<String> = need
        .iter()
        .map(|(s, d)| render(&Val::Str(format!("fingerprint_salt_{s}_{d}"))))
        .collect();
    let select = format!(
        "SELECT option_name, option_value FROM `{table}` WHERE option_name IN ({})",
        names.join(",")
    );
    let read = |rows: Vec<(String, String)>, book: &mut SaltBook| {
        for (name, value) in rows {
            let v: serde_json::Value = serde_json::from_str(&value).unwrap_or_default();
            let salt = v
                .get("value")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if let Some(key) = need
                .iter()
                .find(|(s, d)| name == format!("fingerprint_salt_{s}_{d}"))
            {
                book.known.insert(key.clone(), salt);
            }
        }
    };
    let rows: Vec<(String, String)> = tx.query(&select).await?;
    read(rows, &mut book);
    // Committed before this batch began: safe to share. Salts this batch creates are cached
    // once the next batch reads them back committed.
    for key in &need {
        if let Some(salt) = book.known.get(key) {
            t.salts.insert(key.clone(), salt.clone());
        }
    }
    let missing: Vec<&(u32, String)> = need
        .iter()
        .filter(|k| !book.known.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        let now = chrono::Utc::now().timestamp();
        for (idsite, day) in missing {
            let json = format!(
                "{{\"value\":\"{}\",\"time\":{now}}}",
                prepare::random_string(32)
            );
            tx.query_drop(format!(
                "INSERT IGNORE INTO `{table}` (option_name, option_value, autoload) VALUES ({}, {}, 0)",
                render(&Val::Str(format!("fingerprint_salt_{idsite}_{day}"))),
                render(&Val::Str(json))
            ))
            .await?;
        }
        let rows: Vec<(String, String)> = tx.query(&select).await?;
        read(rows, &mut book);
    }
    book.resolve(snap, &seen);
    Ok(book)
}

fn collect_item_names(req: &Request<'_>, wanted: &mut Vec<(ActionKey, Option<i64>)>) {
    use super::actions::types;
    for it in super::goals::parse_items(req).unwrap_or_default() {
        wanted.push(((types::SKU, it.sku.clone()), None));
        wanted.push(((types::PRODUCT_NAME, it.name.clone()), None));
        for c in it.categories {
            wanted.push(((types::CATEGORY, c), None));
        }
    }
}

async fn stored_orders(
    t: &Tracker,
    tx: &mut Transaction<'static>,
    orders: &[(u32, String)],
) -> Result<HashSet<(u32, String)>, BatchError> {
    let mut out = HashSet::new();
    if orders.is_empty() {
        return Ok(out);
    }
    // A row constructor IN list: one range per order on `unique_idsite_idorder`, the same rows
    // as `(idsite = … AND idorder = …) OR …` for less planning.
    let pairs: Vec<String> = orders
        .iter()
        .map(|(s, o)| format!("({s},{})", render(&Val::Str(o.clone()))))
        .collect();
    let rows: Vec<(u32, String)> = tx
        .query(format!(
            "SELECT idsite, idorder FROM `{}` WHERE (idsite, idorder) IN ({})",
            t.table("log_conversion"),
            pairs.join(",")
        ))
        .await?;
    out.extend(rows);
    Ok(out)
}

/// The visitors of the batch not yet in the cache: the latest visit per (idsite, idvisitor)
/// and per (idsite, config_id) that ended by the batch's last hit (plus the visit length), as
/// `VisitorRecognizer` would find them. Per site, one index-only range query per 500 ids
/// (`idvisitor IN (…)`, `config_id IN (…)`) returns every candidate visit and the latest is
/// picked here — a tenth of the server's work of one `ORDER BY … LIMIT 1` subquery per
/// visitor, each planned on its own. Among visits ending in the same second the one created
/// last wins (the order a backward index scan gives).
async fn prefetch(
    t: &Tracker,
    tx: &mut Transaction<'static>,
    cache: &mut ShardCache,
    prepared: &[Prepared],
) -> Result<(), BatchError> {
    let ahead = t.config.matomo.tracker.visit_standard_length as i64;
    let cols = Visit::select_list();
    let table = t.table("log_visit");
    let max_ts = sql::datetime(prepared.iter().map(|p| p.ts).max().unwrap_or(0) + ahead);
    let mut seen_v: HashSet<Key> = HashSet::new();
    let mut seen_c: HashSet<Key> = HashSet::new();
    // (column, idsite) → ids to look up, in first-seen order.
    type Lookups = Vec<((&'static str, u32), Vec<[u8; 8]>)>;
    let mut wanted: Lookups = Vec::new();
    let mut want = |column: &'static str, (idsite, id): Key| match wanted
        .iter_mut()
        .find(|(k, _)| *k == (column, idsite))
    {
        Some((_, ids)) => ids.push(id),
        None => wanted.push(((column, idsite), vec![id])),
    };
    for p in prepared {
        if let Some(vid) = p.visitor_id {
            let k = (p.idsite, vid);
            if !cache.loaded_vid.contains(&k) && seen_v.insert(k) {
                want("idvisitor", k);
            }
        }
        let k = (p.idsite, p.config_id);
        if !cache.loaded_cfg.contains(&k) && seen_c.insert(k) {
            want("config_id", k);
        }
    }
    let mut ids: Vec<u64> = Vec::new();
    for ((column, idsite), keys) in &wanted {
        for chunk in keys.chunks(500) {
            let mut list = String::with_capacity(chunk.len() * 20);
            for (i, id) in chunk.iter().enumerate() {
                if i > 0 {
                    list.push(',');
                }
                Val::Bin(id.to_vec()).render(&mut list);
            }
            let found: Vec<(Vec<u8>, u64, i64)> = tx
                .query(format!(
                    "SELECT `{column}`, idvisit, TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', visit_last_action_time) \
                     FROM `{table}` WHERE idsite = {idsite} AND `{column}` IN ({list}) \
                     AND visit_last_action_time <= '{max_ts}'"
                ))
                .await?;
            let mut latest: HashMap<Vec<u8>, (i64, u64)> = HashMap::new();
            for (key, idvisit, last) in found {
                let e = latest.entry(key).or_insert((last, idvisit));
                if (last, idvisit) > *e {
                    *e = (last, idvisit);
                }
            }
            ids.extend(
                latest
                    .into_values()
                    .map(|(_, id)| id)
                    .filter(|id| !cache.by_idvisit.contains_key(id)),
            );
        }
    }
    ids.sort_unstable();
    ids.dedup();
    for chunk in ids.chunks(500) {
        let list: Vec<String> = chunk.iter().map(u64::to_string).collect();
        let rows: Vec<mysql_async::Row> = tx
            .query(format!(
                "SELECT {cols} FROM `{table}` WHERE idvisit IN ({})",
                list.join(",")
            ))
            .await?;
        for r in rows {
            cache.add(Visit::from_row(&r));
        }
    }
    cache.loaded_vid.extend(seen_v);
    cache.loaded_cfg.extend(seen_c);
    Ok(())
}

/// A row to insert: column names with borrowed values.
type RowRef<'a> = Vec<(&'static str, &'a Val)>;

/// Whether `row` has exactly the columns `names` (the names are the same `'static` strings
/// nearly always, so the pointers are compared before the bytes).
fn same_columns(names: &[&str], row: &[(&'static str, &Val)]) -> bool {
    names.len() == row.len()
        && names
            .iter()
            .zip(row)
            .all(|(n, (c, _))| std::ptr::eq(*n, *c) || n == c)
}

/// Inserts rows in their order, as multi-row statements of up to 500 rows (one statement per
/// row when the server does not hand out consecutive auto-increment ids); returns each row's id.
///
/// Rows may set different columns (a `time_spent`, an event's columns, a dimension). The
/// statement names every column any row sets and gives a row `DEFAULT` for one it does not set,
/// which stores what leaving the column out would. Keeping one statement in row order keeps the
/// auto-increment ids in the order Matomo gives them: one INSERT per request, in request order.
async fn insert_in_order(
    tx: &mut Transaction<'static>,
    table: &str,
    ignore: bool,
    rows: &[RowRef<'_>],
    consecutive: bool,
) -> Result<Vec<u64>, BatchError> {
    let mut ids = vec![0u64; rows.len()];
    let step = if consecutive { 500 } else { 1 };
    for (start, chunk) in (0..rows.len()).step_by(step).zip(rows.chunks(step)) {
        let names = column_union(chunk);
        let values = chunk.iter().map(|row| row_values(&names, row));
        tx.query_drop(sql::multi_insert(table, ignore, &names, values))
            .await?;
        let first = tx.last_insert_id().unwrap_or(0);
        for (k, id) in ids[start..start + chunk.len()].iter_mut().enumerate() {
            *id = first + k as u64;
        }
    }
    Ok(ids)
}

/// Every column any of `rows` sets, in the order they first appear.
fn column_union(rows: &[RowRef<'_>]) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for row in rows {
        // Nearly always the same columns, or a prefix of them (a `time_spent` comes last).
        if row.len() <= names.len() && same_columns(&names[..row.len()], row) {
            continue;
        }
        for (column, _) in row {
            if !names
                .iter()
                .any(|n| std::ptr::eq(*n, *column) || n == column)
            {
                names.push(column);
            }
        }
    }
    names
}

/// `row`'s value of each of `names`, `DEFAULT` for a column it does not set. Read as the
/// statement is rendered: nothing is collected per row.
fn row_values<'a, 'v>(
    names: &'a [&str],
    row: &'a [(&'static str, &'v Val)],
) -> impl Iterator<Item = &'v Val> + 'a {
    static DEFAULT: Val = Val::Default;
    // Nearly always the same columns, or a prefix of them.
    let prefix = row.len() <= names.len() && same_columns(&names[..row.len()], row);
    names.iter().enumerate().map(move |(k, n)| {
        let found = if prefix {
            row.get(k)
        } else {
            row.iter().find(|(c, _)| std::ptr::eq(*n, *c) || n == c)
        };
        found.map_or(&DEFAULT, |(_, v)| *v)
    })
}

async fn run_statements(tx: &mut Transaction<'static>, stmts: &[String]) -> Result<(), BatchError> {
    for chunk in stmts.chunks(100) {
        tx.query_drop(chunk.join(";\n")).await?;
    }
    Ok(())
}

/// Phase 4: new visits, actions, conversions, items, then every touched visit's final state.
async fn write(
    t: &Tracker,
    tx: &mut Transaction<'static>,
    cache: &mut ShardCache,
    st: &BatchState,
) -> Result<(), BatchError> {
    let mut seen: HashSet<usize> = HashSet::new();
    let uniq: Vec<usize> = st
        .touched
        .iter()
        .copied()
        .filter(|i| seen.insert(*i))
        .collect();
    let new_visits: Vec<usize> = uniq
        .iter()
        .copied()
        .filter(|i| cache.visit(*i).is_new)
        .collect();
    if !new_visits.is_empty() {
        // A link to an action is unknown yet (NULL); set once the actions are written.
        let values: Vec<Vec<Val>> = new_visits
            .iter()
            .map(|i| cache.visit(*i).columns(|_| None))
            .collect();
        let rows: Vec<RowRef<'_>> = values
            .iter()
            .map(|v| {
                visit::COLUMNS[..visit::NCOLS]
                    .iter()
                    .copied()
                    .zip(v)
                    .collect()
            })
            .collect();
        let ids = insert_in_order(
            tx,
            &t.table("log_visit"),
            false,
            &rows,
            t.consecutive_autoinc,
        )
        .await?;
        for (k, i) in new_visits.iter().enumerate() {
            let v = cache.visit_mut(*i);
            v.idvisit = ids[k];
            v.is_new = false;
            cache.by_idvisit.insert(ids[k], *i);
            // A visit this cache created has no cart items but those it writes itself: a
            // later ecommerce request of the visit needs no SELECT to learn that.
            cache.items.entry(*i).or_default();
        }
    }
    let inserted: HashSet<usize> = new_visits.iter().copied().collect();
    let idvisit = |cache: &ShardCache, i: usize| Val::Int(cache.visit(i).idvisit as i64);
    let action_visits: Vec<Val> = st.pending.iter().map(|a| idvisit(cache, a.visit)).collect();
    let action_rows: Vec<RowRef<'_>> = st
        .pending
        .iter()
        .zip(&action_visits)
        .map(|(a, idv)| {
            std::iter::once(("idvisit", idv))
                .chain(a.cols.iter().map(|(c, v)| (*c, v)))
                .collect()
        })
        .collect();
    let action_ids = insert_in_order(
        tx,
        &t.table("log_link_visit_action"),
        false,
        &action_rows,
        t.consecutive_autoinc,
    )
    .await?;
    if !st.conversions.is_empty() {
        let links: Vec<[Val; 2]> = st
            .conversions
            .iter()
            .map(|c| {
                [
                    idvisit(cache, c.visit),
                    c.action
                        .map_or(Val::Null, |a| Val::Int(action_ids[a] as i64)),
                ]
            })
            .collect();
        let rows: Vec<RowRef<'_>> = st
            .conversions
            .iter()
            .zip(&links)
            .map(|(c, [idv, link])| {
                [("idvisit", idv), ("idlink_va", link)]
                    .into_iter()
                    .chain(c.cols.iter().map(|(c, v)| (*c, v)))
                    .collect()
            })
            .collect();
        insert_in_order(
            tx,
            &t.table("log_conversion"),
            true,
            &rows,
            t.consecutive_autoinc,
        )
        .await?;
    }
    let mut stmts: Vec<String> = Vec::new();
    let conv_table = t.table("log_conversion");
    for (idv, cols) in &st.cart_updates {
        let mut sql = sql::update_one(&conv_table, "idvisit", *idv as i64, cols);
        sql.push_str(" AND idgoal = -1 AND buster = 0");
        stmts.push(sql);
    }
    write_items(t, tx, cache, st).await?;
    let table = t.table("log_visit");
    let mut existing: Vec<usize> = Vec::new();
    for &i in &uniq {
        let v = cache.visit_mut(i);
        if let Some(LinkRef::Pending(a)) = v.last_idlink_va {
            v.last_idlink_va = action_ids.get(a).map(|id| LinkRef::Id(*id));
        }
        v.dirty = false;
        if !inserted.contains(&i) {
            existing.push(i);
            continue;
        }
        // Inserted above with its final state; only the link to an action of this batch was
        // unknown then.
        if let Some(LinkRef::Id(id)) = v.last_idlink_va {
            stmts.push(sql::update_one(
                &table,
                "idvisit",
                v.idvisit as i64,
                &[("last_idlink_va", Val::Int(id as i64))],
            ));
        }
        let row = row_of(cache.visit(i));
        cache.stored.insert(i, row);
    }
    update_existing_visits(tx, &table, cache, &existing).await?;
    let lva = t.table("log_link_visit_action");
    for (id, secs) in &st.time_spent_updates {
        stmts.push(sql::update_one(
            &lva,
            "idlink_va",
            *id as i64,
            &[("time_spent", Val::Int(*secs))],
        ));
    }
    run_statements(tx, &stmts).await
}

/// Writes the final state of visits stored before this batch with one multi-row
/// `UPDATE … JOIN (rows) …` per chunk ([`sql::multi_update_join`]) instead of one `UPDATE` per
/// visit. A visit deleted meanwhile (GDPR tools, log purges) has no row to join and stays
/// deleted, as PHP's `UPDATE … WHERE idvisit = ?` leaves it. Only the columns that changed in
/// some visit of the chunk are sent (against the row the cache last loaded or wrote); the
/// columns PHP never changes on an existing visit (site, config id, IP, first action time)
/// never are. Measured against the portable alternatives on replayed bench batches (server CPU
/// per statement): an upsert `INSERT … ON DUPLICATE KEY UPDATE` costs ~17 % more (and would need
/// a guard against resurrecting deleted visits), single-row UPDATEs in one multi-statement round
/// trip ~3×, smaller chunks and a `STRAIGHT_JOIN` form no less; most of the cost is InnoDB
/// moving `visit_last_action_time` in its three indexes (docs/compatibility.md, session 6).
async fn update_existing_visits(
    tx: &mut Transaction<'static>,
    table: &str,
    cache: &mut ShardCache,
    visits: &[usize],
) -> Result<(), BatchError> {
    const CHUNK: usize = 500;
    let fixed = [
        "idsite",
        "config_id",
        "location_ip",
        "visit_first_action_time",
    ];
    let columns = &visit::COLUMNS[..visit::NCOLS];
    for chunk in visits.chunks(CHUNK) {
        let rows: Vec<(usize, Vec<Val>)> =
            chunk.iter().map(|&i| (i, row_of(cache.visit(i)))).collect();
        // One pass over the rows: which columns differ from the stored row in any visit.
        let mut differs = vec![false; columns.len()];
        for (i, row) in &rows {
            match cache.stored.get(i) {
                None => differs.iter_mut().for_each(|d| *d = true),
                Some(old) => {
                    for (k, d) in differs.iter_mut().enumerate() {
                        *d = *d || old.get(k) != row.get(k);
                    }
                }
            }
        }
        let changed: Vec<usize> = (0..columns.len())
            .filter(|&k| differs[k] && !fixed.contains(&columns[k]))
            .collect();
        if changed.is_empty() {
            continue;
        }
        let names: Vec<&str> = std::iter::once("idvisit")
            .chain(changed.iter().map(|&k| columns[k]))
            .collect();
        let values: Vec<Vec<Val>> = rows
            .iter()
            .map(|(i, row)| {
                std::iter::once(Val::Int(cache.visit(*i).idvisit as i64))
                    .chain(changed.iter().map(|&k| row[k].clone()))
                    .collect()
            })
            .collect();
        tx.query_drop(sql::multi_update_join(table, &names, &values))
            .await?;
        for (i, row) in rows {
            cache.stored.insert(i, row);
        }
    }
    Ok(())
}

async fn write_items(
    t: &Tracker,
    tx: &mut Transaction<'static>,
    cache: &mut ShardCache,
    st: &BatchState,
) -> Result<(), BatchError> {
    let table = t.table("log_conversion_item");
    let mut inserts: Vec<Vec<(&'static str, Val)>> = Vec::new();
    let mut stmts: Vec<String> = Vec::new();
    for &vi in &st.item_visits {
        let v = cache.visit(vi);
        let (idvisit, idsite) = (v.idvisit, v.idsite);
        for row in cache.items_mut(vi).iter_mut().filter(|r| r.dirty) {
            let cols: Vec<(&'static str, Val)> = vec![
                ("idsite", Val::Int(i64::from(idsite))),
                ("idvisitor", Val::Bin(row.idvisitor.to_vec())),
                ("server_time", Val::Time(row.server_time)),
                ("idvisit", Val::Int(idvisit as i64)),
                ("idorder", Val::Str(row.idorder.clone())),
                ("idaction_sku", Val::Int(row.ids[0] as i64)),
                ("idaction_name", Val::Int(row.ids[1] as i64)),
                ("idaction_category", Val::Int(row.ids[2] as i64)),
                ("idaction_category2", Val::Int(row.ids[3] as i64)),
                ("idaction_category3", Val::Int(row.ids[4] as i64)),
                ("idaction_category4", Val::Int(row.ids[5] as i64)),
                ("idaction_category5", Val::Int(row.ids[6] as i64)),
                ("price", Val::Float(row.price)),
                ("quantity", Val::Int(row.quantity)),
                ("deleted", Val::Int(row.deleted)),
            ];
            match &row.stored_idorder {
                None => inserts.push(cols),
                Some(old) => {
                    let mut sql = sql::update_one(&table, "idvisit", idvisit as i64, &cols);
                    sql.push_str(&format!(
                        " AND idorder = {} AND idaction_sku = {}",
                        render(&Val::Str(old.clone())),
                        row.ids[0]
                    ));
                    stmts.push(sql);
                }
            }
            row.stored_idorder = Some(row.idorder.clone());
            row.dirty = false;
        }
    }
    run_statements(tx, &stmts).await?;
    if !inserts.is_empty() {
        let rows: Vec<RowRef<'_>> = inserts
            .iter()
            .map(|r| r.iter().map(|(c, v)| (*c, v)).collect())
            .collect();
        insert_in_order(tx, &table, true, &rows, true).await?;
    }
    Ok(())
}

/// Past-dated hits: `<rnd4>_report_to_invalidate_<idsite>_<day>_<pid>` options
/// (`ArchiveInvalidator::rememberToInvalidateArchivedReportsLater`) and the site's ts_created
/// moved back to the day before (SitesManagerRequestProcessor).
async fn remember_invalidations(
    t: &Tracker,
    tx: &mut Transaction<'static>,
    prepared: &[Prepared],
    snap: &Snapshot,
) -> Result<(), BatchError> {
    let mut days: HashSet<(u32, String)> = HashSet::new();
    let mut created: HashMap<u32, i64> = HashMap::new();
    let wall = chrono::Utc::now().timestamp();
    for p in prepared {
        let Some(site) = snap.sites.get(&p.idsite) else {
            continue;
        };
        if site.zone.day_number(p.ts) < site.zone.day_number(wall) {
            days.insert((p.idsite, local_day(&site.zone, p.ts)));
        }
        let start = (p.ts - 86400).div_euclid(86400) * 86400;
        let cur = created.entry(p.idsite).or_insert(site.ts_created);
        *cur = (*cur).min(start);
    }
    let mut days: Vec<_> = days.into_iter().collect();
    days.sort();
    // One multi-row INSERT IGNORE for all of them (each name unique by its random prefix).
    let rows: Vec<Vec<Val>> = days
        .into_iter()
        .map(|(idsite, day)| {
            let name = format!(
                "{}_report_to_invalidate_{idsite}_{day}_{}",
                prepare::random_string(4),
                std::process::id()
            );
            vec![Val::Str(name), Val::Str("1".into()), Val::Int(0)]
        })
        .collect();
    if !rows.is_empty() {
        tx.query_drop(sql::multi_insert(
            &t.table("option"),
            true,
            &["option_name", "option_value", "autoload"],
            &rows,
        ))
        .await?;
    }
    // Only sites whose creation date really moves are updated: a consistent read first, so
    // concurrent shards writing past-dated hits of one site do not queue behind each other's
    // row lock on it for every batch.
    let created: Vec<(u32, i64)> = created
        .into_iter()
        .filter(|(idsite, ts)| snap.sites.get(idsite).is_some_and(|s| s.ts_created > *ts))
        .collect();
    if created.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = created.iter().map(|(s, _)| s.to_string()).collect();
    let stored: HashMap<u32, i64> = tx
        .query::<(u32, i64), _>(format!(
            "SELECT idsite, TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', ts_created) FROM `{}` WHERE idsite IN ({})",
            t.table("site"),
            ids.join(",")
        ))
        .await?
        .into_iter()
        .collect();
    for (idsite, ts) in created {
        if stored.get(&idsite).is_none_or(|cur| *cur <= ts) {
            continue;
        }
        let when = sql::datetime(ts);
        tx.query_drop(format!(
            "UPDATE `{}` SET ts_created = '{when}' WHERE idsite = {idsite} AND ts_created > '{when}'",
            t.table("site"),
        ))
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_keep_their_order_and_a_column_a_row_lacks_is_default() {
        let (one, two, three) = (Val::Int(1), Val::Int(2), Val::Int(3));
        let spent = Val::Int(60);
        let rows: Vec<RowRef<'_>> = vec![
            vec![("idvisit", &one), ("name", &one)],
            vec![("idvisit", &two), ("name", &two), ("time_spent", &spent)],
            vec![("idvisit", &three), ("name", &three)],
        ];
        let names = column_union(&rows);
        assert_eq!(names, ["idvisit", "name", "time_spent"]);
        let values = rows.iter().map(|r| row_values(&names, r));
        let sql = sql::multi_insert("t", false, &names, values);
        assert_eq!(
            sql,
            "INSERT INTO `t` (`idvisit`, `name`, `time_spent`) VALUES \
             (1,1,DEFAULT),(2,2,60),(3,3,DEFAULT)"
        );
    }

    #[test]
    fn a_shorter_row_first_gets_default_for_the_later_columns() {
        let (one, spent) = (Val::Int(1), Val::Int(5));
        let rows: Vec<RowRef<'_>> = vec![
            vec![("idvisit", &one)],
            vec![("idvisit", &one), ("time_spent", &spent)],
            vec![("idvisit", &one)],
        ];
        let names = column_union(&rows);
        assert_eq!(names, ["idvisit", "time_spent"]);
        let values = |row| row_values(&names, row).collect::<Vec<_>>();
        assert_eq!(values(&rows[0]), [&one, &Val::Default]);
        assert_eq!(values(&rows[1]), [&one, &spent]);
    }

    #[test]
    fn columns_in_another_order_are_matched_by_name() {
        let (a, b) = (Val::Int(1), Val::Str("x".into()));
        let rows: Vec<RowRef<'_>> = vec![vec![("a", &a), ("b", &b)], vec![("b", &b), ("a", &a)]];
        let names = column_union(&rows);
        assert_eq!(names, ["a", "b"]);
        let values: Vec<&Val> = row_values(&names, &rows[1]).collect();
        assert_eq!(values, [&a, &b]);
    }
}
