//! The worker's MySQL sessions run with Matomo's `sql_mode` (core/Db.php: `NO_AUTO_VALUE_ON_ZERO`,
//! not strict), so a value PHP would have clamped or cut is stored the same way instead of
//! failing the batch. Regression test for shards stuck retrying `ERROR 1264 Out of range value
//! for column 'visitor_seconds_since_order'` on a strict server.

use mysql_async::prelude::Queryable;

#[tokio::test]
async fn worker_sessions_use_matomo_sql_mode_and_clamp_like_php() {
    let mut config = tier_config::Config::default();
    config.database.dbname = "mysql".into(); // always present; the test only needs a session
    let pool = matomo_worker::app::connect_mysql(&config)
        .await
        .expect("MariaDB on 127.0.0.1:3306 (user matomo/matomo) must be reachable");
    let mut conn = pool.get_conn().await.expect("connection");
    let mode: Option<String> = conn
        .query_first("SELECT @@SESSION.sql_mode")
        .await
        .expect("query");
    assert_eq!(mode.as_deref(), Some("NO_AUTO_VALUE_ON_ZERO"));

    // A negative number into an unsigned column is clamped to 0 (a strict session would fail).
    conn.query_drop("CREATE TEMPORARY TABLE t (n INT UNSIGNED NOT NULL, s VARCHAR(4) NOT NULL)")
        .await
        .expect("create temporary table");
    conn.query_drop("INSERT INTO t VALUES (-5, 'abcdefgh')")
        .await
        .expect("non-strict insert");
    let row: Option<(u32, String)> = conn
        .query_first("SELECT n, s FROM t")
        .await
        .expect("select");
    assert_eq!(row, Some((0, "abcd".to_owned())));
    drop(conn);
    pool.disconnect().await.expect("disconnect");
}
