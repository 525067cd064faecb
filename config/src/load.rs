//! Loading the configuration once at start-up: flags, files and environment → a validated [`Config`].
//!
//! Sources, later ones winning: built-in defaults ← QueuedTracking's settings stored in Matomo's
//! database (given to [`load_with_stored`]) ← Matomo `config.ini.php` (`--matomo-config`) ← TOML
//! file (`--config`) ← environment (`MATOMO_TIER__SECTION__KEY`) ← flags (`--set`,
//! `--matomo-vendor`, `--geoip-db`). Every value is checked against the setting registry
//! ([`crate::registry`]) as it is merged, so an unknown key or a value of the wrong type is
//! reported with the source that wrote it. This module never touches the network: the stored
//! settings are read by `stored` (feature `mysql`), reachability of Redis and MySQL is checked
//! by the binaries that use them.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{one_line, ConfigError, Origin};
use crate::matomo_ini::{self, IniFile, IniValue};
use crate::registry::{self, Kind, Setting};
use crate::settings::{Config, RedisBackend};

/// `redis.port` with `redis.backend = "sentinel"` when no layer sets it.
pub const SENTINEL_DEFAULT_PORT: u16 = 26379;

/// Command-line arguments every binary of the tier flattens into its own parser
/// (`#[command(flatten)] common: CommonArgs`).
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Configuration")]
pub struct CommonArgs {
    /// TOML configuration file (see docs/configuration.md).
    #[arg(long, global = true, value_name = "FILE", env = "MATOMO_TIER_CONFIG")]
    pub config: Option<PathBuf>,
    /// A Matomo `config/config.ini.php` (or the Matomo install folder) to read [database],
    /// [General] salt, [Tracker] and [QueuedTracking] from.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "MATOMO_TIER_MATOMO_CONFIG"
    )]
    pub matomo_config: Option<PathBuf>,
    /// Folder laid out like a Matomo install's `vendor/matomo/` (device detector regexes,
    /// search engine and social lists, referrer spam list).
    #[arg(long, global = true, value_name = "DIR")]
    pub matomo_vendor: Option<PathBuf>,
    /// MaxMind-format GeoIP database (.mmdb).
    #[arg(long, global = true, value_name = "FILE")]
    pub geoip_db: Option<PathBuf>,
    /// Set one setting, e.g. `--set queue.num_queue_workers=16` (repeatable; wins over files and
    /// environment). Every setting is listed below.
    #[arg(long = "set", global = true, value_name = "SECTION.KEY=VALUE", long_help = set_long_help())]
    pub set: Vec<String>,
}

fn set_long_help() -> String {
    format!(
        "Set one setting, e.g. `--set queue.num_queue_workers=16` (repeatable; wins over files and environment).\n\n{}",
        registry::help_text()
    )
}

/// The merged settings before deserialisation, with the origin of every value.
#[derive(Debug, Default)]
struct Layers {
    table: toml::Table,
    origins: BTreeMap<String, Origin>,
}

impl Layers {
    fn set(&mut self, setting: &Setting, value: toml::Value, origin: Origin) {
        let mut parts: Vec<&str> = setting.key.split('.').collect();
        let leaf = parts.pop().expect("keys are not empty");
        let mut table = &mut self.table;
        for part in parts {
            let entry = table
                .entry(part.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = match entry {
                toml::Value::Table(t) => t,
                _ => unreachable!("registry sections are tables"),
            };
        }
        table.insert(leaf.to_string(), value);
        self.origins.insert(setting.key.to_string(), origin);
    }

    fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).cloned().unwrap_or(Origin::Default)
    }
}

/// Loads and validates the configuration from the flags and the process environment.
pub fn load(args: &CommonArgs) -> Result<Config, ConfigError> {
    load_with_env(args, std::env::vars_os())
}

/// [`load`] with an explicit environment (for tests and embedding).
pub fn load_with_env(
    args: &CommonArgs,
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Config, ConfigError> {
    load_with_stored(args, env, None)
}

/// QueuedTracking's settings as Matomo stored them in its database (the plugin's system
/// settings, `<prefix>plugin_setting` rows with no user): the layer under config.ini.php's
/// `[QueuedTracking]`, which overrides them in Matomo too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredSettings {
    /// The table they were read from, for messages.
    pub table: String,
    /// Setting names and values (QueuedTracking's names, e.g. `redisHost`).
    pub values: Vec<(String, String)>,
}

/// [`load_with_env`] with QueuedTracking's stored settings (read from the database of the
/// Matomo config given) under config.ini.php's `[QueuedTracking]`, key by key, as Matomo reads
/// them: a key the file has, even empty, hides the stored one. Without a Matomo config
/// (`--matomo-config`) there is nothing to put them under, and they are not used.
pub fn load_with_stored(
    args: &CommonArgs,
    env: impl IntoIterator<Item = (OsString, OsString)>,
    stored: Option<&StoredSettings>,
) -> Result<Config, ConfigError> {
    let (config, layers, matomo_file) = merge(args, env, stored)?;
    crate::validate::validate(&config, matomo_file.is_some(), &|key| layers.origin(key))?;
    Ok(config)
}

/// The merged settings without the start-up checks, for reading the stored settings with the
/// database settings the sources give before the stored ones may complete the rest.
#[cfg(feature = "mysql")]
pub(crate) fn load_unchecked(
    args: &CommonArgs,
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Config, ConfigError> {
    merge(args, env, None).map(|(config, _, _)| config)
}

fn merge(
    args: &CommonArgs,
    env: impl IntoIterator<Item = (OsString, OsString)>,
    stored: Option<&StoredSettings>,
) -> Result<(Config, Layers, Option<PathBuf>), ConfigError> {
    let mut layers = Layers::default();
    let matomo_file = args
        .matomo_config
        .as_deref()
        .map(matomo_ini::resolve_config_path);
    if let Some(path) = &matomo_file {
        apply_matomo_ini(&mut layers, path, stored)?;
    }
    if let Some(path) = &args.config {
        apply_toml_file(&mut layers, path)?;
    }
    apply_env(&mut layers, env)?;
    apply_flags(&mut layers, args)?;

    let mut config =
        Config::deserialize(toml::Value::Table(layers.table.clone())).map_err(|e| {
            ConfigError::Syntax {
                what: "settings".into(),
                problem: one_line(&e.to_string()),
            }
        })?;
    // An empty Redis password means "no AUTH", as in QueuedTracking.
    if config.redis.password.as_deref() == Some("") {
        config.redis.password = None;
    }
    // Sentinels listen on 26379 by default, and QueuedTracking defaults redisPort to it for
    // Sentinel too: the default when no source set a port (a port Matomo stored counts).
    if config.redis.backend == RedisBackend::Sentinel
        && matches!(layers.origin("redis.port"), Origin::Default)
    {
        config.redis.port = SENTINEL_DEFAULT_PORT;
    }
    Ok((config, layers, matomo_file))
}

/// Sets what a Matomo source maps to our settings.
fn apply_matomo_settings(
    layers: &mut Layers,
    items: Vec<matomo_ini::MatomoSetting>,
) -> Result<(), ConfigError> {
    for item in items {
        let setting = registry::find(item.key).expect("mapped Matomo keys are settings");
        let value = match item.value {
            IniValue::Scalar(text) => from_text(setting, &text, &item.origin)?,
            IniValue::List(items) => {
                toml::Value::Array(items.into_iter().map(toml::Value::String).collect())
            }
        };
        layers.set(setting, value, item.origin);
    }
    Ok(())
}

/// Layer 1: the Matomo `config.ini.php` (with QueuedTracking's stored settings under its
/// `[QueuedTracking]`), and the `vendor/matomo` folder beside its install.
fn apply_matomo_ini(
    layers: &mut Layers,
    path: &Path,
    stored: Option<&StoredSettings>,
) -> Result<(), ConfigError> {
    let ini = IniFile::read(path)?;
    apply_matomo_settings(layers, matomo_ini::settings_from(&ini, path, stored)?)?;
    if let Some(vendor) = matomo_ini::vendor_dir_beside(path) {
        let setting = registry::find("matomo.vendor_dir").expect("known setting");
        let origin = Origin::MatomoIni {
            path: path.to_path_buf(),
            section: "install".into(),
            key: "vendor/matomo".into(),
        };
        let value = toml::Value::String(vendor.display().to_string());
        layers.set(setting, value, origin);
    }
    Ok(())
}

/// Layer 2: the TOML file.
fn apply_toml_file(layers: &mut Layers, path: &Path) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        what: "--config",
        path: path.to_path_buf(),
        source,
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Toml {
        path: path.to_path_buf(),
        message: one_line(&e.to_string()),
    })?;
    merge_toml(layers, "", table, path)
}

/// Layer 3: `MATOMO_TIER__SECTION__KEY` variables, in name order.
fn apply_env(
    layers: &mut Layers,
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<(), ConfigError> {
    let mut vars: Vec<(String, String)> = Vec::new();
    for (name, value) in env {
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(registry::ENV_PREFIX) {
            continue;
        }
        let value = value.into_string().map_err(|_| ConfigError::Syntax {
            what: format!("environment {name}"),
            problem: "value is not valid UTF-8".into(),
        })?;
        vars.push((name.to_string(), value));
    }
    vars.sort();
    for (name, value) in vars {
        let origin = Origin::Env(name.clone());
        let key = registry::key_for_env(&name).unwrap_or_default();
        let setting = registry::find(&key).ok_or(ConfigError::UnknownSetting {
            key,
            origin: Box::new(origin.clone()),
        })?;
        let value = from_text(setting, &value, &origin)?;
        layers.set(setting, value, origin);
    }
    Ok(())
}

/// Layer 4: `--matomo-vendor`, `--geoip-db`, then every `--set`, in order.
fn apply_flags(layers: &mut Layers, args: &CommonArgs) -> Result<(), ConfigError> {
    for (flag, key, path) in [
        ("--matomo-vendor", "matomo.vendor_dir", &args.matomo_vendor),
        ("--geoip-db", "matomo.geoip_db", &args.geoip_db),
    ] {
        if let Some(path) = path {
            let setting = registry::find(key).expect("known setting");
            let value = toml::Value::String(path.display().to_string());
            layers.set(setting, value, Origin::Flag(flag.into()));
        }
    }
    for arg in &args.set {
        let Some((key, value)) = arg.split_once('=') else {
            return Err(ConfigError::Syntax {
                what: format!("--set {arg}"),
                problem: "expected SECTION.KEY=VALUE".into(),
            });
        };
        let key = key.trim();
        let origin = Origin::Flag(format!("--set {key}"));
        let setting = registry::find(key).ok_or_else(|| ConfigError::UnknownSetting {
            key: key.to_string(),
            origin: Box::new(origin.clone()),
        })?;
        let value = from_text(setting, value, &origin)?;
        layers.set(setting, value, origin);
    }
    Ok(())
}

/// Walks a TOML table, rejecting unknown keys and ill-typed values.
fn merge_toml(
    layers: &mut Layers,
    prefix: &str,
    table: toml::Table,
    path: &Path,
) -> Result<(), ConfigError> {
    for (key, value) in table {
        let full = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        let origin = Origin::TomlFile(path.to_path_buf());
        if let Some(setting) = registry::find(&full) {
            let value = check_toml(setting, value, &origin)?;
            layers.set(setting, value, origin);
        } else if registry::is_section(&full) {
            match value {
                toml::Value::Table(inner) => merge_toml(layers, &full, inner, path)?,
                _ => {
                    return Err(invalid(
                        &full,
                        Kind::Str,
                        "<value>",
                        format!("`{full}` is a section, not a value"),
                        origin,
                    ))
                }
            }
        } else {
            return Err(ConfigError::UnknownSetting {
                key: full,
                origin: Box::new(origin),
            });
        }
    }
    Ok(())
}

fn invalid(key: &str, kind: Kind, value: &str, problem: String, origin: Origin) -> ConfigError {
    let value = if kind == Kind::Secret {
        "<redacted>".to_string()
    } else {
        value.to_string()
    };
    ConfigError::Invalid {
        key: key.to_string(),
        value,
        problem,
        origin: Box::new(origin),
    }
}

/// Checks a TOML value against the setting's kind (and normalises integer seconds to floats).
fn check_toml(
    setting: &Setting,
    value: toml::Value,
    origin: &Origin,
) -> Result<toml::Value, ConfigError> {
    let shown = value.to_string();
    let wrong = |what: &str| {
        invalid(
            setting.key,
            setting.kind,
            &shown,
            format!("expected {what}"),
            origin.clone(),
        )
    };
    match (setting.kind, value) {
        (Kind::Str | Kind::Secret | Kind::Path, v @ toml::Value::String(_)) => Ok(v),
        (Kind::Str | Kind::Secret | Kind::Path, _) => Err(wrong("a string")),
        (Kind::Bool, v @ toml::Value::Boolean(_)) => Ok(v),
        (Kind::Bool, _) => Err(wrong("true or false")),
        (Kind::UInt(max), toml::Value::Integer(i)) if i >= 0 && (i as u64) <= max => {
            Ok(toml::Value::Integer(i))
        }
        (Kind::UInt(max), _) => Err(wrong(&format!("a whole number from 0 to {max}"))),
        (Kind::Secs, toml::Value::Integer(i)) if i >= 0 => Ok(toml::Value::Float(i as f64)),
        (Kind::Secs, toml::Value::Float(f)) if f.is_finite() && f >= 0.0 => {
            Ok(toml::Value::Float(f))
        }
        (Kind::Secs, _) => Err(wrong("a non-negative number of seconds")),
        (Kind::Addr, toml::Value::String(s)) => from_text(setting, &s, origin),
        (Kind::Addr, _) => Err(wrong("a string like \"127.0.0.1:8080\"")),
        (Kind::Enum(words), toml::Value::String(s)) if words.contains(&s.as_str()) => {
            Ok(toml::Value::String(s))
        }
        (Kind::Enum(words), _) => Err(wrong(&format!("one of {}", words.join(", ")))),
        (Kind::List, toml::Value::Array(items)) if items.iter().all(toml::Value::is_str) => {
            Ok(toml::Value::Array(items))
        }
        (Kind::List, _) => Err(wrong("an array of strings")),
    }
}

/// Reads a setting from text (environment, `--set`, Matomo ini) according to its kind.
fn from_text(setting: &Setting, text: &str, origin: &Origin) -> Result<toml::Value, ConfigError> {
    // Free text is taken as written (a password may start with a space); typed values are trimmed.
    let raw = text;
    let text = text.trim();
    let err = |problem: String| invalid(setting.key, setting.kind, text, problem, origin.clone());
    Ok(match setting.kind {
        Kind::Str | Kind::Secret | Kind::Path => toml::Value::String(raw.to_string()),
        Kind::Bool => toml::Value::Boolean(match text.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" | "" => false,
            _ => return Err(err("expected true or false".into())),
        }),
        Kind::UInt(max) => match text.parse::<u64>() {
            Ok(n) if n <= max => toml::Value::Integer(n as i64),
            _ => return Err(err(format!("expected a whole number from 0 to {max}"))),
        },
        Kind::Secs => match text.parse::<f64>() {
            Ok(f) if f.is_finite() && f >= 0.0 => toml::Value::Float(f),
            _ => return Err(err("expected a non-negative number of seconds".into())),
        },
        Kind::Addr => match text.parse::<std::net::SocketAddr>() {
            Ok(_) => toml::Value::String(text.to_string()),
            Err(_) => return Err(err("expected an address like 127.0.0.1:8080".into())),
        },
        Kind::Enum(words) => {
            let word = text.to_ascii_lowercase();
            if !words.contains(&word.as_str()) {
                return Err(err(format!("expected one of {}", words.join(", "))));
            }
            toml::Value::String(word)
        }
        Kind::List => toml::Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        ),
    })
}
