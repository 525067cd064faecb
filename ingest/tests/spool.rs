//! The local spool and the Redis guard against a real Redis: the scenarios that stop Redis or
//! fill it run their own `redis-server` on a free port (the fault suite's service helpers,
//! shared through `#[path]`), so the shared Redis is never touched; MariaDB is the shared one
//! (a fresh `mt_test_*` database per test).
//!
//! - Redis down → hits answered as usual and spooled; Redis back → replayed in order, and the
//!   queues hold exactly what a run without the outage queued;
//! - over the memory high watermark → spooled; back under the low one → replayed;
//! - a corrupt record in the middle of a segment and a half-written tail → skipped / cut, with
//!   counts, the rest replayed; a replay re-sent after a lost cursor write is not queued twice;
//! - spool full → 503 with a clear body and a metric.

mod support;

#[path = "../../benches/tests/faults/services.rs"]
#[allow(dead_code)]
mod services;

use std::path::Path;
use std::time::Duration;

use matomo_ingest::spool::{record, store};
use matomo_wire::{Params, RequestSet};
use reqwest::StatusCode;
use support::{config, Node, TestDb};
use tier_config::{Config, FsyncPolicy};

/// Visitor ids spread over the 4 queues (`hexdec(first 3 hex digits) % 4`).
const VISITORS: [&str; 6] = [
    "0010000000000001",
    "0020000000000002",
    "0030000000000003",
    "0040000000000004",
    "0050000000000005",
    "0060000000000006",
];

fn spool_config(db: &TestDb, redis_port: u16, spool_dir: &Path) -> Config {
    let mut config = config(db);
    config.redis.port = redis_port;
    config.redis.command_timeout = Duration::from_secs(1);
    config.ingest.spool.dir = Some(spool_dir.to_owned());
    config.ingest.spool.fsync = FsyncPolicy::Always;
    config.ingest.spool.redis_deadline = Duration::from_secs(1);
    config
}

/// Sends hit `n` (tagged `n`) of visitor `n % 6`; returns its status and body.
async fn hit(http: &reqwest::Client, node: &Node, n: usize) -> (StatusCode, String) {
    let visitor = VISITORS[n % VISITORS.len()];
    let url = format!(
        "{}/matomo.php?idsite=1&rec=1&_id={visitor}&send_image=0&tag={n}",
        node.base
    );
    let response = http.get(url).send().await.expect("send");
    let status = response.status();
    (status, response.text().await.unwrap_or_default())
}

async fn hits_ok(http: &reqwest::Client, node: &Node, range: impl IntoIterator<Item = usize>) {
    for n in range {
        let (status, body) = hit(http, node, n).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "hit {n}: {body}");
    }
}

/// Sends hits while Redis goes away: each is answered 204 (stored in Redis or spooled) or, for
/// the few writes already on the connection when it died, 503 "outcome unknown".
/// Returns the accepted ones.
async fn hits_during_outage(
    http: &reqwest::Client,
    node: &Node,
    range: std::ops::Range<usize>,
) -> Vec<usize> {
    let mut accepted = Vec::new();
    for n in range {
        match hit(http, node, n).await {
            (StatusCode::NO_CONTENT, _) => accepted.push(n),
            (StatusCode::SERVICE_UNAVAILABLE, body) if body == "tracking queue unavailable\n" => {}
            (status, body) => panic!("hit {n}: {status} {body}"),
        }
    }
    accepted
}

/// Each queue's requests (parameters only: entry ids and receive times differ between runs).
async fn queued_requests(node: &Node) -> Vec<Vec<Params>> {
    let mut out = Vec::new();
    for id in 0..node.config.queue.num_queue_workers {
        let sets: Vec<RequestSet> = node.queue(id).await;
        out.push(sets.into_iter().flat_map(|s| s.requests).collect());
    }
    out
}

/// The `tag` of each queued request, per queue.
fn tags(queues: &[Vec<Params>]) -> Vec<Vec<usize>> {
    queues
        .iter()
        .map(|q| {
            q.iter()
                .map(|p| p["tag"].as_str().and_then(|t| t.parse().ok()).expect("tag"))
                .collect()
        })
        .collect()
}

/// The value of metric `name` (first sample) in `/metrics`.
async fn metric(http: &reqwest::Client, node: &Node, name: &str) -> f64 {
    let text = http
        .get(format!("{}/metrics", node.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing in:\n{text}"))
}

async fn readyz(http: &reqwest::Client, node: &Node) -> (StatusCode, String) {
    let r = http
        .get(format!("{}/readyz", node.base))
        .send()
        .await
        .expect("readyz");
    (r.status(), r.text().await.unwrap_or_default())
}

async fn wait_until_replayed(http: &reqwest::Client, node: &Node) {
    for _ in 0..300 {
        if metric(http, node, "ingest_spool_entries").await == 0.0
            && readyz(http, node).await.1.contains("spool=empty")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the spool was not replayed within 30 s: {:?}",
        readyz(http, node).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_hits_are_spooled_and_replayed_in_order() {
    redis_down_scenario(true).await;
}

/// The same with the queue writes through the fred client (`ingest.direct_redis_writes =
/// false`), as Sentinel and Cluster always write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_through_the_client_library_too() {
    redis_down_scenario(false).await;
}

async fn redis_down_scenario(direct_writes: bool) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut redis = services::Redis::start(tmp.path()).await;
    let db = TestDb::create().await;
    let http = reqwest::Client::new();

    let mut config = spool_config(&db, redis.port, &tmp.path().join("spool"));
    config.ingest.direct_redis_writes = direct_writes;
    let node = Node::start_on_own_redis(config).await;
    hits_ok(&http, &node, 0..30).await;
    redis.stop().await;
    // Hits during the outage are answered as Matomo would, and spooled; only writes already
    // handed to Redis's dying connection are refused (503, outcome unknown).
    let outage = hits_during_outage(&http, &node, 30..90).await;
    let unknown = metric(&http, &node, "ingest_redis_unknown_outcome_writes_total").await;
    assert_eq!(
        (60 - outage.len()) as f64,
        unknown,
        "every refusal is an unknown outcome"
    );
    assert!(
        outage.len() >= 58,
        "at most the writes in flight are refused: {outage:?}"
    );
    assert!(metric(&http, &node, "ingest_spool_entries").await >= outage.len() as f64);
    let (status, body) = readyz(&http, &node).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "ready while the spool accepts: {body}"
    );
    assert!(
        body.contains("redis=false") && body.contains("spool=spooling"),
        "{body}"
    );
    redis.restart().await;
    // Hits right after the restart still go behind the spooled ones.
    hits_ok(&http, &node, 90..120).await;
    wait_until_replayed(&http, &node).await;
    hits_ok(&http, &node, 120..150).await;
    // A Redis write slower than `redis_deadline` (a loaded machine) sends the next hits to the
    // spool again: acknowledged, and in Redis once replayed.
    wait_until_replayed(&http, &node).await;
    let spooled = queued_requests(&node).await;
    assert!(metric(&http, &node, "ingest_spool_replayed_entries_total").await >= 60.0);
    assert_eq!(
        metric(&http, &node, "ingest_spool_corrupt_records_total").await,
        0.0
    );
    node.stop().await;

    // The same hits against a Redis that never went away.
    let mut reference_config = spool_config(&db, redis.port, &tmp.path().join("spool-ref"));
    reference_config.queue.key_prefix.push_str("ref:");
    let reference = Node::start_on_own_redis(reference_config).await;
    let sent: Vec<usize> = (0..30)
        .chain(outage.iter().copied())
        .chain(90..150)
        .collect();
    hits_ok(&http, &reference, sent.iter().copied()).await;
    wait_until_replayed(&http, &reference).await;
    let expected = queued_requests(&reference).await;
    reference.stop().await;
    assert_eq!(expected.iter().map(Vec::len).sum::<usize>(), sent.len());
    // Accepted hits stored once each, in order; refused ones not at all.
    assert_eq!(
        tags(&spooled),
        tags(&expected),
        "queues differ from a run without the outage (refused: {:?})",
        (30..90).filter(|n| !outage.contains(n)).collect::<Vec<_>>()
    );
    assert_eq!(spooled, expected);
    redis.stop().await;
    db.drop_db().await;
}

/// `used_memory` of the Redis on `port`.
fn used_memory(port: u16) -> u64 {
    let info = services::redis_cli(port, &["INFO", "memory"]).expect("INFO memory");
    matomo_ingest::spool::guard::parse_info(&info).used_memory
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_guard_spools_above_high_and_replays_below_low() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut redis = services::Redis::start(tmp.path()).await;
    let db = TestDb::create().await;
    let http = reqwest::Client::new();
    let base = used_memory(redis.port);
    let mut config = spool_config(&db, redis.port, &tmp.path().join("spool"));
    config.ingest.redis_memory_high_bytes = base + 4 * 1024 * 1024;
    config.ingest.redis_memory_low_bytes = base + 2 * 1024 * 1024;
    let node = Node::start_on_own_redis(config).await;
    hits_ok(&http, &node, 0..10).await;
    // (A write slower than `redis_deadline` on a loaded machine spools; let that drain first.)
    wait_until_replayed(&http, &node).await;
    assert_eq!(
        metric(&http, &node, "ingest_redis_guard_over_budget").await,
        0.0
    );

    // 8 MiB of filler pushes Redis over the high watermark.
    let filler = "x".repeat(8 * 1024 * 1024);
    let client = support::redis_client_at("127.0.0.1", redis.port).await;
    let () =
        fred::prelude::KeysInterface::set(&client, "filler", filler.as_str(), None, None, false)
            .await
            .expect("set filler");
    for _ in 0..50 {
        if metric(&http, &node, "ingest_redis_guard_over_budget").await == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        metric(&http, &node, "ingest_redis_guard_over_budget").await,
        1.0
    );
    hits_ok(&http, &node, 10..40).await;
    assert_eq!(metric(&http, &node, "ingest_spool_entries").await, 30.0);
    assert!(readyz(&http, &node).await.1.contains("guard=over"));
    let in_redis: usize = queued_requests(&node).await.iter().map(Vec::len).sum();
    assert_eq!(in_redis, 10, "nothing written to Redis while over budget");

    // Back under the low watermark: the guard lets the replayer go.
    let _: i64 = fred::prelude::KeysInterface::del(&client, "filler")
        .await
        .expect("del filler");
    wait_until_replayed(&http, &node).await;
    assert_eq!(
        metric(&http, &node, "ingest_redis_guard_over_budget").await,
        0.0
    );
    let queues = queued_requests(&node).await;
    assert_eq!(queues.iter().map(Vec::len).sum::<usize>(), 40);
    for tags in tags(&queues) {
        assert!(tags.windows(2).all(|w| w[0] < w[1]), "order kept: {tags:?}");
    }
    node.stop().await;
    redis.stop().await;
    db.drop_db().await;
}

fn entry(n: usize) -> (u16, Vec<u8>) {
    let mut params = Params::new();
    params.insert("idsite".into(), "1".into());
    params.insert("rec".into(), "1".into());
    params.insert("tag".into(), n.to_string().into());
    let set = RequestSet {
        requests: vec![params],
        time: 1_700_000_000,
        entry_id: Some(format!("{n:016x}")),
        ..RequestSet::default()
    };
    ((n % 4) as u16, matomo_wire::encode(&set))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_record_and_truncated_tail_are_skipped_and_the_rest_replayed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("spool");
    std::fs::create_dir_all(&dir).expect("mkdir");
    // Segment 1 (sealed): entries 0..4 with entry 2 damaged. Segment 2 (newest): entries 4..8,
    // the last one cut in half as by a crash during the append.
    let mut first = Vec::new();
    let mut damaged_at = 0;
    for n in 0..4 {
        let (queue, bytes) = entry(n);
        if n == 2 {
            damaged_at = first.len() + record::HEADER_LEN + 3;
        }
        record::encode_into(&mut first, queue, &bytes);
    }
    first[damaged_at] ^= 0x10;
    std::fs::write(store::segment_path(&dir, 1), &first).expect("segment 1");
    let mut second = Vec::new();
    for n in 4..8 {
        let (queue, bytes) = entry(n);
        record::encode_into(&mut second, queue, &bytes);
    }
    second.truncate(second.len() - 7);
    std::fs::write(store::segment_path(&dir, 2), &second).expect("segment 2");

    let db = TestDb::create().await;
    let http = reqwest::Client::new();
    let mut config = config(&db);
    config.ingest.spool.dir = Some(dir.clone());
    let node = Node::start(config).await;
    wait_until_replayed(&http, &node).await;
    let mut replayed: Vec<usize> = tags(&queued_requests(&node).await).concat();
    replayed.sort_unstable();
    assert_eq!(replayed, vec![0, 1, 3, 4, 5, 6]);
    assert_eq!(
        metric(&http, &node, "ingest_spool_corrupt_records_total").await,
        1.0
    );
    assert!(metric(&http, &node, "ingest_spool_truncated_bytes_total").await > 0.0);
    assert_eq!(
        metric(&http, &node, "ingest_spool_replayed_entries_total").await,
        6.0
    );
    // The node keeps serving: new hits go straight to Redis.
    hits_ok(&http, &node, 100..103).await;
    wait_until_replayed(&http, &node).await;
    let before = tags(&queued_requests(&node).await);

    // A crash between the replay script and the cursor write: stop the node without clearing
    // Redis, move the cursor back to the start of segment 2 (as if its last write was lost) and
    // start again. The replay marker makes the re-sent records no-ops.
    let config = node.config.clone();
    let mut node = node;
    node.shutdown.cancel();
    if let Some(task) = node.task.take() {
        let stopped = tokio::time::timeout(Duration::from_secs(10), task).await;
        assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
    }
    drop(node);
    std::fs::write(dir.join("cursor"), "2 0\n").expect("rewind the cursor");
    let node = Node::start(config).await;
    wait_until_replayed(&http, &node).await;
    assert_eq!(
        tags(&queued_requests(&node).await),
        before,
        "records re-sent after a lost cursor write are not queued twice"
    );
    // The replay marker lives under the test's key prefix in the shared Redis: delete it too.
    let node_id = std::fs::read_to_string(dir.join("node-id")).expect("node id");
    let marker = format!(
        "{}tierSpoolReplayed_{}",
        node.config.queue.key_prefix,
        node_id.trim()
    );
    let shared = support::redis_client().await;
    let removed: i64 = fred::prelude::KeysInterface::del(&shared, marker)
        .await
        .expect("del marker");
    assert_eq!(removed, 1, "the replay marker was written");
    node.stop().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_full_answers_503_with_a_clear_body() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut redis = services::Redis::start(tmp.path()).await;
    let db = TestDb::create().await;
    let http = reqwest::Client::new();
    let mut config = spool_config(&db, redis.port, &tmp.path().join("spool"));
    config.ingest.spool.max_bytes = 4096;
    let node = Node::start_on_own_redis(config).await;
    redis.stop().await;
    let mut accepted = 0;
    let mut refused = None;
    for n in 0..200 {
        match hit(&http, &node, n).await {
            (StatusCode::NO_CONTENT, _) => accepted += 1,
            // A write in flight when Redis went away: outcome unknown, not spooled.
            (StatusCode::SERVICE_UNAVAILABLE, body) if body == "tracking queue unavailable\n" => {}
            other => {
                refused = Some(other);
                break;
            }
        }
    }
    let (status, body) = refused.expect("the spool fills up");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("spool is full"), "{body}");
    assert!(accepted > 0, "hits were spooled before it was full");
    assert!(metric(&http, &node, "ingest_spool_full_rejections_total").await >= 1.0);
    let (status, body) = readyz(&http, &node).await;
    assert!(body.contains("spool=full"), "{body}");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // Redis back: every accepted hit is replayed.
    redis.restart().await;
    wait_until_replayed(&http, &node).await;
    let queued: usize = queued_requests(&node).await.iter().map(Vec::len).sum();
    assert_eq!(queued, accepted);
    node.stop().await;
    redis.stop().await;
    db.drop_db().await;
}
