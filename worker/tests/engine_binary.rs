//! The `matomo-worker` binary with the real tracker core, against a Matomo database loaded
//! from the golden PHP state (`../shared/golden-php/matomo-state`): `process --once` drains a
//! queue of real hits into Matomo's tables; and a worker killed with SIGKILL between COMMIT and
//! LTRIM (through the binary's test hook), then restarted, leaves exactly the rows of an
//! uninterrupted run. Skips with a message when the shared folder is absent.

mod engine_support;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use engine_support::{golden_dir, golden_worker_command, load_golden_state, TestEnv};
use matomo_wire::{Params, RequestSet};
use mysql_async::prelude::*;

const HITS: usize = 60;
const TABLES: [&str; 5] = [
    "log_visit",
    "log_link_visit_action",
    "log_action",
    "log_conversion",
    "log_conversion_item",
];

/// The first `n` corpus hits as queue entries, built the way ingest builds them.
fn corpus_entries(dir: &Path, n: usize) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(dir.join("corpus.jsonl")).expect("corpus");
    let now = chrono::Utc::now().timestamp();
    text.lines()
        .take(n)
        .map(|line| {
            let hit: serde_json::Value = serde_json::from_str(line).expect("corpus line");
            let query = hit["query"].as_str().unwrap_or_default();
            let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).expect("query");
            let mut params = Params::new();
            for (k, v) in pairs {
                params.insert(k, v.into());
            }
            let mut server = Params::new();
            server.insert("REMOTE_ADDR".into(), "127.0.0.1".into());
            if let Some(ua) = hit["headers"]["User-Agent"].as_str() {
                server.insert("HTTP_USER_AGENT".into(), ua.into());
            }
            if let Some(lang) = hit["headers"]["Accept-Language"].as_str() {
                server.insert("HTTP_ACCEPT_LANGUAGE".into(), lang.into());
            }
            let token = params
                .get("token_auth")
                .and_then(|v| v.as_str())
                .map(str::to_owned);
            let set = RequestSet {
                requests: vec![params],
                server,
                cookie: Params::new(),
                token_auth: token,
                time: now,
                entry_id: Some(format!("{:016x}", rand::random::<u64>())),
            };
            matomo_wire::encode(&set)
        })
        .collect()
}

async fn counts(env: &TestEnv) -> Vec<u64> {
    let mut conn = env.mysql.get_conn().await.expect("conn");
    let mut out = Vec::new();
    for t in TABLES {
        let n: Option<u64> = conn
            .query_first(format!("SELECT COUNT(*) FROM matomo_{t}"))
            .await
            .expect("count");
        out.push(n.unwrap_or(0));
    }
    out
}

fn worker(env: &TestEnv, dir: &Path) -> Command {
    let mut cmd = golden_worker_command(env, dir);
    cmd.args([
        "--set",
        "queue.num_requests_to_process=10",
        "--set",
        "worker.lock_ttl=2",
    ]);
    // No --matomo-vendor: device detection and referrer lists do not matter for exactly-once,
    // and loading the detector three times would dominate the test's time.
    cmd
}

fn process_once(env: &TestEnv, dir: &Path) -> String {
    let out = worker(env, dir)
        .args(["process", "--once"])
        .output()
        .expect("run matomo-worker");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "matomo-worker process failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_drains_real_hits_exactly_once_even_after_kill_9() {
    let Some(dir) = golden_dir() else {
        eprintln!("skipped: the shared golden PHP state (../shared/golden-php) is absent; set MATOMO_SHARED_DIR");
        return;
    };
    let entries = corpus_entries(&dir, HITS);

    // Reference: one uninterrupted run.
    let clean = TestEnv::new(1, 10).await;
    load_golden_state(&clean, &dir).await;
    clean.push(0, &entries).await;
    let stdout = process_once(&clean, &dir);
    assert!(
        stdout.contains(&format!("processed {HITS} entries")),
        "{stdout}"
    );
    assert_eq!(clean.queue_len(0).await, 0);
    let expected = counts(&clean).await;
    assert!(
        expected[0] > 0 && expected[1] > 0,
        "the tracker wrote no rows: {expected:?}"
    );

    // The same queue, with the worker killed after its second COMMIT, before the LTRIM.
    let crashed = TestEnv::new(1, 10).await;
    load_golden_state(&crashed, &dir).await;
    crashed.push(0, &entries).await;
    let mut child = worker(&crashed, &dir)
        .args(["process", "--once"])
        .env("MATOMO_WORKER_TEST_PAUSE_AFTER_COMMIT", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn matomo-worker");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains("paused after commit 2") => break,
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("the worker never reached the hook:\n{}", seen.join("\n"));
            }
        }
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert_eq!(
        crashed.queue_len(0).await,
        (HITS - 10) as u64,
        "second batch committed but not trimmed"
    );

    // Restart after the dead worker's lock expired.
    let lock_key = matomo_wire::lock_key(&crashed.prefix, 0);
    let started = Instant::now();
    while fred::prelude::KeysInterface::get::<Option<String>, _>(&crashed.redis, &lock_key)
        .await
        .expect("get")
        .is_some()
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "lock never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stdout = process_once(&crashed, &dir);
    assert!(stdout.contains("10 already committed"), "{stdout}");
    assert_eq!(crashed.queue_len(0).await, 0);
    assert_eq!(
        counts(&crashed).await,
        expected,
        "rows after kill -9 + restart differ from an uninterrupted run ({TABLES:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_readyz_drains_and_stops_gracefully_on_sigterm() {
    let Some(dir) = golden_dir() else {
        eprintln!("skipped: the shared golden PHP state (../shared/golden-php) is absent; set MATOMO_SHARED_DIR");
        return;
    };
    let env = TestEnv::new(1, 10).await;
    load_golden_state(&env, &dir).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let mut child = worker(&env, &dir)
        .args([
            "--set",
            &format!("worker.listen=127.0.0.1:{port}"),
            "--set",
            "worker.max_batch_wait=0.2",
        ])
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn matomo-worker run");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let get = |path: &'static str| async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        Some(response)
    };
    let started = Instant::now();
    while !get("/readyz")
        .await
        .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    {
        if started.elapsed() > Duration::from_secs(60)
            || child.try_wait().expect("try_wait").is_some()
        {
            let _ = child.kill();
            panic!("matomo-worker run never became ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 25 hits: two full batches and a remainder of 5, drained while running.
    env.push(0, &corpus_entries(&dir, 25)).await;
    let started = Instant::now();
    while env.queue_len(0).await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "run did not drain the queue"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = get("/metrics").await.expect("metrics");
    assert!(
        metrics.contains("matomo_worker_queue_entries_total{queue=\"0\",outcome=\"Processed\"} 25"),
        "{metrics}"
    );
    assert!(counts(&env).await[1] > 0);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("try_wait") {
            break exit;
        }
        if started.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("matomo-worker run did not stop on SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(exit.success(), "exit status {exit:?}");
    let lock: Option<String> =
        fred::prelude::KeysInterface::get(&env.redis, matomo_wire::lock_key(&env.prefix, 0))
            .await
            .expect("get");
    assert_eq!(lock, None, "the lock was released on shutdown");
}

/// A measurement, not a check: drains the whole golden corpus (4,094 hits, one queue, batches of
/// 500) with `process --once` and prints entries per second. Run with
/// `MATOMO_WORKER_BIN=target/release/matomo-worker cargo test -p matomo-worker --test engine_binary -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "throughput measurement; run explicitly"]
async fn measure_process_once_throughput_on_the_golden_corpus() {
    let Some(dir) = golden_dir() else {
        eprintln!("skipped: the shared golden PHP state (../shared/golden-php) is absent; set MATOMO_SHARED_DIR");
        return;
    };
    let env = TestEnv::new(1, 500).await;
    load_golden_state(&env, &dir).await;
    let entries = corpus_entries(&dir, usize::MAX);
    env.push(0, &entries).await;
    let bin = std::env::var("MATOMO_WORKER_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_matomo-worker").to_owned());
    let mut cmd = worker(&env, &dir);
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    cmd = Command::new(&bin);
    cmd.args(args).args([
        "--set",
        "queue.num_requests_to_process=500",
        "process",
        "--once",
    ]);
    let started = Instant::now();
    let out = cmd.output().expect("run matomo-worker");
    let secs = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.queue_len(0).await, 0);
    eprintln!(
        "{bin}: {} entries in {secs:.2} s = {:.0} entries/s (process start-up included); rows {:?} {TABLES:?}",
        entries.len(),
        entries.len() as f64 / secs,
        counts(&env).await
    );
}
