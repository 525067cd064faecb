//! Lanes: one single-threaded tokio runtime per core, each on its own thread, that runs the
//! node's connections and its Redis writers.
//!
//! A hit's work hands off between tasks: the connection, the Redis writer that batches it, the
//! Redis client's connection task, and back. On a multi-thread runtime those tasks land on any
//! worker, and each hand-off to another thread costs a wake-up across cores. A lane keeps a
//! kept-alive connection's hand-offs on one thread: the accept loop hands each connection to the
//! lane with the fewest open connections ([`Lanes::spawn_connection`]), and each lane has its
//! own Redis connection and writer ([`current`] tells the sink which lane it runs on). HTTP/2
//! streams, which a proxy may multiplex many of onto one connection, are spread over all lanes
//! ([`LaneExecutor`]). Start-up, the site cache, the spool's replayer and the Redis guard stay
//! on the runtime that called [`crate::serve`].

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

use prometheus_client::metrics::gauge::Gauge;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// Blocking threads (static files, DNS) shared out over the lanes, as one tokio runtime has;
/// each lane gets at least [`MIN_BLOCKING_THREADS`].
const BLOCKING_THREADS: usize = 512;
const MIN_BLOCKING_THREADS: usize = 16;

thread_local! {
    static LANE: Cell<Option<usize>> = const { Cell::new(None) };
    static TURN: Cell<usize> = const { Cell::new(0) };
    static SPAWN_TURN: Cell<usize> = const { Cell::new(0) };
}

/// The lane the calling thread runs, if it is a lane's thread.
pub fn current() -> Option<usize> {
    LANE.with(Cell::get)
}

/// A number that goes up by one on each call on the same thread: whose turn it is, without a
/// counter shared between cores.
pub fn next_turn() -> usize {
    take_turn(&TURN)
}

fn take_turn(counter: &'static std::thread::LocalKey<Cell<usize>>) -> usize {
    counter.with(|turn| {
        let next = turn.get();
        turn.set(next.wrapping_add(1));
        next
    })
}

/// The running lanes. Dropping them tells their threads to stop (tasks still on them are
/// dropped); [`Lanes::stop`] also waits for the threads to end.
#[derive(Debug)]
pub struct Lanes {
    handles: Arc<[Handle]>,
    /// Open connections per lane (the `ingest_lane_connections` gauges).
    open: Vec<Gauge>,
    threads: Vec<JoinHandle<()>>,
    stop: CancellationToken,
}

impl Lanes {
    /// Starts one lane per gauge (at least one), each counting its open connections in its
    /// gauge.
    pub fn start(mut open: Vec<Gauge>) -> io::Result<Self> {
        if open.is_empty() {
            open.push(Gauge::default());
        }
        let stop = CancellationToken::new();
        let blocking = (BLOCKING_THREADS / open.len()).max(MIN_BLOCKING_THREADS);
        let mut handles = Vec::with_capacity(open.len());
        let mut threads = Vec::with_capacity(open.len());
        // Threads started before a failure stop when this guard is dropped by the `?`.
        let stop_on_error = stop.clone().drop_guard();
        for index in 0..open.len() {
            // The runtime is built and dropped on its own thread: a tokio runtime must not be
            // dropped inside another's `block_on`, as it would be here if the spawn failed.
            let (started, handle) = std::sync::mpsc::sync_channel(1);
            let stop = stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("ingest-lane-{index}"))
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .max_blocking_threads(blocking)
                        .build();
                    let runtime = match runtime {
                        Ok(runtime) => runtime,
                        Err(error) => {
                            let _ = started.send(Err(error));
                            return;
                        }
                    };
                    let _ = started.send(Ok(runtime.handle().clone()));
                    LANE.with(|lane| lane.set(Some(index)));
                    runtime.block_on(stop.cancelled());
                })?;
            threads.push(thread);
            // A thread's start is short; this waits for it once per lane at start-up.
            let handle = handle
                .recv()
                .map_err(|_| io::Error::other("the lane's thread ended at start"))??;
            handles.push(handle);
        }
        stop_on_error.disarm();
        Ok(Self {
            handles: handles.into(),
            open,
            threads,
            stop,
        })
    }

    /// How many lanes run.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Always false: there is at least one lane.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The runtime of lane `index` (modulo the number of lanes).
    pub fn handle(&self, index: usize) -> &Handle {
        &self.handles[index % self.handles.len()]
    }

    /// An executor that spreads tasks over the lanes.
    pub fn executor(&self) -> LaneExecutor {
        LaneExecutor {
            handles: self.handles.clone(),
        }
    }

    /// Runs a connection on the lane with the fewest open connections (among equals, the
    /// search starts one lane further at each call), counted in that lane's gauge until
    /// `connection` ends or is dropped.
    pub fn spawn_connection(&self, connection: impl Future<Output = ()> + Send + 'static) {
        let lanes = self.open.len();
        let first = next_turn();
        let lane = (0..lanes)
            .map(|k| (first + k) % lanes)
            .min_by_key(|&lane| self.open[lane].get())
            .unwrap_or(0);
        let open = OpenConnection::new(self.open[lane].clone());
        self.handles[lane].spawn(async move {
            let _open = open;
            connection.await;
        });
    }

    /// Stops the lanes and waits for their threads to end.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let threads = std::mem::take(&mut self.threads);
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

impl Drop for Lanes {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One open connection in a lane's gauge, for as long as this lives.
struct OpenConnection(Gauge);

impl OpenConnection {
    fn new(gauge: Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Runs each task on the next lane, in turn (hyper's executor for HTTP/2 streams).
#[derive(Clone, Debug)]
pub struct LaneExecutor {
    handles: Arc<[Handle]>,
}

impl<F> hyper::rt::Executor<F> for LaneExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, task: F) {
        // Its own turns: sharing the writers' counter could put every stream on one lane.
        let lane = take_turn(&SPAWN_TURN) % self.handles.len();
        self.handles[lane].spawn(task);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    fn gauges(count: usize) -> Vec<Gauge> {
        (0..count).map(|_| Gauge::default()).collect()
    }

    #[tokio::test]
    async fn each_lane_runs_its_tasks_on_its_own_thread() {
        let lanes = Lanes::start(gauges(3)).unwrap();
        assert_eq!(lanes.len(), 3);
        assert_eq!(current(), None);
        for index in 0..4 {
            let seen = lanes
                .handle(index)
                .spawn(async { current() })
                .await
                .unwrap();
            assert_eq!(seen, Some(index % 3));
        }
        lanes.stop().await;
    }

    #[tokio::test]
    async fn no_gauge_means_one_lane() {
        let lanes = Lanes::start(Vec::new()).unwrap();
        assert_eq!(lanes.len(), 1);
        assert_eq!(
            lanes.handle(5).spawn(async { current() }).await.unwrap(),
            Some(0)
        );
    }

    /// Starts a connection that reports its lane and then waits for its release.
    fn open(lanes: &Lanes) -> (oneshot::Receiver<Option<usize>>, oneshot::Sender<()>) {
        let (lane_tx, lane_rx) = oneshot::channel();
        let (release, released) = oneshot::channel::<()>();
        lanes.spawn_connection(async move {
            let _ = lane_tx.send(current());
            let _ = released.await;
        });
        (lane_rx, release)
    }

    fn counts(open: &[Gauge]) -> Vec<i64> {
        open.iter().map(Gauge::get).collect()
    }

    async fn until_counts(open: &[Gauge], expected: &[i64]) {
        for _ in 0..200 {
            if counts(open) == expected {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(counts(open), expected);
    }

    #[tokio::test]
    async fn connections_go_to_the_lane_with_the_fewest_open() {
        let open = gauges(3);
        let lanes = Lanes::start(open.clone()).unwrap();
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(open_on(&lanes).await);
        }
        let mut first: Vec<usize> = held.iter().map(|(lane, _)| *lane).collect();
        first.sort_unstable();
        assert_eq!(first, [0, 1, 2], "one connection per lane");
        assert_eq!(counts(&open), [1, 1, 1]);

        // The connection of lane 1 ends: the next one goes there, whatever the turn.
        let index = held.iter().position(|(lane, _)| *lane == 1).unwrap();
        let (_, release) = held.remove(index);
        release.send(()).unwrap();
        until_counts(&open, &[1, 0, 1]).await;
        let (lane, release) = open_on(&lanes).await;
        assert_eq!(lane, 1);
        assert_eq!(counts(&open), [1, 1, 1]);

        // Connections that end count down.
        drop(release);
        for (_, release) in held {
            drop(release);
        }
        until_counts(&open, &[0, 0, 0]).await;
        lanes.stop().await;
    }

    async fn open_on(lanes: &Lanes) -> (usize, oneshot::Sender<()>) {
        let (lane, release) = open(lanes);
        (lane.await.unwrap().expect("on a lane"), release)
    }

    #[tokio::test]
    async fn the_executor_spreads_tasks_over_every_lane() {
        let lanes = Lanes::start(gauges(2)).unwrap();
        let executor = lanes.executor();
        let mut seen = Vec::new();
        for _ in 0..4 {
            let (tx, rx) = oneshot::channel();
            hyper::rt::Executor::execute(&executor, async move {
                let _ = tx.send(current());
            });
            seen.push(rx.await.unwrap().unwrap());
        }
        seen.sort_unstable();
        assert_eq!(seen, [0, 0, 1, 1]);
        lanes.stop().await;
    }

    #[test]
    fn turns_count_up_per_thread() {
        let a = next_turn();
        assert_eq!(next_turn(), a.wrapping_add(1));
    }
}
