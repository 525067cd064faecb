//! Planning the transactions of one batch when MySQL refuses it without naming the entry: the
//! batch is written as a sequence of spans (each a prefix of what is left), halving the failing
//! span until it is one entry long. Pure bookkeeping, no I/O; the batch pipeline asks it for
//! the next span and reports what became of it.
//!
//! Guarantees: spans are consecutive and start where the previous committed one ended, so the
//! entries before a culprit commit before it and the entries after it commit after it; an
//! entry is only ever isolated after it failed *alone* (in a span of length one); every span
//! that is attempted is at least one entry long, and a failing span of length `n > 1` is
//! followed by a span of at most `n / 2`, so a culprit is isolated within about `log2(n)`
//! failed attempts.

use std::ops::Range;

/// What a refused span led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Narrowed {
    /// The span was halved; the next span is its first half.
    Split,
    /// The span was this one entry: it is the culprit.
    Isolated(usize),
}

/// The span plan of one batch of `len` entries.
#[derive(Debug, Clone)]
pub(super) struct Bisect {
    len: usize,
    /// First entry not committed yet.
    start: usize,
    /// Entries in the next span.
    limit: usize,
    /// While narrowing: the end of the smallest span known to fail.
    suspect_end: Option<usize>,
}

impl Bisect {
    /// A plan that first tries the whole batch in one span.
    pub(super) fn new(len: usize) -> Self {
        Self {
            len,
            start: 0,
            limit: len.max(1),
            suspect_end: None,
        }
    }

    /// The next span to write, `None` when every entry is committed.
    pub(super) fn next_span(&self) -> Option<Range<usize>> {
        (self.start < self.len).then(|| self.start..(self.start + self.limit).min(self.len))
    }

    /// `span` (the last one handed out) committed.
    pub(super) fn committed(&mut self, span: &Range<usize>) {
        self.start = span.end;
        match self.suspect_end {
            // The culprit is in what is left of the failing span: go on with half of it
            // (or the single entry left, which must then fail alone to be blamed).
            Some(end) if end > self.start => {
                let left = end - self.start;
                self.limit = if left == 1 { 1 } else { left / 2 };
            }
            _ => self.whole_rest(),
        }
    }

    /// `span` (the last one handed out) was refused.
    pub(super) fn refused(&mut self, span: &Range<usize>) -> Narrowed {
        if span.len() <= 1 {
            self.whole_rest();
            return Narrowed::Isolated(span.start);
        }
        self.suspect_end = Some(span.end);
        self.limit = span.len() / 2;
        Narrowed::Split
    }

    /// Forget the narrowing: the next span is everything not committed yet.
    pub(super) fn whole_rest(&mut self) {
        self.suspect_end = None;
        self.limit = (self.len - self.start.min(self.len)).max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a plan against a "server" that refuses a span when `refuses(live entries of the
    /// span)`; culprits are set aside (they stay in later spans but are no longer live).
    /// Returns (committed live entries in commit order, isolated entries, attempts).
    fn simulate(len: usize, refuses: impl Fn(&[usize]) -> bool) -> (Vec<usize>, Vec<usize>, usize) {
        let mut plan = Bisect::new(len);
        let mut aside = vec![false; len];
        let mut committed = Vec::new();
        let mut isolated = Vec::new();
        let mut attempts = 0;
        while let Some(span) = plan.next_span() {
            attempts += 1;
            assert!(attempts < 10 * len + 10, "the plan does not terminate");
            let live: Vec<usize> = span.clone().filter(|&i| !aside[i]).collect();
            if !live.is_empty() && refuses(&live) {
                if let Narrowed::Isolated(i) = plan.refused(&span) {
                    assert_eq!(span.len(), 1, "only a span of one entry isolates");
                    aside[i] = true;
                    isolated.push(i);
                }
            } else {
                committed.extend(live);
                plan.committed(&span);
            }
        }
        (committed, isolated, attempts)
    }

    #[test]
    fn a_clean_batch_is_one_span() {
        let (committed, isolated, attempts) = simulate(40, |_| false);
        assert_eq!(committed, (0..40).collect::<Vec<_>>());
        assert!(isolated.is_empty());
        assert_eq!(attempts, 1);
    }

    #[test]
    fn one_culprit_anywhere_is_isolated_and_everything_else_committed_in_order() {
        for culprit in 0..40 {
            let (committed, isolated, attempts) = simulate(40, |live| live.contains(&culprit));
            let expected: Vec<usize> = (0..40).filter(|&i| i != culprit).collect();
            assert_eq!(committed, expected, "culprit {culprit}");
            assert_eq!(isolated, vec![culprit]);
            // The failed attempts are logarithmic; commits come on top.
            assert!(
                attempts <= 2 * 7 + 2,
                "culprit {culprit}: {attempts} attempts"
            );
        }
    }

    #[test]
    fn several_culprits_are_each_isolated() {
        let bad = [0usize, 7, 8, 39];
        let (committed, isolated, _) = simulate(40, |live| live.iter().any(|i| bad.contains(i)));
        assert_eq!(isolated, bad.to_vec());
        let expected: Vec<usize> = (0..40).filter(|i| !bad.contains(i)).collect();
        assert_eq!(committed, expected);
    }

    #[test]
    fn a_failure_that_needs_two_entries_together_blames_at_most_one() {
        // Refused only when 5 and 30 are in one transaction (e.g. a duplicate key between them).
        let (committed, isolated, _) = simulate(40, |live| live.contains(&5) && live.contains(&30));
        assert!(isolated.is_empty(), "{isolated:?}");
        assert_eq!(committed, (0..40).collect::<Vec<_>>());
    }

    #[test]
    fn order_of_commits_and_culprits_is_the_queue_order() {
        let bad = [3usize, 17, 18, 19];
        let mut plan = Bisect::new(25);
        let mut seen = Vec::new();
        let mut aside = [false; 25];
        while let Some(span) = plan.next_span() {
            let live: Vec<usize> = span.clone().filter(|&i| !aside[i]).collect();
            if live.iter().any(|i| bad.contains(i)) {
                if let Narrowed::Isolated(i) = plan.refused(&span) {
                    aside[i] = true;
                }
            } else {
                // Set-aside entries commit (as dead letters) with the span that covers them.
                seen.extend(span.clone());
                plan.committed(&span);
            }
        }
        assert_eq!(seen, (0..25).collect::<Vec<_>>());
    }

    #[test]
    fn an_empty_batch_has_no_span() {
        assert_eq!(Bisect::new(0).next_span(), None);
    }
}
