//! The operator commands and HTTP endpoints against the real Redis and MariaDB.

mod engine_support;

use std::sync::Arc;
use std::time::Duration;

use engine_support::{entry, TableProcessor, TestEnv};
use fred::prelude::*;
use matomo_worker::commands;
use matomo_worker::engine::redis::Scripts;
use matomo_worker::engine::DeadLetters;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

fn text(out: Vec<u8>) -> String {
    String::from_utf8(out).expect("utf8 output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_status_lists_held_locks_and_unlocks_one() {
    let env = TestEnv::new(4, 10).await;
    let key = matomo_wire::lock_key(&env.prefix, 2);
    let _: () = env
        .redis
        .set(&key, "php-worker", Some(Expiration::EX(30)), None, false)
        .await
        .expect("set");

    let mut out = Vec::new();
    commands::lock_status::lock_status(&env.redis, &env.prefix, None, &mut out)
        .await
        .expect("lock-status");
    let shown = text(out);
    assert!(
        shown.contains(&format!("\"{key}\" is locked for")),
        "{shown}"
    );
    assert!(shown.contains(&format!("--unlock={key}")), "{shown}");

    let mut out = Vec::new();
    commands::lock_status::lock_status(&env.redis, &env.prefix, Some(&key), &mut out)
        .await
        .expect("unlock");
    let shown = text(out);
    assert!(shown.contains(&format!("Key {key} unlocked")), "{shown}");
    assert!(shown.contains("No queue is locked."), "{shown}");
    let held: Option<String> = env.redis.get(&key).await.expect("get");
    assert_eq!(held, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn print_queued_requests_and_monitor_show_the_queues() {
    let env = TestEnv::new(3, 10).await;
    env.push(
        1,
        &[entry(1, 0, &[]), entry(1, 1, &[]), b"garbage".to_vec()],
    )
    .await;

    let mut out = Vec::new();
    commands::print_queued::print_queued_requests(&env.redis, &env.config, Some(1), 10, &mut out)
        .await
        .expect("print");
    let shown = text(out);
    assert!(shown.contains("Showing requests of queue 1"), "{shown}");
    assert!(shown.contains("\"seq\": \"1\""), "{shown}");
    assert!(shown.contains("\"error\""), "{shown}");
    assert!(
        !shown.contains("queue 0"),
        "--queue-id limits the output: {shown}"
    );

    let mut out = Vec::new();
    let bad = commands::print_queued::print_queued_requests(
        &env.redis,
        &env.config,
        Some(7),
        10,
        &mut out,
    )
    .await;
    assert!(matches!(bad, Err(commands::CommandError::Usage(_))));

    let mut out = Vec::new();
    commands::monitor::monitor(
        &env.redis,
        &env.config,
        None,
        Some(1),
        Duration::from_millis(10),
        CancellationToken::new(),
        &mut out,
    )
    .await
    .expect("monitor");
    let shown = text(out);
    assert!(shown.contains("3 queues | 3 entries"), "{shown}");
    let snap = commands::monitor::snapshot(&env.redis, &env.config, Some(1))
        .await
        .expect("snapshot");
    assert_eq!(snap.queues[0].entries, 3);
    assert!(
        snap.queues[0].oldest_age_secs.is_some_and(|a| a >= 9),
        "{:?}",
        snap.queues[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_commands_list_show_replay_and_purge() {
    let env = TestEnv::new(2, 10).await;
    env.push(
        0,
        &[
            entry(0, 0, &[]),
            entry(0, 1, &[("poison", "1")]),
            entry(0, 2, &[]),
        ],
    )
    .await;
    let (engine, _) = env
        .engine(Arc::new(TableProcessor::default()), env.options())
        .await;
    engine.drain().await.expect("drain");
    assert_eq!(env.stored_seqs(0).await, vec![0, 2]);

    let dl = DeadLetters::new(env.redis.clone(), Scripts::default(), env.prefix.clone());
    let mut out = Vec::new();
    let n = commands::dead_letter::list(&dl, &env.config, None, 10, &mut out)
        .await
        .expect("list");
    let shown = text(out);
    assert_eq!(n, 1);
    assert!(
        shown.contains("queue 0: 1 dead letters") && shown.contains("test: poison hit"),
        "{shown}"
    );

    let mut out = Vec::new();
    commands::dead_letter::show(&dl, 0, 0, &mut out)
        .await
        .expect("show");
    let shown = text(out);
    assert!(shown.contains("\"poison\": \"1\""), "{shown}");

    let mut out = Vec::new();
    assert_eq!(
        commands::dead_letter::replay(&dl, &env.config, Some(0), usize::MAX, &mut out)
            .await
            .expect("replay"),
        1
    );
    assert_eq!(env.queue_len(0).await, 1);
    let mut out = Vec::new();
    assert_eq!(
        commands::dead_letter::purge(&dl, &env.config, None, &mut out)
            .await
            .expect("purge"),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_command_passes_against_the_real_services() {
    let env = TestEnv::new(1, 10).await;
    let mut out = Vec::new();
    let ok =
        commands::check::run_checks(&env.redis, Some(&env.mysql), &env.config, false, &mut out)
            .await
            .expect("checks");
    let shown = text(out);
    assert!(shown.contains("ok    Lua scripts load"), "{shown}");
    assert!(shown.contains("ok    MySQL connection works"), "{shown}");
    assert!(ok || shown.contains("FAIL  eviction policy"), "{shown}");
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints_answer() {
    let env = TestEnv::new(1, 10).await;
    let (registry, metrics) = matomo_worker::metrics::standalone();
    metrics.entries(0, matomo_worker::metrics::EntryOutcome::Processed, 3);
    let shutdown = CancellationToken::new();
    let state = matomo_worker::http::HttpState::new(
        registry,
        env.redis.clone(),
        env.mysql.clone(),
        shutdown.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(matomo_worker::http::serve(
        listener,
        state,
        shutdown.clone(),
    ));

    assert!(http_get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
    let ready = http_get(addr, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let metrics = http_get(addr, "/metrics").await;
    assert!(
        metrics.contains("matomo_worker_queue_entries_total{queue=\"0\",outcome=\"Processed\"} 3"),
        "{metrics}"
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops")
        .expect("task");
}

/// The binary refuses a worker-thread count before it starts anything: exit status 2 and the
/// reason (tokio, left to read `TOKIO_WORKER_THREADS` itself, panics on "0" and "many", exit
/// status 101, and starts 2,000 threads). `--set` (which wins over the suite's MATOMO_TIER__*
/// settings) points Redis at a closed port, so a binary that went on would fail fast, not run.
#[test]
fn the_binary_refuses_a_worker_thread_count_at_start_up() {
    for bad in ["0", "many", "2000"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_matomo-worker"))
            .args(["run", "--set", "redis.port=1"])
            .env("TOKIO_WORKER_THREADS", bad)
            .output()
            .expect("run matomo-worker");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(
            stderr.contains(&format!("TOKIO_WORKER_THREADS = \"{bad}\"")),
            "{bad}: {stderr}"
        );
    }
}
