//! Custom dimension values as `CustomDimensionsRequestProcessor::getCustomDimensionsInScope`
//! computes them: the `dimensionN` parameter when the request sends it (an empty string
//! included), else the first of the dimension's extractions (`Dimension\Extraction`) that finds
//! a value in the page URL, a page URL parameter or the page title; trimmed and cut to 250
//! characters. Pure.

use serde_json::Value;

use super::actions::{ActionSpec, Kind};
use super::pcre::PhpRegex;
use super::php;
use super::phpurl;
use super::request::Request;
use super::settings::{CustomDimension, Extraction};

/// The `custom_dimension_<index>` columns of log_visit and log_link_visit_action.
pub const COLUMNS: [&str; 5] = [
    "custom_dimension_1",
    "custom_dimension_2",
    "custom_dimension_3",
    "custom_dimension_4",
    "custom_dimension_5",
];

/// The slot of a dimension in [`COLUMNS`], None for an index outside 1..=5.
pub fn slot(d: &CustomDimension) -> Option<usize> {
    usize::try_from(d.index)
        .ok()
        .and_then(|i| i.checked_sub(1))
        .filter(|i| *i < COLUMNS.len())
}

/// `Extraction::formatPattern`: `urlparam` patterns name a query parameter; `/` is escaped
/// inside PHP's `/…/` delimiters and `i` added unless the dimension is case sensitive.
/// None when PHP's `preg_match` would fail on the pattern.
pub fn compile_extraction(
    dimension: &str,
    pattern: &str,
    case_sensitive: bool,
) -> Option<std::sync::Arc<PhpRegex>> {
    let body = if dimension == "urlparam" {
        format!("\\?.*{pattern}=([^&]*)")
    } else {
        pattern.to_owned()
    };
    let flags = if case_sensitive { "" } else { "i" };
    PhpRegex::new(&format!("/{}/{flags}", body.replace('/', "\\/")))
        .ok()
        .map(std::sync::Arc::new)
}

/// `Extraction::getValueForDimension`: the page URL before parameters were excluded (the `url`
/// parameter without an action), the page title (page views only), or the request parameter
/// of that name; un-escaped.
fn subject(req: &Request<'_>, e: &Extraction, action: Option<&ActionSpec>) -> String {
    let raw = match (e.dimension.as_str(), action) {
        ("url" | "urlparam", Some(a)) => a.raw_url.clone(),
        ("url" | "urlparam", None) => req.str("url"),
        ("action_name", Some(a)) if a.kind == Kind::Pageview => a.name.clone(),
        ("action_name", Some(_)) => String::new(),
        (name, _) => req.str(name),
    };
    if php::empty_str(&raw) {
        raw
    } else {
        matomo_wire::php::htmlspecialchars_decode(&raw).into_owned()
    }
}

/// `Extraction::extract`: the first group of the pattern in the subject.
fn extract(req: &Request<'_>, e: &Extraction, action: Option<&ActionSpec>) -> Option<String> {
    let re = e.regex.as_ref()?;
    let s = subject(req, e, action);
    if s.is_empty() {
        return None;
    }
    re.first_group(s.as_bytes())?.map(group_text)
}

/// A captured group as text. In PCRE's byte mode a group can end inside a UTF-8 character
/// (`/(.)/` on `é`); PHP hands MySQL those bytes as they are (which a utf8mb4 column refuses or
/// cuts, depending on the SQL mode), the row here gets U+FFFD for them.
fn group_text(group: &[u8]) -> String {
    String::from_utf8_lossy(group).into_owned()
}

/// `prepareValue`: trimmed, at most 250 characters.
fn prepare(v: &str) -> String {
    php::mb_substr(php::php_trim(v), 250).to_owned()
}

/// The value this request sets for dimension `d`; `action` is the request's action (None for
/// pings, manual goals and ecommerce requests, as PHP's `Actions.action` metadata).
pub fn value(
    req: &Request<'_>,
    d: &CustomDimension,
    action: Option<&ActionSpec>,
) -> Option<String> {
    let field = format!("dimension{}", d.id);
    let sent = req.str(&field);
    let sent_empty = matches!(req.raw(&field), Some(Value::String(s)) if s.is_empty());
    if !sent.is_empty() || sent_empty {
        return Some(prepare(&sent));
    }
    d.extractions
        .iter()
        .filter_map(|e| extract(req, e, action))
        .find(|v| !v.is_empty())
        .map(|v| prepare(&phpurl::urldecode(&v)))
}

/// The (slot, value) pairs of the site's dimensions of `scope` set by this request.
pub fn values_in_scope(
    dims: &[CustomDimension],
    scope: &str,
    req: &Request<'_>,
    action: Option<&ActionSpec>,
) -> Vec<(usize, String)> {
    dims.iter()
        .filter(|d| d.scope == scope)
        .filter_map(|d| Some((slot(d)?, value(req, d, action)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(dimension: &str, pattern: &str, case_sensitive: bool, subject: &str) -> Option<String> {
        let re = compile_extraction(dimension, pattern, case_sensitive)?;
        re.first_group(subject.as_bytes())?.map(group_text)
    }

    #[test]
    fn patterns_run_as_pcre_in_byte_mode() {
        for (dimension, pattern, subject, expected) in [
            // Look-ahead and back-references are PCRE's, and PHP has them.
            (
                "url",
                "/p/(\\d+)(?!\\.html)",
                "http://x/p/12.htm",
                Some("12"),
            ),
            (
                "url",
                "/p/(\\d+)(?!\\.html)",
                "http://x/p/12.html",
                Some("1"),
            ),
            ("url", "/(\\w)\\1", "http://x/aab", Some("a")),
            // Without `u`, `.` is one byte: the group ends inside `é`.
            ("action_name", "^(.)", "é", Some("\u{fffd}")),
            // A pattern with `\/` gets its `/` escaped again, which PHP then fails to compile.
            ("url", "a\\/b(.)", "a/bc", None),
        ] {
            assert_eq!(
                find(dimension, pattern, true, subject).as_deref(),
                expected,
                "{pattern} on {subject}"
            );
        }
    }

    #[test]
    fn url_patterns_escape_slashes() {
        assert_eq!(
            find("url", "/blog/(.+)/", true, "http://example.com/blog/rust/x"),
            Some("rust".into())
        );
        assert_eq!(
            find("url", "/BLOG/(.+)/", true, "http://example.com/blog/rust/x"),
            None
        );
        assert_eq!(
            find(
                "url",
                "/BLOG/(.+)/",
                false,
                "http://example.com/blog/rust/x"
            ),
            Some("rust".into())
        );
    }

    #[test]
    fn urlparam_reads_one_query_parameter() {
        assert_eq!(
            find(
                "urlparam",
                "lang",
                true,
                "http://example.com/?a=1&lang=de&b=2"
            ),
            Some("de".into())
        );
        assert_eq!(
            find("urlparam", "lang", true, "http://example.com/lang=de"),
            None
        );
    }

    #[test]
    fn broken_patterns_extract_nothing() {
        assert!(compile_extraction("url", "(unclosed", true).is_none());
    }

    #[test]
    fn columns_follow_the_index() {
        let d = |index| CustomDimension {
            id: 1,
            index,
            scope: "visit".into(),
            case_sensitive: true,
            extractions: Vec::new(),
        };
        assert_eq!(slot(&d(1)).map(|i| COLUMNS[i]), Some("custom_dimension_1"));
        assert_eq!(slot(&d(5)).map(|i| COLUMNS[i]), Some("custom_dimension_5"));
        assert_eq!(slot(&d(0)), None);
        assert_eq!(slot(&d(6)), None);
    }
}
