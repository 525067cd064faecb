//! Shared set-up of the engine integration tests: an isolated Redis key prefix and MariaDB
//! database per test (both removed when the environment is dropped, even after a panic), entry
//! builders, and a real processor that writes each request into a table of that database inside
//! the engine's transaction.
//!
//! The services must be up (CI starts them); a test fails with a clear message when they are not.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fred::prelude::*;
use matomo_wire::{Params, RequestSet};
use matomo_worker::engine::{BatchProcessor, Engine, EngineOptions, ProcessError, SetResult};
use matomo_worker::metrics::Metrics;
use mysql_async::prelude::*;
use mysql_async::Transaction;
use tokio_util::sync::CancellationToken;

pub const MYSQL_ROOT_URL: &str = "mysql://matomo:matomo@127.0.0.1:3306";

/// One isolated environment.
pub struct TestEnv {
    pub config: tier_config::Config,
    pub redis: Pool,
    pub mysql: mysql_async::Pool,
    pub db: String,
    pub prefix: String,
    owned: bool,
}

fn random_suffix() -> String {
    let n: u64 = rand::random();
    format!("{n:016x}")
}

impl TestEnv {
    /// A fresh database `mt_test_<random>` and Redis prefix, with the test table.
    pub async fn new(num_queues: u16, batch_size: usize) -> TestEnv {
        let redis = tier_config::RedisConfig::default();
        Self::new_on_redis(num_queues, batch_size, redis).await
    }

    /// [`TestEnv::new`] on the Redis `redis` names (a test's own).
    pub async fn new_on_redis(
        num_queues: u16,
        batch_size: usize,
        redis: tier_config::RedisConfig,
    ) -> TestEnv {
        let suffix = random_suffix();
        let db = format!("mt_test_{suffix}");
        let prefix = format!("mt_test_{suffix}:");
        let root = mysql_async::Pool::new(MYSQL_ROOT_URL);
        let mut conn = root.get_conn().await.unwrap_or_else(|e| {
            panic!("MariaDB at 127.0.0.1:3306 (user matomo) is unreachable; the engine tests need the real service: {e}")
        });
        conn.query_drop(format!("CREATE DATABASE `{db}`"))
            .await
            .expect("create test database");
        drop(conn);
        let _ = root.disconnect().await;
        let env = Self::attach_to(&db, &prefix, num_queues, batch_size, true, redis).await;
        let mut conn = env
            .mysql
            .get_conn()
            .await
            .expect("connect to the test database");
        conn.query_drop(
            "CREATE TABLE engine_hits (
                id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
                queue INT NOT NULL,
                seq BIGINT NOT NULL,
                url VARCHAR(255) NOT NULL DEFAULT '',
                time BIGINT NOT NULL
            ) ENGINE=InnoDB",
        )
        .await
        .expect("create engine_hits");
        env
    }

    /// Connects to an existing environment (the crash test's child process).
    pub async fn attach(
        db: &str,
        prefix: &str,
        num_queues: u16,
        batch_size: usize,
        owned: bool,
    ) -> TestEnv {
        let redis = tier_config::RedisConfig::default();
        Self::attach_to(db, prefix, num_queues, batch_size, owned, redis).await
    }

    async fn attach_to(
        db: &str,
        prefix: &str,
        num_queues: u16,
        batch_size: usize,
        owned: bool,
        redis: tier_config::RedisConfig,
    ) -> TestEnv {
        let mut config = tier_config::Config {
            redis,
            ..tier_config::Config::default()
        };
        config.database.dbname = db.to_owned();
        config.database.tables_prefix = "matomo_".into();
        config.queue.key_prefix = prefix.to_owned();
        config.queue.num_queue_workers = num_queues;
        config.queue.num_requests_to_process = batch_size;
        config.worker.pool_size = 2;
        config.worker.lock_ttl = Duration::from_secs(2);
        config.worker.max_batch_wait = Duration::from_millis(200);
        config.worker.idle_sleep = Duration::from_millis(20);
        config.worker.min_backoff = Duration::from_millis(10);
        config.worker.max_backoff = Duration::from_millis(200);
        let redis = matomo_worker::engine::redis::connect(&config)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "Redis at {} is unreachable; the engine tests need the real service: {e}",
                    config.redis_url()
                )
            });
        let mysql = mysql_async::Pool::new(
            mysql_async::Opts::from_url(&config.mysql_url()).expect("mysql url"),
        );
        TestEnv {
            config,
            redis,
            mysql,
            db: db.to_owned(),
            prefix: prefix.to_owned(),
            owned,
        }
    }

    /// Engine options from the test configuration.
    pub fn options(&self) -> EngineOptions {
        EngineOptions::from_config(&self.config)
    }

    /// An engine over `processor` with `opts`.
    pub async fn engine<P: BatchProcessor>(
        &self,
        processor: Arc<P>,
        opts: EngineOptions,
    ) -> (Engine<P>, Arc<Metrics>) {
        let (_, metrics) = matomo_worker::metrics::standalone();
        let engine = Engine::new(
            self.redis.clone(),
            self.mysql.clone(),
            processor,
            opts,
            metrics.clone(),
            CancellationToken::new(),
        )
        .await
        .expect("engine starts");
        (engine, metrics)
    }

    pub fn queue_key(&self, queue: u16) -> String {
        matomo_wire::queue_key(&self.prefix, queue)
    }

    /// RPUSHes raw entries onto a queue.
    pub async fn push(&self, queue: u16, entries: &[Vec<u8>]) {
        for entry in entries {
            let _: i64 = self
                .redis
                .rpush(self.queue_key(queue), Value::Bytes(entry.clone().into()))
                .await
                .expect("rpush");
        }
    }

    pub async fn queue_len(&self, queue: u16) -> u64 {
        self.redis.llen(self.queue_key(queue)).await.expect("llen")
    }

    /// Stored rows `(queue, seq)` in insertion (commit) order.
    pub async fn stored(&self) -> Vec<(u16, i64)> {
        let mut conn = self.mysql.get_conn().await.expect("conn");
        conn.query("SELECT queue, seq FROM engine_hits ORDER BY id")
            .await
            .expect("select hits")
    }

    /// Stored rows of one queue, in order.
    pub async fn stored_seqs(&self, queue: u16) -> Vec<i64> {
        self.stored()
            .await
            .into_iter()
            .filter(|(q, _)| *q == queue)
            .map(|(_, s)| s)
            .collect()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let db = self.db.clone();
        let prefix = self.prefix.clone();
        let redis = self.config.fred_config();
        // Async clean-up cannot run in Drop; a thread with its own runtime does it, so it also
        // happens after a failed assertion.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let root = mysql_async::Pool::new(MYSQL_ROOT_URL);
                if let Ok(mut conn) = root.get_conn().await {
                    let _ = conn
                        .query_drop(format!("DROP DATABASE IF EXISTS `{db}`"))
                        .await;
                }
                let _ = root.disconnect().await;
                if let Ok(config) = redis {
                    if let Ok(client) = Builder::from_config(config).build() {
                        if client.init().await.is_ok() {
                            let keys: Vec<String> = client
                                .custom(fred::cmd!("KEYS"), vec![format!("{prefix}*")])
                                .await
                                .unwrap_or_default();
                            for key in keys {
                                let _: Result<i64, _> = client.del(key).await;
                            }
                            let _ = client.quit().await;
                        }
                    }
                }
            });
        })
        .join();
    }
}

/// The shared golden PHP state (`../shared/golden-php`: Matomo's schema, configuration data
/// and the hit corpus), when present.
pub fn golden_dir() -> Option<std::path::PathBuf> {
    let dir = tier_config::shared_dir()?.join("golden-php");
    dir.join("matomo-state/config-data.sql")
        .is_file()
        .then_some(dir)
}

/// The `matomo-worker` binary, configured from the golden state's `config.ini.php` (in golden
/// folder `dir`) and pointed at `env`'s database (tables `matomo_*`) and Redis key prefix, one
/// queue, warnings only. Callers add their own settings and the subcommand.
pub fn golden_worker_command(env: &TestEnv, dir: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_matomo-worker"));
    cmd.arg("--matomo-config")
        .arg(dir.join("matomo-state/config.ini.php"));
    let settings = [
        "database.host=127.0.0.1".to_string(),
        "database.port=3306".into(),
        "database.username=matomo".into(),
        "database.password=matomo".into(),
        format!("database.dbname={}", env.db),
        "database.tables_prefix=matomo_".into(),
        "redis.host=127.0.0.1".into(),
        "redis.port=6379".into(),
        "redis.database=0".into(),
        format!("queue.key_prefix={}", env.prefix),
        "queue.num_queue_workers=1".into(),
        "log.level=warn".into(),
    ];
    for setting in settings {
        cmd.arg("--set").arg(setting);
    }
    cmd
}

/// Creates Matomo's tables (prefix `matomo_`) and the golden configuration rows (sites, goals,
/// options…) in the test database.
pub async fn load_golden_state(env: &TestEnv, dir: &std::path::Path) {
    let mut conn = env.mysql.get_conn().await.expect("conn");
    for file in ["matomo-state/schema.sql", "matomo-state/config-data.sql"] {
        let sql = std::fs::read_to_string(dir.join(file)).expect("golden sql");
        conn.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("loading {file}: {e}"));
    }
}

/// A request set with one request `{idsite, rec, q, seq, url}` plus `extra`, as ingest writes
/// it (with our entry id), encoded.
pub fn entry(queue: u16, seq: i64, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut set = request_set(queue, seq, extra);
    set.entry_id = Some(format!("{:016x}", rand::random::<u64>()));
    matomo_wire::encode(&set)
}

/// The same request set as PHP would write it (no entry id), not yet encoded.
pub fn request_set(queue: u16, seq: i64, extra: &[(&str, &str)]) -> RequestSet {
    let mut params = Params::new();
    params.insert("idsite".into(), "1".into());
    params.insert("rec".into(), "1".into());
    params.insert("q".into(), queue.to_string().into());
    params.insert("seq".into(), seq.to_string().into());
    params.insert(
        "url".into(),
        format!("http://example.com/page/{seq}").into(),
    );
    for (k, v) in extra {
        params.insert((*k).into(), (*v).into());
    }
    let mut server = Params::new();
    server.insert("REMOTE_ADDR".into(), "10.1.2.3".into());
    RequestSet {
        requests: vec![params],
        server,
        cookie: Params::new(),
        token_auth: None,
        time: chrono::Utc::now().timestamp() - 10,
        entry_id: None,
    }
}

/// A real processor: writes every request into `engine_hits` through the engine's transaction.
/// A request with `poison=1` makes its set fail permanently (after its rows were written, so a
/// missing rollback would show); `drop=1` likewise but without dead letter; `panic=1` panics
/// there instead, and `panic_ahead=1` also panics reading its batch ahead. Optional delay per
/// batch, a number of transient failures to report first, and a per-queue in-flight check.
/// Its read-ahead is the list of the sets' `seq` values, checked against the sets it is handed
/// with.
#[derive(Default)]
pub struct TableProcessor {
    /// Batches read ahead.
    pub read_aheads: AtomicUsize,
    /// Read-aheads handed back with the very sets they were made for.
    pub aheads_used: AtomicUsize,
    /// Read-aheads handed back with other sets (an engine bug).
    pub aheads_mismatched: AtomicUsize,
    pub delay: Duration,
    pub transient_failures: AtomicUsize,
    /// How many times `new_cache` panics before it works (a panic outside the batch).
    pub new_cache_panics: AtomicUsize,
    pub calls: AtomicUsize,
    pub in_flight: Arc<Mutex<HashMap<String, usize>>>,
    pub overlaps: Arc<AtomicUsize>,
}

impl TableProcessor {
    fn enter(&self, sets: &[RequestSet]) -> Vec<String> {
        let mut queues: Vec<String> = sets
            .iter()
            .flat_map(|s| s.requests.iter())
            .filter_map(|r| matomo_wire::param_str(r, "q").map(|q| q.into_owned()))
            .collect();
        queues.sort();
        queues.dedup();
        let mut map = self.in_flight.lock().expect("in-flight map");
        for q in &queues {
            let n = map.entry(q.clone()).or_default();
            *n += 1;
            if *n > 1 {
                self.overlaps.fetch_add(1, Ordering::SeqCst);
            }
        }
        queues
    }

    fn leave(&self, queues: &[String]) {
        let mut map = self.in_flight.lock().expect("in-flight map");
        for q in queues {
            if let Some(n) = map.get_mut(q) {
                *n -= 1;
            }
        }
    }
}

impl BatchProcessor for TableProcessor {
    type Cache = ();
    type Ahead = Vec<Option<String>>;

    fn new_cache(&self) {
        let left = self.new_cache_panics.load(Ordering::SeqCst);
        if left > 0 {
            self.new_cache_panics.store(left - 1, Ordering::SeqCst);
            panic!("test: new_cache panics");
        }
    }

    fn read_ahead(&self, sets: &[RequestSet]) -> Option<Self::Ahead> {
        self.read_aheads.fetch_add(1, Ordering::SeqCst);
        let panics = sets
            .iter()
            .flat_map(|s| s.requests.iter())
            .any(|r| matomo_wire::param_str(r, "panic_ahead").as_deref() == Some("1"));
        assert!(!panics, "test: read-ahead panic");
        Some(seqs(sets))
    }

    async fn process_batch<'a>(
        &'a self,
        tx: &'a mut Transaction<'static>,
        _cache: &'a mut (),
        sets: &'a [RequestSet],
        ahead: Option<Self::Ahead>,
    ) -> Result<Vec<SetResult>, ProcessError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match ahead {
            Some(a) if a == seqs(sets) => self.aheads_used.fetch_add(1, Ordering::SeqCst),
            Some(_) => self.aheads_mismatched.fetch_add(1, Ordering::SeqCst),
            None => 0,
        };
        let queues = self.enter(sets);
        let result = self.write(tx, sets).await;
        self.leave(&queues);
        result
    }
}

/// The `seq` of each set's first request.
fn seqs(sets: &[RequestSet]) -> Vec<Option<String>> {
    sets.iter()
        .map(|s| {
            s.requests
                .first()
                .and_then(|r| matomo_wire::param_str(r, "seq"))
                .map(|v| v.into_owned())
        })
        .collect()
}

impl TableProcessor {
    async fn write(
        &self,
        tx: &mut Transaction<'static>,
        sets: &[RequestSet],
    ) -> Result<Vec<SetResult>, ProcessError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let remaining = self.transient_failures.load(Ordering::SeqCst);
        if remaining > 0 {
            self.transient_failures
                .store(remaining - 1, Ordering::SeqCst);
            return Err(ProcessError::Transient("simulated deadlock (1213)".into()));
        }
        let mut out = Vec::with_capacity(sets.len());
        for (index, set) in sets.iter().enumerate() {
            let mut recorded = 0;
            for request in &set.requests {
                let get = |k: &str| {
                    matomo_wire::param_str(request, k)
                        .map(|v| v.into_owned())
                        .unwrap_or_default()
                };
                tx.exec_drop(
                    "INSERT INTO engine_hits (queue, seq, url, time) VALUES (?, ?, ?, ?)",
                    (
                        get("q").parse::<i64>().unwrap_or(-1),
                        get("seq").parse::<i64>().unwrap_or(-1),
                        get("url"),
                        set.time,
                    ),
                )
                .await
                .map_err(|e| ProcessError::from_mysql(&e))?;
                recorded += 1;
                if get("poison") == "1" {
                    return Err(ProcessError::Poison {
                        index,
                        reason: "test: poison hit".into(),
                        dead_letter: true,
                    });
                }
                if get("panic") == "1" || get("panic_ahead") == "1" {
                    panic!("test: panic on seq {}", get("seq"));
                }
                if get("drop") == "1" {
                    return Err(ProcessError::Poison {
                        index,
                        reason: "test: dropped hit".into(),
                        dead_letter: false,
                    });
                }
            }
            out.push(SetResult {
                recorded,
                skipped: 0,
            });
        }
        Ok(out)
    }
}
