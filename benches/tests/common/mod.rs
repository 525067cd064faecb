//! Isolation helpers for tests against the real services: a fresh `mt_test_<random>` MariaDB
//! database holding Matomo's schema, and a random Redis key prefix. Both must be reachable (CI
//! starts them); a test fails with a clear message when they are not.

#![allow(dead_code)]

use mysql_async::prelude::Queryable;

/// MariaDB server URL without a database (`MATOMO_TEST_MYSQL_URL` overrides).
pub fn mysql_server_url() -> String {
    std::env::var("MATOMO_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://matomo:matomo@127.0.0.1:3306".into())
}

/// Redis URL (`MATOMO_TEST_REDIS_URL` overrides; `redis+unix:///path?db=N` for a socket).
pub fn redis_url() -> String {
    std::env::var("MATOMO_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// fred's settings for [`redis_url`], read as the harness reads `--redis-url`.
pub fn redis_config() -> fred::prelude::Config {
    tier_config::fred_config_from_url(&redis_url()).expect("MATOMO_TEST_REDIS_URL is a Redis URL")
}

/// A database created for one test and dropped by [`TestDb::drop_db`].
pub struct TestDb {
    /// Its name.
    pub name: String,
    /// URL of the database.
    pub url: String,
    /// A pool on it.
    pub pool: mysql_async::Pool,
    server: mysql_async::Pool,
}

impl TestDb {
    /// Creates `mt_test_<random>` with Matomo's schema (prefix `matomo_`).
    pub async fn create() -> Self {
        let server_url = mysql_server_url();
        let server = mysql_async::Pool::new(mysql_async::Opts::from_url(&server_url).unwrap());
        let mut conn = server.get_conn().await.unwrap_or_else(|e| {
            panic!("MariaDB must be reachable at {server_url} for this test (deploy/local/test starts it): {e}")
        });
        let name = format!("mt_test_{:016x}", rand::random::<u64>());
        conn.query_drop(format!("CREATE DATABASE `{name}`"))
            .await
            .unwrap();
        drop(conn);
        let url = format!("{server_url}/{name}");
        let pool = mysql_async::Pool::new(mysql_async::Opts::from_url(&url).unwrap());
        let mut conn = pool.get_conn().await.unwrap();
        for statement in tier_config::schema::split_statements(
            &tier_config::schema::matomo_schema_sql("matomo_"),
        ) {
            conn.query_drop(statement).await.unwrap();
        }
        Self {
            name,
            url,
            pool,
            server,
        }
    }

    /// Drops the database.
    pub async fn drop_db(self) {
        let _ = self.pool.disconnect().await;
        let mut conn = self.server.get_conn().await.unwrap();
        conn.query_drop(format!("DROP DATABASE `{}`", self.name))
            .await
            .unwrap();
        drop(conn);
        let _ = self.server.disconnect().await;
    }

    /// Adds a site (ecommerce on or off).
    pub async fn add_site(&self, idsite: u32, ecommerce: bool) {
        let mut conn = self.pool.get_conn().await.unwrap();
        conn.exec_drop(
            "INSERT INTO matomo_site (idsite, name, main_url, ts_created, ecommerce, sitesearch_keyword_parameters, \
             sitesearch_category_parameters, timezone, currency, excluded_ips, excluded_parameters, excluded_user_agents, \
             excluded_referrers, `group`, `type`) VALUES (?, 'Test', 'https://www.example.com', NOW(), ?, '', '', 'UTC', 'USD', '', '', '', '', '', 'website')",
            (idsite, ecommerce),
        )
        .await
        .unwrap();
    }

    /// Writes the action row a worker writes for a hit tagged `pv_id` (optionally at a given id).
    pub async fn insert_action(&self, idsite: u32, pv_id: &str, idlink_va: Option<u64>) {
        let mut conn = self.pool.get_conn().await.unwrap();
        conn.exec_drop(
            "INSERT INTO matomo_log_link_visit_action (idlink_va, idsite, idvisitor, idvisit, idaction_url_ref, idaction_name_ref, \
             pageview_position, server_time, idpageview, idaction_name, idaction_url, time_spent_ref_action) \
             VALUES (?, ?, UNHEX('0123456789abcdef'), 1, 0, 0, 1, UTC_TIMESTAMP(), ?, 1, 2, 0)",
            (idlink_va, idsite, pv_id),
        )
        .await
        .unwrap();
    }

    /// Writes the conversion row of an ecommerce order.
    pub async fn insert_order(&self, idsite: u32, idvisit: u64, idorder: &str) {
        let mut conn = self.pool.get_conn().await.unwrap();
        conn.exec_drop(
            "INSERT INTO matomo_log_conversion (idvisit, idsite, idvisitor, server_time, idgoal, buster, idorder, url, revenue, visitor_count_visits) \
             VALUES (?, ?, UNHEX('0123456789abcdef'), UTC_TIMESTAMP(), 0, 0, ?, 'https://www.example.com/shop/thank-you', 42.5, 1)",
            (idvisit, idsite, idorder),
        )
        .await
        .unwrap();
    }
}
