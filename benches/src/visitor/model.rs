//! Generation of visits and hits (see the module header in `mod.rs`).

use std::fmt::Write as _;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::catalog::{self, AGENTS, LANGUAGES, PAGES};
use super::mix::{HitKind, Mix};
use crate::tag::{RunTag, TagError};
use crate::target::{Assigner, Distribution};

/// What `encodeURIComponent` leaves alone.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*');

/// Settings of the visitor model.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// Site ids with relative weights.
    pub sites: Vec<(u32, u32)>,
    /// Mix of the hits after the landing page view.
    pub mix: Mix,
    /// Mean number of hits per visit, landing page view included (≥ 1).
    pub mean_hits_per_visit: f64,
    /// Share of new visits made by a visitor seen before (0..=1).
    pub returning_share: f64,
    /// Visits open at the same time (interleaving width).
    pub concurrent_visits: usize,
    /// Scheme and host of the generated page URLs, e.g. `https://www.example.com`.
    pub page_base: String,
    /// Goal ids manual goal conversions use.
    pub goal_ids: Vec<u32>,
    /// How visitors are spread over the targets.
    pub distribution: Distribution,
    /// Weights of the targets (their count is the number of targets).
    pub target_weights: Vec<u32>,
    /// Put the browser's user agent and language into `ua`/`lang` parameters (bulk requests
    /// carry one set of headers for many visitors, as import_logs.py does).
    pub params_carry_headers: bool,
    /// Unix time used for `_idts`/`_viewts` of the first visits.
    pub epoch: i64,
    /// Run identity for hit tags.
    pub run_tag: RunTag,
}

/// One generated hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Position in the run, 0-based; encoded in the hit's `pv_id`.
    pub seq: u64,
    /// The visitor's `_id` (16 lowercase hex).
    pub visitor_id: String,
    /// Index of the target this visitor is bound to.
    pub target: usize,
    /// `idsite`.
    pub site: u32,
    /// What the hit is.
    pub kind: HitKind,
    /// The form-encoded tracking parameters (no leading `?`).
    pub query: String,
    /// `User-Agent` header.
    pub user_agent: &'static str,
    /// `Accept-Language` header.
    pub language: &'static str,
}

#[derive(Debug, Clone)]
struct Visitor {
    id: String,
    target: usize,
    site: u32,
    agent: usize,
    language: usize,
    resolution: &'static str,
    first_ts: i64,
    last_ts: i64,
    visits: u32,
}

#[derive(Debug)]
struct Visit {
    visitor: Visitor,
    hits_left: u32,
    started: bool,
    page: usize,
    landing_query: Option<&'static str>,
}

/// How many past visitors are remembered for returning visits.
const RETURNING_POOL: usize = 50_000;

/// The stream of hits.
pub struct VisitorModel {
    cfg: ModelConfig,
    rng: StdRng,
    assigner: Assigner,
    active: Vec<Visit>,
    past: Vec<Visitor>,
    next_seq: u64,
    agent_total: u32,
    language_total: u32,
    site_total: u32,
}

impl VisitorModel {
    /// A model seeded with `seed`.
    pub fn new(cfg: ModelConfig, seed: u64) -> Self {
        let assigner = Assigner::new(cfg.distribution, cfg.target_weights.clone());
        let mut model = Self {
            rng: StdRng::seed_from_u64(seed),
            assigner,
            active: Vec::new(),
            past: Vec::new(),
            next_seq: 0,
            agent_total: AGENTS.iter().map(|a| a.weight).sum(),
            language_total: LANGUAGES.iter().map(|l| l.1).sum(),
            site_total: cfg.sites.iter().map(|s| s.1).sum::<u32>().max(1),
            cfg,
        };
        let width = model.cfg.concurrent_visits.max(1);
        for _ in 0..width {
            let visit = model.open_visit();
            model.active.push(visit);
        }
        model
    }

    /// The next hit.
    pub fn next_hit(&mut self) -> Result<Hit, TagError> {
        let slot = self.rng.random_range(0..self.active.len());
        let seq = self.next_seq;
        self.next_seq += 1;
        let hit = self.hit_for(slot, seq)?;
        if self.active[slot].hits_left == 0 {
            let fresh = self.open_visit();
            let done = std::mem::replace(&mut self.active[slot], fresh);
            self.remember(done.visitor);
        }
        Ok(hit)
    }

    fn remember(&mut self, visitor: Visitor) {
        if self.past.len() < RETURNING_POOL {
            self.past.push(visitor);
        } else {
            let i = self.rng.random_range(0..self.past.len());
            self.past[i] = visitor;
        }
    }

    fn open_visit(&mut self) -> Visit {
        let returning = !self.past.is_empty()
            && self
                .rng
                .random_bool(self.cfg.returning_share.clamp(0.0, 1.0));
        let visitor = if returning {
            let i = self.rng.random_range(0..self.past.len());
            let mut v = self.past.swap_remove(i);
            v.visits += 1;
            // the previous visit lies in the past (1 hour to 30 days before this run), so
            // `_viewts` and `_idts` are never in the future, as with a real browser
            let previous = self.cfg.epoch - self.rng.random_range(3_600..30 * 86_400);
            v.first_ts = v.first_ts.min(previous);
            v.last_ts = previous;
            v
        } else {
            self.new_visitor()
        };
        let extra = (self.cfg.mean_hits_per_visit - 1.0).max(0.0);
        let hits_left = if extra <= 0.0 {
            1
        } else {
            let p = 1.0 / (extra + 1.0);
            let u: f64 = self.rng.random();
            1 + ((1.0 - u).ln() / (1.0 - p).ln()).floor().min(500.0) as u32
        };
        let page = self.rng.random_range(0..PAGES.len());
        Visit {
            visitor,
            hits_left,
            started: false,
            page,
            landing_query: None,
        }
    }

    fn new_visitor(&mut self) -> Visitor {
        let id = format!("{:016x}", self.rng.random::<u64>());
        let target = self.assigner.assign(&mut self.rng);
        let site = self.pick_site();
        let agent = pick_weighted(
            &mut self.rng,
            self.agent_total,
            AGENTS.iter().map(|a| a.weight),
        );
        let language = pick_weighted(
            &mut self.rng,
            self.language_total,
            LANGUAGES.iter().map(|l| l.1),
        );
        let resolutions = AGENTS[agent].resolutions;
        let resolution = resolutions[self.rng.random_range(0..resolutions.len())];
        let first_ts = self.cfg.epoch;
        Visitor {
            id,
            target,
            site,
            agent,
            language,
            resolution,
            first_ts,
            last_ts: first_ts,
            visits: 1,
        }
    }

    fn pick_site(&mut self) -> u32 {
        let i = pick_weighted(
            &mut self.rng,
            self.site_total,
            self.cfg.sites.iter().map(|s| s.1),
        );
        self.cfg.sites.get(i).map_or(1, |s| s.0)
    }

    fn hit_for(&mut self, slot: usize, seq: u64) -> Result<Hit, TagError> {
        let pv_id = self.cfg.run_tag.pv_id(seq)?;
        let landing = !self.active[slot].started;
        let kind = if landing {
            HitKind::Pageview
        } else {
            let total = self.cfg.mix.total();
            let roll = self.rng.random_range(0..total);
            self.cfg.mix.pick(roll)
        };
        let kind = if kind == HitKind::Goal && self.cfg.goal_ids.is_empty() {
            HitKind::Pageview
        } else {
            kind
        };
        if kind == HitKind::Pageview && !landing {
            self.active[slot].page = self.rng.random_range(0..PAGES.len());
        }
        let mut q = Query::default();
        let visitor = self.active[slot].visitor.clone();
        q.push("idsite", &visitor.site.to_string());
        q.push("rec", "1");
        q.push("r", &format!("{:06}", self.rng.random_range(0..1_000_000)));
        q.push("h", &self.rng.random_range(0..24).to_string());
        q.push("m", &self.rng.random_range(0..60).to_string());
        q.push("s", &self.rng.random_range(0..60).to_string());
        let (path, title) = PAGES[self.active[slot].page];
        if landing {
            self.landing(slot, &mut q, path);
        } else {
            let mut url = format!("{}{path}", self.cfg.page_base);
            if let Some(c) = self.active[slot]
                .landing_query
                .filter(|_| kind != HitKind::Pageview)
            {
                url = format!("{url}?{c}");
            }
            if kind == HitKind::Search {
                let kw = catalog::KEYWORDS[self.rng.random_range(0..catalog::KEYWORDS.len())];
                url = format!(
                    "{}/search?q={}",
                    self.cfg.page_base,
                    utf8_percent_encode(kw, COMPONENT)
                );
            }
            q.push("url", &url);
        }
        match kind {
            HitKind::Pageview => {
                q.push("action_name", title);
                if self.rng.random_bool(0.7) {
                    self.timings(&mut q);
                }
            }
            HitKind::Search => self.search(&mut q),
            HitKind::Event => {
                let (c, a, n, v) = catalog::EVENTS[self.rng.random_range(0..catalog::EVENTS.len())];
                q.push("e_c", c);
                q.push("e_a", a);
                if let Some(n) = n {
                    q.push("e_n", n);
                }
                if let Some(v) = v {
                    q.push("e_v", v);
                }
            }
            HitKind::Download => q.push(
                "download",
                catalog::DOWNLOADS[self.rng.random_range(0..catalog::DOWNLOADS.len())],
            ),
            HitKind::Outlink => q.push(
                "link",
                catalog::OUTLINKS[self.rng.random_range(0..catalog::OUTLINKS.len())],
            ),
            HitKind::Content => {
                let (n, p, t) =
                    catalog::CONTENTS[self.rng.random_range(0..catalog::CONTENTS.len())];
                q.push("c_n", n);
                q.push("c_p", p);
                q.push("c_t", t);
                if self.rng.random_bool(0.4) {
                    q.push(
                        "c_i",
                        catalog::INTERACTIONS
                            [self.rng.random_range(0..catalog::INTERACTIONS.len())],
                    );
                }
            }
            HitKind::Goal => {
                let goal = self.cfg.goal_ids[self.rng.random_range(0..self.cfg.goal_ids.len())];
                q.push("idgoal", &goal.to_string());
                if self.rng.random_bool(0.5) {
                    q.push(
                        "revenue",
                        &format!(
                            "{}.{:02}",
                            self.rng.random_range(1..100),
                            self.rng.random_range(0..100)
                        ),
                    );
                }
            }
            HitKind::Order => self.order(&mut q, seq),
            HitKind::Ping => q.push("ping", "1"),
        }
        self.visitor_params(&mut q, &visitor);
        q.push("pv_id", &pv_id);
        if self.cfg.params_carry_headers {
            q.push("ua", AGENTS[visitor.agent].ua);
            q.push("lang", LANGUAGES[visitor.language].0);
        }
        let visit = &mut self.active[slot];
        visit.started = true;
        visit.hits_left = visit.hits_left.saturating_sub(1);
        Ok(Hit {
            seq,
            visitor_id: visitor.id,
            target: visitor.target,
            site: visitor.site,
            kind,
            query: q.0,
            user_agent: AGENTS[visitor.agent].ua,
            language: LANGUAGES[visitor.language].0,
        })
    }

    fn landing(&mut self, slot: usize, q: &mut Query, path: &str) {
        let roll = self.rng.random_range(0..100);
        let mut url = format!("{}{path}", self.cfg.page_base);
        let pick = |rng: &mut StdRng, list: &[&'static str]| list[rng.random_range(0..list.len())];
        match roll {
            0..35 => {}
            35..65 => {
                let kw = pick(&mut self.rng, catalog::KEYWORDS);
                let engine = pick(&mut self.rng, catalog::SEARCH_ENGINES);
                q.push(
                    "urlref",
                    &format!("{engine}{}", utf8_percent_encode(kw, COMPONENT)),
                );
            }
            65..75 => q.push("urlref", pick(&mut self.rng, catalog::SOCIALS)),
            75..85 => q.push("urlref", pick(&mut self.rng, catalog::WEBSITES)),
            _ => {
                let campaign = pick(&mut self.rng, catalog::CAMPAIGNS);
                url = format!("{url}?{campaign}");
                self.active[slot].landing_query = Some(campaign);
            }
        }
        q.push("url", &url);
    }

    fn timings(&mut self, q: &mut Query) {
        for (key, lo, hi) in [
            ("pf_net", 0, 300),
            ("pf_srv", 20, 900),
            ("pf_tfr", 1, 400),
            ("pf_dm1", 50, 2500),
            ("pf_dm2", 10, 1500),
            ("pf_onl", 0, 200),
        ] {
            q.push(key, &self.rng.random_range(lo..hi).to_string());
        }
    }

    fn search(&mut self, q: &mut Query) {
        let kw = catalog::KEYWORDS[self.rng.random_range(0..catalog::KEYWORDS.len())];
        q.push("search", kw);
        let cat =
            catalog::SEARCH_CATEGORIES[self.rng.random_range(0..catalog::SEARCH_CATEGORIES.len())];
        if !cat.is_empty() {
            q.push("search_cat", cat);
        }
        q.push("search_count", &self.rng.random_range(0..60).to_string());
    }

    fn order(&mut self, q: &mut Query, seq: u64) {
        q.push("idgoal", "0");
        q.push("ec_id", &self.cfg.run_tag.order_id(seq));
        let lines = self.rng.random_range(1..4);
        let mut items = String::from("[");
        let mut subtotal = 0.0;
        for i in 0..lines {
            let (sku, name, cat, price) =
                catalog::PRODUCTS[self.rng.random_range(0..catalog::PRODUCTS.len())];
            let qty = self.rng.random_range(1..4);
            subtotal += price * f64::from(qty);
            if i > 0 {
                items.push(',');
            }
            let _ = write!(items, r#"["{sku}-{i}","{name}","{cat}",{price},{qty}]"#);
        }
        items.push(']');
        let tax = (subtotal * 0.19 * 100.0).round() / 100.0;
        let shipping = if subtotal > 50.0 { 0.0 } else { 4.9 };
        q.push("ec_items", &items);
        q.push("ec_st", &format!("{subtotal:.2}"));
        q.push("ec_tx", &format!("{tax:.2}"));
        q.push("ec_sh", &format!("{shipping:.2}"));
        q.push("revenue", &format!("{:.2}", subtotal + tax + shipping));
    }

    fn visitor_params(&mut self, q: &mut Query, v: &Visitor) {
        q.push("_id", &v.id);
        q.push("_idts", &v.first_ts.to_string());
        q.push("_idvc", &v.visits.to_string());
        if v.visits > 1 {
            q.push("_viewts", &v.last_ts.to_string());
        }
        q.push("res", v.resolution);
        q.push("cookie", "1");
        q.push("pdf", "1");
        if let Some(uadata) = AGENTS[v.agent].uadata {
            q.push("uadata", uadata);
        }
    }
}

fn pick_weighted(rng: &mut StdRng, total: u32, weights: impl Iterator<Item = u32>) -> usize {
    let mut roll = rng.random_range(0..total.max(1));
    let mut last = 0;
    for (i, w) in weights.enumerate() {
        if roll < w {
            return i;
        }
        roll -= w;
        last = i;
    }
    last
}

/// A form-encoded query string under construction.
#[derive(Default)]
struct Query(String);

impl Query {
    fn push(&mut self, key: &str, value: &str) {
        if !self.0.is_empty() {
            self.0.push('&');
        }
        self.0.push_str(key);
        self.0.push('=');
        let _ = write!(self.0, "{}", utf8_percent_encode(value, COMPONENT));
    }
}
