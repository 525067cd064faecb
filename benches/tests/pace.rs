//! `matomo-loadgen pace` against tiny local servers: every hit due is sent and answered, a
//! failure is counted and named, connections the server closes are opened again (also while
//! idle, the hit sent again), interim 1xx answers are skipped, an unreachable or silent target
//! fails every hit without holding the run, the time a hit waits for a free connection is
//! part of its latency, and the slow hits are written down with their times.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use clap::Parser as _;
use matomo_loadgen::cli::{Cli, Command, PaceArgs};
use matomo_loadgen::pace::{self, command, PaceSettings};

const GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

/// How a test server answers, and what it saw.
#[derive(Default)]
struct Server {
    hits: AtomicU64,
    /// Every n-th hit is answered 400 (0: never).
    fail_every: u64,
    /// Each answer waits this long.
    delay: Duration,
    /// Answers say `Connection: close`.
    close: bool,
    /// Queries without `idsite=1&rec=1` or without a user agent.
    odd: Mutex<Vec<String>>,
    /// The client ends of the connections hits came on.
    peers: Mutex<HashSet<SocketAddr>>,
}

async fn track(
    State(s): State<Arc<Server>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> impl IntoResponse {
    let n = s.hits.fetch_add(1, Ordering::SeqCst) + 1;
    s.peers.lock().unwrap().insert(peer);
    let q = q.unwrap_or_default();
    if !(q.contains("idsite=1") && q.contains("rec=1") && headers.contains_key(header::USER_AGENT))
    {
        s.odd.lock().unwrap().push(q);
    }
    if !s.delay.is_zero() {
        tokio::time::sleep(s.delay).await;
    }
    let status = if s.fail_every > 0 && n % s.fail_every == 0 {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let connection = if s.close { "close" } else { "keep-alive" };
    (
        status,
        [
            (header::CONTENT_TYPE, "image/gif"),
            (header::CONNECTION, connection),
        ],
        GIF,
    )
}

/// Runs `serve` on a listener of its own, on a thread and runtime of its own (pace runs its
/// own runtime on the test's thread), and returns the listener's address.
fn listen<F, Fut>(serve: F) -> SocketAddr
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send");
            serve(listener).await;
        });
    });
    rx.recv().expect("address")
}

/// Serves `server` through axum.
fn serve(server: Arc<Server>) -> SocketAddr {
    listen(|listener| async move {
        let app = Router::new()
            .route("/matomo.php", get(track))
            .with_state(server);
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("serve");
    })
}

/// A server that runs `answer` on each connection it accepts, for answers axum will not give.
fn raw_server<F, Fut>(answer: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    listen(|listener| async move {
        loop {
            let (stream, _) = listener.accept().await.expect("accept");
            tokio::spawn(answer(stream));
        }
    })
}

/// Reads one request head from `stream` (into `buf`, consumed); false at the end of the stream.
async fn read_head(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> bool {
    use tokio::io::AsyncReadExt as _;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            return true;
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// An address nothing accepts connections on, held (bound, not listening) so no other test
/// gets it meanwhile.
fn refusing_addr() -> (socket2::Socket, SocketAddr) {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any.into()).expect("bind");
    let addr = socket
        .local_addr()
        .expect("addr")
        .as_socket()
        .expect("an IP address");
    (socket, addr)
}

/// `pace`'s arguments as its command line gives them: 8 connections, 100 distinct hits, a 5 s
/// timeout, the rest at their defaults.
fn args(addr: SocketAddr, rate: f64, duration: f64) -> PaceArgs {
    let cli = Cli::try_parse_from([
        "matomo-loadgen".to_owned(),
        "pace".into(),
        format!("--target=http://{addr}/matomo.php"),
        format!("--rate={rate}"),
        format!("--duration={duration}"),
        "--connections=8".into(),
        "--distinct-hits=100".into(),
        "--timeout=5".into(),
    ])
    .expect("a valid command line");
    match cli.command {
        Command::Pace(args) => args,
        other => panic!("pace expected, got {other:?}"),
    }
}

#[test]
fn every_hit_due_is_sent_and_answered() {
    let server = Arc::new(Server::default());
    let addr = serve(Arc::clone(&server));
    let mut a = args(addr, 2000.0, 1.0);
    a.warmup_secs = 0.25;
    let o = command::execute(&a).expect("run");
    assert_eq!((o.offered, o.accepted, o.failed), (2000, 2000, 0));
    assert_eq!(server.hits.load(Ordering::SeqCst), 2000);
    assert!(server.odd.lock().unwrap().is_empty(), "{:?}", server.odd);
    // Only the hits due after the warm-up are in the latency.
    assert_eq!(o.latency.len(), 1500);
    assert!(o.first_failure.is_none());
    let line = command::summary(&o, a.warmup_secs);
    assert!(
        line.starts_with("accepted 2000 of 2000 offered hits (")
            && line.contains(" after the first 0.25 s p50 ")
            && line.contains(" ms p99 "),
        "{line}"
    );
}

#[test]
fn failures_are_counted_and_named() {
    let server = Arc::new(Server {
        fail_every: 4,
        ..Server::default()
    });
    let addr = serve(Arc::clone(&server));
    let o = command::execute(&args(addr, 400.0, 1.0)).expect("run");
    assert_eq!((o.offered, o.accepted, o.failed), (400, 300, 100));
    assert_eq!(o.first_failure.as_deref(), Some("status 400"));
    // A whole 400 answer leaves its connection open for the next hit.
    assert!(
        server.peers.lock().unwrap().len() <= 8,
        "{:?}",
        server.peers
    );
    assert_eq!(o.latency.len(), 300, "answered with 2xx only");
}

#[test]
fn connections_the_server_closes_are_opened_again() {
    let server = Arc::new(Server {
        close: true,
        ..Server::default()
    });
    let addr = serve(Arc::clone(&server));
    let o = command::execute(&args(addr, 500.0, 0.5)).expect("run");
    assert_eq!((o.offered, o.accepted, o.failed), (250, 250, 0));
    let peers = server.peers.lock().unwrap().len();
    assert!(
        peers >= 200,
        "{peers} connections for 250 hits: one per hit expected"
    );
}

#[test]
fn an_unreachable_target_fails_every_hit() {
    let (_held, addr) = refusing_addr();
    let o = command::execute(&args(addr, 200.0, 0.25)).expect("run");
    assert_eq!((o.offered, o.accepted, o.failed), (50, 0, 50));
    let line = command::summary(&o, 0.0);
    assert!(
        line.contains("; latency: no hit accepted;") && !line.contains(" p99 "),
        "{line}"
    );
    let why = o.first_failure.expect("a failure");
    assert!(why.starts_with("connection: "), "{why}");
}

/// A server answering after 50 ms, and `pace`'s arguments for 50 hits over 0.5 s on one
/// connection to it: the hits queue for the connection.
fn slow_single_connection() -> (Arc<Server>, PaceArgs) {
    let server = Arc::new(Server {
        delay: Duration::from_millis(50),
        ..Server::default()
    });
    let addr = serve(Arc::clone(&server));
    let mut a = args(addr, 100.0, 0.5);
    a.connections = 1;
    (server, a)
}

/// One connection, answers that take 50 ms, a hit due every 10 ms: the hits queue for the
/// connection and their latency grows with the queue, from the due time — a generator that
/// measured from the send would report ~50 ms throughout.
#[test]
fn waiting_for_a_free_connection_is_part_of_the_latency() {
    let (_server, mut a) = slow_single_connection();
    let o = command::execute(&a).expect("run");
    assert_eq!((o.offered, o.accepted, o.dropped), (50, 50, 0));
    // The last hit is due at 0.49 s and answered at ~2.5 s.
    assert!(o.latency.max() > 1_500_000, "max {} µs", o.latency.max());
    assert!(o.late >= 40, "{} late sends", o.late);
    // Late because the connection was busy, not the dispatcher: each waited after it was
    // queued. From its send, each hit took the server's ~50 ms only.
    assert!(
        o.waited >= 40 && o.waited <= o.late,
        "{} of {}",
        o.waited,
        o.late
    );
    assert_eq!(o.service.len(), o.latency.len());
    assert!(
        (50_000..500_000).contains(&o.service.value_at_quantile(0.99)),
        "from the send: p99 {} µs",
        o.service.value_at_quantile(0.99)
    );
    let line = command::summary(&o, 0.0);
    assert!(
        line.contains("late sends ") && line.contains(" waited for a free connection)"),
        "{line}"
    );
    assert!(
        line.contains("(from the send instead of the due time: median "),
        "{line}"
    );

    // The same with room for 5 waiting hits: the rest are dropped, counted, and not sent.
    let server = Arc::new(Server {
        delay: Duration::from_millis(50),
        ..Server::default()
    });
    let addr = serve(Arc::clone(&server));
    a.target = format!("http://{addr}/matomo.php");
    a.max_queued = 5;
    let o = command::execute(&a).expect("run");
    assert_eq!(o.offered, 50);
    assert_eq!(o.accepted + o.dropped, 50);
    assert!(o.dropped >= 30, "{} dropped", o.dropped);
    assert_eq!(server.hits.load(Ordering::SeqCst), o.accepted);
    assert!(
        command::summary(&o, 0.0).contains(&format!(", dropped {}, ", o.dropped)),
        "{}",
        command::summary(&o, 0.0)
    );
}

/// With `--slow-log`, every measured hit answered later than `--slow-ms` after its due time is
/// written down, sorted by due time, with when it was sent and answered; without, none is kept.
#[test]
fn slow_hits_are_written_down_with_their_times() {
    let (_server, mut a) = slow_single_connection();
    let o = command::execute(&a).expect("run");
    assert!(o.slow.is_empty() && o.latency.max() > 1_000_000);

    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("slow.txt");
    a.slow_log = Some(path.clone());
    a.slow_ms = 1000.0;
    let before = pace::monotonic_now().expect("the clock");
    let o = command::execute(&a).expect("run");
    let after = pace::monotonic_now().expect("the clock");
    let text = std::fs::read_to_string(&path).expect("the slow log");
    let mut lines = text.lines();
    let header = lines.next().expect("a header");
    assert!(
        header.starts_with("# hits answered more than 1000 ms"),
        "{header}"
    );
    // The run's start on CLOCK_MONOTONIC, to the microsecond, between the readings around it.
    let start = lines.next().expect("the start's line");
    let seconds: f64 = start
        .strip_prefix("# the run's start: CLOCK_MONOTONIC ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{start}"));
    assert!(
        (before.as_secs_f64() - 1e-6..=after.as_secs_f64()).contains(&seconds),
        "{seconds} not within {before:?}..{after:?}"
    );
    assert!(
        (o.start_monotonic.as_secs_f64() - seconds).abs() < 2e-6,
        "{seconds}"
    );
    // The start, not the end: the run's length fits between it and the reading after.
    assert!(
        seconds + o.elapsed.as_secs_f64() <= after.as_secs_f64() + 1e-6,
        "{seconds} + {:?} after {after:?}",
        o.elapsed
    );
    let hits: Vec<[u64; 3]> = lines
        .map(|l| {
            let v: Vec<u64> = l.split(' ').map(|n| n.parse().expect(l)).collect();
            [v[0], v[1], v[2]]
        })
        .collect();
    // The latency grows from ~50 ms to ~2.5 s over the 50 hits: the later half or so is slow.
    assert_eq!(hits.len(), o.slow.len());
    assert!((10..50).contains(&hits.len()), "{} slow hits", hits.len());
    assert!(
        hits.windows(2).all(|w| w[0][0] <= w[1][0]),
        "sorted by due time"
    );
    for [due, sent, answered] in &hits {
        assert!(due <= sent && sent < answered, "{due} {sent} {answered}");
        assert!(answered - due > 1_000_000, "{due} {answered}");
    }
    // The slowest hit is the last one due, and the histogram saw the same latency.
    let [due, _, answered] = hits[hits.len() - 1];
    let max = o.latency.max();
    assert!(
        (answered - due).abs_diff(max) <= max / 500,
        "{} against {max}",
        answered - due
    );

    a.slow_ms = -1.0;
    let e = command::execute(&a).expect_err("a negative threshold");
    assert!(
        e.to_string().contains("-1 is not a number of milliseconds"),
        "{e}"
    );
    a.slow_ms = 1.0;
    a.slow_log = Some(dir.path().join("no such folder").join("slow.txt"));
    let e = command::execute(&a).expect_err("an unwritable slow log");
    assert!(e.to_string().contains("cannot write the slow hits"), "{e}");
}

#[test]
fn settings_that_cannot_run_are_refused() {
    let settings = PaceSettings {
        addr: "127.0.0.1:9".parse().unwrap(),
        rate: 0.0,
        duration: Duration::from_secs(1),
        warmup: Duration::ZERO,
        connections: 1,
        timeout: Duration::from_secs(1),
        max_queued: 10,
        slow: None,
    };
    let request = || vec![b"GET / HTTP/1.1\r\n\r\n".to_vec()];
    assert!(pace::run(&settings, request()).is_err());
    let no_connections = PaceSettings {
        rate: 10.0,
        connections: 0,
        ..settings.clone()
    };
    assert!(pace::run(&no_connections, request()).is_err());
    let no_room = PaceSettings {
        rate: 10.0,
        max_queued: 0,
        ..settings.clone()
    };
    assert!(pace::run(&no_room, request()).is_err());
    let endless = PaceSettings {
        rate: 1e12,
        ..settings.clone()
    };
    assert!(pace::run(&endless, request()).is_err());
    let fine = PaceSettings {
        rate: 10.0,
        ..settings
    };
    assert!(pace::run(&fine, Vec::new()).is_err());
}

/// The binary's exit code: 0 when every hit due was accepted, 1 when some failed, 2 when the
/// run could not be done.
#[test]
fn the_exit_code_says_whether_every_hit_was_accepted() {
    let exe = env!("CARGO_BIN_EXE_matomo-loadgen");
    let pace = |target: String, rate: &str| {
        std::process::Command::new(exe)
            .args(["pace", "--target", &target, "--rate", rate])
            .args(["--duration", "0.2", "--connections", "2"])
            .output()
            .expect("matomo-loadgen runs")
    };
    let server = Arc::new(Server::default());
    let addr = serve(Arc::clone(&server));
    let ok = pace(format!("http://{addr}/matomo.php"), "100");
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stderr).starts_with("accepted 20 of 20 offered hits"));

    let (_held, unreachable) = refusing_addr();
    let failed = pace(format!("http://{unreachable}/matomo.php"), "100");
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");
    assert!(String::from_utf8_lossy(&failed.stderr).contains(", failed 20, "));

    let refused = pace(format!("http://{addr}/matomo.php"), "0");
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
}

/// A server that stops answering (it reads the requests and never writes) holds no hit longer
/// than `--timeout` from its due time: the run ends about then, every hit failed, and the hits
/// that waited out the timeout for a connection were not sent at all.
#[test]
fn a_silent_target_holds_the_run_no_longer_than_the_timeout() {
    let addr = raw_server(|mut stream| async move {
        let mut buf = Vec::new();
        while read_head(&mut stream, &mut buf).await {}
    });
    let mut a = args(addr, 100.0, 0.5);
    a.connections = 1;
    a.timeout = 0.3;
    let o = command::execute(&a).expect("run");
    assert_eq!((o.offered, o.accepted, o.failed), (50, 0, 50));
    // Without the bound: 50 hits one after the other, 0.3 s each, 15 s.
    assert!(o.elapsed < Duration::from_secs(5), "{:?}", o.elapsed);
    let line = command::summary(&o, 0.0);
    assert!(line.contains("failed 50,"), "{line}");
}

/// A connection the server closes after answering, with the answer saying keep-alive (as an
/// idle timeout does): the next hit on it finds it closed, and goes again on a new one.
#[test]
fn a_kept_alive_connection_closed_while_idle_is_replaced_and_the_hit_sent_again() {
    let addr = raw_server(|mut stream| async move {
        use tokio::io::AsyncWriteExt as _;
        let mut buf = Vec::new();
        if read_head(&mut stream, &mut buf).await {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Dropped: closed with nothing more said.
    });
    let mut a = args(addr, 40.0, 0.5);
    a.connections = 1;
    let o = command::execute(&a).expect("run");
    assert_eq!(
        (o.offered, o.accepted, o.failed),
        (20, 20, 0),
        "{:?}",
        o.first_failure
    );
}

/// Interim answers (103 Early Hints) before the real one are skipped, and each hit gets its own
/// final answer.
#[test]
fn interim_answers_are_skipped() {
    let hits = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&hits);
    let addr = raw_server(move |mut stream| {
        let seen = Arc::clone(&seen);
        async move {
            use tokio::io::AsyncWriteExt as _;
            let mut buf = Vec::new();
            while read_head(&mut stream, &mut buf).await {
                // Every other hit is refused, so an answer taken for the wrong hit shows.
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let status = if n.is_multiple_of(2) {
                    "200 OK"
                } else {
                    "400 Bad Request"
                };
                let answer = format!(
                    "HTTP/1.1 103 Early Hints\r\nLink: </x.js>\r\n\r\nHTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n"
                );
                if stream.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    });
    let mut a = args(addr, 200.0, 0.5);
    a.connections = 1;
    let o = command::execute(&a).expect("run");
    assert_eq!((o.offered, o.accepted, o.failed), (100, 50, 50));
    assert_eq!(o.first_failure.as_deref(), Some("status 400"));
    assert_eq!(hits.load(Ordering::SeqCst), 100);
}
