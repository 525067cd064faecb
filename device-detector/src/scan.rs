//! Ordered rule lists with a combined-pattern prefilter.
//!
//! DeviceDetector tries a parser's regexes one by one and keeps the first that matches. Doing that
//! for ~2,000 device brands per user agent is the hot path, so a [`Scanner`] groups consecutive
//! patterns into chunks and first runs one alternation per chunk: a chunk whose alternation does
//! not match is skipped whole. Alternation `P(?:(?:a)|(?:b))` matches exactly when `P(?:a)` or
//! `P(?:b)` does, so the first match found is the one the sequential scan would find. Patterns
//! whose meaning depends on group numbers (back-references, relative recursion) are never
//! combined, and a chunk whose alternation cannot be compiled or run is scanned one by one.
//!
//! [`OverallGate`] is the other thing: PHP's `preMatchOverall`, one alternation of every regex
//! of a parser in reverse order, which some parsers use as a yes/no gate. It is reproduced as PHP
//! builds it, because its answer (not just its speed) is part of the algorithm.

use crate::pattern::{php_escape_slash, Captures, Pattern, Probe, PARSER_PREFIX};

const CHUNK: usize = 24;

#[derive(Debug)]
struct Chunk {
    start: usize,
    end: usize,
    combined: Option<Pattern>,
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

impl Scanner {
    /// Builds a scanner over `regexes` (DeviceDetector parser patterns, in file order).
    pub(crate) fn new<'a>(regexes: impl IntoIterator<Item = &'a str>) -> Self {
        let regexes: Vec<&str> = regexes.into_iter().collect();
        let patterns = regexes.iter().map(|r| Pattern::parser(r)).collect();
        let mut chunks = Vec::new();
        let mut i = 0;
        while i < regexes.len() {
            if !combinable(regexes[i]) {
                chunks.push(Chunk {
                    start: i,
                    end: i + 1,
                    combined: None,
                });
                i += 1;
                continue;
            }
            let start = i;
            while i < regexes.len() && i - start < CHUNK && combinable(regexes[i]) {
                i += 1;
            }
            let combined = (i - start > 1).then(|| {
                let body: Vec<String> = regexes[start..i]
                    .iter()
                    .map(|r| format!("(?:{})", php_escape_slash(r)))
                    .collect();
                Pattern::raw(format!("{PARSER_PREFIX}(?:{})", body.join("|")), true)
            });
            chunks.push(Chunk {
                start,
                end: i,
                combined,
            });
        }
        Self { patterns, chunks }
    }

    /// Index and captures of the first pattern that matches `ua`.
    pub(crate) fn first(&self, ua: &str) -> Option<(usize, Captures)> {
        for chunk in &self.chunks {
            if let Some(combined) = &chunk.combined {
                if combined.probe(ua) == Probe::NoMatch {
                    continue;
                }
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
