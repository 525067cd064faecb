//! Engine integration tests against the real Redis and MariaDB: ordering across batches and
//! lock hand-offs, poison entries, transient failures, PHP-format entries, remainders and
//! graceful shutdown.

mod engine_support;

#[path = "../../benches/tests/faults/services.rs"]
#[allow(dead_code)]
mod services;

use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine_support::{entry, request_set, TableProcessor, TestEnv};
use matomo_worker::engine::{DeadLetters, EngineOptions};
use matomo_worker::metrics::{DeadLetterLabels, DeadLetterReason, EntryLabels, EntryOutcome};

fn count(metrics: &matomo_worker::metrics::Metrics, queue: u16, outcome: EntryOutcome) -> u64 {
    metrics
        .entries
        .get_or_create(&EntryLabels { queue, outcome })
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn order_within_a_queue_is_kept_across_batches_and_lock_hand_offs() {
    let env = TestEnv::new(1, 7).await;
    let entries: Vec<Vec<u8>> = (0..100).map(|seq| entry(0, seq, &[])).collect();
    env.push(0, &entries).await;

    // Two engines (as two processes would be), two batches per lock: the queue changes hands
    // between them many times.
    let opts = EngineOptions {
        max_batches_per_lock: 2,
        ..env.options()
    };
    let processor = Arc::new(TableProcessor::default());
    let (a, _) = env.engine(processor.clone(), opts.clone()).await;
    let (b, _) = env.engine(processor.clone(), opts).await;
    let (ra, rb) = tokio::join!(a.drain(), b.drain());
    let (ra, rb) = (ra.expect("drain a"), rb.expect("drain b"));

    assert_eq!(env.stored_seqs(0).await, (0..100).collect::<Vec<i64>>());
    assert_eq!(ra.processed + rb.processed, 100);
    assert_eq!(env.queue_len(0).await, 0);
    assert_eq!(processor.overlaps.load(Ordering::SeqCst), 0);
    // The second batch of each turn was read ahead while the first was written, and handed
    // back with exactly its sets; nothing is read ahead by the last turn before the lock is
    // given back, so no read-ahead is wasted.
    assert!(processor.aheads_used.load(Ordering::SeqCst) > 0);
    assert_eq!(
        processor.read_aheads.load(Ordering::SeqCst),
        processor.aheads_used.load(Ordering::SeqCst)
    );
    assert_eq!(processor.aheads_mismatched.load(Ordering::SeqCst), 0);
}

/// QueuedTracking's form for a Redis on the same machine: a `redisHost` that is a socket path,
/// port 0. The engine's every command (locks, scripts, reads, trims) goes over the socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queue_is_drained_over_a_unix_socket() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut redis = services::Redis::start(tmp.path()).await;
    let settings = tier_config::RedisConfig {
        host: redis.socket().display().to_string(),
        port: 0,
        database: 5,
        ..tier_config::RedisConfig::default()
    };
    let env = TestEnv::new_on_redis(1, 7, settings).await;
    let entries: Vec<Vec<u8>> = (0..30).map(|seq| entry(0, seq, &[])).collect();
    env.push(0, &entries).await;
    // The socket's clients selected the configured database (read over TCP by another client).
    let queued = services::redis_cli(redis.port, &["-n", "5", "LLEN", &env.queue_key(0)]);
    assert_eq!(queued.as_deref(), Some("30"));
    let processor = Arc::new(TableProcessor::default());
    let (engine, _) = env.engine(processor, env.options()).await;
    let report = engine.drain().await.expect("drain");

    assert_eq!(report.processed, 30);
    assert_eq!(env.stored_seqs(0).await, (0..30).collect::<Vec<i64>>());
    assert_eq!(env.queue_len(0).await, 0);
    let clients = services::redis_cli(redis.port, &["CLIENT", "LIST", "TYPE", "normal"])
        .expect("CLIENT LIST");
    assert!(
        clients.lines().any(|l| l.contains("addr=/")),
        "the engine's connections are on the socket: {clients}"
    );
    drop(env);
    redis.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_queues_are_each_drained_in_order_including_remainders() {
    let env = TestEnv::new(8, 10).await;
    for q in 0..8u16 {
        // 23 per queue: two full batches and a remainder of 3.
        let entries: Vec<Vec<u8>> = (0..23).map(|seq| entry(q, seq, &[])).collect();
        env.push(q, &entries).await;
    }
    let opts = EngineOptions {
        pool_size: 3,
        ..env.options()
    };
    let (engine, metrics) = env.engine(Arc::new(TableProcessor::default()), opts).await;
    let summary = engine.drain().await.expect("drain");
    assert_eq!(summary.processed, 8 * 23);
    for q in 0..8u16 {
        assert_eq!(
            env.stored_seqs(q).await,
            (0..23).collect::<Vec<i64>>(),
            "queue {q}"
        );
        assert_eq!(env.queue_len(q).await, 0);
        assert_eq!(count(&metrics, q, EntryOutcome::Processed), 23);
    }
    assert_eq!(
        summary.batches,
        8 * 3,
        "two full batches and one remainder per queue"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_entry_is_dead_lettered_while_its_neighbours_are_stored() {
    let env = TestEnv::new(1, 10).await;
    let mut entries: Vec<Vec<u8>> = Vec::new();
    for seq in 0..10 {
        entries.push(match seq {
            3 => entry(0, seq, &[("poison", "1")]),
            5 => b"\x78\x9cnot zlib at all".to_vec(),
            7 => entry(0, seq, &[("drop", "1")]),
            _ => entry(0, seq, &[]),
        });
    }
    env.push(0, &entries).await;
    let (engine, metrics) = env
        .engine(Arc::new(TableProcessor::default()), env.options())
        .await;
    let summary = engine.drain().await.expect("drain");

    // The poison set's own row was rolled back with its batch; the neighbours are stored once.
    assert_eq!(env.stored_seqs(0).await, vec![0, 1, 2, 4, 6, 8, 9]);
    assert_eq!(env.queue_len(0).await, 0);
    assert_eq!(summary.dead_lettered, 2);
    assert_eq!(summary.dropped, 1);
    assert_eq!(count(&metrics, 0, EntryOutcome::DeadLettered), 2);
    assert_eq!(count(&metrics, 0, EntryOutcome::Dropped), 1);

    let scripts = matomo_worker::engine::redis::Scripts::default();
    let dl = DeadLetters::new(env.redis.clone(), scripts, env.prefix.clone());
    let records = dl.list(0, 0, 10).await.expect("list");
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].reason, "test: poison hit");
    assert_eq!(records[0].entry().expect("bytes"), entries[3]);
    assert!(
        records[1].reason.starts_with("undecodable"),
        "{}",
        records[1].reason
    );
    assert_eq!(records[1].entry().expect("bytes"), entries[5]);
    assert!(records.iter().all(|r| r.queue == 0));

    // Replay puts the original bytes back at the tail of their queue; purge empties the list.
    assert_eq!(dl.replay(0, 1).await.expect("replay"), 1);
    assert_eq!(env.queue_len(0).await, 1);
    assert_eq!(dl.len(0).await.expect("len"), 1);
    assert_eq!(dl.purge(0).await.expect("purge"), 1);
    assert_eq!(dl.len(0).await.expect("len"), 0);
}

/// Entries 0..20 of queue 0; entry `seq` of `flags` carries `TableProcessor` parameter
/// `name=1` (`poison`, `panic`, `panic_ahead`).
fn twenty_entries(flags: &[(i64, &str)]) -> Vec<Vec<u8>> {
    (0..20)
        .map(|seq| match flags.iter().find(|(s, _)| *s == seq) {
            Some((_, name)) => entry(0, seq, &[(name, "1")]),
            None => entry(0, seq, &[]),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_read_ahead_is_written_without_its_read_ahead_once_an_entry_is_set_aside() {
    // Batch 2 (entries 10..20) is read ahead while batch 1 is written; its poison entry makes
    // the engine set it aside and write the rest again: the read-ahead made for all ten sets
    // must not come back with nine.
    let env = TestEnv::new(1, 10).await;
    env.push(0, &twenty_entries(&[(13, "poison")])).await;
    let processor = Arc::new(TableProcessor::default());
    let (engine, _) = env.engine(processor.clone(), env.options()).await;
    let summary = engine.drain().await.expect("drain");

    let expected: Vec<i64> = (0..20).filter(|s| *s != 13).collect();
    assert_eq!(env.stored_seqs(0).await, expected);
    assert_eq!(summary.dead_lettered, 1);
    assert_eq!(env.queue_len(0).await, 0);
    assert_eq!(processor.read_aheads.load(Ordering::SeqCst), 1);
    assert_eq!(processor.aheads_used.load(Ordering::SeqCst), 1);
    assert_eq!(processor.aheads_mismatched.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tracker_panic_costs_only_the_entry_that_triggers_it() {
    // Entry 4 panics the processor; entry 13 panics it both when its batch is read ahead and
    // when it is written. Each is isolated by bisection and dead-lettered with the panic's
    // message; every other entry is stored once, and the engine keeps working.
    let env = TestEnv::new(1, 10).await;
    let entries = twenty_entries(&[(4, "panic"), (13, "panic_ahead")]);
    env.push(0, &entries).await;
    let processor = Arc::new(TableProcessor::default());
    let (engine, metrics) = env.engine(processor.clone(), env.options()).await;
    let summary = tokio::time::timeout(Duration::from_secs(60), engine.drain())
        .await
        .expect("drain ends: the panics are contained")
        .expect("drain");

    let expected: Vec<i64> = (0..20).filter(|s| *s != 4 && *s != 13).collect();
    assert_eq!(env.stored_seqs(0).await, expected);
    assert_eq!(env.queue_len(0).await, 0);
    // The second batch was read ahead (and that read panicked), so nothing came of it.
    assert_eq!(processor.read_aheads.load(Ordering::SeqCst), 1);
    assert_eq!(processor.aheads_used.load(Ordering::SeqCst), 0);
    assert_eq!(summary.dead_lettered, 2);
    assert_eq!(count(&metrics, 0, EntryOutcome::DeadLettered), 2);
    let panics = metrics
        .dead_lettered
        .get_or_create(&DeadLetterLabels {
            reason: DeadLetterReason::Panic,
        })
        .get();
    assert_eq!(panics, 2);
    let scripts = matomo_worker::engine::redis::Scripts::default();
    let dl = DeadLetters::new(env.redis.clone(), scripts, env.prefix.clone());
    let records = dl.list(0, 0, 10).await.expect("list");
    let reasons: Vec<&str> = records.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "the tracker panicked on the entry: test: panic on seq 4",
            "the tracker panicked on the entry: test: panic on seq 13"
        ]
    );
    assert_eq!(records[0].entry().expect("bytes"), entries[4]);
    assert_eq!(records[1].entry().expect("bytes"), entries[13]);

    // The same engine drains what comes next.
    env.push(0, &[entry(0, 20, &[])]).await;
    engine.drain().await.expect("drain again");
    assert_eq!(env.stored_seqs(0).await.last(), Some(&20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_task_that_panics_outside_a_batch_is_started_again() {
    // The processor panics twice while the engine sets up a shard (outside the contained batch
    // call): the pool's one task dies with the shard's lock held, is started again, waits for
    // the lock to expire, and drains the queue; nothing lost, nothing twice.
    let env = TestEnv::new(1, 5).await;
    let opts = EngineOptions {
        pool_size: 1,
        lock_ttl: Duration::from_secs(1),
        max_batch_wait: Duration::from_millis(100),
        ..env.options()
    };
    let processor = Arc::new(TableProcessor::default());
    processor.new_cache_panics.store(2, Ordering::SeqCst);
    let (engine, _) = env.engine(processor.clone(), opts).await;
    let runner = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.run().await })
    };
    let entries: Vec<Vec<u8>> = (0..12).map(|seq| entry(0, seq, &[])).collect();
    env.push(0, &entries).await;
    let started = Instant::now();
    while env.stored_seqs(0).await.len() < 12 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the queue was not drained after the panics: {:?}",
            env.stored_seqs(0).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(processor.new_cache_panics.load(Ordering::SeqCst), 0);
    assert_eq!(env.stored_seqs(0).await, (0..12).collect::<Vec<i64>>());
    engine.shutdown_token().cancel();
    tokio::time::timeout(Duration::from_secs(5), runner)
        .await
        .expect("run stops on shutdown")
        .expect("task")
        .expect("run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drain_whose_task_panics_outside_a_batch_fails_and_the_next_drain_finishes() {
    // `process` must not report a partial drain as done: the drain fails with the panic, and
    // once the dead task's lock expires the next drain stores every entry once.
    let env = TestEnv::new(1, 5).await;
    let opts = EngineOptions {
        pool_size: 1,
        lock_ttl: Duration::from_secs(1),
        ..env.options()
    };
    let processor = Arc::new(TableProcessor::default());
    processor.new_cache_panics.store(1, Ordering::SeqCst);
    let (engine, _) = env.engine(processor.clone(), opts).await;
    let entries: Vec<Vec<u8>> = (0..12).map(|seq| entry(0, seq, &[])).collect();
    env.push(0, &entries).await;
    let error = engine
        .drain()
        .await
        .expect_err("the drain reports the panic");
    assert!(
        matches!(&error, matomo_worker::engine::EngineError::TaskPanicked(m) if m.contains("panic")),
        "{error}"
    );
    assert_eq!(env.queue_len(0).await, 12);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    engine.drain().await.expect("drain");
    assert_eq!(env.stored_seqs(0).await, (0..12).collect::<Vec<i64>>());
    assert_eq!(env.queue_len(0).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transient_failures_roll_back_and_retry_the_same_batch() {
    let env = TestEnv::new(1, 5).await;
    let entries: Vec<Vec<u8>> = (0..12).map(|seq| entry(0, seq, &[])).collect();
    env.push(0, &entries).await;
    let processor = Arc::new(TableProcessor::default());
    processor.transient_failures.store(3, Ordering::SeqCst);
    let (engine, metrics) = env.engine(processor.clone(), env.options()).await;
    engine.drain().await.expect("drain");
    assert_eq!(env.stored_seqs(0).await, (0..12).collect::<Vec<i64>>());
    assert_eq!(metrics.retries.get(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_php_format_fixture_queue_is_drained() {
    let env = TestEnv::new(2, 25).await;
    // Entries exactly as the PHP plugin writes them: gzcompress(json_encode($state)), with
    // string parameters, `[]` for an empty cookie map and `false` for no token; and raw JSON,
    // which PHP's reader also accepts. Two entries have identical bytes (same hit, same second).
    let php_json = |seq: i64| {
        format!(
            r#"{{"requests":[{{"idsite":"1","rec":"1","q":"1","seq":"{seq}","url":"http:\/\/example.com\/caf\u00e9?x=1","action_name":"Caf\u00e9"}}],"env":{{"server":{{"REMOTE_ADDR":"192.168.50.140","HTTP_USER_AGENT":"Mozilla\/5.0","REQUEST_TIME":1794269759}},"cookie":[]}},"tokenAuth":false,"time":1794269759}}"#
        )
    };
    let gz = |text: &str| {
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(text.as_bytes()).expect("zlib");
        enc.finish().expect("zlib")
    };
    let mut entries = Vec::new();
    for seq in 0..30 {
        entries.push(if seq % 3 == 2 {
            php_json(seq).into_bytes()
        } else {
            gz(&php_json(seq))
        });
    }
    entries.push(gz(&php_json(30)));
    entries.push(gz(&php_json(30)));
    // Our own encoder without entry id must give PHP's exact bytes for an equivalent state.
    let ours = matomo_wire::encode(&request_set(1, 99, &[]));
    assert_eq!(&ours[..2], &[0x78, 0x9c]);
    env.push(1, &entries).await;

    let (engine, _) = env
        .engine(Arc::new(TableProcessor::default()), env.options())
        .await;
    let summary = engine.drain().await.expect("drain");
    let mut expected: Vec<i64> = (0..31).collect();
    expected.push(30);
    assert_eq!(
        env.stored_seqs(1).await,
        expected,
        "identical entries are both stored"
    );
    assert_eq!(summary.processed, 32);
    assert_eq!(env.queue_len(1).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_drains_a_remainder_within_bounded_time_and_shuts_down_gracefully() {
    let env = TestEnv::new(4, 50).await;
    let opts = EngineOptions {
        max_batch_wait: Duration::from_millis(500),
        ..env.options()
    };
    let (engine, _) = env.engine(Arc::new(TableProcessor::default()), opts).await;
    let runner = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.run().await })
    };
    // Entries stamped "now": a remainder of 3, far below the batch size of 50.
    let mut fresh = Vec::new();
    for seq in 0..3 {
        let mut set = request_set(2, seq, &[]);
        set.time = chrono::Utc::now().timestamp();
        fresh.push(matomo_wire::encode(&set));
    }
    env.push(2, &fresh).await;
    let started = Instant::now();
    while env.stored_seqs(2).await.len() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "remainder not processed in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(env.stored_seqs(2).await, vec![0, 1, 2]);
    engine.shutdown_token().cancel();
    let summary = tokio::time::timeout(Duration::from_secs(5), runner)
        .await
        .expect("run stops on shutdown")
        .expect("task")
        .expect("run");
    assert_eq!(summary.processed, 3);
    // Every lock was released.
    for q in 0..4u16 {
        let lock: Option<String> =
            fred::prelude::KeysInterface::get(&env.redis, matomo_wire::lock_key(&env.prefix, q))
                .await
                .expect("get");
        assert_eq!(lock, None, "lock of queue {q} released");
    }
}
