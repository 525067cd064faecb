//! Reading a batch ahead: phase 1 of a batch ([`super::prepare`]) done before the batch's turn,
//! while MySQL still runs the batch in front of it, so a shard's CPU work and MariaDB's overlap.
//!
//! Phase 1 depends on nothing a batch writes: only on the request sets, the configuration
//! snapshot and the fingerprint salts. A read-ahead is therefore made only when every salt it
//! needs is already known committed (in the snapshot or the tracker's salt cache), and it is used
//! only with the snapshot it was made with, for exactly the sets it was made for, on a batch's
//! first pass. Otherwise the batch reads its requests itself, as it always did; a read-ahead
//! thrown away costs CPU, never a row.

use std::collections::HashSet;
use std::sync::Arc;

use matomo_wire::RequestSet;

use super::prepare::{self, local_day, Prepared, SaltBook};
use super::request::{Request, RequestError};
use super::settings::Snapshot;
use super::Tracker;

/// Phase 1 of one request read ahead: `prepare`'s verdict and the `tracking_failure` ids the
/// reading recorded.
#[derive(Debug)]
pub(crate) struct ReadOne {
    pub(crate) prepared: Result<Option<Prepared>, RequestError>,
    pub(crate) failures: Vec<u8>,
}

/// Phase 1 of a whole batch, made by [`Tracker::read_ahead`].
#[derive(Debug)]
pub struct Ahead {
    snap: Arc<Snapshot>,
    /// Per set, the `time` and request count it was made for (checked before use).
    shape: Vec<(i64, usize)>,
    /// Per set, per request: `None` when the request has no known site (it is skipped).
    pub(crate) reads: Vec<Vec<Option<ReadOne>>>,
}

impl Ahead {
    /// Whether this read-ahead was made for `sets` with `snap`.
    pub(crate) fn fits(&self, snap: &Snapshot, sets: &[RequestSet]) -> bool {
        std::ptr::eq(Arc::as_ptr(&self.snap), snap)
            && self.shape.len() == sets.len()
            && self
                .shape
                .iter()
                .zip(sets)
                .all(|(&(time, n), set)| time == set.time && n == set.requests.len())
    }
}

impl Tracker {
    /// Phase 1 of the batch `sets`, to hand to [`Tracker::process_batch`] later. Pure CPU work
    /// on the current configuration snapshot (never refreshed here); `None` when a fingerprint
    /// salt it needs is not known committed yet, in which case the batch reads its requests
    /// itself.
    pub fn read_ahead(&self, sets: &[RequestSet]) -> Option<Ahead> {
        let snap = self.snapshot.read().map(|guard| guard.0.clone()).ok()?;
        let mut reqs = self.requests(&snap, sets);
        let salts = self.known_salts(&snap, &mut reqs)?;
        let matchers = prepare::url_matchers(&snap, &self.campaign);
        let reads = reqs
            .iter_mut()
            .enumerate()
            .map(|(si, set_reqs)| {
                // QueuedTracking's count of requests tracked so far, as a first pass counts.
                let mut count = 0usize;
                set_reqs
                    .iter_mut()
                    .enumerate()
                    .map(|(pi, slot)| {
                        let req = slot.as_mut()?;
                        let prepared =
                            prepare::prepare(self, &snap, &salts, req, (si, pi), count, matchers);
                        count += 1;
                        Some(ReadOne {
                            prepared,
                            failures: std::mem::take(&mut req.failures),
                        })
                    })
                    .collect()
            })
            .collect();
        let shape = sets.iter().map(|s| (s.time, s.requests.len())).collect();
        Some(Ahead { snap, shape, reads })
    }

    /// The salts of the days of `reqs`, when all are known committed (the snapshot first, as
    /// [`SaltBook::salt`] answers, then the tracker's cache); `None` otherwise.
    fn known_salts(
        &self,
        snap: &Snapshot,
        reqs: &mut [Vec<Option<Request<'_>>>],
    ) -> Option<SaltBook> {
        let tr = &self.config.matomo.tracker;
        let mut book = SaltBook::default();
        if !tr.create_new_visit_after_midnight || tr.enable_fingerprinting_across_websites {
            return Some(book);
        }
        let mut keys: HashSet<(u32, String)> = HashSet::new();
        let mut days_seen: HashSet<(u32, i64)> = HashSet::new();
        for req in reqs.iter_mut().flatten().flatten() {
            let ts = req.timestamp().unwrap_or(req.now);
            let (idsite, zone) = (req.idsite(), req.site.zone);
            if days_seen.insert((idsite, zone.day_number(ts))) {
                keys.insert((idsite, local_day(&zone, ts)));
            }
        }
        for key in &keys {
            if snap.fingerprint_salt(key.0, &key.1).is_none() {
                book.known.insert(key.clone(), self.salts.get(key)?);
            }
        }
        book.resolve(snap, &keys);
        Some(book)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(time: i64, requests: usize) -> RequestSet {
        RequestSet {
            time,
            requests: vec![Default::default(); requests],
            ..RequestSet::default()
        }
    }

    #[test]
    fn a_read_ahead_fits_only_its_own_sets_and_snapshot() {
        let snap = Arc::new(Snapshot::default());
        let sets = vec![set(10, 2), set(11, 1)];
        let ahead = Ahead {
            snap: snap.clone(),
            shape: sets.iter().map(|s| (s.time, s.requests.len())).collect(),
            reads: Vec::new(),
        };
        assert!(ahead.fits(&snap, &sets));
        // A refreshed snapshot, even an equal one.
        assert!(!ahead.fits(&Snapshot::default(), &sets));
        // A set put aside, another set, a set cut short.
        assert!(!ahead.fits(&snap, &sets[..1]));
        assert!(!ahead.fits(&snap, &[set(10, 2), set(12, 1)]));
        assert!(!ahead.fits(&snap, &[set(10, 1), set(11, 1)]));
    }
}
