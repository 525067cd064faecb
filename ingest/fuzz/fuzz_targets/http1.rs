//! Fuzzes the HTTP/1.1 connection's parsers on arbitrary bytes arriving in arbitrary pieces: the
//! request-head reader (`conn::head::take_head`) and the chunked body decoder.
//!
//! Checked on every input, beyond "no panic": feeding the bytes piece by piece gives the same
//! outcome as feeding them at once (a head's method, target, headers and framing, and the bytes
//! left after it; a chunked body's data, its end, and how much of the input it used), and a
//! complete head never holds a target longer than the limit.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use matomo_ingest::conn::chunked::ChunkedDecoder;
use matomo_ingest::conn::head::{take_head, Head, HeadError, Limits};

#[derive(Debug, Arbitrary)]
struct Input {
    bytes: Vec<u8>,
    cuts: Vec<u8>,
    max_url: u8,
}

/// What a head parse says, in comparable form.
type Outcome = Result<Option<(String, String, Vec<(String, Vec<u8>)>, String, bool)>, HeadError>;

fn summarise(head: Result<Option<Head>, HeadError>) -> Outcome {
    head.map(|head| {
        head.map(|h| {
            let headers = h
                .parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                .collect();
            (
                h.parts.method.to_string(),
                h.parts.uri.to_string(),
                headers,
                format!("{:?}", h.framing),
                h.keep_alive,
            )
        })
    })
}

/// Feeds `bytes` in pieces, as a connection would; returns the first outcome that is not
/// "incomplete" (or "incomplete" once everything arrived) and the bytes left in the buffer.
fn piecewise(bytes: &[u8], cuts: &[u8], limits: &Limits) -> (Outcome, Vec<u8>) {
    let mut buf = BytesMut::new();
    let mut at = 0;
    let mut cuts = cuts.iter().map(|&c| usize::from(c) + 1).cycle();
    loop {
        let end = (at + cuts.next().unwrap_or(bytes.len())).min(bytes.len());
        buf.extend_from_slice(&bytes[at..end]);
        at = end;
        let outcome = summarise(take_head(&mut buf, limits));
        if !matches!(outcome, Ok(None)) || at == bytes.len() {
            buf.extend_from_slice(&bytes[at..]);
            return (outcome, buf.to_vec());
        }
    }
}

fuzz_target!(|input: Input| {
    let limits = Limits {
        max_url: usize::from(input.max_url) + 1,
        max_head: usize::from(input.max_url) + 256,
    };
    let mut whole = BytesMut::from(input.bytes.as_slice());
    let at_once = summarise(take_head(&mut whole, &limits));
    if let Ok(Some((_, target, ..))) = &at_once {
        assert!(target.len() <= limits.max_url, "target over the limit");
    }
    // A piece-by-piece read may stop at the limit before the whole head is there; only a head
    // that fits is required to read the same.
    if input.bytes.len() <= limits.max_head {
        let (pieces, rest) = piecewise(&input.bytes, &input.cuts, &limits);
        assert_eq!(pieces, at_once, "split reads disagree");
        if matches!(at_once, Ok(Some(_))) {
            assert_eq!(rest, whole.to_vec(), "different bytes left after the head");
        }
    }

    let mut decoder = ChunkedDecoder::new();
    let mut body = Vec::new();
    let whole_result = decoder.decode(&input.bytes, &mut body);
    let whole_done = decoder.is_done();
    let mut decoder = ChunkedDecoder::new();
    let mut split_body = Vec::new();
    let mut used = 0;
    let mut split_result = Ok(0);
    let mut cuts = input.cuts.iter().map(|&c| usize::from(c) + 1).cycle();
    let mut at = 0;
    while at < input.bytes.len() && !decoder.is_done() {
        let end = (at + cuts.next().unwrap_or(input.bytes.len())).min(input.bytes.len());
        match decoder.decode(&input.bytes[at..end], &mut split_body) {
            Ok(n) => used += n,
            Err(e) => {
                split_result = Err(e);
                break;
            }
        }
        at = end;
    }
    match (whole_result, split_result) {
        (Ok(n), Ok(_)) => {
            assert_eq!(n, used, "different bytes used");
            assert_eq!(body, split_body, "different data");
            assert_eq!(whole_done, decoder.is_done());
        }
        (Err(a), Err(b)) => assert_eq!(a, b, "different errors"),
        (a, b) => panic!("split decoding disagrees: {a:?} vs {b:?}"),
    }
});
