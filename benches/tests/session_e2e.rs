//! A whole `matomo-loadgen run` session against a miniature tier made of real services: an
//! HTTP endpoint that queues each hit into Redis (per visitor shard) and a drain task that moves
//! queued hits into MariaDB rows the way the worker writes them. The harness must validate the
//! target, sample queue depth and rows, wait for the drain, reconcile exactly, and write the
//! JSON and HTML reports.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::routing::get;
use axum::Router;
use clap::Parser;
use fred::prelude::{Builder, ClientLike, ListInterface};
use matomo_loadgen::cli::{Cli, Command};
use matomo_loadgen::presets;
use mysql_async::prelude::Queryable;

struct Tier {
    redis: fred::clients::Client,
    prefix: String,
}

fn param<'a>(q: &'a str, key: &str) -> Option<&'a str> {
    q.split('&')
        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

async fn track(State(t): State<Arc<Tier>>, RawQuery(q): RawQuery) -> &'static str {
    let q = q.unwrap_or_default();
    if param(&q, "rec") == Some("1") {
        let visitor = param(&q, "_id").unwrap_or("0");
        let shard = u16::from_str_radix(&visitor[..1], 16).unwrap_or(0) % 2;
        let key = matomo_wire::queue_key(&t.prefix, shard);
        let _: i64 = t.redis.rpush(key.as_str(), q).await.unwrap();
    }
    "GIF89a"
}

/// Moves queued hits into rows, slower than they arrive so that a queue builds up.
async fn drain(tier: Arc<Tier>, pool: mysql_async::Pool) {
    loop {
        let mut moved = 0;
        for shard in 0..2 {
            let key = matomo_wire::queue_key(&tier.prefix, shard);
            let batch: Vec<String> = tier
                .redis
                .lpop(key.as_str(), Some(20))
                .await
                .unwrap_or_default();
            let mut conn = pool.get_conn().await.unwrap();
            for q in &batch {
                let pv = param(q, "pv_id").unwrap();
                let kind_writes_row = !q.contains("ping=1") && !q.contains("idgoal=");
                if kind_writes_row {
                    conn.exec_drop(
                        "INSERT INTO matomo_log_link_visit_action (idsite, idvisitor, idvisit, server_time, idpageview) VALUES (1, UNHEX('0123456789abcdef'), 1, UTC_TIMESTAMP(), ?)",
                        (pv,),
                    )
                    .await
                    .unwrap();
                }
            }
            moved += batch.len();
        }
        if moved == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_validated_probed_drained_reconciled_and_reported() {
    let db = common::TestDb::create().await;
    db.add_site(1, false).await;
    let prefix = format!("lgtest{:08x}:", rand::random::<u32>());
    let redis = Builder::from_config(common::redis_config())
        .build()
        .unwrap();
    redis
        .init()
        .await
        .unwrap_or_else(|e| panic!("Redis must be reachable for this test: {e}"));
    let tier = Arc::new(Tier {
        redis,
        prefix: prefix.clone(),
    });
    let app = Router::new()
        .route("/matomo.php", get(track))
        .with_state(Arc::clone(&tier));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let drainer = tokio::spawn(drain(Arc::clone(&tier), db.pool.clone()));

    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("result.json");
    let html = dir.path().join("report.html");
    let target = format!("http://{addr}/");
    let cli = Cli::try_parse_from([
        "matomo-loadgen",
        "run",
        "--target",
        &target,
        "--rate",
        "300",
        "--duration",
        "3",
        "--json",
        json.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
        "--mysql-url",
        &db.url,
        "--redis-url",
        &common::redis_url(),
        "--key-prefix",
        &prefix,
        "--queues",
        "2",
        "--sample-ms",
        "100",
        "--drain-timeout",
        "60",
        "--settle-secs",
        "1",
        "--quiet",
        "--mix",
        "pageview=6,event=2,ping=1,goal=1",
        "--max-lost",
        "0",
        "--max-duplicated",
        "0",
    ])
    .unwrap();
    let Command::Run(args) = cli.command else {
        unreachable!()
    };
    let result = presets::run(&args).await.unwrap();
    drainer.abort();

    assert_eq!(result.total.offered_hits, 900);
    assert_eq!(result.total.accepted_hits, 900);
    let rec = &result.reconciliation;
    assert_eq!(rec.status, "complete");
    assert_eq!(rec.accepted, 900);
    let expected = rec.expected.unwrap();
    assert!(
        expected > 500 && expected < 900,
        "pings and goals write no action row: {expected}"
    );
    assert_eq!(rec.stored, Some(expected));
    assert_eq!(
        (rec.lost, rec.duplicated, rec.unexpected),
        (Some(0), Some(0), Some(0))
    );
    assert_eq!(rec.not_reconciled, 900 - expected);
    assert!(rec.lag.as_ref().unwrap().count == expected);
    assert!(result.stack.max_queue_depth > 0, "the queue built up");
    assert_eq!(result.stack.final_queue_depth, 0);
    assert!(result.stack.peak_drain_rate > 0.0);
    assert!(result.passed, "{:?}", result.thresholds);

    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for field in ["accepted", "stored", "lost", "duplicated", "invalid"] {
        assert!(
            doc["reconciliation"][field].is_u64(),
            "reconciliation.{field} in the JSON"
        );
    }
    let page = std::fs::read_to_string(&html).unwrap();
    for needle in [
        "Offered vs accepted rate",
        "HDR latency percentile curve",
        "Queue depth per shard",
        "Drain rate",
        "lag percentile curve",
        "<svg",
    ] {
        assert!(page.contains(needle), "HTML report has {needle:?}");
    }
    assert!(
        !page.contains("http://cdn") && !page.contains("<script src"),
        "self-contained"
    );

    let mut conn = db.pool.get_conn().await.unwrap();
    let rows: u64 = conn
        .query_first("SELECT COUNT(*) FROM matomo_log_link_visit_action")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rows, expected);
    drop(conn);
    let _: i64 = fred::prelude::KeysInterface::del(
        &tier.redis,
        vec![
            matomo_wire::queue_key(&prefix, 0),
            matomo_wire::queue_key(&prefix, 1),
        ],
    )
    .await
    .unwrap();
    db.drop_db().await;
}
