//! Hand-written hit sequences with the exact rows Matomo's PHP tracker writes for them, derived
//! from its code (core/Tracker/Visit.php, VisitorRecognizer.php, plugins/*/Columns). Each test
//! builds its own `mt_test_<random>` database from `deploy/schema/matomo.sql` with two sites:
//! 1 `http://example.com` (UTC, goal 1 "URL contains /thanks", revenue 5, site search on) and
//! 2 `https://shop.example.org` (America/New_York, ecommerce), and a super-user token.
//!
//! Needs MariaDB on 127.0.0.1:3306 (user/password `matomo`); fails clearly without it. The
//! search-engine case needs `../shared/matomo-data/for-matomo-5.1` and skips with a message
//! when it is absent.

use std::path::{Path, PathBuf};

use matomo_wire::{Params, RequestSet};
use matomo_worker::tracker::Tracker;
use mysql_async::prelude::Queryable;
use mysql_async::Row;
use serde_json::Value;

const SALT: &str = "sequence-test-salt";
const TOKEN: &str = "0123456789abcdef0123456789abcdef";
/// 2026-11-10 10:00:00 UTC.
const T0: i64 = 1_794_304_800;

struct Db {
    name: String,
    pool: mysql_async::Pool,
    tracker: Tracker,
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = std::process::Command::new("mariadb")
            .args(["-h", "127.0.0.1", "-u", "matomo", "--password=matomo", "-e"])
            .arg(format!("DROP DATABASE IF EXISTS `{}`", self.name))
            .output();
    }
}

fn vendor_dir() -> Option<PathBuf> {
    let shared = std::env::var_os("MATOMO_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    let dir = shared.join("matomo-data/for-matomo-5.1");
    dir.is_dir().then_some(dir)
}

async fn setup(with_vendor: bool) -> Db {
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
    drop(conn);
    admin.disconnect().await.ok();
    let mut config = tier_config::Config::default();
    config.database.dbname = name.clone();
    config.matomo.salt = SALT.into();
    if with_vendor {
        config.matomo.vendor_dir = vendor_dir();
    }
    let pool =
        mysql_async::Pool::new(format!("mysql://matomo:matomo@127.0.0.1:3306/{name}").as_str());
    let tracker = Tracker::new(&config, pool.clone())
        .await
        .expect("tracker starts");
    Db {
        name,
        pool,
        tracker,
    }
}

/// One GET hit: query string, received at `now`, from 127.0.0.1 with a desktop Firefox.
fn hit(query: &str, now: i64) -> RequestSet {
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
    async fn track(&self, sets: &[RequestSet]) {
        let mut cache = self.tracker.new_shard_cache();
        for set in sets {
            let mut tx = self
                .pool
                .start_transaction(Default::default())
                .await
                .expect("tx");
            self.tracker
                .process_batch(&mut tx, &mut cache, std::slice::from_ref(set))
                .await
                .expect("batch");
            tx.commit().await.expect("commit");
        }
    }

    async fn rows(&self, sql: &str) -> Vec<Row> {
        let mut conn = self.pool.get_conn().await.expect("conn");
        conn.query(sql).await.expect(sql)
    }

    async fn one<T: mysql_async::prelude::FromValue + Send + 'static>(&self, sql: &str) -> T {
        let mut conn = self.pool.get_conn().await.expect("conn");
        conn.query_first::<T, _>(sql)
            .await
            .expect(sql)
            .expect("one row")
    }
}

fn get<T: mysql_async::prelude::FromValue>(r: &Row, col: &str) -> T {
    r.get(col).unwrap_or_else(|| panic!("column {col}"))
}

#[tokio::test]
async fn a_visit_of_pageviews() {
    let db = setup(false).await;
    let id = "&_id=aaaaaaaaaaaaaaaa&res=1280x800&cookie=1&pdf=1";
    db.track(&[
        hit(
            &format!("idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2Fa&action_name=A{id}"),
            T0,
        ),
        hit(
            &format!("idsite=1&rec=1&url=https%3A%2F%2Fwww.example.com%2Fb&action_name=B{id}"),
            T0 + 60,
        ),
        hit(
            &format!("idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2Fc%23frag&action_name=C{id}"),
            T0 + 150,
        ),
    ])
    .await;
    let v = db.rows("SELECT * FROM matomo_log_visit").await;
    assert_eq!(v.len(), 1);
    let v = &v[0];
    assert_eq!(
        get::<String>(v, "visit_first_action_time"),
        "2026-11-10 10:00:00"
    );
    assert_eq!(
        get::<String>(v, "visit_last_action_time"),
        "2026-11-10 10:02:30"
    );
    assert_eq!(get::<i64>(v, "visit_total_actions"), 3);
    assert_eq!(get::<i64>(v, "visit_total_interactions"), 3);
    assert_eq!(get::<i64>(v, "visit_total_searches"), 0);
    assert_eq!(get::<i64>(v, "visit_total_events"), 0);
    // VisitTotalTime::onExistingVisit: 1 + now - first
    assert_eq!(get::<i64>(v, "visit_total_time"), 151);
    assert_eq!(get::<i64>(v, "visitor_count_visits"), 1);
    assert_eq!(get::<i64>(v, "visitor_returning"), 0);
    assert_eq!(get::<i64>(v, "referer_type"), 1);
    assert_eq!(get::<Option<String>>(v, "referer_name"), None);
    assert_eq!(get::<String>(v, "config_resolution"), "1280x800");
    assert_eq!(get::<i64>(v, "config_cookie"), 1);
    assert_eq!(get::<i64>(v, "config_pdf"), 1);
    assert_eq!(get::<Vec<u8>>(v, "idvisitor"), vec![0xaa; 8]);
    assert_eq!(get::<Vec<u8>>(v, "location_ip"), vec![198, 51, 100, 7]);
    assert_eq!(get::<String>(v, "location_browser_lang"), "de-de");
    assert_eq!(get::<String>(v, "location_country"), "de");
    let a = db
        .rows(
            "SELECT l.pageview_position, l.time_spent_ref_action, u.name AS url, u.url_prefix, t.name AS title, \
             l.idaction_url_ref, l.idaction_name_ref, l.idaction_url FROM matomo_log_link_visit_action l \
             JOIN matomo_log_action u ON u.idaction = l.idaction_url JOIN matomo_log_action t ON t.idaction = l.idaction_name \
             ORDER BY l.server_time",
        )
        .await;
    let urls: Vec<(String, Option<i64>)> = a
        .iter()
        .map(|r| (get(r, "url"), get(r, "url_prefix")))
        .collect();
    assert_eq!(
        urls,
        vec![
            ("example.com/a".into(), Some(0)),
            ("example.com/b".into(), Some(3)),
            ("example.com/c".into(), Some(0)),
        ]
    );
    let pos: Vec<i64> = a.iter().map(|r| get(r, "pageview_position")).collect();
    assert_eq!(pos, vec![1, 2, 3]);
    let spent: Vec<i64> = a.iter().map(|r| get(r, "time_spent_ref_action")).collect();
    assert_eq!(spent, vec![0, 60, 90]);
    // idaction_url_ref is the previous exit page
    assert_eq!(
        get::<i64>(&a[1], "idaction_url_ref"),
        get::<i64>(&a[0], "idaction_url")
    );
    assert_eq!(get::<i64>(&a[0], "idaction_url_ref"), 0);
    assert_eq!(get::<String>(&a[2], "title"), "C");
}

#[tokio::test]
async fn a_visit_split_at_midnight_in_a_non_utc_site() {
    let db = setup(false).await;
    // 2026-11-11 04:50 and 05:10 UTC = 23:50 and 00:10 in New York (UTC-5).
    let t1 = 1_794_372_600;
    let q = "idsite=2&rec=1&url=https%3A%2F%2Fshop.example.org%2F&action_name=Home&_id=bbbbbbbbbbbbbbbb";
    db.track(&[hit(q, t1), hit(q, t1 + 1200)]).await;
    let v = db
        .rows("SELECT visitor_count_visits, visitor_returning, visitor_seconds_since_last, visitor_seconds_since_first FROM matomo_log_visit ORDER BY visit_first_action_time")
        .await;
    assert_eq!(
        v.len(),
        2,
        "VisitRequestProcessor::wasLastActionNotToday starts a visit at local midnight"
    );
    assert_eq!(get::<i64>(&v[1], "visitor_count_visits"), 2);
    assert_eq!(get::<i64>(&v[1], "visitor_returning"), 1);
    // VisitorSecondsSinceLast: now - previous visit's first action
    assert_eq!(get::<i64>(&v[1], "visitor_seconds_since_last"), 1200);
    assert_eq!(get::<i64>(&v[1], "visitor_seconds_since_first"), 1200);
}

#[tokio::test]
async fn a_31_minute_gap_starts_a_new_visit() {
    let db = setup(false).await;
    let q = "idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2F&_id=cccccccccccccccc";
    db.track(&[
        hit(q, T0),
        hit(q, T0 + 29 * 60),
        hit(q, T0 + 29 * 60 + 31 * 60),
    ])
    .await;
    let n: i64 = db.one("SELECT COUNT(*) FROM matomo_log_visit").await;
    assert_eq!(n, 2);
    let total: i64 = db
        .one("SELECT visit_total_actions FROM matomo_log_visit ORDER BY idvisit LIMIT 1")
        .await;
    assert_eq!(total, 2);
}

#[tokio::test]
async fn a_uid_login_mid_visit_keeps_the_visit_and_rekeys_the_visitor() {
    let db = setup(false).await;
    db.track(&[
        hit("idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2F&_id=dddddddddddddddd", T0),
        hit("idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2Faccount&_id=dddddddddddddddd&uid=alice%40example.com", T0 + 120),
    ])
    .await;
    let v = db
        .rows("SELECT idvisitor, user_id, visit_total_actions FROM matomo_log_visit")
        .await;
    assert_eq!(v.len(), 1);
    let expected = {
        use sha1::Digest;
        hex::decode(&hex::encode(sha1::Sha1::digest(b"alice@example.com"))[..16]).expect("hex")
    };
    assert_eq!(get::<Vec<u8>>(&v[0], "idvisitor"), expected);
    assert_eq!(get::<String>(&v[0], "user_id"), "alice@example.com");
    assert_eq!(get::<i64>(&v[0], "visit_total_actions"), 2);
}

#[tokio::test]
async fn a_campaign_landing_is_lowercased_and_stripped_from_the_url() {
    let db = setup(true).await;
    db.track(&[hit(
        "idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2Fland%3Fmtm_campaign%3DSpring-Sale%26mtm_kwd%3DEmail%26x%3D1&_id=eeeeeeeeeeeeeeee",
        T0,
    )])
    .await;
    let v = db
        .rows("SELECT referer_type, referer_name, referer_keyword FROM matomo_log_visit")
        .await;
    assert_eq!(get::<i64>(&v[0], "referer_type"), 6);
    assert_eq!(get::<String>(&v[0], "referer_name"), "spring-sale");
    assert_eq!(get::<String>(&v[0], "referer_keyword"), "email");
    let url: String = db
        .one("SELECT name FROM matomo_log_action WHERE type = 1")
        .await;
    assert_eq!(url, "example.com/land?x=1");
}

#[tokio::test]
async fn a_search_engine_referrer() {
    if vendor_dir().is_none() {
        println!("SKIPPED: ../shared/matomo-data/for-matomo-5.1 not found (set MATOMO_SHARED_DIR)");
        return;
    }
    let db = setup(true).await;
    db.track(&[hit(
        "idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2F&urlref=https%3A%2F%2Fwww.google.com%2Fsearch%3Fq%3Dmatomo%2Brust&_id=ffffffffffffffff",
        T0,
    )])
    .await;
    let v = db
        .rows(
            "SELECT referer_type, referer_name, referer_keyword, referer_url FROM matomo_log_visit",
        )
        .await;
    assert_eq!(get::<i64>(&v[0], "referer_type"), 2);
    assert_eq!(get::<String>(&v[0], "referer_name"), "Google");
    assert_eq!(get::<String>(&v[0], "referer_keyword"), "matomo rust");
    assert_eq!(
        get::<String>(&v[0], "referer_url"),
        "https://www.google.com/search?q=matomo+rust"
    );
}

#[tokio::test]
async fn events_downloads_outlinks_and_site_search() {
    let db = setup(false).await;
    let id = "&_id=1111111111111111";
    db.track(&[
        hit(&format!("idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2Fv&action_name=V{id}"), T0),
        hit(&format!("idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2Fv&e_c=Video&e_a=Play&e_n=Intro&e_v=1e3{id}"), T0 + 10),
        hit(&format!("idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2Fv&download=http%3A%2F%2Fexample.com%2Ff.pdf%3Fa%3D1%26b%3D2{id}"), T0 + 20),
        hit(&format!("idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2Fv&link=https%3A%2F%2Fother.org%2F{id}"), T0 + 30),
        hit(&format!("idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2Fs%3Fq%3D%253Cb%253E{id}"), T0 + 40),
    ])
    .await;
    let v = db.rows("SELECT * FROM matomo_log_visit").await;
    assert_eq!(get::<i64>(&v[0], "visit_total_actions"), 5);
    // only page views and searches are interactions
    assert_eq!(get::<i64>(&v[0], "visit_total_interactions"), 2);
    assert_eq!(get::<i64>(&v[0], "visit_total_events"), 1);
    assert_eq!(get::<i64>(&v[0], "visit_total_searches"), 1);
    // a search leaves the exit URL NULL
    assert_eq!(get::<Option<i64>>(&v[0], "visit_exit_idaction_url"), None);
    let names: Vec<(i64, String)> = db
        .rows("SELECT type, name FROM matomo_log_action ORDER BY type, name")
        .await
        .iter()
        .map(|r| (get(r, "type"), get(r, "name")))
        .collect();
    assert!(
        names.contains(&(3, "http://example.com/f.pdf?a=1&amp;b=2".into())),
        "downloads stay escaped: {names:?}"
    );
    assert!(names.contains(&(2, "https://other.org/".into())));
    assert!(
        names.contains(&(8, "<b>".into())),
        "URL-detected keywords are stored raw: {names:?}"
    );
    assert!(names.contains(&(10, "Video".into())));
    assert!(names.contains(&(11, "Play".into())));
    assert!(names.contains(&(12, "Intro".into())));
    let f: f64 = db
        .one("SELECT custom_float FROM matomo_log_link_visit_action WHERE custom_float IS NOT NULL")
        .await;
    assert_eq!(f, 1000.0);
    let pos: Vec<Option<i64>> = db
        .rows("SELECT pageview_position FROM matomo_log_link_visit_action ORDER BY server_time")
        .await
        .iter()
        .map(|r| get(r, "pageview_position"))
        .collect();
    assert_eq!(pos, vec![Some(1), Some(1), Some(1), Some(1), Some(2)]);
}

#[tokio::test]
async fn a_goal_and_an_ecommerce_order_with_items() {
    let db = setup(false).await;
    db.track(&[
        hit("idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2Fthanks&_id=2222222222222222", T0),
        hit("idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2Fthanks&_id=2222222222222222", T0 + 5),
        hit("idsite=2&rec=1&url=https%3A%2F%2Fshop.example.org%2Fcart&_id=3333333333333333&idgoal=0&revenue=30&ec_items=%5B%5B%22S1%22%2C%22Shirt%22%2C%22Wear%22%2C10%2C1%5D%2C%5B%22S2%22%2C%22Cap%22%2C%5B%22Wear%22%2C%22Hats%22%5D%2C%2210%22%2C2%5D%5D", T0),
        hit("idsite=2&rec=1&url=https%3A%2F%2Fshop.example.org%2Fdone&_id=3333333333333333&idgoal=0&ec_id=A-1&revenue=22.5&ec_sh=2.5&ec_items=%5B%5B%22S2%22%2C%22Cap%22%2C%22Hats%22%2C%2210%22%2C2%5D%5D", T0 + 60),
    ])
    .await;
    let g = db.rows("SELECT idgoal, buster, revenue, url, pageviews_before FROM matomo_log_conversion WHERE idsite = 1").await;
    assert_eq!(
        g.len(),
        1,
        "allow_multiple = 0: buster 0, the second conversion is ignored"
    );
    assert_eq!(get::<f64>(&g[0], "revenue"), 5.0);
    assert_eq!(get::<String>(&g[0], "url"), "http://example.com/thanks");
    assert_eq!(get::<i64>(&g[0], "pageviews_before"), 1);
    let converted: i64 = db
        .one("SELECT visit_goal_converted FROM matomo_log_visit WHERE idsite = 1")
        .await;
    assert_eq!(converted, 1);
    let o = db.rows("SELECT idgoal, idorder, items, revenue, revenue_shipping, revenue_tax, buster FROM matomo_log_conversion WHERE idsite = 2").await;
    assert_eq!(o.len(), 1, "the order updates the visit's open cart row");
    assert_eq!(get::<i64>(&o[0], "idgoal"), 0);
    assert_eq!(get::<String>(&o[0], "idorder"), "A-1");
    assert_eq!(get::<i64>(&o[0], "items"), 2);
    assert_eq!(get::<f64>(&o[0], "revenue"), 22.5);
    assert_eq!(get::<Option<f64>>(&o[0], "revenue_shipping"), Some(2.5));
    assert_eq!(get::<Option<f64>>(&o[0], "revenue_tax"), None);
    let buster = {
        use md5::Digest;
        i64::from_str_radix(&hex::encode(md5::Md5::digest(b"A-1"))[..8], 16).expect("hex")
    };
    assert_eq!(get::<i64>(&o[0], "buster"), buster);
    let items: Vec<(String, String, i64, i64)> = db
        .rows(
            "SELECT a.name AS sku, i.idorder, i.quantity, i.deleted FROM matomo_log_conversion_item i \
             JOIN matomo_log_action a ON a.idaction = i.idaction_sku ORDER BY a.name",
        )
        .await
        .iter()
        .map(|r| (get(r, "sku"), get(r, "idorder"), get(r, "quantity"), get(r, "deleted")))
        .collect();
    assert_eq!(
        items,
        vec![
            ("S1".into(), "A-1".into(), 1, 1),
            ("S2".into(), "A-1".into(), 2, 0)
        ]
    );
    let buyer: i64 = db
        .one("SELECT visit_goal_buyer FROM matomo_log_visit WHERE idsite = 2")
        .await;
    assert_eq!(buyer, 1);
}

#[tokio::test]
async fn a_ping_updates_only_the_total_time() {
    let db = setup(false).await;
    db.track(&[
        hit(
            "idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2F&_id=4444444444444444",
            T0,
        ),
        hit(
            "idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2F&_id=4444444444444444&ping=1",
            T0 + 100,
        ),
        // a ping that would start a visit is dropped (fla=1: another configuration, so that
        // config_id does not match the first visitor's visit)
        hit(
            "idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2F&_id=5555555555555555&ping=1&fla=1",
            T0,
        ),
    ])
    .await;
    let v = db.rows("SELECT visit_last_action_time, visit_total_time, visit_total_actions FROM matomo_log_visit").await;
    assert_eq!(v.len(), 1);
    assert_eq!(
        get::<String>(&v[0], "visit_last_action_time"),
        "2026-11-10 10:00:00"
    );
    assert_eq!(get::<i64>(&v[0], "visit_total_time"), 101);
    assert_eq!(get::<i64>(&v[0], "visit_total_actions"), 1);
    let n: i64 = db
        .one("SELECT COUNT(*) FROM matomo_log_link_visit_action")
        .await;
    assert_eq!(n, 1);
}

#[tokio::test]
async fn cdt_with_and_without_token() {
    let db = setup(false).await;
    let now = T0 + 5 * 86400;
    db.track(&[
        // older than a day with a valid token: recorded at cdt, from cip
        hit(&format!("idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2F&_id=6666666666666666&cdt={T0}&cip=203.0.113.9&token_auth={TOKEN}"), now),
        // older than a day without token: the request throws and leaves no row
        hit(&format!("idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2F&_id=7777777777777777&cdt={T0}"), now),
        // recent cdt without token: allowed
        hit(&format!("idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2F&_id=8888888888888888&cdt={}", now - 600), now),
        // a future cdt is ignored: the hit is recorded at the time it was received (fla=1: a
        // configuration of its own, or config_id would join it to the previous visit)
        hit(&format!("idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2F&_id=9999999999999999&fla=1&cdt={}", now + 3600), now),
    ])
    .await;
    let rows: Vec<(Vec<u8>, String, Vec<u8>)> = db
        .rows("SELECT idvisitor, CAST(visit_first_action_time AS CHAR) AS t, location_ip FROM matomo_log_visit ORDER BY idvisitor")
        .await
        .iter()
        .map(|r| (get(r, "idvisitor"), get(r, "t"), get(r, "location_ip")))
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[0],
        (
            vec![0x66; 8],
            "2026-11-10 10:00:00".into(),
            vec![203, 0, 113, 9]
        )
    );
    assert_eq!(rows[1].1, "2026-11-15 09:50:00");
    assert_eq!(rows[2].1, "2026-11-15 10:00:00");
    // the past-dated hit invalidates its day's reports and moves ts_created back
    let opts: i64 = db.one("SELECT COUNT(*) FROM matomo_option WHERE option_name LIKE '%report_to_invalidate_1_2026-11-10%'").await;
    assert_eq!(opts, 1);
    let created: String = db
        .one("SELECT CAST(ts_created AS CHAR) FROM matomo_site WHERE idsite = 1")
        .await;
    assert_eq!(created, "2026-11-01 00:00:00");
}
