//! Property tests of the parsers and the encoding path: round trips through a query string,
//! through a bulk body and through the queue encoding, no panics on arbitrary bytes, and the
//! single-hit path's flat list ([`super::single_hit`]) equal to the map path it replaces
//! ([`super::single_request`]), parameters and entry bytes alike.

use matomo_wire::Params;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use proptest::prelude::*;
use serde_json::Value;

use super::flat::{count_ampersands, parse_flat, FLAT_MAX_PAIRS};
use super::{parse_bulk, parse_str, single_hit, single_request, SERDE_RAW_VALUE_KEY};
use crate::env::{ServerValue, ServerVars};
use crate::queue::{entries_for, EntryCompression, Envelope, Routed, Routing};

fn param_maps() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::btree_map("[a-z_][a-z0-9_]{0,12}", any::<String>(), 0..12)
        .prop_map(|m| m.into_iter().collect())
}

fn encode(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)))
        .collect::<Vec<_>>()
        .join("&")
}

fn as_params(pairs: &[(String, String)]) -> Params {
    pairs
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect()
}

/// Query strings made of the pieces PHP's `parse_str` treats specially: separators, escapes
/// (valid, truncated, of `[`, NUL and non-UTF-8 bytes), brackets, dots, spaces, raw non-UTF-8
/// bytes, names that repeat, digits (list keys) and the reserved serde key.
fn tricky_queries() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        8 => prop::sample::select(vec!["a", "b", "idsite", "_id", "0", "1", "2", "cid", "x"])
            .prop_map(|s| s.as_bytes().to_vec()),
        4 => Just(b"&".to_vec()),
        4 => Just(b"=".to_vec()),
        1 => prop::sample::select(vec![
            "%", "%4", "%41", "%5B", "%5d", "%2e", "%20", "%00", "%E9", "%C3%A9", "%zz", "%26",
            "%3D", "+", "[", "]", "[]", ".", " ", "\0", "a[b]", "%5B%5D", SERDE_RAW_VALUE_KEY,
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => any::<u8>().prop_map(|b| vec![b]),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

/// The map's entries in order (a `Params` comparison ignores the order).
fn ordered(params: &Params) -> Vec<(String, Value)> {
    params.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn envelope_for_tests() -> Envelope<'static> {
    let mut server = ServerVars::default();
    server.set("REMOTE_ADDR", ServerValue::Str("203.0.113.5".into()));
    server.set(
        "HTTP_USER_AGENT",
        ServerValue::Str("Mozilla/5.0 (X11)".into()),
    );
    server.set("REQUEST_TIME", ServerValue::Int(1_800_000_000));
    Envelope {
        server,
        cookie: Params::new(),
        token_auth: Some("tok".into()),
        time: 1_800_000_000,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn ampersands_are_counted_eight_at_a_time_as_one_by_one(
        input in proptest::collection::vec(
            prop_oneof![Just(b'&'), Just(b'&' | 0x80), Just(b'\''), Just(b'%'), any::<u8>()],
            0..70,
        )
    ) {
        let one_by_one = input.iter().filter(|&&b| b == b'&').count();
        prop_assert_eq!(count_ampersands(&input), one_by_one);
    }

    #[test]
    fn the_flat_parser_is_parse_str(query in tricky_queries()) {
        let reference = parse_str(&query);
        match parse_flat(&query) {
            Some(flat) => prop_assert_eq!(ordered(&flat.to_params()), ordered(&reference)),
            None => {
                // Declined only for a PHP array name (a `[`, maybe escaped) or too many pairs.
                let text = String::from_utf8_lossy(&query).to_ascii_lowercase();
                prop_assert!(
                    text.contains('[')
                        || text.contains("%5b")
                        || query.iter().filter(|&&b| b == b'&').count() >= FLAT_MAX_PAIRS
                );
            }
        }
        prop_assert_eq!(
            ordered(&single_hit(&query, None).to_params()),
            ordered(&reference)
        );
    }

    #[test]
    fn the_flat_merge_is_single_request(query in tricky_queries(), form in tricky_queries()) {
        let hit = single_hit(&query, Some(&form));
        let reference = single_request(&query, Some(&form));
        prop_assert_eq!(ordered(&hit.to_params()), ordered(&reference));
        prop_assert_eq!(
            super::wants_no_image(&hit),
            super::wants_no_image(&reference)
        );
    }

    #[test]
    fn flat_entries_are_the_bytes_of_the_map_path(
        query in tricky_queries(),
        pairs in param_maps(),
        num_queues in 1u16..20,
    ) {
        let encoded = format!("{}&{}", encode(&pairs), String::from_utf8_lossy(&query));
        for input in [&query[..], encoded.as_bytes()] {
            let hit = single_hit(input, None);
            let reference = single_request(input, None);
            let envelope = envelope_for_tests();
            for compression in [EntryCompression::None, EntryCompression::Zlib] {
                let routing = Routing { num_queues, compression, ..Routing::default() };
                let ours = entries_for(
                    &[Routed { params: &hit, ip: "192.0.2.1" }],
                    &envelope,
                    routing,
                    || "0123456789abcdef".into(),
                );
                let theirs = entries_for(
                    &[Routed { params: &reference, ip: "192.0.2.1" }],
                    &envelope,
                    routing,
                    || "0123456789abcdef".into(),
                );
                prop_assert_eq!(ours, theirs);
            }
        }
    }

    #[test]
    fn query_strings_round_trip(pairs in param_maps()) {
        prop_assert_eq!(parse_str(encode(&pairs).as_bytes()), as_params(&pairs));
    }

    #[test]
    fn the_query_string_wins_over_the_form(q in param_maps(), f in param_maps()) {
        let merged = single_request(encode(&q).as_bytes(), Some(encode(&f).as_bytes()));
        for (k, v) in &q {
            prop_assert_eq!(merged.get(k), Some(&Value::String(v.clone())));
        }
        for (k, v) in &f {
            if !q.iter().any(|(qk, _)| qk == k) {
                prop_assert_eq!(merged.get(k), Some(&Value::String(v.clone())));
            }
        }
    }

    #[test]
    fn bulk_bodies_round_trip(requests in proptest::collection::vec(param_maps(), 0..8)) {
        let urls: Vec<String> = requests
            .iter()
            .map(|p| format!("?{}", encode(p)))
            .collect();
        let body = serde_json::json!({"requests": urls, "token_auth": "t"}).to_string();
        let bulk = parse_bulk(body.as_bytes(), 100).expect("valid bulk");
        // Entries whose query part is empty are dropped, as PHP drops them.
        let expected: Vec<Params> =
            requests.iter().filter(|p| !p.is_empty()).map(|p| as_params(p)).collect();
        let parsed: Vec<Params> = bulk
            .requests
            .iter()
            .map(|e| e.params().expect("readable entry"))
            .collect();
        prop_assert_eq!(parsed, expected);
    }

    #[test]
    fn encoded_entries_decode_to_the_same_requests(
        requests in proptest::collection::vec(param_maps(), 1..8),
        ips in proptest::collection::vec("[0-9]{1,3}\\.[0-9]{1,3}", 1..8),
        num_queues in 1u16..64,
    ) {
        let params: Vec<Params> = requests.iter().map(|p| as_params(p)).collect();
        let routed: Vec<Routed<'_>> = params
            .iter()
            .enumerate()
            .map(|(i, p)| Routed { params: p, ip: &ips[i % ips.len()] })
            .collect();
        let envelope = Envelope { time: 1, ..Envelope::default() };
        let mut n = 0u64;
        let entries = entries_for(
            &routed,
            &envelope,
            Routing {
                num_queues,
                ..Routing::default()
            },
            || { n += 1; format!("{n:016x}") },
        );
        let mut decoded = Vec::new();
        for entry in &entries {
            prop_assert!(entry.queue_id < num_queues);
            let set = matomo_wire::decode(&entry.bytes).expect("decodes");
            decoded.extend(set.requests);
        }
        prop_assert_eq!(decoded.len(), params.len());
        for p in &params {
            prop_assert!(decoded.contains(p));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_str(&bytes);
        if let Ok(bulk) = parse_bulk(&bytes, 10) {
            for entry in &bulk.requests {
                let _ = entry.params();
            }
        }
        let _ = super::is_bulk_body(&bytes);
    }
}
