//! The shared MariaDB/MySQL server of the integration tests, reached with the tier's own
//! loader's settings (`MATOMO_TIER__DATABASE__*` apply). Fails, never skips, when it cannot be
//! reached.

use mysql_async::{Conn, OptsBuilder};

/// The loaded settings and a connection to the server (no database selected).
pub async fn server() -> (tier_config::Config, Conn) {
    let config =
        tier_config::load(&tier_config::CommonArgs::default()).expect("configuration loads");
    let db = &config.database;
    let opts = OptsBuilder::default()
        .ip_or_hostname(db.host.clone())
        .tcp_port(db.port)
        .user(Some(db.username.clone()))
        .pass(Some(db.password.clone()));
    let conn = Conn::new(opts).await.unwrap_or_else(|e| {
        panic!(
            "cannot connect to MySQL at {}: {e} (start it with deploy/local/test or deploy/local/up)",
            config.mysql_url_redacted()
        )
    });
    (config, conn)
}
