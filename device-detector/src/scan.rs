//! Ordered rule lists with a combined-pattern prefilter.
//!
//! DeviceDetector tries a parser's regexes one by one and keeps the first that matches. Doing that
//! for ~2,000 device brands per user agent is the hot path, so a [`Scanner`] groups consecutive
//! patterns into chunks and first runs one prefilter per chunk; a chunk whose prefilter does not
//! match is skipped whole, and the patterns of the others are tried in order, so the first match
//! is the one the sequential scan would find. The prefilter is a Rust `regex` (a lazy DFA, linear
//! time, literal-accelerated) of the patterns translated to match a superset
//! ([`crate::translate`]); patterns that cannot be translated get a PCRE alternation
//! `P(?:(?:a)|(?:b))` instead, which matches exactly when `P(?:a)` or `P(?:b)` does. Patterns
//! whose meaning depends on group numbers (back-references, relative recursion) are never
//! combined, and a chunk whose alternation cannot be compiled or run is scanned one by one.
//!
//! [`OverallGate`] is the other thing: PHP's `preMatchOverall`, one alternation of every regex
//! of a parser in reverse order, which some parsers use as a yes/no gate. It is reproduced as PHP
//! builds it, because its answer (not just its speed) is part of the algorithm.

use crate::pattern::{php_escape_slash, Captures, Pattern, Probe, PARSER_PREFIX};
use crate::translate::superset;

/// Patterns per PCRE alternation (used when a pattern cannot be translated for the DFA).
const PCRE_CHUNK: usize = 24;
/// Patterns per DFA prefilter.
const DFA_CHUNK: usize = 96;

#[derive(Debug)]
enum Filter {
    /// No prefilter: try the patterns one by one.
    None,
    /// A Rust `regex` (lazy DFA) matching a superset of the chunk's patterns.
    Dfa(regex::bytes::Regex),
    /// One PCRE alternation of the chunk's patterns.
    Pcre(Pattern),
}

#[derive(Debug)]
struct Chunk {
    start: usize,
    end: usize,
    filter: Filter,
}

/// An ordered list of parser patterns with a chunked prefilter.
#[derive(Debug)]
pub(crate) struct Scanner {
    patterns: Vec<Pattern>,
    chunks: Vec<Chunk>,
}

fn combinable(regex: &str) -> bool {
    // Back-references and numbered/relative subroutine calls change meaning inside a bigger
    // pattern; so do top-level verbs. Keep those patterns alone.
    let b = regex.as_bytes();
    for i in 0..b.len() {
        if b[i] == b'\\' {
            if let Some(&n) = b.get(i + 1) {
                if n.is_ascii_digit() && n != b'0' || matches!(n, b'g' | b'k') {
                    return false;
                }
            }
        }
        if b[i] == b'(' && matches!(b.get(i + 1), Some(b'*')) {
            return false;
        }
        if b[i] == b'(' && b.get(i + 1) == Some(&b'?') {
            if let Some(&n) = b.get(i + 2) {
                if n.is_ascii_digit() || matches!(n, b'+' | b'-' | b'R' | b'&' | b'P' | b'|') {
                    // `(?-i)` style flag groups are harmless but rare; be conservative.
                    return false;
                }
            }
        }
    }
    true
}

fn dfa_filter(translated: &[String]) -> Option<regex::bytes::Regex> {
    let prefix = superset(PARSER_PREFIX)?;
    let body: Vec<String> = translated.iter().map(|t| format!("(?:{t})")).collect();
    regex::bytes::RegexBuilder::new(&format!("(?i-u){prefix}(?:{})", body.join("|")))
        .unicode(false)
        .size_limit(64 << 20)
        .dfa_size_limit(16 << 20)
        .build()
        .ok()
}

fn pcre_filter(regexes: &[&str]) -> Filter {
    if regexes.len() < 2 {
        return Filter::None;
    }
    let body: Vec<String> = regexes
        .iter()
        .map(|r| format!("(?:{})", php_escape_slash(r)))
        .collect();
    Filter::Pcre(Pattern::raw(
        format!("{PARSER_PREFIX}(?:{})", body.join("|")),
        true,
    ))
}

impl Scanner {
    /// Builds a scanner over `regexes` (DeviceDetector parser patterns, in file order).
    pub(crate) fn new<'a>(regexes: impl IntoIterator<Item = &'a str>) -> Self {
        let regexes: Vec<&str> = regexes.into_iter().collect();
        let patterns = regexes.iter().map(|r| Pattern::parser(r)).collect();
        let translated: Vec<Option<String>> = regexes.iter().map(|r| superset(r)).collect();
        let mut chunks = Vec::new();
        let mut i = 0;
        while i < regexes.len() {
            let start = i;
            if translated[i].is_some() {
                while i < regexes.len() && i - start < DFA_CHUNK && translated[i].is_some() {
                    i += 1;
                }
                let parts: Vec<String> = translated[start..i].iter().flatten().cloned().collect();
                let filter = match dfa_filter(&parts) {
                    Some(dfa) => Filter::Dfa(dfa),
                    None => pcre_filter(&regexes[start..i]),
                };
                chunks.push(Chunk {
                    start,
                    end: i,
                    filter,
                });
            } else if combinable(regexes[i]) {
                while i < regexes.len()
                    && i - start < PCRE_CHUNK
                    && translated[i].is_none()
                    && combinable(regexes[i])
                {
                    i += 1;
                }
                let filter = pcre_filter(&regexes[start..i]);
                chunks.push(Chunk {
                    start,
                    end: i,
                    filter,
                });
            } else {
                i += 1;
                chunks.push(Chunk {
                    start,
                    end: i,
                    filter: Filter::None,
                });
            }
        }
        Self { patterns, chunks }
    }

    /// Index and captures of the first pattern that matches `ua`.
    pub(crate) fn first(&self, ua: &str) -> Option<(usize, Captures)> {
        for chunk in &self.chunks {
            let skip = match &chunk.filter {
                Filter::None => false,
                Filter::Dfa(dfa) => !dfa.is_match(ua.as_bytes()),
                Filter::Pcre(combined) => combined.probe(ua) == Probe::NoMatch,
            };
            if skip {
                continue;
            }
            for idx in chunk.start..chunk.end {
                if let Some(caps) = self.patterns[idx].captures(ua) {
                    return Some((idx, caps));
                }
            }
        }
        None
    }

    /// Compile errors of the individual patterns, as `(index, message)`.
    pub(crate) fn check(&self) -> Vec<(usize, String)> {
        self.patterns
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.check().err().map(|e| (i, e)))
            .collect()
    }
}

/// PHP `AbstractParser::preMatchOverall`.
#[derive(Debug)]
pub(crate) struct OverallGate {
    pattern: Pattern,
}

impl OverallGate {
    /// `array_reduce(array_reverse($regexes), …)` joined with `|`, then wrapped like any pattern.
    pub(crate) fn new<'a>(regexes: impl DoubleEndedIterator<Item = &'a str>) -> Self {
        let joined: Vec<&str> = regexes.rev().collect();
        Self {
            pattern: Pattern::parser(&joined.join("|")),
        }
    }

    /// Whether the gate lets the user agent through. A gate that cannot be compiled lets
    /// everything through (the individual patterns still decide).
    pub(crate) fn passes(&self, ua: &str) -> bool {
        matches!(self.pattern.probe(ua), Probe::Match | Probe::CompileError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_match_is_sequential_order() {
        let regexes: Vec<String> = (0..60).map(|i| format!("tok{i}x(\\d*)")).collect();
        let mut list: Vec<&str> = regexes.iter().map(String::as_str).collect();
        list.push(r"(a)\1");
        list.push("zz(?<n>x)");
        let s = Scanner::new(list.iter().copied());
        assert_eq!(s.first("x tok5x tok40x").map(|(i, _)| i), Some(5));
        assert_eq!(s.first("x tok41x tok40x").map(|(i, _)| i), Some(40));
        assert_eq!(s.first("x tok59x").unwrap().0, 59);
        assert_eq!(s.first(" aa").unwrap().0, 60);
        assert_eq!(s.first(" zzx").unwrap().0, 61);
        assert!(s.first("nothing").is_none());
        assert!(s.check().is_empty());
    }
}
