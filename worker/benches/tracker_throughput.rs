//! Tracker throughput against the physical limit: a realistic mix of hits (page views with
//! titles and timings, events, downloads, outlinks, site searches, ecommerce orders with items,
//! returning visitors) is turned into rows by `Tracker::process_batch` in batches of 500
//! entries, then exactly the same rows are written again as raw multi-row INSERTs (500 rows per
//! statement) into empty copies of the tables. Prints rows/s for both and their ratio.
//!
//! Each case runs with 1, then 2 shards (`TRACKER_BENCH_SHARDS`, default "1 2"): the hits are
//! split by visitor id into that many queues processed concurrently, as a worker pool does, and
//! the raw INSERTs are spread over as many concurrent connections. Each shard count runs twice
//! (`TRACKER_BENCH_AHEAD`, default "0 1"): each batch read inline, then the next batch read
//! ahead on a blocking thread while one is written, as the engine does.
//!
//! Needs MariaDB on 127.0.0.1:3306 (user/password `matomo`; another port with env
//! `TRACKER_BENCH_DB_PORT`, e.g. a private server started with `performance_schema=ON`). Run:
//! `cargo bench -p matomo-worker --bench tracker_throughput` (env `TRACKER_BENCH_HITS`, default
//! 20000). Device detection is
//! included when `../shared/matomo-data/for-matomo-5.1` exists (or `MATOMO_SHARED_DIR`); its
//! patterns are compiled before timing, as a running worker has them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use matomo_wire::{Params, RequestSet};
use matomo_worker::tracker::Tracker;
use mysql_async::prelude::Queryable;
use serde_json::Value;

/// The allocator `matomo-worker` runs with, so the bench measures what production runs.
#[global_allocator]
static GLOBAL: tier_alloc::MiMalloc = tier_alloc::MiMalloc;

const TABLES: [&str; 5] = [
    "log_visit",
    "log_link_visit_action",
    "log_conversion",
    "log_conversion_item",
    "log_action",
];

/// The MariaDB port the bench talks to (`TRACKER_BENCH_DB_PORT`, default 3306).
fn db_port() -> u16 {
    std::env::var("TRACKER_BENCH_DB_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3306)
}

fn shared_dir() -> PathBuf {
    std::env::var_os("MATOMO_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

/// Drops the bench databases when the bench ends, panics included.
struct DropDatabases(Vec<String>);

impl Drop for DropDatabases {
    fn drop(&mut self) {
        for db in &self.0 {
            let _ = std::process::Command::new("mariadb")
                .args(["-h", "127.0.0.1", "-u", "matomo", "--password=matomo"])
                .arg(format!("--port={}", db_port()))
                .arg("-e")
                .arg(format!("DROP DATABASE IF EXISTS `{db}`"))
                .output();
        }
    }
}

async fn create_db(admin: &mut mysql_async::Conn, name: &str) -> Result<(), mysql_async::Error> {
    admin
        .query_drop(format!("CREATE DATABASE `{name}`"))
        .await?;
    let schema = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/schema/matomo.sql"),
    )
    .expect("deploy/schema/matomo.sql")
    .replace("{{prefix}}", "matomo_");
    admin.query_drop(format!("USE `{name}`")).await?;
    admin.query_drop(schema).await?;
    admin
        .query_drop(
            "INSERT INTO matomo_site (idsite, name, main_url, ts_created, ecommerce, sitesearch, sitesearch_keyword_parameters, \
             sitesearch_category_parameters, timezone, currency, \
             exclude_unknown_urls, excluded_ips, excluded_parameters, excluded_user_agents, excluded_referrers, `group`, \
             type, keep_url_fragment, creator_login) VALUES \
             (1, 'Bench', 'https://shop.example.net', '2026-01-01 00:00:00', 1, 1, '', '', 'Europe/Berlin', 'EUR', 0, '', '', '', '', '', 'website', 0, 'admin'); \
             INSERT INTO matomo_goal (idsite, idgoal, name, description, match_attribute, pattern, pattern_type, case_sensitive, \
             allow_multiple, revenue, deleted, event_value_as_revenue) VALUES (1, 1, 'Thanks', '', 'url', '/thanks', 'contains', 0, 0, 3, 0, 0)",
        )
        .await
}

/// A deterministic mix of hits.
fn hits(n: usize, now: i64) -> Vec<RequestSet> {
    const UAS: [&str; 4] = [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
        "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
    ];
    let mut out = Vec::with_capacity(n);
    let visitors = (n / 12).max(1);
    let start = now - 3 * 86400;
    for i in 0..n {
        let v = i % visitors;
        let step = i / visitors;
        let t = start + (v as i64 * 7) % 80_000 + step as i64 * 40;
        let page = (i * 7919) % 60;
        let mut q: Vec<(String, String)> = vec![
            ("idsite".into(), "1".into()),
            ("rec".into(), "1".into()),
            (
                "_id".into(),
                // Spread over the hex space like real visitor ids (the queue is picked from
                // the first three hex digits).
                format!(
                    "{:016x}",
                    (v as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ),
            ),
            (
                "url".into(),
                format!("https://shop.example.net/p/{page}?ref=nav&sessionid=x{v}"),
            ),
            ("res".into(), "1920x1080".into()),
            ("cdt".into(), t.to_string()),
            ("token_auth".into(), "benchtoken".into()),
        ];
        match step % 12 {
            0 => q.push((
                "urlref".into(),
                format!("https://www.google.com/search?q=item+{page}"),
            )),
            3 => {
                q.push(("e_c".into(), "video".into()));
                q.push(("e_a".into(), "play".into()));
                q.push(("e_n".into(), format!("clip {page}")));
                q.push(("e_v".into(), "12.5".into()));
            }
            5 => q.push((
                "download".into(),
                format!("https://shop.example.net/files/{page}.pdf"),
            )),
            7 => q.push(("search".into(), format!("term {page}"))),
            9 => q.push(("link".into(), format!("https://partner.example.org/{page}"))),
            11 if v.is_multiple_of(4) => {
                q.push(("idgoal".into(), "0".into()));
                q.push(("ec_id".into(), format!("O-{i}")));
                q.push(("revenue".into(), "99.90".into()));
                q.push((
                    "ec_items".into(),
                    format!("[[\"SKU-{page}\",\"Item {page}\",\"Cat\",\"49.95\",2]]"),
                ));
            }
            _ => {
                q.push(("action_name".into(), format!("Product {page} & more")));
                q.push(("pv_id".into(), format!("{:06x}", i % 0xffffff)));
                q.push(("pf_net".into(), "20".into()));
                q.push(("pf_srv".into(), "80".into()));
            }
        }
        let mut params = Params::new();
        for (k, val) in q {
            params.insert(k, Value::String(val));
        }
        let mut server = Params::new();
        server.insert(
            "REMOTE_ADDR".into(),
            Value::String(format!("10.1.{}.{}", v / 250, v % 250)),
        );
        server.insert(
            "HTTP_USER_AGENT".into(),
            Value::String(UAS[v % UAS.len()].into()),
        );
        server.insert(
            "HTTP_ACCEPT_LANGUAGE".into(),
            Value::String("de-DE,de;q=0.9".into()),
        );
        out.push(RequestSet {
            requests: vec![params],
            server,
            time: now,
            ..Default::default()
        });
    }
    out
}

async fn raw_copy(
    pool: &mysql_async::Pool,
    from: &str,
    to: &str,
    connections: usize,
    server: Option<&str>,
) -> Result<(usize, f64, f64), mysql_async::Error> {
    let mut src = pool.get_conn().await?;
    let mut statements: Vec<String> = Vec::new();
    let mut rows_total = 0usize;
    for table in TABLES {
        let rows: Vec<mysql_async::Row> = src
            .query(format!("SELECT * FROM `{from}`.`matomo_{table}`"))
            .await?;
        rows_total += rows.len();
        for chunk in rows.chunks(500) {
            let cols: Vec<String> = chunk[0]
                .columns_ref()
                .iter()
                .map(|c| format!("`{}`", c.name_str()))
                .collect();
            let mut sql = format!(
                "INSERT INTO `{to}`.`matomo_{table}` ({}) VALUES ",
                cols.join(",")
            );
            for (i, r) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(',');
                }
                let vals: Vec<String> = (0..r.len())
                    .map(|k| r.as_ref(k).map_or("NULL".into(), |v| v.as_sql(false)))
                    .collect();
                sql.push('(');
                sql.push_str(&vals.join(","));
                sql.push(')');
            }
            statements.push(sql);
        }
    }
    drop(src);
    // Statements dealt round-robin to `connections` concurrent transactions.
    let mut lanes: Vec<Vec<String>> = vec![Vec::new(); connections];
    for (i, s) in statements.into_iter().enumerate() {
        lanes[i % connections].push(s);
    }
    let mut conns = Vec::new();
    for _ in 0..connections {
        conns.push(pool.get_conn().await?);
    }
    let cpu0 = cpu_now(server);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (mut dst, lane) in conns.into_iter().zip(lanes) {
        tasks.push(tokio::spawn(async move {
            let mut tx = dst.start_transaction(Default::default()).await?;
            for s in &lane {
                tx.query_drop(s).await?;
            }
            tx.commit().await
        }));
    }
    for t in tasks {
        t.await.expect("raw task")?;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu1 = cpu_now(server);
    Ok((rows_total, secs, (cpu1.0 - cpu0.0) + (cpu1.1 - cpu0.1)))
}

/// CPU seconds (user + system) used so far by process `pid` (Linux `/proc`), 0 elsewhere.
fn cpu_secs(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// The MariaDB server's pid, when it runs on this machine: the server started with
/// `--port=<db_port>`, else the first one found.
fn server_pid() -> Option<String> {
    let servers: Vec<(String, String)> = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            let cmdline = std::fs::read_to_string(e.path().join("cmdline")).unwrap_or_default();
            (name.chars().all(|c| c.is_ascii_digit())
                && matches!(comm.trim(), "mariadbd" | "mysqld"))
            .then_some((name, cmdline))
        })
        .collect();
    let flag = format!("--port={}", db_port());
    let on_port = servers
        .iter()
        .find(|(_, cmdline)| cmdline.split('\0').any(|a| a == flag));
    on_port.or(servers.first()).map(|(pid, _)| pid.clone())
}

/// CPU seconds of this process and of the MariaDB server.
fn cpu_now(server: Option<&str>) -> (f64, f64) {
    (cpu_secs("self"), server.map_or(0.0, cpu_secs))
}

async fn count_rows(conn: &mut mysql_async::Conn, db: &str) -> Result<usize, mysql_async::Error> {
    let mut total = 0usize;
    for table in TABLES {
        let n: Option<u64> = conn
            .query_first(format!("SELECT COUNT(*) FROM `{db}`.`matomo_{table}`"))
            .await?;
        total += n.unwrap_or(0) as usize;
    }
    Ok(total)
}

/// Rows/s of the tracker with `shards` queues processed concurrently (one task, connection
/// and shard cache each, visitors split as QueuedTracking splits them), then of raw multi-row
/// INSERTs of the same rows over as many concurrent connections.
async fn run_case(
    admin_pool: &mysql_async::Pool,
    sets: &[RequestSet],
    shards: usize,
    read_ahead: bool,
) -> (f64, f64) {
    let suffix = format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
    let (db, raw) = (
        format!("mt_test_bench_{suffix}"),
        format!("mt_test_raw_{suffix}"),
    );
    let _guard = DropDatabases(vec![db.clone(), raw.clone()]);
    let mut admin = admin_pool
        .get_conn()
        .await
        .expect("MariaDB on 127.0.0.1 (matomo/matomo)");
    create_db(&mut admin, &db).await.expect("bench database");
    create_db(&mut admin, &raw).await.expect("raw database");
    let salt = "benchsalt";
    let token_hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha512::digest(format!("benchtoken{salt}").as_bytes()))
    };
    admin
        .query_drop(format!(
            "INSERT INTO `{db}`.matomo_user (login, password, email, superuser_access, date_registered) VALUES ('admin', '', 'a@b', 1, NOW()); \
             INSERT INTO `{db}`.matomo_user_token_auth (login, description, password, hash_algo, system_token, date_created) \
             VALUES ('admin', 'bench', '{token_hash}', 'sha512', 0, NOW())"
        ))
        .await
        .expect("token");

    let mut config = tier_config::Config::default();
    config.database.dbname = db.clone();
    config.matomo.salt = salt.into();
    let vendor = shared_dir().join("matomo-data/for-matomo-5.1");
    if vendor.is_dir() {
        config.matomo.vendor_dir = Some(vendor);
    }
    config.database.port = db_port();
    let pool = mysql_async::Pool::new(
        format!("mysql://matomo:matomo@127.0.0.1:{}/{db}", db_port()).as_str(),
    );
    let tracker = std::sync::Arc::new(Tracker::new(&config, pool.clone()).await.expect("tracker"));
    // A long-running worker compiles its device-detection patterns at start (`run` does it in
    // the background); measure that state, not the one-time compilation.
    tracker.warm_up().expect("device detection patterns");
    let mut queues: Vec<Vec<RequestSet>> = vec![Vec::new(); shards];
    for set in sets {
        let vid = set.requests[0]
            .get("_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let q = usize::from_str_radix(&vid[..3], 16).unwrap_or(0) % shards;
        queues[q].push(set.clone());
    }
    let server = server_pid();
    let cpu0 = cpu_now(server.as_deref());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for queue in queues {
        let (tracker, pool) = (tracker.clone(), pool.clone());
        let chunks: Vec<std::sync::Arc<[RequestSet]>> =
            queue.chunks(500).map(std::sync::Arc::from).collect();
        tasks.push(tokio::spawn(async move {
            let mut cache = tracker.new_shard_cache();
            let mut ahead = None;
            for (k, chunk) in chunks.iter().enumerate() {
                // As the engine does: the next batch is read ahead on a blocking thread while
                // this one is written.
                let next = chunks.get(k + 1).filter(|_| read_ahead).map(|next| {
                    let (tracker, next) = (tracker.clone(), next.clone());
                    tokio::task::spawn_blocking(move || tracker.read_ahead(&next))
                });
                let mut tx = pool
                    .start_transaction(Default::default())
                    .await
                    .expect("tx");
                tracker
                    .process_batch(&mut tx, &mut cache, chunk, ahead.take())
                    .await
                    .expect("batch");
                tx.commit().await.expect("commit");
                if let Some(next) = next {
                    ahead = next.await.expect("read-ahead task");
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("shard task");
    }
    let tracker_secs = started.elapsed().as_secs_f64();
    let cpu1 = cpu_now(server.as_deref());
    let rows = count_rows(&mut admin, &db).await.expect("count");
    // Shards creating the same new action name in overlapping transactions each keep a row
    // (the re-SELECT runs in the batch's REPEATABLE READ snapshot); one shard never does.
    let duplicate_actions: Option<i64> = admin
        .query_first(format!(
            "SELECT COUNT(*) - COUNT(DISTINCT type, hash, name) FROM `{db}`.matomo_log_action"
        ))
        .await
        .expect("log_action duplicates");
    let (raw_rows, raw_secs, raw_cpu) = raw_copy(admin_pool, &db, &raw, shards, server.as_deref())
        .await
        .expect("raw copy");
    // CPU per row: what the machine spends, least disturbed by other load on it.
    let t_cpu = (cpu1.0 - cpu0.0) + (cpu1.1 - cpu0.1);
    let mode = if read_ahead { "read-ahead" } else { "inline" };
    println!(
        "{shards} shard(s), {mode}: CPU per row: tracker {:.1} µs (worker {:.1} + MariaDB {:.1}), raw INSERTs {:.1} µs (MariaDB); ratio {:.2}",
        1e6 * t_cpu / rows as f64,
        1e6 * (cpu1.0 - cpu0.0) / rows as f64,
        1e6 * (cpu1.1 - cpu0.1) / rows as f64,
        1e6 * raw_cpu / raw_rows as f64,
        (raw_cpu / raw_rows as f64) / (t_cpu / rows as f64),
    );
    let (t_rate, r_rate) = (rows as f64 / tracker_secs, raw_rows as f64 / raw_secs);
    let n = sets.len();
    println!(
        "{shards} shard(s), {mode}: log_action rows naming an action another row names too: {}",
        duplicate_actions.unwrap_or(0)
    );
    println!(
        "{shards} shard(s), {mode}: tracker {n} hits -> {rows} rows in {tracker_secs:.2}s = {t_rate:.0} rows/s ({:.0} hits/s); \
         raw INSERTs over {shards} connection(s): {raw_rows} rows in {raw_secs:.2}s = {r_rate:.0} rows/s; ratio {:.2}",
        n as f64 / tracker_secs,
        t_rate / r_rate
    );
    pool.disconnect().await.ok();
    (t_rate, r_rate)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    matomo_worker::allocator::tune();
    let n: usize = std::env::var("TRACKER_BENCH_HITS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let shard_counts: Vec<usize> = std::env::var("TRACKER_BENCH_SHARDS")
        .unwrap_or_else(|_| "1 2".into())
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .filter(|k| *k > 0)
        .collect();
    let admin_pool =
        mysql_async::Pool::new(format!("mysql://matomo:matomo@127.0.0.1:{}/", db_port()).as_str());
    // "0 1": each case without, then with the next batch read ahead (the engine's way).
    let modes: Vec<bool> = std::env::var("TRACKER_BENCH_AHEAD")
        .unwrap_or_else(|_| "0 1".into())
        .split_whitespace()
        .map(|s| s != "0")
        .collect();
    let sets = hits(n, chrono::Utc::now().timestamp());
    for shards in shard_counts {
        for &read_ahead in &modes {
            run_case(&admin_pool, &sets, shards, read_ahead).await;
        }
    }
    admin_pool.disconnect().await.ok();
}
