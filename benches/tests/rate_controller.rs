//! The rate controller against tiny local tracking servers: the achieved rate matches the
//! intended one, every visitor's hits reach one server under each strategy, only 2xx counts as
//! accepted, bulk answers are read, and a stalled server shows up as latency and drops.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::any;
use axum::Router;
use matomo_loadgen::client::Mode;
use matomo_loadgen::ledger::Ledger;
use matomo_loadgen::runner::{run_load, LiveGauges, LoadSettings};
use matomo_loadgen::schedule::RateProfile;
use matomo_loadgen::tag::RunTag;
use matomo_loadgen::target::{parse_targets, Distribution};
use matomo_loadgen::visitor::{Mix, ModelConfig, VisitorModel};

const GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

/// What a test server saw and how it behaves.
#[derive(Default)]
struct Server {
    started: Mutex<Option<Instant>>,
    arrivals: Mutex<Vec<Duration>>,
    visitors: Mutex<HashSet<String>>,
    hits: AtomicU64,
    fail_every: u64,
    delay: Duration,
}

fn visitor_of(query: &str) -> Option<String> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("_id="))
        .map(str::to_owned)
}

async fn track(
    State(s): State<Arc<Server>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> impl IntoResponse {
    let at = s
        .started
        .lock()
        .unwrap()
        .get_or_insert_with(Instant::now)
        .elapsed();
    s.arrivals.lock().unwrap().push(at);
    if !s.delay.is_zero() {
        tokio::time::sleep(s.delay).await;
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    if text.contains("\"requests\"") {
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let entries = v["requests"].as_array().unwrap();
        for e in entries {
            s.visitors
                .lock()
                .unwrap()
                .extend(visitor_of(e.as_str().unwrap().trim_start_matches('?')));
        }
        s.hits.fetch_add(entries.len() as u64, Ordering::Relaxed);
        let body = serde_json::json!({"status": "success", "tracked": entries.len(), "invalid": 0})
            .to_string();
        return (
            StatusCode::OK,
            [("content-type", "application/json")],
            body.into_bytes(),
        );
    }
    let params = q.unwrap_or(text);
    s.visitors.lock().unwrap().extend(visitor_of(&params));
    let n = s.hits.fetch_add(1, Ordering::Relaxed) + 1;
    if s.fail_every > 0 && n % s.fail_every == 0 {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("content-type", "image/gif")],
            GIF.to_vec(),
        );
    }
    (
        StatusCode::OK,
        [("content-type", "image/gif")],
        GIF.to_vec(),
    )
}

async fn spawn(server: Server) -> (String, Arc<Server>) {
    let state = Arc::new(server);
    let app = Router::new()
        .route("/matomo.php", any(track))
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/matomo.php"), state)
}

fn model(distribution: Distribution, weights: Vec<u32>, carry: bool) -> VisitorModel {
    let cfg = ModelConfig {
        sites: vec![(1, 1)],
        mix: Mix::default(),
        mean_hits_per_visit: 5.0,
        returning_share: 0.3,
        concurrent_visits: 50,
        page_base: "https://www.example.com".into(),
        goal_ids: vec![1],
        distribution,
        target_weights: weights,
        params_carry_headers: carry,
        epoch: 1_790_000_000,
        run_tag: RunTag::new("Tt", "test").unwrap(),
    };
    VisitorModel::new(cfg, 11)
}

fn settings(urls: &[String], mode: Mode) -> LoadSettings {
    LoadSettings {
        targets: parse_targets(urls, &[]).unwrap(),
        mode,
        bulk_size: 10,
        timeout: Duration::from_secs(5),
        max_in_flight: 500,
        late_threshold: Duration::from_millis(50),
        warmup: Duration::ZERO,
        token_auth: None,
        progress: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn achieved_rate_matches_intended_rate() {
    let (url, server) = spawn(Server::default()).await;
    let profile = RateProfile::constant(200.0, Duration::from_secs(3)).unwrap();
    let ledger = Arc::new(Ledger::new(1_000));
    let start = Instant::now();
    let out = run_load(
        &settings(&[url], Mode::Get),
        &profile,
        &mut model(Distribution::RoundRobin, vec![1], false),
        Arc::clone(&ledger),
        Arc::new(LiveGauges::default()),
        start,
    )
    .await
    .unwrap();
    let t = &out.stats.total;
    assert_eq!(t.offered_hits, 600);
    assert_eq!(t.accepted_hits, 600, "{:?}", t.outcomes);
    assert_eq!(server.hits.load(Ordering::Relaxed), 600);
    // the middle two seconds as the server saw them: 400 hits, within 5%
    let arrivals = server.arrivals.lock().unwrap().clone();
    let middle = arrivals
        .iter()
        .filter(|a| a.as_secs_f64() >= 0.5 && a.as_secs_f64() < 2.5)
        .count();
    assert!(
        (380..=420).contains(&middle),
        "server saw {middle} hits in 2 s at 200/s"
    );
    let total_span = arrivals.last().unwrap().as_secs_f64();
    assert!(
        (2.9..3.3).contains(&total_span),
        "600 hits at 200/s span {total_span} s"
    );
    // by due time, 200 a second; answers arriving after 3 s may add seconds that offer nothing
    let offered: Vec<u64> = out.stats.seconds.iter().map(|s| s.offered_hits).collect();
    assert_eq!(offered[..3], [200, 200, 200]);
    assert!(offered[3..].iter().all(|o| *o == 0), "{offered:?}");
    assert!(
        t.latency.value_at_quantile(0.99) < 200_000,
        "p99 {} µs on a local server",
        t.latency.value_at_quantile(0.99)
    );
    for seq in 0..600 {
        assert!(ledger.accepted_at(seq).is_some(), "hit {seq} accepted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitors_stay_on_their_server_and_metrics_are_per_target() {
    for strategy in [
        Distribution::RoundRobin,
        Distribution::Weighted,
        Distribution::Random,
    ] {
        let (a, sa) = spawn(Server::default()).await;
        let (b, sb) = spawn(Server::default()).await;
        let profile = RateProfile::constant(400.0, Duration::from_secs(2)).unwrap();
        let mut s = settings(&[a, b], Mode::Get);
        s.targets[0].weight = 3;
        let out = run_load(
            &s,
            &profile,
            &mut model(strategy, vec![3, 1], false),
            Arc::new(Ledger::new(1_000)),
            Arc::new(LiveGauges::default()),
            Instant::now(),
        )
        .await
        .unwrap();
        let va = sa.visitors.lock().unwrap().clone();
        let vb = sb.visitors.lock().unwrap().clone();
        assert!(
            !va.is_empty() && !vb.is_empty(),
            "{strategy}: both servers get visitors"
        );
        assert!(
            va.is_disjoint(&vb),
            "{strategy}: a visitor reached both servers"
        );
        assert_eq!(
            out.stats.targets[0].accepted_hits,
            sa.hits.load(Ordering::Relaxed)
        );
        assert_eq!(
            out.stats.targets[1].accepted_hits,
            sb.hits.load(Ordering::Relaxed)
        );
        assert_eq!(out.stats.total.accepted_hits, 800);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_2xx_counts_as_accepted() {
    let (url, _server) = spawn(Server {
        fail_every: 4,
        ..Default::default()
    })
    .await;
    let profile = RateProfile::constant(200.0, Duration::from_secs(1)).unwrap();
    let ledger = Arc::new(Ledger::new(500));
    let out = run_load(
        &settings(&[url], Mode::Post),
        &profile,
        &mut model(Distribution::RoundRobin, vec![1], false),
        Arc::clone(&ledger),
        Arc::new(LiveGauges::default()),
        Instant::now(),
    )
    .await
    .unwrap();
    let t = &out.stats.total;
    assert_eq!(t.offered_hits, 200);
    assert_eq!(t.accepted_hits, 150);
    assert_eq!(t.failed_hits, 50);
    assert_eq!(t.outcomes.get("5xx"), Some(&50));
    assert_eq!(t.outcomes.get("2xx"), Some(&150));
    assert_eq!(
        (0..200)
            .filter(|s| ledger.accepted_at(*s).is_some())
            .count(),
        150
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_requests_carry_bulk_size_hits() {
    let (url, server) = spawn(Server::default()).await;
    let profile = RateProfile::constant(500.0, Duration::from_secs(1)).unwrap();
    let out = run_load(
        &settings(&[url], Mode::Bulk),
        &profile,
        &mut model(Distribution::RoundRobin, vec![1], true),
        Arc::new(Ledger::new(1_000)),
        Arc::new(LiveGauges::default()),
        Instant::now(),
    )
    .await
    .unwrap();
    assert_eq!(out.stats.total.requests, 50);
    assert_eq!(out.stats.total.accepted_hits, 500);
    assert_eq!(server.hits.load(Ordering::Relaxed), 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_shows_as_latency_and_drops_not_as_a_slower_schedule() {
    let (url, server) = spawn(Server {
        delay: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let profile = RateProfile::constant(100.0, Duration::from_secs(1)).unwrap();
    let mut s = settings(&[url], Mode::Get);
    s.max_in_flight = 10;
    let started = Instant::now();
    let out = run_load(
        &s,
        &profile,
        &mut model(Distribution::RoundRobin, vec![1], false),
        Arc::new(Ledger::new(500)),
        Arc::new(LiveGauges::default()),
        started,
    )
    .await
    .unwrap();
    let t = &out.stats.total;
    // 10 in flight, each held 300 ms, one due every 10 ms: most hits are dropped, and counted
    assert_eq!(t.offered_hits, 100);
    assert!(t.dropped_hits >= 50, "dropped {}", t.dropped_hits);
    assert_eq!(t.dropped_hits + t.sent_hits, 100);
    assert_eq!(server.hits.load(Ordering::Relaxed), t.sent_hits);
    assert!(
        t.latency.value_at_quantile(0.5) >= 300_000,
        "latency includes the stall"
    );
    // the schedule did not stretch: the load took about its 1 s plus one stall
    assert!(
        started.elapsed() < Duration::from_millis(1_800),
        "{:?}",
        started.elapsed()
    );
    let map: HashMap<String, u64> = t.outcomes.clone().into_iter().collect();
    assert_eq!(map.get("2xx").copied().unwrap_or(0), t.sent_hits);
}
