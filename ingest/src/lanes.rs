//! Lanes: one single-threaded tokio runtime per core, each on its own thread, that runs the
//! node's connections and its Redis writers.
//!
//! A hit's work hands off between tasks: the connection, the Redis writer that batches it, the
//! Redis client's connection task, and back. On a multi-thread runtime those tasks land on any
//! worker, and each hand-off to another thread costs a wake-up across cores, a futex and cold
//! caches. A lane keeps all of a connection's hand-offs on one thread: the accept loop deals
//! connections to the lanes in turn, and each lane has its own Redis connection and writer
//! ([`current`] tells the sink which lane it runs on). Start-up, the site cache, the spool's
//! replayer and the Redis guard stay on the runtime that called [`crate::serve`].

use std::cell::Cell;
use std::io;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

thread_local! {
    static LANE: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The lane the calling thread runs, if it is a lane's thread.
pub fn current() -> Option<usize> {
    LANE.with(Cell::get)
}

/// The running lanes. Dropping them stops their threads (tasks still on them are dropped).
#[derive(Debug)]
pub struct Lanes {
    handles: Vec<Handle>,
    threads: Vec<JoinHandle<()>>,
    stop: CancellationToken,
}

impl Lanes {
    /// Starts `count` lanes (at least one).
    pub fn start(count: usize) -> io::Result<Self> {
        let stop = CancellationToken::new();
        let mut lanes = Self {
            handles: Vec::new(),
            threads: Vec::new(),
            stop: stop.clone(),
        };
        for index in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            lanes.handles.push(runtime.handle().clone());
            let stop = stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("ingest-lane-{index}"))
                .spawn(move || {
                    LANE.with(|lane| lane.set(Some(index)));
                    runtime.block_on(stop.cancelled());
                })?;
            lanes.threads.push(thread);
        }
        Ok(lanes)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_lane_runs_its_tasks_on_its_own_thread() {
        let lanes = Lanes::start(3).unwrap();
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
    async fn zero_lanes_means_one() {
        let lanes = Lanes::start(0).unwrap();
        assert_eq!(lanes.len(), 1);
        assert_eq!(
            lanes.handle(5).spawn(async { current() }).await.unwrap(),
            Some(0)
        );
    }
}
