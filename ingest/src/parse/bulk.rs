//! The bulk tracking body, read as Matomo's BulkTracking plugin reads it.
//!
//! A body is bulk when `"requests"` (or `'requests'`) occurs in it after the first byte. It is
//! trimmed, its line breaks removed, and decoded as JSON. Entries: a string is a URL whose query
//! part holds the parameters (a string without a query is dropped); an object or list is the
//! parameter map itself; any other value is an empty request (counted as tracked, records
//! nothing). Entry indices in responses (`invalid_indices`) count the kept entries only, as PHP
//! does. Pure; never panics.
//!
//! Memory stays a small multiple of the body: reading stops at the first entry over the limit,
//! keys other than `requests`, `token_auth` and `send_image` are skipped without being built,
//! and entries are kept as text ([`BulkEntry`], object entries within a value budget) for the
//! handler to parse one at a time.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;

use matomo_wire::php::sanitize_input_value;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::bulk_entry::{BulkEntry, EntrySeed};

/// A decoded bulk body.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BulkBody {
    /// The entries PHP keeps, in order (their index is the one `invalid_indices` reports),
    /// still unparsed: [`BulkEntry::params`] reads one.
    pub requests: Vec<BulkEntry>,
    /// `token_auth` of the body, sanitised as `Common::getRequestVar` returns it; `None` if absent.
    pub token_auth: Option<String>,
    /// `false` when the body says `"send_image": "0"` (the answer is then a 204).
    pub send_image: bool,
}

/// Why a bulk body is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BulkError {
    /// Not JSON (PHP would silently track nothing; we say why).
    #[error("the bulk body is not valid JSON: {0}")]
    NotJson(String),
    /// More entries than the configured maximum. Reading stops at the first entry over it, so
    /// a body of millions of tiny entries never holds more than `max` of them in memory.
    #[error("the bulk body has more than the {max} requests allowed")]
    TooManyRequests {
        /// `ingest.max_bulk_requests`.
        max: usize,
    },
}

/// `Requests::isUsingBulkRequest`: `strpos($raw, '"requests"') || strpos($raw, "'requests'")`,
/// which is false when the word starts the body (position 0).
pub fn is_bulk_body(body: &[u8]) -> bool {
    let found_after_start = |needle: &[u8]| {
        body.windows(needle.len())
            .position(|w| w == needle)
            .is_some_and(|pos| pos > 0)
    };
    found_after_start(b"\"requests\"") || found_after_start(b"'requests'")
}

/// Decodes a bulk body, refusing more than `max_requests` entries.
pub fn parse_bulk(body: &[u8], max_requests: usize) -> Result<BulkBody, BulkError> {
    let trimmed = body.trim_ascii();
    // `Common::sanitizeLineBreaks`; a copy only when there is something to remove.
    let cleaned: Cow<'_, [u8]> = if trimmed.iter().any(|&b| b == b'\n' || b == b'\r') {
        Cow::Owned(
            trimmed
                .iter()
                .copied()
                .filter(|&b| b != b'\n' && b != b'\r')
                .collect(),
        )
    } else {
        Cow::Borrowed(trimmed)
    };
    // PHP's json_decode refuses invalid UTF-8 anywhere, also in keys we skip without decoding.
    let text = std::str::from_utf8(&cleaned)
        .map_err(|e| BulkError::NotJson(format!("invalid UTF-8 at byte {}", e.valid_up_to())))?;
    let too_many = Cell::new(false);
    let mut de = serde_json::Deserializer::from_str(text);
    let top = TopLevel {
        max_requests,
        too_many: &too_many,
    }
    .deserialize(&mut de)
    .and_then(|top| de.end().map(|()| top))
    .map_err(|e| {
        if too_many.get() {
            BulkError::TooManyRequests { max: max_requests }
        } else {
            BulkError::NotJson(e.to_string())
        }
    })?;
    Ok(BulkBody {
        requests: top.requests,
        token_auth: top.token_auth.as_ref().and_then(request_var_string),
        send_image: top
            .send_image
            .as_ref()
            .and_then(request_var_string)
            .is_none_or(|v| v != "0"),
    })
}

/// What the top level of a bulk body holds, read without keeping anything else.
#[derive(Default)]
struct Fields {
    requests: Vec<BulkEntry>,
    token_auth: Option<Value>,
    send_image: Option<Value>,
}

/// Reads the top-level value: an object's `requests` (bounded, each entry kept as text),
/// `token_auth` and `send_image`; every other key, and any
/// top level that is not an object, is parsed for validity and dropped (PHP: no requests).
struct TopLevel<'a> {
    max_requests: usize,
    too_many: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = Fields;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Fields, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                // A later duplicate wins, as in PHP's json_decode.
                "requests" => {
                    fields.requests = map.next_value_seed(Entries {
                        max_requests: self.max_requests,
                        too_many: self.too_many,
                    })?;
                }
                "token_auth" => fields.token_auth = Some(map.next_value()?),
                "send_image" => fields.send_image = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(fields)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Fields, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Fields::default())
    }

    fn visit_bool<E>(self, _: bool) -> Result<Fields, E> {
        Ok(Fields::default())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Fields, E> {
        Ok(Fields::default())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Fields, E> {
        Ok(Fields::default())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Fields, E> {
        Ok(Fields::default())
    }
    fn visit_str<E>(self, _: &str) -> Result<Fields, E> {
        Ok(Fields::default())
    }
    fn visit_unit<E>(self) -> Result<Fields, E> {
        Ok(Fields::default())
    }
}

/// Reads `requests`: a list (or an object, whose values count) of at most `max_requests`
/// entries; any other value holds no requests.
struct Entries<'a> {
    max_requests: usize,
    too_many: &'a Cell<bool>,
}

impl Entries<'_> {
    fn over_limit<E: de::Error>(&self, count: usize) -> Result<(), E> {
        if count > self.max_requests {
            self.too_many.set(true);
            return Err(E::custom("too many requests"));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Entries<'_> {
    type Value = Vec<BulkEntry>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Vec<BulkEntry>, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Entries<'_> {
    type Value = Vec<BulkEntry>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<BulkEntry>, A::Error> {
        let mut requests = Vec::new();
        let mut count = 0;
        while let Some(entry) = seq.next_element_seed(EntrySeed)? {
            count += 1;
            self.over_limit(count)?;
            requests.extend(entry);
        }
        Ok(requests)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<BulkEntry>, A::Error> {
        // Keys matter here: a duplicate replaces the earlier entry in its position.
        let mut entries: Vec<Option<BulkEntry>> = Vec::new();
        let mut positions: HashMap<String, usize> = HashMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let entry = map.next_value_seed(EntrySeed)?;
            match positions.get(&key) {
                Some(&at) => entries[at] = entry,
                None => {
                    positions.insert(key, entries.len());
                    entries.push(entry);
                    self.over_limit(entries.len())?;
                }
            }
        }
        Ok(entries.into_iter().flatten().collect())
    }

    fn visit_bool<E>(self, _: bool) -> Result<Vec<BulkEntry>, E> {
        Ok(Vec::new())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Vec<BulkEntry>, E> {
        Ok(Vec::new())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Vec<BulkEntry>, E> {
        Ok(Vec::new())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Vec<BulkEntry>, E> {
        Ok(Vec::new())
    }
    fn visit_str<E>(self, _: &str) -> Result<Vec<BulkEntry>, E> {
        Ok(Vec::new())
    }
    fn visit_unit<E>(self) -> Result<Vec<BulkEntry>, E> {
        Ok(Vec::new())
    }
}

/// `Common::getRequestVar($name, false, 'string', $json)`: a non-empty string or integer,
/// sanitised; anything else is absent.
fn request_var_string(value: &Value) -> Option<String> {
    let raw = match value {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Bool(true) => "1".to_owned(),
        _ => return None,
    };
    Some(sanitize_input_value(&raw))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn as_json(entry: &BulkEntry) -> Value {
        Value::Object(entry.params().expect("readable entry"))
    }

    #[test]
    fn detection_needs_the_quoted_word_after_the_start() {
        assert!(is_bulk_body(br#"{"requests":[]}"#));
        assert!(is_bulk_body(b"{'requests':[]}"));
        assert!(!is_bulk_body(br#""requests""#));
        assert!(!is_bulk_body(b"idsite=1&requests=2"));
        assert!(!is_bulk_body(b""));
    }

    #[test]
    fn strings_objects_and_scalars_become_requests() {
        let body =
            br#"{"requests":["?idsite=1&rec=1","http://x/matomo.php?idsite=2#frag","no-query","",
            {"idsite":3,"rec":"1"}, null, ["a"]], "token_auth":"abc"}"#;
        let bulk = parse_bulk(body, 100).expect("parses");
        assert_eq!(bulk.token_auth.as_deref(), Some("abc"));
        assert!(bulk.send_image);
        let as_json: Vec<Value> = bulk.requests.iter().map(as_json).collect();
        assert_eq!(
            as_json,
            vec![
                json!({"idsite":"1","rec":"1"}),
                json!({"idsite":"2"}),
                json!({"idsite":3,"rec":"1"}),
                json!({}),
                json!({"0":"a"}),
            ]
        );
    }

    #[test]
    fn string_entries_keep_only_what_parse_url_calls_the_query() {
        // A `?` inside the fragment is no query; a query PHP's `empty()` calls empty is dropped.
        let body = br#"{"requests":["/m.php#frag?idsite=1","?0","?idsite=2#x?y=1","?00"]}"#;
        let bulk = parse_bulk(body, 10).expect("parses");
        let as_json: Vec<Value> = bulk.requests.iter().map(as_json).collect();
        assert_eq!(as_json, vec![json!({"idsite":"2"}), json!({"00":""})]);
    }

    #[test]
    fn send_image_and_token_follow_get_request_var() {
        let b = parse_bulk(br#"{"requests":[],"send_image":0,"token_auth":""}"#, 10).unwrap();
        assert!(!b.send_image);
        assert_eq!(b.token_auth, None);
        let b = parse_bulk(
            br#"{"requests":[],"send_image":"1","token_auth":["x"]}"#,
            10,
        )
        .unwrap();
        assert!(b.send_image);
        assert_eq!(b.token_auth, None);
    }

    #[test]
    fn the_top_level_is_read_like_php_json_decode() {
        // Other keys are skipped but must be valid JSON, UTF-8 included.
        let b = parse_bulk(br#"{"x":{"y":[1,{"z":null}]},"requests":["?a=1"]}"#, 10).unwrap();
        assert_eq!(b.requests.len(), 1);
        assert_eq!(
            parse_bulk(b"{\"requests\":[\"?a=1\"],\"x\":\"\xff\"}", 10),
            Err(BulkError::NotJson("invalid UTF-8 at byte 26".into()))
        );
        assert!(matches!(
            parse_bulk(br#"{"requests":["?a=1"]} trailing"#, 10),
            Err(BulkError::NotJson(_))
        ));
        // A later duplicate key wins; `requests` as an object counts its values, and a
        // duplicate entry key replaces the earlier entry in its place.
        let b = parse_bulk(
            br#"{"requests":["?a=1"],"requests":{"k":"?b=1","l":"?c=1","k":"?d=1"}}"#,
            10,
        )
        .unwrap();
        let as_json: Vec<Value> = b.requests.iter().map(as_json).collect();
        assert_eq!(as_json, vec![json!({"d":"1"}), json!({"c":"1"})]);
        // Anything else holds no requests.
        for body in [
            &br#"[{"requests":1}]"#[..],
            br#"{"requests":"?a=1"}"#,
            b"\"requests\" ",
        ] {
            assert_eq!(parse_bulk(body, 10).map(|b| b.requests.len()), Ok(0));
        }
    }

    #[test]
    fn reading_stops_at_the_first_entry_over_the_limit() {
        // The rest of the body is not even looked at.
        let mut body = b"{\"requests\":[".to_vec();
        body.extend(std::iter::repeat_n(&b"0,"[..], 1_000_000).flatten());
        assert_eq!(
            parse_bulk(&body, 10),
            Err(BulkError::TooManyRequests { max: 10 })
        );
        assert_eq!(
            parse_bulk(br#"{"requests":{"a":1,"b":2,"c":3}}"#, 2),
            Err(BulkError::TooManyRequests { max: 2 })
        );
    }

    #[test]
    fn line_breaks_are_removed_before_decoding() {
        let b = parse_bulk(b"  {\"requests\":\r\n[\"?idsite=1\"]}\n", 10).expect("parses");
        assert_eq!(b.requests.len(), 1);
    }

    #[test]
    fn errors_are_clear() {
        assert!(matches!(
            parse_bulk(b"{\"requests\":[", 10),
            Err(BulkError::NotJson(_))
        ));
        assert_eq!(
            parse_bulk(br#"{"requests":["?a=1","?a=2","?a=3"]}"#, 2),
            Err(BulkError::TooManyRequests { max: 2 })
        );
        assert_eq!(parse_bulk(b"[1]", 2).map(|b| b.requests.len()), Ok(0));
    }
}
