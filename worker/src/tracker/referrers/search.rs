//! `Referrers\SearchEngine::extractInformationFromUrl` and `UrlHelper::getLossyUrl`: which search
//! engine a referrer URL belongs to and the keyword searched, with Matomo's special cases
//! (host+path definitions, lossy host patterns like `google.{}`, Google `as_*` and `tbm`, Google
//! Images `prev`, custom search / InfoSpace / Yahoo fallbacks, hidden keywords, charsets).
//!
//! A keyword of `None` is Matomo's `false`: "search engine, keyword not provided" (stored NULL).
//! Charset conversion covers UTF-8 and the single-byte charsets of the list (ISO-8859-1/-2,
//! windows-1250/1251); multi-byte legacy charsets (gb2312, EUC-KR, Shift_JIS, EUC-JP, MS932)
//! are not converted. Pure, no I/O.

use std::sync::OnceLock;

use regex::Regex;

use super::super::lists::SearchEngines;
use super::super::location::{COUNTRY_CODES, COUNTRY_CODES_EXTRA};
use super::super::phpurl::{
    empty_str, parse_url, query_params, urldecode, urldecode_bytes, QueryParams, QueryValue,
};
use super::php_trim;

mod charsets;

/// A detected search engine and its keyword (`None`: no keyword provided).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchEngineHit {
    /// Engine name (`Google`, `Google Images`, `Bing`, …).
    pub name: String,
    /// Lowercased keyword, or `None` when the engine hides it.
    pub keyword: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Null,
    False,
    Str(Vec<u8>),
}

impl Key {
    fn php_empty(&self) -> bool {
        match self {
            Key::Null | Key::False => true,
            Key::Str(s) => s.is_empty() || s == b"0",
        }
    }
    fn null_or_empty_string(&self) -> bool {
        matches!(self, Key::Null) || matches!(self, Key::Str(s) if s.is_empty())
    }
}

fn trim_bytes(b: &[u8]) -> Vec<u8> {
    let ws = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0 | 0x0B);
    let start = b.iter().position(|c| !ws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !ws(c)).map_or(start, |e| e + 1);
    b[start..end].to_vec()
}

fn param_string(query: &QueryParams, name: &str) -> Option<String> {
    query
        .get(name)
        .and_then(QueryValue::as_str)
        .map(str::to_owned)
}

fn country_alternation() -> String {
    COUNTRY_CODES
        .iter()
        .chain(COUNTRY_CODES_EXTRA.iter())
        .copied()
        .collect::<Vec<_>>()
        .join("|")
}

fn lossy_regexes() -> &'static [(Regex, &'static str)] {
    static RES: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    RES.get_or_init(|| {
        let cc = country_alternation();
        [
            (r"^(?:w+[0-9]*|search)\.".to_owned(), ""),
            (r"(^|\.)m\.".to_owned(), "${1}"),
            (
                format!(r"(\.(com|org|net|co|it|edu))?\.({cc})(/|$)"),
                ".{}${4}",
            ),
            (format!(r"(^|\.)({cc})\."), "${1}{}."),
        ]
        .into_iter()
        .filter_map(|(p, r)| Regex::new(&p).ok().map(|re| (re, r)))
        .collect()
    })
}

/// `UrlHelper::getLossyUrl`: `www.google.co.uk` → `google.{}`, `de.search.yahoo.com` →
/// `{}.search.yahoo.com`, `m.example.com` → `example.com`.
pub fn lossy_host(host: &str) -> String {
    let mut s = host.to_owned();
    for (re, rep) in lossy_regexes() {
        s = re.replace_all(&s, *rep).into_owned();
    }
    s
}

fn engine_key(engines: &SearchEngines, host: &str, path: &str, query: &str) -> Option<String> {
    let pattern = lossy_host(host);
    let candidates = [
        format!("{host}{path}"),
        host.to_owned(),
        format!("{pattern}{path}"),
        pattern,
    ];
    if let Some(c) = candidates.into_iter().find(|c| engines.contains(c)) {
        return Some(c);
    }
    let found_after_start = |needle: &str| host.find(needle).is_some_and(|p| p > 0);
    if query.starts_with("cx=partner-pub-") {
        Some("google.com/cse".to_owned())
    } else if path.starts_with("/pemonitorhosted/ws/results/") {
        Some("wsdsold.infospace.com".to_owned())
    } else if found_after_start(".images.search.yahoo.com") {
        Some("images.search.yahoo.com".to_owned())
    } else if found_after_start(".search.yahoo.com") {
        Some("search.yahoo.com".to_owned())
    } else {
        None
    }
}

/// `SearchEngine::convertCharset`: with several charsets, the first the bytes are valid in
/// (`mb_detect_encoding`), then `iconv(charset, 'UTF-8//IGNORE')`; an empty result keeps the
/// original. Single-byte charsets and UTF-8 are converted; multi-byte legacy charsets (gb2312,
/// EUC-KR, Shift_JIS, EUC-JP, MS932) are not, and the bytes are kept as UTF-8 (documented gap).
fn convert_charset(bytes: Vec<u8>, charsets: &[String]) -> String {
    let utf8_ok = std::str::from_utf8(&bytes).is_ok();
    let charset = if charsets.len() > 1 {
        charsets
            .iter()
            .find(|c| !c.eq_ignore_ascii_case("utf-8") || utf8_ok)
            .unwrap_or(&charsets[0])
    } else {
        &charsets[0]
    };
    let lower = charset.to_ascii_lowercase();
    let converted: String = match lower.as_str() {
        "utf-8" | "utf8" => bytes.utf8_chunks().map(|c| c.valid()).collect(),
        "iso-8859-1" | "latin1" => bytes.iter().map(|&b| b as char).collect(),
        other => match charsets::high_half(other) {
            Some(table) => bytes
                .iter()
                .filter_map(|&b| {
                    if b < 0x80 {
                        Some(b as char)
                    } else {
                        char::from_u32(u32::from(table[usize::from(b - 0x80)]))
                            .filter(|c| *c != '\0')
                    }
                })
                .collect(),
            None => return String::from_utf8_lossy(&bytes).into_owned(),
        },
    };
    if converted.is_empty() {
        String::from_utf8_lossy(&bytes).into_owned()
    } else {
        converted
    }
}

/// `extractInformationFromUrl($referrerUrl)`: the search engine and keyword, or `None` when the
/// URL is not a search engine's (or no keyword could be found and none is expected hidden).
pub fn extract_search_engine(
    engines: &SearchEngines,
    referrer_url: &str,
) -> Option<SearchEngineHit> {
    let parsed = parse_url(referrer_url)?;
    let host = parsed.host.clone().filter(|h| !empty_str(h))?;
    let path = parsed.path.clone().unwrap_or_default();
    let mut query = parsed.query.clone().unwrap_or_default();
    let fragment = parsed.fragment.clone().filter(|f| !empty_str(f));
    if let Some(f) = &fragment {
        query.push('&');
        query.push_str(f);
    }
    let key_host = engine_key(engines, &host, &path, &query)?;
    let def = engines.definition(&key_host)?;
    let mut name = def.name.clone();
    let mut key = Key::Null;
    let mut qp = query_params(&query);

    if name == "Google Images" {
        if query.contains("&prev") {
            let prev = urldecode(php_trim(&param_string(&qp, "prev").unwrap_or_default()));
            query = prev
                .find('?')
                .map(|p| prev[p..].replace('&', "&amp;"))
                .unwrap_or_default();
            qp = query_params(&query);
        }
    } else if name == "Google" && (query.contains("&as_") || query.starts_with("as_")) {
        let mut keys: Vec<String> = Vec::new();
        let get = |k: &str| param_string(&qp, k).filter(|v| !empty_str(v));
        if let Some(k) = get("as_q") {
            keys.push(k);
        }
        if let Some(k) = get("as_oq") {
            keys.push(k.replace('+', " OR "));
        }
        if let Some(k) = get("as_epq") {
            keys.push(format!("\"{k}\""));
        }
        if let Some(k) = get("as_eq") {
            keys.push(format!("-{k}"));
        }
        key = Key::Str(trim_bytes(&urldecode_bytes(keys.join(" "))));
    }
    if name == "Google" {
        match param_string(&qp, "tbm").as_deref() {
            Some("isch") => name = "Google Images".to_owned(),
            Some("vid") => name = "Google Video".to_owned(),
            Some("shop") => name = "Google Shopping".to_owned(),
            _ => {}
        }
    }

    if key.php_empty() {
        for var in &def.params {
            if var.starts_with('/') {
                // `$matches[1]`, null (so "") when the pattern has no first group; its bytes
                // are url-decoded as they are, as PHP does.
                if let Some(group) = engines.regex(var).and_then(|r| {
                    r.first_group(referrer_url.as_bytes())
                        .map(|g| g.unwrap_or_default().to_vec())
                }) {
                    key = Key::Str(trim_bytes(&urldecode_bytes(&group)));
                    break;
                }
            } else {
                let raw = param_string(&qp, var).unwrap_or_default();
                key = Key::Str(trim_bytes(&urldecode_bytes(&raw)));
                if key.php_empty()
                    && (query.contains(&format!("&{var}=")) || query.contains(&format!("?{var}=")))
                {
                    key = Key::False;
                }
                if !key.php_empty() || key == Key::False {
                    break;
                }
            }
        }
    }

    if key.null_or_empty_string() {
        let mut target = path.clone();
        if !empty_str(&query) {
            target.push('?');
            target.push_str(&query);
        }
        if let Some(f) = &fragment {
            target.push('#');
            target.push_str(f);
        }
        match def.hidden_keyword.as_deref().filter(|h| !h.is_empty()) {
            Some(hidden) => {
                for p in hidden {
                    let is_regex = p.len() > 1 && p.starts_with('/') && p.ends_with('/');
                    let hit = if is_regex {
                        engines
                            .regex(p)
                            .is_some_and(|r| r.is_match(target.as_bytes()))
                    } else {
                        *p == target
                    };
                    if hit {
                        key = Key::False;
                        break;
                    }
                }
            }
            // Matomo's default: '/^$/' (empty) and '/' (literal)
            None => {
                if target.is_empty() || target == "/" {
                    key = Key::False;
                }
            }
        }
    }

    let keyword = match key {
        Key::Null => return None,
        Key::Str(ref s) if s.is_empty() => return None,
        Key::False => None,
        Key::Str(s) => {
            if s == b"0" {
                Some("0".to_owned())
            } else {
                let text = if def.charsets.is_empty() {
                    String::from_utf8_lossy(&s).into_owned()
                } else {
                    convert_charset(s, &def.charsets)
                };
                Some(text.to_lowercase())
            }
        }
    };
    Some(SearchEngineHit { name, keyword })
}
