//! The batch in hand: its raw entries, the decoded request sets still to be written (with their
//! positions in the batch) and the verdicts on entries set aside (undecodable, rejected by the
//! tracker, refused by MySQL, suspect). Pure bookkeeping for `batch`: which sets a span writes
//! and which dead-letter notes its marker carries.

use std::ops::Range;

use bytes::Bytes;
use matomo_wire::RequestSet;

use super::progress::DeadLetterNote;
use crate::metrics::DeadLetterReason;

/// An entry set aside: it will be committed as a dead letter (or dropped) with its span.
#[derive(Debug, Clone)]
pub(super) struct Aside {
    pub(super) reason: String,
    pub(super) dead_letter: bool,
    pub(super) cause: DeadLetterReason,
}

/// The batch in hand: the raw entries, the decoded sets still to be written (with their
/// positions in the batch, ascending) and the verdicts on entries set aside.
pub(super) struct InHand {
    pub(super) entries: Vec<Bytes>,
    pub(super) sets: Vec<RequestSet>,
    pub(super) positions: Vec<usize>,
    pub(super) aside: Vec<Option<Aside>>,
    /// No set was put aside or back since decoding: `sets` is what was read ahead.
    pub(super) pristine: bool,
}

impl InHand {
    pub(super) fn decode(entries: Vec<Bytes>) -> Self {
        let mut sets = Vec::with_capacity(entries.len());
        let mut positions = Vec::with_capacity(entries.len());
        let mut aside = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            match matomo_wire::decode(entry) {
                Ok(set) => {
                    sets.push(set);
                    positions.push(i);
                    aside.push(None);
                }
                Err(e) => aside.push(Some(Aside {
                    reason: format!("undecodable: {e}"),
                    dead_letter: true,
                    cause: DeadLetterReason::Undecodable,
                })),
            }
        }
        Self {
            entries,
            sets,
            positions,
            aside,
            pristine: true,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The range of `sets` whose entries lie in `span`.
    pub(super) fn sets_in(&self, span: &Range<usize>) -> Range<usize> {
        let lo = self.positions.partition_point(|&p| p < span.start);
        let hi = self.positions.partition_point(|&p| p < span.end);
        lo..hi
    }

    /// Sets entry `position` aside; its decoded set is no longer written.
    pub(super) fn set_aside(&mut self, position: usize, aside: Aside) {
        self.pristine = false;
        if let Ok(k) = self.positions.binary_search(&position) {
            self.positions.remove(k);
            self.sets.remove(k);
        }
        self.aside[position] = Some(aside);
    }

    /// Takes back a verdict (a suspicion that did not hold): the entry is written again.
    pub(super) fn withdraw(&mut self, position: usize) {
        let Some(aside) = self.aside[position].take() else {
            return;
        };
        self.pristine = false;
        match matomo_wire::decode(&self.entries[position]) {
            Ok(set) => {
                let k = self.positions.partition_point(|&p| p < position);
                self.positions.insert(k, position);
                self.sets.insert(k, set);
            }
            Err(_) => self.aside[position] = Some(aside),
        }
    }

    /// Dead-letter notes of `span`, with indexes relative to the span (as the marker and the
    /// trim script see them).
    pub(super) fn notes(&self, span: &Range<usize>) -> Vec<DeadLetterNote> {
        span.clone()
            .filter_map(|i| match &self.aside[i] {
                Some(a) if a.dead_letter => Some(DeadLetterNote {
                    index: u32::try_from(i - span.start).unwrap_or(u32::MAX),
                    reason: a.reason.clone(),
                }),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hand(n: usize, undecodable: &[usize]) -> InHand {
        let entries = (0..n)
            .map(|i| {
                if undecodable.contains(&i) {
                    Bytes::from_static(b"not an entry")
                } else {
                    let set = RequestSet {
                        time: i as i64,
                        ..RequestSet::default()
                    };
                    Bytes::from(matomo_wire::encode(&set))
                }
            })
            .collect();
        InHand::decode(entries)
    }

    fn aside(reason: &str) -> Aside {
        Aside {
            reason: reason.into(),
            dead_letter: true,
            cause: DeadLetterReason::MysqlData,
        }
    }

    #[test]
    fn spans_select_their_sets_and_notes_are_relative_to_the_span() {
        let mut h = hand(8, &[2]);
        assert_eq!(h.sets.len(), 7);
        h.set_aside(5, aside("refused"));
        // Span 2..7 holds entries 3, 4, 6 as sets; 2 (undecodable) and 5 (refused) as notes.
        let sets = h.sets_in(&(2..7));
        let times: Vec<i64> = h.sets[sets].iter().map(|s| s.time).collect();
        assert_eq!(times, vec![3, 4, 6]);
        let notes = h.notes(&(2..7));
        assert_eq!(
            notes.iter().map(|n| n.index).collect::<Vec<_>>(),
            vec![0, 3]
        );
        assert!(notes[0].reason.starts_with("undecodable"));
        assert_eq!(notes[1].reason, "refused");
        assert!(h.notes(&(6..8)).is_empty());
    }

    #[test]
    fn a_withdrawn_verdict_puts_the_set_back_in_queue_order() {
        let mut h = hand(5, &[4]);
        h.set_aside(2, aside("suspect"));
        h.withdraw(2);
        assert_eq!(h.positions, vec![0, 1, 2, 3]);
        let times: Vec<i64> = h.sets.iter().map(|s| s.time).collect();
        assert_eq!(times, vec![0, 1, 2, 3]);
        assert!(h.aside[2].is_none());
        // An undecodable entry cannot be withdrawn into a set.
        h.withdraw(4);
        assert!(h.aside[4].is_some());
        assert_eq!(h.sets.len(), 4);
    }
}
