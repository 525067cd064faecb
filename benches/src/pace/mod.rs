//! `pace`: the latency of one target at a fixed rate, from a generator of small, steady cost.
//!
//! `run` sends what a population of browsers sends and pays for it on the generator's CPU
//! (17–26 µs per hit). At tens of thousands of hits/s on one core that cost shows in the tail:
//! the bare axum server's p99 went to 25 ms at 43,000 hits/s under it, ~1 ms under `pace`. `pace` sends the GET requests of the same visitor model, built
//! before the run, over a fixed set of kept-alive connections, all from one thread: the
//! dispatcher waits for each hit's due time on a [`timer::Timer`], queues the hit, and the first
//! idle connection sends it. Each latency runs from the hit's due time to the last byte of
//! its answer, so the time a hit waits for a free connection counts: a target that stalls
//! shows its stall, the hits due meanwhile included (no coordinated omission).

pub mod command;
pub mod http1;
pub mod timer;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use self::http1::AnswerError;

/// Most hits one run offers (rate × duration): a day at ~11,600 hits/s.
const MAX_HITS: f64 = 1e9;

/// A send this much after its hit's due time is counted as late.
pub const LATE: Duration = Duration::from_millis(1);

/// Most slow hits one run keeps (24 MB): enough for every hit of a minute at 16,000 hits/s.
pub const MAX_SLOW: usize = 1_000_000;

/// What to send, where, how fast.
#[derive(Debug, Clone)]
pub struct PaceSettings {
    /// The target's address.
    pub addr: SocketAddr,
    /// Hits per second.
    pub rate: f64,
    /// Length of the load.
    pub duration: Duration,
    /// Hits due before this are sent but left out of the latency.
    pub warmup: Duration,
    /// Kept-alive connections, each with one request at a time.
    pub connections: usize,
    /// Longest time from a hit's due time to its answer: a hit still waiting for a connection
    /// then is failed without being sent, and one in flight has its connection closed (the
    /// next hit opens another). The run therefore ends at most this long after its duration.
    pub timeout: Duration,
    /// Hits waiting for a free connection above which a hit due is dropped (and counted)
    /// instead of queued: a target that stops answering does not grow the queue without end.
    pub max_queued: usize,
    /// Keep the times of each measured hit answered more than this after its due time
    /// ([`PaceOutcome::slow`]), to see when in the run the tail happened; `None`: keep none.
    pub slow: Option<Duration>,
}

/// When a slow hit was due, sent and answered, in microseconds from the run's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlowHit {
    /// Its due time.
    pub due: u64,
    /// When a connection took it.
    pub sent: u64,
    /// When the last byte of its answer was read.
    pub answered: u64,
}

/// What a pace run measured.
#[derive(Debug)]
pub struct PaceOutcome {
    /// Hits due in the run.
    pub offered: u64,
    /// Hits answered with a 2xx status.
    pub accepted: u64,
    /// Hits answered otherwise, or not answered.
    pub failed: u64,
    /// Hits not sent: [`PaceSettings::max_queued`] hits were already waiting.
    pub dropped: u64,
    /// Hits sent more than [`LATE`] after their due time (all connections busy, or the
    /// dispatcher itself late).
    pub late: u64,
    /// Of the late hits, those that waited more than [`LATE`] between the dispatcher queuing
    /// them and a connection taking them: nearly always every connection busy (a woken idle
    /// connection run late by the generator's one thread counts too). The rest were late
    /// mostly because the dispatcher was.
    pub waited: u64,
    /// The first failure, as an example.
    pub first_failure: Option<String>,
    /// Latency in microseconds, due time to answer, of the answered hits due after the warm-up.
    pub latency: Histogram<u64>,
    /// The same hits' time in microseconds from their send (a connection taking them) to their
    /// answer: the latency without the wait for a free connection and the dispatcher's own
    /// delay. Not the open-model latency: a stalled target delays the sends instead.
    pub service: Histogram<u64>,
    /// With [`PaceSettings::slow`]: the measured hits answered later than that after their due
    /// time, in the order of their due times, at most [`MAX_SLOW`] of them.
    pub slow: Vec<SlowHit>,
    /// Slow hits left out of [`PaceOutcome::slow`], beyond [`MAX_SLOW`].
    pub slow_left_out: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// The run's start (time 0 of [`SlowHit`]'s times) on the system's `CLOCK_MONOTONIC` (the
    /// clock of `nsecs` in Debian 12's `bpftrace` 0.17, of `nsecs(monotonic)` in newer ones, and
    /// of `perf record -k monotonic`), so that slow hits can be laid beside a kernel trace.
    pub start_monotonic: Duration,
    /// The generator's own CPU time over the run (user and system, all threads).
    pub cpu: Duration,
}

impl PaceOutcome {
    /// Hits neither accepted, failed nor dropped: lost with a connection task that panicked.
    pub fn unaccounted(&self) -> u64 {
        self.offered
            .saturating_sub(self.accepted + self.failed + self.dropped)
    }
}

/// A run that could not be done.
#[derive(Debug, thiserror::Error)]
pub enum PaceError {
    /// The runtime or the timer could not be set up, or the timer failed.
    #[error("pace: {0}")]
    Io(#[from] io::Error),
    /// Bad settings.
    #[error("pace: {0}")]
    Settings(String),
}

/// One hit waiting for a connection.
struct Job {
    /// Due time, from the run's start.
    due: Duration,
    /// When the dispatcher queued it, from the run's start.
    queued: Duration,
    /// Index of its request.
    request: usize,
}

/// Tallies of the answers.
struct Tally {
    accepted: u64,
    failed: u64,
    late: u64,
    waited: u64,
    first_failure: Option<String>,
    latency: Histogram<u64>,
    service: Histogram<u64>,
    slow: Vec<SlowHit>,
    slow_left_out: u64,
}

/// What the dispatcher and the connections share (one thread: `Rc` and cells).
struct Shared {
    requests: Vec<Vec<u8>>,
    pending: RefCell<VecDeque<Job>>,
    ready: Notify,
    finished: Cell<bool>,
    tally: RefCell<Tally>,
    start: Instant,
    settings: PaceSettings,
}

/// Sends `requests` in turn (hit `k` is `requests[k % len]`) at `settings.rate` for
/// `settings.duration`, on a single-threaded runtime of its own, and waits for every answer.
pub fn run(settings: &PaceSettings, requests: Vec<Vec<u8>>) -> Result<PaceOutcome, PaceError> {
    if requests.is_empty() {
        return Err(PaceError::Settings("no requests to send".into()));
    }
    if !(settings.rate.is_finite() && settings.rate > 0.0) {
        return Err(PaceError::Settings(format!(
            "rate {} is not a positive number of hits per second",
            settings.rate
        )));
    }
    if settings.max_queued == 0 {
        return Err(PaceError::Settings(
            "room for at least one waiting hit is needed".into(),
        ));
    }
    if settings.connections == 0 {
        return Err(PaceError::Settings(
            "at least one connection is needed".into(),
        ));
    }
    let end = settings
        .duration
        .checked_add(settings.timeout)
        .and_then(|d| Instant::now().checked_add(d));
    if end.is_none() {
        return Err(PaceError::Settings(
            "duration and timeout are too long".into(),
        ));
    }
    if settings.rate * settings.duration.as_secs_f64() > MAX_HITS {
        return Err(PaceError::Settings(format!(
            "more than {MAX_HITS} hits in one run"
        )));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let cpu_before = cpu_time()?;
    let local = tokio::task::LocalSet::new();
    let mut outcome = local.block_on(&runtime, drive(settings.clone(), requests))?;
    outcome.cpu = cpu_time()?.saturating_sub(cpu_before);
    Ok(outcome)
}

async fn drive(settings: PaceSettings, requests: Vec<Vec<u8>>) -> Result<PaceOutcome, PaceError> {
    let timer = timer::Timer::new()?;
    let offered = (settings.rate * settings.duration.as_secs_f64()).round() as u64;
    let latency = Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .map_err(|e| PaceError::Settings(e.to_string()))?;
    let shared = Rc::new(Shared {
        requests,
        pending: RefCell::new(VecDeque::new()),
        ready: Notify::new(),
        finished: Cell::new(false),
        tally: RefCell::new(Tally {
            accepted: 0,
            failed: 0,
            late: 0,
            waited: 0,
            first_failure: None,
            service: latency.clone(),
            latency,
            slow: Vec::new(),
            slow_left_out: 0,
        }),
        start: Instant::now(),
        settings,
    });
    // Read right after the start above: both are CLOCK_MONOTONIC on Linux.
    let start_monotonic = monotonic_now()?;
    let connections: Vec<_> = (0..shared.settings.connections)
        .map(|_| tokio::task::spawn_local(connection(Rc::clone(&shared))))
        .collect();
    let interval = 1.0 / shared.settings.rate;
    let mut result = Ok(());
    let mut dropped = 0;
    for k in 0..offered {
        let due = Duration::from_secs_f64(k as f64 * interval);
        if let Err(e) = timer.sleep_until(shared.start + due).await {
            result = Err(e);
            break;
        }
        // A dispatcher behind its schedule does not wait; let the connections run meanwhile.
        if k % 256 == 255 {
            tokio::task::yield_now().await;
        }
        let mut pending = shared.pending.borrow_mut();
        if pending.len() >= shared.settings.max_queued {
            dropped += 1;
            continue;
        }
        let request = (k % shared.requests.len() as u64) as usize;
        let queued = shared.start.elapsed();
        pending.push_back(Job {
            due,
            queued,
            request,
        });
        drop(pending);
        shared.ready.notify_one();
    }
    shared.finished.set(true);
    shared.ready.notify_waiters();
    for c in connections {
        // A connection task that panicked lost at most its own hit, counted as offered only.
        let _ = c.await;
    }
    result?;
    let elapsed = shared.start.elapsed();
    // Every connection task has ended, and with it its share.
    let mut tally = Rc::try_unwrap(shared)
        .map_err(|_| PaceError::Settings("a connection outlived the run".into()))?
        .tally
        .into_inner();
    // Recorded as answered; a hit that waited longer may be answered after one due later.
    tally.slow.sort_by_key(|h| h.due);
    Ok(PaceOutcome {
        offered,
        accepted: tally.accepted,
        failed: tally.failed,
        dropped,
        late: tally.late,
        waited: tally.waited,
        first_failure: tally.first_failure,
        latency: tally.latency,
        service: tally.service,
        slow: tally.slow,
        slow_left_out: tally.slow_left_out,
        elapsed,
        start_monotonic,
        cpu: Duration::ZERO,
    })
}

/// The next hit to send, or `None` once the dispatcher is done and nothing is left.
async fn next_job(shared: &Shared) -> Option<Job> {
    loop {
        if let Some(job) = shared.pending.borrow_mut().pop_front() {
            return Some(job);
        }
        if shared.finished.get() {
            return None;
        }
        shared.ready.notified().await;
    }
}

/// One connection: sends a hit, reads its answer, takes the next.
async fn connection(shared: Rc<Shared>) {
    let mut conn: Option<Conn> = None;
    let timeout = shared.settings.timeout;
    while let Some(job) = next_job(&shared).await {
        let sent = shared.start.elapsed();
        let request = &shared.requests[job.request];
        // `run` checked that the run's end plus the timeout is a valid instant.
        let deadline = shared.start + job.due + timeout;
        let failure = if Instant::now() >= deadline {
            Some(format!(
                "not sent: waited {timeout:?} for a free connection"
            ))
        } else {
            let exchanged = tokio::time::timeout_at(
                deadline.into(),
                exchange(&mut conn, shared.settings.addr, request),
            )
            .await;
            match exchanged {
                Ok(Ok(status)) if (200..300).contains(&status) => None,
                // A whole answer: the connection goes on.
                Ok(Ok(status)) => Some(format!("status {status}")),
                Ok(Err(e)) => {
                    conn = None;
                    Some(e.to_string())
                }
                // Whatever the connection holds now is not known to be the next answer.
                Err(_) => {
                    conn = None;
                    Some(format!("no answer within {timeout:?} of the due time"))
                }
            }
        };
        let done = shared.start.elapsed();
        let mut tally = shared.tally.borrow_mut();
        if sent.saturating_sub(job.due) > LATE {
            tally.late += 1;
            if sent.saturating_sub(job.queued) > LATE {
                tally.waited += 1;
            }
        }
        match failure {
            None => {
                tally.accepted += 1;
                if job.due >= shared.settings.warmup {
                    let since_due = done.saturating_sub(job.due);
                    let micros = since_due.as_micros().max(1);
                    tally.latency.saturating_record(micros as u64);
                    let micros = done.saturating_sub(sent).as_micros().max(1);
                    tally.service.saturating_record(micros as u64);
                    if shared.settings.slow.is_some_and(|slow| since_due > slow) {
                        if tally.slow.len() < MAX_SLOW {
                            let us = |d: Duration| d.as_micros() as u64;
                            tally.slow.push(SlowHit {
                                due: us(job.due),
                                sent: us(sent),
                                answered: us(done),
                            });
                        } else {
                            tally.slow_left_out += 1;
                        }
                    }
                }
            }
            Some(why) => {
                tally.failed += 1;
                tally.first_failure.get_or_insert(why);
            }
        }
    }
}

/// A kept-alive connection and the bytes read from it not yet part of an answer.
struct Conn {
    stream: TcpStream,
    read: Vec<u8>,
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
enum ExchangeError {
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Answer(#[from] AnswerError),
    #[error("the target closed the connection before answering")]
    Closed,
}

/// Sends `request` and returns its answer's status: on the kept-alive connection if there is
/// one, else on a new one. A kept-alive connection that fails before any byte of the answer
/// came (the server closed it while it was idle) is replaced and the request sent again once,
/// as HTTP clients do.
async fn exchange(
    conn: &mut Option<Conn>,
    addr: SocketAddr,
    request: &[u8],
) -> Result<u16, ExchangeError> {
    if let Some(c) = conn.as_mut() {
        match c.round_trip(request).await {
            Err(ExchangeError::Io(_) | ExchangeError::Closed) if c.read.is_empty() => {}
            result => return settle(conn, result),
        }
    }
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let c = conn.insert(Conn {
        stream,
        read: Vec::with_capacity(4096),
    });
    let result = c.round_trip(request).await;
    settle(conn, result)
}

/// The status of an answer, the connection dropped when the server closes it or it failed.
fn settle(
    conn: &mut Option<Conn>,
    result: Result<http1::Answer, ExchangeError>,
) -> Result<u16, ExchangeError> {
    match result {
        Ok(answer) => {
            if answer.close {
                *conn = None;
            }
            Ok(answer.status)
        }
        Err(e) => {
            *conn = None;
            Err(e)
        }
    }
}

impl Conn {
    /// Writes `request` and reads its final answer (interim 1xx answers are skipped).
    async fn round_trip(&mut self, request: &[u8]) -> Result<http1::Answer, ExchangeError> {
        self.stream.write_all(request).await?;
        loop {
            if let Some(answer) = http1::answer(&self.read)? {
                self.read.drain(..answer.len);
                if (100..200).contains(&answer.status) && answer.status != 101 {
                    continue;
                }
                return Ok(answer);
            }
            if self.read.len() == self.read.capacity() {
                self.read.reserve(4096);
            }
            if self.stream.read_buf(&mut self.read).await? == 0 {
                return Err(ExchangeError::Closed);
            }
        }
    }
}

/// This process' CPU time so far, user and system.
fn cpu_time() -> io::Result<Duration> {
    use nix::sys::resource::{getrusage, UsageWho};
    let usage = getrusage(UsageWho::RUSAGE_SELF)?;
    let micros = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec().max(0) as u64)
            + Duration::from_micros(t.tv_usec().max(0) as u64)
    };
    Ok(micros(usage.user_time()) + micros(usage.system_time()))
}

/// The system's `CLOCK_MONOTONIC` now.
pub fn monotonic_now() -> io::Result<Duration> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)?;
    Ok(Duration::from_secs(t.tv_sec().max(0) as u64)
        + Duration::from_nanos(t.tv_nsec().max(0) as u64))
}
