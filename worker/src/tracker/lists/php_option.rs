//! The lists as Matomo may keep them in its `option` table instead of reading the files:
//! `SearchEngineDefinitions` and `SocialDefinitions` (base64 of PHP `serialize()`, written when
//! `[General] enable_referrer_definition_syncs` and internet features are on — Matomo's default —
//! and refreshed by a scheduled task) and `referrer_spam_blacklist` (plain `serialize()`).
//! When those options exist, PHP uses them, so the worker must too.
//!
//! A small PHP `unserialize` for the value types these options use (arrays, strings, ints,
//! floats, booleans, null), and a base64 decoder. Pure, no I/O; malformed input is an error.

use std::path::{Path, PathBuf};

use super::{ListsError, ReferrerLists, SearchEngineDef, SearchEngines, Socials, SpamList};

/// A PHP value as `unserialize` returns it.
#[derive(Debug, Clone, PartialEq)]
pub enum PhpValue {
    /// `N;`
    Null,
    /// `b:0;` / `b:1;`
    Bool(bool),
    /// `i:N;`
    Int(i64),
    /// `d:F;`
    Float(f64),
    /// `s:LEN:"…";` (bytes decoded as UTF-8, lossy)
    Str(String),
    /// `a:N:{key;value…}` in order.
    Array(Vec<(PhpValue, PhpValue)>),
}

impl PhpValue {
    /// The value as PHP would print it when it is a scalar string or number.
    pub fn as_string(&self) -> Option<String> {
        match self {
            PhpValue::Str(s) => Some(s.clone()),
            PhpValue::Int(i) => Some(i.to_string()),
            _ => None,
        }
    }

    /// The entries of an array.
    pub fn entries(&self) -> Option<&[(PhpValue, PhpValue)]> {
        match self {
            PhpValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// `$array[$key]` for a string key.
    pub fn get(&self, key: &str) -> Option<&PhpValue> {
        self.entries()?
            .iter()
            .find(|(k, _)| k.as_string().as_deref() == Some(key))
            .map(|(_, v)| v)
    }

    /// The array's values that are strings, in order.
    fn strings(&self) -> Vec<String> {
        self.entries()
            .map(|e| e.iter().filter_map(|(_, v)| v.as_string()).collect())
            .unwrap_or_default()
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn expect(&mut self, c: u8) -> Option<()> {
        (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
    }

    fn until(&mut self, c: u8) -> Option<&str> {
        let start = self.i;
        let len = self.b[start..].iter().position(|&x| x == c)?;
        self.i = start + len + 1;
        std::str::from_utf8(&self.b[start..start + len]).ok()
    }

    fn value(&mut self, depth: usize) -> Option<PhpValue> {
        if depth > 64 {
            return None;
        }
        let tag = *self.b.get(self.i)?;
        self.i += 1;
        if tag == b'N' {
            self.expect(b';')?;
            return Some(PhpValue::Null);
        }
        self.expect(b':')?;
        match tag {
            b'b' => Some(PhpValue::Bool(self.until(b';')? != "0")),
            b'i' => Some(PhpValue::Int(self.until(b';')?.parse().ok()?)),
            b'd' => Some(PhpValue::Float(self.until(b';')?.parse().ok()?)),
            b's' => {
                let len: usize = self.until(b':')?.parse().ok()?;
                self.expect(b'"')?;
                let bytes = self.b.get(self.i..self.i.checked_add(len)?)?;
                self.i += len;
                self.expect(b'"')?;
                self.expect(b';')?;
                Some(PhpValue::Str(String::from_utf8_lossy(bytes).into_owned()))
            }
            b'a' => {
                let n: usize = self.until(b':')?.parse().ok()?;
                self.expect(b'{')?;
                let mut items = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    let k = self.value(depth + 1)?;
                    let v = self.value(depth + 1)?;
                    items.push((k, v));
                }
                self.expect(b'}')?;
                Some(PhpValue::Array(items))
            }
            _ => None,
        }
    }
}

/// PHP `unserialize` for plain data (no objects); `None` on malformed input.
pub fn unserialize(bytes: &[u8]) -> Option<PhpValue> {
    let mut p = Parser { b: bytes, i: 0 };
    let v = p.value(0)?;
    (p.i == bytes.len()).then_some(v)
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' | b' ' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn bad(option: &str, reason: &str) -> ListsError {
    ListsError::Shape {
        path: PathBuf::from(format!("option {option}")),
        reason: reason.to_owned(),
    }
}

fn decode_option(option: &str, value: &str, base64: bool) -> Result<PhpValue, ListsError> {
    let bytes = if base64 {
        base64_decode(value.trim()).ok_or_else(|| bad(option, "not base64"))?
    } else {
        value.as_bytes().to_vec()
    };
    unserialize(&bytes).ok_or_else(|| bad(option, "not a PHP serialized value"))
}

impl SearchEngines {
    /// The `SearchEngineDefinitions` option value (base64 of a serialized `url => definition`
    /// array, as `SearchEngine::loadRemoteDefinitions` stores it).
    pub fn from_option_value(value: &str) -> Result<Self, ListsError> {
        const OPTION: &str = "SearchEngineDefinitions";
        let v = decode_option(OPTION, value, true)?;
        let entries = v.entries().ok_or_else(|| bad(OPTION, "not an array"))?;
        let mut out = SearchEngines::default();
        for (url, def) in entries {
            let url = url.as_string().ok_or_else(|| bad(OPTION, "bad URL key"))?;
            let name = def
                .get("name")
                .and_then(PhpValue::as_string)
                .ok_or_else(|| bad(OPTION, "definition without name"))?;
            out.insert(
                url,
                SearchEngineDef {
                    name,
                    params: def.get("params").map(PhpValue::strings).unwrap_or_default(),
                    backlink: def.get("backlink").and_then(PhpValue::as_string),
                    charsets: def
                        .get("charsets")
                        .map(PhpValue::strings)
                        .unwrap_or_default(),
                    hidden_keyword: def.get("hiddenkeyword").map(PhpValue::strings),
                },
            );
        }
        Ok(out)
    }
}

impl Socials {
    /// The `SocialDefinitions` option value (base64 of a serialized `domain => name` array).
    pub fn from_option_value(value: &str) -> Result<Self, ListsError> {
        const OPTION: &str = "SocialDefinitions";
        let v = decode_option(OPTION, value, true)?;
        let entries = v.entries().ok_or_else(|| bad(OPTION, "not an array"))?;
        let pairs = entries
            .iter()
            .filter_map(|(k, v)| Some((k.as_string()?, v.as_string()?)))
            .collect();
        Socials::from_entries(pairs, Path::new("option SocialDefinitions"))
    }
}

impl SpamList {
    /// The `referrer_spam_blacklist` option value (a serialized list of hosts).
    pub fn from_option_value(value: &str) -> Result<Self, ListsError> {
        const OPTION: &str = "referrer_spam_blacklist";
        let v = decode_option(OPTION, value, false)?;
        if v.entries().is_none() {
            return Err(bad(OPTION, "not an array"));
        }
        SpamList::from_hosts(v.strings(), Path::new("option referrer_spam_blacklist"))
    }
}

/// Option values that replace the files when present (read from Matomo's `option` table).
#[derive(Debug, Clone, Copy, Default)]
pub struct ListOptions<'a> {
    /// `SearchEngineDefinitions`, used when referrer definition syncs and internet features are on.
    pub search_engines: Option<&'a str>,
    /// `SocialDefinitions`, same condition.
    pub socials: Option<&'a str>,
    /// `referrer_spam_blacklist`, used whenever it is set.
    pub spammers: Option<&'a str>,
}

impl ReferrerLists {
    /// Replaces the file-loaded lists by the option values that are present and non-empty, as
    /// Matomo reads them (the caller applies Matomo's conditions: the search engine and social
    /// options count only when `enable_referrer_definition_syncs` and `enable_internet_features`
    /// are both on).
    pub fn apply_options(&mut self, opts: ListOptions<'_>) -> Result<(), ListsError> {
        fn present(v: Option<&str>) -> Option<&str> {
            v.filter(|s| !s.is_empty() && *s != "0")
        }
        if let Some(v) = present(opts.search_engines) {
            self.search_engines = SearchEngines::from_option_value(v)?;
        }
        if let Some(v) = present(opts.socials) {
            self.socials = Socials::from_option_value(v)?;
        }
        if let Some(v) = present(opts.spammers) {
            self.spammers = SpamList::from_option_value(v)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unserialize_plain_values() {
        let v = unserialize(br#"a:3:{s:1:"a";i:5;i:0;a:1:{i:0;s:3:"x;y";}s:1:"b";b:1;}"#)
            .expect("parses");
        assert_eq!(v.get("a"), Some(&PhpValue::Int(5)));
        assert_eq!(v.get("b"), Some(&PhpValue::Bool(true)));
        assert_eq!(
            v.get("0").map(PhpValue::strings),
            Some(vec!["x;y".to_owned()])
        );
        assert_eq!(unserialize(b"N;"), Some(PhpValue::Null));
        assert_eq!(unserialize(b"d:1.5;"), Some(PhpValue::Float(1.5)));
        assert_eq!(unserialize(br#"s:5:"abc";"#), None, "length mismatch");
        assert_eq!(unserialize(b"a:1:{i:0;"), None);
        assert_eq!(
            unserialize(b"O:8:\"stdClass\":0:{}"),
            None,
            "objects are refused"
        );
        assert_eq!(unserialize(b"i:1;junk"), None);
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(base64_decode("YQ==").as_deref(), Some(&b"a"[..]));
        assert_eq!(base64_decode("!!"), None);
    }

    #[test]
    fn options_replace_files() {
        let engines = r#"a:1:{s:12:"www.test.com";a:3:{s:6:"params";a:1:{i:0;s:1:"q";}s:8:"backlink";s:11:"search?q={k";s:4:"name";s:4:"Test";}}"#;
        let b64 = |s: &str| {
            const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let mut out = String::new();
            for chunk in s.as_bytes().chunks(3) {
                let n = chunk.iter().fold(0u32, |a, &b| (a << 8) | u32::from(b))
                    << (8 * (3 - chunk.len()));
                for i in 0..4 {
                    if i <= chunk.len() {
                        out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
                    } else {
                        out.push('=');
                    }
                }
            }
            out
        };
        let mut lists = ReferrerLists::default();
        lists
            .apply_options(ListOptions {
                search_engines: Some(&b64(engines)),
                socials: Some(&b64(r#"a:1:{s:6:"vk.com";s:9:"Vkontakte";}"#)),
                spammers: Some(r#"a:1:{i:0;s:10:"semalt.com";}"#),
            })
            .expect("applies");
        assert_eq!(
            lists
                .search_engines
                .definition("www.test.com")
                .map(|d| d.name.as_str()),
            Some("Test")
        );
        assert_eq!(
            lists.socials.network_for_url("https://vk.com/x"),
            Some("Vkontakte")
        );
        assert!(lists.spammers.is_spam("http://semalt.com"));
        assert!(lists
            .apply_options(ListOptions {
                spammers: Some("garbage"),
                ..ListOptions::default()
            })
            .is_err());
    }
}
