//! Hit sequences for the configurable tracker features, with the rows Matomo 5's PHP tracker
//! writes for them (derived from its code): `visit_duration` goals (GoalManager), custom
//! dimension extractions (CustomDimensionsRequestProcessor, Dimension\Extraction),
//! PrivacyManager's user id / order id pseudonymisation and referrer anonymisation,
//! `exclude_requests` and the ignore cookie (VisitExcluded), the delete-old-logs check on `cdt`
//! (Request::getCustomTimestamp), `action_title_category_delimiter` (ActionPageview), the
//! fingerprint salts around today (SitesManager::setTrackerCacheWebsite) and page timings sent
//! after the page view (PerformanceDataProcessor).
//!
//! Needs MariaDB on 127.0.0.1:3306 (user/password `matomo`); fails clearly without it.

mod tracker_support;

use serde_json::Value;
use sha1::Digest;
use tracker_support::*;

fn sha1_hex(s: &str) -> String {
    hex::encode(sha1::Sha1::digest(s.as_bytes()))
}

/// The standard databases plus `option` rows (name, value; autoload 0 as PrivacyManager's).
async fn setup_with_options(options: &[(&str, &str)]) -> Db {
    let rows: Vec<String> = options
        .iter()
        .map(|(name, value)| format!("('{name}', '{value}', 0)"))
        .collect();
    let sql = format!(
        "INSERT INTO matomo_option (option_name, option_value, autoload) VALUES {}",
        rows.join(", ")
    );
    setup_with(false, &sql, |_| {}).await
}

/// The standard databases plus goal 2 of site 1: a visit longer than 2.5 minutes, revenue 3,
/// one conversion per visit.
async fn setup_with_duration_goal() -> Db {
    setup_with(
        false,
        "INSERT INTO matomo_goal (idsite, idgoal, name, description, match_attribute, pattern, pattern_type, \
         case_sensitive, allow_multiple, revenue, deleted, event_value_as_revenue) VALUES \
         (1, 2, 'Long visit', '', 'visit_duration', '2.5', 'greater_than', 0, 0, 3, 0, 0)",
        |_| {},
    )
    .await
}

#[tokio::test]
async fn a_visit_duration_goal_converts_once_when_the_visit_passes_it() {
    let db = setup_with_duration_goal().await;
    let id = "&_id=abababababababab";
    let page = |p: &str| format!("idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2F{p}{id}");
    let event = format!("{}&e_c=Video&e_a=Play", page("v"));
    db.track(&[
        // a new visit has no first action time yet: nothing to measure
        hit(&page("a"), T0),
        hit(&page("b"), T0 + 120),
        // 2.48 minutes: not more than 2.5
        hit(&event, T0 + 149),
        // pings never convert (PingRequestProcessor drops the action and the goals)
        hit(&format!("{}&ping=1", page("v")), T0 + 200),
        // 3.5 minutes: converts, on an event as on any action
        hit(&event, T0 + 210),
        // still longer, but allow_multiple = 0: the second conversion is ignored
        hit(&page("c"), T0 + 300),
    ])
    .await;
    let c = db
        .rows(
            "SELECT idgoal, buster, url, revenue, pageviews_before, CAST(server_time AS CHAR) AS t \
             FROM matomo_log_conversion",
        )
        .await;
    assert_eq!(c.len(), 1);
    assert_eq!(get::<i64>(&c[0], "idgoal"), 2);
    assert_eq!(get::<i64>(&c[0], "buster"), 0);
    assert_eq!(get::<String>(&c[0], "url"), "http://example.com/v");
    assert_eq!(get::<f64>(&c[0], "revenue"), 3.0);
    assert_eq!(get::<i64>(&c[0], "pageviews_before"), 2);
    assert_eq!(get::<String>(&c[0], "t"), "2026-11-10 10:03:30");
    let v = db
        .rows("SELECT visit_goal_converted, visit_total_time, visit_total_actions FROM matomo_log_visit")
        .await;
    assert_eq!(v.len(), 1);
    assert_eq!(get::<i64>(&v[0], "visit_goal_converted"), 1);
    assert_eq!(get::<i64>(&v[0], "visit_total_actions"), 5);
    // VisitTotalTime: 1 + now - first, plus idgoal (-1) + 2 on a converting request
    assert_eq!(get::<i64>(&v[0], "visit_total_time"), 302);
}

#[tokio::test]
async fn a_visit_forced_anew_by_a_campaign_is_measured_from_the_previous_visit() {
    let db = setup_with_duration_goal().await;
    let id = "&_id=acacacacacacacac";
    db.track(&[
        hit(
            &format!("idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2F%3Fmtm_campaign%3Dwinter{id}"),
            T0,
        ),
        // another campaign starts a new visit (shouldForceNewVisit) after PHP copied the known
        // visit's properties: the goal sees 200 s since the previous visit's first action
        hit(
            &format!("idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2F%3Fmtm_campaign%3Dspring{id}"),
            T0 + 200,
        ),
    ])
    .await;
    let visits: Vec<(u64, i64)> = db
        .rows("SELECT idvisit, visit_goal_converted FROM matomo_log_visit ORDER BY idvisit")
        .await
        .iter()
        .map(|r| (get(r, "idvisit"), get(r, "visit_goal_converted")))
        .collect();
    assert_eq!(visits.len(), 2);
    assert_eq!(visits[1].1, 1);
    let c = db
        .rows("SELECT idvisit, idgoal, referer_type FROM matomo_log_conversion")
        .await;
    assert_eq!(c.len(), 1);
    assert_eq!(get::<u64>(&c[0], "idvisit"), visits[1].0);
    assert_eq!(get::<i64>(&c[0], "idgoal"), 2);
    assert_eq!(get::<i64>(&c[0], "referer_type"), 6);
}

#[tokio::test]
async fn custom_dimensions_are_extracted_unless_the_request_sets_them() {
    let dims = r#"INSERT INTO matomo_custom_dimensions (idcustomdimension, idsite, name, `index`, scope, active, extractions, case_sensitive) VALUES
        (1, 1, 'Language', 1, 'visit', 1, '[{"dimension":"urlparam","pattern":"lang"}]', 1),
        (2, 1, 'Topic', 1, 'action', 1, '[{"dimension":"url","pattern":"/blog/([^/]+)/"}]', 0),
        (3, 1, 'Shop', 2, 'action', 1, '[{"dimension":"action_name","pattern":"^Shop: (.*)$"},{"dimension":"url","pattern":"/shop-([a-z]+)"}]', 1)"#;
    let db = setup_with(false, dims, |_| {}).await;
    let id = "&_id=cdcdcdcdcdcdcdcd";
    db.track(&[
        hit(&format!("idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2FBLOG%2Frust%2Fpost%3Flang%3Dde&action_name=Shop%3A%20Shirts{id}"), T0),
        // dimension2 sent: no extraction for it; the second extraction of dimension 3 finds a value
        hit(&format!("idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2Fblog%2Fgo%2Fshop-hats%3Flang%3Dfr&action_name=Other&dimension2=%20manual%20{id}"), T0 + 10),
        // an empty dimension1 is a value; extracted values are url-decoded
        hit(&format!("idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2Fblog%2Fcaf%25C3%25A9%2Fx%3Flang%3Dit&dimension1={id}"), T0 + 20),
    ])
    .await;
    let a: Vec<(Option<String>, Option<String>)> = db
        .rows("SELECT custom_dimension_1, custom_dimension_2 FROM matomo_log_link_visit_action ORDER BY server_time")
        .await
        .iter()
        .map(|r| (get(r, "custom_dimension_1"), get(r, "custom_dimension_2")))
        .collect();
    assert_eq!(
        a,
        vec![
            (Some("rust".into()), Some("Shirts".into())),
            (Some("manual".into()), Some("hats".into())),
            (Some("café".into()), None),
        ]
    );
    let visit: Option<String> = db
        .one("SELECT custom_dimension_1 FROM matomo_log_visit")
        .await;
    assert_eq!(visit.as_deref(), Some(""));
}

#[tokio::test]
async fn visit_dimensions_are_extracted_on_the_first_hit() {
    let dims = r#"INSERT INTO matomo_custom_dimensions (idcustomdimension, idsite, name, `index`, scope, active, extractions, case_sensitive) VALUES
        (1, 1, 'Language', 1, 'visit', 1, '[{"dimension":"urlparam","pattern":"LANG"}]', 0)"#;
    let db = setup_with(false, dims, |_| {}).await;
    db.track(&[hit(
        "idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2F%3Flang%3Dpt-br&_id=cececececececece",
        T0,
    )])
    .await;
    let visit: Option<String> = db
        .one("SELECT custom_dimension_1 FROM matomo_log_visit")
        .await;
    assert_eq!(visit.as_deref(), Some("pt-br"));
}

#[tokio::test]
async fn privacy_manager_pseudonymises_user_and_order_ids() {
    let db = setup_with_options(&[
        ("PrivacyManager.anonymizeUserId", "1"),
        ("PrivacyManager.anonymizeOrderId", "1"),
        ("useridsalt", "pepper"),
    ])
    .await;
    db.track(&[
        hit("idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2F&uid=alice&_id=1212121212121212", T0),
        hit("idsite=2&rec=1&url=https%3A%2F%2Fshop.example.org%2Fdone&_id=3434343434343434&idgoal=0&ec_id=A-1&revenue=10&ec_items=%5B%5B%22S1%22%2C%22Shirt%22%2C%22Wear%22%2C10%2C1%5D%5D", T0),
    ])
    .await;
    let uid = sha1_hex("alicepepper");
    let v = db
        .rows("SELECT user_id, idvisitor FROM matomo_log_visit WHERE idsite = 1")
        .await;
    assert_eq!(get::<String>(&v[0], "user_id"), uid);
    // the visitor id comes from the pseudonymised user id
    let expected_vid = hex::decode(&sha1_hex(&uid)[..16]).expect("hex");
    assert_eq!(get::<Vec<u8>>(&v[0], "idvisitor"), expected_vid);
    let c = db
        .rows("SELECT idorder, buster FROM matomo_log_conversion WHERE idsite = 2")
        .await;
    let (idorder, buster): (String, i64) = (get(&c[0], "idorder"), get(&c[0], "buster"));
    assert_eq!(
        idorder.len(),
        40,
        "sha1 of a random int, the id, the time and the salt"
    );
    assert!(idorder.chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(idorder, sha1_hex("A-1"));
    let expected_buster = {
        use md5::Digest as _;
        let d = md5::Md5::digest(idorder.as_bytes());
        i64::from(u32::from_be_bytes([d[0], d[1], d[2], d[3]]))
    };
    assert_eq!(buster, expected_buster);
    let item_order: String = db
        .one("SELECT idorder FROM matomo_log_conversion_item")
        .await;
    assert_eq!(item_order, idorder);
}

#[tokio::test]
async fn a_missing_userid_salt_is_created_when_the_tracker_starts() {
    let db = setup_with_options(&[("PrivacyManager.anonymizeUserId", "1")]).await;
    // PrivacyManager::getUserIdSalt runs when the tracker cache is built: 40 characters of
    // PHP's alphabet, autoload 1
    let o = db
        .rows("SELECT option_value, autoload FROM matomo_option WHERE option_name = 'useridsalt'")
        .await;
    let (salt, autoload): (String, i64) = (get(&o[0], "option_value"), get(&o[0], "autoload"));
    assert_eq!(salt.len(), 40);
    assert!(salt
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-$".contains(c)));
    assert!(!salt.contains(['q', 'Q']));
    assert_eq!(autoload, 1);
    db.track(&[hit(
        "idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2F&uid=bob&_id=5656565656565656",
        T0,
    )])
    .await;
    let uid: String = db.one("SELECT user_id FROM matomo_log_visit").await;
    assert_eq!(uid, sha1_hex(&format!("bob{salt}")));
}

/// referer_type, referer_name, referer_keyword, referer_url.
type Referrer = (i64, Option<String>, Option<String>, Option<String>);

#[tokio::test]
async fn referrers_are_anonymised_as_privacy_manager_does() {
    let db = setup_with_options(&[("PrivacyManager.anonymizeReferrer", "exclude_all")]).await;
    let referrer = "&urlref=https%3A%2F%2Fblog.other.org%2Fsome%2Fpost%3Fx%3D1";
    db.track(&[
        // a new visit from a website
        hit(&format!("idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2F{referrer}&_id=7878787878787878"), T0),
        // a direct entry, then a hit of the same visit from a website converting goal 1
        hit("idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2F&_id=9a9a9a9a9a9a9a9a&fla=1", T0),
        hit(&format!("idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2Fthanks{referrer}&_id=9a9a9a9a9a9a9a9a&fla=1"), T0 + 60),
    ])
    .await;
    let v: Vec<Referrer> = db
        .rows("SELECT referer_type, referer_name, referer_keyword, referer_url FROM matomo_log_visit ORDER BY idvisitor")
        .await
        .iter()
        .map(|r| {
            (
                get(r, "referer_type"),
                get(r, "referer_name"),
                get(r, "referer_keyword"),
                get(r, "referer_url"),
            )
        })
        .collect();
    assert_eq!(
        v,
        vec![
            // onNewVisit: every column anonymised, the NULL keyword becomes ''
            (
                3,
                Some(String::new()),
                Some(String::new()),
                Some(String::new())
            ),
            // onExistingVisit: only values that are set (the keyword stays NULL)
            (3, Some(String::new()), None, Some(String::new())),
        ]
    );
    // the conversion of that request reads the visit properties, which keep the referrer
    let c = db
        .rows("SELECT referer_type, referer_name FROM matomo_log_conversion")
        .await;
    assert_eq!(c.len(), 1);
    assert_eq!(get::<i64>(&c[0], "referer_type"), 3);
    assert_eq!(get::<String>(&c[0], "referer_name"), "blog.other.org");
}

#[tokio::test]
async fn exclude_requests_and_the_ignore_cookie_drop_hits() {
    let db = setup_with(false, "", |c| {
        c.matomo.tracker.exclude_requests = "e_c==MEDIA,action_name=@privacy%2Cpolicy".into();
    })
    .await;
    let base = "idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2F&_id=bcbcbcbcbcbcbcbc";
    let mut ignored = hit(&format!("{base}&action_name=Cookie"), T0 + 30);
    ignored
        .cookie
        .insert("matomo_ignore".into(), Value::String("ignore=Kg==".into()));
    db.track(&[
        hit(&format!("{base}&e_c=Media&e_a=Play"), T0),
        hit(
            &format!("{base}&action_name=Our%20Privacy%2CPolicy"),
            T0 + 10,
        ),
        hit(&format!("{base}&action_name=Privacy"), T0 + 20),
        ignored,
    ])
    .await;
    let names: Vec<String> = db
        .rows(
            "SELECT t.name FROM matomo_log_link_visit_action l JOIN matomo_log_action t \
             ON t.idaction = l.idaction_name",
        )
        .await
        .iter()
        .map(|r| get(r, "name"))
        .collect();
    assert_eq!(names, vec!["Privacy".to_owned()]);
    let actions: i64 = db
        .one("SELECT COUNT(*) FROM matomo_log_link_visit_action")
        .await;
    assert_eq!(actions, 1);
}

#[tokio::test]
async fn cdt_older_than_the_log_deletion_window_is_refused() {
    let db = setup_with_options(&[
        ("delete_logs_enable", "1"),
        ("delete_logs_older_than", "1"),
        ("delete_logs_schedule_lowest_interval", "1"),
    ])
    .await;
    // The cutoff is measured against the wall clock: now - (1 + 1) days.
    let now = chrono::Utc::now().timestamp();
    let q = |vid: &str, cdt: i64| {
        format!(
            "idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2F&_id={vid}&cdt={cdt}&token_auth={TOKEN}"
        )
    };
    db.track(&[
        hit(&q("dededededededede", now - 3 * 86_400), now),
        hit(&q("efefefefefefefef", now - 86_400 - 60), now),
    ])
    .await;
    let vids: Vec<Vec<u8>> = db
        .rows("SELECT idvisitor FROM matomo_log_visit")
        .await
        .iter()
        .map(|r| get(r, "idvisitor"))
        .collect();
    assert_eq!(vids, vec![vec![0xef; 8]]);
}

#[tokio::test]
async fn a_title_category_delimiter_cleans_page_titles() {
    let db = setup_with(false, "", |c| {
        c.matomo.tracker.action_title_category_delimiter = "/".into();
    })
    .await;
    db.track(&[hit(
        "idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2F&action_name=%20Shop%20%2F%20%20%2F%20Shirts%20%2F&_id=abcdabcdabcdabcd",
        T0,
    )])
    .await;
    let title: String = db
        .one("SELECT name FROM matomo_log_action WHERE type = 4")
        .await;
    assert_eq!(title, "Shop/Shirts");
}

#[tokio::test]
async fn fingerprint_salts_exist_for_the_hit_day_and_the_days_around_today() {
    let db = setup(false).await;
    db.track(&[hit(
        "idsite=2&rec=1&url=https%3A%2F%2Fshop.example.org%2F&_id=a1a1a1a1a1a1a1a1",
        T0,
    )])
    .await;
    let tz: chrono_tz::Tz = "America/New_York".parse().expect("tz");
    let wall = chrono::Utc::now().timestamp();
    let mut expected: Vec<String> = [1i64, 0, -1, -2]
        .iter()
        .map(|d| {
            chrono::DateTime::from_timestamp(wall + d * 86_400, 0)
                .expect("time")
                .with_timezone(&tz)
                .format("fingerprint_salt_2_%Y-%m-%d")
                .to_string()
        })
        .collect();
    // T0 = 2026-11-10 10:00 UTC, 05:00 in New York
    expected.push("fingerprint_salt_2_2026-11-10".into());
    expected.sort();
    let rows = db
        .rows("SELECT option_name, option_value, autoload FROM matomo_option WHERE option_name LIKE 'fingerprint\\_salt\\_%' ORDER BY option_name")
        .await;
    let names: Vec<String> = rows.iter().map(|r| get(r, "option_name")).collect();
    assert_eq!(names, expected);
    for r in &rows {
        let v: Value = serde_json::from_str(&get::<String>(r, "option_value")).expect("json");
        assert_eq!(v["value"].as_str().map(str::len), Some(32));
        assert!(v["time"].as_i64().is_some_and(|t| (t - wall).abs() < 300));
        assert_eq!(get::<i64>(r, "autoload"), 0);
    }
}

/// (idpageview, time_network, time_server, time_dom_processing, time_on_load) of page views.
type Timings = (String, Option<i64>, Option<i64>, Option<i64>, Option<i64>);

#[tokio::test]
async fn later_requests_write_timings_onto_their_page_view() {
    let db = setup(false).await;
    let a = "idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2Fa&action_name=A&_id=c1c1c1c1c1c1c1c1";
    // stored page view, then an event, a ping (pv_id in another case) and a ping for an
    // unknown page view, each in its own batch
    db.track(&[
        hit(&format!("{a}&pv_id=aaaaaa"), T0),
        hit(
            &format!("{a}&pv_id=aaaaaa&e_c=Video&e_a=Play&pf_net=10&pf_srv=20"),
            T0 + 5,
        ),
        hit(
            &format!("{a}&pv_id=AAAAAA&ping=1&pf_onl=300&pf_tfr=-1"),
            T0 + 10,
        ),
        hit(&format!("{a}&pv_id=zzzzzz&ping=1&pf_net=5"), T0 + 15),
    ])
    .await;
    // a page view and its timings in the same batch (another visitor: fla=1)
    let b =
        "idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2Fb&action_name=B&_id=d2d2d2d2d2d2d2d2&fla=1";
    db.track_in_one_batch(&[
        hit(&format!("{b}&pv_id=bbbbbb"), T0),
        hit(&format!("{b}&pv_id=bbbbbb&ping=1&pf_dm1=7"), T0 + 5),
    ])
    .await;
    let rows: Vec<Timings> = db
        .rows(
            "SELECT idpageview, time_network, time_server, time_dom_processing, time_on_load \
             FROM matomo_log_link_visit_action ORDER BY idpageview, idaction_event_category",
        )
        .await
        .iter()
        .map(|r| {
            (
                get(r, "idpageview"),
                get(r, "time_network"),
                get(r, "time_server"),
                get(r, "time_dom_processing"),
                get(r, "time_on_load"),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            // the page view got the event's and the ping's timings
            ("aaaaaa".into(), Some(10), Some(20), None, Some(300)),
            // the event row itself keeps none
            ("aaaaaa".into(), None, None, None, None),
            ("bbbbbb".into(), None, None, Some(7), None),
        ]
    );
}
