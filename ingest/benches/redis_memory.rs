//! What a queued hit costs in Redis memory, per `queue.compression` mode and per Redis
//! `list-compress-depth` (0: every list node stored as it is; 1: every node but the head and the
//! tail compressed by Redis with LZF, which finds what consecutive entries share).
//!
//! `cargo bench -p matomo-ingest --bench redis_memory` (Redis at `REDIS_HOST:REDIS_PORT`,
//! default 127.0.0.1:6379). For each depth and mode it pushes the realistic entries of `corpus`
//! (the varied JavaScript-tracker hits four times over, then the load bench's hits) into a
//! scratch list of its own, reads `MEMORY USAGE key SAMPLES 0` (every node counted) and deletes
//! the list; Redis' own CPU time for the pushes and reads comes from its `INFO cpu`. The
//! server's `list-compress-depth` is restored afterwards (it applies to lists created while it
//! is set, so the scratch lists get the depth under test). Depth 64 leaves 64 nodes at each
//! end as they are (`deploy/local`'s setting: a queue short enough for workers to take in a
//! batch or two is never compressed): its figures are the uncompressed ones under `cargo
//! test`, while the 2,000-entry lists of `--bench` are about half compressed. Two more
//! scenarios show what that depth is for, at depths 1 and 64 with raw JSON entries (what
//! `auto` picks): a queue workers keep up with (500 entries pushed, then taken from the head as
//! a worker takes a batch, over and over: Redis' CPU per hit) and a backlog (20,000 entries:
//! memory per hit). Under `cargo test` (no `--bench` argument) it runs the same steps on 40
//! entries per corpus, as a check that they work.

mod corpus;

use fred::prelude::{ClientLike as _, KeysInterface as _, ListInterface as _};
use fred::types::{CustomCommand, Value};
use matomo_ingest::queue::codec::compress;
use tier_config::EntryCompression;

const MODES: [(&str, EntryCompression); 4] = [
    ("default", EntryCompression::Default),
    ("zlib", EntryCompression::Zlib),
    ("fast", EntryCompression::Fast),
    ("none", EntryCompression::None),
];

/// Entries per RPUSH, as the node's writers batch them under load.
const PUSH_CHUNK: usize = 8;

async fn command(client: &fred::prelude::Client, name: &'static str, args: Vec<Value>) -> Value {
    client
        .custom(CustomCommand::new_static(name, None, false), args)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

async fn compress_depth(client: &fred::prelude::Client) -> String {
    let reply = command(
        client,
        "CONFIG",
        vec!["GET".into(), "list-compress-depth".into()],
    )
    .await;
    match reply {
        Value::Array(items) if items.len() == 2 => items[1].as_string().unwrap_or_default(),
        other => panic!("CONFIG GET list-compress-depth: unexpected reply {other:?}"),
    }
}

/// Redis' CPU time (user + system) so far, in microseconds, from `INFO cpu`.
async fn redis_cpu_us(client: &fred::prelude::Client) -> f64 {
    let info = command(client, "INFO", vec!["cpu".into()]).await;
    let text = info.as_string().unwrap_or_default();
    ["used_cpu_sys:", "used_cpu_user:"]
        .iter()
        .filter_map(|field| {
            text.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .sum::<f64>()
        * 1e6
}

/// Appends `entries` to `key`, [`PUSH_CHUNK`] per RPUSH.
async fn push<'a>(
    client: &fred::prelude::Client,
    key: &str,
    entries: impl IntoIterator<Item = &'a Vec<u8>>,
) {
    let entries: Vec<&Vec<u8>> = entries.into_iter().collect();
    for chunk in entries.chunks(PUSH_CHUNK) {
        let values: Vec<Value> = chunk
            .iter()
            .map(|e| Value::Bytes((*e).clone().into()))
            .collect();
        let _: i64 = client.rpush(key, values).await.expect("rpush");
    }
}

/// Pushes `entries` into a fresh list and returns (bytes per entry, Redis CPU µs per entry).
async fn measure(client: &fred::prelude::Client, key: &str, entries: &[Vec<u8>]) -> (f64, f64) {
    let _: i64 = client.del(key).await.expect("del");
    let cpu_before = redis_cpu_us(client).await;
    push(client, key, entries).await;
    // Read back the way a worker does (a batch from the head), so decompression is counted.
    for start in (0..entries.len()).step_by(500) {
        let _: Vec<Value> = client
            .lrange(key, start as i64, start as i64 + 499)
            .await
            .expect("lrange");
    }
    let cpu = redis_cpu_us(client).await - cpu_before;
    let usage = command(
        client,
        "MEMORY",
        vec!["USAGE".into(), key.into(), "SAMPLES".into(), 0.into()],
    )
    .await;
    let bytes = usage
        .as_i64()
        .unwrap_or_else(|| panic!("MEMORY USAGE: {usage:?}"));
    let _: i64 = client.del(key).await.expect("del");
    let n = entries.len() as f64;
    (bytes as f64 / n, cpu / n)
}

/// Redis CPU µs per entry for a queue workers keep up with: `rounds` times, `batch` entries
/// pushed, then read from the head and trimmed off, as a worker takes a batch.
async fn kept_up(
    client: &fred::prelude::Client,
    key: &str,
    entries: &[Vec<u8>],
    batch: usize,
    rounds: usize,
) -> f64 {
    let _: i64 = client.del(key).await.expect("del");
    let cpu_before = redis_cpu_us(client).await;
    for round in 0..rounds {
        let start = round * batch % entries.len();
        push(client, key, entries.iter().cycle().skip(start).take(batch)).await;
        let last = batch as i64 - 1;
        let _: Vec<Value> = client.lrange(key, 0, last).await.expect("lrange");
        let _: () = client.ltrim(key, last + 1, -1).await.expect("ltrim");
    }
    let cpu = redis_cpu_us(client).await - cpu_before;
    let _: i64 = client.del(key).await.expect("del");
    cpu / (batch * rounds) as f64
}

/// Sets the server's `list-compress-depth` (for lists created from now on).
async fn set_depth(client: &fred::prelude::Client, depth: &str) {
    command(
        client,
        "CONFIG",
        vec!["SET".into(), "list-compress-depth".into(), depth.into()],
    )
    .await;
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let host = std::env::var("REDIS_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port: u16 = std::env::var("REDIS_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(6379);
    let per_corpus = if std::env::args().any(|a| a == "--bench") {
        2000
    } else {
        40
    };
    let varied = corpus::varied_hits(500);
    let load: Vec<Vec<u8>> = (1..=per_corpus as u64)
        .map(|i| corpus::load_hit(i, "127.0.0.1:18081"))
        .collect();
    let corpora: [(String, Vec<&Vec<u8>>); 2] = [
        (
            format!("varied JS-tracker hits (500, cycled to {per_corpus})"),
            varied.iter().cycle().take(per_corpus).collect(),
        ),
        (
            format!("load bench hits (hit.lua, {per_corpus})"),
            load.iter().collect(),
        ),
    ];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let config = fred::prelude::Config {
            server: fred::prelude::ServerConfig::new_centralized(&host, port),
            ..fred::prelude::Config::default()
        };
        let client = fred::prelude::Builder::from_config(config)
            .build()
            .expect("client");
        client
            .init()
            .await
            .unwrap_or_else(|e| panic!("Redis must be reachable at {host}:{port}: {e}"));
        let saved = compress_depth(&client).await;
        let prefix = format!("bench:redis-memory:{}", std::process::id());
        for depth in ["0", "1", "64"] {
            set_depth(&client, depth).await;
            for (corpus, entries) in &corpora {
                for (mode, compression) in MODES {
                    let encoded: Vec<Vec<u8>> =
                        entries.iter().map(|e| compress(e, compression)).collect();
                    let key = format!("{prefix}:{mode}:{depth}");
                    let (bytes, cpu) = measure(&client, &key, &encoded).await;
                    println!(
                        "list-compress-depth {depth}, {corpus}, {mode}: {bytes:.0} B per hit, \
                         Redis CPU {cpu:.2} us per hit (push + read)"
                    );
                }
            }
        }
        let raw: Vec<Vec<u8>> = varied
            .iter()
            .map(|e| compress(e, EntryCompression::None))
            .collect();
        let (batch, rounds, backlog) = if per_corpus > 40 {
            (500, 40, 20_000)
        } else {
            (20, 2, 40)
        };
        let backlog: Vec<Vec<u8>> = raw.iter().cycle().take(backlog).cloned().collect();
        for depth in ["1", "64"] {
            set_depth(&client, depth).await;
            let key = format!("{prefix}:kept-up:{depth}");
            let cpu = kept_up(&client, &key, &raw, batch, rounds).await;
            println!(
                "list-compress-depth {depth}, queue kept up with ({batch} varied JS-tracker hits \
                 pushed then taken, {rounds} times), none: Redis CPU {cpu:.2} us per hit"
            );
            let key = format!("{prefix}:backlog:{depth}");
            let (bytes, _) = measure(&client, &key, &backlog).await;
            println!(
                "list-compress-depth {depth}, backlog ({} varied JS-tracker hits), none: \
                 {bytes:.0} B per hit",
                backlog.len()
            );
        }
        set_depth(&client, &saved).await;
        let _ = client.quit().await;
    });
}
