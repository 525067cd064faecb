//! Fuzzes the single-hit path: a query string merged with a form body (`$_GET + $_POST`) through
//! PHP's `parse_str`, including bracketed array names, then the queue encoding of the result.
//!
//! Checked on every input, beyond "no panic": at most `max_input_vars` pairs are read from each
//! part; names are never empty; the query string wins over the form; arrays nest no deeper than
//! `max_input_nesting_level`; the encoded entry decodes back to exactly the parsed request; the
//! handler's flat path (`single_hit`) holds the same parameters, in the same order, and writes
//! the same entry bytes.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use matomo_ingest::parse::phpquery::{MAX_INPUT_VARS, MAX_NESTING};
use matomo_ingest::parse::{parse_str, single_hit, single_request};
use matomo_ingest::queue::{entries_for, Envelope, Routed, Routing};
use serde_json::Value;

/// A query string and an optional form body, each built from name/value pieces so that array
/// syntax (`a[b][]`) and escapes are reached far more often than with raw bytes alone.
#[derive(Debug, Arbitrary)]
struct Input {
    query: Vec<Pair>,
    form: Option<Vec<Pair>>,
    raw_tail: Vec<u8>,
}

#[derive(Debug, Arbitrary)]
struct Pair {
    name: Vec<u8>,
    indexes: Vec<Vec<u8>>,
    value: Option<Vec<u8>>,
}

fn render(pairs: &[Pair], tail: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for pair in pairs {
        if !out.is_empty() {
            out.push(b'&');
        }
        out.extend_from_slice(&pair.name);
        for index in &pair.indexes {
            out.push(b'[');
            out.extend_from_slice(index);
            out.push(b']');
        }
        if let Some(value) = &pair.value {
            out.push(b'=');
            out.extend_from_slice(value);
        }
    }
    out.extend_from_slice(tail);
    out
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|input: Input| {
    let query = render(&input.query, &input.raw_tail);
    let form = input.form.as_deref().map(|pairs| render(pairs, b""));
    let from_query = parse_str(&query);
    assert!(from_query.len() <= MAX_INPUT_VARS);
    let merged = single_request(&query, form.as_deref());
    assert!(merged.len() <= 2 * MAX_INPUT_VARS);
    for (key, value) in &merged {
        assert!(!key.is_empty(), "empty parameter name");
        assert!(depth(value) <= MAX_NESTING, "nested deeper than PHP allows");
    }
    for (key, value) in &from_query {
        assert_eq!(merged.get(key), Some(value), "the query string must win");
    }

    let decoded =
        matomo_ingest_fuzz::encode_and_decode(std::slice::from_ref(&merged), "192.0.2.1", 7);
    assert_eq!(decoded, vec![matomo_ingest_fuzz::php_json(&merged)]);

    let hit = single_hit(&query, form.as_deref());
    let ordered = |p: &matomo_wire::Params| {
        p.iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ordered(&hit.to_params()), ordered(&merged), "flat path differs");
    let (envelope, routing) = (Envelope::default(), Routing::default());
    let ip = "192.0.2.1";
    let flat = entries_for(&[Routed { params: &hit, ip }], &envelope, routing, || {
        "0000000000000000".into()
    });
    let map = entries_for(&[Routed { params: &merged, ip }], &envelope, routing, || {
        "0000000000000000".into()
    });
    assert_eq!(flat, map, "flat path writes other bytes");
});
