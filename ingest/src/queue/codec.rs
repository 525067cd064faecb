//! The entry encoder of the hot path: `matomo_wire::envelope::state_json` compressed with zlib,
//! reusing one compressor per thread.
//!
//! Byte for byte what `matomo_wire::encode` produces (a test holds them equal), but without
//! allocating and zeroing a fresh ~300 KB deflate state for every hit, which was the largest CPU
//! cost per request under load. The JSON writer — the contract — stays in `matomo-wire`.

use std::cell::RefCell;

use flate2::{Compress, Compression, FlushCompress, Status};
use matomo_wire::envelope::state_json;
use matomo_wire::RequestSet;

thread_local! {
    static COMPRESSOR: RefCell<Compress> = RefCell::new(Compress::new(Compression::default(), true));
}

/// `gzcompress(json_encode(state))`, as `matomo_wire::encode`.
pub fn encode(set: &RequestSet) -> Vec<u8> {
    let json = state_json(set);
    COMPRESSOR.with(|cell| {
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
            let ours = encode(&set);
            prop_assert_eq!(&ours, &matomo_wire::encode(&set));
            // Twice on the same thread: the reset leaves no state behind.
            prop_assert_eq!(encode(&set), ours);
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
        assert_eq!(encode(&set), matomo_wire::encode(&set));
    }
}
