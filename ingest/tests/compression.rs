//! `queue.compression` end to end: for each mode, a hit sent to a running node is stored in Redis
//! in that form (zlib from the ingest's encoder, zlib at PHP's level, zlib from the greedy
//! encoder, or the JSON itself) and decodes — the way
//! QueuedTracking's reader does, `gzuncompress` falling back to the raw bytes — to the same
//! request set.

mod support;

use std::io::Read as _;

use support::{config, Node, TestDb};
use tier_config::EntryCompression;

async fn stored_entry(db: &TestDb, compression: EntryCompression) -> Vec<u8> {
    let mut cfg = config(db);
    cfg.queue.num_queue_workers = 1;
    cfg.queue.compression = compression;
    let node = Node::start(cfg).await;
    let url = format!(
        "{}/matomo.php?idsite=1&rec=1&_id=0123456789abcdef&url=http%3A%2F%2Fexample.com%2F&action_name=Home",
        node.base
    );
    let answer = reqwest::get(url).await.expect("request");
    assert_eq!(answer.status(), 200);
    let mut raw = node.raw_queue(0).await;
    node.stop().await;
    assert_eq!(raw.len(), 1, "one entry queued");
    raw.remove(0)
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
