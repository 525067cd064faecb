//! Hand-written hit sequences with the exact rows Matomo's PHP tracker writes for them, derived
//! from its code (core/Tracker/Visit.php, VisitorRecognizer.php, plugins/*/Columns). Each test
//! builds its own database with two sites (see `tracker_support`).
//!
//! Needs MariaDB on 127.0.0.1:3306 (user/password `matomo`); fails clearly without it. The
//! search-engine case needs `../shared/matomo-data/for-matomo-5.1` and skips with a message
//! when it is absent.

mod tracker_support;

use tracker_support::*;

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
async fn a_visit_deleted_while_cached_is_not_brought_back() {
    // GDPR tools and log purges may delete a visit the worker still has in its shard cache: the
    // next hit updates nothing (as PHP's `UPDATE … WHERE idvisit = ?`), it never re-inserts it.
    let db = setup(false).await;
    let gone = "idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2F&_id=dddddddddddddddd";
    let kept = "idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2Fb&_id=eeeeeeeeeeeeeeee";
    // Another device, so the two visitors never share a visit by config id.
    let kept_hit = |now| {
        let mut set = hit(kept, now);
        set.server
            .insert("REMOTE_ADDR".into(), serde_json::Value::from("203.0.113.9"));
        set
    };
    let mut cache = db.tracker.new_shard_cache();
    db.batch(&mut cache, &[hit(gone, T0), kept_hit(T0)]).await;
    let n: i64 = db.one("SELECT COUNT(*) FROM matomo_log_visit").await;
    assert_eq!(n, 2);
    db.rows("DELETE FROM matomo_log_visit WHERE idvisit = (SELECT MIN(idvisit) FROM (SELECT idvisit FROM matomo_log_visit) AS v)")
        .await;
    db.batch(&mut cache, &[hit(gone, T0 + 60), kept_hit(T0 + 60)])
        .await;
    let visits = db
        .rows("SELECT visit_total_actions FROM matomo_log_visit")
        .await;
    assert_eq!(visits.len(), 1, "the deleted visit stays deleted");
    assert_eq!(get::<i64>(&visits[0], "visit_total_actions"), 2);
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

/// Secure-only tokens, Matomo 5's default for new ones: `authenticateSuperUserOrAdminOrWrite`
/// first looks the token up among the site's `tracking_token_auth` hashes (its admin and write
/// users' tokens, `secure_only` not filtered), so a writer's counts over GET; a super user's goes
/// through `Auth`, which takes a secure-only token only when sent securely (a POST here).
#[tokio::test]
async fn secure_only_tokens_count_for_site_writers_however_sent() {
    const WRITER: &str = "5ec0e5ec0e5ec0e5ec0e5ec0e5ec0e11";
    const SUPER: &str = "5ec0e5ec0e5ec0e5ec0e5ec0e5ec0e22";
    let db = setup_with(
        false,
        &format!(
            "INSERT INTO matomo_user (login, password, email, superuser_access) VALUES \
             ('writer', '', 'writer@example.com', 0); \
             INSERT INTO matomo_access (login, idsite, access) VALUES ('writer', 1, 'write'); \
             INSERT INTO matomo_user_token_auth (login, description, password, hash_algo, date_created, secure_only) VALUES \
             ('writer', 'secure', SHA2(CONCAT('{WRITER}', '{SALT}'), 512), 'sha512', NOW(), 1), \
             ('admin', 'secure', SHA2(CONCAT('{SUPER}', '{SALT}'), 512), 'sha512', NOW(), 1)"
        ),
        |_| {},
    )
    .await;
    let q = |vid: &str, ip: &str, token: &str| {
        format!(
            "idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2F&_id={vid}&cip={ip}&token_auth={token}"
        )
    };
    let mut posted = hit(&q("3333333333333333", "203.0.113.33", SUPER), T0);
    posted.server.insert(
        "REQUEST_METHOD".into(),
        serde_json::Value::String("POST".into()),
    );
    db.track(&[
        // the writer's secure-only token over GET: cip used
        hit(&q("1111111111111111", "203.0.113.11", WRITER), T0),
        // the super user's over GET: refused, so the cip throws and the hit leaves no row
        hit(&q("2222222222222222", "203.0.113.22", SUPER), T0),
        // the super user's in a POST: cip used
        posted,
    ])
    .await;
    let rows: Vec<(Vec<u8>, Vec<u8>)> = db
        .rows("SELECT idvisitor, location_ip FROM matomo_log_visit ORDER BY idvisitor")
        .await
        .iter()
        .map(|r| (get(r, "idvisitor"), get(r, "location_ip")))
        .collect();
    assert_eq!(
        rows,
        vec![
            (vec![0x11; 8], vec![203, 0, 113, 11]),
            (vec![0x33; 8], vec![203, 0, 113, 33]),
        ]
    );
}

/// CRC32("plumless") = CRC32("buckeroo"): the look-up by (type, hash) returns both rows, and
/// each title must still get its own action (regression guard for the look-up form).
#[tokio::test]
async fn titles_with_the_same_crc32_get_their_own_actions() {
    let db = setup(false).await;
    let id = "&_id=abababababababab";
    let titles = ["plumless", "buckeroo", "Plumless", "buckeroo", "plumless"];
    let hits: Vec<_> = titles
        .iter()
        .enumerate()
        .map(|(i, title)| {
            hit(
                &format!(
                    "idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2F{i}&action_name={title}{id}"
                ),
                T0 + 10 * i as i64,
            )
        })
        .collect();
    // One batch per hit: later batches find the earlier titles stored.
    db.track(&hits).await;
    let named: Vec<String> = db
        .rows(
            "SELECT a.name FROM matomo_log_link_visit_action l \
             JOIN matomo_log_action a ON a.idaction = l.idaction_name ORDER BY l.idlink_va",
        )
        .await
        .iter()
        .map(|r| get(r, "name"))
        .collect();
    assert_eq!(named, titles);
    let stored: Vec<String> = db
        .rows("SELECT name FROM matomo_log_action WHERE type = 4 ORDER BY idaction")
        .await
        .iter()
        .map(|r| get(r, "name"))
        .collect();
    assert_eq!(stored, ["plumless", "buckeroo", "Plumless"]);
}
