//! The one error type of configuration loading.
//!
//! Every variant renders as ONE line that starts with `config error:`, names the setting (or the
//! file, flag or variable) and says what is wrong, so a binary can print it and exit. Secret
//! values (passwords, the salt) are never part of a message.

use std::fmt;
use std::path::PathBuf;

/// Where a setting's value came from; shown in errors so the operator knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// A Matomo `config.ini.php`: file, section and key.
    MatomoIni {
        /// The file.
        path: PathBuf,
        /// `[section]`.
        section: String,
        /// Key inside the section.
        key: String,
    },
    /// A plugin's setting stored in Matomo's database (`<prefix>plugin_setting`).
    MatomoDb {
        /// The table.
        table: String,
        /// The plugin.
        plugin: String,
        /// The setting's name.
        setting: String,
    },
    /// The TOML file given with `--config`.
    TomlFile(PathBuf),
    /// An environment variable.
    Env(String),
    /// A command-line flag (`--set k=v`, `--geoip-db`, ...).
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::MatomoDb {
                table,
                plugin,
                setting,
            } => write!(f, "{plugin}'s stored setting {setting} in table {table}"),
            Origin::MatomoIni { path, section, key } => {
                write!(f, "[{section}] {key} in {}", path.display())
            }
            Origin::TomlFile(path) => write!(f, "{}", path.display()),
            Origin::Env(var) => write!(f, "environment {var}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// A configuration that cannot be used. `Display` is one line naming the setting and the problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file named by a flag could not be read.
    #[error("config error: {what} {}: cannot read: {source}", path.display())]
    Read {
        /// Which flag or setting named the file (`--config`, `--matomo-config`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML file is not valid TOML.
    #[error("config error: {}: invalid TOML: {message}", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// Parser message, flattened to one line.
        message: String,
    },
    /// A Matomo `config.ini.php` line could not be parsed.
    #[error("config error: {}:{line}: {message}", path.display())]
    Ini {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A key that is not a setting (typo, or a setting of another version).
    #[error("config error: unknown setting `{key}` (from {origin})")]
    UnknownSetting {
        /// The dotted key as written.
        key: String,
        /// Where it was written.
        origin: Box<Origin>,
    },
    /// A `--set` argument or environment variable that is not of the form expected.
    #[error("config error: {what}: {problem}")]
    Syntax {
        /// The argument or variable.
        what: String,
        /// What is wrong.
        problem: String,
    },
    /// A setting whose value is unusable.
    #[error("config error: {key} = {value}: {problem}{}", origin_suffix(origin))]
    Invalid {
        /// The dotted setting name, e.g. `queue.num_queue_workers`.
        key: String,
        /// The value as written (`<redacted>` for secrets).
        value: String,
        /// What is wrong with it.
        problem: String,
        /// Where it came from.
        origin: Box<Origin>,
    },
    /// Logging could not be set up.
    #[error("config error: log: {0}")]
    Logging(String),
    /// A service named by the settings cannot be used (built by the binaries at start-up with
    /// [`ConfigError::redis_failed`] / [`ConfigError::mysql_failed`]).
    #[error("config error: {settings}: {problem} ({target})")]
    Unreachable {
        /// The settings to check, e.g. `database.username/database.password`.
        settings: &'static str,
        /// What was tried, without secrets (a redacted URL).
        target: String,
        /// The failure, on one line.
        problem: String,
    },
}

impl ConfigError {
    /// Start-up failure talking to Redis: names `redis.password` for authentication errors and
    /// `redis.host/redis.port` otherwise.
    pub fn redis_failed(config: &crate::Config, error: impl fmt::Display) -> ConfigError {
        let problem = one_line(&error.to_string());
        let lower = problem.to_ascii_lowercase();
        let settings = if ["noauth", "wrongpass", "invalid password", "auth"]
            .iter()
            .any(|w| lower.contains(w))
        {
            "redis.password"
        } else {
            "redis.host/redis.port"
        };
        ConfigError::Unreachable {
            settings,
            target: config.redis_url_redacted(),
            problem: format!("cannot use Redis: {problem}"),
        }
    }

    /// Start-up failure talking to MySQL: names the username/password for access errors,
    /// `database.dbname` for an unknown database and `database.host/database.port` otherwise.
    pub fn mysql_failed(config: &crate::Config, error: impl fmt::Display) -> ConfigError {
        let problem = one_line(&error.to_string());
        let lower = problem.to_ascii_lowercase();
        let settings = if lower.contains("access denied") {
            "database.username/database.password"
        } else if lower.contains("unknown database") {
            "database.dbname"
        } else {
            "database.host/database.port"
        };
        ConfigError::Unreachable {
            settings,
            target: config.mysql_url_redacted(),
            problem: format!("cannot use MySQL: {problem}"),
        }
    }
}

fn origin_suffix(origin: &Origin) -> String {
    match origin {
        Origin::Default => String::new(),
        other => format!(" (from {other})"),
    }
}

/// Flattens a multi-line message (TOML parser output) into one line.
pub(crate) fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
