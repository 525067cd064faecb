//! Property test: the tracker turns arbitrary queue entries into rows or clear errors, never a
//! panic. Entries are built from Matomo's own parameter names with hostile values (strings of
//! any Unicode, huge and negative numbers, broken JSON for `ec_items`/`_cvar`/`uadata`, odd
//! URLs, nested arrays and objects as a bulk entry can carry), odd `$_SERVER` variables (IPs,
//! user agents, client hints, languages), cookies (the ignore cookie among them), entry ids and
//! receipt times from the far past to the far future.
//! Each case is read ahead and processed as one batch, with device detection when the
//! reference data is present, then committed (over the worker's own connections, with
//! Matomo's session `sql_mode`): the only failure allowed is a set the tracker declares
//! unprocessable, as PHP would; MySQL refusing a value would dead-letter a hit PHP stores.
//!
//! Needs MariaDB on 127.0.0.1:3306 (user/password `matomo`); fails clearly without it.

mod engine_support;
mod tracker_support;

use std::sync::Arc;
use std::time::Duration;

use matomo_wire::{Params, RequestSet};
use matomo_worker::engine::{Engine, EngineOptions};
use matomo_worker::metrics::{DeadLetterLabels, DeadLetterReason};
use matomo_worker::tracker::{BatchError, Tracker};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};
use tracker_support::*;

/// Parameter names the tracker reads (core, goals, ecommerce, events, contents, performance
/// timings, custom dimensions and variables, campaigns, overrides).
const NAMES: &[&str] = &[
    "idsite",
    "rec",
    "url",
    "urlref",
    "action_name",
    "_id",
    "cid",
    "uid",
    "_idts",
    "_idvc",
    "_idn",
    "_viewts",
    "_rcn",
    "_rck",
    "_ref",
    "res",
    "h",
    "m",
    "s",
    "cookie",
    "lang",
    "ua",
    "uadata",
    "cdt",
    "cdo",
    "cip",
    "new_visit",
    "ping",
    "e_c",
    "e_a",
    "e_n",
    "e_v",
    "download",
    "link",
    "search",
    "search_cat",
    "search_count",
    "idgoal",
    "revenue",
    "ec_id",
    "ec_items",
    "ec_st",
    "ec_tx",
    "ec_sh",
    "ec_dt",
    "_ects",
    "pv_id",
    "pf_net",
    "pf_srv",
    "pf_tfr",
    "pf_dm1",
    "pf_dm2",
    "pf_onl",
    "gt_ms",
    "c_n",
    "c_p",
    "c_t",
    "c_i",
    "dimension1",
    "dimension2",
    "_cvar",
    "cvar",
    "bots",
    "send_image",
    "token_auth",
    "country",
    "region",
    "city",
    "lat",
    "long",
    "fla",
    "java",
    "pdf",
    "qt",
    "realp",
    "wma",
    "ag",
    "pv",
    "r",
    "queuedtracking",
    "ca",
    "_pk_campaign",
    "mtm_kwd",
    "utm_source",
];

/// Values that have broken parsers elsewhere: numbers at and past the edges, JSON almost right,
/// URLs of every shape, dates, ids of the wrong length.
const TRICKY: &[&str] = &[
    "", "0", "1", "2", "-1", "9223372036854775807", "-9223372036854775808",
    "18446744073709551616", "1e309", "-1e309", "NaN", "inf", "-0", "0x1F", "1.5.2", " 7 ",
    "[]", "{}", "[[]]", "null", "[1,2", "[[\"sku\",\"name\",\"cat\",\"9.99\",2]]",
    "[[null,null,null,null,null]]", "[[\"s\",[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\"],\"n\",-1,1e300]]",
    "{\"1\":[\"k\",\"v\"],\"2\":[\"k\"]}", "{\"1\":{\"k\":\"v\"}}", "[{\"a\":1}]",
    "{\"brands\":[{\"brand\":\"x\",\"version\":\"1\"}],\"platform\":\"Windows\",\"platformVersion\":\"15.0\"}",
    "{\"fullVersionList\":7}", "http://", "https://example.com/a?b=1#c", "http://example.com",
    "javascript:alert(1)", "//example.com/x", "http://[::1]:99999/", "http://ex ample.com/",
    "http://example.com/%zz%", "HTTP://EXAMPLE.COM/?utm_campaign=Sale&utm_source=News",
    "https://www.google.com/search?q=a+b", "https://shop.example.org/?mtm_campaign=x&pk_kwd=y",
    "ftp://user:pw@host/file.pdf", "data:text/html,hi", "http://a/b/../../c", "mailto:a@b",
    "2026-11-10 10:00:00", "99999999999999", "1794304800", "-62135596800", "0123456789abcdef",
    "0123456789ABCDEF", "zzzzzzzzzzzzzzzz", "01234", "198.51.100.7", "::1", "999.1.1.1",
    "fe80::1%eth0", "1920x1080", "x", "0x0", "99999999x99999999", "de-DE,de;q=0.9", ";q=",
    "http://example.com/blog/a%20b/?lang=pt-br&sessionid=1&q=term&cat=c",
    "https://www.shop.example.org/x?query=q&token=t", "https://spam.example/", "192.0.2.9", "10.1.2.3",
    "Shop: Item", "&amp;<>\"'", "%00", "\u{0}\u{1}\u{7f}", "é漢字🙂", "\u{feff}", "\u{202e}",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(TRICKY).prop_map(str::to_owned),
        3 => "\\PC{0,24}",
        1 => any::<String>(),
        1 => (proptest::sample::select(TRICKY), "[a-z0-9%&=?#/.:-]{0,12}")
            .prop_map(|(a, b)| format!("{a}{b}")),
        1 => (0usize..3000).prop_map(|n| "a%".repeat(n / 2)),
    ]
}

/// A parameter value as a bulk entry may carry it: mostly strings, sometimes other JSON.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        8 => text().prop_map(Value::String),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(|f| json!(f)),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => Just(Value::Null),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::vec(("[a-z0-9]{0,3}", inner), 0..3)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn params() -> impl Strategy<Value = Params> {
    let named = proptest::collection::vec((proptest::sample::select(NAMES), value()), 0..14);
    let extra = proptest::collection::vec(("\\PC{0,8}", value()), 0..2);
    (named, extra, 0u8..4).prop_map(|(named, extra, base)| {
        let mut p = Params::new();
        // Most cases start from a hit the tracker records, so the hostile values reach the
        // code behind the site check.
        if base > 0 {
            p.insert("idsite".into(), Value::String(base.min(2).to_string()));
            p.insert("rec".into(), Value::String("1".into()));
        }
        for (k, v) in named {
            p.insert(k.to_owned(), v);
        }
        for (k, v) in extra {
            p.insert(k, v);
        }
        p
    })
}

fn server() -> impl Strategy<Value = Params> {
    const VARS: &[&str] = &[
        "REMOTE_ADDR",
        "HTTP_USER_AGENT",
        "HTTP_ACCEPT_LANGUAGE",
        "HTTP_REFERER",
        "REQUEST_TIME",
        "HTTP_SEC_CH_UA",
        "HTTP_SEC_CH_UA_FULL_VERSION_LIST",
        "HTTP_SEC_CH_UA_MODEL",
        "HTTP_SEC_CH_UA_PLATFORM",
        "HTTP_SEC_CH_UA_PLATFORM_VERSION",
        "HTTP_SEC_CH_UA_MOBILE",
        "HTTP_X_FORWARDED_FOR",
        "HTTP_DNT",
        "REQUEST_METHOD",
    ];
    const AGENTS: &[&str] = &[
        "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
        "curl/8.0", "",
    ];
    let agent = prop_oneof![
        2 => proptest::sample::select(AGENTS).prop_map(str::to_owned),
        1 => text(),
    ];
    (
        agent,
        proptest::collection::vec((proptest::sample::select(VARS), value()), 0..5),
    )
        .prop_map(|(agent, vars)| {
            let mut s = Params::new();
            s.insert("REMOTE_ADDR".into(), Value::String("198.51.100.7".into()));
            s.insert("HTTP_USER_AGENT".into(), Value::String(agent));
            for (k, v) in vars {
                s.insert(k.to_owned(), v);
            }
            s
        })
}

fn set() -> impl Strategy<Value = RequestSet> {
    let time = prop_oneof![
        4 => (T0 - 86_400 * 400)..(T0 + 86_400),
        1 => any::<i64>(),
        1 => proptest::sample::select(&[0, -1, i64::MIN, i64::MAX, 253_402_300_800][..]),
    ];
    let token = prop_oneof![
        Just(None),
        Just(Some(TOKEN.to_owned())),
        text().prop_map(Some),
    ];
    // `env.cookie`: the ignore cookie (a valid one, `ignore=Kg==` being base64 of `*`, and
    // broken ones) among others.
    let cookie_value = prop_oneof![
        1 => Just(Value::String("ignore=Kg==".into())),
        1 => Just(Value::String("a=b:ignore=Kg".into())),
        2 => value(),
    ];
    let cookie_name = prop_oneof![
        2 => Just("matomo_ignore".to_owned()),
        1 => Just("_pk_id.1.1fff".to_owned()),
        1 => "\\PC{0,10}",
    ];
    let cookies = proptest::collection::vec((cookie_name, cookie_value), 0..3);
    let entry_id = prop_oneof![Just(None), text().prop_map(Some)];
    (
        proptest::collection::vec(params(), 1..4),
        server(),
        time,
        token,
        cookies,
        entry_id,
    )
        .prop_map(
            |(requests, server, time, token_auth, cookies, entry_id)| RequestSet {
                requests,
                server,
                cookie: cookies.into_iter().collect(),
                time,
                token_auth,
                entry_id,
            },
        )
}

/// The tracker's outcome for one batch; a panic is turned into a failure by the runner.
async fn run_batch(db: &Db, sets: &[RequestSet]) -> Result<(), TestCaseError> {
    let ahead = db.tracker.read_ahead(sets);
    let mut cache = db.tracker.new_shard_cache();
    let mut tx = db
        .pool
        .start_transaction(Default::default())
        .await
        .map_err(|e| TestCaseError::fail(format!("start transaction: {e}")))?;
    match db
        .tracker
        .process_batch(&mut tx, &mut cache, sets, ahead)
        .await
    {
        Ok(outcome) => {
            prop_assert_eq!(outcome.sets.len(), sets.len());
            tx.commit()
                .await
                .map_err(|e| TestCaseError::fail(format!("commit: {e}")))?;
        }
        // A set that can never be processed (e.g. a duplicate order id) is the tracker's
        // classified outcome, as in PHP. MySQL refusing a value is not: with Matomo's session
        // sql_mode PHP's values are clamped and stored, so an entry the engine would bisect
        // and dead-letter is a difference to PHP. Transient failures would be the machine's.
        Err(e @ BatchError::Poison { .. }) => {
            eprintln!("classified failure: {e}");
            tx.rollback().await.ok();
        }
        Err(e) => return Err(TestCaseError::fail(format!("unexpected failure: {e}"))),
    }
    Ok(())
}

/// Configuration that sends requests down more paths: custom dimensions with extractions,
/// goals of every match attribute and pattern type, site exclusions and search parameters,
/// and the PrivacyManager options on.
const FEATURES: &str = r#"
    INSERT INTO matomo_custom_dimensions (idcustomdimension, idsite, name, `index`, scope, active, extractions, case_sensitive) VALUES
        (1, 1, 'Language', 1, 'visit', 1, '[{"dimension":"urlparam","pattern":"lang"}]', 1),
        (2, 1, 'Topic', 1, 'action', 1, '[{"dimension":"url","pattern":"/blog/([^/]+)/"}]', 0),
        (3, 1, 'Shop', 2, 'action', 1, '[{"dimension":"action_name","pattern":"^Shop: (.*)$"},{"dimension":"url","pattern":"(["}]', 1);
    INSERT INTO matomo_goal (idsite, idgoal, name, description, match_attribute, pattern, pattern_type, case_sensitive,
        allow_multiple, revenue, deleted, event_value_as_revenue) VALUES
        (1, 2, 'Title', '', 'title', '^shop', 'regex', 0, 1, 0, 0, 0),
        (1, 3, 'Video', '', 'event_category', 'video', 'exact', 1, 0, 2, 0, 1),
        (1, 4, 'File', '', 'file', '.pdf', 'contains', 0, 0, 0, 0, 0),
        (1, 5, 'Out', '', 'external_website', 'partner', 'contains', 0, 0, 0, 0, 0),
        (1, 6, 'Long', '', 'visit_duration', '1', 'greater_than', 0, 0, 0, 0, 0),
        (1, 7, 'Broken', '', 'url', '([', 'regex', 0, 0, 0, 0, 0),
        (2, 1, 'Action', '', 'event_action', 'play', 'contains', 0, 0, 0, 0, 0);
    UPDATE matomo_site SET excluded_parameters = 'sessionid,token', excluded_user_agents = 'curl,bot',
        excluded_ips = '10.0.0.0/8,192.0.2.*', excluded_referrers = 'spam.example', sitesearch_keyword_parameters = 'q,query',
        sitesearch_category_parameters = 'cat', exclude_unknown_urls = 1 WHERE idsite = 2;
    INSERT INTO matomo_site_url (idsite, url) VALUES (2, 'https://www.shop.example.org');
    REPLACE INTO matomo_option (option_name, option_value, autoload) VALUES
        ('PrivacyManager.ipAnonymizerEnabled', '1', 0), ('PrivacyManager.ipAddressMaskLength', '2', 0),
        ('PrivacyManager.anonymizeUserId', '1', 0), ('PrivacyManager.anonymizeOrderId', '1', 0),
        ('PrivacyManager.anonymizeReferrer', 'exclude_path', 0),
        ('PrivacyManager.useAnonymizedIpForVisitEnrichment', '1', 0);
"#;

#[test]
fn arbitrary_entries_never_panic_the_tracker() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let vendor = vendor_dir().is_some();
    if !vendor {
        eprintln!("note: ../shared/matomo-data absent; running without device detection");
    }
    let cases: u32 = std::env::var("TRACKER_ARBITRARY_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(128);
    // Half the cases against the plain sites, half against the configured features.
    for extra in ["", FEATURES] {
        let db = rt.block_on(setup_with(vendor, extra, |_| {}));
        let mut runner = TestRunner::new(Config {
            cases: cases.div_ceil(2),
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&proptest::collection::vec(set(), 1..6), |sets| {
            rt.block_on(run_batch(&db, &sets))
        });
        if let Err(e) = result {
            panic!(
                "{}: {e}",
                if extra.is_empty() {
                    "plain sites"
                } else {
                    "configured features"
                }
            );
        }
        // The hostile values must reach the code that writes rows, not only the site check.
        let (visits, actions): (i64, i64) = rt.block_on(async {
            (
                db.one("SELECT COUNT(*) FROM matomo_log_visit").await,
                db.one("SELECT COUNT(*) FROM matomo_log_link_visit_action")
                    .await,
            )
        });
        eprintln!("stored {visits} visits and {actions} actions");
        assert!(
            visits > 0 && actions > 0,
            "{visits} visits, {actions} actions"
        );
        rt.block_on(async { db.pool.clone().disconnect().await.ok() });
    }
}

#[tokio::test]
async fn receipt_times_outside_matomos_range_are_refused_and_their_neighbours_stored() {
    let db = setup(false).await;
    let at = |time: i64| RequestSet {
        time,
        ..hit(
            "idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2F&_id=0123456789abcdef",
            T0,
        )
    };
    // Before Matomo's first-website date, after 9999-12-30, and the extremes; then one in range.
    let sets = [
        at(0),
        at(-1),
        at(681_436_799),
        at(253_402_214_400),
        at(i64::MIN),
        at(i64::MAX),
        at(T0),
    ];
    let mut cache = db.tracker.new_shard_cache();
    let mut tx = db
        .pool
        .start_transaction(Default::default())
        .await
        .expect("tx");
    let outcome = db
        .tracker
        .process_batch(&mut tx, &mut cache, &sets, None)
        .await
        .expect("batch");
    tx.commit().await.expect("commit");
    let recorded: Vec<usize> = outcome.sets.iter().map(|s| s.recorded).collect();
    let skipped: Vec<usize> = outcome.sets.iter().map(|s| s.skipped).collect();
    assert_eq!(recorded, [0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(skipped, [1, 1, 1, 1, 1, 1, 0]);
    let visits: i64 = db.one("SELECT COUNT(*) FROM matomo_log_visit").await;
    assert_eq!(visits, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_of_hostile_entries_drains_through_the_engine_with_nothing_set_aside() {
    // 600 hostile entries (a fixed seed) and 6 undecodable ones in 4 queues, drained by the
    // engine with the real tracker: batches of 25 keep each shard's cache across batches and
    // read ahead. Every entry is stored or skipped as PHP would; the only dead letters are the
    // undecodable entries; no batch is bisected.
    let env = engine_support::TestEnv::new(4, 25).await;
    {
        let mut conn = env.mysql.get_conn().await.expect("connection");
        load_state(&mut conn, FEATURES).await;
    }
    let mut config = env.config.clone();
    config.matomo.salt = SALT.into();
    config.matomo.vendor_dir = vendor_dir();
    let pool = matomo_worker::app::connect_mysql(&config)
        .await
        .expect("MariaDB on 127.0.0.1:3306");
    let tracker = Arc::new(Tracker::new(&config, pool.clone()).await.expect("tracker"));
    let (_, metrics) = matomo_worker::metrics::standalone();
    let engine = Engine::new(
        env.redis.clone(),
        pool.clone(),
        tracker,
        EngineOptions::from_config(&config),
        metrics.clone(),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect("engine");

    let mut runner = TestRunner::deterministic();
    let sets = proptest::collection::vec(set(), 600)
        .new_tree(&mut runner)
        .expect("entries")
        .current();
    for q in 0..4u16 {
        let mut entries: Vec<Vec<u8>> = sets
            .iter()
            .skip(usize::from(q))
            .step_by(4)
            .map(matomo_wire::encode)
            .collect();
        if q < 3 {
            entries.insert(entries.len() / 2, b"\x78\x9cnot zlib".to_vec());
            entries.push(b"{\"requests\": 7}".to_vec());
        }
        env.push(q, &entries).await;
    }
    let summary = tokio::time::timeout(Duration::from_secs(300), engine.drain())
        .await
        .expect("the queues drain")
        .expect("drain");
    for q in 0..4u16 {
        assert_eq!(env.queue_len(q).await, 0, "queue {q}");
    }
    let dead = |reason| {
        metrics
            .dead_lettered
            .get_or_create(&DeadLetterLabels { reason })
            .get()
    };
    assert_eq!(dead(DeadLetterReason::Undecodable), 6);
    for reason in [
        DeadLetterReason::Panic,
        DeadLetterReason::MysqlData,
        DeadLetterReason::Suspect,
        DeadLetterReason::Rejected,
    ] {
        assert_eq!(dead(reason), 0, "{reason:?}");
    }
    assert_eq!(
        summary.processed + summary.dead_lettered + summary.dropped,
        606
    );
    assert!(summary.requests_recorded > 0, "{summary:?}");
    eprintln!("{summary:?}");
    pool.disconnect().await.ok();
}
