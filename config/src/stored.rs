//! QueuedTracking's settings as Matomo stores them in its database (feature `mysql`).
//!
//! Settings made in Matomo's UI (System → General settings → QueuedTracking) live in
//! `<prefix>plugin_setting`, not in config.ini.php; Matomo reads a plugin's system setting
//! from config.ini.php's `[QueuedTracking]` when it is there and from that table otherwise. So
//! when a Matomo config is given, the binaries read those rows once at start-up, with the
//! database settings the other layers give (before the start-up checks), and load again with
//! them under config.ini.php's `[QueuedTracking]`, key by key ([`crate::load_with_stored`]).
//! Without them a node could shard into a different number of queues than PHP's workers
//! drain, or write to another Redis.

use std::ffi::OsString;
use std::fmt;
use std::time::Duration;

use mysql_async::prelude::Queryable as _;

use crate::error::ConfigError;
use crate::load::{load_unchecked, load_with_env, load_with_stored, CommonArgs, StoredSettings};
use crate::settings::Config;

/// How long reading the stored settings may take, connection included.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Why [`load_matomo`] failed.
#[derive(Debug)]
pub enum LoadError {
    /// A setting was refused: fixing the configuration is the only cure.
    Refused(ConfigError),
    /// The stored settings could not be read (MySQL unreachable, the table missing): starting
    /// again later may work.
    Unavailable(ConfigError),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused(error) | Self::Unavailable(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for LoadError {}

/// [`crate::load`], with QueuedTracking's settings stored in Matomo's database under
/// config.ini.php when a Matomo config is given (`--matomo-config`).
pub fn load_matomo(args: &CommonArgs) -> Result<Config, LoadError> {
    load_matomo_with_env(args, std::env::vars_os().collect())
}

/// [`load_matomo`] with an explicit environment.
pub fn load_matomo_with_env(
    args: &CommonArgs,
    env: Vec<(OsString, OsString)>,
) -> Result<Config, LoadError> {
    if args.matomo_config.is_none() {
        return load_with_env(args, env).map_err(LoadError::Refused);
    }
    // The database settings, before the start-up checks: a setting only stored in the
    // database may be what makes the rest valid.
    let sources = load_unchecked(args, env.clone()).map_err(LoadError::Refused)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LoadError::Unavailable(unreadable(&sources, "database.host", e)))?;
    let stored = runtime.block_on(read_stored(&sources));
    // A host name lookup still running after the timeout must not hold the start.
    runtime.shutdown_timeout(Duration::from_millis(100));
    let stored = stored.map_err(|error| match error {
        ConfigError::Invalid { .. } => LoadError::Refused(error),
        other => LoadError::Unavailable(other),
    })?;
    load_with_stored(args, env, Some(&stored)).map_err(LoadError::Refused)
}

/// Reads QueuedTracking's stored system settings (no user) from `config`'s database. Empty
/// values are left out (the tier's default applies, as PHP's cast of an empty value to the
/// setting's type would give nothing usable); a name stored twice, which Matomo never writes
/// and would read as a list, is refused.
pub async fn read_stored(config: &Config) -> Result<StoredSettings, ConfigError> {
    let prefix = &config.database.tables_prefix;
    if !crate::validate::is_safe_table_prefix(prefix) {
        return Err(ConfigError::Invalid {
            key: "database.tables_prefix".into(),
            value: format!("{prefix:?}"),
            problem: crate::validate::TABLE_PREFIX_RULE.into(),
            origin: Box::new(crate::Origin::Default),
        });
    }
    let table = format!("{prefix}plugin_setting");
    let read = async {
        let opts = mysql_async::Opts::from_url(&config.mysql_url())
            .map_err(|e| ConfigError::mysql_failed(config, e))?;
        let mut conn = mysql_async::Conn::new(opts)
            .await
            .map_err(|e| ConfigError::mysql_failed(config, e))?;
        let rows: Vec<(String, String, u8)> = conn
            .exec(
                format!(
                    "SELECT setting_name, setting_value, json_encoded FROM `{table}` \
                     WHERE plugin_name = ? AND user_login = '' ORDER BY idplugin_setting"
                ),
                ("QueuedTracking",),
            )
            .await
            .map_err(|e| {
                if e.to_string().contains("doesn't exist") {
                    unreadable(config, "database.tables_prefix", e)
                } else {
                    ConfigError::mysql_failed(config, e)
                }
            })?;
        let _ = conn.disconnect().await;
        Ok(rows)
    };
    let rows = tokio::time::timeout(READ_TIMEOUT, read)
        .await
        .map_err(|_| {
            ConfigError::mysql_failed(config, format!("no answer within {READ_TIMEOUT:?}"))
        })??;
    let origin = |name: &str| {
        Box::new(crate::Origin::MatomoDb {
            table: table.clone(),
            plugin: "QueuedTracking".into(),
            setting: name.into(),
        })
    };
    let mut values: Vec<(String, String)> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (name, value, json_encoded) in rows {
        if seen.contains(&name) {
            return Err(ConfigError::Invalid {
                key: format!("[QueuedTracking] {name}"),
                value: "(stored twice)".into(),
                problem: "is stored in more than one row, which Matomo would read as a list; \
                          save QueuedTracking's settings again in Matomo's UI"
                    .into(),
                origin: origin(&name),
            });
        }
        seen.push(name.clone());
        let value = if json_encoded == 0 {
            value
        } else {
            json_scalar(&value).ok_or_else(|| ConfigError::Invalid {
                key: format!("[QueuedTracking] {name}"),
                value: value.clone(),
                problem: "is stored as JSON that is not a single value".into(),
                origin: origin(&name),
            })?
        };
        if !value.is_empty() {
            values.push((name, value));
        }
    }
    Ok(StoredSettings { table, values })
}

/// A JSON-encoded stored value as PHP would cast it to a string: a string as it is, a number
/// as written, `true` as `1`, `false` and `null` as empty. Arrays and objects are not scalars.
fn json_scalar(text: &str) -> Option<String> {
    let text = text.trim();
    if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        if !inner.contains(['"', '\\']) {
            return Some(inner.to_owned());
        }
        return None;
    }
    match text {
        "true" => Some("1".into()),
        "false" | "null" => Some(String::new()),
        number if !number.is_empty() && number.parse::<f64>().is_ok() => Some(number.into()),
        _ => None,
    }
}

/// The stored settings could not be read: names the setting to check.
fn unreadable(config: &Config, settings: &'static str, error: impl fmt::Display) -> ConfigError {
    ConfigError::Unreachable {
        settings,
        target: config.mysql_url_redacted(),
        problem: format!(
            "cannot read QueuedTracking's settings stored in Matomo's database: {}",
            crate::error::one_line(&error.to_string())
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_scalars_read_as_php_casts_them() {
        assert_eq!(json_scalar("\"10.0.0.1\"").as_deref(), Some("10.0.0.1"));
        assert_eq!(json_scalar(" 4 ").as_deref(), Some("4"));
        assert_eq!(json_scalar("true").as_deref(), Some("1"));
        assert_eq!(json_scalar("false").as_deref(), Some(""));
        assert_eq!(json_scalar("[\"a\"]"), None);
        assert_eq!(
            json_scalar("\"a\\\"b\""),
            None,
            "escapes are not guessed at"
        );
        assert_eq!(json_scalar(""), None);
    }
}
