//! PrivacyManager's referrer anonymisation (`ReferrerAnonymizer`, option
//! `PrivacyManager.anonymizeReferrer`: `exclude_query`, `exclude_path`, `exclude_all`), applied
//! as its tracker `RequestProcessor` does: to every new visit's referrer (`onNewVisit`) and to
//! the referrer values an existing visit is updated with (`onExistingVisit`). Campaigns keep
//! everything; search engines and socials keep their name. Pure.
//!
//! The other pseudonymisations of that processor (`anonymizeUserId`, `anonymizeOrderId`) happen
//! when a request is read (`super::request::Request::new`), IP anonymisation in
//! `super::location`.

use super::phpurl;
use super::referrers::ReferrerType;
use super::settings::Snapshot;
use super::visit::Visit;

/// `ReferrerAnonymizer::EXCLUDE_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Query,
    Path,
    All,
    /// Any other non-empty value: nothing changes.
    Unknown,
}

fn mode(snap: &Snapshot) -> Option<Mode> {
    match snap.privacy_string("anonymizeReferrer") {
        "" => None,
        "exclude_query" => Some(Mode::Query),
        "exclude_path" => Some(Mode::Path),
        "exclude_all" => Some(Mode::All),
        _ => Some(Mode::Unknown),
    }
}

/// Whether `anonymizeReferrer` is set (so stored and attributed referrers may differ).
pub fn anonymises_referrer(snap: &Snapshot) -> bool {
    mode(snap).is_some()
}

/// PHP's `strtok($s, '?')`: leading `?` skipped, up to the next `?`; `false` (stored as '')
/// when nothing is left.
fn strtok_question(s: &str) -> String {
    let rest = s.trim_start_matches('?');
    rest.split('?').next().unwrap_or_default().to_owned()
}

/// `anonymiseReferrerUrl`.
fn url(url: &str, mode: Mode) -> String {
    match mode {
        Mode::Query => strtok_question(url),
        Mode::Path => {
            let Some(p) = phpurl::parse_url(url) else {
                return url.to_owned();
            };
            let host = p.host.filter(|h| !phpurl::empty_str(h));
            let has_path = p.path.is_some_and(|x| !phpurl::empty_str(&x));
            match host {
                Some(host) if has_path => {
                    let scheme = match p.scheme.filter(|s| !phpurl::empty_str(s)) {
                        Some(s) => format!("{s}://"),
                        None if url.starts_with("//") => "//".to_owned(),
                        None => String::new(),
                    };
                    format!("{scheme}{host}/")
                }
                _ => url.to_owned(),
            }
        }
        Mode::All => String::new(),
        Mode::Unknown => url.to_owned(),
    }
}

/// `anonymiseReferrerName`.
fn name(name: Option<String>, ty: Option<i64>, mode: Mode) -> Option<String> {
    let kept = [
        ReferrerType::Campaign,
        ReferrerType::Social,
        ReferrerType::SearchEngine,
    ]
    .iter()
    .any(|t| ty == Some(*t as i64));
    if !kept && mode == Mode::All {
        Some(String::new())
    } else {
        name
    }
}

/// `anonymiseReferrerKeyword`.
fn keyword(keyword: Option<String>, ty: Option<i64>, mode: Mode) -> Option<String> {
    if ty == Some(ReferrerType::Campaign as i64) || mode == Mode::Unknown {
        keyword
    } else {
        Some(String::new())
    }
}

/// `RequestProcessor::onNewVisit`: every referrer column goes through the anonymiser (a NULL
/// keyword becomes '' outside campaigns, a NULL URL stays NULL).
pub fn anonymise_new_visit_referrer(snap: &Snapshot, v: &mut Visit) {
    let Some(mode) = mode(snap) else { return };
    let ty = v.referer_type;
    v.referer_url = v.referer_url.take().map(|u| url(&u, mode));
    v.referer_name = name(v.referer_name.take(), ty, mode);
    v.referer_keyword = keyword(v.referer_keyword.take(), ty, mode);
}

/// `RequestProcessor::onExistingVisit`: only the values being written that are not NULL
/// (PHP's `isset`) go through the anonymiser.
pub fn anonymise_referrer_update(
    snap: &Snapshot,
    ty: Option<i64>,
    values: (
        &mut Option<String>,
        &mut Option<String>,
        &mut Option<String>,
    ),
) {
    let Some(mode) = mode(snap) else { return };
    let (u, n, k) = values;
    if let Some(x) = u.take() {
        *u = Some(url(&x, mode));
    }
    if let Some(x) = n.take() {
        *n = name(Some(x), ty, mode);
    }
    if let Some(x) = k.take() {
        *k = keyword(Some(x), ty, mode);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_as_referrer_anonymizer() {
        let u = "https://www.example.org:8080/path/page?q=secret#x";
        assert_eq!(
            url(u, Mode::Query),
            "https://www.example.org:8080/path/page"
        );
        assert_eq!(url(u, Mode::Path), "https://www.example.org/");
        assert_eq!(url(u, Mode::All), "");
        assert_eq!(url("//cdn.example.org/a", Mode::Path), "//cdn.example.org/");
        // no path: kept as is
        assert_eq!(
            url("https://example.org", Mode::Path),
            "https://example.org"
        );
        // strtok skips leading delimiters and yields false (stored '') on nothing
        assert_eq!(url("?a=1?b", Mode::Query), "a=1");
        assert_eq!(url("?", Mode::Query), "");
    }

    #[test]
    fn names_and_keywords() {
        let search = Some(ReferrerType::SearchEngine as i64);
        let website = Some(ReferrerType::Website as i64);
        let campaign = Some(ReferrerType::Campaign as i64);
        assert_eq!(
            name(Some("Google".into()), search, Mode::All).as_deref(),
            Some("Google")
        );
        assert_eq!(
            name(Some("a.org".into()), website, Mode::All).as_deref(),
            Some("")
        );
        assert_eq!(
            name(Some("a.org".into()), website, Mode::Path).as_deref(),
            Some("a.org")
        );
        assert_eq!(
            keyword(Some("kw".into()), search, Mode::Query).as_deref(),
            Some("")
        );
        assert_eq!(keyword(None, website, Mode::Path).as_deref(), Some(""));
        assert_eq!(
            keyword(Some("spring".into()), campaign, Mode::All).as_deref(),
            Some("spring")
        );
    }
}
