//! The whole tier against PHP Matomo's golden rows: the corpus of `../shared/golden-php/` is sent
//! by the golden's own `send.py` to our ingest (`matomo_ingest::serve`, in process), once as
//! 4,094 single GETs and once as bulk POSTs of 50; the `matomo-worker` binary drains the queue
//! (`process --once`) into a database loaded from `matomo-state/`; the golden's `dump.py` and
//! `compare.py` must then find the rows identical to `golden-get.json` (compare exits 0). A
//! corpus the golden's generator writes with another seed, which PHP never saw, must give the
//! same rows sent as GETs and as bulks.
//!
//! Needs Redis and MariaDB on loopback and python3 with the mariadb client (the local stack
//! installs them); skips with a message when the shared folder is absent.

mod engine_support;
mod golden_compare;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use engine_support::TestEnv;
use mysql_async::prelude::Queryable;
use tokio_util::sync::CancellationToken;

fn golden_dir() -> Option<PathBuf> {
    let dir = tier_config::shared_dir().map(|d| d.join("golden-php"));
    match dir {
        Some(dir) if dir.join("corpus.jsonl").is_file() => Some(dir),
        _ => {
            println!("SKIPPED: ../shared/golden-php not found (set MATOMO_SHARED_DIR)");
            None
        }
    }
}

/// `[General] salt` of the golden install's config.ini.php.
fn golden_salt(dir: &Path) -> String {
    let ini = std::fs::read_to_string(dir.join("matomo-state/config.ini.php")).expect("ini");
    ini.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("salt"))
        .and_then(|rest| rest.split('"').nth(1))
        .expect("salt in config.ini.php")
        .to_owned()
}

async fn tier_round(mode: &str, bulk: Option<usize>) {
    let Some(dir) = golden_dir() else { return };
    let env = run_tier(&dir, None, mode, bulk).await;

    // PHP's own tools compare the rows.
    let verdict = golden_compare::dump_and_compare(&dir, &env.db, &format!("tier-{mode}"));
    assert!(
        verdict.equal,
        "[{mode}] the tier's rows differ from PHP's (fidelity {}%; see above)",
        verdict.fidelity()
    );
}

/// Loads the golden state into a fresh database, sends `corpus` (default: the golden's) to an
/// in-process ingest with the golden's `send.py` (`bulk`: POSTs of that many hits), drains the
/// queue with the `matomo-worker` binary and returns the environment holding the rows.
async fn run_tier(dir: &Path, corpus: Option<&Path>, mode: &str, bulk: Option<usize>) -> TestEnv {
    let shared = dir.parent().expect("shared dir").to_path_buf();
    let env = TestEnv::new(1, 25).await;
    {
        let mut conn = env.mysql.get_conn().await.expect("conn");
        for file in ["matomo-state/schema.sql", "matomo-state/config-data.sql"] {
            let sql = std::fs::read_to_string(dir.join(file)).expect("golden sql");
            conn.query_drop(sql)
                .await
                .unwrap_or_else(|e| panic!("loading {file}: {e}"));
        }
    }

    // The ingest node, in process, on a free port.
    let mut config = env.config.clone();
    config.matomo.salt = golden_salt(dir);
    config.queue.num_queue_workers = 1;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let cancel = CancellationToken::new();
    let server = tokio::spawn(matomo_ingest::serve(config, listener, cancel.clone()));
    let ready = format!("http://{addr}/readyz");
    let started = Instant::now();
    loop {
        let ok = Command::new("curl")
            .args(["-sf", "-o", "/dev/null", &ready])
            .status();
        if ok.map(|s| s.success()).unwrap_or(false) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "ingest never became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The corpus, sent by the golden's own client.
    let url = format!("http://{addr}/matomo.php");
    let mut send = Command::new("python3");
    send.arg(dir.join("send.py")).args(["--url", &url]);
    if let Some(corpus) = corpus {
        send.arg("--corpus").arg(corpus);
    }
    if let Some(n) = bulk {
        send.args(["--bulk", &n.to_string()]);
    }
    let out = tokio::task::spawn_blocking(move || send.output())
        .await
        .expect("join")
        .expect("send.py");
    assert!(
        out.status.success(),
        "[{mode}] send.py: not every hit was accepted\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    cancel.cancel();
    server.await.expect("join ingest").expect("ingest served");

    // The worker binary drains the queue.
    let out = engine_support::golden_worker_command(&env, dir)
        .arg("--matomo-vendor")
        .arg(shared.join("matomo-data/for-matomo-5.1"))
        .args(["--set", "matomo.device_detector=6.3"])
        .args(["--set", "queue.num_requests_to_process=100"])
        .args(["process", "--once"])
        .output()
        .expect("run matomo-worker");
    assert!(
        out.status.success(),
        "[{mode}] matomo-worker process failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.queue_len(0).await, 0, "[{mode}] the queue was drained");
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tier_reproduces_php_rows_from_single_gets() {
    tier_round("get", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tier_reproduces_php_rows_from_bulk_requests() {
    tier_round("bulk", Some(50)).await;
}

/// The seed of the reseeded corpus. The generator draws its days from a fixed range (2026-11-10
/// to 11-13 UTC) whatever the seed, so the fingerprint salts of `config-data.sql` cover its hits
/// as they cover the golden's.
const RESEED: u32 = 2;

/// A corpus PHP never saw: the golden's own deterministic generator (`corpus.py`) run with
/// another seed in a temporary folder, so other visitors, user agents, referrers, orders and
/// visit boundaries. There are no PHP rows for it, but PHP wrote the same rows for the golden
/// corpus sent as single GETs and as bulk POSTs (its two files are byte-identical), and the
/// reseeded corpus keeps what made that so (the duplicate order is still the last hit), so the
/// tier must write one set of rows both ways: the dumps are compared with `compare.py`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tier_writes_the_same_rows_for_gets_and_bulks_of_a_reseeded_corpus() {
    let Some(dir) = golden_dir() else { return };
    let work = tempfile::tempdir().expect("temp dir");
    let generator = std::fs::read_to_string(dir.join("corpus.py")).expect("corpus.py");
    let seed_line = "\nSEED = 4242\n";
    assert!(
        generator.contains(seed_line),
        "corpus.py no longer sets `SEED = 4242`: update this test"
    );
    let reseeded = generator.replacen(seed_line, &format!("\nSEED = {RESEED}\n"), 1);
    std::fs::write(work.path().join("corpus.py"), reseeded).expect("write corpus.py");
    let corpus = work.path().join("corpus.jsonl");
    let out = Command::new("python3")
        .arg(work.path().join("corpus.py"))
        .arg("--out")
        .arg(&corpus)
        .output()
        .expect("python3 corpus.py");
    assert!(
        out.status.success(),
        "corpus.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hits = std::fs::read(&corpus).expect("reseeded corpus");
    assert_ne!(
        hits,
        std::fs::read(dir.join("corpus.jsonl")).expect("golden corpus"),
        "the seed changes the corpus"
    );

    let mut dumps = Vec::new();
    for (mode, bulk) in [("reseeded-get", None), ("reseeded-bulk", Some(50))] {
        let env = run_tier(&dir, Some(&corpus), mode, bulk).await;
        let dump = work.path().join(format!("{mode}.json"));
        golden_compare::dump(&dir, &env.db, Some(&corpus), &dump);
        dumps.push(dump);
    }

    // The rows are a corpus' worth (equal empty dumps would prove nothing); the comparison
    // below holds the second dump to the first.
    let text = std::fs::read_to_string(&dumps[0]).expect("dump");
    let dump: serde_json::Value = serde_json::from_str(&text).expect("dump is JSON");
    let count = |table: &str| dump["counts"][table].as_u64().unwrap_or(0);
    assert!(
        count("log_visit") > 250
            && count("log_link_visit_action") > 2_500
            && count("log_conversion") > 50
            && count("log_conversion_item") > 50
            && count("log_action") > 300,
        "the reseeded corpus was stored: {}",
        dump["counts"]
    );
    let verdict = golden_compare::compare(&dir, &dumps[0], &dumps[1], "reseeded get vs bulk");
    assert!(
        verdict.equal,
        "GETs and bulks of the reseeded corpus gave different rows (fidelity {}%; see above)",
        verdict.fidelity()
    );
}
