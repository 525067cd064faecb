//! The upstream referrer data lists, loaded at run time from a folder laid out like a Matomo
//! install's `vendor/matomo/`: `searchengine-and-social-list/SearchEngines.yml` and `Socials.yml`,
//! and `referrer-spam-list/spammers.txt`. They are turned into the lookup structures Matomo
//! builds from them (`Referrers\SearchEngine::transformData`, `Referrers\Social::transformData`,
//! `ReferrerSpamFilter::loadSpammerList`), so lookups behave as Matomo's do, quirks included:
//! a search engine URL defined twice keeps the last definition; a social domain is used as an
//! unescaped regular expression; a spammer entry is a case-insensitive substring of `urlref`.
//!
//! The files belong to other projects and are never vendored here. This module reads files only
//! in `ReferrerLists::load`; everything else is pure.
//!
//! API:
//! - `ReferrerLists::load(vendor_dir: &Path) -> Result<ReferrerLists, ListsError>`
//! - `SearchEngines::definition(host_or_host_path) -> Option<&SearchEngineDef>`
//! - `Socials::network_for_url(url) -> Option<&str>` (first definition in file order that matches)
//! - `SpamList::is_spam(urlref) -> bool`

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use regex::bytes::{
    Regex as BytesRegex, RegexBuilder as BytesRegexBuilder, RegexSet as BytesRegexSet,
    RegexSetBuilder as BytesRegexSetBuilder,
};
use serde_yaml::Value;

use super::pcre::PhpRegex;

mod php_option;
pub use php_option::{unserialize, ListOptions, PhpValue};

/// Failures while loading the lists; start-up reports them and stops.
#[derive(Debug, thiserror::Error)]
pub enum ListsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A YAML file is not valid YAML.
    #[error("cannot parse {path}: {source}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        source: serde_yaml::Error,
    },
    /// A YAML file parsed but does not have the expected shape.
    #[error("{path}: {reason}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A pattern from the lists could not be compiled.
    #[error("cannot compile pattern built from {path}: {source}")]
    Regex {
        /// The file.
        path: PathBuf,
        /// The regex error.
        source: regex::Error,
    },
}

/// One search engine URL's definition (`SearchEngines.yml` entry, as Matomo keys it by URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchEngineDef {
    /// The engine's name (the YAML key), e.g. `Google`.
    pub name: String,
    /// Keyword parameters in order; entries starting with `/` are PHP regexes applied to the
    /// whole referrer URL (first capture group is the keyword).
    pub params: Vec<String>,
    /// `backlink` template (`search?q={k}`), if any.
    pub backlink: Option<String>,
    /// Charsets the keyword may be encoded in.
    pub charsets: Vec<String>,
    /// `hiddenkeyword` patterns; `None` means Matomo's default (`/^$/` and `/`).
    pub hidden_keyword: Option<Vec<String>>,
}

/// Search engines keyed by URL pattern (`www.google.com`, `google.{}`, `bing.com/images`).
#[derive(Debug, Clone, Default)]
pub struct SearchEngines {
    by_url: HashMap<String, SearchEngineDef>,
    /// Keyword / hidden-keyword regexes, keyed by the PHP pattern text, compiled once at load:
    /// `None` for a pattern PHP would not compile (it never matches).
    regexes: HashMap<String, Option<Arc<PhpRegex>>>,
}

impl SearchEngines {
    /// The definition for an exact key (host, host+path, or lossy host pattern).
    pub fn definition(&self, key: &str) -> Option<&SearchEngineDef> {
        self.by_url.get(key)
    }

    /// Whether `key` is defined (PHP `array_key_exists`).
    pub fn contains(&self, key: &str) -> bool {
        self.by_url.contains_key(key)
    }

    /// Number of URL keys.
    pub fn len(&self) -> usize {
        self.by_url.len()
    }

    /// True when no engine is defined.
    pub fn is_empty(&self) -> bool {
        self.by_url.is_empty()
    }

    /// The compiled form of a keyword or hidden-keyword pattern of the list (every such pattern
    /// starting with `/` is compiled by [`SearchEngines::insert`], once); `None` when PHP would
    /// not compile it, so it matches nothing.
    pub fn regex(&self, php_pattern: &str) -> Option<&PhpRegex> {
        self.regexes.get(php_pattern)?.as_deref()
    }

    /// Iterates over `(url key, definition)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &SearchEngineDef)> {
        self.by_url.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Adds (or replaces, as PHP's `$urlToInfo[$url] = …` does) one URL's definition.
    pub fn insert(&mut self, url: String, def: SearchEngineDef) {
        for pattern in def.params.iter().chain(def.hidden_keyword.iter().flatten()) {
            if pattern.starts_with('/') && !self.regexes.contains_key(pattern) {
                let compiled = PhpRegex::new(pattern).ok().map(Arc::new);
                self.regexes.insert(pattern.clone(), compiled);
            }
        }
        self.by_url.insert(url, def);
    }

    /// Parses `SearchEngines.yml` text.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self, ListsError> {
        let doc: Value = serde_yaml::from_str(text).map_err(|source| ListsError::Yaml {
            path: path.to_owned(),
            source,
        })?;
        let shape = |reason: String| ListsError::Shape {
            path: path.to_owned(),
            reason,
        };
        let Value::Mapping(engines) = doc else {
            return Err(shape("top level is not a mapping".into()));
        };
        let mut out = SearchEngines::default();
        for (name, info) in engines {
            let name =
                scalar_string(&name).ok_or_else(|| shape("engine name is not a scalar".into()))?;
            let Value::Sequence(defs) = info else {
                continue; // PHP skips empty / non-array entries
            };
            for def in defs {
                let Value::Mapping(def) = def else {
                    return Err(shape(format!("{name}: a definition is not a mapping")));
                };
                let get = |k: &str| def.get(Value::String(k.into()));
                let list = |k: &str| -> Vec<String> {
                    match get(k) {
                        Some(Value::Sequence(items)) => {
                            items.iter().filter_map(scalar_string).collect()
                        }
                        Some(v) => scalar_string(v).into_iter().collect(),
                        None => Vec::new(),
                    }
                };
                let template = SearchEngineDef {
                    name: name.clone(),
                    params: list("params"),
                    backlink: get("backlink").and_then(scalar_string),
                    charsets: list("charsets"),
                    hidden_keyword: get("hiddenkeyword").map(|_| list("hiddenkeyword")),
                };
                for url in list("urls") {
                    out.insert(url, template.clone());
                }
            }
        }
        Ok(out)
    }
}

/// Social networks in file order (`domain → name`), matched as Matomo does: the domain is put
/// unescaped into `/(^|[\.\/])DOMAIN([\.\/]|$)/` and tried against the whole referrer URL, on
/// bytes as PCRE runs it without `u` (`.` is one byte, not one character).
#[derive(Debug, Clone)]
pub struct Socials {
    entries: Vec<(String, String)>,
    set: BytesRegexSet,
}

impl Default for Socials {
    fn default() -> Self {
        Socials {
            entries: Vec::new(),
            set: BytesRegexSet::empty(),
        }
    }
}

impl Socials {
    /// Parses `Socials.yml` text.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self, ListsError> {
        let doc: Value = serde_yaml::from_str(text).map_err(|source| ListsError::Yaml {
            path: path.to_owned(),
            source,
        })?;
        let Value::Mapping(networks) = doc else {
            return Err(ListsError::Shape {
                path: path.to_owned(),
                reason: "top level is not a mapping".into(),
            });
        };
        // PHP: $urlToName[$url] = $name — a domain listed twice keeps its first position and
        // the last name.
        let mut entries: Vec<(String, String)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (name, urls) in networks {
            let Some(name) = scalar_string(&name) else {
                continue;
            };
            let Value::Sequence(urls) = urls else {
                continue;
            };
            for url in urls.iter().filter_map(scalar_string) {
                match index.get(&url) {
                    Some(&i) => entries[i].1 = name.clone(),
                    None => {
                        index.insert(url.clone(), entries.len());
                        entries.push((url, name.clone()));
                    }
                }
            }
        }
        Self::from_entries(entries, path)
    }

    /// Builds the matcher from `(domain, name)` pairs in Matomo's order.
    pub fn from_entries(entries: Vec<(String, String)>, path: &Path) -> Result<Self, ListsError> {
        // PHP's preg_match fails (no match) on a domain that does not make a valid pattern (a
        // `/` in it ends the pattern early, for one); such an entry gets a pattern that never
        // matches instead of failing the whole list.
        let patterns: Vec<String> = entries
            .iter()
            .map(|(domain, _)| {
                let php = format!(r"/(^|[\.\/]){domain}([\.\/]|$)/");
                // The domain goes in unwrapped, as in PHP, where a `|` in it splits the whole
                // pattern. PCRE's `$` also matches before a final newline; nothing follows the
                // group, so taking that newline into the match changes nothing but its end.
                let p = format!(r"(?:^|[./]){domain}(?:[./]|\n?$)");
                if PhpRegex::new(&php).is_ok()
                    && BytesRegexBuilder::new(&p).unicode(false).build().is_ok()
                {
                    p
                } else {
                    r"[^\s\S]".to_owned()
                }
            })
            .collect();
        let set = BytesRegexSetBuilder::new(&patterns)
            .unicode(false)
            .build()
            .map_err(|source| ListsError::Regex {
                path: path.to_owned(),
                source,
            })?;
        Ok(Socials { entries, set })
    }

    /// `Social::getSocialNetworkFromDomain` when `isSocialUrl` holds: the name of the first
    /// network (file order) whose domain pattern matches `url`.
    pub fn network_for_url(&self, url: &str) -> Option<&str> {
        let first = self.set.matches(url.as_bytes()).into_iter().next()?;
        Some(self.entries[first].1.as_str())
    }

    /// Number of domains.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The `(domain, name)` pairs in matching order.
    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }

    /// True when no network is defined.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The referrer spam list: a `urlref` containing any entry (ASCII case-insensitive, as PHP's
/// `stripos`) is spam. Entries are kept exactly as the file has them (trailing spaces included).
#[derive(Debug, Clone, Default)]
pub struct SpamList {
    hosts: Vec<String>,
    matcher: Option<BytesRegex>,
}

impl SpamList {
    /// Builds the list from `spammers.txt` text (`file(FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES)`).
    pub fn from_text(text: &str, path: &Path) -> Result<Self, ListsError> {
        let hosts: Vec<String> = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        Self::from_hosts(hosts, path)
    }

    /// Builds the list from entries (e.g. the `referrer_spam_blacklist` option's list).
    pub fn from_hosts(hosts: Vec<String>, path: &Path) -> Result<Self, ListsError> {
        let matcher = if hosts.is_empty() {
            None
        } else {
            let alternation: Vec<String> = hosts.iter().map(|h| regex::escape(h)).collect();
            let pattern = format!("(?i-u:{})", alternation.join("|"));
            Some(
                regex::bytes::RegexBuilder::new(&pattern)
                    .unicode(false)
                    .size_limit(256 << 20)
                    .dfa_size_limit(64 << 20)
                    .build()
                    .map_err(|source| ListsError::Regex {
                        path: path.to_owned(),
                        source,
                    })?,
            )
        };
        Ok(SpamList { hosts, matcher })
    }

    /// `ReferrerSpamFilter::isSpam` on the request's `urlref` value.
    pub fn is_spam(&self, urlref: &str) -> bool {
        self.matcher
            .as_ref()
            .is_some_and(|m| m.is_match(urlref.as_bytes()))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// True when the list is empty.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }
}

/// All three lists, loaded together.
#[derive(Debug, Clone, Default)]
pub struct ReferrerLists {
    /// `SearchEngines.yml`.
    pub search_engines: SearchEngines,
    /// `Socials.yml`.
    pub socials: Socials,
    /// `spammers.txt`.
    pub spammers: SpamList,
}

fn read(path: &Path) -> Result<String, ListsError> {
    let bytes = std::fs::read(path).map_err(|source| ListsError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

impl ReferrerLists {
    /// Loads the lists from `vendor_dir` (laid out like Matomo's `vendor/matomo/`).
    pub fn load(vendor_dir: &Path) -> Result<Self, ListsError> {
        let se = vendor_dir.join("searchengine-and-social-list/SearchEngines.yml");
        let so = vendor_dir.join("searchengine-and-social-list/Socials.yml");
        let sp = vendor_dir.join("referrer-spam-list/spammers.txt");
        Ok(ReferrerLists {
            search_engines: SearchEngines::from_yaml(&read(&se)?, &se)?,
            socials: Socials::from_yaml(&read(&so)?, &so)?,
            spammers: SpamList::from_text(&read(&sp)?, &sp)?,
        })
    }
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1".into() } else { String::new() }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SE: &str = r#"
Google:
  -
    urls:
      - www.google.com
      - 'google.{}'
    params:
      - q
    backlink: 'search?q={k}'
    hiddenkeyword:
      - '/^$/'
      - '/'
      - '/\/url\?.*/'
1.cz:
  -
    urls:
      - 1.cz
    params:
      - '/s\/([^\/]+)/'
      - q
    charsets:
      - iso-8859-2
Dup:
  -
    urls:
      - 1.cz
    params:
      - x
"#;

    #[test]
    fn search_engines_keyed_by_url_last_wins() {
        let se = SearchEngines::from_yaml(SE, Path::new("SE")).expect("parses");
        assert_eq!(se.len(), 3);
        let g = se.definition("google.{}").expect("google");
        assert_eq!(g.name, "Google");
        assert_eq!(g.params, vec!["q"]);
        assert_eq!(g.backlink.as_deref(), Some("search?q={k}"));
        assert_eq!(g.hidden_keyword.as_ref().map(Vec::len), Some(3));
        assert!(se
            .regex(r"/\/url\?.*/")
            .is_some_and(|r| r.is_match(b"/url?x")));
        assert_eq!(se.definition("1.cz").map(|d| d.name.as_str()), Some("Dup"));
        assert!(se.regex(r"/s\/([^\/]+)/").is_some());
        assert!(se.regex("/not in the list/").is_none());
        // Compiled once at load even when PHP refuses it, so it is not retried per referrer.
        assert_eq!(se.regexes.get("/").map(|r| r.is_some()), Some(false));
        assert!(SearchEngines::from_yaml("- a", Path::new("x")).is_err());
        assert!(SearchEngines::from_yaml("a: [", Path::new("x")).is_err());
    }

    #[test]
    fn socials_match_like_matomo() {
        let yml = "Facebook:\n  - facebook.com\n  - fb.me\nVK:\n  - vk.com\nX:\n  - x.com\n";
        let s = Socials::from_yaml(yml, Path::new("S")).expect("parses");
        assert_eq!(
            s.network_for_url("https://m.facebook.com/story"),
            Some("Facebook")
        );
        assert_eq!(s.network_for_url("https://vk.com/"), Some("VK"));
        assert_eq!(s.network_for_url("https://notvk.com/"), None);
        // the domain is an unescaped regex: '.' matches any character
        assert_eq!(s.network_for_url("https://vkxcom/"), Some("VK"));
        // matched anywhere in the URL, not only the host
        assert_eq!(
            s.network_for_url("https://example.org/via/x.com/y"),
            Some("X")
        );
        // on bytes, as PCRE without `u`: '.' is one byte, so a two-byte 'é' is not one '.'
        assert_eq!(s.network_for_url("https://vk\u{e9}com/"), None);
        // PCRE's `$` before a final newline
        assert_eq!(s.network_for_url("https://x.com\n"), Some("X"));
    }

    /// The domain is pasted into PHP's pattern as it is: a `|` splits the whole pattern, a `/`
    /// ends it (PHP then refuses the rest as modifiers, so the entry never matches).
    #[test]
    fn social_domains_are_pasted_into_the_pattern_as_php_does() {
        let s = Socials::from_entries(
            vec![
                ("a.example/x".into(), "Slash".into()),
                ("left|right".into(), "Split".into()),
            ],
            Path::new("S"),
        )
        .expect("builds");
        assert_eq!(s.network_for_url("https://a.example/x/"), None);
        // `(^|[./])left` or `right([./]|$)`: no boundary needed before "right".
        assert_eq!(s.network_for_url("https://downright.com/"), Some("Split"));
        assert_eq!(s.network_for_url("https://cleft.com/"), None);
        assert_eq!(s.network_for_url("https://x.left"), Some("Split"));
    }

    #[test]
    fn invalid_social_domain_never_matches() {
        let yml = "Broken:\n  - 'bro(ken.com'\nVK:\n  - vk.com\n";
        let s =
            Socials::from_yaml(yml, Path::new("S")).expect("one bad entry does not fail the list");
        assert_eq!(s.len(), 2);
        assert_eq!(s.network_for_url("https://bro(ken.com/"), None);
        assert_eq!(s.network_for_url("https://vk.com/"), Some("VK"));
    }

    #[test]
    fn spam_entries_with_non_ascii() {
        let l = SpamList::from_text("пример.рф\nxn--e1afmkfd.xn--p1ai\n", Path::new("s"))
            .expect("builds");
        assert!(l.is_spam("http://пример.рф/"));
        assert!(l.is_spam("http://XN--E1AFMKFD.xn--p1ai/"));
        assert!(!l.is_spam("http://example.com/"));
    }

    #[test]
    fn spam_is_case_insensitive_substring() {
        let l = SpamList::from_text("semalt.com\r\n\nQIWI.xyz\ntrail.shop \n", Path::new("s"))
            .expect("builds");
        assert_eq!(l.len(), 3);
        assert!(l.is_spam("http://SEMALT.com/x"));
        assert!(l.is_spam("http://a.qiwi.XYZ/"));
        assert!(l.is_spam("http://x/?r=semalt.com"));
        assert!(
            !l.is_spam("http://trail.shop/"),
            "trailing space is part of the entry"
        );
        assert!(l.is_spam("trail.shop x"));
        assert!(!l.is_spam("http://example.com/"));
        assert!(!SpamList::default().is_spam("semalt.com"));
    }
}
