//! One kept entry of a bulk body, held unparsed until the handler reaches it.
//!
//! Parsed parameters take 20–60 times the bytes of their text (a map slot, two strings and a
//! JSON value per `k=v`), so a bulk body at the size limit would need hundreds of megabytes if
//! all its entries were parsed at once. The bulk parser therefore keeps each entry as text — the
//! query part of a string entry, the JSON text of an object or list entry — and
//! [`BulkEntry::params`] parses one when its turn comes. An object or list entry of more than
//! [`MAX_ENTRY_VALUES`] JSON values, or nested deeper than serde_json's limit (128), is
//! refused (the request is counted invalid); string entries are bounded by `parse_str`'s
//! `max_input_vars`. Pure; never panics.

use matomo_wire::Params;
use serde_json::value::RawValue;
use serde_json::Value;

use super::phpquery::{parse_str, MAX_INPUT_VARS};

/// Most JSON values (nested ones included) an object or list entry may hold: PHP's
/// `max_input_vars`, which bounds string entries too.
pub const MAX_ENTRY_VALUES: usize = MAX_INPUT_VARS;

/// One entry of `requests` that PHP keeps.
#[derive(Debug, Clone)]
pub enum BulkEntry {
    /// A string entry: the query part of its URL.
    Query(String),
    /// An object or list entry: its JSON text.
    Json(Box<RawValue>),
    /// Any other value (`null`, a number, a boolean): an empty request.
    Empty,
}

/// Why an entry's parameters cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the entry holds more than {MAX_ENTRY_VALUES} JSON values or is nested too deeply")]
pub struct EntryTooLarge;

impl BulkEntry {
    /// Classifies one JSON value of `requests`; `None` when PHP drops it (a string without a
    /// query part, see [`url_query`]).
    pub(super) fn from_raw(raw: Box<RawValue>) -> Result<Option<Self>, serde_json::Error> {
        match raw.get().as_bytes().first() {
            Some(b'"') => {
                let url: String = serde_json::from_str(raw.get())?;
                Ok(url_query(&url).map(|query| BulkEntry::Query(query.to_owned())))
            }
            Some(b'{' | b'[') => Ok(Some(BulkEntry::Json(raw))),
            _ => Ok(Some(BulkEntry::Empty)),
        }
    }

    /// The request's parameters, as `Requests::initRequestsAndTokenAuth` builds them: a
    /// string's query through `parse_str`, an object as it is, a list keyed `0..n`.
    pub fn params(&self) -> Result<Params, EntryTooLarge> {
        match self {
            BulkEntry::Query(query) => Ok(parse_str(query.as_bytes())),
            BulkEntry::Empty => Ok(Params::new()),
            BulkEntry::Json(raw) => {
                if json_values(raw.get()) > MAX_ENTRY_VALUES {
                    return Err(EntryTooLarge);
                }
                match serde_json::from_str::<Value>(raw.get()) {
                    Ok(Value::Object(map)) => Ok(map),
                    Ok(Value::Array(items)) => Ok(items
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| (i.to_string(), v))
                        .collect()),
                    // The text was checked as JSON already: only the depth limit is left.
                    Ok(_) | Err(_) => Err(EntryTooLarge),
                }
            }
        }
    }
}

impl PartialEq for BulkEntry {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (BulkEntry::Query(a), BulkEntry::Query(b)) => a == b,
            (BulkEntry::Json(a), BulkEntry::Json(b)) => a.get() == b.get(),
            (BulkEntry::Empty, BulkEntry::Empty) => true,
            _ => false,
        }
    }
}

/// An upper bound of the number of values in valid JSON text: one, plus one per `,`, `[` and
/// `{` outside strings. Linear, no allocation.
fn json_values(text: &str) -> usize {
    let mut count = 1;
    let mut in_string = false;
    let mut escaped = false;
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b',' | b'[' | b'{' => count += 1,
                _ => {}
            }
        }
    }
    count
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
        let raw: Box<RawValue> = serde_json::from_str(json).expect("JSON");
        BulkEntry::from_raw(raw).expect("classified")
    }

    #[test]
    fn values_are_counted_outside_strings_only() {
        assert_eq!(json_values(r#"{"a":1}"#), 2);
        assert_eq!(
            json_values(r#"{"a":[1,2,{"b":"x,[{"}],"c":"\"","d":null}"#),
            8
        );
        assert_eq!(json_values("[]"), 2);
    }

    #[test]
    fn entries_are_parsed_when_asked() {
        let params = |json: &str| entry(json).map(|e| e.params().map(Value::Object));
        assert_eq!(
            params(r#""?a=1&b[]=2""#),
            Some(Ok(json!({"a":"1","b":{"0":"2"}})))
        );
        assert_eq!(params(r#""/x#y?a=1""#), None);
        assert_eq!(
            params(r#"{"idsite":1,"x":[true]}"#),
            Some(Ok(json!({"idsite":1,"x":[true]})))
        );
        assert_eq!(
            params(r#"["a",{"b":1}]"#),
            Some(Ok(json!({"0":"a","1":{"b":1}})))
        );
        assert_eq!(params("null"), Some(Ok(json!({}))));
        assert_eq!(params("-1.5e3"), Some(Ok(json!({}))));
    }

    #[test]
    fn large_or_deep_entries_are_refused() {
        let at_limit = format!("[{}0]", "0,".repeat(MAX_ENTRY_VALUES - 2));
        assert_eq!(
            entry(&at_limit).expect("kept").params().map(|p| p.len()),
            Ok(999)
        );
        let over = format!("[{}0]", "0,".repeat(MAX_ENTRY_VALUES - 1));
        assert_eq!(entry(&over).expect("kept").params(), Err(EntryTooLarge));
        let deep = format!("[{}{}]", "[".repeat(200), "]".repeat(200));
        assert_eq!(entry(&deep).expect("kept").params(), Err(EntryTooLarge));
        let very_deep = format!("[{}{}]", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            entry(&very_deep).expect("kept").params(),
            Err(EntryTooLarge)
        );
    }
}
