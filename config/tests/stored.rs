//! QueuedTracking's settings stored in Matomo's database (`<prefix>plugin_setting`), read by
//! `load_matomo` under config.ini.php, against a live MariaDB: a fresh `mt_test_<random>`
//! database per test, dropped at the end. Connection settings come from the tier's own loader
//! (`MATOMO_TIER__DATABASE__*` apply), as in `tests/schema.rs`. Fails, never skips, when the
//! database cannot be reached.

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use mysql_async::prelude::*;
use mysql_async::Conn;
use tier_config::schema::{matomo_schema_sql, split_statements};
use tier_config::{CommonArgs, Config, LoadError};

/// Not the default prefix: the table is found by the configured one.
const PREFIX: &str = "piwik_";

/// The shared server's settings, a fresh database on it with Matomo's tables, and a
/// connection to that database.
async fn fresh_database(with_tables: bool) -> (Config, String, Conn) {
    let (config, mut conn) = common::server().await;
    let name = format!("mt_test_stored_{:016x}", rand::random::<u64>());
    conn.query_drop(format!("CREATE DATABASE `{name}`"))
        .await
        .unwrap();
    conn.query_drop(format!("USE `{name}`")).await.unwrap();
    if with_tables {
        for statement in split_statements(&matomo_schema_sql(PREFIX)) {
            conn.query_drop(&statement).await.unwrap();
        }
    }
    (config, name, conn)
}

/// A Matomo config.ini.php in `dir` naming `dbname` on `config`'s server (`port` instead of
/// its port when given), with `queued_tracking` as its `[QueuedTracking]` section.
fn matomo_config(
    dir: &Path,
    config: &Config,
    dbname: &str,
    port: Option<u16>,
    queued_tracking: &str,
) -> CommonArgs {
    let db = &config.database;
    let text = format!(
        "; <?php exit; ?> DO NOT REMOVE THIS LINE\n[database]\nhost = \"{}\"\nport = {}\n\
         username = \"{}\"\npassword = \"{}\"\ndbname = \"{dbname}\"\ntables_prefix = \"{PREFIX}\"\n\
         [General]\nsalt = \"s\"\n[QueuedTracking]\n{queued_tracking}",
        db.host,
        port.unwrap_or(db.port),
        db.username,
        db.password,
    );
    let path: PathBuf = dir.join("config.ini.php");
    std::fs::write(&path, text).unwrap();
    CommonArgs {
        matomo_config: Some(path),
        ..CommonArgs::default()
    }
}

async fn store(conn: &mut Conn, rows: &[(&str, &str, &str, &str)]) {
    for (plugin, name, value, user) in rows {
        // Matomo JSON-encodes what is not a plain value; a JSON string is decoded.
        let json = u8::from(value.starts_with('"'));
        conn.exec_drop(
            format!(
                "INSERT INTO {PREFIX}plugin_setting \
                 (plugin_name, setting_name, setting_value, json_encoded, user_login) \
                 VALUES (?, ?, ?, ?, ?)"
            ),
            (plugin, name, value, json, user),
        )
        .await
        .unwrap();
    }
}

async fn drop_database(mut conn: Conn, name: &str) {
    conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
        .await
        .unwrap();
    let _ = conn.disconnect().await;
}

fn no_env() -> Vec<(OsString, OsString)> {
    Vec::new()
}

#[test]
fn stored_settings_are_the_layer_under_config_ini() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (config, name, mut conn) = runtime.block_on(fresh_database(true));
    runtime.block_on(store(
        &mut conn,
        &[
            ("QueuedTracking", "redisHost", "\"10.1.2.3\"", ""),
            ("QueuedTracking", "redisPort", "6390", ""),
            ("QueuedTracking", "redisDatabase", "3", ""),
            ("QueuedTracking", "numQueueWorkers", "16", ""),
            // Empty: the tier's default applies.
            ("QueuedTracking", "sentinelMasterName", "", ""),
            // Another plugin's, and a user's: not QueuedTracking's system settings.
            ("Tour", "numRequestsToProcess", "55", ""),
            ("QueuedTracking", "numRequestsToProcess", "77", "admin"),
        ],
    ));
    let dir = tempfile::tempdir().unwrap();
    // config.ini.php's [QueuedTracking] overrides what is stored, as in Matomo.
    let args = matomo_config(dir.path(), &config, &name, None, "redisDatabase = 5\n");
    let loaded = tier_config::load_matomo_with_env(&args, no_env()).expect("loads");
    assert_eq!(loaded.redis.host, "10.1.2.3");
    assert_eq!(loaded.redis.port, 6390);
    assert_eq!(loaded.redis.database, 5, "config.ini.php wins");
    assert_eq!(loaded.queue.num_queue_workers, 16);
    assert_eq!(
        loaded.redis.sentinel_master,
        Config::default().redis.sentinel_master
    );
    assert_eq!(
        loaded.queue.num_requests_to_process,
        Config::default().queue.num_requests_to_process
    );
    // The environment wins over both.
    let env = vec![(
        OsString::from("MATOMO_TIER__QUEUE__NUM_QUEUE_WORKERS"),
        OsString::from("2"),
    )];
    let loaded = tier_config::load_matomo_with_env(&args, env).expect("loads");
    assert_eq!(loaded.queue.num_queue_workers, 2);

    // A stored value the tier refuses is named with where it came from.
    runtime.block_on(conn.query_drop(format!(
        "UPDATE {PREFIX}plugin_setting SET setting_value = '0' WHERE setting_name = 'numQueueWorkers'"
    )))
    .unwrap();
    let refused = |args: &CommonArgs| match tier_config::load_matomo_with_env(args, no_env()) {
        Err(LoadError::Refused(error)) => error.to_string(),
        other => panic!("expected a refused setting, got {other:?}"),
    };
    let line = refused(&args);
    assert!(
        line.contains("queue.num_queue_workers = 0")
            && line.contains(
                "QueuedTracking's stored setting numQueueWorkers in table piwik_plugin_setting"
            ),
        "{line}"
    );
    // A name stored twice, which Matomo never writes and would read as a list.
    runtime.block_on(store(
        &mut conn,
        &[("QueuedTracking", "redisPort", "6391", "")],
    ));
    let line = refused(&args);
    assert!(line.contains("is stored in more than one row"), "{line}");
    runtime.block_on(drop_database(conn, &name));
}

#[test]
fn unreadable_stored_settings_stop_the_start_as_unavailable() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // A database without Matomo's tables.
    let (config, name, conn) = runtime.block_on(fresh_database(false));
    let dir = tempfile::tempdir().unwrap();
    let args = matomo_config(dir.path(), &config, &name, None, "");
    match tier_config::load_matomo_with_env(&args, no_env()) {
        Err(LoadError::Unavailable(error)) => {
            let line = error.to_string();
            assert!(
                line.contains("database.tables_prefix")
                    && line.contains("cannot read QueuedTracking's settings"),
                "{line}"
            );
        }
        other => panic!("expected the table to be missing, got {other:?}"),
    }
    // Nothing listens on the port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let args = matomo_config(dir.path(), &config, &name, Some(closed), "");
    match tier_config::load_matomo_with_env(&args, no_env()) {
        Err(LoadError::Unavailable(error)) => {
            assert!(error.to_string().contains("cannot use MySQL"), "{error}");
        }
        other => panic!("expected MySQL to be unreachable, got {other:?}"),
    }
    runtime.block_on(drop_database(conn, &name));
}
