//! One kept entry of a bulk body, held as text until the handler reaches it.
//!
//! Parsed parameters take 20–60 times the bytes of their text (a map slot, two strings and a
//! JSON value per `k=v`), so a bulk body at the size limit would need hundreds of megabytes if
//! all its entries were parsed at once. The bulk parser therefore keeps each entry as text — the
//! query part of a string entry, the compact JSON of an object or list entry — and
//! [`BulkEntry::params`] parses one when its turn comes. An object or list entry is built with
//! a budget of [`MAX_ENTRY_VALUES`] JSON values: past it the rest of the entry is skipped
//! without being built and the request is invalid. String entries are bounded by `parse_str`'s
//! `max_input_vars`. Pure; never panics.
//!
//! Entries are built with our own visitor, never `Value`'s deserializer, and keys named
//! [`SERDE_RAW_VALUE_KEY`] are dropped at any depth.

use std::cell::Cell;
use std::fmt;

use matomo_wire::Params;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::phpquery::{parse_str, MAX_INPUT_VARS};
use super::SERDE_RAW_VALUE_KEY;

/// Most JSON values (nested ones included) an object or list entry may hold: PHP's
/// `max_input_vars`, which bounds string entries too.
pub const MAX_ENTRY_VALUES: usize = MAX_INPUT_VARS;

/// One entry of `requests` that PHP keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkEntry {
    /// A string entry: the query part of its URL.
    Query(String),
    /// An object or list entry, as compact JSON.
    Json(String),
    /// Any other value (`null`, a number, a boolean): an empty request.
    Empty,
    /// An object or list entry of more than [`MAX_ENTRY_VALUES`] values.
    TooLarge,
}

/// Why an entry's parameters cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the entry holds more than {MAX_ENTRY_VALUES} JSON values")]
pub struct EntryTooLarge;

impl BulkEntry {
    /// The request's parameters, as `Requests::initRequestsAndTokenAuth` builds them: a
    /// string's query through `parse_str`, an object as it is, a list keyed `0..n`.
    pub fn params(&self) -> Result<Params, EntryTooLarge> {
        match self {
            BulkEntry::Query(query) => Ok(parse_str(query.as_bytes())),
            BulkEntry::Empty => Ok(Params::new()),
            BulkEntry::TooLarge => Err(EntryTooLarge),
            // Our own compact JSON of an object or a list (see `EntrySeed`), read with the
            // same builder (not `Value`'s deserializer, see `SERDE_RAW_VALUE_KEY`).
            BulkEntry::Json(text) => {
                let left = Cell::new(usize::MAX);
                let mut de = serde_json::Deserializer::from_str(text);
                let built = Budgeted { left: &left }.deserialize(&mut de);
                match built {
                    Ok(Some(Value::Object(map))) => Ok(map),
                    Ok(Some(Value::Array(items))) => Ok(items
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| (i.to_string(), v))
                        .collect()),
                    Ok(_) | Err(_) => Ok(Params::new()),
                }
            }
        }
    }
}

/// Reads one value of `requests` into the entry PHP keeps (`None`: dropped).
pub(super) struct EntrySeed;

impl<'de> DeserializeSeed<'de> for EntrySeed {
    type Value = Option<BulkEntry>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed {
    type Value = Option<BulkEntry>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a bulk entry")
    }

    fn visit_str<E: de::Error>(self, url: &str) -> Result<Self::Value, E> {
        Ok(url_query(url).map(|query| BulkEntry::Query(query.to_owned())))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let left = Cell::new(MAX_ENTRY_VALUES);
        Ok(Some(compact(Budgeted { left: &left }.visit_map(map)?)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let left = Cell::new(MAX_ENTRY_VALUES);
        Ok(Some(compact(Budgeted { left: &left }.visit_seq(seq)?)))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Some(BulkEntry::Empty))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Some(BulkEntry::Empty))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Some(BulkEntry::Empty))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Some(BulkEntry::Empty))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Some(BulkEntry::Empty))
    }
}

/// The entry for a value built within its budget (`None`: over it).
fn compact(value: Option<Value>) -> BulkEntry {
    value.map_or(BulkEntry::TooLarge, |v| BulkEntry::Json(v.to_string()))
}

/// Builds a JSON value spending one unit of `left` per value; once it is spent, the rest of
/// the value is skipped without being built and the result is `None`.
struct Budgeted<'a> {
    left: &'a Cell<usize>,
}

impl Budgeted<'_> {
    fn spend(&self) -> bool {
        let left = self.left.get();
        self.left.set(left.saturating_sub(1));
        left > 0
    }

    fn scalar(&self, value: Value) -> Option<Value> {
        self.spend().then_some(value)
    }
}

impl<'de> DeserializeSeed<'de> for Budgeted<'_> {
    type Value = Option<Value>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Budgeted<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Map::new();
        let mut within = self.spend();
        while let Some(key) = map.next_key::<String>()? {
            if key == SERDE_RAW_VALUE_KEY {
                map.next_value::<IgnoredAny>()?;
            } else if within {
                match map.next_value_seed(Budgeted { left: self.left })? {
                    Some(value) => {
                        out.insert(key, value);
                    }
                    None => within = false,
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(within.then_some(Value::Object(out)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        let mut within = self.spend();
        loop {
            if within {
                match seq.next_element_seed(Budgeted { left: self.left })? {
                    Some(Some(value)) => out.push(value),
                    Some(None) => within = false,
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
        }
        Ok(within.then_some(Value::Array(out)))
    }

    fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
        Ok(self.scalar(Value::Bool(b)))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
        Ok(self.scalar(Value::Number(n.into())))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
        Ok(self.scalar(Value::Number(n.into())))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Self::Value, E> {
        Ok(self.scalar(Number::from_f64(n).map_or(Value::Null, Value::Number)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(self.scalar(Value::String(s.to_owned())))
    }
    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(self.scalar(Value::String(s)))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(self.scalar(Value::Null))
    }
}

/// The query part of a URL as `parse_url($url)['query']` gives it — after the first `?` that
/// comes before any `#`, up to the next `#` — when PHP's `!empty()` holds for it (neither `""`
/// nor `"0"`).
fn url_query(url: &str) -> Option<&str> {
    let before_fragment = url.split('#').next().unwrap_or_default();
    let query = &before_fragment[before_fragment.find('?')? + 1..];
    (!query.is_empty() && query != "0").then_some(query)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(json: &str) -> Option<BulkEntry> {
        let mut de = serde_json::Deserializer::from_str(json);
        EntrySeed.deserialize(&mut de).expect("JSON")
    }

    #[test]
    fn entries_are_parsed_when_asked() {
        let params = |json: &str| entry(json).map(|e| e.params().map(Value::Object));
        assert_eq!(
            params(r#""?a=1&b[]=2""#),
            Some(Ok(json!({"a":"1","b":{"0":"2"}})))
        );
        assert_eq!(params(r#""/x#y?a=1""#), None);
        let object = r#"{"idsite":1,"x":[true,1.5,null,{"y":"z"}],"idsite":2}"#;
        assert_eq!(
            params(object),
            Some(Ok(json!({"idsite":2,"x":[true,1.5,null,{"y":"z"}]})))
        );
        assert_eq!(
            params(r#"["a",{"b":1}]"#),
            Some(Ok(json!({"0":"a","1":{"b":1}})))
        );
        assert_eq!(params("null"), Some(Ok(json!({}))));
        assert_eq!(params("-1.5e3"), Some(Ok(json!({}))));
    }

    #[test]
    fn the_serde_raw_value_key_is_dropped_at_any_depth() {
        let key = SERDE_RAW_VALUE_KEY;
        let text = json!({ key: "{}", "idsite": 1, "x": { key: "[]", "y": 2 } }).to_string();
        assert_eq!(
            entry(&text).expect("kept").params().map(Value::Object),
            Ok(json!({ "idsite": 1, "x": { "y": 2 } }))
        );
    }

    #[test]
    fn entries_over_the_value_budget_are_refused_and_skipped() {
        // The list itself is one value.
        let at_limit = format!("[{}0]", "0,".repeat(MAX_ENTRY_VALUES - 2));
        assert_eq!(
            entry(&at_limit).expect("kept").params().map(|p| p.len()),
            Ok(MAX_ENTRY_VALUES - 1)
        );
        let over = format!("[{}0]", "0,".repeat(MAX_ENTRY_VALUES - 1));
        assert_eq!(entry(&over), Some(BulkEntry::TooLarge));
        let nested = format!("{{\"a\":{{\"b\":[{}0]}},\"c\":1}}", "0,".repeat(2000));
        assert_eq!(entry(&nested), Some(BulkEntry::TooLarge));
        assert_eq!(
            BulkEntry::TooLarge.params(),
            Err(EntryTooLarge),
            "{}",
            EntryTooLarge
        );
    }
}
