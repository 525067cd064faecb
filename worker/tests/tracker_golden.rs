//! Golden row-level test against PHP Matomo 5.1.2 + QueuedTracking: the corpus of
//! `../shared/golden-php/` is turned into RequestSets the way the ingest writes them, fed through
//! `Tracker::process_batch` in batches of 25 (the engine's contract: a transaction per batch,
//! a poison entry rolled back and the batch re-run without it), then dumped and compared with the
//! golden's own `dump.py` / `compare.py`. Prints the `fidelity:` line and requires `compare.py`
//! to exit 0: every compared cell equal to the rows PHP wrote (only the fingerprint salts PHP
//! created for its own clock dates, not used by the corpus, are left out, as the golden README
//! describes).
//!
//! Needs MariaDB on 127.0.0.1:3306 (user/password `matomo`) and fails clearly without it; skips
//! with a message when the shared folder is absent.

mod golden_compare;

use std::path::{Path, PathBuf};
use std::process::Command;

use matomo_wire::{Params, RequestSet};
use matomo_worker::tracker::{BatchError, Tracker};
use mysql_async::prelude::Queryable;
use serde_json::Value;

fn shared_dir() -> PathBuf {
    match std::env::var_os("MATOMO_SHARED_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    }
}

fn mysql(db: &str, sql_file: Option<&Path>, sql: Option<&str>) {
    let mut cmd = Command::new("mariadb");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-P",
        "3306",
        "-u",
        "matomo",
        "--password=matomo",
    ]);
    if !db.is_empty() {
        cmd.arg(db);
    }
    if let Some(s) = sql {
        cmd.args(["-e", s]);
    }
    if let Some(f) = sql_file {
        cmd.stdin(std::fs::File::open(f).expect("open sql file"));
    }
    let out = cmd
        .output()
        .expect("run the mariadb client (is it installed?)");
    assert!(
        out.status.success(),
        "mariadb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn salt_from_ini(text: &str) -> String {
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("salt = ")
                .map(|s| s.trim_matches('"').to_owned())
        })
        .expect("salt in config.ini.php")
}

fn query_params(query: &str) -> Params {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).expect("query string");
    let mut params = Params::new();
    for (k, v) in pairs {
        params.entry(k).or_insert(Value::String(v));
    }
    params
}

/// One RequestSet per hit, as the ingest writes a GET: the hit's headers as `$_SERVER`.
fn get_sets(corpus: &str, now: i64) -> Vec<RequestSet> {
    let mut sets = Vec::new();
    for line in corpus.lines().filter(|l| !l.trim().is_empty()) {
        let hit: Value = serde_json::from_str(line).expect("corpus line is JSON");
        let mut server = Params::new();
        server.insert("REMOTE_ADDR".into(), Value::String("127.0.0.1".into()));
        server.insert("REQUEST_METHOD".into(), Value::String("GET".into()));
        if let Some(h) = hit["headers"].as_object() {
            if let Some(ua) = h.get("User-Agent").and_then(Value::as_str) {
                server.insert("HTTP_USER_AGENT".into(), Value::String(ua.into()));
            }
            if let Some(al) = h.get("Accept-Language").and_then(Value::as_str) {
                server.insert("HTTP_ACCEPT_LANGUAGE".into(), Value::String(al.into()));
            }
        }
        let params = query_params(hit["query"].as_str().unwrap_or_default());
        sets.push(RequestSet {
            requests: vec![params],
            server,
            time: now,
            ..Default::default()
        });
    }
    sets
}

/// PHP's `Common::getBrowserLanguage` on a header, as `send.py --bulk` injects it into `lang=`.
fn php_browser_language(header: &str) -> String {
    matomo_worker::tracker::request::normalise_browser_language(
        &matomo_wire::php::htmlspecialchars(header),
    )
}

/// RequestSets of 50 hits, as the ingest writes `send.py --bulk 50`: one bulk POST's headers,
/// each hit's User-Agent and Accept-Language moved into `ua=` / `lang=`, token in the body.
fn bulk_sets(corpus: &str, now: i64) -> Vec<RequestSet> {
    let hits: Vec<Value> = corpus
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("corpus line is JSON"))
        .collect();
    let mut sets = Vec::new();
    for chunk in hits.chunks(50) {
        let mut requests = Vec::new();
        let mut token = None;
        for hit in chunk {
            let mut params = query_params(hit["query"].as_str().unwrap_or_default());
            if token.is_none() {
                token = params
                    .get("token_auth")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
            let h = hit["headers"].as_object().cloned().unwrap_or_default();
            if !params.contains_key("ua") {
                if let Some(ua) = h.get("User-Agent").and_then(Value::as_str) {
                    params.insert("ua".into(), Value::String(ua.into()));
                }
            }
            if !params.contains_key("lang") {
                if let Some(al) = h.get("Accept-Language").and_then(Value::as_str) {
                    params.insert("lang".into(), Value::String(php_browser_language(al)));
                }
            }
            requests.push(params);
        }
        let mut server = Params::new();
        server.insert("REMOTE_ADDR".into(), Value::String("127.0.0.1".into()));
        server.insert("REQUEST_METHOD".into(), Value::String("POST".into()));
        server.insert(
            "HTTP_USER_AGENT".into(),
            Value::String("golden-send/1 (bulk)".into()),
        );
        sets.push(RequestSet {
            requests,
            server,
            token_auth: token,
            time: now,
            ..Default::default()
        });
    }
    sets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_corpus_as_gets_reproduces_php_rows() {
    run_golden(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_corpus_as_bulk_requests_reproduces_php_rows() {
    run_golden(true).await;
}

async fn run_golden(bulk: bool) {
    let shared = shared_dir();
    let golden = shared.join("golden-php");
    if !golden.join("corpus.jsonl").exists() {
        println!(
            "SKIPPED: {} not found (set MATOMO_SHARED_DIR)",
            golden.display()
        );
        return;
    }
    let db = format!("mt_test_{:016x}", rand::random::<u64>());
    mysql("", None, Some(&format!("CREATE DATABASE `{db}`")));
    struct Drop_(String);
    impl Drop for Drop_ {
        fn drop(&mut self) {
            let _ = Command::new("mariadb")
                .args(["-h", "127.0.0.1", "-u", "matomo", "--password=matomo", "-e"])
                .arg(format!("DROP DATABASE IF EXISTS `{}`", self.0))
                .output();
        }
    }
    let _guard = Drop_(db.clone());
    mysql(&db, Some(&golden.join("matomo-state/schema.sql")), None);
    mysql(
        &db,
        Some(&golden.join("matomo-state/config-data.sql")),
        None,
    );

    let ini = std::fs::read_to_string(golden.join("matomo-state/config.ini.php"))
        .expect("config.ini.php");
    let mut config = tier_config::Config::default();
    config.database.dbname = db.clone();
    config.matomo.salt = salt_from_ini(&ini);
    config.matomo.vendor_dir = Some(shared.join("matomo-data/for-matomo-5.1"));
    // The golden rows were written by Matomo 5.1.2, which ships DeviceDetector 6.3.2.
    config.matomo.device_detector = tier_config::DeviceDetectorRelease::V6_3;
    let url = format!("mysql://matomo:matomo@127.0.0.1:3306/{db}");
    let pool = mysql_async::Pool::new(url.as_str());
    let tracker = Tracker::new(&config, pool.clone())
        .await
        .expect("tracker starts");

    let corpus = std::fs::read_to_string(golden.join("corpus.jsonl")).expect("corpus");
    let now = chrono::Utc::now().timestamp();
    let sets = if bulk {
        bulk_sets(&corpus, now)
    } else {
        get_sets(&corpus, now)
    };
    let batch_size = if bulk { 1 } else { 25 };
    let started = std::time::Instant::now();
    let mut cache = tracker.new_shard_cache();
    let mut dropped = 0;
    for chunk in sets.chunks(batch_size) {
        let mut batch: Vec<RequestSet> = chunk.to_vec();
        loop {
            let mut tx = pool
                .start_transaction(Default::default())
                .await
                .expect("transaction");
            // GET batches are read ahead, as the engine reads a batch queued behind another;
            // bulk ones are not, so both ways are held to PHP's rows.
            let ahead = if bulk {
                None
            } else {
                tracker.read_ahead(&batch)
            };
            match tracker
                .process_batch(&mut tx, &mut cache, &batch, ahead)
                .await
            {
                Ok(_) => {
                    tx.commit().await.expect("commit");
                    break;
                }
                Err(BatchError::Poison { index, reason, .. }) => {
                    tx.rollback().await.expect("rollback");
                    println!("poison entry dropped: {reason}");
                    batch.remove(index);
                    dropped += 1;
                    cache = tracker.new_shard_cache();
                }
                Err(e) => panic!("batch failed: {e}"),
            }
        }
    }
    let mode = if bulk { "bulk" } else { "get" };
    println!(
        "[{mode}] processed {} entries in {:?} ({dropped} poison)",
        sets.len(),
        started.elapsed()
    );
    let mut conn = pool.get_conn().await.expect("conn");
    let visits: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM matomo_log_visit")
        .await
        .expect("count");
    println!("log_visit rows: {visits:?}");
    drop(conn);
    pool.disconnect().await.expect("disconnect");

    let verdict = golden_compare::dump_and_compare(&golden, &db, mode);
    let pct = verdict.fidelity();
    assert!(
        verdict.equal,
        "[{mode}] rows differ from PHP's (fidelity {pct}%); see the differences above"
    );
}
