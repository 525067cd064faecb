//! Lock behaviour against the real Redis and MariaDB: two engines never work on one queue at
//! once, a batch slower than the lock TTL keeps its lock through the heartbeat, and a lost lock
//! rolls the batch back and trims nothing.

mod engine_support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine_support::{entry, TableProcessor, TestEnv};
use fred::prelude::*;
use matomo_worker::engine::EngineOptions;
use matomo_worker::metrics::{LockEvent, LockLabels};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_engines_never_hold_one_queue() {
    let env = TestEnv::new(4, 5).await;
    for q in 0..4u16 {
        let entries: Vec<Vec<u8>> = (0..40).map(|seq| entry(q, seq, &[])).collect();
        env.push(q, &entries).await;
    }
    // One processor shared by both engines counts batches of the same queue in flight at once.
    let processor = Arc::new(TableProcessor {
        delay: Duration::from_millis(15),
        ..TableProcessor::default()
    });
    let opts = EngineOptions {
        pool_size: 3,
        max_batches_per_lock: 2,
        ..env.options()
    };
    let (a, ma) = env.engine(processor.clone(), opts.clone()).await;
    let (b, mb) = env.engine(processor.clone(), opts).await;
    let (ra, rb) = tokio::join!(a.drain(), b.drain());
    let total = ra.expect("a").processed + rb.expect("b").processed;

    assert_eq!(
        processor.overlaps.load(Ordering::SeqCst),
        0,
        "a queue was processed by two workers at once"
    );
    assert_eq!(total, 160);
    for q in 0..4u16 {
        assert_eq!(
            env.stored_seqs(q).await,
            (0..40).collect::<Vec<i64>>(),
            "queue {q}"
        );
    }
    let contended = |m: &matomo_worker::metrics::Metrics| {
        m.locks
            .get_or_create(&LockLabels {
                event: LockEvent::Contended,
            })
            .get()
    };
    let acquired = |m: &matomo_worker::metrics::Metrics| {
        m.locks
            .get_or_create(&LockLabels {
                event: LockEvent::Acquired,
            })
            .get()
    };
    assert!(
        acquired(&ma) > 0 && acquired(&mb) > 0,
        "both engines worked"
    );
    // Not asserted to be non-zero (timing), but reported for the record.
    eprintln!("lock contentions: {} + {}", contended(&ma), contended(&mb));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_slower_than_the_lock_ttl_keeps_its_lock() {
    let env = TestEnv::new(1, 5).await;
    let entries: Vec<Vec<u8>> = (0..5).map(|seq| entry(0, seq, &[])).collect();
    env.push(0, &entries).await;
    let processor = Arc::new(TableProcessor {
        delay: Duration::from_secs(5),
        ..TableProcessor::default()
    });
    let opts = EngineOptions {
        lock_ttl: Duration::from_secs(2),
        ..env.options()
    };
    let (engine, metrics) = env.engine(processor, opts).await;
    let drain = tokio::spawn(async move { engine.drain().await });

    // Wait for the engine to hold the lock…
    let lock_key = matomo_wire::lock_key(&env.prefix, 0);
    let started = Instant::now();
    loop {
        let held: Option<String> = env.redis.get(&lock_key).await.expect("get");
        if held.is_some() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "engine never took the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // …then, for twice the TTL while the 5 s batch runs, nobody else can take it.
    let held_since = Instant::now();
    let mut seen_held = false;
    while held_since.elapsed() < Duration::from_secs(4) {
        let taken: Option<String> = env
            .redis
            .set(
                &lock_key,
                "intruder",
                Some(Expiration::EX(30)),
                Some(SetOptions::NX),
                false,
            )
            .await
            .expect("set nx");
        assert!(
            taken.is_none(),
            "the lock expired during a long batch, {:?} after it was taken",
            held_since.elapsed()
        );
        seen_held = true;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen_held);
    let summary = drain.await.expect("task").expect("drain");
    assert_eq!(summary.processed, 5);
    assert_eq!(env.stored_seqs(0).await, vec![0, 1, 2, 3, 4]);
    assert_eq!(env.queue_len(0).await, 0);
    let renewed = metrics
        .locks
        .get_or_create(&LockLabels {
            event: LockEvent::Renewed,
        })
        .get();
    assert!(renewed >= 3, "heartbeat renewals: {renewed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_lock_rolls_the_batch_back_and_trims_nothing() {
    let env = TestEnv::new(1, 5).await;
    let entries: Vec<Vec<u8>> = (0..5).map(|seq| entry(0, seq, &[])).collect();
    env.push(0, &entries).await;
    let processor = Arc::new(TableProcessor {
        delay: Duration::from_millis(1500),
        ..TableProcessor::default()
    });
    let (engine, metrics) = env.engine(processor, env.options()).await;
    let drain = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.drain().await })
    };
    // Wait for the engine to take the lock, then take it over (as an operator's
    // `lock-status --unlock` followed by another worker would).
    let lock_key = matomo_wire::lock_key(&env.prefix, 0);
    let started = Instant::now();
    loop {
        let held: Option<String> = env.redis.get(&lock_key).await.expect("get");
        if held.is_some() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "engine never took the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _: () = env
        .redis
        .set(&lock_key, "intruder", Some(Expiration::EX(30)), None, false)
        .await
        .expect("set");
    drain.await.expect("task").expect("drain");

    assert!(
        env.stored_seqs(0).await.is_empty(),
        "rows of a batch whose lock was lost were committed"
    );
    assert_eq!(
        env.queue_len(0).await,
        5,
        "entries were trimmed without the lock"
    );
    let holder: Option<String> = env.redis.get(&lock_key).await.expect("get");
    assert_eq!(
        holder.as_deref(),
        Some("intruder"),
        "the engine released a lock it did not hold"
    );
    assert!(
        metrics
            .locks
            .get_or_create(&LockLabels {
                event: LockEvent::Lost
            })
            .get()
            >= 1
    );

    // Once the intruder is gone, the same batch is processed exactly once.
    let _: i64 = env.redis.del(&lock_key).await.expect("del");
    engine.drain().await.expect("drain again");
    assert_eq!(env.stored_seqs(0).await, vec![0, 1, 2, 3, 4]);
    assert_eq!(env.queue_len(0).await, 0);
}
