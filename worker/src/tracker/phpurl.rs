//! PHP's URL primitives as Matomo's tracker uses them: `parse_url` (PHP 8's parser, quirks
//! included), `UrlHelper::getParseUrlReverse`, `urldecode`, `UrlHelper::getArrayFromQueryString`
//! (values sanitised, `name[]` lists, last value wins in first position),
//! `getQueryStringWithExcludedParameters` (PHP regexes among the names through [`super::pcre`])
//! and `isLookLikeUrl`.
//!
//! Referrer detection, exclusions and page-URL normalisation all go through these, so they live
//! in one place. Pure functions, no I/O; they never panic on any input.
//!
//! Entry points:
//! - `parse_url(&str) -> Option<ParsedUrl>`; `ParsedUrl::reverse() -> String`
//! - `urldecode(&str) -> String`
//! - `query_params(&str) -> QueryParams`; `QueryParams::get(name) -> Option<&QueryValue>`
//! - `query_string_excluding(&QueryParams, &ParamMatcher) -> String`
//! - `is_look_like_url(&str) -> bool`
//! - `ParamMatcher::new(&[String])`

use std::borrow::Cow;

use std::sync::Arc;

use matomo_wire::php::sanitized;

use super::pcre::PhpRegex;

/// The parts `parse_url` returns; `None` is "key absent" in PHP's array (which differs from an
/// empty string since PHP 8 for query and fragment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedUrl {
    /// `scheme`
    pub scheme: Option<String>,
    /// `user`
    pub user: Option<String>,
    /// `pass`
    pub pass: Option<String>,
    /// `host`
    pub host: Option<String>,
    /// `port`
    pub port: Option<u16>,
    /// `path`
    pub path: Option<String>,
    /// `query`
    pub query: Option<String>,
    /// `fragment`
    pub fragment: Option<String>,
}

fn ctl(s: &[u8]) -> String {
    // php_replace_controlchars: every iscntrl byte becomes '_'. Components are cut at ASCII
    // delimiters of a &str, so they are valid UTF-8 and stay so after the ASCII replacement.
    let text = String::from_utf8_lossy(s);
    if text.bytes().any(|b| b < 0x20 || b == 0x7f) {
        text.chars()
            .map(|c| if c < ' ' || c == '\x7f' { '_' } else { c })
            .collect()
    } else {
        text.into_owned()
    }
}

fn find(s: &[u8], from: usize, to: usize, c: u8) -> Option<usize> {
    s[from..to].iter().position(|&b| b == c).map(|p| p + from)
}

fn rfind(s: &[u8], from: usize, to: usize, c: u8) -> Option<usize> {
    s[from..to].iter().rposition(|&b| b == c).map(|p| p + from)
}

fn strcspn(s: &[u8], from: usize, to: usize, chars: &[u8]) -> usize {
    s[from..to]
        .iter()
        .position(|b| chars.contains(b))
        .map_or(to, |p| p + from)
}

/// Parses a port the way `ZEND_STRTOL` + PHP's checks do; `None` = invalid URL.
fn port_of(digits: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(digits).ok()?;
    let t = text.trim_start();
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let n: String = t.chars().take_while(|c| c.is_ascii_digit()).collect();
    if n.is_empty() {
        return None;
    }
    let v: i64 = n.parse().ok()?;
    let v = if neg { -v } else { v };
    u16::try_from(v).ok()
}

/// PHP 8's `parse_url($url)`; `None` where PHP returns `false`.
pub fn parse_url(url: &str) -> Option<ParsedUrl> {
    let s = url.as_bytes();
    let ue = s.len();
    let mut ret = ParsedUrl::default();
    let mut st = 0usize;
    enum Next {
        Port(usize),
        Host,
        Path,
    }
    let next = match find(s, 0, ue, b':') {
        Some(e) if e != 0 => {
            let valid_scheme = s[..e]
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'.' || b == b'-');
            if !valid_scheme {
                if e + 1 < ue && e < strcspn(s, 0, ue, b"?#") {
                    Next::Port(e)
                } else if ue > 1 && s[0] == b'/' && s[1] == b'/' {
                    st = 2;
                    Next::Host
                } else {
                    Next::Path
                }
            } else if e + 1 == ue {
                ret.scheme = Some(ctl(&s[..e]));
                return Some(ret);
            } else if s[e + 1] != b'/' {
                let mut p = e + 1;
                while p < ue && s[p].is_ascii_digit() {
                    p += 1;
                }
                if (p == ue || s[p] == b'/') && (p - e) < 7 {
                    Next::Port(e)
                } else {
                    ret.scheme = Some(ctl(&s[..e]));
                    st = e + 1;
                    Next::Path
                }
            } else {
                ret.scheme = Some(ctl(&s[..e]));
                if e + 2 < ue && s[e + 2] == b'/' {
                    st = e + 3;
                    if ret
                        .scheme
                        .as_deref()
                        .is_some_and(|x| x.eq_ignore_ascii_case("file"))
                        && e + 3 < ue
                        && s[e + 3] == b'/'
                    {
                        if e + 5 < ue && s[e + 5] == b':' {
                            st = e + 4;
                        }
                        Next::Path
                    } else {
                        Next::Host
                    }
                } else {
                    st = e + 1;
                    Next::Path
                }
            }
        }
        Some(e) => Next::Port(e),
        None => {
            if ue > 1 && s[0] == b'/' && s[1] == b'/' {
                st = 2;
                Next::Host
            } else {
                Next::Path
            }
        }
    };
    let go_host = match next {
        Next::Path => false,
        Next::Host => true,
        Next::Port(e) => {
            let p = e + 1;
            let mut pp = p;
            while pp < ue && pp - p < 6 && s[pp].is_ascii_digit() {
                pp += 1;
            }
            if pp - p > 0 && pp - p < 6 && (pp == ue || s[pp] == b'/') {
                ret.port = Some(port_of(&s[p..pp])?);
                if st + 1 < ue && s[st] == b'/' && s[st + 1] == b'/' {
                    st += 2;
                }
                true
            } else if p == pp && pp == ue {
                return None;
            } else if st + 1 < ue && s[st] == b'/' && s[st + 1] == b'/' {
                st += 2;
                true
            } else {
                false
            }
        }
    };
    if go_host {
        let e = strcspn(s, st, ue, b"/?#");
        if let Some(at) = rfind(s, st, e, b'@') {
            if let Some(colon) = find(s, st, at, b':') {
                ret.user = Some(ctl(&s[st..colon]));
                ret.pass = Some(ctl(&s[colon + 1..at]));
            } else {
                ret.user = Some(ctl(&s[st..at]));
            }
            st = at + 1;
        }
        let colon = if st < ue && s[st] == b'[' && e > 0 && s[e - 1] == b']' {
            None
        } else if st <= e {
            rfind(s, st, e, b':')
        } else {
            None
        };
        let host_end = match colon {
            Some(c) => {
                if ret.port.unwrap_or(0) == 0 {
                    let p = c + 1;
                    if e - p > 5 {
                        return None;
                    } else if e > p {
                        ret.port = Some(port_of(&s[p..e])?);
                    }
                }
                c
            }
            None => e,
        };
        if host_end < st + 1 {
            return None;
        }
        ret.host = Some(ctl(&s[st..host_end]));
        if e == ue {
            return Some(ret);
        }
        st = e;
    }
    // just_path
    let mut e = ue;
    if let Some(h) = find(s, st, e, b'#') {
        ret.fragment = Some(ctl(&s[h + 1..e]));
        e = h;
    }
    if let Some(q) = find(s, st, e, b'?') {
        ret.query = Some(ctl(&s[q + 1..e]));
        e = q;
    }
    if st < e || st == ue {
        ret.path = Some(ctl(&s[st..e]));
    }
    Some(ret)
}

fn php_urlencode_special(v: &str) -> String {
    v.replace(':', "%3A")
        .replace('@', "%40")
        .replace('/', "%2F")
        .replace('\\', "%5C")
}

impl ParsedUrl {
    /// `UrlHelper::getParseUrlReverse`: the URL rebuilt from its parts (empty parts dropped, as
    /// PHP's `!empty()` does, so a port `0` or a query `"0"` disappears).
    pub fn reverse(&self) -> String {
        fn ne(o: &Option<String>) -> Option<&str> {
            o.as_deref().filter(|v| !empty_str(v))
        }
        let mut uri = String::new();
        if let Some(scheme) = ne(&self.scheme) {
            uri.push_str(scheme);
            uri.push(':');
            if !scheme.eq_ignore_ascii_case("mailto") {
                uri.push_str("//");
            }
        }
        if let Some(user) = ne(&self.user) {
            uri.push_str(&php_urlencode_special(user));
            if let Some(pass) = ne(&self.pass) {
                uri.push(':');
                uri.push_str(&php_urlencode_special(pass));
            }
            uri.push('@');
        }
        if let Some(host) = ne(&self.host) {
            uri.push_str(host);
        }
        if let Some(port) = self.port.filter(|p| *p != 0) {
            uri.push(':');
            uri.push_str(&port.to_string());
        }
        if let Some(path) = ne(&self.path) {
            if path.starts_with('/') {
                uri.push_str(path);
            } else {
                if !uri.is_empty() {
                    uri.push('/');
                }
                uri.push_str(path);
            }
        }
        if let Some(q) = ne(&self.query) {
            uri.push('?');
            uri.push_str(q);
        }
        if let Some(f) = ne(&self.fragment) {
            uri.push('#');
            uri.push_str(f);
        }
        uri
    }
}

/// PHP's `empty()` for a string: `""` and `"0"` are empty.
pub fn empty_str(s: &str) -> bool {
    s.is_empty() || s == "0"
}

/// PHP's `urldecode` (`+` is a space, `%XX` decoded, malformed escapes kept). Bytes that do not
/// form UTF-8 are replaced with U+FFFD.
pub fn urldecode(s: &str) -> String {
    if !s.contains(['%', '+']) {
        return s.to_owned();
    }
    match String::from_utf8(urldecode_bytes(s)) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// PHP's `urldecode` on any bytes (a string or a regex group, which may end inside a UTF-8
/// character), returning the raw bytes.
pub fn urldecode_bytes(s: impl AsRef<[u8]>) -> Vec<u8> {
    let b = s.as_ref();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len()
                && b[i + 1].is_ascii_hexdigit()
                && b[i + 2].is_ascii_hexdigit() =>
            {
                let hex = |c: u8| match c {
                    b'0'..=b'9' => c - b'0',
                    b'a'..=b'f' => c - b'a' + 10,
                    _ => c - b'A' + 10,
                };
                out.push(hex(b[i + 1]) * 16 + hex(b[i + 2]));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// One value of `getArrayFromQueryString`: `name` alone is `Flag` (PHP `false`), `name=v` a
/// string, `name[]=…` a list (whose `Flag` entries are `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryValue {
    /// `name` without `=`.
    Flag,
    /// `name=value` (value sanitised, still percent-encoded).
    Str(String),
    /// `name[]=a&name[]=b`.
    List(Vec<Option<String>>),
}

impl QueryValue {
    /// The value when it is a string (PHP `is_string`).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            QueryValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// `UrlHelper::getArrayFromQueryString`'s result, in PHP's array order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryParams(pub Vec<(String, QueryValue)>);

impl QueryParams {
    /// `getParameterFromQueryString($query, $name)` on an already parsed query.
    pub fn get(&self, name: &str) -> Option<&QueryValue> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    fn slot(&mut self, name: String) -> &mut QueryValue {
        if let Some(i) = self.0.iter().position(|(n, _)| *n == name) {
            &mut self.0[i].1
        } else {
            self.0.push((name, QueryValue::Flag));
            let last = self.0.len() - 1;
            &mut self.0[last].1
        }
    }
}

fn php_trim(s: &str) -> &str {
    s.trim_matches([' ', '\t', '\n', '\r', '\0', '\x0B'])
}

fn strip_list_suffix(name: &str) -> Option<&str> {
    for suffix in ["[]", "[%5d", "%5b]", "%5b%5d"] {
        // ASCII case-insensitively: the suffix's bytes are ASCII, so the cut is a char boundary.
        let cut = name.len().checked_sub(suffix.len())?;
        if name.as_bytes()[cut..].eq_ignore_ascii_case(suffix.as_bytes()) {
            return Some(&name[..cut]);
        }
    }
    None
}

/// `UrlHelper::getArrayFromQueryString`: splits on `&`, sanitises names and values
/// (`Common::sanitizeInputValue`, so `<` becomes `&lt;`), keeps values percent-encoded.
pub fn query_params(query: &str) -> QueryParams {
    let mut out = QueryParams::default();
    if query.is_empty() {
        return out;
    }
    let q = query.strip_prefix('?').unwrap_or(query);
    let joined = format!("&{q}");
    // Names and values sanitised as Matomo does (a copy only where something changes).
    let clean = |v: &str| -> String {
        if empty_str(v) {
            v.to_owned()
        } else {
            sanitized(Cow::Borrowed(v)).into_owned()
        }
    };
    for part in php_trim(&joined).split('&') {
        let (name, value) = match part.find('=') {
            Some(p) => (clean(&part[..p]), Some(clean(&part[p + 1..]))),
            None => (clean(part), None),
        };
        if let Some(base) = strip_list_suffix(&name).filter(|b| !empty_str(b)) {
            let base = base.to_owned();
            let slot = out.slot(base);
            if !matches!(slot, QueryValue::List(_)) {
                *slot = QueryValue::List(Vec::new());
            }
            if let QueryValue::List(l) = slot {
                l.push(value);
            }
        } else if !empty_str(&name) {
            *out.slot(name) = match value {
                Some(v) => QueryValue::Str(v),
                None => QueryValue::Flag,
            };
        }
    }
    out
}

/// Parameter names to drop from a URL: plain names compare case-insensitively, PHP regexes
/// (`/^utm_/i`) match (Matomo's `inArrayMatchesRegex`, applied to the lowercased name).
#[derive(Debug, Clone, Default)]
pub struct ParamMatcher {
    names: Vec<String>,
    regexes: Vec<Arc<PhpRegex>>,
}

impl ParamMatcher {
    /// Builds the matcher from Matomo's list (entries that are valid PHP regexes act as regexes).
    pub fn new(patterns: &[String]) -> Self {
        let mut m = ParamMatcher::default();
        for p in patterns {
            match PhpRegex::new(p) {
                Ok(r) => m.regexes.push(Arc::new(r)),
                Err(_) => m.names.push(p.to_lowercase()),
            }
        }
        m
    }

    /// True when `name` (already lowercased by the caller, as Matomo does) is excluded.
    pub fn matches(&self, name: &str) -> bool {
        self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
            || self.regexes.iter().any(|r| r.is_match(name.as_bytes()))
    }
}

/// `UrlHelper::getQueryStringWithExcludedParameters`.
pub fn query_string_excluding(params: &QueryParams, exclude: &ParamMatcher) -> String {
    query_string_excluding_extra(params, exclude, &[])
}

/// `getQueryStringWithExcludedParameters` with extra plain names (compared case-insensitively),
/// as `PageUrl::excludeQueryParametersFromUrl($url, $idSite, $additionalParametersToExclude)`.
pub fn query_string_excluding_extra(
    params: &QueryParams,
    exclude: &ParamMatcher,
    extra: &[&str],
) -> String {
    let mut out = String::new();
    for (name, value) in &params.0 {
        let name = name.replace("%5B", "[").replace("%5D", "]");
        let lower = name.to_lowercase();
        if exclude.matches(&lower) || extra.iter().any(|e| e.eq_ignore_ascii_case(&lower)) {
            continue;
        }
        match value {
            QueryValue::List(items) => {
                for item in items {
                    out.push_str(&name);
                    out.push_str("[]");
                    if let Some(v) = item {
                        out.push('=');
                        out.push_str(v);
                    }
                    out.push('&');
                }
            }
            QueryValue::Flag => {
                out.push_str(&name);
                out.push('&');
            }
            QueryValue::Str(v) => {
                out.push_str(&name);
                out.push('=');
                out.push_str(v);
                out.push('&');
            }
        }
    }
    out.pop();
    out
}

/// `UrlHelper::isLookLikeUrl`: `scheme://something` or `//something`, not `javascript:`,
/// `vbscript:` or `data:`.
pub fn is_look_like_url(url: &str) -> bool {
    if empty_str(url) {
        return false;
    }
    let (scheme_part, rest) = match url.find("//") {
        Some(p) => (&url[..p], &url[p + 2..]),
        None => return false,
    };
    if rest.is_empty() {
        return false;
    }
    // `(([[:alpha:]][[:alnum:]+.-]*)?:)?` must cover everything before `//`
    if !scheme_part.is_empty() {
        let Some(s) = scheme_part.strip_suffix(':') else {
            return false;
        };
        if !s.is_empty() {
            let mut chars = s.chars();
            let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
            if !first_ok
                || !chars.all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '.' || c == '-')
            {
                return false;
            }
        }
    }
    let lower = scheme_part.to_ascii_lowercase();
    !(lower.starts_with("javascript:")
        || lower.starts_with("vbscript:")
        || lower.starts_with("data:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pu(s: &str) -> ParsedUrl {
        parse_url(s).unwrap_or_else(|| panic!("{s} should parse"))
    }

    #[test]
    fn parse_url_matches_php_for_common_shapes() {
        let u = pu("https://user:pw@Example.COM:8080/a/b?x=1&y#frag");
        assert_eq!(u.scheme.as_deref(), Some("https"));
        assert_eq!(u.user.as_deref(), Some("user"));
        assert_eq!(u.pass.as_deref(), Some("pw"));
        assert_eq!(u.host.as_deref(), Some("Example.COM"));
        assert_eq!(u.port, Some(8080));
        assert_eq!(u.path.as_deref(), Some("/a/b"));
        assert_eq!(u.query.as_deref(), Some("x=1&y"));
        assert_eq!(u.fragment.as_deref(), Some("frag"));

        let u = pu("http://example.com");
        assert_eq!(u.path, None);
        let u = pu("http://example.com/?");
        assert_eq!(u.query.as_deref(), Some(""));
        let u = pu("android-app://com.google.android.gm");
        assert_eq!(u.scheme.as_deref(), Some("android-app"));
        assert_eq!(u.host.as_deref(), Some("com.google.android.gm"));
        let u = pu("http://192.168.0.10:8080/intranet");
        assert_eq!(u.host.as_deref(), Some("192.168.0.10"));
        assert_eq!(u.port, Some(8080));
        let u = pu("http://[::1]:80/x");
        assert_eq!(u.host.as_deref(), Some("[::1]"));
        let u = pu("example.com:80");
        assert_eq!(u.host.as_deref(), Some("example.com"));
        assert_eq!(u.port, Some(80));
        let u = pu("//cdn.example.com/x.js");
        assert_eq!(u.host.as_deref(), Some("cdn.example.com"));
        let u = pu("mailto:a@b.c");
        assert_eq!(u.scheme.as_deref(), Some("mailto"));
        assert_eq!(u.path.as_deref(), Some("a@b.c"));
        let u = pu("/just/a/path?q");
        assert_eq!(u.path.as_deref(), Some("/just/a/path"));
        assert_eq!(u.query.as_deref(), Some("q"));
        assert_eq!(pu("").path.as_deref(), Some(""));
    }

    #[test]
    fn parse_url_rejects_what_php_rejects() {
        assert_eq!(parse_url("http://example.com:99999/"), None);
        assert_eq!(parse_url("http://:80"), None);
        assert_eq!(parse_url("http:///example.com"), None);
        assert_eq!(
            parse_url("x:"),
            Some(ParsedUrl {
                scheme: Some("x".into()),
                ..Default::default()
            })
        );
    }

    #[test]
    fn reverse_rebuilds() {
        for u in ["https://a.example/x?y=1#z", "http://u:p@h:81/p"] {
            assert_eq!(pu(u).reverse(), u);
        }
        // PHP puts a '/' before a relative path once anything precedes it
        assert_eq!(
            pu("mailto:someone@example.com").reverse(),
            "mailto:/someone@example.com"
        );
        assert_eq!(pu("http://a.example/?").reverse(), "http://a.example/");
    }

    #[test]
    fn urldecode_like_php() {
        assert_eq!(urldecode("a+b%20c%zz%4"), "a b c%zz%4");
        assert_eq!(urldecode("caf%C3%A9"), "café");
        assert_eq!(urldecode("%"), "%");
    }

    #[test]
    fn query_params_like_matomo() {
        let q = query_params("?a=1&b&c[]=x&c[]&a=2&=z&0=n&d=%3Cb%3E&e=<i>");
        assert_eq!(q.get("a"), Some(&QueryValue::Str("2".into())));
        assert_eq!(q.0[0].0, "a", "overwriting keeps the first position");
        assert_eq!(q.get("b"), Some(&QueryValue::Flag));
        assert_eq!(
            q.get("c"),
            Some(&QueryValue::List(vec![Some("x".into()), None]))
        );
        assert_eq!(q.get("0"), None);
        assert_eq!(q.get("d").and_then(QueryValue::as_str), Some("%3Cb%3E"));
        assert_eq!(q.get("e").and_then(QueryValue::as_str), Some("&lt;i&gt;"));
        let m = ParamMatcher::new(&["B".into(), "/^d$/".into()]);
        assert_eq!(query_string_excluding(&q, &m), "a=2&c[]=x&c[]&e=&lt;i&gt;");
    }

    #[test]
    fn look_like_url() {
        assert!(is_look_like_url("http://x"));
        assert!(is_look_like_url("//x"));
        assert!(is_look_like_url("android-app://com.x"));
        assert!(!is_look_like_url("javascript://x"));
        assert!(!is_look_like_url("example.com"));
        assert!(!is_look_like_url("http://"));
        assert!(!is_look_like_url("1http://x"));
    }

    proptest::proptest! {
        #[test]
        fn url_helpers_never_panic(s in "\\PC{0,40}", t in "[a-z:/?#@\\[\\]%+=&.;0-9]{0,30}") {
            for input in [&s, &t] {
                if let Some(p) = parse_url(input) {
                    let _ = p.reverse();
                }
                let q = query_params(input);
                let _ = query_string_excluding(&q, &ParamMatcher::new(std::slice::from_ref(input)));
                let _ = urldecode(input);
                let _ = is_look_like_url(input);
            }
        }
    }
}
