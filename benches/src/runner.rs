//! The open-model load loop: a dispatcher that sends each request at its due time whatever the
//! targets do, send tasks, and a collector that keeps the statistics and prints the progress
//! line.
//!
//! The dispatcher never waits for an answer. When it falls behind its schedule the request is
//! still sent and counted as late (its latency includes the delay); when too many requests are
//! in flight the hits are dropped and counted. Nothing is silently slowed down.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::client::{self, HttpClient, Mode, Outcome};
use crate::ledger::Ledger;
use crate::schedule::RateProfile;
use crate::stats::{Event, Stats};
use crate::tag::TagError;
use crate::target::Target;
use crate::visitor::{Hit, VisitorModel};

/// How the load is sent.
#[derive(Debug, Clone)]
pub struct LoadSettings {
    /// Where hits go.
    pub targets: Vec<Target>,
    /// GET, POST or bulk.
    pub mode: Mode,
    /// Hits per bulk request.
    pub bulk_size: usize,
    /// Longest wait for a complete answer.
    pub timeout: Duration,
    /// Requests in flight above which due hits are dropped.
    pub max_in_flight: usize,
    /// A send this much later than its due time counts as late.
    pub late_threshold: Duration,
    /// Requests due before this are left out of the latency of the totals and targets.
    pub warmup: Duration,
    /// `token_auth` added to every request, if given.
    pub token_auth: Option<String>,
    /// Print the live progress line to stderr.
    pub progress: bool,
}

/// Live figures the probes publish for the progress line.
#[derive(Debug, Default)]
pub struct LiveGauges {
    /// Entries in all queues at the last sample, plus one (0: unknown).
    pub queue_depth: AtomicU64,
    /// Tagged rows seen per second at the last sample, plus one (0: unknown).
    pub rows_per_sec: AtomicU64,
}

impl LiveGauges {
    fn read(v: &AtomicU64) -> Option<u64> {
        v.load(Ordering::Relaxed).checked_sub(1)
    }

    /// Publishes a value.
    pub fn set(v: &AtomicU64, value: u64) {
        v.store(value.saturating_add(1), Ordering::Relaxed);
    }
}

/// A run that could not proceed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The hit tags ran out.
    #[error(transparent)]
    Tag(#[from] TagError),
    /// The ledger is smaller than the run.
    #[error("the run offers more hits ({0}) than the ledger holds; lower the rate or duration")]
    LedgerFull(u64),
    /// The collector task died.
    #[error("statistics collector failed: {0}")]
    Collector(String),
}

/// What the load phase measured.
pub struct LoadOutcome {
    /// Send-side statistics.
    pub stats: Stats,
    /// From start to the last answer.
    pub elapsed: Duration,
}

struct Shared {
    client: HttpClient,
    settings: LoadSettings,
    ledger: Arc<Ledger>,
    start: Instant,
    in_flight: AtomicUsize,
    events: mpsc::UnboundedSender<Event>,
}

/// Sends the load described by `profile`, drawing hits from `model`. `start` is the run's time
/// origin (the ledger and the probes use it too). Needs tokio's multi-thread runtime: the
/// dispatcher blocks a worker thread (`block_in_place`) to keep its schedule to the microsecond.
pub async fn run_load(
    settings: &LoadSettings,
    profile: &RateProfile,
    model: &mut VisitorModel,
    ledger: Arc<Ledger>,
    gauges: Arc<LiveGauges>,
    start: Instant,
) -> Result<LoadOutcome, RunError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let targets = settings.targets.len();
    let collector = tokio::spawn(collect(
        rx,
        Stats::new(targets, settings.late_threshold).with_warmup(settings.warmup),
        gauges,
        settings.progress,
        start,
    ));
    let shared = Arc::new(Shared {
        client: client::http_client(settings.max_in_flight.min(4096)),
        settings: settings.clone(),
        ledger,
        start,
        in_flight: AtomicUsize::new(0),
        events: tx,
    });
    let per_request = if settings.mode == Mode::Bulk {
        settings.bulk_size.max(1)
    } else {
        1
    };
    // The dispatcher paces itself with the OS's sleep on a thread of its own: tokio's timer
    // fires on whole milliseconds, which would send every hit up to a millisecond late and add
    // that to every latency measured from the due time (a p50 floor of ~0.5 ms, a p99 floor
    // of ~1 ms, whatever the target). `block_in_place` hands this worker's other tasks to
    // another thread for the length of the load.
    let handle = tokio::runtime::Handle::current();
    let result = tokio::task::block_in_place(|| {
        dispatch_all(&shared, &handle, profile, model, targets, per_request)
    });
    // The collector ends once every sender is gone: ours here, the tasks' when they finish.
    drop(shared);
    let stats = collector
        .await
        .map_err(|e| RunError::Collector(e.to_string()))?;
    result?;
    Ok(LoadOutcome {
        stats,
        elapsed: start.elapsed(),
    })
}

/// The dispatch loop: draws each hit from `model` and sends each request when it is due.
fn dispatch_all(
    shared: &Arc<Shared>,
    handle: &tokio::runtime::Handle,
    profile: &RateProfile,
    model: &mut VisitorModel,
    targets: usize,
    per_request: usize,
) -> Result<(), RunError> {
    let mut buffers: Vec<Vec<Hit>> = vec![Vec::new(); targets];
    for due in profile.arrivals() {
        let hit = model.next_hit()?;
        if !shared.ledger.record_generated(hit.seq, hit.kind, hit.site) {
            return Err(RunError::LedgerFull(hit.seq));
        }
        let t = hit.target;
        buffers[t].push(hit);
        if buffers[t].len() >= per_request {
            let hits = std::mem::take(&mut buffers[t]);
            dispatch(shared, handle, t, hits, due);
        }
    }
    let end = profile.duration();
    for (t, hits) in buffers.into_iter().enumerate() {
        if !hits.is_empty() {
            dispatch(shared, handle, t, hits, end);
        }
    }
    Ok(())
}

/// Waits (blocking: see [`run_load`]) until `due`, then starts the request's send task.
fn dispatch(
    shared: &Arc<Shared>,
    handle: &tokio::runtime::Handle,
    target: usize,
    hits: Vec<Hit>,
    due: Duration,
) {
    let due_at = shared.start + due;
    let wait = due_at.saturating_duration_since(Instant::now());
    if wait > Duration::from_micros(50) {
        std::thread::sleep(wait);
    }
    let count = hits.len() as u32;
    if shared.in_flight.load(Ordering::Relaxed) >= shared.settings.max_in_flight {
        let _ = shared.events.send(Event::Dropped {
            target,
            hits: count,
            due,
        });
        return;
    }
    let lateness = Instant::now().saturating_duration_since(due_at);
    shared.in_flight.fetch_add(1, Ordering::Relaxed);
    let shared = Arc::clone(shared);
    handle.spawn(async move {
        let s = &shared.settings;
        let outcome =
            match client::build_request(&s.targets[target], s.mode, &hits, s.token_auth.as_deref())
            {
                Ok(request) => {
                    client::send(
                        &shared.client,
                        request,
                        count,
                        s.mode == Mode::Bulk,
                        s.timeout,
                    )
                    .await
                }
                Err(e) => Outcome::Failed(format!("cannot build request: {e}")),
            };
        let done = shared.start.elapsed();
        if let Outcome::Answered { accepted, .. } = outcome {
            if accepted > 0 {
                for h in &hits {
                    shared.ledger.record_accepted(h.seq, done);
                }
            }
        }
        shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        let _ = shared.events.send(Event::Done {
            target,
            hits: count,
            due,
            lateness,
            done,
            outcome,
        });
    });
}

async fn collect(
    mut rx: mpsc::UnboundedReceiver<Event>,
    mut stats: Stats,
    gauges: Arc<LiveGauges>,
    progress: bool,
    start: Instant,
) -> Stats {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tick.tick().await;
    loop {
        tokio::select! {
            event = rx.recv() => match event {
                Some(e) => stats.apply(&e),
                None => break,
            },
            _ = tick.tick(), if progress => eprintln!("{}", progress_line(&stats, &gauges, start.elapsed())),
        }
    }
    stats
}

/// The live progress line: last complete second's offered and accepted rate, totals of errors,
/// drops and late sends, the last second's p99, and queue depth / row rate when probed.
pub fn progress_line(stats: &Stats, gauges: &LiveGauges, now: Duration) -> String {
    let last = (now.as_secs() as usize)
        .checked_sub(1)
        .and_then(|i| stats.seconds.get(i));
    let (offered, accepted, p99) = last.map_or((0, 0, 0.0), |s| {
        (
            s.offered_hits,
            s.accepted_hits,
            s.latency.value_at_quantile(0.99) as f64 / 1000.0,
        )
    });
    let t = &stats.total;
    let mut line = format!(
        "[{:>4}s] offered {offered}/s accepted {accepted}/s | errors {} dropped {} late {} | p99 {p99:.1} ms",
        now.as_secs(),
        t.failed_hits,
        t.dropped_hits,
        t.late_requests
    );
    if let Some(q) = LiveGauges::read(&gauges.queue_depth) {
        line.push_str(&format!(" | queue {q}"));
    }
    if let Some(r) = LiveGauges::read(&gauges.rows_per_sec) {
        line.push_str(&format!(" | rows {r}/s"));
    }
    line
}
