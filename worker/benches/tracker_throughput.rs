//! Tracker throughput against the physical limit: a realistic mix of hits (page views with
//! titles and timings, events, downloads, outlinks, site searches, ecommerce orders with items,
//! returning visitors) is turned into rows by `Tracker::process_batch` in batches of 500
//! entries, then exactly the same rows are written again as raw multi-row INSERTs (500 rows per
//! statement) into empty copies of the tables. Prints rows/s for both and their ratio.
//!
//! Needs MariaDB on 127.0.0.1:3306 (user/password `matomo`). Run: `cargo bench -p matomo-worker
//! --bench tracker_throughput` (env `TRACKER_BENCH_HITS`, default 20000). Device detection is
//! included when `../shared/matomo-data/for-matomo-5.1` exists (or `MATOMO_SHARED_DIR`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use matomo_wire::{Params, RequestSet};
use matomo_worker::tracker::Tracker;
use mysql_async::prelude::Queryable;
use serde_json::Value;

const TABLES: [&str; 5] = [
    "log_visit",
    "log_link_visit_action",
    "log_conversion",
    "log_conversion_item",
    "log_action",
];

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
                .args(["-h", "127.0.0.1", "-u", "matomo", "--password=matomo", "-e"])
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
                format!("{:016x}", 0xa000_0000_0000u64 + v as u64),
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
) -> Result<(usize, f64), mysql_async::Error> {
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
    let mut dst = pool.get_conn().await?;
    let started = Instant::now();
    let mut tx = dst.start_transaction(Default::default()).await?;
    for s in &statements {
        tx.query_drop(s).await?;
    }
    tx.commit().await?;
    Ok((rows_total, started.elapsed().as_secs_f64()))
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("TRACKER_BENCH_HITS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let suffix = format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
    let (db, raw) = (
        format!("mt_test_bench_{suffix}"),
        format!("mt_test_raw_{suffix}"),
    );
    let _guard = DropDatabases(vec![db.clone(), raw.clone()]);
    let admin_pool = mysql_async::Pool::new("mysql://matomo:matomo@127.0.0.1:3306/");
    let mut admin = admin_pool
        .get_conn()
        .await
        .expect("MariaDB on 127.0.0.1:3306 (matomo/matomo)");
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
    let pool =
        mysql_async::Pool::new(format!("mysql://matomo:matomo@127.0.0.1:3306/{db}").as_str());
    let tracker = Tracker::new(&config, pool.clone()).await.expect("tracker");
    let sets = hits(n, chrono::Utc::now().timestamp());
    let mut cache = tracker.new_shard_cache();
    let started = Instant::now();
    for chunk in sets.chunks(500) {
        let mut tx = pool
            .start_transaction(Default::default())
            .await
            .expect("tx");
        tracker
            .process_batch(&mut tx, &mut cache, chunk)
            .await
            .expect("batch");
        tx.commit().await.expect("commit");
    }
    let tracker_secs = started.elapsed().as_secs_f64();
    let rows = count_rows(&mut admin, &db).await.expect("count");
    let (raw_rows, raw_secs) = raw_copy(&admin_pool, &db, &raw).await.expect("raw copy");
    let t_rate = rows as f64 / tracker_secs;
    let r_rate = raw_rows as f64 / raw_secs;
    println!("tracker: {n} hits -> {rows} rows in {tracker_secs:.2}s = {t_rate:.0} rows/s ({:.0} hits/s)", n as f64 / tracker_secs);
    println!("raw multi-row INSERT of the same rows: {raw_rows} rows in {raw_secs:.2}s = {r_rate:.0} rows/s");
    println!("ratio tracker/raw: {:.2}", t_rate / r_rate);
    pool.disconnect().await.ok();
    drop(admin);
    admin_pool.disconnect().await.ok();
}
