//! PCRE2 patterns with PHP `preg_match` semantics, and DeviceDetector's string builders.
//!
//! DeviceDetector's regexes are PCRE, run by PHP in byte mode (no `/u`), case-insensitive, with
//! its own prefix so a pattern only matches at a token start. This module owns that: it wraps
//! patterns exactly as the PHP parsers do, compiles them lazily (once, with JIT) and caps the work a
//! single match may do (`(*LIMIT_MATCH=…)`), so a pathological user agent costs a bounded time. A
//! match error (limit hit, JIT stack exhausted) counts as "no match", which is also what PHP does
//! (`preg_match` returns `false`). It also holds the PHP helpers the parsers build results with
//! (`buildByMatch`, `buildVersion`, `version_compare`).

use std::sync::OnceLock;

/// Upper bound on backtracking steps per match; PHP's `pcre.backtrack_limit` is 1,000,000, but
/// thousands of patterns run per user agent, so the cap is lower. No fixture comes close.
const MATCH_LIMIT: u32 = 200_000;

/// The prefix `AbstractParser::matchUserAgent` puts in front of every pattern.
pub(crate) const PARSER_PREFIX: &str = r"(?:^|[^A-Z0-9_-]|[^A-Z0-9-]_|sprd-|MZ-)";
/// The shorter prefix `DeviceDetector::matchUserAgent` uses for its own heuristics.
pub(crate) const DETECTOR_PREFIX: &str = r"(?:^|[^A-Z_-])";

/// One compiled-on-first-use pattern.
#[derive(Debug)]
pub(crate) struct Pattern {
    source: String,
    caseless: bool,
    compiled: OnceLock<Option<pcre2::bytes::Regex>>,
}

/// Outcome of [`Pattern::probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    Match,
    NoMatch,
    CompileError,
    MatchError,
}

/// Captured groups of one match, as PHP's `$matches` array: index 0 is the whole match, groups
/// that did not take part are empty, and the array ends at the last group that took part.
#[derive(Debug, Default, Clone)]
pub(crate) struct Captures {
    groups: Vec<String>,
}

impl Captures {
    /// Group `i`, or `""` when absent.
    pub(crate) fn get(&self, i: usize) -> &str {
        self.groups.get(i).map(String::as_str).unwrap_or("")
    }

    /// Number of entries of PHP's `$matches` (whole match included).
    pub(crate) fn len(&self) -> usize {
        self.groups.len()
    }

    /// The last entry, as `array_pop($matches)` returns it.
    pub(crate) fn last(&self) -> &str {
        self.groups.last().map(String::as_str).unwrap_or("")
    }
}

impl Pattern {
    /// A DeviceDetector parser pattern: `/PREFIX(?:regex)/i` with `/` escaped as PHP does.
    pub(crate) fn parser(regex: &str) -> Self {
        Self::raw(
            format!("{PARSER_PREFIX}(?:{})", php_escape_slash(regex)),
            true,
        )
    }

    /// A `DeviceDetector::matchUserAgent` pattern (shorter prefix).
    pub(crate) fn detector(regex: &str) -> Self {
        Self::raw(
            format!("{DETECTOR_PREFIX}(?:{})", php_escape_slash(regex)),
            true,
        )
    }

    /// A pattern used verbatim.
    pub(crate) fn raw(source: String, caseless: bool) -> Self {
        Self {
            source,
            caseless,
            compiled: OnceLock::new(),
        }
    }

    fn regex(&self) -> Option<&pcre2::bytes::Regex> {
        self.compiled
            .get_or_init(|| compile(&self.source, self.caseless).ok())
            .as_ref()
    }

    /// Compiles now and reports a compile error (used to validate a regex set at load time).
    pub(crate) fn check(&self) -> Result<(), String> {
        compile(&self.source, self.caseless).map(|_| ())
    }

    /// Matches and tells apart "no match" from "could not run" (for prefilters, which must not
    /// skip rules they could not evaluate).
    pub(crate) fn probe(&self, subject: &str) -> Probe {
        match self.regex() {
            None => Probe::CompileError,
            Some(re) => match re.is_match(subject.as_bytes()) {
                Ok(true) => Probe::Match,
                Ok(false) => Probe::NoMatch,
                Err(_) => Probe::MatchError,
            },
        }
    }

    /// Whether the pattern matches `subject`; errors count as no match.
    pub(crate) fn is_match(&self, subject: &str) -> bool {
        self.regex()
            .is_some_and(|re| re.is_match(subject.as_bytes()).unwrap_or(false))
    }

    /// PHP `preg_match` with `$matches`; `None` when there is no match (or on a match error).
    pub(crate) fn captures(&self, subject: &str) -> Option<Captures> {
        let re = self.regex()?;
        let caps = re.captures(subject.as_bytes()).ok()??;
        let last = (0..caps.len()).rev().find(|&i| caps.get(i).is_some())?;
        let groups = (0..=last)
            .map(|i| {
                caps.get(i)
                    .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
                    .unwrap_or_default()
            })
            .collect();
        Some(Captures { groups })
    }

    /// Replaces the first match with `replacement` (literal), like a one-shot `preg_replace`.
    pub(crate) fn replace_all(&self, subject: &str, replacement: &str) -> String {
        let Some(re) = self.regex() else {
            return subject.to_string();
        };
        let mut out = String::with_capacity(subject.len() + replacement.len());
        let mut last = 0;
        for m in re.find_iter(subject.as_bytes()) {
            let Ok(m) = m else { break };
            if m.start() < last || !subject.is_char_boundary(m.start()) {
                continue;
            }
            out.push_str(&subject[last..m.start()]);
            out.push_str(replacement);
            last = m.end();
        }
        if !subject.is_char_boundary(last) {
            return subject.to_string();
        }
        out.push_str(&subject[last..]);
        out
    }
}

fn compile(source: &str, caseless: bool) -> Result<pcre2::bytes::Regex, String> {
    let full = format!("(*LIMIT_MATCH={MATCH_LIMIT}){source}");
    pcre2::bytes::RegexBuilder::new()
        .caseless(caseless)
        .jit_if_available(true)
        .build(&full)
        .map_err(|e| e.to_string())
}

/// `str_replace('/', '\/', $regex)` — kept literal, because an already escaped `\/` turns into
/// `\\/` (a backslash then a slash) in PHP, and the patterns must mean what they mean there.
pub(crate) fn php_escape_slash(regex: &str) -> String {
    regex.replace('/', r"\/")
}

/// `AbstractParser::buildByMatch`: `$1`, `$2`, … replaced in order, then trimmed.
pub(crate) fn build_by_match(item: &str, matches: &Captures) -> String {
    if !item.contains('$') {
        return php_trim(item).to_string();
    }
    let mut out = item.to_string();
    for nb in 1..=matches.len() {
        let key = format!("${nb}");
        if out.contains(&key) {
            out = out.replace(&key, matches.get(nb));
        }
    }
    php_trim(&out).to_string()
}

/// How many version parts DeviceDetector keeps (`AbstractParser::setVersionTruncation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VersionTruncation {
    /// `major` only.
    Major,
    /// `major.minor` — DeviceDetector's default, and so what Matomo stores.
    #[default]
    Minor,
    /// `major.minor.patch`.
    Patch,
    /// `major.minor.patch.build`.
    Build,
    /// Keep every part (what DeviceDetector's own fixtures are written with).
    None,
}

impl VersionTruncation {
    fn max_minor_parts(self) -> Option<usize> {
        match self {
            Self::Major => Some(0),
            Self::Minor => Some(1),
            Self::Patch => Some(2),
            Self::Build => Some(3),
            Self::None => None,
        }
    }
}

/// `AbstractParser::buildVersion`.
pub(crate) fn build_version(version: &str, matches: &Captures, trunc: VersionTruncation) -> String {
    let mut v = build_by_match(version, matches).replace('_', ".");
    if let Some(max) = trunc.max_minor_parts() {
        if v.matches('.').count() > max {
            v = v.split('.').take(max + 1).collect::<Vec<_>>().join(".");
        }
    }
    v.trim_matches(|c| c == ' ' || c == '.').to_string()
}

/// PHP `trim()` with its default character set.
pub(crate) fn php_trim(s: &str) -> &str {
    s.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r' | '\0' | '\x0B'))
}

/// PHP `(int) $string`: the leading integer (after whitespace), 0 when there is none.
pub(crate) fn php_int(s: &str) -> i64 {
    let s = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0B', '\x0C']);
    let (sign, digits) = match s.as_bytes().first() {
        Some(b'-') => (-1, &s[1..]),
        Some(b'+') => (1, &s[1..]),
        _ => (1, s),
    };
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end]
        .parse::<i64>()
        .map(|n| sign * n)
        .unwrap_or(if end > 0 { i64::MAX } else { 0 })
}

/// PHP `version_compare($a, $b)`: -1, 0 or 1.
pub(crate) fn version_compare(a: &str, b: &str) -> i32 {
    if a.is_empty() || b.is_empty() {
        return (!a.is_empty()) as i32 - (!b.is_empty()) as i32;
    }
    let pa = canonical_parts(a);
    let pb = canonical_parts(b);
    let (mut i, mut c) = (0, 0);
    while i < pa.len() && i < pb.len() && c == 0 {
        c = compare_part(&pa[i], &pb[i]);
        i += 1;
    }
    if c != 0 {
        return c;
    }
    // A longer version wins when its next part is a number, loses otherwise (`1.0rc1 < 1.0`).
    if let Some(x) = pa.get(i) {
        return if is_digits(x) {
            1
        } else {
            compare_part(x, "#N#")
        };
    }
    if let Some(y) = pb.get(i) {
        return if is_digits(y) {
            -1
        } else {
            compare_part("#N#", y)
        };
    }
    0
}

fn is_digits(p: &str) -> bool {
    p.bytes().next().is_some_and(|b| b.is_ascii_digit())
}

fn canonical_parts(v: &str) -> Vec<String> {
    // php_canonicalize_version: `-_+` and other non-alphanumerics become `.`, and a `.` goes in
    // at every switch between digits and letters.
    let bytes = v.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len() * 2);
    let Some(&first) = bytes.first() else {
        return Vec::new();
    };
    out.push(first);
    let mut lp = first;
    let isndig = |c: u8| !c.is_ascii_digit() && c != b'.';
    for &c in &bytes[1..] {
        let last_dot = out.last() == Some(&b'.');
        if matches!(c, b'-' | b'_' | b'+') {
            if !last_dot {
                out.push(b'.');
            }
        } else if (isndig(lp) && c.is_ascii_digit()) || (lp.is_ascii_digit() && isndig(c)) {
            if !last_dot {
                out.push(b'.');
            }
            out.push(c);
        } else if !c.is_ascii_alphanumeric() {
            if !last_dot {
                out.push(b'.');
            }
        } else {
            out.push(c);
        }
        lp = c;
    }
    String::from_utf8_lossy(&out)
        .split('.')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

fn special_rank(p: &str) -> i32 {
    // PHP's special forms, checked in this order by prefix; unknown words rank lowest.
    const FORMS: [(&str, i32); 10] = [
        ("dev", 0),
        ("alpha", 1),
        ("a", 1),
        ("beta", 2),
        ("b", 2),
        ("RC", 3),
        ("rc", 3),
        ("#", 4),
        ("pl", 5),
        ("p", 5),
    ];
    FORMS
        .iter()
        .find(|(name, _)| p.starts_with(name))
        .map_or(-6, |&(_, rank)| rank)
}

fn compare_part(x: &str, y: &str) -> i32 {
    let ord = match (is_digits(x), is_digits(y)) {
        (true, true) => php_int(x).cmp(&php_int(y)),
        (false, false) => special_rank(x).cmp(&special_rank(y)),
        (true, false) => special_rank("#N#").cmp(&special_rank(y)),
        (false, true) => special_rank(x).cmp(&special_rank("#N#")),
    };
    ord as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_compare_matches_php() {
        assert_eq!(version_compare("1.0", "1.0.0"), -1);
        assert_eq!(version_compare("10", "9.5"), 1);
        assert_eq!(version_compare("2.0", "2.0"), 0);
        assert_eq!(version_compare("1.9", "2.0"), -1);
        assert_eq!(version_compare("", "2.0"), -1);
        assert_eq!(version_compare("3.2.1", "3.0"), 1);
        assert_eq!(version_compare("1.0rc1", "1.0"), -1);
        assert_eq!(version_compare("8", "8"), 0);
        assert_eq!(version_compare("28.0.1500", "28"), 1);
    }

    #[test]
    fn build_by_match_replaces_in_order() {
        let caps = Captures {
            groups: vec!["x".into(), "A".into(), "".into()],
        };
        assert_eq!(build_by_match("$1 $2 $3", &caps), "A");
        assert_eq!(build_by_match("$1 $2 $4", &caps), "A  $4");
        assert_eq!(build_by_match(" plain ", &caps), "plain");
    }

    #[test]
    fn build_version_truncates() {
        let caps = Captures {
            groups: vec!["x".into(), "98_0_4758".into()],
        };
        assert_eq!(
            build_version("$1.87", &caps, VersionTruncation::None),
            "98.0.4758.87"
        );
        assert_eq!(
            build_version("$1.87", &caps, VersionTruncation::Minor),
            "98.0"
        );
        assert_eq!(build_version("$1", &caps, VersionTruncation::Major), "98");
        assert_eq!(build_version("", &caps, VersionTruncation::Major), "");
    }

    #[test]
    fn php_int_reads_leading_digits() {
        assert_eq!(php_int("8.1.0"), 8);
        assert_eq!(php_int("abc"), 0);
        assert_eq!(php_int(" 12x"), 12);
    }

    #[test]
    fn patterns_use_prefix_and_are_caseless() {
        let p = Pattern::parser("chrome/(\\d+)");
        assert_eq!(p.captures("Foo CHROME/12").unwrap().get(1), "12");
        assert!(p.captures("xchrome/12").is_none());
        assert!(Pattern::parser("(").check().is_err());
        assert!(!Pattern::parser("(").is_match("("));
    }
}
