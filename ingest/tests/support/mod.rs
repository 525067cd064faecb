//! Test isolation for the ingest integration tests: a fresh `mt_test_<random>` database with
//! Matomo's schema and seeded sites/tokens, a random Redis key prefix, and an ingest node served
//! on 127.0.0.1:0 that is cancelled on drop. Redis and MariaDB must be reachable (CI starts
//! them); tests fail with a clear message when they are not.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use fred::prelude::{ClientLike as _, KeysInterface as _, ListInterface as _};
use matomo_wire::RequestSet;
use mysql_async::prelude::Queryable as _;
use tier_config::Config;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// `[General] salt` of the test configuration.
pub const SALT: &str = "test-salt-0123456789";
/// A super user's token.
pub const SUPER_TOKEN: &str = "00112233445566778899aabbccddeeff";
/// A token with write access to site 2 only.
pub const WRITE_TOKEN: &str = "ffeeddccbbaa99887766554433221100";
/// The super user's second token, `secure_only` (Matomo 5's default for new tokens).
pub const SECURE_SUPER_TOKEN: &str = "5ec0e5ec0e5ec0e5ec0e5ec0e5ec0e00";
/// The site 2 writer's second token, `secure_only`.
pub const SECURE_WRITE_TOKEN: &str = "5ec0e5ec0e5ec0e5ec0e5ec0e5ec0e22";

/// MariaDB server URL without a database (`MATOMO_TEST_MYSQL_URL` overrides).
pub fn mysql_server_url() -> String {
    std::env::var("MATOMO_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://matomo:matomo@127.0.0.1:3306".into())
}

/// A database created for one test, dropped by [`TestDb::drop_db`].
pub struct TestDb {
    /// Its name.
    pub name: String,
    server: mysql_async::Pool,
}

impl TestDb {
    /// Creates `mt_test_<random>` with Matomo's schema, sites 1 and 2, a super user `admin` and a
    /// user `writer` with write access to site 2, each with a token.
    pub async fn create() -> Self {
        let url = mysql_server_url();
        let server = mysql_async::Pool::new(mysql_async::Opts::from_url(&url).expect("url"));
        let mut conn = server.get_conn().await.unwrap_or_else(|e| {
            panic!("MariaDB must be reachable at {url} for this test (CI starts it): {e}")
        });
        let name = format!("mt_test_{:016x}", rand::random::<u64>());
        conn.query_drop(format!("CREATE DATABASE `{name}`"))
            .await
            .expect("create db");
        conn.query_drop(format!("USE `{name}`")).await.expect("use");
        let sql = tier_config::schema::matomo_schema_sql("matomo_");
        for statement in tier_config::schema::split_statements(&sql) {
            conn.query_drop(statement).await.expect("schema");
        }
        for id in [1u32, 2] {
            conn.exec_drop(
                "INSERT INTO matomo_site (idsite, name, main_url, ts_created, ecommerce, \
                 sitesearch_keyword_parameters, sitesearch_category_parameters, timezone, currency, \
                 excluded_ips, excluded_parameters, excluded_user_agents, excluded_referrers, \
                 `group`, `type`) VALUES (?, 'Test', 'https://example.com', NOW(), 0, '', '', 'UTC', \
                 'USD', '', '', '', '', '', 'website')",
                (id,),
            )
            .await
            .expect("site");
        }
        for (login, superuser) in [("admin", 1u8), ("writer", 0)] {
            conn.exec_drop(
                "INSERT INTO matomo_user (login, password, email, superuser_access) VALUES (?, 'x', ?, ?)",
                (login, format!("{login}@example.com"), superuser),
            )
            .await
            .expect("user");
        }
        for (login, token, secure_only) in [
            ("admin", SUPER_TOKEN, 0u8),
            ("writer", WRITE_TOKEN, 0),
            ("admin", SECURE_SUPER_TOKEN, 1),
            ("writer", SECURE_WRITE_TOKEN, 1),
        ] {
            conn.exec_drop(
                "INSERT INTO matomo_user_token_auth (login, description, password, hash_algo, date_created, secure_only) \
                 VALUES (?, 'test', SHA2(CONCAT(?, ?), 512), 'sha512', NOW(), ?)",
                (login, token, SALT, secure_only),
            )
            .await
            .expect("token");
        }
        conn.query_drop(
            "INSERT INTO matomo_access (login, idsite, access) VALUES ('writer', 2, 'write')",
        )
        .await
        .expect("access");
        drop(conn);
        Self { name, server }
    }

    /// Adds a site (to see the cache refresh).
    pub async fn add_site(&self, idsite: u32) {
        let mut conn = self.server.get_conn().await.expect("conn");
        conn.query_drop(format!(
            "INSERT INTO `{}`.matomo_site (idsite, name, main_url, ts_created, sitesearch_keyword_parameters, \
             sitesearch_category_parameters, timezone, currency, excluded_ips, excluded_parameters, \
             excluded_user_agents, excluded_referrers, `group`, `type`) VALUES ({idsite}, 'T', 'https://x', \
             NOW(), '', '', 'UTC', 'USD', '', '', '', '', '', 'website')",
            self.name
        ))
        .await
        .expect("add site");
    }

    /// Drops the database.
    pub async fn drop_db(self) {
        let mut conn = self.server.get_conn().await.expect("conn");
        conn.query_drop(format!("DROP DATABASE `{}`", self.name))
            .await
            .expect("drop db");
        drop(conn);
        let _ = self.server.disconnect().await;
    }
}

/// A configuration for `db`, with a random key prefix.
pub fn config(db: &TestDb) -> Config {
    let mut config = Config::default();
    config.database.dbname = db.name.clone();
    config.matomo.salt = SALT.into();
    config.queue.key_prefix = format!("ingest_test_{:016x}:", rand::random::<u64>());
    config.queue.num_queue_workers = 4;
    config.ingest.site_cache_refresh = Duration::from_millis(200);
    config.ingest.read_timeout = Duration::from_secs(2);
    config.ingest.shutdown_grace = Duration::from_millis(300);
    config
}

/// A running ingest node.
pub struct Node {
    /// Its address.
    pub addr: SocketAddr,
    /// Base URL (`http://addr`).
    pub base: String,
    /// The configuration it runs with.
    pub config: Config,
    /// Cancels it.
    pub shutdown: CancellationToken,
    /// Its task; resolves with `serve`'s result.
    pub task: Option<JoinHandle<Result<(), matomo_ingest::StartupError>>>,
    redis: fred::prelude::Client,
}

impl Node {
    /// Starts `serve` on 127.0.0.1:0 and waits until it answers; queues are read back from the
    /// shared Redis (127.0.0.1:6379), also when the node talks to it through a proxy.
    pub async fn start(config: Config) -> Self {
        Self::start_reading_from(config, shared_redis_config()).await
    }

    /// [`Node::start`] for a node on a test's own Redis: queues are read back from
    /// `config.redis` (a host and port, or a Unix socket), as the node reaches it.
    pub async fn start_on_own_redis(config: Config) -> Self {
        let redis = config
            .redis
            .fred_config()
            .expect("the redis settings make a client");
        Self::start_reading_from(config, redis).await
    }

    async fn start_reading_from(config: Config, redis: fred::prelude::Config) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(matomo_ingest::serve(
            config.clone(),
            listener,
            shutdown.clone(),
        ));
        let redis = connect_client(redis).await;
        let base = format!("http://{addr}");
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if task.is_finished() {
                let result = task.await.expect("join");
                panic!("serve stopped at start-up: {result:?}");
            }
            if http.get(format!("{base}/healthz")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            addr,
            base,
            config,
            shutdown,
            task: Some(task),
            redis,
        }
    }

    /// Decoded entries of queue `id`, oldest first.
    pub async fn queue(&self, id: u16) -> Vec<RequestSet> {
        self.raw_queue(id)
            .await
            .iter()
            .map(|bytes| matomo_wire::decode(bytes).expect("entries decode"))
            .collect()
    }

    /// Raw entries of queue `id`.
    pub async fn raw_queue(&self, id: u16) -> Vec<Vec<u8>> {
        let key = matomo_wire::queue_key(&self.config.queue.key_prefix, id);
        let values: Vec<fred::types::Value> = self.redis.lrange(key, 0, -1).await.expect("lrange");
        values
            .into_iter()
            .map(|v| v.as_bytes().expect("bytes").to_vec())
            .collect()
    }

    /// All entries of all queues, with their queue id.
    pub async fn all_entries(&self) -> Vec<(u16, RequestSet)> {
        let mut out = Vec::new();
        for id in 0..self.config.queue.num_queue_workers {
            out.extend(self.queue(id).await.into_iter().map(|e| (id, e)));
        }
        out
    }

    /// Deletes every key the node writes under its prefix (the queue lists).
    pub async fn clear(&self) {
        let keys: Vec<String> = (0..self.config.queue.num_queue_workers)
            .map(|id| matomo_wire::queue_key(&self.config.queue.key_prefix, id))
            .collect();
        let _: i64 = self.redis.del(keys).await.expect("del");
    }

    /// Stops the node, checks it stopped cleanly, and deletes its keys.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("serve stops within 10 s")
                .expect("join");
            assert!(result.is_ok(), "serve ended with {result:?}");
        }
        self.clear().await;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A Redis client for reading the lists back.
pub async fn redis_client() -> fred::prelude::Client {
    connect_client(shared_redis_config()).await
}

/// The shared Redis of the suite (127.0.0.1:6379).
fn shared_redis_config() -> fred::prelude::Config {
    fred::prelude::Config {
        server: fred::prelude::ServerConfig::new_centralized("127.0.0.1", 6379),
        ..fred::prelude::Config::default()
    }
}

/// A Redis client for reading the lists back from `host:port` (a test's own Redis). It
/// reconnects on its own after that Redis is restarted.
pub async fn redis_client_at(host: &str, port: u16) -> fred::prelude::Client {
    connect_client(fred::prelude::Config {
        server: fred::prelude::ServerConfig::new_centralized(host, port),
        ..fred::prelude::Config::default()
    })
    .await
}

/// A client for `config`, connected; it reconnects on its own after that Redis is restarted.
async fn connect_client(config: fred::prelude::Config) -> fred::prelude::Client {
    let hint = format!(
        "Redis must be reachable at {:?} for this test (CI starts it)",
        config.server
    );
    let client = fred::prelude::Builder::from_config(config)
        .set_policy(fred::prelude::ReconnectPolicy::new_constant(0, 100))
        .build()
        .expect("client");
    tokio::time::timeout(Duration::from_secs(5), client.init())
        .await
        .expect(&hint)
        .expect(&hint);
    client
}
