//! Reading Matomo's `config/config.ini.php`.
//!
//! This module owns the small parser for the PHP ini dialect Matomo writes (sections,
//! `key = "value"`, unquoted values, `key[] = value` lists, `;` comments, the leading
//! `; <?php exit; ?> DO NOT REMOVE THIS LINE`) and the mapping of the sections the tier honours
//! (`[database]`, `[General]`, `[Tracker]`, `[QueuedTracking]`) onto our dotted setting names. It
//! never decides precedence or validates values: it hands `(key, value, origin)` triples to the
//! loader, which treats them like any other source.

use std::path::{Path, PathBuf};

use crate::error::{ConfigError, Origin};

/// A value in the ini file: a scalar, or the list built by `key[] = ...` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IniValue {
    /// `key = value`.
    Scalar(String),
    /// `key[] = a` / `key[] = b` (or `key[name] = ...`; names are dropped, order kept).
    List(Vec<String>),
}

/// One `[section]` with its keys in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IniSection {
    /// Section name without brackets.
    pub name: String,
    /// Keys and values; a later duplicate scalar replaces the earlier one.
    pub entries: Vec<(String, IniValue)>,
}

impl IniSection {
    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&IniValue> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// A parsed ini file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IniFile {
    /// Sections in file order (keys before the first section land in a section named "").
    pub sections: Vec<IniSection>,
}

impl IniFile {
    /// The section named `name` (case-sensitive, as PHP).
    pub fn section(&self, name: &str) -> Option<&IniSection> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// Parses ini text. `Err((line, message))` names the first bad line (1-based).
    pub fn parse(text: &str) -> Result<IniFile, (usize, String)> {
        let mut file = IniFile::default();
        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let Some(end) = rest.find(']') else {
                    return Err((line_no, format!("section header without `]`: {line}")));
                };
                let trailing = rest[end + 1..].trim();
                if !(trailing.is_empty() || trailing.starts_with(';')) {
                    return Err((
                        line_no,
                        format!("unexpected text after section header: {trailing}"),
                    ));
                }
                file.sections.push(IniSection {
                    name: rest[..end].trim().to_string(),
                    entries: Vec::new(),
                });
                continue;
            }
            let Some(eq) = line.find('=') else {
                return Err((line_no, format!("expected `key = value`, found: {line}")));
            };
            let (key, is_list) = parse_key(line[..eq].trim()).map_err(|m| (line_no, m))?;
            let value = parse_value(line[eq + 1..].trim()).map_err(|m| (line_no, m))?;
            if file.sections.is_empty() {
                file.sections.push(IniSection::default());
            }
            let section = file.sections.last_mut().expect("a section exists");
            insert(section, key, value, is_list);
        }
        Ok(file)
    }

    /// Reads and parses a file.
    pub fn read(path: &Path) -> Result<IniFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            what: "--matomo-config",
            path: path.to_path_buf(),
            source,
        })?;
        IniFile::parse(&text).map_err(|(line, message)| ConfigError::Ini {
            path: path.to_path_buf(),
            line,
            message,
        })
    }
}

fn parse_key(key: &str) -> Result<(String, bool), String> {
    let (name, is_list) = match key.find('[') {
        Some(open) if key.ends_with(']') => (key[..open].trim(), true),
        Some(_) => return Err(format!("malformed key: {key}")),
        None => (key, false),
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(format!("malformed key: {key}"));
    }
    Ok((name.to_string(), is_list))
}

/// A value: `"double quoted"` (with `\"` and `\\` escapes), `'single quoted'`, or bare text up
/// to a `;` comment. Bare `true/on/yes` read as "1" and `false/off/no/none/null` as "", as PHP does.
fn parse_value(raw: &str) -> Result<String, String> {
    let mut chars = raw.chars();
    match chars.next() {
        Some(quote @ ('"' | '\'')) => {
            let mut out = String::new();
            let mut escaped = false;
            let mut closed_at = None;
            for (i, c) in raw.char_indices().skip(1) {
                if escaped {
                    out.push(c);
                    escaped = false;
                } else if c == '\\' && quote == '"' {
                    escaped = true;
                } else if c == quote {
                    closed_at = Some(i);
                    break;
                } else {
                    out.push(c);
                }
            }
            let Some(end) = closed_at else {
                return Err(format!("unterminated quoted value: {raw}"));
            };
            let trailing = raw[end + 1..].trim();
            if !(trailing.is_empty() || trailing.starts_with(';')) {
                return Err(format!("unexpected text after quoted value: {trailing}"));
            }
            Ok(out)
        }
        _ => {
            let bare = raw.split(';').next().unwrap_or("").trim();
            Ok(match bare.to_ascii_lowercase().as_str() {
                "true" | "on" | "yes" => "1".into(),
                "false" | "off" | "no" | "none" | "null" => String::new(),
                _ => bare.to_string(),
            })
        }
    }
}

fn insert(section: &mut IniSection, key: String, value: String, is_list: bool) {
    let existing = section.entries.iter_mut().find(|(k, _)| *k == key);
    match (existing, is_list) {
        (Some((_, IniValue::List(items))), true) => items.push(value),
        (Some((_, slot)), false) => *slot = IniValue::Scalar(value),
        (Some((_, slot)), true) => *slot = IniValue::List(vec![value]),
        (None, true) => section.entries.push((key, IniValue::List(vec![value]))),
        (None, false) => section.entries.push((key, IniValue::Scalar(value))),
    }
}

/// A value taken from the Matomo config for one of our settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MatomoSetting {
    /// Our dotted setting name.
    pub key: &'static str,
    /// The value as text (lists as their items).
    pub value: IniValue,
    /// Where it came from.
    pub origin: Origin,
}

/// `[database]` keys → our settings.
const DATABASE: &[(&str, &str)] = &[
    ("host", "database.host"),
    ("port", "database.port"),
    ("username", "database.username"),
    ("password", "database.password"),
    ("dbname", "database.dbname"),
    ("tables_prefix", "database.tables_prefix"),
];

/// `[Tracker]` keys the tier honours; they keep their names under `matomo.tracker.`.
const TRACKER: &[&str] = &[
    "record_statistics",
    "visit_standard_length",
    "window_look_back_for_visitor",
    "trust_visitors_cookies",
    "enable_userid_overwrites_visitorid",
    "create_new_visit_when_campaign_changes",
    "create_new_visit_when_website_referrer_changes",
    "create_new_visit_after_midnight",
    "create_new_visit_after_x_actions",
    "page_maximum_length",
    "tracking_requests_require_authentication_when_custom_timestamp_newer_than",
    "tracking_requests_require_authentication",
    "enable_fingerprinting_across_websites",
    "ignore_visits_cookie_name",
    "exclude_requests",
];

/// The settings a Matomo config provides, in precedence order (later wins). Keys the tier does
/// not use are ignored: a Matomo config holds many settings that concern only the UI.
///
/// `stored`: QueuedTracking's settings stored in Matomo's database, under the file's
/// `[QueuedTracking]` key by key (a key the file has, even empty, hides the stored one).
pub fn settings_from(
    file: &IniFile,
    path: &Path,
    stored: Option<&crate::StoredSettings>,
) -> Result<Vec<MatomoSetting>, ConfigError> {
    let mut out = Vec::new();
    let origin = |section: &str, key: &str| Origin::MatomoIni {
        path: path.to_path_buf(),
        section: section.to_string(),
        key: key.to_string(),
    };
    if let Some(section) = file.section("database") {
        for (ini_key, our_key) in DATABASE {
            if let Some(value) = section.get(ini_key) {
                out.push(MatomoSetting {
                    key: our_key,
                    value: value.clone(),
                    origin: origin("database", ini_key),
                });
            }
        }
    }
    if let Some(section) = file.section("General") {
        for (ini_key, our_key) in [
            ("salt", "matomo.salt"),
            (
                "proxy_client_headers",
                "matomo.tracker.proxy_client_headers",
            ),
            ("proxy_ips", "matomo.tracker.proxy_ips"),
            (
                "action_title_category_delimiter",
                "matomo.tracker.action_title_category_delimiter",
            ),
        ] {
            if let Some(value) = section.get(ini_key) {
                out.push(MatomoSetting {
                    key: our_key,
                    value: value.clone(),
                    origin: origin("General", ini_key),
                });
            }
        }
    }
    if let Some(section) = file.section("Tracker") {
        for key in TRACKER {
            if let Some(value) = section.get(key) {
                let our_key = crate::registry::SETTINGS
                    .iter()
                    .find(|s| s.key.strip_prefix("matomo.tracker.") == Some(key))
                    .map(|s| s.key)
                    .expect("every mapped [Tracker] key is a setting");
                out.push(MatomoSetting {
                    key: our_key,
                    value: value.clone(),
                    origin: origin("Tracker", key),
                });
            }
        }
    }
    let in_file = file.section("QueuedTracking");
    let mut section = IniSection {
        name: "QueuedTracking".into(),
        entries: Vec::new(),
    };
    for (key, value) in stored.map_or(&[][..], |s| &s.values[..]) {
        if in_file.and_then(|f| f.get(key)).is_none() {
            section
                .entries
                .push((key.clone(), IniValue::Scalar(value.clone())));
        }
    }
    if let Some(in_file) = in_file {
        section.entries.extend(in_file.entries.iter().cloned());
    }
    let key_origin = |key: &str| match stored {
        Some(stored) if in_file.and_then(|f| f.get(key)).is_none() => Origin::MatomoDb {
            table: stored.table.clone(),
            plugin: "QueuedTracking".into(),
            setting: key.into(),
        },
        _ => origin("QueuedTracking", key),
    };
    out.extend(crate::queued_tracking::settings(&section, &key_origin)?);
    Ok(out)
}

/// Resolves `--matomo-config PATH`: the file itself, a Matomo `config/` folder, or the install
/// folder holding `config/config.ini.php`.
pub fn resolve_config_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        let in_install = path.join("config").join("config.ini.php");
        if in_install.is_file() {
            return in_install;
        }
        return path.join("config.ini.php");
    }
    path.to_path_buf()
}

/// `<install>/vendor/matomo` for `<install>/config/config.ini.php`, when that folder exists.
pub fn vendor_dir_beside(config_file: &Path) -> Option<PathBuf> {
    let install = config_file.parent()?.parent()?;
    let vendor = install.join("vendor").join("matomo");
    vendor.is_dir().then_some(vendor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"; <?php exit; ?> DO NOT REMOVE THIS LINE
; file automatically generated or modified by Matomo
[database]
host = "db.internal"
username = "matomo"
password = "p;a\"ss"
port = 3307
tables_prefix = "piwik_"

[General]
salt = "abc123"
proxy_client_headers[] = HTTP_X_FORWARDED_FOR
proxy_client_headers[] = "HTTP_CF_CONNECTING_IP"
proxy_ips[] = 10.0.0.0/8 ; the load balancers

[Tracker]
trust_visitors_cookies = 1
record_statistics = Off
some_other_setting = 7

[QueuedTracking]
redisHost = "127.0.0.1"
redisPort = 6380
redisPassword = ""
numQueueWorkers = 16
useWhatRedisBackendType = 2
sentinelMasterName = "mymaster"
"#;

    #[test]
    fn parses_the_php_ini_dialect() {
        let file = IniFile::parse(SAMPLE).unwrap();
        let db = file.section("database").unwrap();
        assert_eq!(
            db.get("password"),
            Some(&IniValue::Scalar("p;a\"ss".into()))
        );
        assert_eq!(db.get("port"), Some(&IniValue::Scalar("3307".into())));
        let general = file.section("General").unwrap();
        assert_eq!(
            general.get("proxy_client_headers"),
            Some(&IniValue::List(vec![
                "HTTP_X_FORWARDED_FOR".into(),
                "HTTP_CF_CONNECTING_IP".into()
            ]))
        );
        assert_eq!(
            general.get("proxy_ips"),
            Some(&IniValue::List(vec!["10.0.0.0/8".into()]))
        );
        let tracker = file.section("Tracker").unwrap();
        assert_eq!(
            tracker.get("record_statistics"),
            Some(&IniValue::Scalar(String::new()))
        );
    }

    #[test]
    fn maps_the_sections_the_tier_honours() {
        let file = IniFile::parse(SAMPLE).unwrap();
        let settings = settings_from(&file, Path::new("/m/config/config.ini.php"), None).unwrap();
        let get = |k: &str| {
            settings
                .iter()
                .rev()
                .find(|s| s.key == k)
                .map(|s| s.value.clone())
        };
        assert_eq!(
            get("database.host"),
            Some(IniValue::Scalar("db.internal".into()))
        );
        assert_eq!(
            get("database.tables_prefix"),
            Some(IniValue::Scalar("piwik_".into()))
        );
        assert_eq!(get("matomo.salt"), Some(IniValue::Scalar("abc123".into())));
        assert_eq!(
            get("matomo.tracker.trust_visitors_cookies"),
            Some(IniValue::Scalar("1".into()))
        );
        assert_eq!(get("redis.port"), Some(IniValue::Scalar("6380".into())));
        assert_eq!(
            get("redis.password"),
            None,
            "an empty redisPassword means no password"
        );
        assert_eq!(
            get("queue.num_queue_workers"),
            Some(IniValue::Scalar("16".into()))
        );
        assert_eq!(
            get("redis.backend"),
            Some(IniValue::Scalar("sentinel".into()))
        );
        assert!(settings
            .iter()
            .all(|s| !s.key.contains("some_other_setting")));
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        assert_eq!(IniFile::parse("[a]\nkey = \"open\n").unwrap_err().0, 2);
        assert_eq!(IniFile::parse("[a]\n\njust words\n").unwrap_err().0, 3);
        assert_eq!(IniFile::parse("[a\n").unwrap_err().0, 1);
    }

    #[test]
    fn mysql_queue_backend_is_refused() {
        let file = IniFile::parse("[QueuedTracking]\nbackend = \"mysql\"\n").unwrap();
        let err = settings_from(&file, Path::new("c.ini.php"), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[QueuedTracking] backend") && err.contains("only the redis backend"),
            "{err}"
        );
    }

    #[test]
    fn reads_the_golden_matomo_config_when_available() {
        let path = crate::shared_dir().map(|d| d.join("golden-php/matomo-state/config.ini.php"));
        let Some(path) = path.filter(|p| p.is_file()) else {
            println!("skipped: shared golden-php/matomo-state/config.ini.php not found (set MATOMO_SHARED_DIR)");
            return;
        };
        let file = IniFile::read(&path).unwrap();
        let settings = settings_from(&file, &path, None).unwrap();
        let get = |k: &str| {
            settings
                .iter()
                .rev()
                .find(|s| s.key == k)
                .map(|s| s.value.clone())
        };
        assert_eq!(get("database.port"), Some(IniValue::Scalar("3307".into())));
        assert_eq!(
            get("matomo.salt"),
            Some(IniValue::Scalar("4c846f1419772b8c066efe9b957ee372".into()))
        );
        assert_eq!(
            get("queue.num_queue_workers"),
            Some(IniValue::Scalar("1".into()))
        );
        assert_eq!(
            get("queue.num_requests_to_process"),
            Some(IniValue::Scalar("25".into()))
        );
        assert_eq!(
            get("redis.backend"),
            Some(IniValue::Scalar("standalone".into()))
        );
        assert!(file.section("Plugins").unwrap().get("Plugins").is_some());
    }
}
