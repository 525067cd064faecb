//! The fault-injection suite: the real `matomo-ingest` and `matomo-worker` binaries in front of a
//! private Redis and MariaDB (and HAProxy), broken on purpose under load — a worker killed with
//! SIGKILL at random instants, Redis stopped and restarted, MariaDB killed and restarted, an
//! ingest node drained and killed behind HAProxy, a MySQL table locked for seconds. After each
//! fault the queues drain and every hit answered 2xx must be stored exactly once; each scenario
//! prints `fault <name>: accepted N stored N lost N duplicated N (…)` and appends
//! `scenario <name>: accepted A stored S lost L duplicated D` to the summary file
//! (`MATOMO_FAULTS_SUMMARY`, else `<target>/fault-summary.txt`), which `deploy/local/test`
//! prints at the end of its run, so the figures show in CI output even though cargo captures
//! the output of passing tests.
//!
//! Needs `redis-server`, `redis-cli`, `mariadbd`, `mariadb-install-db` and `haproxy` on the PATH;
//! a missing program fails the test with its name. Scenarios run one at a time (2-core CI).

mod faults {
    pub mod load;
    pub mod services;
}
use faults::{load, services};

use std::path::PathBuf;
use std::sync::atomic::AtomicU16;
use std::sync::Arc;
use std::time::Duration;

use load::{Ledger, Reconciliation};
use mysql_async::prelude::Queryable;
use rand::Rng;
use services::{Mysql, Proc, Redis};

/// One scenario at a time: the machine has two cores and every scenario runs a whole tier.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Longest wait for the queues to drain after a fault.
const DRAIN_LIMIT: Duration = Duration::from_secs(90);

/// A private Redis + MariaDB with the tier's configuration file, in a temporary folder that is
/// kept (and named) when the scenario fails, so its logs can be read.
struct Stack {
    dir: Option<tempfile::TempDir>,
    redis: Redis,
    mysql: Mysql,
    config: PathBuf,
    pool: mysql_async::Pool,
}

impl Stack {
    async fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("matomo-faults-")
            .tempdir()
            .expect("temporary folder");
        let redis = Redis::start(dir.path()).await;
        let mysql = Mysql::start(dir.path()).await;
        let config = dir.path().join("tier.toml");
        std::fs::write(&config, services::tier_toml(redis.port, mysql.port)).unwrap();
        let pool = mysql.pool(Some(services::DB_NAME));
        Self {
            dir: Some(dir),
            redis,
            mysql,
            config,
            pool,
        }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.as_ref().unwrap().path()
    }

    async fn ingest(&self, name: &str, port: u16) -> Proc {
        services::start_ingest(self.path(), &self.config, name, port).await
    }

    async fn ingest_with(&self, name: &str, port: u16, settings: &[String]) -> Proc {
        services::start_ingest_with(self.path(), &self.config, name, port, settings).await
    }

    async fn worker(&self, name: &str) -> Proc {
        services::start_worker(self.path(), &self.config, name).await
    }

    async fn reconcile(&self, ledger: &Ledger) -> Reconciliation {
        load::drain_and_reconcile(ledger, &self.redis, &self.pool, DRAIN_LIMIT).await
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                eprintln!("scenario failed: logs kept in {}", dir.keep().display());
            }
        }
    }
}

/// Prints the scenario's line and fails on any loss or duplicate, or when too few hits were
/// accepted for the scenario to mean anything.
fn verdict(name: &str, r: &Reconciliation, min_accepted: usize) {
    println!("{}", r.line(name));
    record_summary(name, r);
    assert!(
        r.accepted >= min_accepted,
        "{name}: only {} hits accepted (expected at least {min_accepted})",
        r.accepted
    );
    assert_eq!(r.lost, 0, "{name}: accepted hits lost");
    assert_eq!(r.duplicated, 0, "{name}: hits stored more than once");
}

/// Where the per-scenario lines go: `MATOMO_FAULTS_SUMMARY`, else `<target>/fault-summary.txt`.
fn summary_path() -> PathBuf {
    if let Ok(path) = std::env::var("MATOMO_FAULTS_SUMMARY") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current exe");
    // <target>/<profile>/deps/faults-<hash>
    exe.ancestors()
        .nth(3)
        .map_or_else(std::env::temp_dir, std::path::Path::to_path_buf)
        .join("fault-summary.txt")
}

/// Appends the scenario's line to the summary file (a failure to write is reported, not fatal).
fn record_summary(name: &str, r: &Reconciliation) {
    use std::io::Write as _;
    let line = format!(
        "scenario {name}: accepted {} stored {} lost {} duplicated {}\n",
        r.accepted, r.stored, r.lost, r.duplicated
    );
    let path = summary_path();
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        eprintln!("cannot append to {}: {e}", path.display());
    }
}

fn load_port(port: u16) -> Arc<AtomicU16> {
    Arc::new(AtomicU16::new(port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_worker_kill9_at_random_instants() {
    let _serial = SERIAL.lock().await;
    let stack = Stack::start().await;
    let port = services::free_port();
    let _ingest = stack.ingest("ingest", port).await;
    let mut worker = stack.worker("worker-0").await;

    let (hits, rate) = (1200, 120.0);
    let ledger = Ledger::new('k', hits);
    let sender = tokio::spawn(load::send(ledger.clone(), load_port(port), hits, rate));
    let trials = 8;
    for trial in 1..=trials {
        let pause = rand::rng().random_range(200..1100);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        worker.kill9();
        worker = stack.worker(&format!("worker-{trial}")).await;
    }
    sender.await.unwrap();
    let r = stack.reconcile(&ledger).await;
    drop(worker);
    verdict("worker-kill9", &r, hits * 9 / 10);
    println!("fault worker-kill9: {trials} SIGKILLs of the worker at random instants");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_redis_stopped_and_restarted() {
    redis_down_and_up("redis-restart", 'r', false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_redis_killed_and_restarted() {
    redis_down_and_up("redis-kill9-restart", 'q', true).await;
}

/// Redis goes away for 2 s under load (SIGTERM, or SIGKILL when `kill`) and comes back on the
/// same data folder.
async fn redis_down_and_up(name: &str, letter: char, kill: bool) {
    let _serial = SERIAL.lock().await;
    let mut stack = Stack::start().await;
    let port = services::free_port();
    let _ingest = stack.ingest("ingest", port).await;
    let _worker = stack.worker("worker").await;

    let (hits, rate) = (900, 100.0);
    let ledger = Ledger::new(letter, hits);
    let sender = tokio::spawn(load::send(ledger.clone(), load_port(port), hits, rate));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    if kill {
        stack.redis.kill9();
    } else {
        stack.redis.stop().await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stack.redis.restart().await;
    sender.await.unwrap();
    let r = stack.reconcile(&ledger).await;
    verdict(name, &r, hits / 2);
    assert!(
        r.refused + r.failed > 0,
        "every hit was accepted although Redis was down for 2 s (no spool is configured)"
    );
}

/// Redis stopped for 3 s under load in front of an ingest node with a local spool: the node keeps
/// answering, spools, and replays when Redis is back. Only writes already handed to the dying
/// connection may be refused (503, outcome unknown: counted by the node), and every accepted hit
/// is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_redis_down_with_spool() {
    let _serial = SERIAL.lock().await;
    let mut stack = Stack::start().await;
    let port = services::free_port();
    let spool = stack.path().join("spool");
    let settings = [
        format!("ingest.spool.dir={}", spool.display()),
        "ingest.spool.fsync=always".to_owned(),
    ];
    let _ingest = stack.ingest_with("ingest", port, &settings).await;
    let _worker = stack.worker("worker").await;

    let (hits, rate) = (900, 100.0);
    let ledger = Ledger::new('p', hits);
    let sender = tokio::spawn(load::send(ledger.clone(), load_port(port), hits, rate));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stack.redis.stop().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stack.redis.restart().await;
    sender.await.unwrap();
    let r = stack.reconcile(&ledger).await;
    let spooled = services::metric(port, "ingest_spool_written_entries_total").await;
    let replayed = services::metric(port, "ingest_spool_replayed_entries_total").await;
    let unknown = services::metric(port, "ingest_redis_unknown_outcome_writes_total").await;
    println!(
        "fault redis-down-spool: spooled {spooled:?} replayed {replayed:?} refused with unknown outcome {unknown:?}"
    );
    verdict("redis-down-spool", &r, hits * 9 / 10);
    assert!(
        spooled.unwrap_or(0.0) >= 100.0,
        "Redis was down for 3 s at 100 hits/s but the spool took {spooled:?} entries"
    );
    assert_eq!(spooled, replayed, "every spooled entry was replayed");
    assert_eq!(r.failed, 0, "requests failed while Redis was down");
    assert!(
        r.refused as f64 <= unknown.unwrap_or(0.0),
        "{} hits refused, but only {unknown:?} writes had an unknown outcome",
        r.refused
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_mysql_killed_and_restarted() {
    let _serial = SERIAL.lock().await;
    let mut stack = Stack::start().await;
    let port = services::free_port();
    let _ingest = stack.ingest("ingest", port).await;
    let _worker = stack.worker("worker").await;

    let (hits, rate) = (900, 100.0);
    let ledger = Ledger::new('m', hits);
    let sender = tokio::spawn(load::send(ledger.clone(), load_port(port), hits, rate));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stack.mysql.kill9();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stack.mysql.restart().await;
    sender.await.unwrap();
    let r = stack.reconcile(&ledger).await;
    // MySQL is not on the ingest path: every hit must be acknowledged.
    verdict("mysql-kill9-restart", &r, hits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_slow_mysql_table_locked() {
    let _serial = SERIAL.lock().await;
    let stack = Stack::start().await;
    let port = services::free_port();
    let _ingest = stack.ingest("ingest", port).await;
    let _worker = stack.worker("worker").await;

    let (hits, rate) = (800, 100.0);
    let ledger = Ledger::new('s', hits);
    let sender = tokio::spawn(load::send(ledger.clone(), load_port(port), hits, rate));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut locker = stack.pool.get_conn().await.unwrap();
    locker
        .query_drop(format!(
            "LOCK TABLES {0}log_link_visit_action WRITE, {0}log_visit WRITE",
            services::PREFIX
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The worker's writes must really be waiting on the lock, or the scenario proves nothing.
    let waiting: Option<u64> = locker
        .query_first(
            "SELECT COUNT(*) FROM information_schema.processlist \
             WHERE state LIKE 'Waiting for table%'",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    locker.query_drop("UNLOCK TABLES").await.unwrap();
    drop(locker);
    assert!(
        waiting.unwrap_or(0) > 0,
        "no connection waited on the locked tables: the worker was not slowed down"
    );
    sender.await.unwrap();
    let r = stack.reconcile(&ledger).await;
    verdict("slow-mysql", &r, hits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_ingest_node_drained_and_killed_behind_haproxy() {
    let _serial = SERIAL.lock().await;
    let stack = Stack::start().await;
    let (port1, port2) = (services::free_port(), services::free_port());
    let ingest1 = stack.ingest("ingest1", port1).await;
    let ingest2 = stack.ingest("ingest2", port2).await;
    let _worker = stack.worker("worker").await;
    let (_haproxy, front) = services::start_haproxy(stack.path(), port1, port2).await;
    // Both nodes must be up in HAProxy before the load starts (rise 2, checks every second).
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Phase 1: SIGTERM one node under load: it fails /readyz, HAProxy stops routing to it, it
    // finishes what it has and exits. No request may fail.
    let (hits, rate) = (700, 100.0);
    let drained = Ledger::new('d', hits);
    let sender = tokio::spawn(load::send(drained.clone(), load_port(front), hits, rate));
    tokio::time::sleep(Duration::from_millis(2000)).await;
    ingest1.stop(Duration::from_secs(15)).await;
    sender.await.unwrap();
    let ingest1 = stack.ingest("ingest1-again", port1).await;
    let r = stack.reconcile(&drained).await;
    verdict("ingest-drain-haproxy", &r, hits);
    assert_eq!(
        r.refused + r.failed,
        0,
        "requests failed while a node drained behind HAProxy"
    );

    // Phase 2: SIGKILL the other node under load: only requests in flight on it may fail, and
    // none that was answered 2xx may be lost.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let killed = Ledger::new('h', hits);
    let sender = tokio::spawn(load::send(killed.clone(), load_port(front), hits, rate));
    tokio::time::sleep(Duration::from_millis(2000)).await;
    ingest2.kill9();
    sender.await.unwrap();
    let r = stack.reconcile(&killed).await;
    verdict("ingest-kill9-haproxy", &r, hits * 9 / 10);
    drop(ingest1);
}
