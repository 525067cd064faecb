//! Bad input against a real ingest node (real Redis and MariaDB): oversized bodies and URLs,
//! truncated, deeply nested and non-UTF-8 bodies, huge parameter counts, bulks over the entry
//! limit or mixing valid and malformed entries, slow-loris clients and clients that vanish
//! mid-body. Each case checks the exact answer (a clear error, as documented in
//! `docs/ingest.md`), that nothing but the valid hits reached the queue, that the node still
//! answers a normal hit quickly afterwards, and that no thread panicked.

#[path = "bad_input/raw.rs"]
mod raw;
mod support;

use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use matomo_ingest::http::response::{GIF, NOTICE};
use matomo_wire::Params;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{config, Node, TestDb, SUPER_TOKEN};

/// Names of the threads that panicked. A `#[tokio::test]` runs on one thread with a
/// current-thread runtime, so the node's handler tasks panic on the test's own thread.
static PANICKED: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let name = std::thread::current().name().unwrap_or_default().to_owned();
            PANICKED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(name);
            default(info);
        }));
    });
}

/// A node with a test database, short read timeout and a small bulk limit.
async fn start() -> (TestDb, Node) {
    count_panics();
    let db = TestDb::create().await;
    let mut cfg = config(&db);
    cfg.ingest.read_timeout = Duration::from_secs(1);
    cfg.ingest.max_bulk_requests = 100;
    cfg.ingest.max_body_bytes = 1024 * 1024;
    cfg.ingest.max_url_bytes = 4096;
    let node = Node::start(cfg).await;
    (db, node)
}

/// Stops the node and checks nothing panicked while it ran.
async fn finish(db: TestDb, node: Node) {
    node.stop().await;
    db.drop_db().await;
    let me = std::thread::current().name().unwrap_or_default().to_owned();
    let panicked = PANICKED.lock().unwrap_or_else(|e| e.into_inner());
    assert!(!panicked.contains(&me), "a task of {me} panicked");
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_gzip()
        .build()
        .expect("client")
}

/// Every request queued so far, in queue order.
async fn queued(node: &Node) -> Vec<Params> {
    node.all_entries()
        .await
        .into_iter()
        .flat_map(|(_, set)| set.requests)
        .collect()
}

/// A normal hit tagged `tag` is answered with the GIF within a second and is queued.
async fn serves_a_normal_hit(node: &Node, tag: &str) {
    let started = Instant::now();
    let r = http()
        .get(format!(
            "{}/matomo.php?idsite=1&rec=1&_id=00000000000000aa&action_name={tag}",
            node.base
        ))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("a normal hit is answered");
    let elapsed = started.elapsed();
    assert_eq!(r.status(), StatusCode::OK, "{tag}");
    assert_eq!(r.bytes().await.expect("body").as_ref(), GIF, "{tag}");
    assert!(
        elapsed < Duration::from_secs(1),
        "{tag}: a normal hit took {elapsed:?}"
    );
    let tags: Vec<Value> = queued(node)
        .await
        .iter()
        .filter_map(|p| p.get("action_name").cloned())
        .collect();
    assert!(tags.contains(&json!(tag)), "{tag} not queued: {tags:?}");
}

fn post(path: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn oversized_bodies_and_urls_get_413_and_414() {
    let (db, node) = start().await;
    let c = http();
    let tracker = format!("{}/matomo.php", node.base);

    // Declared too large: refused before the body is read.
    let head = "POST /matomo.php HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                Content-Length: 1048577\r\n\r\n";
    let a = raw::exchange(node.addr, head.as_bytes(), LIMIT).await;
    assert_eq!(a.status, Some(413), "{a:?}");
    assert_eq!(a.text(), "request body too large\n");
    // Chunked without a length: cut off at the limit.
    let mut chunked = b"POST /matomo.php HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                        Transfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for _ in 0..40 {
        chunked.extend_from_slice(b"8000\r\n");
        chunked.extend_from_slice(&[b'a'; 0x8000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let a = raw::exchange(node.addr, &chunked, LIMIT).await;
    assert_eq!(a.status, Some(413), "{a:?}");
    assert_eq!(a.text(), "request body too large\n");
    serves_a_normal_hit(&node, "after-413").await;

    // A URL over ingest.max_url_bytes.
    let long = format!("{tracker}?idsite=1&rec=1&x={}", "a".repeat(5000));
    let r = c.get(&long).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::URI_TOO_LONG);
    assert_eq!(r.text().await.expect("text"), "request URI too long\n");
    // 100k parameters in the URL (~900 KB): larger than the HTTP parser's own header buffer,
    // still refused, and the connection closed.
    let params: Vec<String> = (0..100_000).map(|i| format!("p{i}=1")).collect();
    let huge = format!(
        "GET /matomo.php?idsite=1&rec=1&{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        params.join("&")
    );
    let a = raw::exchange(node.addr, huge.as_bytes(), LIMIT).await;
    assert!(
        matches!(a.status, Some(414 | 431)),
        "100k parameters in the URL: {:?}",
        a.head
    );
    // Over 64 KiB the HTTP parser refuses the URI itself: 414, empty body.
    let over_64k = format!(
        "GET /matomo.php?idsite=1&x={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "a".repeat(70_000)
    );
    let a = raw::exchange(node.addr, over_64k.as_bytes(), LIMIT).await;
    assert_eq!(a.status, Some(414), "{:?}", a.head);
    // Between our limit and the parser's: ours answers.
    let mid = format!(
        "GET /matomo.php?idsite=1&x={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "a".repeat(60_000)
    );
    let a = raw::exchange(node.addr, mid.as_bytes(), LIMIT).await;
    assert_eq!(a.status, Some(414), "{:?}", a.head);
    assert_eq!(a.text(), "request URI too long\n");
    serves_a_normal_hit(&node, "after-414").await;
    assert_eq!(queued(&node).await.len(), 2, "only the normal hits");
    finish(db, node).await;
}

/// The JSON error answer of a refused bulk body.
async fn bulk_error(r: reqwest::Response, status: StatusCode, message_starts: &str) {
    assert_eq!(r.status(), status);
    assert_eq!(
        r.headers()[reqwest::header::CONTENT_TYPE],
        "application/json"
    );
    let body: Value = r.json().await.expect("a JSON answer");
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["tracked"], 0, "{body}");
    let message = body["message"].as_str().expect("a message");
    assert!(message.starts_with(message_starts), "{message}");
}

/// POSTs `body` (a bulk body, or anything that is not a form) to the tracker.
async fn post_bulk(node: &Node, body: impl Into<reqwest::Body>) -> reqwest::Response {
    http()
        .post(format!("{}/matomo.php", node.base))
        .body(body)
        .send()
        .await
        .expect("send")
}

/// POSTs a form body to the tracker.
async fn post_form(node: &Node, body: String) -> reqwest::Response {
    http()
        .post(format!("{}/matomo.php", node.base))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("send")
}

/// The answer to a bulk body that is not JSON.
async fn not_json(r: reqwest::Response) {
    bulk_error(
        r,
        StatusCode::BAD_REQUEST,
        "the bulk body is not valid JSON",
    )
    .await;
}

#[tokio::test]
async fn truncated_deep_and_non_utf8_bulk_bodies_get_a_clear_400() {
    let (db, node) = start().await;
    let valid = json!({"requests": ["?idsite=1&rec=1&action_name=lost"]}).to_string();

    // Truncated anywhere after the word "requests": not JSON.
    for cut in [valid.len() - 1, valid.len() / 2, 12] {
        let r = post_bulk(&node, valid[..cut].to_owned()).await;
        not_json(r).await;
    }
    // 100k nested lists: refused at serde_json's depth limit, no stack overflow.
    let deep = format!("{{\"requests\":{}", "[".repeat(100_000));
    let r = post_bulk(&node, deep).await;
    not_json(r).await;
    // Closed, it is JSON nested deeper than serde_json's limit (128): refused the same way.
    let closed = format!(
        "{{\"requests\":[{}{},\"?idsite=1&rec=1\"]}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    not_json(post_bulk(&node, closed).await).await;
    // Without the word "requests" a body is no bulk: a POST with no parameters gets the notice.
    let r = post_bulk(&node, "[".repeat(100_000)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.text().await.expect("text"), NOTICE);
    // Invalid UTF-8 inside a JSON string (PHP's json_decode fails on it too).
    let mut latin1 = br#"{"requests":["?idsite=1&rec=1&action_name=caf"#.to_vec();
    latin1.extend_from_slice(b"\xe9\"]}");
    let r = post_bulk(&node, latin1).await;
    not_json(r).await;
    // Deeply nested but valid and within the limit: an object entry keeps its structure.
    let nested = format!("{}\"x\"{}", "[".repeat(100), "]".repeat(100));
    let body = format!(
        "{{\"requests\":[{{\"idsite\":1,\"rec\":1,\"action_name\":\"nested\",\"x\":{nested}}}]}}"
    );
    let r = post_bulk(&node, body).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.text().await.expect("text"),
        r#"{"status":"success","tracked":1,"invalid":0}"#
    );
    let queued = queued(&node).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(
        queued[0]["x"].to_string(),
        nested,
        "the nested value is queued unchanged"
    );
    serves_a_normal_hit(&node, "after-bad-json").await;
    assert_eq!(queued_len(&node).await, 2, "nothing of the refused bodies");
    finish(db, node).await;
}

async fn queued_len(node: &Node) -> usize {
    queued(node).await.len()
}

#[tokio::test]
async fn non_utf8_in_query_and_form_is_read_as_latin1_like_matomo() {
    let (db, node) = start().await;
    let c = http();
    // Percent-encoded ISO-8859-1 in the query and in a form body.
    let r = c
        .get(format!(
            "{}/matomo.php?idsite=1&rec=1&action_name=q-caf%E9&_id=0000000000000001",
            node.base
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let a = raw::exchange(
        node.addr,
        &post(
            "/matomo.php",
            "Content-Type: application/x-www-form-urlencoded\r\n",
            b"idsite=1&rec=1&action_name=f-caf\xe9&k\xff=v%FF",
        ),
        LIMIT,
    )
    .await;
    assert_eq!(a.status, Some(200), "{:?}", a.head);
    assert_eq!(a.body, GIF);
    let names: Vec<Params> = queued(&node).await;
    assert_eq!(names.len(), 2);
    assert_eq!(names[0]["action_name"], "q-café");
    assert_eq!(names[1]["action_name"], "f-café");
    assert_eq!(names[1]["k\u{ff}"], "v\u{ff}");

    // Raw non-ASCII bytes in the request line are not a valid HTTP URI: 400, connection closed.
    let a = raw::exchange(
        node.addr,
        b"GET /matomo.php?idsite=1&rec=1&action_name=caf\xe9 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        LIMIT,
    )
    .await;
    assert_eq!(a.status, Some(400), "{:?}", a.head);
    // Raw `"`, `<`, `>` in the query, which a strict URI parser refuses and Apache and nginx
    // pass to PHP: tracked as sent (a fragment ends the query).
    let a = raw::exchange(
        node.addr,
        b"GET /matomo.php?idsite=1&rec=1&action_name=\"<q>\"#frag HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        LIMIT,
    )
    .await;
    assert_eq!(a.status, Some(200), "{:?}", a.head);
    let names: Vec<Params> = queued(&node).await;
    assert!(
        names.iter().any(|p| p["action_name"] == "\"<q>\""),
        "{names:?}"
    );
    // Non-UTF-8 header values (User-Agent, Referer) do not break the hit.
    let a = raw::exchange(
        node.addr,
        b"GET /matomo.php?idsite=1&rec=1&action_name=ua HTTP/1.1\r\nHost: x\r\n\
          User-Agent: Mozilla/5.0 caf\xe9\r\nReferer: http://a/\xff\r\nConnection: close\r\n\r\n",
        LIMIT,
    )
    .await;
    assert_eq!(a.status, Some(200), "{:?}", a.head);
    assert_eq!(queued_len(&node).await, 4);
    serves_a_normal_hit(&node, "after-latin1").await;
    finish(db, node).await;
}

#[tokio::test]
async fn huge_parameter_counts_keep_the_first_max_input_vars() {
    let (db, node) = start().await;
    let many: Vec<String> = (0..100_000).map(|i| format!("p{i}=1")).collect();
    let many = many.join("&");

    // A form body with 100k pairs: PHP's max_input_vars (1000) are read, the hit is tracked.
    let r = post_form(&node, format!("idsite=1&rec=1&action_name=form&{many}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    // The same in a bulk string entry.
    let body = json!({"requests": [format!("?idsite=1&rec=1&action_name=bulk&{many}")]});
    let r = post_bulk(&node, body.to_string()).await;
    assert_eq!(
        r.text().await.expect("text"),
        r#"{"status":"success","tracked":1,"invalid":0}"#
    );
    // Pairs past the limit are gone, even the ones that would make the hit valid.
    let r = post_form(&node, format!("{many}&idsite=1&rec=1")).await;
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "idsite was past the limit"
    );
    // 100k array elements under one name are pairs too.
    let arrays: Vec<String> = (0..100_000).map(|i| format!("a[]={i}")).collect();
    let r = post_form(
        &node,
        format!("idsite=1&rec=1&action_name=arrays&{}", arrays.join("&")),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);

    let queued = queued(&node).await;
    assert_eq!(queued.len(), 3);
    for request in &queued {
        // `a` is a list once queued (PHP's json_encode writes 0..n keys as a list).
        let elements = match request.get("a") {
            Some(Value::Array(items)) => items.len() - 1,
            _ => 0,
        };
        let names = request.len() + elements;
        assert_eq!(names, 1000, "{}", request["action_name"]);
    }
    serves_a_normal_hit(&node, "after-many-params").await;
    finish(db, node).await;
}

#[tokio::test]
async fn bulk_over_the_entry_limit_gets_413_and_queues_nothing() {
    let (db, node) = start().await;
    let entries: Vec<String> = (0..101)
        .map(|i| format!("?idsite=1&rec=1&action_name=e{i}"))
        .collect();
    let r = post_bulk(&node, json!({ "requests": entries }).to_string()).await;
    bulk_error(
        r,
        StatusCode::PAYLOAD_TOO_LARGE,
        "the bulk body has more than the 100 requests allowed",
    )
    .await;
    // 100k tiny entries (well within the body limit): refused the same way.
    let tiny = format!("{{\"requests\":[{}0]}}", "0,".repeat(99_999));
    let r = post_bulk(&node, tiny).await;
    bulk_error(
        r,
        StatusCode::PAYLOAD_TOO_LARGE,
        "the bulk body has more than the 100 requests allowed",
    )
    .await;
    // At the limit: all tracked.
    let r = post_bulk(&node, json!({ "requests": &entries[..100] }).to_string()).await;
    assert_eq!(
        r.text().await.expect("text"),
        r#"{"status":"success","tracked":100,"invalid":0}"#
    );
    assert_eq!(queued_len(&node).await, 100);
    serves_a_normal_hit(&node, "after-413-bulk").await;
    finish(db, node).await;
}

#[tokio::test]
async fn bulk_mixing_valid_and_malformed_entries_queues_every_valid_one() {
    let (db, node) = start().await;
    let requests = json!([
        "?idsite=1&rec=1&action_name=v0&_id=0000000000000001",
        "?idsite=abc&rec=1",
        {"idsite": 1, "rec": 1, "action_name": "v1", "_id": "0000000000000002"},
        "?idsite=99&rec=1",
        {"idsite": [1], "rec": 1},
        "?idsite=1&rec=1&cid=tooshort",
        "not a url at all",
        null,
        42,
        {"idsite": "1", "rec": "1", "action_name": "v2", "x": {"deep": [1, 2, {"y": null}]}},
        "?idsite=1&rec=1&action_name=caf%E9&_id=0000000000000003",
        {"idsite": -1, "rec": 1},
        "?idsite=1&rec=1&cdt=1&action_name=old",
        ["idsite", "rec"],
        "?idsite=2&rec=1&action_name=v4&_id=0000000000000004#frag",
    ]);
    // An object entry of more than 1000 values.
    let mut huge = json!({"idsite": 1, "rec": 1, "action_name": "huge"});
    for k in 0..1500 {
        huge[format!("k{k}")] = json!(k);
    }
    let mut requests = requests;
    requests.as_array_mut().expect("list").push(huge);
    let r = post_bulk(
        &node,
        json!({"requests": requests, "token_auth": SUPER_TOKEN}).to_string(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    // Indices count the entries PHP keeps ("not a url at all" is dropped): the bad idsites,
    // the short cid and the list entry (no idsite) are invalid; null and 42 are empty requests.
    // The old cdt is fine with the super user's token; the last, huge entry is invalid.
    assert_eq!(
        r.text().await.expect("text"),
        r#"{"status":"success","tracked":8,"invalid":7,"invalid_indices":[1,3,4,5,10,12,14]}"#
    );
    let mut names: Vec<String> = queued(&node)
        .await
        .iter()
        .map(|p| p["action_name"].as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["caf\u{e9}", "old", "v0", "v1", "v2", "v4"]);
    let v2 = queued(&node)
        .await
        .into_iter()
        .find(|p| p["action_name"] == "v2")
        .expect("v2 queued");
    assert_eq!(v2["x"], json!({"deep": [1, 2, {"y": null}]}));
    serves_a_normal_hit(&node, "after-mixed").await;
    finish(db, node).await;
}

#[tokio::test]
async fn slow_loris_clients_time_out_while_others_are_served() {
    let (db, node) = start().await;
    let timeout = node.config.ingest.read_timeout;
    let every = Duration::from_millis(100);
    let head = b"POST /matomo.php?idsite=1&rec=1&action_name=slow HTTP/1.1\r\nHost: x\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 60\r\n\r\n";
    let mut slow = Vec::new();
    // Headers trickled byte by byte (they would take ~12 s).
    for _ in 0..20 {
        slow.push(tokio::spawn(raw::trickle(
            node.addr,
            head.to_vec(),
            every,
            LIMIT,
        )));
    }
    // Headers at once, then the body trickled (it would take ~6 s).
    for _ in 0..20 {
        let mut request = head.to_vec();
        request.extend_from_slice(&[b'x'; 60]);
        slow.push(tokio::spawn(raw::trickle_after(
            node.addr,
            request,
            head.len(),
            every,
            LIMIT,
        )));
    }
    // Connected, then silent.
    for _ in 0..20 {
        slow.push(tokio::spawn(raw::trickle(
            node.addr,
            Vec::new(),
            every,
            LIMIT,
        )));
    }
    // One request on a keep-alive connection, then silent.
    for _ in 0..5 {
        let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        let len = request.len();
        slow.push(tokio::spawn(raw::trickle_after(
            node.addr, request, len, every, LIMIT,
        )));
    }
    // Meanwhile normal hits are answered at once.
    for i in 0..5 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        serves_a_normal_hit(&node, &format!("during-slow-{i}")).await;
    }
    let mut answers = Vec::new();
    for task in slow {
        answers.push(task.await.expect("join"));
    }
    let within = |a: &raw::Answer| {
        a.elapsed >= timeout.mul_f32(0.9) && a.elapsed < timeout + Duration::from_millis(1500)
    };
    for a in &answers[..20] {
        // hyper closes a connection whose headers are late, without an answer.
        assert!(within(a) && a.status.is_none(), "slow headers: {a:?}");
    }
    for a in &answers[20..40] {
        assert!(within(a) && a.status == Some(408), "slow body: {a:?}");
        assert_eq!(a.text(), "request body read timed out\n");
    }
    for a in &answers[40..60] {
        assert!(within(a) && a.status.is_none(), "silent: {a:?}");
    }
    for a in &answers[60..] {
        assert!(within(a) && a.status == Some(200), "idle keep-alive: {a:?}");
    }
    serves_a_normal_hit(&node, "after-slow").await;
    assert_eq!(queued_len(&node).await, 6, "only the normal hits");
    finish(db, node).await;
}

#[tokio::test]
async fn a_client_vanishing_mid_body_costs_nothing_else() {
    let (db, node) = start().await;
    for _ in 0..20 {
        let mut stream = tokio::net::TcpStream::connect(node.addr)
            .await
            .expect("connect");
        use tokio::io::AsyncWriteExt as _;
        stream
            .write_all(
                b"POST /matomo.php HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n\
                  {\"requests\":[\"?idsite=1&rec=1\",",
            )
            .await
            .expect("write");
        drop(stream);
    }
    serves_a_normal_hit(&node, "after-vanished").await;
    assert_eq!(queued_len(&node).await, 1, "only the normal hit");
    finish(db, node).await;
}
