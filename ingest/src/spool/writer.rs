//! The spool's writer thread: owns the newest segment, group-commits appends (all jobs waiting
//! are written, then synced once under `fsync = "always"`), publishes the new lengths to the
//! shared state only after that (so the replayer never reads an unsynced record), then answers
//! each job. Under `interval` it syncs at most every `fsync_interval`, also when idle.

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tier_config::FsyncPolicy;

use super::metrics::SpoolMetrics;
use super::store::Appender;
use super::{record, AppendJob, Shared};
use crate::queue::EnqueueError;

/// The writer thread: owns the newest segment.
pub(super) struct Writer {
    pub(super) appender: Appender,
    pub(super) shared: Arc<Mutex<Shared>>,
    pub(super) max_bytes: u64,
    pub(super) segment_target: u64,
    pub(super) policy: FsyncPolicy,
    pub(super) interval: Duration,
    pub(super) metrics: SpoolMetrics,
    pub(super) unsynced: bool,
    pub(super) last_sync: Instant,
}

impl Writer {
    pub(super) fn run(mut self, rx: std_mpsc::Receiver<AppendJob>) {
        let tick = self.interval.max(Duration::from_millis(10));
        loop {
            let first = match rx.recv_timeout(tick) {
                Ok(job) => job,
                Err(std_mpsc::RecvTimeoutError::Timeout) => {
                    self.sync_if_due();
                    continue;
                }
                Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut jobs = vec![first];
            while let Ok(job) = rx.try_recv() {
                jobs.push(job);
                if jobs.len() >= 1024 {
                    break;
                }
            }
            self.write(jobs);
        }
        if self.unsynced && self.policy != FsyncPolicy::Never {
            let _ = self.appender.sync();
        }
    }

    fn sync_if_due(&mut self) {
        if self.unsynced
            && self.policy == FsyncPolicy::Interval
            && self.last_sync.elapsed() >= self.interval
        {
            match self.appender.sync() {
                Ok(()) => {
                    self.unsynced = false;
                    self.last_sync = Instant::now();
                }
                Err(error) => tracing::warn!(%error, "spool fsync failed"),
            }
        }
    }

    /// Appends every job that fits, syncs once, publishes the new lengths (only then may the
    /// replayer read them), and answers each job.
    fn write(&mut self, jobs: Vec<AppendJob>) {
        let start = (self.appender.segment, self.appender.len);
        let mut sealed: Vec<(u64, u64)> = Vec::new();
        let mut written = Vec::with_capacity(jobs.len());
        let mut failed = false;
        let mut pending = 0u64;
        let mut entries = 0u64;
        let used = self.lock_shared().pending_bytes();
        for job in jobs {
            if failed {
                let _ = job
                    .done
                    .send(Err(EnqueueError::Spool("write failed".into())));
                continue;
            }
            let mut buf = Vec::new();
            for entry in &job.entries {
                record::encode_into(&mut buf, entry.queue_id, &entry.bytes);
            }
            if used + pending + buf.len() as u64 > self.max_bytes {
                self.metrics.full();
                self.lock_shared().full = true;
                let _ = job.done.send(Err(EnqueueError::SpoolFull));
                continue;
            }
            if self.appender.len > 0 && self.appender.len + buf.len() as u64 > self.segment_target {
                let old = (self.appender.segment, self.appender.len);
                if let Err(e) = self.appender.roll(self.policy != FsyncPolicy::Never) {
                    tracing::error!(error = %e, "spool segment roll failed");
                    failed = true;
                    let _ = job.done.send(Err(EnqueueError::Spool(e.to_string())));
                    continue;
                }
                sealed.push(old);
            }
            if let Err(e) = self.appender.append(&buf) {
                tracing::error!(error = %e, "spool write failed");
                failed = true;
                let _ = job.done.send(Err(EnqueueError::Spool(e.to_string())));
                continue;
            }
            pending += buf.len() as u64;
            entries += job.entries.len() as u64;
            written.push(job.done);
        }
        if written.is_empty() {
            return;
        }
        if self.policy == FsyncPolicy::Always {
            if let Err(e) = self.appender.sync() {
                tracing::error!(error = %e, "spool fsync failed; refusing the hits of this write");
                // Cut the unsynced records off again so they are never replayed; across a
                // segment roll that is not possible and they may still be replayed once.
                if sealed.is_empty() && self.appender.segment == start.0 {
                    let _ = self.appender.rewind(start.1);
                } else {
                    self.publish(&sealed, pending, 0);
                }
                for done in written {
                    let _ = done.send(Err(EnqueueError::Spool(format!("fsync: {e}"))));
                }
                return;
            }
            self.last_sync = Instant::now();
        } else {
            self.unsynced = true;
            self.sync_if_due();
        }
        self.publish(&sealed, pending, entries);
        self.metrics.written(entries);
        for done in written {
            let _ = done.send(Ok(()));
        }
    }

    fn lock_shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes what was written visible to the replayer and the counters.
    fn publish(&self, sealed: &[(u64, u64)], bytes: u64, entries: u64) {
        let mut shared = self.lock_shared();
        for &(segment, len) in sealed {
            shared.segments.insert(segment, len);
        }
        shared
            .segments
            .insert(self.appender.segment, self.appender.len);
        shared.bytes += bytes;
        shared.entries += entries;
        if entries > 0 {
            shared.full = false;
        }
        self.metrics
            .state(shared.bytes, shared.entries, shared.segments.len() as u64);
    }
}
