//! `queue.compression` end to end: for each mode, a hit sent to a running node is stored in Redis
//! in that form (zlib from the ingest's encoder, zlib at PHP's level, zlib from the greedy
//! encoder, or the JSON itself) and decodes — the way
//! QueuedTracking's reader does, `gzuncompress` falling back to the raw bytes — to the same
//! request set.

//!
//! `auto` runs against a Redis of its own (the fault suite's service helpers), whose
//! `list-compress-depth` it sets: it picks the raw JSON when Redis compresses list nodes, our
//! zlib encoder when it does not.

mod support;

#[path = "../../benches/tests/faults/services.rs"]
#[allow(dead_code)]
mod services;

use std::io::Read as _;

use support::{config, Node, TestDb};
use tier_config::{CompressionSetting, Config, EntryCompression};

async fn stored_entry(db: &TestDb, compression: EntryCompression) -> Vec<u8> {
    let mut cfg = config(db);
    cfg.queue.compression = compression.into();
    stored_entry_with(cfg, Node::start).await
}

async fn stored_entry_with<F, Fut>(mut cfg: Config, start: F) -> Vec<u8>
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = Node>,
{
    cfg.queue.num_queue_workers = 1;
    let node = start(cfg).await;
    let url = format!(
        "{}/matomo.php?idsite=1&rec=1&_id=0123456789abcdef&url=http%3A%2F%2Fexample.com%2F&action_name=Home",
        node.base
    );
    let answer = reqwest::get(url).await.expect("request");
    assert_eq!(answer.status(), 200);
    let metrics = reqwest::get(format!("{}/metrics", node.base))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let mut raw = node.raw_queue(0).await;
    node.stop().await;
    assert_eq!(raw.len(), 1, "one entry queued");
    let entry = raw.remove(0);
    // /metrics names the form the entry has.
    let mode = match entry.get(..2) {
        Some([0x78, 0x5e]) => "default",
        Some([0x78, 0x9c]) => "zlib",
        Some([0x78, 0x01]) => "fast",
        _ => "none",
    };
    let series = format!("ingest_entry_compression{{mode=\"{mode}\"}} 1");
    assert!(metrics.contains(&series), "{series} in:\n{metrics}");
    entry
}

/// PHP's reader: `@gzuncompress($value)`, the raw value when that yields nothing.
fn php_read(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match flate2::read::ZlibDecoder::new(bytes).read_to_end(&mut out) {
        Ok(_) if !out.is_empty() => out,
        _ => bytes.to_vec(),
    }
}

#[tokio::test]
async fn every_compression_mode_stores_an_entry_php_reads() {
    let db = TestDb::create().await;
    let default = stored_entry(&db, EntryCompression::Default).await;
    let zlib = stored_entry(&db, EntryCompression::Zlib).await;
    let fast = stored_entry(&db, EntryCompression::Fast).await;
    let none = stored_entry(&db, EntryCompression::None).await;
    db.drop_db().await;

    // zlib headers: our encoder (`78 5e`), level 6 (`78 9c`, gzcompress's default) and
    // "fastest" (`78 01`, the greedy encoder); raw JSON.
    assert_eq!(&default[..2], &[0x78, 0x5e]);
    assert_eq!(&zlib[..2], &[0x78, 0x9c]);
    assert_eq!(&fast[..2], &[0x78, 0x01]);
    assert_eq!(none.first(), Some(&b'{'));
    assert!(
        default.len() <= zlib.len() + 8,
        "the default encoder is about as small as zlib level 6"
    );
    assert!(
        fast.len() >= zlib.len() - 8,
        "the greedy encoder is not smaller"
    );
    assert!(none.len() > zlib.len(), "the JSON is larger than its zlib");

    let decoded: Vec<matomo_wire::RequestSet> = [&default, &zlib, &fast, &none]
        .iter()
        .map(|bytes| {
            let json = php_read(bytes);
            assert_eq!(json.first(), Some(&b'{'), "PHP reads JSON");
            let mut set = matomo_wire::decode(bytes).expect("decodes");
            // Entry ids, receive times and the nodes' ports differ between the three hits.
            set.entry_id = None;
            set.time = 0;
            set.server.remove("REQUEST_TIME");
            set.server.remove("REMOTE_PORT");
            set.server.remove("HTTP_HOST");
            set
        })
        .collect();
    assert_eq!(decoded[0], decoded[1]);
    assert_eq!(decoded[0], decoded[2]);
    assert_eq!(decoded[0], decoded[3]);
    assert_eq!(
        decoded[0].requests[0]
            .get("action_name")
            .and_then(|v| v.as_str()),
        Some("Home")
    );
}

#[tokio::test]
async fn auto_stores_json_only_where_redis_compresses_lists() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut redis = services::Redis::start(tmp.path()).await;
    let db = TestDb::create().await;
    let mut entries = Vec::new();
    for depth in ["0", "1"] {
        let set = services::redis_cli(redis.port, &["CONFIG", "SET", "list-compress-depth", depth]);
        assert_eq!(
            set.as_deref(),
            Some("OK"),
            "CONFIG SET list-compress-depth {depth}"
        );
        let mut cfg = config(&db);
        cfg.redis.port = redis.port;
        assert_eq!(
            cfg.queue.compression,
            CompressionSetting::Auto,
            "auto is the default"
        );
        entries.push(stored_entry_with(cfg, Node::start_on_own_redis).await);
        // A fixed mode is kept whatever Redis does.
        let mut cfg = config(&db);
        cfg.redis.port = redis.port;
        cfg.queue.compression = EntryCompression::Zlib.into();
        entries.push(stored_entry_with(cfg, Node::start_on_own_redis).await);
    }
    redis.stop().await;
    db.drop_db().await;
    assert_eq!(&entries[0][..2], &[0x78, 0x5e], "depth 0: our zlib encoder");
    assert_eq!(&entries[1][..2], &[0x78, 0x9c], "zlib stays zlib");
    assert_eq!(entries[2].first(), Some(&b'{'), "depth 1: the JSON itself");
    assert_eq!(&entries[3][..2], &[0x78, 0x9c], "zlib stays zlib");
    for entry in &entries {
        let set = matomo_wire::decode(entry).expect("decodes");
        assert_eq!(
            set.requests[0].get("action_name").and_then(|v| v.as_str()),
            Some("Home")
        );
    }
}
