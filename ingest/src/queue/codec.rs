//! The entry encoder of the hot path: `matomo_wire::envelope::state_json`, compressed as
//! `queue.compression` says, reusing one compressor per thread and level.
//!
//! `Default` is zlib data from the ingest's own encoder ([`super::quick_zlib::compress`]:
//! smaller than PHP's `gzcompress` output, for less CPU). With [`EntryCompression::Zlib`] the
//! bytes are exactly what `matomo_wire::encode` (zlib at PHP's `gzcompress` level) produces (a
//! test holds them equal), without allocating a fresh ~300 KB deflate state for every hit.
//! `Fast` ([`super::quick_zlib::compress_fast`]: a greedy fixed-Huffman encoder) and `None`
//! (the JSON itself) trade Redis memory for CPU; QueuedTracking's reader accepts every form
//! (`@gzuncompress`, falling back to the raw value). The JSON writer — the contract — stays in
//! `matomo-wire`.

use std::cell::RefCell;

use flate2::{Compress, Compression, FlushCompress, Status};
use matomo_wire::envelope::{write_state_json, StateEnv};
use matomo_wire::{RequestSet, WritePhpArray};
use tier_config::EntryCompression;

/// Entries up to this size use [`super::quick_zlib`] (its positions are 32-bit; larger ones,
/// which only a huge bulk makes, go through zlib: level 6 for `Default`, 1 for `Fast`).
const QUICK_MAX_BYTES: usize = 256 * 1024 * 1024;

thread_local! {
    static COMPRESSOR: RefCell<Compress> = RefCell::new(Compress::new(Compression::default(), true));
    static FAST_COMPRESSOR: RefCell<Compress> = RefCell::new(Compress::new(Compression::fast(), true));
    /// The JSON of the entry being encoded, reused so its growth is paid once per thread.
    static JSON: RefCell<String> = RefCell::new(String::with_capacity(4096));
}

/// The JSON buffer kept between entries is trimmed back to this after a larger entry.
const KEPT_JSON_CAPACITY: usize = 64 * 1024;

/// One queue entry for `set`: zlib data of `json_encode(state)` from [`super::quick_zlib`] by
/// default, `gzcompress(json_encode(state))` (as `matomo_wire::encode`) with `Zlib`, the
/// greedy fixed-Huffman encoder's with `Fast`, the JSON itself with `None`.
pub fn encode(set: &RequestSet, compression: EntryCompression) -> Vec<u8> {
    encode_state(&set.requests, &set.env(), compression)
}

/// One queue entry for `requests` with `env`, without building a [`RequestSet`]: the same bytes
/// as [`encode`] of the request set they make up.
pub fn encode_state<'r, R: WritePhpArray + ?Sized + 'r>(
    requests: impl IntoIterator<Item = &'r R>,
    env: &StateEnv<'_>,
    compression: EntryCompression,
) -> Vec<u8> {
    JSON.with(|cell| {
        // A nested call (none today) would find the buffer borrowed: use a fresh one then.
        let mut fresh = String::new();
        let mut kept = cell.try_borrow_mut();
        let json = match kept.as_mut() {
            Ok(kept) => &mut **kept,
            Err(_) => &mut fresh,
        };
        json.clear();
        write_state_json(json, requests, env);
        let bytes = compress(json.as_bytes(), compression);
        if json.capacity() > KEPT_JSON_CAPACITY {
            json.clear();
            json.shrink_to(KEPT_JSON_CAPACITY);
        }
        bytes
    })
}

/// `input` (an entry's JSON) compressed as `compression` says: the entry bytes of [`encode`].
pub fn compress(input: &[u8], compression: EntryCompression) -> Vec<u8> {
    let compressor = match compression {
        EntryCompression::Default if input.len() <= QUICK_MAX_BYTES => {
            return super::quick_zlib::compress(input)
        }
        EntryCompression::Default | EntryCompression::Zlib => &COMPRESSOR,
        EntryCompression::Fast if input.len() <= QUICK_MAX_BYTES => {
            return super::quick_zlib::compress_fast(input)
        }
        EntryCompression::Fast => &FAST_COMPRESSOR,
        EntryCompression::None => return input.to_vec(),
    };
    compressor.with(|cell| {
        let mut compressor = cell.borrow_mut();
        compressor.reset();
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        loop {
            let consumed = compressor.total_in() as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            match compressor.compress_vec(&input[consumed..], &mut out, FlushCompress::Finish) {
                Ok(Status::StreamEnd) => return out,
                Ok(_) => out.reserve(out.capacity().max(256)),
                // In-memory deflate with a valid state cannot fail; fall back to a fresh
                // encoder rather than panic.
                Err(_) => return fresh_zlib(input, compression),
            }
        }
    })
}

/// zlib with a one-off encoder (the fallback of [`compress`]).
fn fresh_zlib(input: &[u8], compression: EntryCompression) -> Vec<u8> {
    use std::io::Write as _;
    let level = match compression {
        EntryCompression::Fast => Compression::fast(),
        _ => Compression::default(),
    };
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), level);
    match encoder.write_all(input) {
        Ok(()) => encoder.finish().unwrap_or_else(|_| input.to_vec()),
        // Writing into a Vec cannot fail; the raw JSON is a valid entry too.
        Err(_) => input.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use matomo_wire::envelope::state_json;
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
            let ours = encode(&set, EntryCompression::Zlib);
            prop_assert_eq!(&ours, &matomo_wire::encode(&set));
            // Twice on the same thread: the reset leaves no state behind.
            prop_assert_eq!(encode(&set, EntryCompression::Zlib), ours);
            // The other modes decode to the same request set.
            for mode in [EntryCompression::Default, EntryCompression::Fast, EntryCompression::None] {
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
            encode(&set, EntryCompression::Zlib),
            matomo_wire::encode(&set)
        );
        for mode in [EntryCompression::Default, EntryCompression::Fast] {
            let bytes = encode(&set, mode);
            assert_eq!(matomo_wire::decode(&bytes).ok(), Some(set.clone()));
        }
    }

    #[test]
    fn none_is_the_json_itself_and_the_others_are_zlib() {
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
        // zlib headers: deflate, 32 KB window; FLEVEL 2 (PHP's level 6), 1 (our default
        // encoder) and 0 ("fastest", the fixed-Huffman one).
        assert_eq!(&encode(&set, EntryCompression::Zlib)[..2], &[0x78, 0x9C]);
        assert_eq!(&encode(&set, EntryCompression::Default)[..2], &[0x78, 0x5E]);
        assert_eq!(&encode(&set, EntryCompression::Fast)[..2], &[0x78, 0x01]);
    }
}
