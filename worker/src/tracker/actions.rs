//! What action a request is, and the `log_action` names it needs — Matomo's `Action::factory`,
//! `ActionPageview`, `ActionSiteSearch`, `ActionClickUrl`, `ActionDownloadUrl`, `ActionEvent`,
//! `ActionContent`, `PageUrl` and the action dimensions (product views, events, contents,
//! performance timings, pageview id).
//!
//! Pure: the result is a list of (column, name, type, url_prefix) lookups that
//! [`super::log_action`] resolves for the whole batch at once.

use super::php;
use super::phpurl::{self, ParamMatcher};
use super::request::Request;
use super::settings::Snapshot;

/// log_action types (`Action::TYPE_*`).
pub mod types {
    /// Page URL.
    pub const PAGE_URL: u8 = 1;
    /// Outlink.
    pub const OUTLINK: u8 = 2;
    /// Download.
    pub const DOWNLOAD: u8 = 3;
    /// Page title.
    pub const PAGE_TITLE: u8 = 4;
    /// Ecommerce SKU.
    pub const SKU: u8 = 5;
    /// Ecommerce product name.
    pub const PRODUCT_NAME: u8 = 6;
    /// Ecommerce category.
    pub const CATEGORY: u8 = 7;
    /// Site search keyword.
    pub const SITE_SEARCH: u8 = 8;
    /// Event category.
    pub const EVENT_CATEGORY: u8 = 10;
    /// Event action.
    pub const EVENT_ACTION: u8 = 11;
    /// Event name.
    pub const EVENT_NAME: u8 = 12;
    /// Content name.
    pub const CONTENT_NAME: u8 = 13;
    /// Content piece.
    pub const CONTENT_PIECE: u8 = 14;
    /// Content target.
    pub const CONTENT_TARGET: u8 = 15;
    /// Content interaction.
    pub const CONTENT_INTERACTION: u8 = 16;
}

/// The action classes, in `Action::factory` priority order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A page view.
    Pageview,
    /// A site search.
    SiteSearch,
    /// A content impression or interaction.
    Content,
    /// An event.
    Event,
    /// An outlink.
    Outlink,
    /// A download.
    Download,
}

/// One name to resolve to an idaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Lookup {
    /// Column of log_link_visit_action.
    pub column: &'static str,
    /// Name ('' → id 0, like PHP's `false`).
    pub name: String,
    /// log_action type.
    pub kind: u8,
    /// url_prefix for page URLs.
    pub prefix: Option<i64>,
}

/// Everything recorded for one action.
#[derive(Debug, Clone)]
pub struct ActionSpec {
    /// Class.
    pub kind: Kind,
    /// Names to resolve.
    pub lookups: Vec<Lookup>,
    /// Event value.
    pub custom_float: Option<f64>,
    /// Site search category.
    pub search_cat: Option<String>,
    /// Site search count.
    pub search_count: Option<i64>,
    /// Product view price.
    pub product_price: Option<f64>,
    /// time_network … time_on_load (pageviews only).
    pub perf: [Option<i64>; 6],
    /// The URL the action happened on, parameters excluded (`getActionUrl`).
    pub url: String,
    /// The URL before parameters were excluded (`getActionUrlRaw`, used by goal matching).
    pub raw_url: String,
    /// The page title / action name (for goals).
    pub name: String,
}

impl ActionSpec {
    /// The idaction of `column` once resolved (0 when the lookup had an empty name).
    pub fn lookup(&self, column: &str) -> Option<&Lookup> {
        self.lookups.iter().find(|l| l.column == column)
    }
}

/// Performance parameters and their columns.
pub const PERF: [(&str, &str); 6] = [
    ("pf_net", "time_network"),
    ("pf_srv", "time_server"),
    ("pf_tfr", "time_transfer"),
    ("pf_dm1", "time_dom_processing"),
    ("pf_dm2", "time_dom_completion"),
    ("pf_onl", "time_on_load"),
];

/// Why an action cannot be recorded (PHP throws InvalidRequestParameterException).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ActionError(pub String);

/// Campaign name and keyword parameters (`campaign_var_name`, `campaign_keyword_var_name`).
pub const CAMPAIGN_PARAMS: [&str; 15] = [
    "pk_cpn",
    "pk_campaign",
    "piwik_campaign",
    "mtm_campaign",
    "matomo_campaign",
    "utm_campaign",
    "utm_source",
    "utm_medium",
    "pk_kwd",
    "pk_keyword",
    "piwik_kwd",
    "mtm_kwd",
    "mtm_keyword",
    "matomo_kwd",
    "utm_term",
];

/// `url_query_parameter_to_exclude_from_url` default.
pub const DEFAULT_EXCLUDED: [&str; 16] = [
    "gclid",
    "fbclid",
    "msclkid",
    "twclid",
    "wbraid",
    "gbraid",
    "yclid",
    "fb_xd_fragment",
    "fb_comment_id",
    "phpsessid",
    "jsessionid",
    "sessionid",
    "aspsessionid",
    "doing_wp_cron",
    "sid",
    "pk_vid",
];

/// `PageUrl::cleanupString`: trim, drop \n \r \0, cut to the byte limit (on a char boundary).
pub fn cleanup_string(s: &str, limit: usize) -> String {
    let t = php::php_trim(s).replace(['\n', '\r', '\0'], "");
    if t.len() <= limit {
        return t;
    }
    let mut end = limit;
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    t[..end].to_owned()
}

/// `PageUrl::convertMatrixUrl`.
fn convert_matrix_url(url: &str) -> String {
    let Some(semi) = url.find(';') else {
        return url.to_owned();
    };
    let q = url.find('?');
    let mut u = url.to_owned();
    let mut replace = q.is_none();
    if let Some(q) = q {
        if q > semi {
            u.replace_range(q..q + 1, ";");
            replace = true;
        }
    }
    if replace {
        if let Some(first) = u.find(';') {
            u.replace_range(first..first + 1, "?");
        }
        u = u.replace(';', "&");
    }
    u
}

/// `PageUrl::cleanupUrl`.
pub fn cleanup_url(url: &str, limit: usize) -> String {
    let un = matomo_wire::php::htmlspecialchars_decode(url);
    convert_matrix_url(&cleanup_string(&un, limit))
}

/// Parameters removed from page URLs of a site.
pub fn excluded_params(snap: &Snapshot, site_excluded: &[String]) -> ParamMatcher {
    let mut all: Vec<String> = vec!["ignore_referrer".into(), "ignore_referer".into()];
    all.extend(site_excluded.iter().cloned());
    all.extend(snap.global_excluded_parameters.iter().cloned());
    all.extend(DEFAULT_EXCLUDED.iter().map(|s| s.to_string()));
    all.extend(CAMPAIGN_PARAMS.iter().map(|s| s.to_string()));
    ParamMatcher::new(&all)
}

/// `PageUrl::excludeQueryParametersFromUrl`.
pub fn exclude_query_parameters(
    url: &str,
    keep_fragment: bool,
    exclude: &ParamMatcher,
    limit: usize,
) -> String {
    let clean = cleanup_url(url, limit);
    let Some(mut parsed) = phpurl::parse_url(&clean) else {
        return String::new();
    };
    if let Some(h) = parsed.host.as_mut() {
        *h = h.to_lowercase();
    }
    if let Some(f) = parsed.fragment.as_mut() {
        if !php::empty_str(f) {
            if keep_fragment {
                if f.ends_with('#') {
                    f.pop();
                }
            } else {
                f.clear();
            }
        }
    }
    match parsed.query.as_deref() {
        Some(q) if !php::empty_str(q) => {
            let params = phpurl::query_params(q);
            parsed.query = Some(phpurl::query_string_excluding(&params, exclude));
        }
        _ => {
            if let Some(f) = parsed.fragment.as_deref().filter(|f| !php::empty_str(f)) {
                let params = phpurl::query_params(f);
                parsed.fragment = Some(phpurl::query_string_excluding(&params, exclude));
            }
        }
    }
    parsed.reverse()
}

/// `PageUrl::getUrlIfLookValid`.
pub fn url_if_look_valid(url: &str, limit: usize) -> Option<String> {
    let u = cleanup_string(url, limit);
    phpurl::is_look_like_url(&u).then_some(u)
}

/// `PageUrl::normalizeUrl`: (url without prefix, prefix id).
pub fn normalize_url(url: &str) -> (String, Option<i64>) {
    for (prefix, id) in [
        ("http://www.", 1),
        ("http://", 0),
        ("https://www.", 3),
        ("https://", 2),
    ] {
        if url.len() >= prefix.len()
            && url.is_char_boundary(prefix.len())
            && url[..prefix.len()].eq_ignore_ascii_case(prefix)
        {
            return (url[prefix.len()..].to_owned(), Some(id));
        }
    }
    (url.to_owned(), None)
}

/// Context needed to classify an action.
pub struct ActionCtx<'s> {
    /// Configuration.
    pub snap: &'s Snapshot,
    /// Parameters removed from page URLs.
    pub exclude: &'s ParamMatcher,
    /// page_maximum_length.
    pub limit: usize,
    /// `[General] action_title_category_delimiter` ('' = titles kept as sent).
    pub title_delimiter: &'s str,
}

/// `ActionPageview::cleanupActionName`: with a delimiter, the title is split on it, every part
/// trimmed, empty parts dropped and the rest joined again.
pub fn cleanup_action_name(name: &str, delimiter: &str) -> String {
    if delimiter.is_empty() {
        return name.to_owned();
    }
    name.split(delimiter)
        .map(php::php_trim)
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(delimiter)
}

fn page_url_lookup(column: &'static str, url: &Option<String>, kind: u8) -> Lookup {
    match url {
        Some(u) if !php::empty_str(u) => {
            let (name, prefix) = normalize_url(u);
            Lookup {
                column,
                name,
                kind,
                prefix,
            }
        }
        _ => Lookup {
            column,
            name: String::new(),
            kind,
            prefix: None,
        },
    }
}

/// `Action::factory` plus the action dimensions' lookups and values.
pub fn classify(req: &Request<'_>, ctx: &ActionCtx<'_>) -> Result<ActionSpec, ActionError> {
    let site = req.site;
    let limit = ctx.limit;
    let keep_fragment = ctx.snap.keep_fragment(site);
    let set_url = |u: &str| -> Option<String> {
        let u2 = exclude_query_parameters(u, keep_fragment, ctx.exclude, limit);
        url_if_look_valid(&u2, limit)
    };
    let url_param = req.str("url");
    let mut candidates: Vec<Kind> = vec![Kind::Pageview];
    let search = if site.sitesearch {
        detect_site_search(req, ctx, &url_param)
    } else {
        None
    };
    if search.is_some() {
        candidates.push(Kind::SiteSearch);
    }
    if !php::empty_str(&req.str("c_n")) {
        candidates.push(Kind::Content);
    }
    if !req.str("e_c").is_empty() && !req.str("e_a").is_empty() {
        candidates.push(Kind::Event);
    }
    if !php::empty_str(&req.str("link")) {
        candidates.push(Kind::Outlink);
    }
    if !php::empty_str(&req.str("download")) {
        candidates.push(Kind::Download);
    }
    let kind = candidates.iter().copied().max().unwrap_or(Kind::Pageview);
    let mut spec = ActionSpec {
        kind,
        lookups: Vec::new(),
        custom_float: None,
        search_cat: None,
        search_count: None,
        product_price: None,
        perf: [None; 6],
        url: String::new(),
        raw_url: url_if_look_valid(&url_param, limit).unwrap_or_default(),
        name: String::new(),
    };
    match kind {
        Kind::Pageview => {
            let url = set_url(&url_param);
            let title = cleanup_action_name(&req.str("action_name"), ctx.title_delimiter);
            let name = cleanup_string(&title, limit);
            spec.url = url.clone().unwrap_or_default();
            spec.name = name.clone();
            spec.lookups.push(Lookup {
                column: "idaction_name",
                name,
                kind: types::PAGE_TITLE,
                prefix: None,
            });
            spec.lookups
                .push(page_url_lookup("idaction_url", &url, types::PAGE_URL));
            for (i, (param, _)) in PERF.iter().enumerate() {
                let v = req.int(param, -1);
                if v == -1 {
                    continue;
                }
                if v < 0 {
                    return Err(ActionError(format!("Value for {param} can't be negative.")));
                }
                if v <= 16_777_215 {
                    spec.perf[i] = Some(v);
                }
            }
        }
        Kind::SiteSearch => {
            let (keyword, url, cat, count) = search.unwrap_or_default();
            let name = cleanup_string(&keyword, limit);
            spec.url = url.as_deref().and_then(&set_url).unwrap_or_default();
            spec.name = name.clone();
            spec.lookups.push(Lookup {
                column: "idaction_name",
                name,
                kind: types::SITE_SEARCH,
                prefix: None,
            });
            let cat = php::php_trim(&cat).to_owned();
            spec.search_cat = Some(if php::empty_str(&cat) {
                cat
            } else {
                truncate_bytes(&cat, 200)
            });
            spec.search_count = count;
        }
        Kind::Content => {
            let url = set_url(&url_param);
            spec.url = url.clone().unwrap_or_default();
            // ActionContent looks its URL up as TYPE_CONTENT, unnormalised.
            spec.lookups.push(Lookup {
                column: "idaction_url",
                name: url.unwrap_or_default(),
                kind: types::CONTENT_NAME,
                prefix: None,
            });
            let c_n = php::php_trim(&req.str("c_n")).to_owned();
            if c_n.is_empty() {
                return Err(ActionError(
                    "Param `c_n` must not be empty or filled with whitespaces".into(),
                ));
            }
            spec.lookups.push(Lookup {
                column: "idaction_content_name",
                name: c_n,
                kind: types::CONTENT_NAME,
                prefix: None,
            });
            let c_p = php::php_trim(&req.str("c_p")).to_owned();
            if !c_p.is_empty() {
                spec.lookups.push(Lookup {
                    column: "idaction_content_piece",
                    name: c_p,
                    kind: types::CONTENT_PIECE,
                    prefix: None,
                });
            }
            let c_t = php::php_trim(&req.str("c_t")).to_owned();
            if !c_t.is_empty() {
                spec.lookups.push(Lookup {
                    column: "idaction_content_target",
                    name: c_t,
                    kind: types::CONTENT_TARGET,
                    prefix: None,
                });
            }
            let c_i = php::php_trim(&req.str("c_i")).to_owned();
            if !c_i.is_empty() {
                spec.lookups.push(Lookup {
                    column: "idaction_content_interaction",
                    name: c_i,
                    kind: types::CONTENT_INTERACTION,
                    prefix: None,
                });
            }
        }
        Kind::Event => {
            let url = set_url(&url_param);
            spec.url = url.clone().unwrap_or_default();
            // ActionEvent looks its normalised URL up with its own type (TYPE_EVENT = 10).
            spec.lookups
                .push(page_url_lookup("idaction_url", &url, types::EVENT_CATEGORY));
            let e_c = php::php_trim(&req.str("e_c")).to_owned();
            let e_a = php::php_trim(&req.str("e_a")).to_owned();
            if e_c.is_empty() {
                return Err(ActionError(
                    "Param `e_c` must not be empty or filled with whitespaces".into(),
                ));
            }
            if e_a.is_empty() {
                return Err(ActionError(
                    "Param `e_a` must not be empty or filled with whitespaces".into(),
                ));
            }
            spec.name = e_c.clone();
            spec.lookups.push(Lookup {
                column: "idaction_event_category",
                name: e_c,
                kind: types::EVENT_CATEGORY,
                prefix: None,
            });
            spec.lookups.push(Lookup {
                column: "idaction_event_action",
                name: e_a,
                kind: types::EVENT_ACTION,
                prefix: None,
            });
            let e_n = php::php_trim(&req.str("e_n")).to_owned();
            if !e_n.is_empty() {
                spec.lookups.push(Lookup {
                    column: "idaction_name",
                    name: e_n,
                    kind: types::EVENT_NAME,
                    prefix: None,
                });
            }
            spec.custom_float = req.float("e_v");
        }
        Kind::Outlink | Kind::Download => {
            let (param, t) = if kind == Kind::Outlink {
                ("link", types::OUTLINK)
            } else {
                ("download", types::DOWNLOAD)
            };
            let url = url_if_look_valid(&req.str(param), limit);
            spec.url = url.clone().unwrap_or_default();
            spec.raw_url = spec.url.clone();
            spec.lookups.push(Lookup {
                column: "idaction_url",
                name: url.unwrap_or_default(),
                kind: t,
                prefix: None,
            });
        }
    }
    add_product_view(req, &mut spec);
    Ok(spec)
}

fn truncate_bytes(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_owned();
    }
    let mut e = n;
    while !s.is_char_boundary(e) {
        e -= 1;
    }
    s[..e].to_owned()
}

/// Product view dimensions (`_pkc`, `_pks`, `_pkn`, `_pkp`) on any action.
fn add_product_view(req: &Request<'_>, spec: &mut ActionSpec) {
    let un = |s: String| matomo_wire::php::htmlspecialchars_decode(&s).into_owned();
    if req.has("_pkc") {
        let cats = un(req.str("_pkc"));
        let list: Vec<String> = if cats.starts_with("[\"") {
            serde_json::from_str::<Vec<serde_json::Value>>(&cats)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|v| php::raw_string(&v))
                .filter(|s| !php::empty_str(s))
                .collect()
        } else {
            vec![cats]
        };
        let cols = [
            "idaction_product_cat",
            "idaction_product_cat2",
            "idaction_product_cat3",
            "idaction_product_cat4",
            "idaction_product_cat5",
        ];
        for (i, col) in cols.iter().enumerate() {
            if let Some(c) = list.get(i) {
                spec.lookups.push(Lookup {
                    column: col,
                    name: c.clone(),
                    kind: types::CATEGORY,
                    prefix: None,
                });
            }
        }
    }
    if req.has("_pks") {
        spec.lookups.push(Lookup {
            column: "idaction_product_sku",
            name: un(req.str("_pks")),
            kind: types::SKU,
            prefix: None,
        });
    }
    if req.has("_pkn") {
        spec.lookups.push(Lookup {
            column: "idaction_product_name",
            name: un(req.str("_pkn")),
            kind: types::PRODUCT_NAME,
            prefix: None,
        });
    }
    spec.product_price = req.float("_pkp");
}

type SearchHit = (String, Option<String>, String, Option<i64>);

/// `ActionSiteSearch::detectSiteSearch`: (keyword, url without search params, category, count).
fn detect_site_search(
    req: &Request<'_>,
    ctx: &ActionCtx<'_>,
    url_param: &str,
) -> Option<SearchHit> {
    let original = cleanup_url(url_param, ctx.limit);
    let kw = req.str("search");
    if !php::empty_str(&kw) {
        let cat = req.str("search_cat");
        let count = req.int("search_count", -1);
        let keyword = php::php_trim(&kw).to_owned();
        if php::empty_str(&keyword) {
            return None;
        }
        return Some((
            keyword,
            None,
            php::php_trim(&cat).to_owned(),
            (count >= 0).then_some(count),
        ));
    }
    let parsed = phpurl::parse_url(&original)?;
    let query = parsed.query.clone().unwrap_or_default();
    let fragment = parsed.fragment.clone().unwrap_or_default();
    if php::empty_str(&query) && php::empty_str(&fragment) {
        return None;
    }
    let (fragment_before, fragment_query) = match phpurl::parse_url(&fragment) {
        Some(pf)
            if fragment.contains('?')
                && pf.query.as_deref().is_some_and(|q| !php::empty_str(q)) =>
        {
            (pf.path.unwrap_or_default(), pf.query.unwrap_or_default())
        }
        _ => (String::new(), fragment.clone()),
    };
    let raw = phpurl::query_params(&format!("{query}&{fragment_query}"));
    let lower: Vec<(String, &phpurl::QueryValue)> =
        raw.0.iter().map(|(k, v)| (k.to_lowercase(), v)).collect();
    let get = |name: &str| -> Option<String> {
        lower
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| match v {
                phpurl::QueryValue::Str(s) => Some(s.clone()),
                phpurl::QueryValue::List(l) => l.first().cloned().flatten(),
                phpurl::QueryValue::Flag => None,
            })
    };
    let site = req.site;
    let kw_params = ctx.snap.search_keyword_params(site);
    let mut kw_raw = String::new();
    let mut keyword = None;
    for p in &kw_params {
        if let Some(v) = get(&p.to_lowercase()).filter(|v| !php::empty_str(v)) {
            keyword = Some(v);
            kw_raw = p.clone();
            break;
        }
    }
    let keyword = keyword?;
    let mut cat_raw = String::new();
    let mut category = String::new();
    for p in ctx.snap.search_category_params(site) {
        if let Some(v) = get(&p.to_lowercase()).filter(|v| !php::empty_str(v)) {
            category = v;
            cat_raw = p;
            break;
        }
    }
    let count = get("search_count")
        .and_then(|c| php::parse_numeric(&c).filter(|n| *n >= 0.0))
        .map(|n| n as i64);
    let exclude = ParamMatcher::new(&[cat_raw, kw_raw]);
    let mut out = parsed.clone();
    if let Some(q) = parsed.query.as_deref() {
        out.query = Some(phpurl::query_string_excluding(
            &phpurl::query_params(q),
            &exclude,
        ));
    }
    if parsed.fragment.is_some() {
        let f = phpurl::query_string_excluding(&phpurl::query_params(&fragment_query), &exclude);
        out.fragment = Some(if fragment_before.is_empty() {
            f
        } else if f.is_empty() {
            fragment_before
        } else {
            format!("{fragment_before}?{f}")
        });
    }
    let url = out.reverse();
    let keyword = php::php_trim(&urldecode_valid_utf8(&keyword)).to_owned();
    if php::empty_str(&keyword) {
        return None;
    }
    let category = php::php_trim(&urldecode_valid_utf8(&category)).to_owned();
    Some((keyword, Some(url), category, count))
}

/// `PageUrl::urldecodeValidUtf8`.
fn urldecode_valid_utf8(s: &str) -> String {
    phpurl::urldecode(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(
            normalize_url("https://www.a.com/x"),
            ("a.com/x".into(), Some(3))
        );
        assert_eq!(normalize_url("HTTP://a.com/"), ("a.com/".into(), Some(0)));
        assert_eq!(normalize_url("ftp://a"), ("ftp://a".into(), None));
    }

    #[test]
    fn excludes_campaign_and_fragment() {
        let m = ParamMatcher::new(&["utm_source".to_string(), "sessionid".to_string()]);
        let u = exclude_query_parameters(
            "http://EXAMPLE.com/a?x=1&utm_source=n#frag",
            false,
            &m,
            1024,
        );
        assert_eq!(u, "http://example.com/a?x=1");
        let u = exclude_query_parameters("http://a.com/b#k=1&sessionid=2", true, &m, 1024);
        assert_eq!(u, "http://a.com/b#k=1");
    }

    #[test]
    fn cleanup() {
        assert_eq!(cleanup_string("  a\nb  ", 1024), "ab");
        assert_eq!(cleanup_string("ééé", 3), "é");
        assert_eq!(
            convert_matrix_url("http://a/b;x=1;y=2"),
            "http://a/b?x=1&y=2"
        );
    }
}
