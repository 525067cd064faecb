//! kill -9 of a worker process between COMMIT and LTRIM, then a restart: every hit is stored
//! exactly once, in order.
//!
//! The test re-runs its own test binary as the worker process (`crash_child`, which does
//! nothing unless the parent set its environment), with the engine's test hook that hangs after
//! the second commit, before the trim. The parent then SIGKILLs it.

mod engine_support;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine_support::{entry, TableProcessor, TestEnv};
use matomo_worker::engine::EngineOptions;

const CHILD_DB: &str = "ENGINE_CRASH_CHILD_DB";
const CHILD_PREFIX: &str = "ENGINE_CRASH_CHILD_PREFIX";
const HOOK_LINE: &str = "paused after commit 2";

/// The worker process of `kill_9_between_commit_and_trim_then_restart_stores_every_hit_once`.
/// Returns at once when run by the normal test harness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let (Ok(db), Ok(prefix)) = (std::env::var(CHILD_DB), std::env::var(CHILD_PREFIX)) else {
        return;
    };
    let env = TestEnv::attach(&db, &prefix, 1, 10, false).await;
    let opts = EngineOptions {
        pool_size: 1,
        pause_after_commit: Some(2),
        ..env.options()
    };
    let (engine, _) = env.engine(Arc::new(TableProcessor::default()), opts).await;
    // Hangs in the hook after the second commit until the parent kills the process.
    engine.drain().await.expect("drain");
    panic!("the crash hook did not fire");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_commit_and_trim_then_restart_stores_every_hit_once() {
    let env = TestEnv::new(1, 10).await;
    let entries: Vec<Vec<u8>> = (0..35).map(|seq| entry(0, seq, &[])).collect();
    env.push(0, &entries).await;

    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_DB, &env.db)
        .env(CHILD_PREFIX, &env.prefix)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the worker process");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let hit = line.contains(HOOK_LINE);
            let _ = tx.send(line);
            if hit {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut output = Vec::new();
    loop {
        let line = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
        match line {
            Ok(line) if line.contains(HOOK_LINE) => break,
            Ok(line) => output.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the worker process never reached the hook:\n{}",
                    output.join("\n")
                );
            }
        }
    }
    child.kill().expect("SIGKILL the worker");
    let _ = child.wait();

    // Two batches committed, only the first trimmed.
    assert_eq!(env.stored_seqs(0).await, (0..20).collect::<Vec<i64>>());
    assert_eq!(env.queue_len(0).await, 25);

    // Restart once the dead worker's lock has expired (TTL 2 s).
    let lock_key = matomo_wire::lock_key(&env.prefix, 0);
    let started = Instant::now();
    loop {
        let held: Option<String> = fred::prelude::KeysInterface::get(&env.redis, &lock_key)
            .await
            .expect("get");
        if held.is_none() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the dead worker's lock never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (engine, _) = env
        .engine(Arc::new(TableProcessor::default()), env.options())
        .await;
    let summary = engine.drain().await.expect("drain after restart");
    assert_eq!(
        summary.already_committed, 10,
        "the committed head was skipped, not reprocessed"
    );
    assert_eq!(summary.processed, 15);
    assert_eq!(env.stored_seqs(0).await, (0..35).collect::<Vec<i64>>());
    assert_eq!(env.queue_len(0).await, 0);
}
