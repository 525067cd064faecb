//! The per-hit ledger: for every hit of the run, its kind and site, when its target accepted it,
//! and when its row was first seen in MySQL.
//!
//! Send tasks and the row poller write it concurrently (lock-free atomics, one slot per hit);
//! reconciliation and the lag percentiles read it at the end. Times are milliseconds since the
//! start of the run, stored plus one so that zero means "never".

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use crate::visitor::HitKind;

/// Shared record of every hit of a run.
pub struct Ledger {
    kind: Vec<AtomicU8>,
    site: Vec<AtomicU32>,
    accepted: Vec<AtomicU32>,
    seen: Vec<AtomicU32>,
    generated: AtomicU64,
}

fn to_ms(at: Duration) -> u32 {
    u32::try_from(at.as_millis()).unwrap_or(u32::MAX - 1) + 1
}

impl Ledger {
    /// A ledger with room for `capacity` hits.
    pub fn new(capacity: usize) -> Self {
        let mk32 = || (0..capacity).map(|_| AtomicU32::new(0)).collect::<Vec<_>>();
        Self {
            kind: (0..capacity).map(|_| AtomicU8::new(u8::MAX)).collect(),
            site: mk32(),
            accepted: mk32(),
            seen: mk32(),
            generated: AtomicU64::new(0),
        }
    }

    /// Room in hits.
    pub fn capacity(&self) -> usize {
        self.kind.len()
    }

    /// Hits generated so far (sequence numbers `0..generated`).
    pub fn generated(&self) -> u64 {
        self.generated.load(Ordering::Acquire)
    }

    /// Records a generated hit. Returns false when the ledger is full.
    pub fn record_generated(&self, seq: u64, kind: HitKind, site: u32) -> bool {
        let Some(slot) = self.kind.get(seq as usize) else {
            return false;
        };
        slot.store(kind.index() as u8, Ordering::Relaxed);
        self.site[seq as usize].store(site, Ordering::Relaxed);
        self.generated.fetch_max(seq + 1, Ordering::AcqRel);
        true
    }

    /// Records that the target accepted hit `seq` at `at`.
    pub fn record_accepted(&self, seq: u64, at: Duration) {
        if let Some(slot) = self.accepted.get(seq as usize) {
            slot.store(to_ms(at), Ordering::Relaxed);
        }
    }

    /// Records the first time a row of hit `seq` was seen; later sightings are ignored.
    pub fn record_seen(&self, seq: u64, at: Duration) {
        if let Some(slot) = self.seen.get(seq as usize) {
            let _ = slot.compare_exchange(0, to_ms(at), Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// The kind of hit `seq`, if generated.
    pub fn kind(&self, seq: u64) -> Option<HitKind> {
        let k = self.kind.get(seq as usize)?.load(Ordering::Relaxed);
        HitKind::ALL.get(usize::from(k)).copied()
    }

    /// The site of hit `seq`.
    pub fn site(&self, seq: u64) -> u32 {
        self.site
            .get(seq as usize)
            .map_or(0, |s| s.load(Ordering::Relaxed))
    }

    /// When hit `seq` was accepted, if it was.
    pub fn accepted_at(&self, seq: u64) -> Option<Duration> {
        let v = self.accepted.get(seq as usize)?.load(Ordering::Relaxed);
        (v != 0).then(|| Duration::from_millis(u64::from(v - 1)))
    }

    /// When a row of hit `seq` was first seen, if it was.
    pub fn seen_at(&self, seq: u64) -> Option<Duration> {
        let v = self.seen.get(seq as usize)?.load(Ordering::Relaxed);
        (v != 0).then(|| Duration::from_millis(u64::from(v - 1)))
    }
}
