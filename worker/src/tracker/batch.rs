//! One batch: the hits of every RequestSet, in queue order, run against in-memory visit state
//! (Matomo's `Visit::handle` per request), then written with few statements: one query for the
//! batch's unknown visitors, one resolution pass for action names, multi-row INSERTs for visits,
//! actions and conversions, and one multi-statement round trip of visit UPDATEs.
//!
//! The [`ShardCache`] keeps visits between batches while the engine holds the shard lock; the
//! engine throws it away after a rollback or a lost lock.

use std::collections::{HashMap, HashSet};

use md5::Digest;
use mysql_async::prelude::Queryable;
use mysql_async::Transaction;

use super::actions::{self, ActionCtx, ActionSpec, Kind};
use super::log_action::{self, ActionKey};
use super::request::{self, Request, RequestEnv, RequestError};
use super::settings::Snapshot;
use super::sql::{self, Val};
use super::visit::{self, LinkRef, Visit};
use super::{BatchError, BatchOutcome, SetOutcome, Tracker};

type Key = (u32, [u8; 8]);

/// Visits known to this shard while its lock is held.
#[derive(Debug, Default)]
pub struct ShardCache {
    visits: Vec<Visit>,
    by_vid: HashMap<Key, Vec<usize>>,
    by_cfg: HashMap<Key, Vec<usize>>,
    by_idvisit: HashMap<u64, usize>,
    loaded_vid: HashSet<Key>,
    loaded_cfg: HashSet<Key>,
}

impl ShardCache {
    fn add(&mut self, v: Visit) -> usize {
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
        }
        self.visits.push(v);
        i
    }

    fn reindex_vid(&mut self, i: usize, old: Key) {
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
struct PendingAction {
    visit: usize,
    cols: Vec<(&'static str, Val)>,
}

/// A conversion row waiting for the end of the batch.
struct PendingConversion {
    visit: usize,
    action: Option<usize>,
    cols: Vec<(&'static str, Val)>,
}

struct Prepared {
    device: Option<matomo_device_detector::MatomoDeviceColumns>,
    idsite: u32,
    set: usize,
    params: usize,
    visitor_id: Option<[u8; 8]>,
    config_id: [u8; 8],
    ts: i64,
    ip: String,
    spec: Option<ActionSpec>,
}

fn timezone_offset(tz: &str, ts: i64) -> i64 {
    if let Ok(z) = tz.parse::<chrono_tz::Tz>() {
        use chrono::{Offset, TimeZone};
        return z
            .offset_from_utc_datetime(
                &chrono::DateTime::from_timestamp(ts, 0)
                    .unwrap_or_default()
                    .naive_utc(),
            )
            .fix()
            .local_minus_utc() as i64;
    }
    if let Some(rest) = tz.strip_prefix("UTC") {
        if let Ok(h) = rest.parse::<f64>() {
            return (h * 3600.0) as i64;
        }
    }
    0
}

/// The site-local calendar day of `ts`.
pub fn local_day(tz: &str, ts: i64) -> String {
    let local = ts + timezone_offset(tz, ts);
    sql::datetime(local)[..10].to_owned()
}

fn ip_to_bytes(ip: &str) -> Vec<u8> {
    match ip.trim().parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => v4.octets().to_vec(),
        Ok(std::net::IpAddr::V6(v6)) => v6.octets().to_vec(),
        Err(_) => vec![0, 0, 0, 0],
    }
}

/// Matomo's config_id (Settings::getConfigHash).
#[allow(clippy::too_many_arguments)]
pub fn config_id(
    os: &str,
    browser: &str,
    version: &str,
    plugins: [i64; 8],
    ip: &str,
    lang: &str,
    salt: &str,
    fp: &str,
    idsite: u32,
) -> [u8; 8] {
    let [fla, java, qt, realp, pdf, wma, ag, cookie] = plugins;
    let lang20: String = lang.chars().take(20).collect();
    let s = format!("{os}{browser}{version}{fla}{java}0{qt}{realp}{pdf}{wma}0{ag}{cookie}{ip}{lang20}{salt}{fp}{idsite}");
    let d = md5::Md5::digest(s.as_bytes());
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

/// Runs one batch.
pub async fn run(
    t: &Tracker,
    snap: &Snapshot,
    tx: &mut Transaction<'static>,
    cache: &mut ShardCache,
    sets: &[matomo_wire::RequestSet],
) -> Result<BatchOutcome, BatchError> {
    if cache.len() > 200_000 {
        *cache = ShardCache::default();
    }
    let salt = t.config.matomo.salt.as_str();
    let env = RequestEnv {
        salt,
        snap,
        tracker: &t.config.matomo.tracker,
    };
    let limit = t.config.matomo.tracker.page_maximum_length;
    let mut outcome = BatchOutcome {
        sets: vec![SetOutcome::default(); sets.len()],
    };
    let mut new_salts: Vec<(u32, String, String)> = Vec::new();
    let mut salts: HashMap<(u32, String), String> = HashMap::new();

    // Phase 1: read every request (pure) and collect what must be looked up.
    let mut prepared: Vec<Prepared> = Vec::new();
    let mut wanted: Vec<(ActionKey, Option<i64>)> = Vec::new();
    for (si, set) in sets.iter().enumerate() {
        for (pi, params) in set.requests.iter().enumerate() {
            let Ok(mut req) = Request::new(params, set, env.clone()) else {
                outcome.sets[si].skipped += 1;
                continue;
            };
            if req.int("rec", 0) != 1 {
                outcome.sets[si].skipped += 1;
                continue;
            }
            let prep = (|| -> Result<Prepared, RequestError> {
                let ts = req.timestamp()?;
                let ip = req.ip_string()?;
                let visitor_id = req.visitor_id()?;
                let day = local_day(&req.site.timezone, ts);
                let idsite = req.idsite();
                let fp = if t.config.matomo.tracker.create_new_visit_after_midnight
                    && !t
                        .config
                        .matomo
                        .tracker
                        .enable_fingerprinting_across_websites
                {
                    let s = salts.entry((idsite, day.clone())).or_insert_with(|| {
                        snap.fingerprint_salt(idsite, &day).unwrap_or_else(|| {
                            let v = random_salt();
                            new_salts.push((idsite, day.clone(), v.clone()));
                            v
                        })
                    });
                    format!("{s}{day}")
                } else {
                    String::new()
                };
                let ua = matomo_wire::php::htmlspecialchars_decode(&req.user_agent()).into_owned();
                let detection = t.devices.as_ref().map(|dd| {
                    let hints = match req
                        .raw("uadata")
                        .and_then(php::raw_string)
                        .filter(|s| !s.is_empty())
                    {
                        Some(json) => matomo_device_detector::ClientHints::from_uadata_json(&json)
                            .unwrap_or_default(),
                        None => matomo_device_detector::ClientHints::from_headers(
                            req.server
                                .iter()
                                .filter_map(|(k, v)| php::raw_string(v).map(|v| (k.clone(), v))),
                        ),
                    };
                    dd.detect(&ua, &hints)
                });
                let is_bot = detection.as_ref().is_some_and(|d| d.is_bot());
                let ip_bin = ip_to_bytes(&ip);
                let ranges = exclusion::excluded_ip_ranges(
                    &req.site.excluded_ips.join(","),
                    &snap.global_excluded_ips.join(","),
                );
                let excluded_uas: Vec<String> = snap
                    .global_excluded_user_agents
                    .iter()
                    .chain(req.site.excluded_user_agents.iter())
                    .cloned()
                    .collect();
                let via = req.server_str("HTTP_VIA").unwrap_or_default();
                let x_purpose = req.server_str("HTTP_X_PURPOSE").unwrap_or_default();
                let x_moz = req.server_str("HTTP_X_MOZ").unwrap_or_default();
                let urlref = req.str("urlref");
                let url = req.str("url");
                let input = exclusion::ExclusionInput {
                    bots_param: req.int("bots", 0),
                    device_is_bot: is_bot,
                    rec_param: 1,
                    ip: &ip_bin,
                    http_via: &via,
                    excluded_ips: &ranges,
                    user_agent: &ua,
                    excluded_user_agents: &excluded_uas,
                    spam_filter_enabled: true,
                    spammers: &t.lists.spammers,
                    urlref: &urlref,
                    exclude_unknown_urls: req.site.exclude_unknown_urls,
                    site_urls: &req.site.urls,
                    idsite,
                    url: &url,
                    x_purpose: &x_purpose,
                    x_moz: &x_moz,
                };
                if let Some(reason) = exclusion::check(&input) {
                    return Err(RequestError::InvalidParameter(format!(
                        "excluded: {reason:?}"
                    )));
                }
                let device = detection.as_ref().map(|d| d.matomo_columns());
                let (os, browser, version) = match &device {
                    Some(d) => {
                        let is_browser = d.config_client_type == Some(1);
                        (
                            d.config_os.clone(),
                            if is_browser {
                                d.config_browser_name.clone()
                            } else {
                                "UNK".into()
                            },
                            if is_browser {
                                d.config_browser_version.clone()
                            } else {
                                String::new()
                            },
                        )
                    }
                    None => ("UNK".into(), "UNK".into(), String::new()),
                };
                let mut plugins = req.plugins();
                if detection
                    .as_ref()
                    .and_then(|d| d.client.as_ref())
                    .is_some_and(|c| c.name == "Internet Explorer")
                {
                    plugins[7] = 0;
                }
                let cfg = config_id(
                    &os,
                    &browser,
                    &version,
                    plugins,
                    &ip,
                    &req.browser_language(),
                    salt,
                    &fp,
                    idsite,
                );
                let idgoal = req.int("idgoal", -1);
                let ctx = ActionCtx {
                    snap,
                    exclude: actions::excluded_params(snap, &req.site.excluded_parameters),
                    limit,
                };
                let spec = if idgoal >= 0 || req.int("ping", 0) == 1 {
                    None
                } else {
                    match actions::classify(&req, &ctx) {
                        Ok(s) => Some(s),
                        Err(e) => return Err(RequestError::InvalidParameter(e.0)),
                    }
                };
                Ok(Prepared {
                    device,
                    idsite,
                    set: si,
                    params: pi,
                    visitor_id,
                    config_id: cfg,
                    ts,
                    ip,
                    spec,
                })
            })();
            match prep {
                Ok(p) => {
                    if let Some(spec) = &p.spec {
                        for l in &spec.lookups {
                            wanted.push(((l.kind, l.name.clone()), l.prefix));
                        }
                    }
                    prepared.push(p);
                }
                Err(_) => outcome.sets[si].skipped += 1,
            }
        }
    }

    // Phase 2: resolve action names and prefetch visitors.
    let ids = log_action::resolve(tx, &t.table("log_action"), &t.actions, &wanted).await?;
    prefetch(t, tx, cache, &prepared, sets).await?;

    // Phase 3: run hits in order.
    let mut pending: Vec<PendingAction> = Vec::new();
    let mut conversions: Vec<PendingConversion> = Vec::new();
    let mut touched: Vec<usize> = Vec::new();
    let mut time_spent_updates: Vec<(u64, i64)> = Vec::new();
    for p in &prepared {
        let set = &sets[p.set];
        let Ok(mut req) = Request::new(&set.requests[p.params], set, env.clone()) else {
            continue;
        };
        let recorded = handle(
            t,
            snap,
            tx,
            cache,
            &mut req,
            p,
            &ids,
            &mut pending,
            &mut conversions,
            &mut touched,
            &mut time_spent_updates,
        )
        .await?;
        if recorded {
            outcome.sets[p.set].recorded += 1;
        } else {
            outcome.sets[p.set].skipped += 1;
        }
    }

    // Phase 4: write.
    write(t, tx, cache, &pending, &conversions, &touched).await?;
    if !time_spent_updates.is_empty() {
        let table = t.table("log_link_visit_action");
        let stmts: Vec<String> = time_spent_updates
            .iter()
            .map(|(id, secs)| {
                sql::update_one(
                    &table,
                    "idlink_va",
                    *id as i64,
                    &[("time_spent", Val::Int(*secs))],
                )
            })
            .collect();
        for chunk in stmts.chunks(100) {
            tx.query_drop(chunk.join(";\n")).await?;
        }
    }
    for (idsite, day, value) in new_salts {
        let json = format!(
            "{{\"value\":\"{value}\",\"time\":{}}}",
            chrono::Utc::now().timestamp()
        );
        tx.query_drop(format!(
            "INSERT IGNORE INTO `{}` (option_name, option_value, autoload) VALUES ({}, {}, 0)",
            t.table("option"),
            render(&Val::Str(format!("fingerprint_salt_{idsite}_{day}"))),
            render(&Val::Str(json))
        ))
        .await?;
    }
    remember_invalidations(t, tx, sets, &prepared, snap).await?;
    Ok(outcome)
}

fn render(v: &Val) -> String {
    let mut s = String::new();
    v.render(&mut s);
    s
}

fn random_salt() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut r = rand::rng();
    (0..32)
        .map(|_| CHARS[r.random_range(0..CHARS.len())] as char)
        .collect()
}

async fn prefetch(
    t: &Tracker,
    tx: &mut Transaction<'static>,
    cache: &mut ShardCache,
    prepared: &[Prepared],
    _sets: &[matomo_wire::RequestSet],
) -> Result<(), BatchError> {
    let ahead = t.config.matomo.tracker.visit_standard_length as i64;
    let mut parts: Vec<String> = Vec::new();
    let cols = Visit::select_list();
    let table = t.table("log_visit");
    let mut seen_v: HashSet<Key> = HashSet::new();
    let mut seen_c: HashSet<Key> = HashSet::new();
    let max_ts = prepared.iter().map(|p| p.ts).max().unwrap_or(0) + ahead;
    for p in prepared {
        let idsite = p.idsite;
        if let Some(vid) = p.visitor_id {
            let k = (idsite, vid);
            if !cache.loaded_vid.contains(&k) && seen_v.insert(k) {
                parts.push(format!(
                    "(SELECT {cols} FROM `{table}` WHERE idsite = {idsite} AND idvisitor = {} AND visit_last_action_time <= '{}' ORDER BY visit_last_action_time DESC LIMIT 1)",
                    render(&Val::Bin(vid.to_vec())),
                    sql::datetime(max_ts)
                ));
            }
        }
        let k = (idsite, p.config_id);
        if !cache.loaded_cfg.contains(&k) && seen_c.insert(k) {
            parts.push(format!(
                "(SELECT {cols} FROM `{table}` WHERE idsite = {idsite} AND config_id = {} AND visit_last_action_time <= '{}' ORDER BY visit_last_action_time DESC LIMIT 1)",
                render(&Val::Bin(p.config_id.to_vec())),
                sql::datetime(max_ts)
            ));
        }
    }
    for chunk in parts.chunks(200) {
        let rows: Vec<mysql_async::Row> = tx.query(chunk.join(" UNION ALL ")).await?;
        for r in rows {
            cache.add(Visit::from_row(&r));
        }
    }
    cache.loaded_vid.extend(seen_v);
    cache.loaded_cfg.extend(seen_c);
    Ok(())
}

fn goal_matches(goal: &super::settings::Goal, subject: &str) -> bool {
    let (p, s) = if goal.case_sensitive {
        (goal.pattern.clone(), subject.to_owned())
    } else {
        (goal.pattern.to_lowercase(), subject.to_lowercase())
    };
    match goal.pattern_type.as_str() {
        "contains" => s.contains(&p),
        "exact" => {
            s == p
                || matomo_wire::php::htmlspecialchars_decode(&s)
                    == matomo_wire::php::htmlspecialchars_decode(&p)
        }
        "regex" => {
            let re = if goal.case_sensitive {
                p.clone()
            } else {
                format!("(?i){p}")
            };
            regex::Regex::new(&re)
                .map(|r| r.is_match(&s))
                .unwrap_or(false)
        }
        _ => false,
    }
}

/// Runs one request against the in-memory state (`Visit::handle`). Returns whether it was recorded.
#[allow(clippy::too_many_arguments)]
async fn handle(
    t: &Tracker,
    snap: &Snapshot,
    _tx: &mut Transaction<'static>,
    cache: &mut ShardCache,
    req: &mut Request<'_>,
    p: &Prepared,
    ids: &HashMap<ActionKey, u64>,
    pending: &mut Vec<PendingAction>,
    conversions: &mut Vec<PendingConversion>,
    touched: &mut Vec<usize>,
    time_spent_updates: &mut Vec<(u64, i64)>,
) -> Result<bool, BatchError> {
    let tr = &t.config.matomo.tracker;
    let now = p.ts;
    let idsite = p.idsite;
    let standard = tr.visit_standard_length as i64;
    let back = now - standard.max(tr.window_look_back_for_visitor as i64);
    let ahead = now + standard;
    let uid = req.user_id();
    let has_vid = p.visitor_id.is_some();
    let cid = !req.str("cid").is_empty();
    let one_field = (has_vid && tr.trust_visitors_cookies) || (uid.is_none() && (cid || !has_vid));
    let by_vid = p
        .visitor_id
        .and_then(|vid| cache.best(cache.by_vid.get(&(idsite, vid)), |v| v.last <= ahead));
    let by_cfg = cache.best(cache.by_cfg.get(&(idsite, p.config_id)), |v| {
        v.last >= back
            && v.last <= ahead
            && (uid.is_none() || v.user_id.is_none() || v.user_id == uid)
    });
    let mut found = if one_field && has_vid {
        by_vid
    } else if one_field {
        by_cfg
    } else {
        by_vid.or(by_cfg)
    };
    if let Some(i) = found {
        if tr.create_new_visit_after_x_actions > 0
            && cache.visits[i].total_actions >= i64::from(tr.create_new_visit_after_x_actions)
        {
            found = None;
        }
    }
    let known = found.is_some();
    let tz = req.site.timezone.clone();
    let ping = req.int("ping", 0) == 1;
    let mut is_new = match found {
        None => true,
        Some(i) => {
            let v = &cache.visits[i];
            req.int("new_visit", 0) != 0
                || v.last <= now - standard
                || (tr.create_new_visit_after_midnight
                    && local_day(&tz, v.last) != local_day(&tz, now))
                || (!tr.enable_userid_overwrites_visitorid
                    && v.user_id.as_deref().is_some_and(|u| !u.is_empty())
                    && uid
                        .as_deref()
                        .is_some_and(|u| u != v.user_id.as_deref().unwrap_or("")))
        }
    };

    // Goals (manual, ecommerce) and the action.
    let idgoal = req.int("idgoal", -1);
    let goals = snap.goals.get(&idsite).cloned().unwrap_or_default();
    let mut converted: Vec<(super::settings::Goal, String)> = Vec::new();
    let is_ecommerce = idgoal == 0;
    let is_order = is_ecommerce && !php_empty(&req.str("ec_id"));
    let mut spec = p.spec.clone();
    if idgoal > 0 {
        let Some(goal) = goals.iter().find(|g| g.idgoal == idgoal) else {
            return Ok(false);
        };
        let ctx_ex = actions::excluded_params(snap, &req.site.excluded_parameters);
        let url = actions::exclude_query_parameters(
            &req.str("url"),
            snap.keep_fragment(req.site),
            &ctx_ex,
            tr.page_maximum_length,
        );
        converted.push((goal.clone(), url));
        spec = None;
    }
    if ping {
        spec = None;
        converted.clear();
        if is_new {
            return Ok(false);
        }
    }
    if converted.is_empty() && !is_ecommerce {
        if let Some(s) = &spec {
            for g in &goals {
                let attr = g.match_attribute.as_str();
                let subject = match (attr, s.kind) {
                    ("url", Kind::Pageview) => Some(s.url.clone()),
                    ("title", Kind::Pageview) => Some(s.name.clone()),
                    ("file", Kind::Download) | ("external_website", Kind::Outlink) => {
                        Some(s.url.clone())
                    }
                    ("event_category", Kind::Event) => Some(req.str("e_c")),
                    ("event_action", Kind::Event) => Some(req.str("e_a")),
                    ("event_name", Kind::Event) => Some(req.str("e_n")),
                    _ => None,
                };
                if let Some(subject) = subject {
                    if goal_matches(g, &subject) {
                        converted.push((g.clone(), s.url.clone()));
                    }
                }
            }
        }
    }
    let visit_is_converted = !converted.is_empty() || is_order;
    let _ = &mut is_new;

    let id_of =
        |l: &actions::Lookup| -> u64 { ids.get(&(l.kind, l.name.clone())).copied().unwrap_or(0) };
    let lookup_id = |s: &ActionSpec, col: &str| s.lookup(col).map(|l| id_of(l));
    // entry/exit ids: pageview → (url id, name id); site search → (None, name id); others: no change.
    let entry_exit: Option<(Option<u64>, Option<u64>)> = spec.as_ref().and_then(|s| match s.kind {
        Kind::Pageview => Some((
            Some(lookup_id(s, "idaction_url").unwrap_or(0)),
            lookup_id(s, "idaction_name"),
        )),
        Kind::SiteSearch => Some((None, lookup_id(s, "idaction_name"))),
        _ => None,
    });
    let counts_interaction = matches!(
        spec.as_ref().map(|s| s.kind),
        Some(Kind::Pageview | Kind::SiteSearch)
    );
    let counts_action = spec.as_ref().is_some_and(|s| s.kind != Kind::Content);
    let is_search = spec.as_ref().is_some_and(|s| s.kind == Kind::SiteSearch);
    let is_event = spec.as_ref().is_some_and(|s| s.kind == Kind::Event);

    let vi: usize;
    let time_spent_ref;
    let ref_ids: (u64, u64);
    let position: Option<i64>;
    if !is_new {
        let i = found.unwrap_or(0);
        vi = i;
        let v = &mut cache.visits[i];
        ref_ids = (v.exit_url.unwrap_or(0), v.exit_name.unwrap_or(0));
        time_spent_ref = (now - v.last).clamp(0, standard);
        let old_vid = (v.idsite, v.idvisitor);
        if let Some(vid) = p.visitor_id {
            v.idvisitor = vid;
        }
        if tr.enable_userid_overwrites_visitorid {
            if let Some(u) = &uid {
                if let Some(b) = hex::decode(request::user_id_hash(u))
                    .ok()
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                {
                    v.idvisitor = b;
                }
            }
        }
        if !ping {
            v.last = v.last.max(now);
        }
        v.total_time = (1 + now - v.first).max(0);
        if counts_action {
            v.total_actions += 1;
        }
        let prev_interactions = v.total_interactions;
        if counts_interaction {
            v.total_interactions += 1;
        }
        position = if counts_interaction {
            Some(prev_interactions + 1)
        } else if prev_interactions >= 1 {
            Some(prev_interactions)
        } else {
            None
        };
        if is_search {
            v.total_searches += 1;
        }
        if is_event {
            v.total_events += 1;
        }
        if let Some((url, name)) = entry_exit {
            if v.entry_url.is_none() {
                if let Some(u) = url.filter(|u| *u != 0) {
                    v.entry_url = Some(u);
                }
            }
            v.exit_url = url;
            if let Some(n) = name {
                v.exit_name = Some(n);
            }
        }
        if let Some(u) = &uid {
            v.user_id = Some(php_mb(u, 200));
        }
        if v.profilable != Some(1) {
            v.profilable = Some(i64::from(has_vid));
        }
        if is_ecommerce {
            let bt = if is_order {
                1
            } else if v.goal_buyer == 1 || v.goal_buyer == 3 {
                3
            } else {
                2
            };
            if bt != v.goal_buyer {
                v.goal_buyer = bt;
            }
        }
        if is_order {
            v.secs_since_order = Some(0);
        }
        if v.resolution.as_deref() == Some("unknown") {
            v.resolution = Some(resolution(req));
        }
        apply_visit_dimensions(snap, req, v);
        if visit_is_converted {
            v.goal_converted = 1;
            v.total_time += idgoal + 2;
        }
        v.dirty = true;
        let new_key = (v.idsite, v.idvisitor);
        if new_key != old_vid {
            cache.reindex_vid(i, old_vid);
        }
    } else {
        ref_ids = (0, 0);
        time_spent_ref = 0;
        position = if counts_interaction { Some(1) } else { None };
        let prev = found.map(|i| cache.visits[i].clone());
        let idvisitor = match &prev {
            Some(pv) => pv.idvisitor,
            None => p.visitor_id.unwrap_or_else(rand::random),
        };
        let lang = req.browser_language();
        let plugins = req.plugins();
        let mut v = Visit {
            is_new: true,
            dirty: true,
            idsite,
            idvisitor,
            config_id: p.config_id,
            location_ip: ip_to_bytes(&p.ip),
            profilable: Some(i64::from(has_vid)),
            user_id: uid.as_deref().map(|u| php_mb(u, 200)),
            first: now,
            last: now,
            goal_buyer: if is_ecommerce {
                if is_order {
                    1
                } else {
                    2
                }
            } else {
                0
            },
            goal_converted: 0,
            returning: 0,
            count_visits: prev.as_ref().map_or(1, |pv| pv.count_visits + 1),
            secs_since_first: match &prev {
                None => Some(0),
                Some(pv) => visit::seconds_since_first(pv, now),
            },
            secs_since_last: match &prev {
                None => Some(0),
                Some(pv) => visit::seconds_since_last(pv, now),
            },
            secs_since_order: visit::seconds_since_order(prev.as_ref(), now, is_order),
            entry_name: entry_exit.map(|(_, n)| n.unwrap_or(0)).or(Some(0)),
            entry_url: entry_exit.and_then(|(u, _)| u),
            exit_name: Some(entry_exit.and_then(|(_, n)| n).unwrap_or(0)),
            exit_url: Some(entry_exit.and_then(|(u, _)| u).unwrap_or(0)),
            total_actions: i64::from(counts_action),
            total_interactions: i64::from(counts_interaction),
            total_searches: i64::from(is_search),
            total_events: i64::from(is_event),
            total_time: 0,
            referer_type: Some(1),
            referer_name: None,
            referer_keyword: None,
            referer_url: Some(String::new()),
            browser_lang: Some(location::location_browser_lang(&lang)),
            browser: match &p.device {
                Some(d) => [
                    Some(d.config_browser_engine.clone()),
                    Some(d.config_browser_name.clone()),
                    Some(d.config_browser_version.clone()),
                ],
                None => [Some(String::new()), Some("UNK".into()), Some(String::new())],
            },
            client_type: p
                .device
                .as_ref()
                .and_then(|d| d.config_client_type)
                .map(i64::from),
            device: match &p.device {
                Some(d) => [
                    Some(d.config_device_brand.clone()),
                    Some(d.config_device_model.clone()),
                ],
                None => [Some(String::new()), Some(String::new())],
            },
            device_type: p
                .device
                .as_ref()
                .and_then(|d| d.config_device_type)
                .map(i64::from),
            os: match &p.device {
                Some(d) => [Some(d.config_os.clone()), Some(d.config_os_version.clone())],
                None => [Some("UNK".into()), Some(String::new())],
            },
            localtime: Some(req.local_time()),
            resolution: Some(resolution(req)),
            flags: [
                plugins[7], plugins[0], plugins[1], plugins[4], plugins[2], plugins[3], plugins[6],
                plugins[5],
            ]
            .map(Some),
            location: [
                None,
                Some(location::country_from_language(&lang, true)),
                None,
            ],
            latlong: [None, None],
            last_idlink_va: None,
            dims: Default::default(),
            idvisit: 0,
        };
        // visitor_returning: 2 returning customer, 1 returning, 0 new
        let has_order = v.secs_since_order.is_some_and(|x| x != 0)
            || prev
                .as_ref()
                .is_some_and(|pv| pv.secs_since_order.is_some_and(|x| x != 0))
            || is_order;
        v.returning = if has_order {
            2
        } else if known {
            1
        } else {
            0
        };
        if is_new && entry_exit.is_none() {
            v.entry_url = None;
        }
        apply_visit_dimensions(snap, req, &mut v);
        if visit_is_converted {
            v.goal_converted = 1;
            if known {
                v.total_time += idgoal + 2;
            }
        }
        vi = cache.add(v);
    }
    touched.push(vi);

    // The action row.
    let mut action_index = None;
    if let Some(s) = &spec {
        let v = &cache.visits[vi];
        let mut cols: Vec<(&'static str, Val)> = vec![
            ("idsite", Val::Int(i64::from(idsite))),
            ("idvisitor", Val::Bin(v.idvisitor.to_vec())),
            ("idaction_url_ref", Val::Int(ref_ids.0 as i64)),
            ("idaction_name_ref", Val::Int(ref_ids.1 as i64)),
            ("server_time", Val::Time(now)),
            ("time_spent_ref_action", Val::Int(time_spent_ref)),
        ];
        cols.push((
            "idaction_url",
            if s.kind == Kind::SiteSearch {
                Val::Null
            } else {
                Val::Int(lookup_id(s, "idaction_url").unwrap_or(0) as i64)
            },
        ));
        for l in &s.lookups {
            if l.column == "idaction_url" {
                continue;
            }
            cols.push((l.column, Val::Int(id_of(l) as i64)));
        }
        if let Some(pos) = position {
            cols.push(("pageview_position", Val::Int(pos)));
        }
        let pv = req.str("pv_id");
        cols.push(("idpageview", Val::Str(pv.chars().take(6).collect())));
        if let Some(f) = s.custom_float {
            cols.push(("custom_float", Val::Float(f)));
        }
        if s.kind == Kind::SiteSearch {
            cols.push(("search_cat", Val::opt_str(s.search_cat.as_deref())));
            cols.push(("search_count", s.search_count.map_or(Val::Null, Val::Int)));
        }
        if let Some(pp) = s.product_price {
            cols.push(("product_price", Val::Float(pp)));
        }
        for (i, (_, col)) in actions::PERF.iter().enumerate() {
            if let Some(x) = s.perf[i] {
                cols.push((col, Val::Int(x)));
            }
        }
        for d in snap
            .dimensions
            .get(&idsite)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            if d.scope == "action" && (1..=5).contains(&d.index) {
                if let Some(val) = dimension_value(req, d.id) {
                    cols.push((ACTION_DIM_COLS[(d.index - 1) as usize], Val::Str(val)));
                }
            }
        }
        pending.push(PendingAction { visit: vi, cols });
        let ai = pending.len() - 1;
        action_index = Some(ai);
        // CustomDimensionsRequestProcessor: last_idlink_va and the previous action's time_spent
        // are maintained only on sites with an action-scope custom dimension.
        let has_action_dim = snap
            .dimensions
            .get(&idsite)
            .is_some_and(|ds| ds.iter().any(|d| d.scope == "action"));
        if has_action_dim {
            let previous = cache.visits[vi].last_idlink_va;
            cache.visits[vi].last_idlink_va = Some(LinkRef::Pending(ai));
            if !is_new && time_spent_ref > 0 {
                match previous {
                    Some(LinkRef::Pending(prev)) => {
                        if let Some(a) = pending.get_mut(prev) {
                            a.cols.retain(|(c, _)| *c != "time_spent");
                            a.cols.push(("time_spent", Val::Int(time_spent_ref)));
                        }
                    }
                    Some(LinkRef::Id(id)) => time_spent_updates.push((id, time_spent_ref)),
                    None => {}
                }
            }
        }
    }

    // Conversions (standard goals; ecommerce conversions are not written yet).
    for (goal, url) in converted {
        let v = &cache.visits[vi];
        let revenue = php::request_float_or(req.raw("revenue"), goal.revenue);
        let cols = conversion_cols(
            v,
            now,
            goal.idgoal,
            0,
            &url,
            revenue,
            action_index.and_then(|_| {
                spec.as_ref()
                    .map(|s| lookup_id(s, "idaction_url").unwrap_or(0))
            }),
        );
        conversions.push(PendingConversion {
            visit: vi,
            action: action_index,
            cols,
        });
    }
    Ok(true)
}

use super::{exclusion, location, php};

const ACTION_DIM_COLS: [&str; 5] = [
    "custom_dimension_1",
    "custom_dimension_2",
    "custom_dimension_3",
    "custom_dimension_4",
    "custom_dimension_5",
];

fn php_empty(s: &str) -> bool {
    s.is_empty() || s == "0"
}

fn php_mb(s: &str, n: usize) -> String {
    php::mb_substr(s, n).to_owned()
}

fn resolution(req: &Request<'_>) -> String {
    let r = req.str("res");
    if r.is_empty() {
        "unknown".into()
    } else {
        r.chars().take(9).collect()
    }
}

/// `dimensionN`: trimmed, cut to 250 characters (already HTML-escaped by getParam).
fn dimension_value(req: &Request<'_>, id: i64) -> Option<String> {
    let raw = req.str(&format!("dimension{id}"));
    let v = php::php_trim(&raw);
    if v.is_empty() {
        return None;
    }
    Some(php::mb_substr(v, 250).to_owned())
}

fn apply_visit_dimensions(snap: &Snapshot, req: &Request<'_>, v: &mut Visit) {
    for d in snap
        .dimensions
        .get(&v.idsite)
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        if d.scope == "visit" && (1..=5).contains(&d.index) {
            if let Some(val) = dimension_value(req, d.id) {
                v.dims[(d.index - 1) as usize] = Some(val);
            }
        }
    }
}

fn conversion_cols(
    v: &Visit,
    now: i64,
    idgoal: i64,
    buster: i64,
    url: &str,
    revenue: f64,
    idaction_url: Option<u64>,
) -> Vec<(&'static str, Val)> {
    let revenue = if revenue.round() != revenue {
        (revenue * 100.0).round() / 100.0
    } else {
        revenue
    };
    let mut cols = vec![
        ("idsite", Val::Int(i64::from(v.idsite))),
        ("idvisitor", Val::Bin(v.idvisitor.to_vec())),
        ("server_time", Val::Time(now)),
        ("idgoal", Val::Int(idgoal)),
        ("buster", Val::Int(buster)),
        ("url", Val::Str(url.to_owned())),
        ("revenue", Val::Float(revenue)),
        ("visitor_returning", Val::Int(v.returning)),
        (
            "visitor_seconds_since_first",
            v.secs_since_first.map_or(Val::Null, Val::Int),
        ),
        (
            "visitor_seconds_since_order",
            v.secs_since_order.map_or(Val::Null, Val::Int),
        ),
        ("visitor_count_visits", Val::Int(v.count_visits)),
        (
            "referer_keyword",
            Val::opt_str(v.referer_keyword.as_deref()),
        ),
        ("referer_name", Val::opt_str(v.referer_name.as_deref())),
        ("referer_type", v.referer_type.map_or(Val::Null, Val::Int)),
        ("config_browser_name", Val::opt_str(v.browser[1].as_deref())),
        (
            "config_client_type",
            v.client_type.map_or(Val::Null, Val::Int),
        ),
        ("config_device_brand", Val::opt_str(v.device[0].as_deref())),
        ("config_device_model", Val::opt_str(v.device[1].as_deref())),
        (
            "config_device_type",
            v.device_type.map_or(Val::Null, Val::Int),
        ),
        ("location_city", Val::opt_str(v.location[0].as_deref())),
        ("location_country", Val::opt_str(v.location[1].as_deref())),
        (
            "location_latitude",
            v.latlong[0].map_or(Val::Null, Val::Float),
        ),
        (
            "location_longitude",
            v.latlong[1].map_or(Val::Null, Val::Float),
        ),
        ("location_region", Val::opt_str(v.location[2].as_deref())),
        ("pageviews_before", Val::Int(v.total_actions)),
    ];
    if let Some(u) = idaction_url {
        cols.push(("idaction_url", Val::Int(u as i64)));
    }
    for (i, d) in v.dims.iter().enumerate() {
        cols.push((ACTION_DIM_COLS[i], Val::opt_str(d.as_deref())));
    }
    cols
}

/// Inserts rows that share one column list, one multi-row statement per distinct list;
/// returns the first id of each row (consecutive ids per statement).
async fn insert_grouped(
    tx: &mut Transaction<'static>,
    table: &str,
    ignore: bool,
    rows: Vec<Vec<(&'static str, Val)>>,
    consecutive: bool,
) -> Result<Vec<u64>, BatchError> {
    let mut ids = vec![0u64; rows.len()];
    let mut groups: Vec<(Vec<&'static str>, Vec<usize>)> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let names: Vec<&'static str> = r.iter().map(|(c, _)| *c).collect();
        match groups.iter_mut().find(|(n, _)| *n == names) {
            Some(g) => g.1.push(i),
            None => groups.push((names, vec![i])),
        }
    }
    for (names, members) in groups {
        let step = if consecutive { 500 } else { 1 };
        for chunk in members.chunks(step) {
            let values: Vec<Vec<Val>> = chunk
                .iter()
                .map(|i| rows[*i].iter().map(|(_, v)| v.clone()).collect())
                .collect();
            tx.query_drop(sql::multi_insert(table, ignore, &names, &values))
                .await?;
            let first = tx.last_insert_id().unwrap_or(0);
            for (k, i) in chunk.iter().enumerate() {
                ids[*i] = first + k as u64;
            }
        }
    }
    Ok(ids)
}

async fn write(
    t: &Tracker,
    tx: &mut Transaction<'static>,
    cache: &mut ShardCache,
    pending: &[PendingAction],
    conversions: &[PendingConversion],
    touched: &[usize],
) -> Result<(), BatchError> {
    let mut uniq: Vec<usize> = Vec::new();
    for &i in touched {
        if !uniq.contains(&i) {
            uniq.push(i);
        }
    }
    // New visits first: their ids are needed by actions and conversions.
    let new_visits: Vec<usize> = uniq
        .iter()
        .copied()
        .filter(|i| cache.visits[*i].is_new)
        .collect();
    if !new_visits.is_empty() {
        let rows: Vec<Vec<(&'static str, Val)>> = new_visits
            .iter()
            .map(|i| {
                let mut v = cache.visits[*i].clone();
                v.last_idlink_va = None;
                visit::COLUMNS[..visit::NCOLS]
                    .iter()
                    .copied()
                    .zip(v.columns(|_| None))
                    .collect()
            })
            .collect();
        let ids = insert_grouped(
            tx,
            &t.table("log_visit"),
            false,
            rows,
            t.consecutive_autoinc,
        )
        .await?;
        for (k, i) in new_visits.iter().enumerate() {
            let v = &mut cache.visits[*i];
            v.idvisit = ids[k];
            v.is_new = false;
            cache.by_idvisit.insert(ids[k], *i);
        }
    }
    let action_rows: Vec<Vec<(&'static str, Val)>> = pending
        .iter()
        .map(|a| {
            let mut cols = vec![("idvisit", Val::Int(cache.visits[a.visit].idvisit as i64))];
            cols.extend(a.cols.iter().cloned());
            cols
        })
        .collect();
    let action_ids = if action_rows.is_empty() {
        Vec::new()
    } else {
        insert_grouped(
            tx,
            &t.table("log_link_visit_action"),
            false,
            action_rows,
            t.consecutive_autoinc,
        )
        .await?
    };
    if !conversions.is_empty() {
        let rows: Vec<Vec<(&'static str, Val)>> = conversions
            .iter()
            .map(|c| {
                let mut cols = vec![("idvisit", Val::Int(cache.visits[c.visit].idvisit as i64))];
                cols.push((
                    "idlink_va",
                    c.action
                        .map_or(Val::Null, |a| Val::Int(action_ids[a] as i64)),
                ));
                cols.extend(c.cols.iter().cloned());
                cols
            })
            .collect();
        insert_grouped(
            tx,
            &t.table("log_conversion"),
            true,
            rows,
            t.consecutive_autoinc,
        )
        .await?;
    }
    // One round trip of UPDATEs: every touched visit gets its final state.
    let mut stmts: Vec<String> = Vec::new();
    let table = t.table("log_visit");
    for &i in &uniq {
        let v = &mut cache.visits[i];
        if let Some(LinkRef::Pending(a)) = v.last_idlink_va {
            v.last_idlink_va = action_ids.get(a).map(|id| LinkRef::Id(*id));
        }
        let vals = v.columns(|l| match l {
            LinkRef::Id(id) => Some(id),
            LinkRef::Pending(_) => None,
        });
        let sets: Vec<(&str, Val)> = visit::COLUMNS[..visit::NCOLS]
            .iter()
            .copied()
            .zip(vals)
            .filter(|(c, _)| {
                !matches!(
                    *c,
                    "idsite" | "config_id" | "location_ip" | "visit_first_action_time"
                )
            })
            .collect();
        stmts.push(sql::update_one(&table, "idvisit", v.idvisit as i64, &sets));
        v.dirty = false;
    }
    for chunk in stmts.chunks(100) {
        tx.query_drop(chunk.join(";\n")).await?;
    }
    Ok(())
}

/// Past-dated hits: `<rnd4>_report_to_invalidate_<idsite>_<day>_<pid>` options, and site
/// ts_created moved back (SitesManagerRequestProcessor).
async fn remember_invalidations(
    t: &Tracker,
    tx: &mut Transaction<'static>,
    _sets: &[matomo_wire::RequestSet],
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
        let day = local_day(&site.timezone, p.ts);
        let today = local_day(&site.timezone, wall);
        if day < today {
            days.insert((p.idsite, day));
        }
        let start = (p.ts - 86400).div_euclid(86400) * 86400;
        let cur = created.entry(p.idsite).or_insert(site.ts_created);
        if start < *cur {
            *cur = start;
        }
    }
    for (idsite, day) in days {
        let name = format!(
            "{}_report_to_invalidate_{idsite}_{day}_{}",
            random_salt().get(..4).unwrap_or("abcd"),
            std::process::id()
        );
        tx.query_drop(format!(
            "INSERT IGNORE INTO `{}` (option_name, option_value, autoload) VALUES ({}, '1', 0)",
            t.table("option"),
            render(&Val::Str(name))
        ))
        .await?;
    }
    for (idsite, ts) in created {
        tx.query_drop(format!(
            "UPDATE `{}` SET ts_created = '{}' WHERE idsite = {idsite} AND ts_created > '{}'",
            t.table("site"),
            sql::datetime(ts),
            sql::datetime(ts)
        ))
        .await?;
    }
    Ok(())
}
