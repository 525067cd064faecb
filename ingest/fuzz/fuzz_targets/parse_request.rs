//! Fuzzes everything the ingest node reads from untrusted bytes: the query-string/form parser,
//! bulk detection and the bulk JSON parser, and the queue encoding of whatever they produce
//! (which must decode back to the same requests).
#![no_main]

use libfuzzer_sys::fuzz_target;
use matomo_ingest::parse::{is_bulk_body, parse_bulk, single_request};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (query, form) = data.split_at(split);
    let params = single_request(query, Some(form));
    let mut requests = vec![params];
    if is_bulk_body(data) {
        if let Ok(bulk) = parse_bulk(data, 1000) {
            requests.extend(bulk.requests.iter().filter_map(|e| e.params().ok()));
        }
    }
    let decoded = matomo_ingest_fuzz::encode_and_decode(&requests, "192.0.2.1", 16);
    assert_eq!(decoded.len(), requests.len());
});
