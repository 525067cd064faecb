//! The entry encoder of the hot path: `matomo_wire::envelope::state_json`, compressed as
//! `queue.compression` says, reusing one compressor per thread and level.
//!
//! With [`EntryCompression::Default`] the bytes are exactly what `matomo_wire::encode` (and PHP's
//! `gzcompress`) produce (a test holds them equal), but without allocating and zeroing a fresh
//! ~300 KB deflate state for every hit. `Fast` (zlib level 1) and `None` (the JSON itself) trade
//! Redis memory for CPU; QueuedTracking's reader accepts both (`@gzuncompress`, falling back to
//! the raw value). The JSON writer — the contract — stays in `matomo-wire`.

use std::cell::RefCell;

use flate2::{Compress, Compression, FlushCompress, Status};
use matomo_wire::envelope::state_json;
use matomo_wire::RequestSet;
use tier_config::EntryCompression;

thread_local! {
    static COMPRESSOR: RefCell<Compress> = RefCell::new(Compress::new(Compression::default(), true));
    static FAST_COMPRESSOR: RefCell<Compress> = RefCell::new(Compress::new(Compression::fast(), true));
}

/// One queue entry for `set`: `gzcompress(json_encode(state))` (as `matomo_wire::encode`) by
/// default, zlib level 1 with `Fast`, the JSON itself with `None`.
pub fn encode(set: &RequestSet, compression: EntryCompression) -> Vec<u8> {
    let json = state_json(set);
    let compressor = match compression {
        EntryCompression::Default => &COMPRESSOR,
        EntryCompression::Fast => &FAST_COMPRESSOR,
        EntryCompression::None => return json.into_bytes(),
    };
    compressor.with(|cell| {
        let mut compressor = cell.borrow_mut();
        compressor.reset();
        let input = json.as_bytes();
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        loop {
            let consumed = compressor.total_in() as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            match compressor.compress_vec(&input[consumed..], &mut out, FlushCompress::Finish) {
                Ok(Status::StreamEnd) => return out,
                Ok(_) => out.reserve(out.capacity().max(256)),
                // In-memory deflate with a valid state cannot fail; fall back to the wire crate's
                // encoder rather than panic.
                Err(_) => return matomo_wire::encode(set),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    proptest! {
        #[test]
        fn same_bytes_as_the_wire_crate(
            pairs in proptest::collection::vec(("[a-z_]{1,8}", any::<String>()), 0..40),
            token in proptest::option::of("[0-9a-f]{32}"),
            time in any::<i64>(),
        ) {
            let request = pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
            let set = RequestSet {
                requests: vec![request],
                token_auth: token,
                time,
                entry_id: Some("0123456789abcdef".into()),
                ..RequestSet::default()
            };
            let ours = encode(&set, EntryCompression::Default);
            prop_assert_eq!(&ours, &matomo_wire::encode(&set));
            // Twice on the same thread: the reset leaves no state behind.
            prop_assert_eq!(encode(&set, EntryCompression::Default), ours);
            // The other modes decode to the same request set.
            for mode in [EntryCompression::Fast, EntryCompression::None] {
                let bytes = encode(&set, mode);
                prop_assert_eq!(matomo_wire::decode(&bytes).ok(), Some(set.clone()));
                prop_assert_eq!(encode(&set, mode), bytes);
            }
        }
    }

    #[test]
    fn large_entries_grow_the_buffer() {
        let big: String = (0..200_000)
            .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
            .collect();
        let request = [("x".to_string(), Value::String(big))]
            .into_iter()
            .collect();
        let set = RequestSet {
            requests: vec![request],
            time: 1,
            ..RequestSet::default()
        };
        assert_eq!(
            encode(&set, EntryCompression::Default),
            matomo_wire::encode(&set)
        );
        let fast = encode(&set, EntryCompression::Fast);
        assert_eq!(matomo_wire::decode(&fast).ok(), Some(set.clone()));
    }

    #[test]
    fn none_is_the_json_itself_and_fast_is_zlib() {
        let set = RequestSet {
            requests: vec![[("idsite".to_string(), Value::from("1"))]
                .into_iter()
                .collect()],
            time: 7,
            ..RequestSet::default()
        };
        assert_eq!(
            encode(&set, EntryCompression::None),
            state_json(&set).into_bytes()
        );
        let fast = encode(&set, EntryCompression::Fast);
        // zlib header: deflate, 32 KB window, level 1 ("fastest") in FLEVEL.
        assert_eq!(&fast[..2], &[0x78, 0x01]);
    }
}
