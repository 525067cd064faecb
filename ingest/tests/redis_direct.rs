//! The writers' own Redis connections (`queue::direct`) against a real `redis-server` of the
//! test's own (the fault suite's service helpers): AUTH and SELECT, replies matched to their
//! commands in order, error replies as rejections beside stored commands, a connection Redis
//! closes noticed while idle and opened again, and a timeout that closes the connection so
//! nothing is written late; and a node (MariaDB: a fresh `mt_test_*` database) that writes
//! through them by default and opens them again after Redis killed them.

mod support;

#[path = "../../benches/tests/faults/services.rs"]
#[allow(dead_code)]
mod services;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use matomo_ingest::queue::direct::{Address, DirectConn, Endpoint};
use matomo_ingest::queue::EnqueueError;
use services::redis_cli;

const PASSWORD: &str = "s3cret-for-direct";

/// A writer's endpoint at `address`.
fn endpoint(address: Address, password: Option<&str>, database: u8) -> Endpoint {
    Endpoint {
        address,
        database,
        password: password.map(str::to_owned),
        timeout: Duration::from_millis(500),
    }
}

/// Loopback TCP to `port`.
fn tcp(port: u16) -> Address {
    Address::Tcp {
        host: "127.0.0.1".into(),
        port,
    }
}

/// How a test reaches its Redis: both ways where the behaviour must not depend on it.
#[derive(Debug, Clone, Copy)]
enum Transport {
    Tcp,
    Unix,
}

const BOTH: [Transport; 2] = [Transport::Tcp, Transport::Unix];

impl Transport {
    fn address(self, redis: &services::Redis) -> Address {
        match self {
            Self::Tcp => tcp(redis.port),
            Self::Unix => Address::Unix(redis.socket()),
        }
    }
}

/// A `redis-cli` command authenticated with [`PASSWORD`] on `database`.
fn cli(port: u16, database: u8, args: &[&str]) -> Option<String> {
    let database = database.to_string();
    let mut all = vec!["-a", PASSWORD, "--no-auth-warning", "-n", &database];
    all.extend_from_slice(args);
    redis_cli(port, &all)
}

fn values(texts: &[&str]) -> Vec<Vec<u8>> {
    texts.iter().map(|t| t.as_bytes().to_vec()).collect()
}

/// A `redis-server` of the test's own that requires [`PASSWORD`].
async fn redis_with_password(dir: &std::path::Path) -> services::Redis {
    let redis = services::Redis::start(dir).await;
    redis_cli(redis.port, &["CONFIG", "SET", "requirepass", PASSWORD]).expect("requirepass");
    redis
}

/// Opens `conn` again and writes `value` to `key` through it: stored.
async fn reopen_and_push(conn: &mut DirectConn, open_flag: &AtomicBool, key: &[u8], value: &str) {
    let stream = conn.reconnect().await.expect("reconnect");
    conn.reopened(stream);
    assert!(open_flag.load(Ordering::Relaxed), "readiness sees it open");
    let value = values(&[value]);
    let outcomes = conn.rpush_all(&[(key, &value)]).await;
    assert!(outcomes[0].is_ok(), "{outcomes:?}");
}

/// Writes `value` to `key` through `conn`, which must fail; its error.
async fn push_error(conn: &mut DirectConn, key: &[u8], value: &str) -> EnqueueError {
    let value = values(&[value]);
    match conn.rpush_all(&[(key, &value)]).await.pop() {
        Some(Err(error)) => error,
        other => panic!("expected one failed write, got {other:?}"),
    }
}

/// A Redis of the test's own with a password (in a temporary folder the caller keeps) and a
/// writer's connection to it.
async fn redis_and_connection(
    transport: Transport,
) -> (
    tempfile::TempDir,
    services::Redis,
    DirectConn,
    Arc<AtomicBool>,
) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let redis = redis_with_password(tmp.path()).await;
    let (conn, open_flag) = open(&redis, transport).await;
    (tmp, redis, conn, open_flag)
}

async fn open(redis: &services::Redis, transport: Transport) -> (DirectConn, Arc<AtomicBool>) {
    let endpoint = endpoint(transport.address(redis), Some(PASSWORD), 3);
    let stream = endpoint.connect().await.expect("connect");
    let flag = Arc::new(AtomicBool::new(false));
    (DirectConn::new(endpoint, stream, Arc::clone(&flag)), flag)
}

#[tokio::test]
async fn writes_in_order_with_auth_and_select_and_rejections_beside_stored_commands() {
    for transport in BOTH {
        writes_in_order(transport).await;
    }
}

async fn writes_in_order(transport: Transport) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut redis = redis_with_password(tmp.path()).await;

    let wrong = endpoint(transport.address(&redis), Some("wrong"), 3)
        .connect()
        .await;
    let error = wrong.expect_err("a wrong password is refused");
    assert!(error.starts_with("AUTH: "), "{error}");
    let none = endpoint(transport.address(&redis), None, 0).connect().await;
    let error = none.expect_err("the set-up's PING needs the password");
    assert!(error.starts_with("PING: NOAUTH"), "{error}");

    let (mut conn, open_flag) = open(&redis, transport).await;
    assert!(open_flag.load(Ordering::Relaxed));
    cli(redis.port, 3, &["SET", "q:string", "x"]).expect("SET");
    let first = values(&["a1", "a2"]);
    let second = values(&["b1"]);
    let third = values(&["a3", "a4"]);
    let outcomes = conn
        .rpush_all(&[(b"q:0", &first), (b"q:string", &second), (b"q:0", &third)])
        .await;
    assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
    match &outcomes[1] {
        Err(EnqueueError::Rejected(reply)) => assert!(reply.starts_with("WRONGTYPE"), "{reply}"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(conn.is_open(), "an error reply keeps the connection");
    let stored = cli(redis.port, 3, &["LRANGE", "q:0", "0", "-1"]).expect("LRANGE");
    assert_eq!(stored, "a1\na2\na3\na4");
    assert_eq!(cli(redis.port, 0, &["EXISTS", "q:0"]).as_deref(), Some("0"));
    redis.stop().await;
}

#[tokio::test]
async fn a_connection_redis_closes_is_noticed_while_idle_and_opened_again() {
    for transport in BOTH {
        closed_while_idle(transport).await;
    }
}

async fn closed_while_idle(transport: Transport) {
    let (_tmp, mut redis, mut conn, open_flag) = redis_and_connection(transport).await;

    cli(redis.port, 0, &["CLIENT", "KILL", "TYPE", "normal"]).expect("CLIENT KILL");
    let watchable = tokio::time::timeout(Duration::from_secs(5), conn.readable())
        .await
        .expect("the closed connection becomes readable");
    conn.check_idle(watchable);
    assert!(!conn.is_open());
    assert!(!open_flag.load(Ordering::Relaxed), "readiness sees it");

    let error = push_error(&mut conn, b"q:1", "h1").await;
    assert!(
        matches!(error, EnqueueError::NotSent(_)),
        "nothing is written while closed: {error:?}"
    );
    reopen_and_push(&mut conn, &open_flag, b"q:1", "h1").await;
    let stored = cli(redis.port, 3, &["LRANGE", "q:1", "0", "-1"]).expect("LRANGE");
    assert_eq!(stored, "h1");
    redis.stop().await;
}

#[tokio::test]
async fn a_timed_out_write_is_unknown_and_never_written_again() {
    for transport in BOTH {
        timed_out_write(transport).await;
    }
}

async fn timed_out_write(transport: Transport) {
    let (_tmp, mut redis, mut conn, open_flag) = redis_and_connection(transport).await;

    // Redis holds every client's writes until unpaused; the endpoint's timeout is 0.5 s.
    cli(redis.port, 0, &["CLIENT", "PAUSE", "30000", "WRITE"]).expect("CLIENT PAUSE");
    let error = push_error(&mut conn, b"q:2", "late").await;
    assert!(
        matches!(error, EnqueueError::Unknown(_)),
        "written, no reply: {error:?}"
    );
    assert!(
        !conn.is_open(),
        "the connection is closed, so nothing is written later"
    );
    assert!(!open_flag.load(Ordering::Relaxed));

    cli(redis.port, 0, &["CLIENT", "UNPAUSE"]).expect("CLIENT UNPAUSE");
    reopen_and_push(&mut conn, &open_flag, b"q:2", "next").await;
    // The timed-out command either ran once when the pause ended (Redis had read it before the
    // connection closed) or not at all; it is never there twice, and never after `next`.
    let stored = cli(redis.port, 3, &["LRANGE", "q:2", "0", "-1"]).expect("LRANGE");
    assert!(stored == "late\nnext" || stored == "next", "{stored:?}");
    redis.stop().await;
}

/// A writer's connection keeps one batch timer and moves it forward for each batch: a batch
/// gets the endpoint's whole timeout (0.5 s) from its own start, whatever deadline an earlier
/// batch left (passed while idle, or still ahead), and one that gets no reply still ends then.
#[tokio::test]
async fn each_batch_gets_the_whole_timeout_from_its_own_start() {
    let (_tmp, mut redis, mut conn, _open_flag) = redis_and_connection(Transport::Tcp).await;
    assert!(matches!(push(&mut conn, "a").await, Some(Ok(()))));
    // The first batch's deadline passes while the connection idles.
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Each batch held 0.3 s by Redis: the second starts when the first ends, 0.2 s before
    // the first one's deadline, and must not be cut there.
    for value in ["b", "c"] {
        cli(redis.port, 0, &["CLIENT", "PAUSE", "300", "WRITE"]).expect("CLIENT PAUSE");
        let started = std::time::Instant::now();
        let outcome = push(&mut conn, value).await;
        assert!(matches!(outcome, Some(Ok(()))), "{value}: {outcome:?}");
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "held by the pause"
        );
    }
    // No reply at all: unknown after the timeout, counted from this batch's start.
    cli(redis.port, 0, &["CLIENT", "PAUSE", "30000", "WRITE"]).expect("CLIENT PAUSE");
    let started = std::time::Instant::now();
    let outcome = push(&mut conn, "d").await;
    let took = started.elapsed();
    assert!(
        matches!(outcome, Some(Err(EnqueueError::Unknown(_)))),
        "{outcome:?}"
    );
    assert!(
        (Duration::from_millis(450)..Duration::from_secs(3)).contains(&took),
        "timed out after {took:?}"
    );
    cli(redis.port, 0, &["CLIENT", "UNPAUSE"]).expect("CLIENT UNPAUSE");
    let stored = cli(redis.port, 3, &["LRANGE", "q:t", "0", "2"]).expect("LRANGE");
    assert_eq!(stored, "a\nb\nc");
    redis.stop().await;
}

/// Writes `value` to `q:t` through `conn`; the outcome.
async fn push(conn: &mut DirectConn, value: &str) -> Option<Result<(), EnqueueError>> {
    let value = values(&[value]);
    conn.rpush_all(&[(b"q:t".as_slice(), &value)]).await.pop()
}

/// Redis' `connected_clients`.
fn connected_clients(port: u16) -> usize {
    let info = redis_cli(port, &["INFO", "clients"]).expect("INFO clients");
    info.lines()
        .find_map(|l| l.trim().strip_prefix("connected_clients:")?.parse().ok())
        .expect("connected_clients")
}

/// Sends `range` hits of visitors spread over the 4 queues; each must be stored (204).
async fn hits(http: &reqwest::Client, node: &support::Node, range: std::ops::Range<usize>) {
    for n in range {
        let url = format!(
            "{}/matomo.php?idsite=1&rec=1&_id={:03x}0000000000{n:03}&send_image=0",
            node.base,
            n % 4
        );
        let response = http.get(url).send().await.expect("send");
        assert_eq!(
            response.status(),
            reqwest::StatusCode::NO_CONTENT,
            "hit {n}"
        );
    }
}

async fn ready(http: &reqwest::Client, node: &support::Node) -> bool {
    let url = format!("{}/readyz", node.base);
    matches!(http.get(url).send().await, Ok(r) if r.status() == reqwest::StatusCode::OK)
}

/// With `direct` (the default) the node's two lanes write through their own connections and
/// one fred client serves the rest: one connection more than with every write through fred.
/// Killed by Redis, the connections are opened again: `/readyz` (which checks every writer's)
/// answers 200 again, and the hits after are stored.
async fn node_connections(direct: bool, transport: Transport) -> usize {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut redis = services::Redis::start(tmp.path()).await;
    let db = support::TestDb::create().await;
    let mut config = support::config(&db);
    match transport.address(&redis) {
        Address::Tcp { host, port } => (config.redis.host, config.redis.port) = (host, port),
        // QueuedTracking's form: a host that is a path, and port 0; and a database to select.
        Address::Unix(path) => {
            config.redis.host = path.display().to_string();
            config.redis.port = 0;
            config.redis.database = 5;
        }
    }
    let database = config.redis.database.to_string();
    config.ingest.threads = 2;
    config.ingest.direct_redis_writes = direct;
    let node = support::Node::start_on_own_redis(config).await;
    let http = reqwest::Client::new();
    hits(&http, &node, 0..8).await;
    // The guard connects from a task of its own: wait for a count that holds.
    let mut connections = connected_clients(redis.port);
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = connected_clients(redis.port);
        if now == connections {
            break;
        }
        connections = now;
    }

    redis_cli(redis.port, &["CLIENT", "KILL", "TYPE", "normal"]).expect("CLIENT KILL");
    // Every killed connection is open again (the count is back), and the node says so.
    let mut back = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        back = connected_clients(redis.port) == connections && ready(&http, &node).await;
        if back {
            break;
        }
    }
    assert!(
        back,
        "every connection open and ready within 5 s after CLIENT KILL"
    );
    hits(&http, &node, 8..16).await;
    let stored: usize = {
        let mut total = 0;
        for id in 0..4 {
            total += node.raw_queue(id).await.len();
        }
        total
    };
    assert_eq!(stored, 16, "every hit answered 204 is in Redis");
    // In the configured database, read over TCP by another client.
    let in_database: usize = (0..4)
        .map(|id| {
            let key = matomo_wire::queue_key(&node.config.queue.key_prefix, id);
            let len = redis_cli(redis.port, &["-n", &database, "LLEN", &key]).expect("LLEN");
            len.parse::<usize>().expect("a length")
        })
        .sum();
    assert_eq!(in_database, 16, "database {database}");
    node.stop().await;
    redis.stop().await;
    db.drop_db().await;
    connections
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_writes_through_its_own_connections_and_reopens_them() {
    let direct = node_connections(true, Transport::Tcp).await;
    let through_fred = node_connections(false, Transport::Tcp).await;
    assert_eq!(
        direct,
        through_fred + 1,
        "direct {direct}, fred {through_fred}"
    );
    // Over a Unix socket, every connection of the node (its writers' and fred's) goes there.
    let over_unix = node_connections(true, Transport::Unix).await;
    assert_eq!(
        over_unix, direct,
        "over a Unix socket {over_unix}, TCP {direct}"
    );
    let fred_over_unix = node_connections(false, Transport::Unix).await;
    assert_eq!(fred_over_unix, through_fred, "fred over a Unix socket");
}

/// For [`fake_server`]: close the connection right after the set-up.
const CLOSE: &[u8] = b"close";

/// A fake server on a free port: answers the set-up's PING with `+PONG`, then answers the first
/// thing written after it with `reply` and keeps the connection open ([`CLOSE`]: closes it
/// right after the PONG instead). `None`: closes every connection as soon as it accepts it.
/// Returns the port and how many connections it accepted so far.
async fn fake_server(reply: Option<&'static [u8]>) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            let Some(reply) = reply else { continue };
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.ends_with(b"PING\r\n") {
                    let Ok(n @ 1..) = socket.read(&mut buf).await else {
                        return;
                    };
                    seen.extend_from_slice(&buf[..n]);
                }
                socket.write_all(b"+PONG\r\n").await.expect("PONG");
                if reply == CLOSE {
                    return;
                }
                let Ok(1..) = socket.read(&mut buf).await else {
                    return;
                };
                socket.write_all(reply).await.expect("reply");
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    (port, accepted)
}

async fn open_fake(port: u16) -> DirectConn {
    let endpoint = endpoint(tcp(port), None, 0);
    let stream = endpoint
        .connect()
        .await
        .expect("connect to the fake server");
    DirectConn::new(endpoint, stream, Arc::new(AtomicBool::new(false)))
}

#[tokio::test]
async fn a_server_that_accepts_and_drops_connections_fails_the_connect() {
    let (port, accepted) = fake_server(None).await;
    let error = endpoint(tcp(port), None, 0)
        .connect()
        .await
        .expect_err("no PONG, no connection");
    assert!(error.starts_with("PING: "), "{error}");
    assert_eq!(accepted.load(Ordering::Relaxed), 1);
}

/// A server that answers the set-up and then drops the connection (a proxy before a Redis that
/// is down, say) is retried at the growing delay — at once, 100 ms, 200 ms, … — not in a loop:
/// the delay is reset only by a batch that succeeds.
#[tokio::test]
async fn a_server_that_drops_each_connection_after_the_set_up_is_retried_with_backoff() {
    let (port, accepted) = fake_server(Some(CLOSE)).await;
    let mut conn = open_fake(port).await;
    let started = std::time::Instant::now();
    let mut cycles = 0;
    while started.elapsed() < Duration::from_millis(500) {
        let watchable = tokio::time::timeout(Duration::from_secs(5), conn.readable())
            .await
            .unwrap_or_else(|_| panic!("cycle {cycles}: the dropped connection becomes readable"));
        conn.check_idle(watchable);
        assert!(!conn.is_open(), "cycle {cycles}");
        let stream = conn.reconnect().await.expect("the set-up succeeds");
        conn.reopened(stream);
        cycles += 1;
    }
    assert!(cycles <= 5, "{cycles} connections in 0.5 s");
    assert_eq!(accepted.load(Ordering::Relaxed), cycles + 1);
}

#[tokio::test]
async fn a_reply_that_is_not_an_integer_is_unknown_and_closes_the_connection() {
    let (port, _) = fake_server(Some(b"+OK\r\n")).await;
    let mut conn = open_fake(port).await;
    let error = push_error(&mut conn, b"q", "v").await;
    assert!(
        matches!(&error, EnqueueError::Unknown(e) if e.contains("unexpected reply")),
        "{error:?}"
    );
    assert!(!conn.is_open());
}

#[tokio::test]
async fn bytes_after_the_replies_make_the_batch_unknown_and_close_the_connection() {
    let (port, _) = fake_server(Some(b":1\r\n:2\r\n")).await;
    let mut conn = open_fake(port).await;
    let error = push_error(&mut conn, b"q", "v").await;
    assert!(
        matches!(&error, EnqueueError::Unknown(e) if e.contains("unexpected bytes")),
        "replies out of step with the commands are not trusted: {error:?}"
    );
    assert!(
        !conn.is_open(),
        "a connection out of step with its commands is not reused"
    );
}
