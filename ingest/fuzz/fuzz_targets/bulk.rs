//! Fuzzes the bulk parser with bodies built from structured input: string entries (URLs with a
//! query part, with or without a `#fragment`), object entries, list entries and scalars, a
//! `token_auth`, optionally truncated or with a byte flipped, so both well-formed bodies and
//! every kind of near miss are reached.
//!
//! Checked beyond "no panic": an intact body parses, keeps every entry PHP keeps (string entries
//! without a query part are dropped), returns object entries unchanged, and refuses more entries
//! than the limit; a damaged body either parses or is refused as not JSON; every accepted
//! request encodes into entries that decode back to it.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use matomo_ingest::parse::{is_bulk_body, parse_bulk, BulkError, SERDE_RAW_VALUE_KEY};
use matomo_wire::Params;
use serde_json::{Map, Value};

#[derive(Debug, Arbitrary)]
struct Input {
    entries: Vec<Entry>,
    token: Option<String>,
    send_image: Option<u8>,
    max: u8,
    damage: Option<Damage>,
}

#[derive(Debug, Arbitrary)]
enum Entry {
    Url {
        prefix: String,
        query: String,
        fragment: Option<String>,
    },
    Object(Vec<(String, Leaf)>),
    List(Vec<Leaf>),
    Null,
    Number(i64),
    Bool(bool),
}

#[derive(Debug, Arbitrary)]
enum Leaf {
    Str(String),
    Int(i64),
    /// Quarters: exactly representable, so they survive the JSON round trip bit for bit.
    Quarter(i32),
    Bool(bool),
    Null,
    Nested(Vec<(String, String)>),
}

#[derive(Debug, Arbitrary)]
enum Damage {
    Truncate(u32),
    Flip(u32, u8),
}

fn leaf(leaf: &Leaf) -> Value {
    match leaf {
        Leaf::Str(s) => Value::String(s.clone()),
        Leaf::Int(n) => Value::from(*n),
        Leaf::Quarter(q) => {
            serde_json::Number::from_f64(f64::from(*q) / 4.0).map_or(Value::Null, Value::Number)
        }
        Leaf::Bool(b) => Value::Bool(*b),
        Leaf::Null => Value::Null,
        Leaf::Nested(pairs) => Value::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        ),
    }
}

/// What the parser keeps of a value: everything but keys named `SERDE_RAW_VALUE_KEY`, which it
/// drops at any depth.
fn without_reserved(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| k != SERDE_RAW_VALUE_KEY)
                .map(|(k, v)| (k, without_reserved(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_reserved).collect()),
        other => other,
    }
}

/// The JSON value of an entry, and the request PHP keeps for it (`None`: dropped).
fn entry(entry: &Entry) -> (Value, Option<Option<Map<String, Value>>>) {
    match entry {
        Entry::Url {
            prefix,
            query,
            fragment,
        } => {
            let prefix: String = prefix.chars().filter(|&c| c != '?').collect();
            let mut url = format!("{prefix}?{query}");
            if let Some(fragment) = fragment {
                url.push('#');
                url.push_str(fragment);
            }
            // parse_url: a `?` after a `#` is part of the fragment; PHP's empty() drops "0".
            let kept_query = query.split('#').next().unwrap_or_default();
            let has_query = !prefix.contains('#') && !kept_query.is_empty() && kept_query != "0";
            let kept = has_query.then_some(None);
            (Value::String(url), kept)
        }
        Entry::Object(pairs) => {
            let map: Map<String, Value> = pairs.iter().map(|(k, v)| (k.clone(), leaf(v))).collect();
            let kept = match without_reserved(Value::Object(map.clone())) {
                Value::Object(kept) => kept,
                _ => Map::new(),
            };
            (Value::Object(map), Some(Some(kept)))
        }
        Entry::List(items) => (Value::Array(items.iter().map(leaf).collect()), Some(None)),
        Entry::Null => (Value::Null, Some(Some(Map::new()))),
        Entry::Number(n) => (Value::from(*n), Some(Some(Map::new()))),
        Entry::Bool(b) => (Value::Bool(*b), Some(Some(Map::new()))),
    }
}

fuzz_target!(|input: Input| {
    let built: Vec<_> = input.entries.iter().map(entry).collect();
    let mut top = Map::new();
    top.insert(
        "requests".into(),
        Value::Array(built.iter().map(|(v, _)| v.clone()).collect()),
    );
    if let Some(token) = &input.token {
        top.insert("token_auth".into(), Value::String(token.clone()));
    }
    if let Some(send_image) = input.send_image {
        top.insert("send_image".into(), Value::from(send_image % 2));
    }
    let mut body = serde_json::to_vec(&Value::Object(top)).expect("serialises");
    let max = usize::from(input.max);
    let damaged = input.damage.is_some();
    match input.damage {
        Some(Damage::Truncate(at)) => body.truncate(at as usize % (body.len() + 1)),
        Some(Damage::Flip(at, byte)) => {
            let at = at as usize % body.len();
            body[at] = byte;
        }
        None => {}
    }

    let result = parse_bulk(&body, max);
    if !damaged {
        assert!(is_bulk_body(&body));
        if built.len() > max {
            assert_eq!(result, Err(BulkError::TooManyRequests { max }));
            return;
        }
        let bulk = result.as_ref().expect("an intact body parses");
        let kept: Vec<_> = built.iter().filter_map(|(_, kept)| kept.as_ref()).collect();
        assert_eq!(bulk.requests.len(), kept.len(), "kept entries");
        for (got, expected) in bulk.requests.iter().zip(kept) {
            // An object entry may be refused as too large; a readable one is unchanged.
            if let (Some(expected), Ok(got)) = (expected, got.params()) {
                assert_eq!(&got, expected);
            }
        }
        assert_eq!(bulk.send_image, input.send_image.is_none_or(|s| s % 2 == 1));
    }
    let Ok(bulk) = result else { return };
    let requests: Vec<Params> = bulk
        .requests
        .iter()
        .filter_map(|e| e.params().ok())
        .collect();
    let decoded = matomo_ingest_fuzz::encode_and_decode(&requests, "2001:db8::1", 16);
    assert_eq!(decoded.len(), requests.len());
    for request in &requests {
        assert!(decoded.contains(&matomo_ingest_fuzz::php_json(request)));
    }
});
