//! Fuzzes everything the ingest node reads from untrusted bytes: the query-string/form parser,
//! bulk detection and the bulk JSON parser, and the queue encoding of whatever they produce
//! (which must decode back to the same requests).
#![no_main]

use libfuzzer_sys::fuzz_target;
use matomo_ingest::parse::{is_bulk_body, parse_bulk, single_request};
use matomo_ingest::queue::{entries_for, Envelope, Routed, Routing};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (query, form) = data.split_at(split);
    let params = single_request(query, Some(form));
    let mut requests = vec![params];
    if is_bulk_body(data) {
        if let Ok(bulk) = parse_bulk(data, 1000) {
            requests.extend(bulk.requests);
        }
    }
    let routed: Vec<Routed<'_>> = requests
        .iter()
        .map(|params| Routed {
            params,
            ip: "192.0.2.1",
        })
        .collect();
    let envelope = Envelope {
        server: Default::default(),
        cookie: Default::default(),
        token_auth: None,
        time: 0,
    };
    let routing = Routing {
        num_queues: 16,
        uid_overwrites_visitor_id: true,
        compression: matomo_ingest::queue::EntryCompression::Default,
    };
    let entries = entries_for(&routed, &envelope, routing, || "0000000000000000".into());
    let mut decoded = 0;
    for entry in entries {
        let set = matomo_wire::decode(&entry.bytes).expect("our entries decode");
        decoded += set.requests.len();
    }
    assert_eq!(decoded, requests.len());
});
