//! Shared set-up of the tracker sequence tests: a fresh `mt_test_<random>` database built from
//! `deploy/schema/matomo.sql` with two sites — 1 `http://example.com` (UTC, goal 1 "URL
//! contains /thanks", revenue 5, site search on) and 2 `https://shop.example.org`
//! (America/New_York, ecommerce) — a super-user token, IP anonymisation off, plus whatever
//! configuration rows a test adds; a `Tracker` on it over the worker's own connection pool
//! (Matomo's session `sql_mode`); GET-hit builders and row readers. The
//! database is dropped with the [`Db`].
//!
//! Needs MariaDB on 127.0.0.1:3306 (user/password `matomo`); fails clearly without it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use matomo_wire::{Params, RequestSet};
use matomo_worker::tracker::{ShardCache, Tracker};
use mysql_async::prelude::Queryable;
use mysql_async::Row;
use serde_json::Value;

pub const SALT: &str = "sequence-test-salt";
pub const TOKEN: &str = "0123456789abcdef0123456789abcdef";
/// 2026-11-10 10:00:00 UTC.
pub const T0: i64 = 1_794_304_800;

pub struct Db {
    pub name: String,
    pub pool: mysql_async::Pool,
    pub tracker: Tracker,
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = std::process::Command::new("mariadb")
            .args(["-h", "127.0.0.1", "-u", "matomo", "--password=matomo", "-e"])
            .arg(format!("DROP DATABASE IF EXISTS `{}`", self.name))
            .output();
    }
}

pub fn vendor_dir() -> Option<PathBuf> {
    let shared = std::env::var_os("MATOMO_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    let dir = shared.join("matomo-data/for-matomo-5.1");
    dir.is_dir().then_some(dir)
}

pub async fn setup(with_vendor: bool) -> Db {
    setup_with(with_vendor, "", |_| {}).await
}

/// [`setup`] with extra configuration rows (`extra_sql`, run after the standard ones, table
/// prefix `matomo_`) and changes to the tier configuration.
pub async fn setup_with(
    with_vendor: bool,
    extra_sql: &str,
    configure: impl FnOnce(&mut tier_config::Config),
) -> Db {
    let name = format!("mt_test_{:016x}", rand::random::<u64>());
    let admin = mysql_async::Pool::new("mysql://matomo:matomo@127.0.0.1:3306/");
    let mut conn = admin
        .get_conn()
        .await
        .expect("MariaDB on 127.0.0.1:3306 with user matomo/matomo");
    conn.query_drop(format!("CREATE DATABASE `{name}`"))
        .await
        .expect("create database");
    conn.query_drop(format!("USE `{name}`")).await.expect("use");
    load_state(&mut conn, extra_sql).await;
    drop(conn);
    admin.disconnect().await.ok();
    let mut config = tier_config::Config::default();
    config.database.dbname = name.clone();
    config.matomo.salt = SALT.into();
    if with_vendor {
        config.matomo.vendor_dir = vendor_dir();
    }
    configure(&mut config);
    // As the worker connects: Matomo's session sql_mode (not strict), statement timeout.
    let pool = matomo_worker::app::connect_mysql(&config)
        .await
        .expect("MariaDB on 127.0.0.1:3306 with user matomo/matomo");
    let tracker = Tracker::new(&config, pool.clone())
        .await
        .expect("tracker starts");
    Db {
        name,
        pool,
        tracker,
    }
}

/// Loads the standard state into the database `conn` uses: the schema, the two sites, goal,
/// super-user token and options of [`setup`], then `extra_sql` (table prefix `matomo_`).
pub async fn load_state(conn: &mut mysql_async::Conn, extra_sql: &str) {
    let schema = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/schema/matomo.sql"),
    )
    .expect("deploy/schema/matomo.sql")
    .replace("{{prefix}}", "matomo_");
    conn.query_drop(schema).await.expect("schema");
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha512::digest(format!("{TOKEN}{SALT}").as_bytes()))
    };
    conn.query_drop(format!(
        "INSERT INTO matomo_site (idsite, name, main_url, ts_created, ecommerce, sitesearch, sitesearch_keyword_parameters, \
         sitesearch_category_parameters, timezone, currency, exclude_unknown_urls, excluded_ips, excluded_parameters, \
         excluded_user_agents, excluded_referrers, `group`, type, keep_url_fragment, creator_login) VALUES \
         (1, 'Example', 'http://example.com', '2026-11-01 00:00:00', 0, 1, '', '', 'UTC', 'USD', 0, '', '', '', '', '', 'website', 0, 'admin'), \
         (2, 'Shop', 'https://shop.example.org', '2026-11-01 00:00:00', 1, 1, '', '', 'America/New_York', 'USD', 0, '', '', '', '', '', 'website', 0, 'admin'); \
         INSERT INTO matomo_goal (idsite, idgoal, name, description, match_attribute, pattern, pattern_type, case_sensitive, \
         allow_multiple, revenue, deleted, event_value_as_revenue) VALUES (1, 1, 'Thanks', '', 'url', '/thanks', 'contains', 0, 0, 5, 0, 0); \
         INSERT INTO matomo_user (login, password, email, superuser_access) VALUES ('admin', '', 'admin@example.com', 1); \
         INSERT INTO matomo_user_token_auth (login, description, password, hash_algo, date_created) \
         VALUES ('admin', 'test', '{hash}', 'sha512', NOW()); \
         INSERT INTO matomo_option (option_name, option_value, autoload) VALUES ('PrivacyManager.ipAnonymizerEnabled', '0', 0)"
    ))
    .await
    .expect("configuration rows");
    if !extra_sql.is_empty() {
        conn.query_drop(extra_sql)
            .await
            .expect("extra configuration rows");
    }
}

/// One GET hit: query string, received at `now`, from 127.0.0.1 with a desktop Firefox.
pub fn hit(query: &str, now: i64) -> RequestSet {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).expect("query");
    let mut params = Params::new();
    for (k, v) in pairs {
        params.insert(k, Value::String(v));
    }
    let mut server = Params::new();
    server.insert("REMOTE_ADDR".into(), Value::String("198.51.100.7".into()));
    server.insert("REQUEST_METHOD".into(), Value::String("GET".into()));
    server.insert(
        "HTTP_USER_AGENT".into(),
        Value::String(
            "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0".into(),
        ),
    );
    server.insert(
        "HTTP_ACCEPT_LANGUAGE".into(),
        Value::String("de-DE,de;q=0.9".into()),
    );
    RequestSet {
        requests: vec![params],
        server,
        time: now,
        ..Default::default()
    }
}

impl Db {
    /// Processes each set in its own batch, as the engine would with small batches.
    pub async fn track(&self, sets: &[RequestSet]) {
        let mut cache = self.tracker.new_shard_cache();
        for set in sets {
            self.batch(&mut cache, std::slice::from_ref(set)).await;
        }
    }

    /// Processes all sets in one batch.
    pub async fn track_in_one_batch(&self, sets: &[RequestSet]) {
        let mut cache = self.tracker.new_shard_cache();
        self.batch(&mut cache, sets).await;
    }

    /// Processes `sets` as one batch with the caller's shard cache, committed. The batch is
    /// read ahead first, as the engine does with a batch queued behind another.
    pub async fn batch(&self, cache: &mut ShardCache, sets: &[RequestSet]) {
        let ahead = self.tracker.read_ahead(sets);
        let mut tx = self
            .pool
            .start_transaction(Default::default())
            .await
            .expect("tx");
        self.tracker
            .process_batch(&mut tx, cache, sets, ahead)
            .await
            .expect("batch");
        tx.commit().await.expect("commit");
    }

    pub async fn rows(&self, sql: &str) -> Vec<Row> {
        let mut conn = self.pool.get_conn().await.expect("conn");
        conn.query(sql).await.expect(sql)
    }

    pub async fn one<T: mysql_async::prelude::FromValue + Send + 'static>(&self, sql: &str) -> T {
        let mut conn = self.pool.get_conn().await.expect("conn");
        conn.query_first::<T, _>(sql)
            .await
            .expect(sql)
            .expect("one row")
    }
}

pub fn get<T: mysql_async::prelude::FromValue>(r: &Row, col: &str) -> T {
    r.get(col).unwrap_or_else(|| panic!("column {col}"))
}
