//! The node's own HTTP/1.1 server against the real Redis and MariaDB, with exact bytes on raw
//! sockets: pipelining, chunked and `Expect: 100-continue` bodies, HTTP/1.0, HEAD, refused heads,
//! idle keep-alive connections at shutdown, and HTTP/2 with prior knowledge.

mod support;

use std::time::{Duration, Instant};

use matomo_ingest::http::response::GIF;
use support::{config, Node, TestDb};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(10);

async fn start() -> (TestDb, Node) {
    let db = TestDb::create().await;
    let mut config = config(&db);
    config.queue.num_queue_workers = 1;
    (db, Node::start(config).await)
}

async fn finish(db: TestDb, node: Node) {
    node.stop().await;
    db.drop_db().await;
}

/// One response off `stream`: the head as text and the body (by `content-length`, or up to the
/// end of the connection when there is none).
async fn response(stream: &mut TcpStream, pending: &mut Vec<u8>) -> (String, Vec<u8>) {
    let mut chunk = [0u8; 4096];
    let split = loop {
        if let Some(p) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = tokio::time::timeout(LIMIT, stream.read(&mut chunk))
            .await
            .expect("answered in time")
            .expect("read");
        assert!(n > 0, "closed before a whole head: {pending:?}");
        pending.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&pending[..split]).into_owned();
    pending.drain(..split);
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map(|n| n.trim().parse::<usize>().expect("length"));
    let Some(length) = length else {
        if !head.starts_with("HTTP/1.1 200") {
            return (head, Vec::new());
        }
        stream.read_to_end(pending).await.expect("read");
        return (head, std::mem::take(pending));
    };
    while pending.len() < length {
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "closed inside a body");
        pending.extend_from_slice(&chunk[..n]);
    }
    let body = pending.drain(..length).collect();
    (head, body)
}

async fn connect(node: &Node) -> TcpStream {
    TcpStream::connect(node.addr).await.expect("connect")
}

/// Everything up to the server closing the connection, as text.
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut all = Vec::new();
    tokio::time::timeout(LIMIT, stream.read_to_end(&mut all))
        .await
        .expect("closed in time")
        .expect("read");
    String::from_utf8_lossy(&all).into_owned()
}

async fn queued_actions(node: &Node) -> Vec<String> {
    node.queue(0)
        .await
        .iter()
        .map(|e| {
            e.requests[0]["action_name"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

fn hit(tag: &str) -> String {
    format!(
        "GET /matomo.php?idsite=1&rec=1&action_name={tag}&_id=0000000000000001 HTTP/1.1\r\nHost: x\r\n\r\n"
    )
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (db, node) = start().await;
    let mut stream = connect(&node).await;
    let batch = format!(
        "{}{}GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        hit("p1"),
        hit("p2")
    );
    stream.write_all(batch.as_bytes()).await.expect("write");
    let mut pending = Vec::new();
    for _ in 0..2 {
        let (head, body) = response(&mut stream, &mut pending).await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("\r\ncache-control: no-store\r\n"), "{head}");
        assert!(head.contains("\r\ndate: "), "{head}");
        assert_eq!(body, GIF);
    }
    let (head, body) = response(&mut stream, &mut pending).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"ok\n");
    assert_eq!(queued_actions(&node).await, ["p1", "p2"]);
    finish(db, node).await;
}

#[tokio::test]
async fn chunked_and_expect_continue_bodies_are_read() {
    let (db, node) = start().await;
    let mut stream = connect(&node).await;
    let form = "idsite=1&rec=1&action_name=chunked&_id=0000000000000001";
    let (a, b) = form.split_at(20);
    let request = format!(
        "POST /matomo.php HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x};ext=1\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\nX-Trailer: t\r\n\r\n",
        a.len(),
        b.len()
    );
    // Split mid-chunk, as a slow network would.
    let (first, rest) = request.as_bytes().split_at(request.len() - 30);
    stream.write_all(first).await.expect("write");
    tokio::time::sleep(Duration::from_millis(50)).await;
    stream.write_all(rest).await.expect("write");
    let mut pending = Vec::new();
    let (head, body) = response(&mut stream, &mut pending).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("access-control-allow-origin: *\r\n"),
        "{head}"
    );
    assert_eq!(body, GIF);

    // Expect: 100-continue: the client waits for the interim answer before sending the body.
    let form = "idsite=1&rec=1&action_name=continued&_id=0000000000000001";
    let head = format!(
        "POST /matomo.php HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        form.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut interim = [0u8; 25];
    tokio::time::timeout(LIMIT, stream.read_exact(&mut interim))
        .await
        .expect("interim answer in time")
        .expect("read");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(form.as_bytes()).await.expect("write");
    let (head, body) = response(&mut stream, &mut pending).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, GIF);
    assert_eq!(queued_actions(&node).await, ["chunked", "continued"]);
    finish(db, node).await;
}

#[tokio::test]
async fn http_1_0_head_and_refused_heads() {
    let (db, node) = start().await;
    // HTTP/1.0 without keep-alive: answered, then closed.
    let mut stream = connect(&node).await;
    stream
        .write_all(b"GET /healthz HTTP/1.0\r\n\r\n")
        .await
        .expect("write");
    let text = until_closed(&mut stream).await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nok\n"), "{text}");

    // HTTP/1.0 keep-alive, then HEAD on the same connection: headers only.
    let mut stream = connect(&node).await;
    stream
        .write_all(
            b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
              HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .expect("write");
    let mut pending = Vec::new();
    let (head, body) = response(&mut stream, &mut pending).await;
    assert!(head.contains("\r\nconnection: keep-alive\r\n"), "{head}");
    assert_eq!(body, b"ok\n");
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.expect("read");
    pending.extend_from_slice(&rest);
    let text = String::from_utf8_lossy(&pending);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("content-length: 3\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\n"), "HEAD has no body: {text}");

    // Heads we refuse: answered with a reason, then closed.
    for (request, status) in [
        (&b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n"[..], "400"),
        (
            b"POST /matomo.php HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            "400",
        ),
        (
            b"POST /matomo.php HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "400",
        ),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "400"),
    ] {
        let mut stream = connect(&node).await;
        stream.write_all(request).await.expect("write");
        let text = until_closed(&mut stream).await;
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status} ")),
            "{request:?}: {text}"
        );
        assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
    }
    assert!(queued_actions(&node).await.is_empty());
    finish(db, node).await;
}

#[tokio::test]
async fn idle_keep_alive_connections_close_when_shutdown_starts() {
    let db = TestDb::create().await;
    let mut config = config(&db);
    // Long enough that only shutdown can end the idle connections in this test.
    config.ingest.read_timeout = Duration::from_secs(20);
    let node = Node::start(config).await;
    let mut idle = Vec::new();
    for _ in 0..5 {
        let mut stream = connect(&node).await;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut pending = Vec::new();
        let (head, _) = response(&mut stream, &mut pending).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        idle.push(stream);
    }
    let started = Instant::now();
    node.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopping waited for idle connections: {:?}",
        started.elapsed()
    );
    for mut stream in idle {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(LIMIT, stream.read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0))), "closed without bytes: {read:?}");
    }
    db.drop_db().await;
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_served() {
    let db = TestDb::create().await;
    let mut config = config(&db);
    config.queue.num_queue_workers = 1;
    // Small enough that an over-long URL fits hyper's HTTP/2 header limits.
    config.ingest.max_url_bytes = 2048;
    // Streams run on other lanes than the connection's.
    config.ingest.threads = 2;
    let node = Node::start(config).await;
    let tcp = connect(&node).await;
    let (client, connection) = h2::client::handshake(tcp).await.expect("handshake");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let request = http::Request::get(format!(
        "http://{}/matomo.php?idsite=1&rec=1&action_name=h2&_id=0000000000000001",
        node.addr
    ))
    .body(())
    .expect("request");
    let (answer, _) = client.send_request(request, true).expect("send");
    let answer = answer.await.expect("answer");
    assert_eq!(answer.status(), 200);
    let mut body = answer.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("data");
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    assert_eq!(bytes, GIF);

    // The URL limit holds over HTTP/2 too.
    let long = http::Request::get(format!(
        "http://{}/matomo.php?idsite=1&rec=1&x={}",
        node.addr,
        "a".repeat(node.config.ingest.max_url_bytes)
    ))
    .body(())
    .expect("request");
    let mut client = client.ready().await.expect("ready");
    let (answer, _) = client.send_request(long, true).expect("send");
    assert_eq!(answer.await.expect("answer").status(), 414);
    drop(client);
    assert_eq!(queued_actions(&node).await, ["h2"]);
    finish(db, node).await;
}

/// Connections go to the lane with the fewest open ones; with 3 lanes over 5 Redis
/// connections, two lanes have two writers and one has one. 7 kept-alive connections and the
/// one reading `/metrics` are spread 3-3-2 over the lanes, every hit they send, spread over the
/// 4 queues, is answered and queued exactly once, and the node stops cleanly.
#[tokio::test]
async fn connections_spread_over_the_lanes_and_every_lane_writes() {
    let db = TestDb::create().await;
    let mut config = config(&db);
    config.ingest.threads = 3;
    config.redis.pool_size = 5;
    // Connections wait idle while the others are served: well within the keep-alive limit.
    config.ingest.read_timeout = Duration::from_secs(30);
    let node = Node::start(config).await;
    let request = |c: u32, h: u32| {
        format!(
            "GET /matomo.php?idsite=1&rec=1&action_name=c{c}h{h}&_id={:03x}{:013x} HTTP/1.1\r\nHost: x\r\n\r\n",
            c * 3 + h,
            c
        )
    };
    let mut clients = Vec::new();
    for c in 0..7u32 {
        let mut stream = connect(&node).await;
        let mut pending = Vec::new();
        stream
            .write_all(request(c, 0).as_bytes())
            .await
            .expect("write");
        let (head, body) = response(&mut stream, &mut pending).await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert_eq!(body, GIF);
        clients.push((c, stream, pending));
    }

    let mut stream = connect(&node).await;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let (head, body) = response(&mut stream, &mut Vec::new()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let metrics = String::from_utf8(body).expect("text");
    let mut open: Vec<u32> = (0..3)
        .map(|lane| {
            let series = format!("ingest_lane_connections{{lane=\"{lane}\"}} ");
            metrics
                .lines()
                .find_map(|line| line.strip_prefix(series.as_str()))
                .unwrap_or_else(|| panic!("no {series} in {metrics}"))
                .trim()
                .parse()
                .expect("a count")
        })
        .collect();
    open.sort_unstable();
    assert_eq!(open, [2, 3, 3], "{metrics}");

    let rest = clients
        .into_iter()
        .map(|(c, mut stream, mut pending)| async move {
            for h in 1..3u32 {
                stream
                    .write_all(request(c, h).as_bytes())
                    .await
                    .expect("write");
                let (head, body) = response(&mut stream, &mut pending).await;
                assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
                assert_eq!(body, GIF);
            }
        });
    futures::future::join_all(rest).await;
    let mut queued: Vec<(u16, String)> = node
        .all_entries()
        .await
        .into_iter()
        .map(|(queue, e)| {
            let action = e.requests[0]["action_name"].as_str().unwrap_or("");
            (queue, action.to_owned())
        })
        .collect();
    queued.sort();
    let mut expected: Vec<(u16, String)> = (0..7u32)
        .flat_map(|c| (0..3u32).map(move |h| (((c * 3 + h) % 4) as u16, format!("c{c}h{h}"))))
        .collect();
    expected.sort();
    assert_eq!(queued, expected);
    finish(db, node).await;
}
