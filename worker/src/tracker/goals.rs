//! Goals and ecommerce — Matomo's `GoalManager`: which goals a request converts (manual
//! `idgoal`, URL / title / file / outlink / event patterns from the `goal` table), the
//! `log_conversion` row (with the visit's attributes at conversion time), ecommerce orders and
//! cart updates, and their `log_conversion_item` rows (items removed from a cart stay, with
//! `deleted = 1`).
//!
//! Pure: rows are built here and written by [`super::batch`].

use std::borrow::Cow;

use md5::Digest;
use serde_json::Value;

use super::actions::{ActionSpec, Kind};
use super::pcre::PhpRegex;
use super::php;
use super::request::Request;
use super::settings::Goal;
use super::sql::Val;
use super::visit::Visit;

/// `GoalManager::isUrlMatchingGoal`: the subject and pattern are un-escaped; a failed match is
/// retried with the URL-decoded pattern.
pub fn matches(goal: &Goal, subject: &str) -> bool {
    let subject = matomo_wire::php::htmlspecialchars_decode(subject);
    if goal.pattern_type == "regex" {
        let on_the_spot;
        let regex = match &goal.regex {
            Some(regex) => regex.as_ref(),
            None => {
                on_the_spot = GoalRegex::new(goal);
                &on_the_spot
            }
        };
        return regex.is_match(subject.as_bytes());
    }
    let pattern = matomo_wire::php::htmlspecialchars_decode(&goal.pattern).into_owned();
    pattern_matches(goal, &pattern, &subject)
        || pattern_matches(goal, &super::phpurl::urldecode(&pattern), &subject)
}

/// A regex goal's two patterns (as stored, un-escaped, then URL-decoded: `isUrlMatchingGoal`
/// tries both), compiled once per configuration snapshot rather than on every hit, where
/// compiling cost more than the rest of the hit. A pattern PHP would not compile matches
/// nothing, as `@preg_match` returning `false` does.
#[derive(Debug)]
pub struct GoalRegex {
    stored: Option<PhpRegex>,
    decoded: Option<PhpRegex>,
}

impl GoalRegex {
    fn new(goal: &Goal) -> Self {
        let pattern = matomo_wire::php::htmlspecialchars_decode(&goal.pattern).into_owned();
        let decoded = super::phpurl::urldecode(&pattern);
        Self {
            stored: php_goal_regex(&pattern, goal.case_sensitive),
            decoded: php_goal_regex(&decoded, goal.case_sensitive),
        }
    }

    fn is_match(&self, subject: &[u8]) -> bool {
        [&self.stored, &self.decoded]
            .into_iter()
            .any(|r| r.as_ref().is_some_and(|r| r.is_match(subject)))
    }
}

/// The compiled patterns of a regex goal; `None` for other pattern types.
pub fn compile_regex(goal: &Goal) -> Option<std::sync::Arc<GoalRegex>> {
    (goal.pattern_type == "regex").then(|| std::sync::Arc::new(GoalRegex::new(goal)))
}

/// `GoalManager::formatRegex` (every `/` escaped unless the pattern already escapes one, then
/// `/…/`), `i` unless case sensitive, compiled as PHP's PCRE does: without `u`, so on bytes,
/// `.` one byte, `i` folding ASCII letters only.
fn php_goal_regex(pattern: &str, case_sensitive: bool) -> Option<PhpRegex> {
    let body = if pattern.contains('/') && !pattern.contains("\\/") {
        Cow::Owned(pattern.replace('/', "\\/"))
    } else {
        Cow::Borrowed(pattern)
    };
    let flags = if case_sensitive { "" } else { "i" };
    PhpRegex::new(&format!("/{body}/{flags}")).ok()
}

/// `isGoalPatternMatchingUrl` for `contains` and `exact` (regexes: [`GoalRegex`]). PHP compares
/// bytes: `stripos` and `strcasecmp` fold ASCII letters only (PHP 8), so `É` never equals `é`
/// here; the regex runs in PCRE's byte mode, where `.` is one byte (`^.{3}$` does not match the
/// five bytes of `été`) and `i` folds ASCII letters only.
fn pattern_matches(goal: &Goal, pattern: &str, subject: &str) -> bool {
    match goal.pattern_type.as_str() {
        "contains" => {
            if goal.case_sensitive {
                subject.contains(pattern)
            } else {
                subject
                    .to_ascii_lowercase()
                    .contains(&pattern.to_ascii_lowercase())
            }
        }
        "exact" => {
            if goal.case_sensitive {
                subject == pattern
            } else {
                subject.eq_ignore_ascii_case(pattern)
            }
        }
        _ => false,
    }
}

/// `GoalManager::detectNumericGoalMatch` for `visit_duration` goals: the visit has lasted
/// more than `pattern` minutes (`greater_than`, the only numeric pattern type) at `now`.
/// `first_action` is the visit's `visit_first_action_time` as PHP's visit properties hold it
/// while goals are detected: only set when the request continues a known visit.
pub fn visit_duration_reached(goal: &Goal, first_action: Option<i64>, now: i64) -> bool {
    let Some(first) = first_action.filter(|t| *t != 0) else {
        return false;
    };
    let minutes = (now - first) as f64 / 60.0;
    goal.pattern_type == "greater_than" && minutes > php::php_floatval(&goal.pattern)
}

/// `detectGoalsMatchingUrl`: goals converted by the action of this request.
/// `first_action` and `now` serve the `visit_duration` goals (see [`visit_duration_reached`]).
pub fn detect_for_action(
    goals: &[Goal],
    spec: &ActionSpec,
    req: &Request<'_>,
    (first_action, now): (Option<i64>, i64),
) -> Vec<(Goal, String)> {
    let mut out = Vec::new();
    for g in goals {
        if g.match_attribute == "visit_duration" {
            if visit_duration_reached(g, first_action, now) {
                out.push((g.clone(), spec.url.clone()));
            }
            continue;
        }
        let subject = match (g.match_attribute.as_str(), spec.kind) {
            ("url", Kind::Pageview) => Some(spec.raw_url.clone()),
            ("title", Kind::Pageview) => Some(spec.name.clone()),
            ("file", Kind::Download) | ("external_website", Kind::Outlink) => {
                Some(spec.raw_url.clone())
            }
            ("event_category", Kind::Event) => Some(req.str("e_c")),
            ("event_action", Kind::Event) => Some(req.str("e_a")),
            ("event_name", Kind::Event) => Some(req.str("e_n")),
            _ => None,
        };
        if let Some(subject) = subject {
            if matches(g, &subject) {
                out.push((g.clone(), spec.url.clone()));
            }
        }
    }
    out
}

/// Matomo's revenue rounding (`roundRevenueIfNeeded` / `getRevenue`).
pub fn round_revenue(v: f64) -> f64 {
    if v.round() == v {
        v
    } else {
        (v * 100.0).round() / 100.0
    }
}

/// `Common::hashStringToInt`: the first 8 hex digits of md5, as a number.
pub fn hash_string_to_int(s: &str) -> i64 {
    let d = md5::Md5::digest(s.as_bytes());
    i64::from(u32::from_be_bytes([d[0], d[1], d[2], d[3]]))
}

/// One cleaned ecommerce item (`getCleanedEcommerceItems`), names not yet resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// SKU.
    pub sku: String,
    /// Product name ('' → 0).
    pub name: String,
    /// Up to five categories ('' → 0).
    pub categories: Vec<String>,
    /// Price.
    pub price: f64,
    /// Quantity.
    pub quantity: i64,
}

fn item_str(v: Option<&Value>) -> String {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(php::raw_string)
            .collect::<Vec<_>>()
            .join(","),
        Some(v) => php::raw_string(v).unwrap_or_default(),
        None => String::new(),
    }
}

/// `ec_items`: `[[sku, name, category|[categories], price, quantity], …]`, un-escaped; items
/// without SKU dropped. None when the parameter is not a list (Matomo then records nothing).
pub fn parse_items(req: &Request<'_>) -> Option<Vec<Item>> {
    let Some(v) = php::request_json(req.raw("ec_items")) else {
        return Some(Vec::new());
    };
    let Value::Array(list) = v else { return None };
    let un = |s: String| matomo_wire::php::htmlspecialchars_decode(&s).into_owned();
    let mut out = Vec::new();
    for item in list {
        let get = |i: usize| match &item {
            Value::Array(a) => a.get(i).cloned(),
            Value::Object(o) => o.get(&i.to_string()).cloned(),
            _ => None,
        };
        let sku = un(item_str(get(0).as_ref()));
        if php::empty_str(&sku) {
            continue;
        }
        let name = un(item_str(get(1).as_ref()));
        let categories: Vec<String> = match get(2) {
            Some(Value::Array(cats)) => cats
                .iter()
                .filter_map(php::raw_string)
                .map(|c| php::php_trim(&un(c)).to_owned())
                .filter(|c| !php::empty_str(c))
                .take(5)
                .collect(),
            Some(v) => {
                let c = php::php_trim(&un(php::raw_string(&v).unwrap_or_default())).to_owned();
                if php::empty_str(&c) {
                    Vec::new()
                } else {
                    vec![c]
                }
            }
            None => Vec::new(),
        };
        let price = get(3)
            .and_then(|p| php::raw_string(&p))
            .and_then(|p| php::parse_numeric(&p))
            .map_or(0.0, round_revenue);
        let quantity = get(4)
            .and_then(|q| php::raw_string(&q))
            .filter(|q| !php::empty_str(q))
            .filter(|q| php::is_numeric(q))
            .map_or(1, |q| php::php_intval(&q));
        out.push(Item {
            sku: php::php_trim(&sku).to_owned(),
            name: if php::empty_str(&name) {
                String::new()
            } else {
                php::php_trim(&name).to_owned()
            },
            categories,
            price,
            quantity,
        });
    }
    Some(out)
}

/// One `log_conversion_item` row as the batch tracks it.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRow {
    /// idorder (`'0'` for a cart).
    pub idorder: String,
    /// idorder the row has in MySQL (None: not written yet).
    pub stored_idorder: Option<String>,
    /// idaction_sku, idaction_name, idaction_category..5.
    pub ids: [u64; 7],
    /// price.
    pub price: f64,
    /// quantity.
    pub quantity: i64,
    /// deleted.
    pub deleted: i64,
    /// server_time of the last write.
    pub server_time: i64,
    /// idvisitor of the last write.
    pub idvisitor: [u8; 8],
    /// Whether the row changed in this batch.
    pub dirty: bool,
}

/// `recordEcommerceItems`: applies the request's items to the visit's cart rows.
pub fn apply_items(
    rows: &mut Vec<ItemRow>,
    idorder: &str,
    items: &[[u64; 7]],
    values: &[(f64, i64)],
    now: i64,
    idvisitor: [u8; 8],
) {
    for row in rows
        .iter_mut()
        .filter(|r| r.idorder == idorder || r.idorder == "0")
    {
        match items.iter().position(|ids| ids[0] == row.ids[0]) {
            None => row.deleted = 1,
            Some(k) => {
                row.ids = items[k];
                row.price = values[k].0;
                row.quantity = values[k].1;
                row.deleted = 0;
            }
        }
        row.idorder = idorder.to_owned();
        row.server_time = now;
        row.idvisitor = idvisitor;
        row.dirty = true;
    }
    for (k, ids) in items.iter().enumerate() {
        if rows
            .iter()
            .any(|r| r.ids[0] == ids[0] && (r.idorder == idorder))
        {
            continue;
        }
        rows.push(ItemRow {
            idorder: idorder.to_owned(),
            stored_idorder: None,
            ids: *ids,
            price: values[k].0,
            quantity: values[k].1,
            deleted: 0,
            server_time: now,
            idvisitor,
            dirty: true,
        });
    }
}

/// The visit attributes every conversion row copies (`onAnyGoalConversion`).
pub fn visit_columns(v: &Visit) -> Vec<(&'static str, Val)> {
    let os = |s: &Option<String>| Val::opt_str(s.as_deref());
    vec![
        ("idsite", Val::Int(i64::from(v.idsite))),
        ("idvisitor", Val::Bin(v.idvisitor.to_vec())),
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
        ("config_browser_name", os(&v.browser[1])),
        (
            "config_client_type",
            v.client_type.map_or(Val::Null, Val::Int),
        ),
        ("config_device_brand", os(&v.device[0])),
        ("config_device_model", os(&v.device[1])),
        (
            "config_device_type",
            v.device_type.map_or(Val::Null, Val::Int),
        ),
        ("location_city", os(&v.location[0])),
        ("location_country", os(&v.location[1])),
        (
            "location_latitude",
            v.latlong[0].map_or(Val::Null, Val::Float),
        ),
        (
            "location_longitude",
            v.latlong[1].map_or(Val::Null, Val::Float),
        ),
        ("location_region", os(&v.location[2])),
        ("custom_dimension_1", os(&v.dims[0])),
        ("custom_dimension_2", os(&v.dims[1])),
        ("custom_dimension_3", os(&v.dims[2])),
        ("custom_dimension_4", os(&v.dims[3])),
        ("custom_dimension_5", os(&v.dims[4])),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn goal(t: &str, p: &str, cs: bool) -> Goal {
        Goal {
            idgoal: 1,
            match_attribute: "url".into(),
            pattern: p.into(),
            pattern_type: t.into(),
            case_sensitive: cs,
            allow_multiple: false,
            revenue: 0.0,
            event_value_as_revenue: false,
            regex: None,
        }
    }

    /// The snapshot's compiled regexes match as the on-the-spot ones.
    #[test]
    fn compiled_regexes_match_as_compiled_on_the_spot() {
        for (pattern, cs, subject, expected) in [
            ("thank.you", false, "/THANK-you", true),
            ("%2Fthank", false, "/thank", true),
            ("^.{3}$", true, "été", false),
            ("a&amp;b", true, "a&b", true),
            ("(unclosed", false, "(unclosed", false),
            ("video", true, "Video", false),
        ] {
            let plain = goal("regex", pattern, cs);
            let mut compiled = plain.clone();
            compiled.regex = compile_regex(&compiled);
            assert!(compiled.regex.is_some());
            assert_eq!(
                matches(&compiled, subject),
                expected,
                "{pattern} on {subject}"
            );
            assert_eq!(matches(&plain, subject), expected, "{pattern} on {subject}");
        }
        assert!(compile_regex(&goal("contains", "x", false)).is_none());
    }

    #[test]
    fn patterns() {
        assert!(matches(
            &goal("contains", "/thank-you", false),
            "http://a.com/Thank-You"
        ));
        assert!(!matches(
            &goal("contains", "/thank-you", true),
            "http://a.com/Thank-You"
        ));
        assert!(matches(&goal("exact", "video", false), "Video"));
        assert!(matches(&goal("regex", "a.c", false), "xAbC"));
        assert!(matches(&goal("contains", "a&b", false), "x a&amp;b"));
        assert!(matches(&goal("regex", r"thank\/you$", false), "/Thank/You"));
    }

    /// Regex goals are PCRE, as in PHP: look-arounds, back-references and atomic groups work,
    /// and `formatRegex` escapes `/` only when no `\/` is there already.
    #[test]
    fn regex_goals_are_pcre_with_php_delimiters() {
        for (pattern, cs, subject, expected) in [
            (
                r"/checkout(?!/cancel)",
                false,
                "http://a.com/checkout/done",
                true,
            ),
            (
                r"/checkout(?!/cancel)",
                false,
                "http://a.com/checkout/cancel",
                false,
            ),
            (r"(?<=order=)\d{4}$", true, "/x?order=1234", true),
            (r"/(\w+)/\1/", true, "http://a.com/en/en/", true),
            (r"/(\w+)/\1/", true, "http://a.com/en/de/", false),
            (r"(?>a+)ab", true, "aaab", false),
            // Escaped already: the other `/` is left alone and ends the pattern, so PHP's
            // preg_match fails ("Unknown modifier") and the goal never converts.
            (r"a\/b/c", true, "a/b/c", false),
            (r"a\/b", true, "xa/b", true),
        ] {
            let mut g = goal("regex", pattern, cs);
            assert_eq!(matches(&g, subject), expected, "{pattern} on {subject}");
            g.regex = compile_regex(&g);
            assert_eq!(
                matches(&g, subject),
                expected,
                "{pattern} on {subject}, compiled"
            );
        }
    }

    /// PHP 8's `stripos`/`strcasecmp` and PCRE without `u` fold ASCII letters only and see
    /// bytes; Unicode-aware comparisons would convert where PHP does not.
    #[test]
    fn patterns_compare_bytes_and_fold_ascii_only() {
        assert!(matches(&goal("contains", "vidéo", false), "Ma VIDéO"));
        assert!(!matches(&goal("contains", "vidéo", false), "MA VIDÉO"));
        assert!(!matches(&goal("exact", "vidéo", false), "VIDÉO"));
        assert!(matches(&goal("exact", "vidéo", false), "VIDéO"));
        // U+212A KELVIN SIGN lowercases to an ASCII `k` in Unicode; PHP keeps its bytes.
        assert!(!matches(
            &goal("contains", "kitchen", false),
            "\u{212A}itchen"
        ));
        assert!(!matches(&goal("regex", "kitchen", false), "\u{212A}itchen"));
        assert!(!matches(&goal("regex", "é", false), "É"));
        assert!(matches(&goal("regex", "fé$", false), "CAFé"));
        assert!(matches(&goal("regex", "^VID.O$", false), "vidXo"));
        // `.` is one byte: `é` is two.
        assert!(!matches(&goal("regex", "^.{3}$", true), "été"));
        assert!(matches(&goal("regex", "^.{5}$", true), "été"));
        assert!(matches(&goal("regex", r"^\w+$", true), "abc_1"));
        assert!(!matches(&goal("regex", r"^\w+$", true), "café"));
    }

    #[test]
    fn revenue_rounding_and_buster() {
        assert_eq!(round_revenue(4.0), 4.0);
        assert_eq!(round_revenue(1.2345), 1.23);
        assert_eq!(
            hash_string_to_int("W4242-0016"),
            i64::from(
                u32::from_str_radix(&hex::encode(md5::Md5::digest(b"W4242-0016"))[..8], 16)
                    .unwrap_or(0)
            )
        );
    }

    #[test]
    fn cart_items_are_marked_deleted() {
        let mut rows = Vec::new();
        apply_items(
            &mut rows,
            "0",
            &[[1, 2, 3, 0, 0, 0, 0], [5, 0, 0, 0, 0, 0, 0]],
            &[(1.0, 1), (2.0, 2)],
            10,
            [0; 8],
        );
        assert_eq!(rows.len(), 2);
        apply_items(
            &mut rows,
            "0",
            &[[5, 0, 0, 0, 0, 0, 0]],
            &[(2.0, 3)],
            20,
            [0; 8],
        );
        assert_eq!(
            rows.iter().find(|r| r.ids[0] == 1).map(|r| r.deleted),
            Some(1)
        );
        assert_eq!(
            rows.iter().find(|r| r.ids[0] == 5).map(|r| r.quantity),
            Some(3)
        );
        apply_items(
            &mut rows,
            "W1",
            &[[5, 0, 0, 0, 0, 0, 0]],
            &[(2.0, 3)],
            30,
            [0; 8],
        );
        assert!(rows.iter().all(|r| r.idorder == "W1"));
    }
}
