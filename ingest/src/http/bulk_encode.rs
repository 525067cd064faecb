//! The bulk path between parsing and the sink: each kept entry is parsed
//! ([`BulkEntry::params`]), checked, and the accepted ones are encoded in chunks of about
//! [`BULK_CHUNK_PARAMS`] parameters, so a bulk at the body limit never holds all its parsed
//! requests at once. Pure (the check is the caller's), so its memory can be measured in tests.

use matomo_wire::Params;

use crate::parse::BulkEntry;
use crate::queue::{entries_for, Envelope, QueueEntry, Routed, Routing};

/// Parsed parameters encoded together: enough that a bulk of typical hits (20–40 parameters
/// each) of up to a few hundred requests is one entry per queue, as QueuedTracking writes it;
/// few enough to bound the memory of a bulk at the body limit. A larger bulk gets one entry per
/// queue per chunk, in order.
pub const BULK_CHUNK_PARAMS: usize = 10_000;

/// The verdict on one request of a bulk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// Valid: queue it, routed by this IP.
    Accepted(String),
    /// Valid but empty: tracked, nothing queued.
    Empty,
    /// Invalid: its index is reported.
    Invalid,
}

/// The queue entries of the accepted requests and the indices of the invalid ones (entries
/// whose parameters cannot be read included). `new_id` yields unique entry ids.
pub fn encode_bulk(
    requests: &[BulkEntry],
    envelope: &Envelope<'_>,
    routing: Routing,
    mut check: impl FnMut(&Params) -> Checked,
    mut new_id: impl FnMut() -> String,
) -> (Vec<QueueEntry>, Vec<usize>) {
    let mut invalid = Vec::new();
    let mut entries = Vec::new();
    let mut chunk: Vec<(Params, String)> = Vec::new();
    let mut chunk_params = 0;
    let mut flush = |chunk: &mut Vec<(Params, String)>, entries: &mut Vec<QueueEntry>| {
        let routed: Vec<Routed<'_>> = chunk
            .iter()
            .map(|(params, ip)| Routed { params, ip })
            .collect();
        entries.extend(entries_for(&routed, envelope, routing, &mut new_id));
        chunk.clear();
    };
    for (index, entry) in requests.iter().enumerate() {
        let Ok(params) = entry.params() else {
            invalid.push(index);
            continue;
        };
        match check(&params) {
            Checked::Accepted(ip) => {
                chunk_params += params.len();
                chunk.push((params, ip));
                if chunk_params >= BULK_CHUNK_PARAMS {
                    flush(&mut chunk, &mut entries);
                    chunk_params = 0;
                }
            }
            Checked::Empty => {}
            Checked::Invalid => invalid.push(index),
        }
    }
    flush(&mut chunk, &mut entries);
    (entries, invalid)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::parse::parse_bulk;

    #[test]
    fn fuzz_crash_float_drifted_through_the_queue() {
        // cargo fuzz (bulk) found: serde_json's default float parser rounds
        // 5280832617179597E29 one ulp off, and the queue copy drifted further.
        let body =
            br#"{"requests":[{"idsite":1,"x":5280832617179597E29,"y":[8171040347354449221E2]}]}"#;
        let bulk = parse_bulk(body, 10).expect("parses");
        let params = bulk.requests[0].params().expect("readable");
        assert_eq!(params["x"].as_f64(), Some(5.280832617179597e44));
        assert_eq!(params["y"][0].as_f64(), Some(8.17104034735445e20));
        let envelope = Envelope {
            time: 1,
            ..Envelope::default()
        };
        let routing = Routing::default();
        let accept = |_: &Params| Checked::Accepted("192.0.2.1".into());
        let (entries, _) = encode_bulk(&bulk.requests, &envelope, routing, accept, || {
            "0".repeat(16)
        });
        let set = matomo_wire::decode(&entries[0].bytes).expect("decodes");
        assert_eq!(set.requests, vec![params]);
    }

    #[test]
    fn large_bulks_are_encoded_in_order_in_chunks() {
        // 300 requests of 100 parameters, all to one queue: three chunks of 100.
        let query: Vec<String> = (0..98).map(|k| format!("k{k}=v")).collect();
        let urls: Vec<String> = (0..300)
            .map(|i| format!("?_id=0000000000000001&n={i}&{}", query.join("&")))
            .collect();
        let mut body = json!({ "requests": urls });
        body["requests"][7] = json!("?bad=1");
        body["requests"][8] = json!(null);
        body["requests"][9] = json!(vec![0; 1500]);
        let bulk = parse_bulk(body.to_string().as_bytes(), 1000).expect("parses");
        let envelope = Envelope {
            time: 1,
            ..Envelope::default()
        };
        let routing = Routing::default();
        let check = |p: &Params| match p.len() {
            0 => Checked::Empty,
            1 => Checked::Invalid,
            _ => Checked::Accepted("192.0.2.1".into()),
        };
        let mut n = 0;
        let (entries, invalid) = encode_bulk(&bulk.requests, &envelope, routing, check, || {
            n += 1;
            format!("{n:016x}")
        });
        assert_eq!(
            invalid,
            vec![7, 9],
            "the bad request and the too large list"
        );
        let sets: Vec<_> = entries
            .iter()
            .map(|e| matomo_wire::decode(&e.bytes).expect("decodes"))
            .collect();
        let sizes: Vec<usize> = sets.iter().map(|s| s.requests.len()).collect();
        assert_eq!(sizes, vec![100, 100, 97]);
        let order: Vec<String> = sets
            .iter()
            .flat_map(|s| {
                s.requests
                    .iter()
                    .map(|p| p["n"].as_str().unwrap_or("").to_owned())
            })
            .collect();
        let expected: Vec<String> = (0..300)
            .filter(|i| ![7, 8, 9].contains(i))
            .map(|i| i.to_string())
            .collect();
        assert_eq!(order, expected);
    }
}
