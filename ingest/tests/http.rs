//! End-to-end tests of the ingest node against the real Redis and MariaDB: every answer
//! `matomo.php` gives, bulk with mixed entries, CORS, static files, trusted proxies, limits,
//! operations endpoints, start-up errors and graceful shutdown. Entries are read back from Redis
//! and decoded as the PHP plugin decodes them.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{
    config, Node, TestDb, SECURE_SUPER_TOKEN, SECURE_WRITE_TOKEN, SUPER_TOKEN, WRITE_TOKEN,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use matomo_ingest::http::response::GIF;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// The start of Matomo's "This resource is part of Matomo…" notice.
const NOTICE: &str = "This resource is part of Matomo.";

/// The answer's body as text.
async fn text(r: reqwest::Response) -> String {
    r.text().await.expect("text")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_gzip()
        .build()
        .expect("client")
}

fn params(v: Value) -> matomo_wire::Params {
    v.as_object().cloned().expect("object")
}

#[tokio::test]
async fn single_hits_answer_like_matomo_and_are_queued_in_queued_tracking_format() {
    let db = TestDb::create().await;
    let mut cfg = config(&db);
    // Pinned: `auto` (the default) depends on the shared Redis' list-compress-depth; it has
    // its own test on a Redis of its own (tests/compression.rs).
    cfg.queue.compression = tier_config::EntryCompression::Default.into();
    let node = Node::start(cfg).await;
    let c = http();

    // A valid GET: the GIF, no-store, queued once on the visitor's shard (0x7cb % 4 = 3).
    let url = format!(
        "{}/matomo.php?idsite=1&rec=1&_id=7cb66ae00cf4c764&url=http%3A%2F%2Fexample.com%2F%3Fa%3Db&action_name=Caf%C3%A9",
        node.base
    );
    let r = c
        .get(&url)
        .header("User-Agent", "Mozilla/5.0 test")
        .header("Accept-Language", "de-CH")
        .header("Referer", "http://example.com/page")
        .header("Sec-CH-UA-Platform", "\"Linux\"")
        .header("X-Forwarded-For", "203.0.113.7")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "image/gif");
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    assert!(r
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .is_none());
    assert_eq!(r.bytes().await.expect("body").as_ref(), GIF);

    let raw = node.raw_queue(3).await;
    assert_eq!(raw.len(), 1);
    assert_eq!(
        &raw[0][..2],
        &[0x78, 0x5e],
        "zlib data from the default encoder"
    );
    let entry = matomo_wire::decode(&raw[0]).expect("decodes");
    assert_eq!(
        entry.requests,
        vec![params(
            json!({"idsite":"1","rec":"1","_id":"7cb66ae00cf4c764",
            "url":"http://example.com/?a=b","action_name":"Café"})
        )]
    );
    let server = &entry.server;
    // Untrusted peer: the proxy header is ignored and not copied.
    assert_eq!(server["REMOTE_ADDR"], "127.0.0.1");
    assert_eq!(server["HTTP_USER_AGENT"], "Mozilla/5.0 test");
    assert_eq!(server["HTTP_ACCEPT_LANGUAGE"], "de-CH");
    assert_eq!(server["HTTP_REFERER"], "http://example.com/page");
    assert_eq!(server["HTTP_SEC_CH_UA_PLATFORM"], "\"Linux\"");
    assert_eq!(server["REQUEST_METHOD"], "GET");
    assert!(!server.contains_key("HTTP_X_FORWARDED_FOR"));
    assert!((server["REQUEST_TIME"].as_i64().expect("int") - now()).abs() < 5);
    assert_eq!(entry.token_auth, None);
    assert!((entry.time - now()).abs() < 5);
    let id = entry.entry_id.expect("entry id");
    assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()));
    // The JSON inside is PHP's shape: keys in PHP's order, tokenAuth false, cookie [].
    let json = inflate(&raw[0]);
    assert!(json.starts_with(r#"{"requests":[{"idsite":"1","rec":"1","_id":"7cb66ae00cf4c764","url":"http:\/\/example.com\/?a=b","action_name":"Caf\u00e9"}],"env":{"server":{"REMOTE_ADDR":"127.0.0.1""#), "{json}");
    assert!(
        json.contains(r#""cookie":[]},"tokenAuth":false,"time":"#),
        "{json}"
    );

    // send_image=0 → 204, still queued; uid routes by sha1(uid) (b6589fc6… for "0"? no: "alice").
    let r = c
        .get(format!(
            "{}/piwik.php?idsite=1&rec=1&uid=alice&send_image=0",
            node.base
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    // sha1("alice") = 522b276a356bdf39013dfabea2cd43e141ecc9e8 → 0x522 % 4 = 2.
    let q2 = node.queue(2).await;
    assert_eq!(q2.len(), 1);
    assert_eq!(q2[0].requests[0]["uid"], "alice");

    // No _id/uid/cid: md5 of the client IP decides (md5("127.0.0.1") = f528764d… → 0xf52 % 4 = 2).
    let r = get(&c, &node, "/matomo.php?idsite=2&rec=1").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(node.queue(2).await.len(), 2);

    // rec=0 is tracked (and queued) like Matomo's queued mode does; the worker excludes it.
    let r = get(&c, &node, "/matomo.php?idsite=1").await;
    assert_eq!(r.status(), StatusCode::OK);

    node.stop().await;
    db.drop_db().await;
}

fn inflate(bytes: &[u8]) -> String {
    use std::io::Read as _;
    let mut out = String::new();
    flate2::read::ZlibDecoder::new(bytes)
        .read_to_string(&mut out)
        .expect("zlib");
    out
}

#[tokio::test]
async fn invalid_hits_get_400_and_never_reach_the_queue() {
    let db = TestDb::create().await;
    let node = Node::start(config(&db)).await;
    let c = http();

    for query in [
        "idsite=99&rec=1",
        "idsite=abc&rec=1",
        "idsite=0&rec=1",
        "rec=1&url=http%3A%2F%2Fa%2F",
        "idsite=1&rec=1&cid=abc",
        "idsite=1&rec=1&cip=1.2.3.4",
        "idsite=1&rec=1&cip=1.2.3.4&token_auth=wrongtoken",
        "idsite=1&rec=1&cip=1.2.3.4&token_auth=ffeeddccbbaa99887766554433221100",
    ] {
        let r = get(&c, &node, &format!("/matomo.php?{query}")).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "image/gif", "{query}");
        let body = r.bytes().await.expect("body");
        assert_eq!(&body[..43], GIF, "{query}");
        assert!(body[43..].starts_with(NOTICE.as_bytes()), "{query}");
    }
    // With send_image=0 PHP answers the notice alone, still 400.
    let r = c
        .get(format!(
            "{}/matomo.php?idsite=99&rec=1&send_image=0",
            node.base
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(text(r).await.starts_with(NOTICE));
    // An old cdt needs a token; with the super user's token (or site 2's writer) it passes.
    let old = now() - 3 * 86_400;
    let r = get(&c, &node, &format!("/matomo.php?idsite=1&rec=1&cdt={old}")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(
        node.all_entries().await.is_empty(),
        "nothing invalid was queued"
    );

    let r = c
        .get(format!(
            "{}/matomo.php?idsite=1&rec=1&cdt={old}&cip=1.2.3.4&token_auth={SUPER_TOKEN}",
            node.base
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .get(format!(
            "{}/matomo.php?idsite=2&rec=1&cip=5.6.7.8&token_auth={WRITE_TOKEN}",
            node.base
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    // Secure-only tokens, Matomo 5's default: a site writer's counts over GET too (Matomo finds
    // it among the site's tracking_token_auth hashes, which ignore the flag), for its own site
    // only; a super user's counts only in a POST.
    for (query, status) in [
        (
            format!("idsite=2&rec=1&cip=5.6.7.9&token_auth={SECURE_WRITE_TOKEN}"),
            StatusCode::OK,
        ),
        (
            format!("idsite=1&rec=1&cip=5.6.7.9&token_auth={SECURE_WRITE_TOKEN}"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("idsite=1&rec=1&cip=5.6.7.9&token_auth={SECURE_SUPER_TOKEN}"),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = get(&c, &node, &format!("/matomo.php?{query}")).await;
        assert_eq!(r.status(), status, "{query}");
    }
    let r = c
        .post(format!("{}/matomo.php", node.base))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!(
            "idsite=1&rec=1&cip=5.6.7.10&token_auth={SECURE_SUPER_TOKEN}"
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let entries = node.all_entries().await;
    assert_eq!(entries.len(), 4);
    // Routed by the cip: md5("1.2.3.4") = 8f6d0b2d… ; md5("5.6.7.8") = … ; check token kept.
    assert!(entries.iter().all(|(_, e)| e.token_auth.is_some()));

    // Sites added to the database are picked up by the periodic refresh.
    db.add_site(99).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let r = get(&c, &node, "/matomo.php?idsite=99&rec=1").await;
    assert_eq!(r.status(), StatusCode::OK);

    node.stop().await;
    db.drop_db().await;
}

#[tokio::test]
async fn notice_post_form_cors_and_preflight() {
    let db = TestDb::create().await;
    let node = Node::start(config(&db)).await;
    let c = http();
    let tracker = format!("{}/matomo.php", node.base);

    let r = c.get(&tracker).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()[header::CONTENT_TYPE],
        "text/html; charset=UTF-8"
    );
    assert!(text(r).await.starts_with(NOTICE));
    let r = c.post(&tracker).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");

    // POST form: query wins over the body; CORS echoes the Origin; no Cache-Control for POST.
    let r = c
        .post(format!("{tracker}?idsite=1&_id=0000000000000001"))
        .header(header::ORIGIN, "https://shop.example.org")
        .header(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=UTF-8",
        )
        .body("idsite=2&rec=1&action_name=a%26b")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://shop.example.org"
    );
    assert_eq!(
        r.headers()[header::ACCESS_CONTROL_ALLOW_CREDENTIALS],
        "true"
    );
    assert!(r.headers().get(header::CACHE_CONTROL).is_none());
    let q0 = node.queue(0).await;
    assert_eq!(q0.len(), 1);
    assert_eq!(
        q0[0].requests[0],
        params(json!({"idsite":"1","_id":"0000000000000001","rec":"1","action_name":"a&b"}))
    );
    assert_eq!(q0[0].server["REQUEST_METHOD"], "POST");

    // A text/plain body is not a form: PHP leaves $_POST empty.
    let r = c
        .post(format!("{tracker}?idsite=1&rec=1&_id=0000000000000002"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body("url=ignored")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!node.queue(0).await[1].requests[0].contains_key("url"));

    // PHP fills $_POST from a form body only for a POST: a PUT's form is no parameters.
    let r = c
        .request(reqwest::Method::PUT, &tracker)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("idsite=1&rec=1&_id=0000000000000003")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(text(r).await.starts_with(NOTICE));
    assert_eq!(node.queue(0).await.len(), 2, "nothing queued from the PUT");

    // CORS preflight.
    let r = c
        .request(reqwest::Method::OPTIONS, &tracker)
        .header(header::ORIGIN, "https://a.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        r.headers()[header::ACCESS_CONTROL_ALLOW_METHODS],
        "GET, POST"
    );
    assert_eq!(r.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS], "*");
    assert_eq!(r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert!(r
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
        .is_none());

    // Other paths.
    let r = get(&c, &node, "/nope.html").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = get(&c, &node, "/js/tracker.php?idsite=1&rec=1").await;
    assert_eq!(r.status(), StatusCode::OK);
    // The query reaches the tracker through the router too: an unknown site is refused (an
    // empty request would get the notice with 200).
    let r = get(&c, &node, "/js/tracker.php?idsite=99&rec=1").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    node.stop().await;
    db.drop_db().await;
}

#[tokio::test]
async fn bulk_mixed_entries_are_split_per_queue_and_counted() {
    let db = TestDb::create().await;
    let node = Node::start(config(&db)).await;
    let c = http();
    let tracker = format!("{}/matomo.php", node.base);
    let requests = json!([
        "?idsite=1&rec=1&_id=0000000000000001&n=1",
        "?idsite=99&rec=1&_id=0000000000000001",
        "no-query-is-dropped",
        {"idsite": 1, "rec": 1, "_id": "0010000000000000", "n": "2"},
        "?idsite=1&rec=1&_id=0000000000000001&cip=9.9.9.9&n=3",
        "https://example.com/matomo.php?idsite=2&rec=1&_id=0000000000000003&n=4",
    ]);

    // Without a token: cip is invalid, no invalid_indices.
    let r = c
        .post(&tracker)
        .body(json!({"requests": requests}).to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    assert_eq!(
        text(r).await,
        r#"{"status":"success","tracked":3,"invalid":2}"#
    );
    let q0 = node.queue(0).await;
    assert_eq!(q0.len(), 1, "one entry per queue per bulk");
    let ns: Vec<_> = q0[0].requests.iter().map(|p| p["n"].clone()).collect();
    assert_eq!(ns, vec![json!("1"), json!("4")]);
    let q1 = node.queue(1).await;
    assert_eq!(q1.len(), 1);
    assert_eq!(
        q1[0].requests,
        vec![params(
            json!({"idsite":1,"rec":1,"_id":"0010000000000000","n":"2"})
        )]
    );
    assert_ne!(q0[0].entry_id, q1[0].entry_id);
    node.clear().await;

    // With the super user's token: cip is fine, invalid_indices shown (indices of kept entries).
    let r = c
        .post(&tracker)
        .body(json!({"requests": requests, "token_auth": SUPER_TOKEN}).to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(
        text(r).await,
        r#"{"status":"success","tracked":4,"invalid":1,"invalid_indices":[1]}"#
    );
    let q0 = node.queue(0).await;
    assert_eq!(q0[0].token_auth.as_deref(), Some(SUPER_TOKEN));
    node.clear().await;

    // A writer's token authenticates its site but is not a super user: no indices.
    let r = c
        .post(&tracker)
        .body(
            json!({"requests": ["?idsite=1&rec=1", "?idsite=3&rec=1"], "token_auth": WRITE_TOKEN})
                .to_string(),
        )
        .send()
        .await
        .expect("send");
    assert_eq!(
        text(r).await,
        r#"{"status":"success","tracked":1,"invalid":1}"#
    );

    // send_image 0 in the body → 204.
    let r = c
        .post(&tracker)
        .body(json!({"requests": ["?idsite=1&rec=1"], "send_image": 0}).to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // Broken JSON and too many entries are clear errors.
    let r = c
        .post(&tracker)
        .body(r#"{"requests":[ "#)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(text(r).await.starts_with(r#"{"status":"error""#));
    let many: Vec<String> = (0..10_001).map(|_| "?idsite=1".to_string()).collect();
    let r = c
        .post(&tracker)
        .body(json!({"requests": many}).to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    node.stop().await;
    db.drop_db().await;
}

#[tokio::test]
async fn static_files_proxies_prefix_limits_and_operations() {
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let js = "/* matomo */ var _paq = window._paq || [];\n".repeat(200);
    std::fs::write(dir.path().join("matomo.js"), &js).expect("write");
    std::fs::create_dir(dir.path().join("js")).expect("mkdir");
    std::fs::write(dir.path().join("js/container_abc.js"), "var c = 1;").expect("write");
    let mut cfg = config(&db);
    cfg.ingest.path_prefix = "/ma/".into();
    cfg.ingest.static_dir = Some(dir.path().to_path_buf());
    cfg.ingest.max_body_bytes = 1024;
    cfg.ingest.max_url_bytes = 2048;
    cfg.matomo.tracker.proxy_ips = vec!["127.0.0.1".into()];
    cfg.matomo.tracker.proxy_client_headers = vec!["HTTP_X_FORWARDED_FOR".into()];
    let node = Node::start(cfg).await;
    let c = http();

    // Static JS: full answer with validators, then 304; gzip and brotli on request.
    let r = get(&c, &node, "/ma/matomo.js").await;
    assert_eq!(r.status(), StatusCode::OK);
    let etag = r.headers()[header::ETAG].clone();
    assert!(r.headers()[header::CACHE_CONTROL]
        .to_str()
        .expect("ascii")
        .contains("max-age="));
    assert!(r.headers().contains_key(header::LAST_MODIFIED));
    assert_eq!(text(r).await, js);
    let r = c
        .get(format!("{}/ma/matomo.js", node.base))
        .header(header::IF_NONE_MATCH, etag)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    for encoding in ["gzip", "br"] {
        let r = c
            .get(format!("{}/ma/matomo.js", node.base))
            .header(header::ACCEPT_ENCODING, encoding)
            .send()
            .await
            .expect("send");
        assert_eq!(r.headers()[header::CONTENT_ENCODING], encoding);
        assert!(r.bytes().await.expect("body").len() < js.len() / 4);
    }
    let r = get(&c, &node, "/ma/js/container_abc.js").await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = get(&c, &node, "/ma/piwik.js").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Prefix: any .php under it is the tracker; the root one is not.
    let r = c
        .get(format!(
            "{}/ma/anything.php?idsite=1&rec=1&_id=0000000000000001",
            node.base
        ))
        .header("X-Forwarded-For", "203.0.113.9, 127.0.0.1")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let r = get(&c, &node, "/matomo.php?idsite=1&rec=1").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Trusted peer: the forwarded client IP is REMOTE_ADDR.
    assert_eq!(node.queue(0).await[0].server["REMOTE_ADDR"], "203.0.113.9");

    // Limits.
    let r = c
        .post(format!("{}/ma/matomo.php", node.base))
        .body(vec![b'a'; 4096])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = c
        .get(format!(
            "{}/ma/matomo.php?idsite=1&x={}",
            node.base,
            "a".repeat(3000)
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::URI_TOO_LONG);

    // A slow body gets 408 after the read timeout (2 s in the test config).
    let mut stream = tokio::net::TcpStream::connect(node.addr)
        .await
        .expect("connect");
    stream
        .write_all(
            b"POST /ma/matomo.php HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nidsite=1",
        )
        .await
        .expect("write");
    let mut answer = vec![0; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("answered before 5 s")
        .expect("read");
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 408"));

    // Operations.
    let r = get(&c, &node, "/healthz").await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = get(&c, &node, "/readyz").await;
    assert_eq!(r.status(), StatusCode::OK);
    let metrics = get(&c, &node, "/metrics").await;
    let metrics = text(metrics).await;
    assert!(
        metrics.contains("ingest_requests_total{endpoint=\"Tracker\",outcome=\"Queued\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ingest_enqueued_entries_total{queue=\"0\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ingest_enqueue_duration_seconds_count 1"),
        "{metrics}"
    );
    // Every HTTP/1 request answered so far is in the per-lane request durations: the tracker
    // hits, the refusals, /healthz, /readyz.
    let before = request_durations(&metrics);
    assert!(before >= 4, "{before} request durations\n{metrics}");
    assert!(
        metrics.contains("ingest_request_duration_seconds_bucket{le=\"0.00005\",lane=\"0\"}")
            || metrics
                .contains("ingest_request_duration_seconds_bucket{lane=\"0\",le=\"0.00005\"}"),
        "{metrics}"
    );
    assert_eq!(get(&c, &node, "/healthz").await.status(), StatusCode::OK);
    let metrics = text(get(&c, &node, "/metrics").await).await;
    // The first /metrics request and the /healthz one (the latter may still be on its way to
    // the histogram on another lane when this page is rendered).
    let after = request_durations(&metrics);
    assert!(
        (before + 1..=before + 2).contains(&after),
        "{before} then {after} request durations"
    );

    node.stop().await;
    db.drop_db().await;
}

#[tokio::test]
async fn record_statistics_off_answers_503_with_the_gif() {
    let db = TestDb::create().await;
    let mut cfg = config(&db);
    cfg.matomo.tracker.record_statistics = false;
    let node = Node::start(cfg).await;
    let r = http()
        .get(format!("{}/matomo.php?idsite=1&rec=1", node.base))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.bytes().await.expect("body").as_ref(), GIF);
    assert!(node.all_entries().await.is_empty());
    node.stop().await;
    db.drop_db().await;
}

#[tokio::test]
async fn startup_errors_name_the_service() {
    let db = TestDb::create().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut cfg = config(&db);
    cfg.redis.port = 1;
    let err = matomo_ingest::serve(cfg, listener, Default::default())
        .await
        .expect_err("fails");
    let msg = err.to_string();
    assert!(
        msg.contains("redis.host/redis.port") && msg.contains("127.0.0.1:1"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "one line: {msg}");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut cfg = config(&db);
    cfg.database.password = "wrong".into();
    let err = matomo_ingest::serve(cfg, listener, Default::default())
        .await
        .expect_err("fails");
    let msg = err.to_string();
    assert!(msg.contains("database.username/database.password"), "{msg}");
    assert!(!msg.contains("wrong"), "the password is not shown: {msg}");
    db.drop_db().await;
}

/// The binary refuses a worker-thread count before it starts anything: exit status 2 (which the
/// systemd unit does not restart) and the reason. (Tokio, left to read `TOKIO_WORKER_THREADS`
/// itself, panicked on "0" and "many", exit status 101, and started 2,000 threads; the number
/// now sets the lanes.) `--set` (which
/// wins over the suite's MATOMO_TIER__* settings) points Redis at a closed port, so a binary
/// that went on would fail fast, not run.
#[test]
fn the_binary_refuses_a_worker_thread_count_at_start_up() {
    for bad in ["0", "many", "2000"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_matomo-ingest"))
            .args([
                "--set",
                "redis.port=1",
                "--set",
                "ingest.listen=127.0.0.1:0",
            ])
            .env("TOKIO_WORKER_THREADS", bad)
            .output()
            .expect("run matomo-ingest");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(
            stderr.contains(&format!("TOKIO_WORKER_THREADS = \"{bad}\"")),
            "{bad}: {stderr}"
        );
    }
}

#[tokio::test]
async fn shutdown_fails_readiness_and_finishes_in_flight_requests() {
    let db = TestDb::create().await;
    let node = Node::start(config(&db)).await;
    // Start a request and leave its body unfinished.
    let mut stream = tokio::net::TcpStream::connect(node.addr)
        .await
        .expect("connect");
    let body = "idsite=1&rec=1&_id=0000000000000001";
    let head = format!(
        "POST /matomo.php HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream
        .write_all(&body.as_bytes()[..10])
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    node.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Readiness fails first, while the node still answers.
    let r = http()
        .get(format!("{}/readyz", node.base))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Then the listener is closed: new connections are refused.
    assert!(tokio::net::TcpStream::connect(node.addr).await.is_err());
    // The in-flight request completes and its hit is queued.
    stream
        .write_all(&body.as_bytes()[10..])
        .await
        .expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(node.queue(0).await.len(), 1);
    node.stop().await;
    db.drop_db().await;
}

#[path = "cases/golden.rs"]
mod golden;

/// A TCP forwarder to the real Redis that the test can cut, to see the node without Redis.
struct RedisCut {
    port: u16,
    cut: tokio_util::sync::CancellationToken,
}

impl RedisCut {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let cut = tokio_util::sync::CancellationToken::new();
        let stop = cut.clone();
        tokio::spawn(async move {
            loop {
                let (mut client, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => accepted.expect("accept"),
                };
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut redis = tokio::net::TcpStream::connect("127.0.0.1:6379")
                        .await
                        .expect("redis");
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut redis) => {}
                    }
                });
            }
        });
        Self { port, cut }
    }
}

#[tokio::test]
async fn without_redis_hits_get_503_and_readiness_fails() {
    let db = TestDb::create().await;
    let cut = RedisCut::start().await;
    let mut cfg = config(&db);
    cfg.redis.port = cut.port;
    cfg.redis.command_timeout = Duration::from_millis(500);
    let node = Node::start(cfg).await;
    let c = http();
    let hit = format!(
        "{}/matomo.php?idsite=1&rec=1&_id=0000000000000001",
        node.base
    );
    assert_eq!(
        c.get(&hit).send().await.expect("send").status(),
        StatusCode::OK
    );
    assert_eq!(node.queue(0).await.len(), 1);

    cut.cut.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = c.get(&hit).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let r = c
        .post(format!("{}/matomo.php", node.base))
        .body(json!({"requests": ["?idsite=1&rec=1"]}).to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(text(r).await.starts_with(r#"{"status":"error""#));
    let r = get(&c, &node, "/readyz").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        node.queue(0).await.len(),
        1,
        "nothing was acknowledged without Redis"
    );
    let metrics = get(&c, &node, "/metrics").await;
    assert!(text(metrics).await.contains("ingest_redis_errors_total 2"));

    node.stop().await;
    db.drop_db().await;
}

/// `GET path` on `node`, answered.
async fn get(c: &reqwest::Client, node: &Node, path: &str) -> reqwest::Response {
    c.get(format!("{}{path}", node.base))
        .send()
        .await
        .expect("send")
}

/// The sum over lanes of `ingest_request_duration_seconds_count`.
fn request_durations(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|line| line.starts_with("ingest_request_duration_seconds_count{"))
        .map(|line| {
            let value = line.rsplit(' ').next().unwrap_or_default();
            value
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("count in {line}"))
        })
        .sum()
}
