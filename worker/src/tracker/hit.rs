//! Phase 3 of a batch: one request against the in-memory visit state — Matomo's
//! `Visit::handle`: visitor recognition (`VisitorRecognizer`), the new-visit rules, pings,
//! goals, `handleNewVisit` / `handleExistingVisit` with every visit dimension, the action row,
//! conversions and ecommerce items. Rows are queued in [`BatchState`]; nothing is written here
//! except the rare read of a cart that was stored before this shard's cache knew the visit.

use mysql_async::prelude::Queryable;
use mysql_async::Transaction;

use super::actions::{self, ActionSpec, Kind, Lookup};
use super::batch::{PendingAction, PendingConversion, ShardCache};
use super::campaign;
use super::dimensions;
use super::goals::{self, ItemRow};
use super::location;
use super::log_action::ActionKey;
use super::prepare::{ip_to_bytes, Prepared};
use super::referrers::{
    ExistingReferrer, ReferrerDetector, ReferrerInfo, ReferrerRequest, SiteReferrerSettings,
};
use super::request::{self, Request};
use super::settings::{Goal, Snapshot};
use super::sql::Val;
use super::visit::{self, LinkRef, Visit};
use super::{performance, php, privacy, BatchError, Tracker};

/// What the batch accumulates while its hits run.
#[derive(Default)]
pub struct BatchState {
    /// Action rows to insert.
    pub pending: Vec<PendingAction>,
    /// Conversion rows to insert.
    pub conversions: Vec<PendingConversion>,
    /// Visits touched, in order.
    pub touched: Vec<usize>,
    /// (idlink_va, seconds) of already stored actions.
    pub time_spent_updates: Vec<(u64, i64)>,
    /// Cart conversions of stored visits to update: (idvisit, columns).
    pub cart_updates: Vec<(u64, Vec<(&'static str, Val)>)>,
    /// Visits whose items changed.
    pub item_visits: Vec<usize>,
    /// (idsite, idorder) of every order stored or queued: a second one is PHP's
    /// "Invalid non-unique idsite/idorder combination".
    pub orders: std::collections::HashSet<(u32, String)>,
    /// Timings of non-page-view requests for an earlier page view (PerformanceDataProcessor).
    pub perf_updates: Vec<performance::PerfUpdate>,
}

/// Read-only context of a batch.
pub struct HitCtx<'a> {
    /// The tracker.
    pub t: &'a Tracker,
    /// Configuration.
    pub snap: &'a Snapshot,
    /// Resolved action ids.
    pub ids: &'a std::collections::HashMap<ActionKey, u64>,
    /// Referrer detection.
    pub detector: ReferrerDetector<'a>,
    /// Per-site URL parameter exclusions.
    pub matchers: &'a super::prepare::UrlMatchers,
}

impl HitCtx<'_> {
    fn id(&self, l: &Lookup) -> u64 {
        self.ids
            .get(&(l.kind, l.name.clone()))
            .copied()
            .unwrap_or(0)
    }

    fn lookup(&self, s: &ActionSpec, col: &str) -> Option<u64> {
        s.lookup(col).map(|l| self.id(l))
    }

    /// The idaction of an ecommerce name ('' → 0).
    pub fn name_id(&self, kind: u8, name: &str) -> u64 {
        if php::empty_str(name) {
            return 0;
        }
        self.ids.get(&(kind, name.to_owned())).copied().unwrap_or(0)
    }
}

/// Why a request stops the batch.
pub enum HitError {
    /// A database failure.
    Batch(BatchError),
    /// PHP throws for this request (duplicate order, unknown goal…): the pass is undone and the
    /// rest of its set dropped.
    Invalid(String),
}

impl From<mysql_async::Error> for HitError {
    fn from(e: mysql_async::Error) -> Self {
        HitError::Batch(e.into())
    }
}

fn existing_referrer(v: &Visit) -> ExistingReferrer {
    ExistingReferrer {
        referer_type: v.referer_type.map(|t| t as u8),
        referer_name: v.referer_name.clone(),
        referer_keyword: v.referer_keyword.clone(),
    }
}

fn set_referrer(v: &mut Visit, info: &ReferrerInfo) {
    v.referer_type = Some(info.referer_type as i64);
    v.referer_name = info.referer_name.clone();
    v.referer_keyword = info.referer_keyword.clone();
    v.referer_url = info.referer_url.clone();
}

fn find_visit(
    ctx: &HitCtx<'_>,
    cache: &ShardCache,
    req: &Request<'_>,
    p: &Prepared,
) -> Option<usize> {
    let tr = &ctx.t.config.matomo.tracker;
    let now = p.ts;
    let standard = tr.visit_standard_length as i64;
    let back = now - standard.max(tr.window_look_back_for_visitor as i64);
    let ahead = now + standard;
    let uid = req.user_id();
    let has_vid = p.visitor_id.is_some();
    let cid = !req.str("cid").is_empty();
    // VisitorRecognizer::shouldLookupOneVisitorFieldOnly
    let one_field = (has_vid && tr.trust_visitors_cookies) || (uid.is_none() && (cid || !has_vid));
    let by_vid = p
        .visitor_id
        .and_then(|vid| cache.best_by_vid((p.idsite, vid), |v| v.last <= ahead));
    let by_cfg = || {
        cache.best_by_cfg((p.idsite, p.config_id), |v| {
            v.last >= back
                && v.last <= ahead
                && (uid.is_none() || v.user_id.is_none() || v.user_id == uid)
        })
    };
    let found = if one_field && has_vid {
        by_vid
    } else if one_field {
        by_cfg()
    } else {
        by_vid.or_else(by_cfg)
    };
    found.filter(|i| {
        let max = i64::from(tr.create_new_visit_after_x_actions);
        max <= 0 || cache.visit(*i).total_actions < max
    })
}

fn resolution(req: &Request<'_>) -> String {
    let r = req.str("res");
    if r.is_empty() {
        "unknown".into()
    } else {
        r.chars().take(9).collect()
    }
}

/// Visit-scope custom dimensions set by this request (`onNewVisit` / `onExistingVisit`).
fn apply_visit_dimensions(
    snap: &Snapshot,
    req: &Request<'_>,
    action: Option<&ActionSpec>,
    v: &mut Visit,
) {
    let dims = snap
        .dimensions
        .get(&v.idsite)
        .map_or(&[][..], Vec::as_slice);
    for (slot, val) in dimensions::values_in_scope(dims, "visit", req, action) {
        v.dims[slot] = Some(val);
    }
}

fn new_visit(
    ctx: &HitCtx<'_>,
    req: &mut Request<'_>,
    p: &Prepared,
    prev: Option<&Visit>,
    info: &ReferrerInfo,
    action: Option<&ActionSpec>,
) -> Visit {
    let uid = req.user_id();
    let lang = req.browser_language();
    let plugins = req.plugins();
    let now = p.ts;
    let d = p.device.as_ref();
    let privacy = location::PrivacySettings::from_options(|k| ctx.snap.options.get(k).cloned());
    let raw_ip = ip_to_bytes(&p.ip);
    let loc = location::locate(
        ctx.t.geo.as_deref(),
        &privacy,
        true,
        &raw_ip,
        &privacy.stored_ip(&raw_ip),
        &lang,
    );
    let s =
        |v: Option<&String>, default: &str| Some(v.cloned().unwrap_or_else(|| default.to_owned()));
    let mut v = Visit {
        is_new: true,
        dirty: true,
        idsite: p.idsite,
        idvisitor: match prev {
            Some(pv) => pv.idvisitor,
            None => p.visitor_id.unwrap_or_else(rand::random),
        },
        config_id: p.config_id,
        location_ip: privacy.stored_ip(&raw_ip),
        profilable: Some(i64::from(p.visitor_id.is_some())),
        user_id: uid.as_deref().map(|u| php::mb_substr(u, 200).to_owned()),
        first: now,
        last: now,
        count_visits: prev.map_or(1, |pv| pv.count_visits + 1),
        secs_since_first: prev.map_or(Some(0), |pv| visit::seconds_since_first(pv, now)),
        secs_since_last: prev.map_or(Some(0), |pv| visit::seconds_since_last(pv, now)),
        browser_lang: Some(location::location_browser_lang(&lang)),
        browser: [
            s(d.map(|d| &d.config_browser_engine), ""),
            s(d.map(|d| &d.config_browser_name), "UNK"),
            s(d.map(|d| &d.config_browser_version), ""),
        ],
        client_type: d.and_then(|d| d.config_client_type).map(i64::from),
        device: [
            s(d.map(|d| &d.config_device_brand), ""),
            s(d.map(|d| &d.config_device_model), ""),
        ],
        device_type: d.and_then(|d| d.config_device_type).map(i64::from),
        os: [
            s(d.map(|d| &d.config_os), "UNK"),
            s(d.map(|d| &d.config_os_version), ""),
        ],
        localtime: Some(req.local_time()),
        resolution: Some(resolution(req)),
        // cookie flash java pdf quicktime realplayer silverlight windowsmedia
        flags: [
            plugins[7], plugins[0], plugins[1], plugins[4], plugins[2], plugins[3], plugins[6],
            plugins[5],
        ]
        .map(Some),
        location: [loc.city, Some(loc.country), loc.region],
        latlong: [loc.latitude, loc.longitude],
        ..Visit::default()
    };
    set_referrer(&mut v, info);
    privacy::anonymise_new_visit_referrer(ctx.snap, &mut v);
    apply_location_overrides(req, &mut v);
    apply_visit_dimensions(ctx.snap, req, action, &mut v);
    v
}

/// `country`, `region`, `city`, `lat`, `long` overrides (token checked in phase 1).
fn apply_location_overrides(req: &Request<'_>, v: &mut Visit) {
    let get = |k: &str| Some(req.str(k)).filter(|s| !php::empty_str(s));
    let cut = |s: String, n: usize| {
        let mut e = n.min(s.len());
        while !s.is_char_boundary(e) {
            e -= 1;
        }
        s[..e].to_owned()
    };
    if let Some(c) = get("country") {
        v.location[1] = Some(cut(c, 3));
    }
    if let Some(r) = get("region") {
        v.location[2] = Some(cut(r, 3));
    }
    if let Some(c) = get("city") {
        v.location[0] = Some(cut(c, 255));
    }
    if let Some(l) = get("lat") {
        v.latlong[0] = php::parse_numeric(&l);
    }
    if let Some(l) = get("long") {
        v.latlong[1] = php::parse_numeric(&l);
    }
}

/// Runs one request. Returns whether it was recorded.
pub async fn handle(
    ctx: &HitCtx<'_>,
    tx: &mut Transaction<'static>,
    cache: &mut ShardCache,
    st: &mut BatchState,
    req: &mut Request<'_>,
    p: &Prepared,
) -> Result<bool, HitError> {
    let t = ctx.t;
    let snap = ctx.snap;
    let tr = &t.config.matomo.tracker;
    let now = p.ts;
    let idsite = p.idsite;
    let standard = tr.visit_standard_length as i64;
    let uid = req.user_id();
    let found = find_visit(ctx, cache, req, p);
    let known = found.is_some();
    let zone = req.site.zone;
    let ping = req.int("ping", 0) == 1;
    // PHP copies the known visit's properties (visit_first_action_time, used by
    // `visit_duration` goals) only when the request continues it by the rules below — a visit
    // that a campaign change forces to start anew still sees them.
    let mut is_new = match found {
        None => true,
        Some(i) => {
            let v = cache.visit(i);
            req.int("new_visit", 0) != 0
                || v.last <= now - standard
                || (tr.create_new_visit_after_midnight
                    && zone.day_number(v.last) != zone.day_number(now))
                || (!tr.enable_userid_overwrites_visitorid
                    && v.user_id.as_deref().is_some_and(|u| !u.is_empty())
                    && uid
                        .as_deref()
                        .is_some_and(|u| Some(u) != v.user_id.as_deref()))
        }
    };

    let known_first_action = found.filter(|_| !is_new).map(|i| cache.visit(i).first);

    // Referrer of this hit (Referrers\Columns\Base::getReferrerInformationFromRequest).
    let url_param = req.str("url");
    let urlref = req.str("urlref");
    let no_exclusions = super::phpurl::ParamMatcher::default();
    let url_exclusions = ctx.matchers.get(&idsite).unwrap_or(&no_exclusions);
    let lists = snap.exclusions(req.site);
    let site_settings = SiteReferrerSettings {
        idsite,
        exclude_unknown_urls: req.site.exclude_unknown_urls,
        keep_url_fragment: snap.keep_fragment(req.site),
        excluded_referrers: &lists.referrers,
        url_exclusions,
    };
    let rreq = ReferrerRequest {
        url: &url_param,
        urlref: &urlref,
        raw: &req.params,
    };
    let existing = found
        .filter(|_| !is_new)
        .map(|i| existing_referrer(cache.visit(i)));
    let mut info = ctx
        .detector
        .detect(&site_settings, &rreq, existing.as_ref());
    if let Some(ex) = &existing {
        if campaign::campaign_forces_new_visit(tr.create_new_visit_when_campaign_changes, &info, ex)
            || (tr.create_new_visit_when_website_referrer_changes
                && info.referer_type == super::referrers::ReferrerType::Website
                && campaign::referrer_information_is_new(&info, ex))
        {
            is_new = true;
            info = ctx.detector.detect(&site_settings, &rreq, None);
        }
    }

    // Goals (manual), ecommerce, pings and the action.
    let idgoal = req.int("idgoal", -1);
    let goals: &[Goal] = snap.goals.get(&idsite).map(Vec::as_slice).unwrap_or(&[]);
    let mut converted: Vec<(Goal, String)> = Vec::new();
    let is_ecommerce = idgoal == 0;
    let idorder = req.str("ec_id");
    let is_order = is_ecommerce && !php::empty_str(&idorder);
    let mut spec = p.spec.clone();
    if idgoal > 0 {
        let Some(goal) = goals.iter().find(|g| g.idgoal == idgoal) else {
            return Err(HitError::Invalid(format!("idGoal {idgoal} does not exist")));
        };
        let url = actions::exclude_query_parameters(
            &url_param,
            snap.keep_fragment(req.site),
            url_exclusions,
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
            converted = goals::detect_for_action(goals, s, req, (known_first_action, now));
        }
    }
    let items = if is_ecommerce {
        goals::parse_items(req)
    } else {
        None
    };
    if is_order && !st.orders.insert((idsite, idorder.clone())) {
        return Err(HitError::Invalid(format!(
            "Invalid non-unique idsite/idorder combination ({idsite}, {idorder}), conversion was not inserted."
        )));
    }
    let visit_is_converted = !converted.is_empty() || is_order;

    // entry/exit ids: pageview → (url, name); site search → (NULL url, name); others: unchanged.
    let entry_exit: Option<(Option<u64>, Option<u64>)> = spec.as_ref().and_then(|s| match s.kind {
        Kind::Pageview => Some((
            Some(ctx.lookup(s, "idaction_url").unwrap_or(0)),
            ctx.lookup(s, "idaction_name"),
        )),
        Kind::SiteSearch => Some((None, ctx.lookup(s, "idaction_name"))),
        _ => None,
    });
    let kind = spec.as_ref().map(|s| s.kind);
    let counts_interaction = matches!(kind, Some(Kind::Pageview | Kind::SiteSearch));
    let counts_action = spec.is_some() && kind != Some(Kind::Content);
    let is_search = kind == Some(Kind::SiteSearch);
    let is_event = kind == Some(Kind::Event);

    let vi: usize;
    let time_spent_ref;
    let ref_ids: (Option<u64>, Option<u64>);
    let position: Option<i64>;
    let pageviews_before: i64;
    let had_cart;
    let mut conversion_referrer = None;
    if !is_new {
        let i = found.unwrap_or(0);
        vi = i;
        let old_key = cache.visit(i).idvisitor;
        let v = cache.visit_mut(i);
        had_cart = v.goal_buyer == 2 || v.goal_buyer == 3;
        ref_ids = (v.exit_url, v.exit_name);
        time_spent_ref = (now - v.last).clamp(0, standard);
        pageviews_before =
            v.total_interactions - v.total_searches + i64::from(kind == Some(Kind::Pageview));
        if let Some(vid) = p.visitor_id {
            v.idvisitor = vid;
        }
        if tr.enable_userid_overwrites_visitorid {
            if let Some(b) = uid
                .as_deref()
                .and_then(|u| hex::decode(request::user_id_hash(u)).ok())
            {
                if let Ok(b) = <[u8; 8]>::try_from(b) {
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
        } else {
            (prev_interactions >= 1).then_some(prev_interactions)
        };
        v.total_searches += i64::from(is_search);
        v.total_events += i64::from(is_event);
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
            v.user_id = Some(php::mb_substr(u, 200).to_owned());
        }
        if v.profilable != Some(1) {
            v.profilable = Some(i64::from(p.visitor_id.is_some()));
        }
        if is_ecommerce {
            let bt = if is_order {
                1
            } else if v.goal_buyer == 1 || v.goal_buyer == 3 {
                3
            } else {
                2
            };
            v.goal_buyer = bt;
        }
        if is_order {
            v.secs_since_order = Some(0);
        }
        if v.resolution.as_deref() == Some("unknown") {
            v.resolution = Some(resolution(req));
        }
        if let Some(mut newer) = super::referrers::ReferrerDetector::for_existing_visit(
            v.referer_type.map(|x| x as u8),
            &info,
        ) {
            if privacy::anonymises_referrer(snap) {
                // PHP anonymises only the values written to log_visit; the visit properties a
                // conversion of this request reads keep the detected referrer.
                set_referrer(v, &newer);
                conversion_referrer = Some(existing_referrer(v));
                privacy::anonymise_referrer_update(
                    snap,
                    Some(newer.referer_type as i64),
                    (
                        &mut newer.referer_url,
                        &mut newer.referer_name,
                        &mut newer.referer_keyword,
                    ),
                );
            }
            set_referrer(v, &newer);
        }
        apply_location_overrides(req, v);
        apply_visit_dimensions(snap, req, spec.as_ref(), v);
        if visit_is_converted {
            v.goal_converted = 1;
            v.total_time += idgoal + 2;
        }
        v.dirty = true;
        if v.idvisitor != old_key {
            cache.reindex_vid(i, (idsite, old_key));
        }
    } else {
        had_cart = false;
        ref_ids = (Some(0), Some(0));
        time_spent_ref = 0;
        position = counts_interaction.then_some(1);
        pageviews_before = i64::from(kind == Some(Kind::Pageview));
        let prev = found.map(|i| cache.visit(i).clone());
        let mut v = new_visit(ctx, req, p, prev.as_ref(), &info, spec.as_ref());
        v.goal_buyer = match (is_ecommerce, is_order) {
            (false, _) => 0,
            (true, true) => 1,
            (true, false) => 2,
        };
        v.secs_since_order = visit::seconds_since_order(prev.as_ref(), now, is_order);
        v.entry_name = Some(entry_exit.and_then(|(_, n)| n).unwrap_or(0));
        v.entry_url = entry_exit.and_then(|(u, _)| u);
        v.exit_name = Some(entry_exit.and_then(|(_, n)| n).unwrap_or(0));
        v.exit_url = Some(entry_exit.and_then(|(u, _)| u).unwrap_or(0));
        v.total_actions = i64::from(counts_action);
        v.total_interactions = i64::from(counts_interaction);
        v.total_searches = i64::from(is_search);
        v.total_events = i64::from(is_event);
        // VisitorReturning: 2 returning customer, 1 returning, 0 new.
        // PHP's `?:` chain: the current visit's value is not computed yet at this point, and a
        // previous value of 0 counts as "no order".
        let has_order = prev
            .as_ref()
            .is_some_and(|pv| pv.secs_since_order.is_some_and(|x| x != 0))
            || is_order;
        v.returning = if has_order { 2 } else { i64::from(known) };
        if visit_is_converted {
            v.goal_converted = 1;
            if known {
                v.total_time += idgoal + 2;
            }
        }
        vi = cache.add(v);
    }
    st.touched.push(vi);

    let action_index = match &spec {
        Some(s) => Some(record_action(
            ctx,
            cache,
            st,
            req,
            s,
            vi,
            &ActionAt {
                now,
                url_ref: ref_ids.0,
                name_ref: ref_ids.1,
                time_spent_ref,
                position,
                is_new,
            },
        )),
        None => {
            // A hit without action (ping, goal, ecommerce) still closes the time spent on the
            // visit's last action (CustomDimensionsRequestProcessor::recordLogs).
            if !is_new && time_spent_ref > 0 && has_action_dimension(snap, idsite) {
                if let Some(last) = cache.visit(vi).last_idlink_va {
                    set_time_spent(st, last, time_spent_ref);
                }
            }
            None
        }
    };

    if let Some((pv_id, cols)) = performance::timings(req, spec.as_ref()) {
        st.perf_updates.push(performance::PerfUpdate {
            visit: vi,
            pv_id,
            pending_before: st.pending.len(),
            cols,
        });
    }

    // Conversions: standard goals, then ecommerce.
    let visit_ref = conversion_referrer.unwrap_or_else(|| existing_referrer(cache.visit(vi)));
    let conv_ref = ctx.detector.for_conversion(
        &site_settings,
        &req.params,
        (&req.str("_rcn"), &req.str("_rck"), &req.str("_ref")),
        &visit_ref,
    );
    let mut base = goals::visit_columns(cache.visit(vi));
    base.push((
        "referer_type",
        conv_ref
            .referer_type
            .map_or(Val::Null, |x| Val::Int(i64::from(x))),
    ));
    base.push((
        "referer_name",
        Val::opt_str(conv_ref.referer_name.as_deref()),
    ));
    base.push((
        "referer_keyword",
        Val::opt_str(conv_ref.referer_keyword.as_deref()),
    ));
    base.push(("server_time", Val::Time(now)));
    for (goal, url) in converted {
        let mut cols = base.clone();
        let mut revenue = php::request_float_or(req.raw("revenue"), goal.revenue);
        if goal.event_value_as_revenue && goal.match_attribute.starts_with("event_") {
            if let Some(ev) = req.float("e_v") {
                revenue = ev;
            }
        }
        cols.extend([
            ("idgoal", Val::Int(goal.idgoal)),
            (
                "buster",
                Val::Int(if goal.allow_multiple { buster(now) } else { 0 }),
            ),
            ("url", Val::Str(url)),
            ("revenue", Val::Float(goals::round_revenue(revenue))),
            ("pageviews_before", Val::Int(pageviews_before)),
        ]);
        if let (Some(s), Some(_)) = (&spec, action_index) {
            cols.push((
                "idaction_url",
                Val::Int(ctx.lookup(s, "idaction_url").unwrap_or(0) as i64),
            ));
        }
        st.conversions.push(PendingConversion {
            visit: vi,
            action: action_index,
            cols,
            idorder: None,
        });
    }
    if is_ecommerce {
        let Some(items) = items else { return Ok(true) };
        let item_ids: Vec<[u64; 7]> = items
            .iter()
            .map(|it| {
                let mut ids = [0u64; 7];
                ids[0] = ctx.name_id(actions::types::SKU, &it.sku);
                ids[1] = ctx.name_id(actions::types::PRODUCT_NAME, &it.name);
                for (k, c) in it.categories.iter().enumerate().take(5) {
                    ids[2 + k] = ctx.name_id(actions::types::CATEGORY, c);
                }
                ids
            })
            .collect();
        let values: Vec<(f64, i64)> = items.iter().map(|it| (it.price, it.quantity)).collect();
        let count: i64 = items.iter().map(|it| it.quantity).sum();
        let revenue = goals::round_revenue(php::request_float_or(req.raw("revenue"), 0.0));
        let mut cols = base.clone();
        cols.extend([
            ("url", Val::Str(String::new())),
            ("revenue", Val::Float(revenue)),
            ("items", Val::Int(count)),
        ]);
        if is_order {
            let f = |name: &str| {
                req.float(name)
                    .map_or(Val::Null, |x| Val::Float(goals::round_revenue(x)))
            };
            cols.extend([
                ("idgoal", Val::Int(0)),
                ("buster", Val::Int(goals::hash_string_to_int(&idorder))),
                ("idorder", Val::Str(idorder.clone())),
                ("revenue_subtotal", f("ec_st")),
                ("revenue_tax", f("ec_tx")),
                ("revenue_shipping", f("ec_sh")),
                ("revenue_discount", f("ec_dt")),
                ("pageviews_before", Val::Int(pageviews_before)),
            ]);
        } else {
            cols.extend([("idgoal", Val::Int(-1)), ("buster", Val::Int(0))]);
        }
        let order_key = is_order.then(|| idorder.clone());
        if had_cart {
            // GoalManager: an open cart in the visit is updated (by a cart update or by the
            // order that closes it), not inserted again.
            let pending = st.conversions.iter_mut().rev().find(|c| {
                c.visit == vi
                    && c.cols
                        .iter()
                        .any(|(n, v)| *n == "idgoal" && *v == Val::Int(-1))
            });
            match pending {
                Some(c) => {
                    c.cols = cols;
                    c.idorder = order_key;
                }
                None => {
                    let idvisit = cache.visit(vi).idvisit;
                    st.cart_updates.push((idvisit, cols));
                }
            }
        } else {
            st.conversions.push(PendingConversion {
                visit: vi,
                action: None,
                cols,
                idorder: order_key,
            });
        }
        load_items(t, tx, cache, vi).await?;
        let idvisitor = cache.visit(vi).idvisitor;
        let order = if is_order { idorder.as_str() } else { "0" };
        goals::apply_items(
            cache.items_mut(vi),
            order,
            &item_ids,
            &values,
            now,
            idvisitor,
        );
        if !st.item_visits.contains(&vi) {
            st.item_visits.push(vi);
        }
    }
    Ok(true)
}

fn buster(last: i64) -> i64 {
    use rand::Rng;
    let d = super::sql::datetime(last);
    let digits: String = d
        .chars()
        .filter(char::is_ascii_digit)
        .skip(2)
        .take(8)
        .collect();
    let first: i64 = rand::rng().random_range(1..=3);
    format!("{first}{}{digits}", rand::rng().random_range(0..=9))
        .parse()
        .unwrap_or(0)
}

async fn load_items(
    t: &Tracker,
    tx: &mut Transaction<'static>,
    cache: &mut ShardCache,
    vi: usize,
) -> Result<(), HitError> {
    if cache.items_loaded(vi) {
        return Ok(());
    }
    let idvisit = cache.visit(vi).idvisit;
    let mut rows = Vec::new();
    if idvisit != 0 {
        let sql = format!(
            "SELECT idorder, idaction_sku, idaction_name, idaction_category, idaction_category2, \
             idaction_category3, idaction_category4, idaction_category5, price, quantity, deleted, \
             TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', server_time), idvisitor \
             FROM `{}` WHERE idvisit = {idvisit}",
            t.table("log_conversion_item")
        );
        let found: Vec<mysql_async::Row> = tx.query(sql).await?;
        for r in found {
            let idorder: String = r.get(0).unwrap_or_default();
            let mut ids = [0u64; 7];
            for (k, id) in ids.iter_mut().enumerate() {
                *id = r.get(1 + k).unwrap_or(0);
            }
            let vid: Vec<u8> = r.get(12).unwrap_or_default();
            rows.push(ItemRow {
                stored_idorder: Some(idorder.clone()),
                idorder,
                ids,
                price: r.get(8).unwrap_or(0.0),
                quantity: r.get(9).unwrap_or(0),
                deleted: r.get(10).unwrap_or(0),
                server_time: r.get(11).unwrap_or(0),
                idvisitor: <[u8; 8]>::try_from(vid.as_slice()).unwrap_or([0; 8]),
                dirty: false,
            });
        }
    }
    cache.set_items(vi, rows);
    Ok(())
}

/// Where in its visit an action happens.
#[derive(Debug, Clone, Copy)]
struct ActionAt {
    now: i64,
    url_ref: Option<u64>,
    name_ref: Option<u64>,
    time_spent_ref: i64,
    position: Option<i64>,
    is_new: bool,
}

/// Queues the action row and maintains last_idlink_va / time_spent.
fn record_action(
    ctx: &HitCtx<'_>,
    cache: &mut ShardCache,
    st: &mut BatchState,
    req: &Request<'_>,
    s: &ActionSpec,
    vi: usize,
    at: &ActionAt,
) -> usize {
    let ActionAt {
        now,
        url_ref,
        name_ref,
        time_spent_ref,
        position,
        is_new,
    } = *at;
    let idsite = cache.visit(vi).idsite;
    let mut cols: Vec<(&'static str, Val)> = vec![
        ("idsite", Val::Int(i64::from(idsite))),
        ("idvisitor", Val::Bin(cache.visit(vi).idvisitor.to_vec())),
        (
            "idaction_url_ref",
            url_ref.map_or(Val::Null, |x| Val::Int(x as i64)),
        ),
        (
            "idaction_name_ref",
            name_ref.map_or(Val::Null, |x| Val::Int(x as i64)),
        ),
        ("server_time", Val::Time(now)),
        ("time_spent_ref_action", Val::Int(time_spent_ref)),
        (
            "idaction_url",
            if s.kind == Kind::SiteSearch {
                Val::Null
            } else {
                Val::Int(ctx.lookup(s, "idaction_url").unwrap_or(0) as i64)
            },
        ),
    ];
    for l in s.lookups.iter().filter(|l| l.column != "idaction_url") {
        cols.push((l.column, Val::Int(ctx.id(l) as i64)));
    }
    if let Some(pos) = position {
        cols.push(("pageview_position", Val::Int(pos)));
    }
    let idpageview: String = req.str("pv_id").chars().take(6).collect();
    let key = performance::PageViewKey::of(s, &idpageview);
    cols.push(("idpageview", Val::Str(idpageview)));
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
    for (k, (_, col)) in actions::PERF.iter().enumerate() {
        if let Some(x) = s.perf[k] {
            cols.push((col, Val::Int(x)));
        }
    }
    let dims = ctx
        .snap
        .dimensions
        .get(&idsite)
        .map_or(&[][..], Vec::as_slice);
    for (slot, val) in dimensions::values_in_scope(dims, "action", req, Some(s)) {
        cols.push((dimensions::COLUMNS[slot], Val::Str(val)));
    }
    st.pending.push(PendingAction {
        visit: vi,
        cols,
        key,
    });
    let ai = st.pending.len() - 1;
    // CustomDimensionsRequestProcessor: last_idlink_va and the previous action's time_spent are
    // maintained only on sites with an action-scope custom dimension.
    if has_action_dimension(ctx.snap, idsite) {
        let previous = cache.visit(vi).last_idlink_va;
        cache.visit_mut(vi).last_idlink_va = Some(LinkRef::Pending(ai));
        if let Some(previous) = previous.filter(|_| !is_new && time_spent_ref > 0) {
            set_time_spent(st, previous, time_spent_ref);
        }
    }
    ai
}

fn has_action_dimension(snap: &Snapshot, idsite: u32) -> bool {
    snap.dimensions
        .get(&idsite)
        .is_some_and(|ds| ds.iter().any(|d| d.scope == "action"))
}

fn set_time_spent(st: &mut BatchState, action: LinkRef, secs: i64) {
    match action {
        LinkRef::Pending(prev) => {
            if let Some(a) = st.pending.get_mut(prev) {
                a.cols.retain(|(c, _)| *c != "time_spent");
                a.cols.push(("time_spent", Val::Int(secs)));
            }
        }
        LinkRef::Id(id) => st.time_spent_updates.push((id, secs)),
    }
}
