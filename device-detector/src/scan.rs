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

use std::sync::OnceLock;

use crate::pattern::{php_escape_slash, Captures, Pattern, Probe, PARSER_PREFIX};
use crate::translate::{lowercase_superset, superset};

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

/// What a chunk's prefilter is built from (built on first use, so loading stays cheap).
#[derive(Debug)]
enum FilterSpec {
    None,
    /// Translated patterns for the DFA, and the originals in case the DFA cannot be built.
    Dfa(Vec<String>, Vec<String>),
    Pcre(Vec<String>),
}

#[derive(Debug)]
struct Chunk {
    start: usize,
    end: usize,
    spec: FilterSpec,
    filter: OnceLock<Filter>,
}

impl Chunk {
    fn new(start: usize, end: usize, spec: FilterSpec) -> Self {
        Self {
            start,
            end,
            spec,
            filter: OnceLock::new(),
        }
    }

    fn filter(&self) -> &Filter {
        self.filter.get_or_init(|| match &self.spec {
            FilterSpec::None => Filter::None,
            FilterSpec::Dfa(translated, originals) => match dfa_filter(translated) {
                Some(dfa) => Filter::Dfa(dfa),
                None => pcre_filter(originals),
            },
            FilterSpec::Pcre(originals) => pcre_filter(originals),
        })
    }
}

/// An ordered list of parser patterns with a chunked prefilter.
#[derive(Debug)]
pub(crate) struct Scanner {
    patterns: Vec<Pattern>,
    chunks: Vec<Chunk>,
    /// Chunk of each pattern.
    chunk_of: Vec<u32>,
    literals: Option<LiteralIndex>,
}

/// Required literals of the patterns: a pattern can only match a user agent that contains
/// (ASCII case-insensitively) one of its literals, so one Aho-Corasick pass over the lowered user
/// agent names the candidates. Patterns without a usable literal set are always candidates.
#[derive(Debug)]
struct LiteralIndex {
    ac: aho_corasick::AhoCorasick,
    /// Literal id → patterns that require it.
    owners: Vec<Vec<u32>>,
    /// Patterns without literals.
    always: Vec<u32>,
    has_literals: Vec<bool>,
}

/// Literals one of which every match of `regex` starts with, lowered; `None` when unknown.
fn required_literals(regex: &str) -> Option<Vec<Vec<u8>>> {
    let lowered = lowercase_superset(regex)?;
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(&lowered)
        .ok()?;
    let mut extractor = regex_syntax::hir::literal::Extractor::new();
    extractor.limit_total(1_000);
    let seq = extractor.extract(&hir);
    let literals = seq.literals()?;
    if literals.is_empty() || literals.iter().any(|l| l.as_bytes().is_empty()) {
        return None;
    }
    Some(literals.iter().map(|l| l.as_bytes().to_vec()).collect())
}

impl LiteralIndex {
    fn new(regexes: &[&str]) -> Option<Self> {
        let mut ids: std::collections::HashMap<Vec<u8>, usize> = Default::default();
        let mut owners: Vec<Vec<u32>> = Vec::new();
        let mut always = Vec::new();
        let mut has_literals = Vec::with_capacity(regexes.len());
        for (idx, regex) in regexes.iter().enumerate() {
            let idx = u32::try_from(idx).ok()?;
            match required_literals(regex) {
                Some(lits) => {
                    has_literals.push(true);
                    for lit in lits {
                        let next = owners.len();
                        let id = *ids.entry(lit).or_insert(next);
                        if id == owners.len() {
                            owners.push(Vec::new());
                        }
                        owners[id].push(idx);
                    }
                }
                None => {
                    has_literals.push(false);
                    always.push(idx);
                }
            }
        }
        let mut by_id: Vec<(usize, Vec<u8>)> = ids.into_iter().map(|(l, id)| (id, l)).collect();
        by_id.sort_unstable();
        let ac = aho_corasick::AhoCorasick::new(by_id.into_iter().map(|(_, l)| l)).ok()?;
        Some(Self {
            ac,
            owners,
            always,
            has_literals,
        })
    }

    /// Candidate pattern indices for `ua`, ascending.
    fn candidates(&self, ua: &str) -> Vec<u32> {
        let lowered = ua.as_bytes().to_ascii_lowercase();
        let mut out = self.always.clone();
        for m in self.ac.find_overlapping_iter(&lowered) {
            out.extend_from_slice(&self.owners[m.pattern().as_usize()]);
        }
        out.sort_unstable();
        out.dedup();
        out
    }
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

fn pcre_filter(regexes: &[String]) -> Filter {
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
                let originals = regexes[start..i].iter().map(|r| r.to_string()).collect();
                chunks.push(Chunk::new(start, i, FilterSpec::Dfa(parts, originals)));
            } else if combinable(regexes[i]) {
                while i < regexes.len()
                    && i - start < PCRE_CHUNK
                    && translated[i].is_none()
                    && combinable(regexes[i])
                {
                    i += 1;
                }
                let originals = regexes[start..i].iter().map(|r| r.to_string()).collect();
                chunks.push(Chunk::new(start, i, FilterSpec::Pcre(originals)));
            } else {
                i += 1;
                chunks.push(Chunk::new(start, i, FilterSpec::None));
            }
        }
        let mut chunk_of = vec![0u32; regexes.len()];
        for (ci, chunk) in chunks.iter().enumerate() {
            for slot in &mut chunk_of[chunk.start..chunk.end] {
                *slot = ci as u32;
            }
        }
        // Worth it for long lists only; short ones are scanned chunk by chunk.
        let literals = (regexes.len() >= 64)
            .then(|| LiteralIndex::new(&regexes))
            .flatten();
        Self {
            patterns,
            chunks,
            chunk_of,
            literals,
        }
    }

    fn chunk_passes(&self, chunk: &Chunk, ua: &str) -> bool {
        match chunk.filter() {
            Filter::None => true,
            Filter::Dfa(dfa) => dfa.is_match(ua.as_bytes()),
            Filter::Pcre(combined) => combined.probe(ua) != Probe::NoMatch,
        }
    }

    /// Index and captures of the first pattern that matches `ua`.
    pub(crate) fn first(&self, ua: &str) -> Option<(usize, Captures)> {
        if let Some(index) = &self.literals {
            // Candidates in rule order; patterns without literals still go through their
            // chunk's prefilter (evaluated at most once per chunk).
            let mut chunk_pass: Vec<Option<bool>> = vec![None; self.chunks.len()];
            for idx in index.candidates(ua) {
                let idx = idx as usize;
                if !index.has_literals[idx] {
                    let ci = self.chunk_of[idx] as usize;
                    let pass = *chunk_pass[ci]
                        .get_or_insert_with(|| self.chunk_passes(&self.chunks[ci], ua));
                    if !pass {
                        continue;
                    }
                }
                if let Some(caps) = self.patterns[idx].captures(ua) {
                    return Some((idx, caps));
                }
            }
            return None;
        }
        for chunk in &self.chunks {
            let skip = match chunk.filter() {
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

    /// Compile errors of the individual patterns, as `(index, message)`. Builds every chunk's
    /// prefilter too, so nothing is left to compile on first use.
    pub(crate) fn check(&self) -> Vec<(usize, String)> {
        for chunk in &self.chunks {
            chunk.filter();
        }
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
    fn literal_index_keeps_rule_order() {
        let mut regexes: Vec<String> = (0..100).map(|i| format!("Model{i}x")).collect();
        regexes[10] = r"(?:Foo|Bar)-(\d+)".into();
        regexes[20] = r".*endmark$".into(); // no literal prefix: always a candidate
        regexes[30] = r"MODEL5X".into(); // same text as rule 5, later
        let s = Scanner::new(regexes.iter().map(String::as_str));
        assert!(s.literals.is_some());
        assert_eq!(s.first("a model5x b").map(|(i, _)| i), Some(5));
        assert_eq!(s.first("a BAR-42 model5x").map(|(i, _)| i), Some(5));
        let (idx, caps) = s.first("a BAR-42 b").unwrap();
        assert_eq!((idx, caps.get(1)), (10, "42"));
        assert_eq!(s.first("x model99x endmark").map(|(i, _)| i), Some(20));
        assert_eq!(s.first("x model99x").map(|(i, _)| i), Some(99));
        assert!(s.first("nothing here").is_none());
        assert!(s.first("xmodel5x").is_none()); // the token-start prefix still applies
    }

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
