//! Property tests of the parsers and the encoding path: round trips through a query string,
//! through a bulk body and through the queue encoding, and no panics on arbitrary bytes.

use matomo_wire::Params;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use proptest::prelude::*;
use serde_json::Value;

use super::{parse_bulk, parse_str, single_request};
use crate::queue::{entries_for, Envelope, Routed, Routing};

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

proptest! {
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
        let envelope = Envelope { server: Params::new(), cookie: Params::new(), token_auth: None, time: 1 };
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
