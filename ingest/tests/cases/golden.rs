//! The golden corpus (`../shared/golden-php`): the 4,094 hits PHP Matomo 5.1.2 + QueuedTracking
//! accepted, replayed as GETs and as bulks of 50 against a database loaded with the golden
//! pre-run state and the golden `config.ini.php` (salt, token). Every hit must be accepted —
//! including the `cdt`/`cip` ones that need the hashed token — and queued exactly as sent.
//! Skips with a message when the shared folder is absent.

use std::path::PathBuf;

use futures::StreamExt as _;
use mysql_async::prelude::Queryable as _;
use serde_json::{json, Value};

use super::support::{mysql_server_url, Node};

struct Hit {
    query: String,
    headers: Vec<(String, String)>,
}

fn corpus(dir: &std::path::Path) -> Vec<Hit> {
    let text = std::fs::read_to_string(dir.join("corpus.jsonl")).expect("corpus");
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("json line");
            let headers = v["headers"]
                .as_object()
                .map(|h| {
                    h.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            Hit {
                query: v["query"].as_str().expect("query").to_owned(),
                headers,
            }
        })
        .collect()
}

async fn golden_db(dir: &std::path::Path) -> (String, mysql_async::Pool) {
    let url = mysql_server_url();
    let server = mysql_async::Pool::new(mysql_async::Opts::from_url(&url).expect("url"));
    let mut conn = server
        .get_conn()
        .await
        .expect("MariaDB must be reachable for this test");
    let name = format!("mt_test_{:016x}", rand::random::<u64>());
    conn.query_drop(format!("CREATE DATABASE `{name}`"))
        .await
        .expect("create");
    conn.query_drop(format!("USE `{name}`")).await.expect("use");
    let schema = tier_config::schema::matomo_schema_sql("matomo_");
    let data = std::fs::read_to_string(dir.join("matomo-state/config-data.sql")).expect("data");
    for sql in [schema, data] {
        for statement in tier_config::schema::split_statements(&sql) {
            conn.query_drop(statement)
                .await
                .expect("golden state loads");
        }
    }
    drop(conn);
    (name, server)
}

#[tokio::test]
async fn golden_corpus_is_accepted_and_queued_as_sent() {
    let Some(shared) = tier_config::shared_dir() else {
        println!("skipped: the shared folder (MATOMO_SHARED_DIR or ../shared) is absent");
        return;
    };
    let dir: PathBuf = shared.join("golden-php");
    let hits = corpus(&dir);
    assert_eq!(hits.len(), 4094);
    let (dbname, server) = golden_db(&dir).await;
    let args = tier_config::CommonArgs {
        matomo_config: Some(dir.join("matomo-state/config.ini.php")),
        ..Default::default()
    };
    let mut config = tier_config::load_with_env(&args, Vec::new()).expect("golden config loads");
    config.database = tier_config::DatabaseConfig {
        dbname: dbname.clone(),
        ..Default::default()
    };
    config.queue.key_prefix = format!("ingest_golden_{:016x}:", rand::random::<u64>());
    assert_eq!(config.queue.num_queue_workers, 1);
    let node = Node::start(config).await;
    let client = reqwest::Client::new();

    // GET mode, 8 at a time (order within the queue is not asserted for concurrent sends).
    let statuses: Vec<u16> = futures::stream::iter(hits.iter())
        .map(|hit| {
            let mut req = client.get(format!("{}/matomo.php?{}", node.base, hit.query));
            for (k, v) in &hit.headers {
                req = req.header(k, v);
            }
            async move { req.send().await.expect("send").status().as_u16() }
        })
        .buffered(8)
        .collect()
        .await;
    let bad: Vec<(usize, u16)> = statuses
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, s)| !(200..300).contains(s))
        .collect();
    assert!(bad.is_empty(), "hits PHP accepted were refused: {bad:?}");
    let entries = node.queue(0).await;
    assert_eq!(entries.len(), hits.len());
    let mut sent: Vec<String> = hits
        .iter()
        .map(|h| query_json(&matomo_ingest::parse::parse_str(h.query.as_bytes())))
        .collect();
    let mut queued: Vec<String> = entries.iter().map(|e| query_json(&e.requests[0])).collect();
    sent.sort();
    queued.sort();
    assert_eq!(
        sent, queued,
        "every hit is queued with its parameters as sent"
    );
    node.clear().await;

    // Bulk mode: 50 per POST, the token in the body, as send.py --bulk 50 sends them.
    let token = "1f9ab7cd4d55c90a8268577a4c268577";
    for chunk in hits.chunks(50) {
        let requests: Vec<String> = chunk.iter().map(|h| format!("?{}", h.query)).collect();
        let body = json!({"requests": requests, "token_auth": token}).to_string();
        let r = client
            .post(format!("{}/matomo.php", node.base))
            .body(body)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
        let answer: Value = r.json().await.expect("json");
        assert_eq!(
            answer,
            json!({"status":"success","tracked":chunk.len(),"invalid":0,"invalid_indices":[]})
        );
    }
    let entries = node.queue(0).await;
    assert_eq!(entries.len(), hits.len().div_ceil(50));
    let total: usize = entries.iter().map(|e| e.requests.len()).sum();
    assert_eq!(total, hits.len());
    assert!(entries
        .iter()
        .all(|e| e.token_auth.as_deref() == Some(token)));

    node.stop().await;
    let mut conn = server.get_conn().await.expect("conn");
    conn.query_drop(format!("DROP DATABASE `{dbname}`"))
        .await
        .expect("drop");
}

fn query_json(p: &matomo_wire::Params) -> String {
    serde_json::to_string(p).expect("json")
}
