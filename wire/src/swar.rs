//! Eight bytes at a time (SWAR): the word and byte-flag helpers that the JSON writer
//! ([`crate::phpjson`]) and the ingest's query-string scanner share.
//!
//! A flag is the top bit of a byte. [`below`] and [`equal`] borrow across bytes, so they can
//! flag a byte falsely, but only above (after) a truly flagged one: the lowest flag is exact,
//! and no flag means no such byte. [`count_equal`] is exact for every byte.

/// `0x01` in every byte.
pub const ONES: u64 = 0x0101_0101_0101_0101;
/// `0x80` in every byte.
pub const HIGH: u64 = 0x8080_8080_8080_8080;

/// The eight bytes of `bytes` from `i` as a little-endian word, when there are eight.
#[inline]
pub fn word_at(bytes: &[u8], i: usize) -> Option<u64> {
    bytes
        .get(i..i + 8)
        .and_then(|chunk| <[u8; 8]>::try_from(chunk).ok())
        .map(u64::from_le_bytes)
}

/// Flags the bytes of `w` that are below `n` (`n` ≤ 0x80; bytes from 0x80 up are never flagged).
#[inline]
pub fn below(w: u64, n: u8) -> u64 {
    w.wrapping_sub(ONES * u64::from(n)) & !w & HIGH
}

/// Flags the bytes of `w` equal to `b`.
#[inline]
pub fn equal(w: u64, b: u8) -> u64 {
    let x = w ^ (ONES * u64::from(b));
    x.wrapping_sub(ONES) & !x & HIGH
}

/// How many bytes of `w` equal `b`, exactly (no borrow between bytes).
#[inline]
pub fn count_equal(w: u64, b: u8) -> u32 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = w ^ (ONES * u64::from(b));
    (!(((x & LOW7) + LOW7) | x) & HIGH).count_ones()
}

/// The index within the word of its lowest flagged byte (8 when none is).
#[inline]
pub fn first_flagged(flags: u64) -> usize {
    (flags.trailing_zeros() / 8) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_counts_agree_with_the_bytes() {
        let bytes = *b"a&\x00&=\xff/&";
        let w = word_at(&bytes, 0).expect("eight bytes");
        assert_eq!(first_flagged(equal(w, b'&')), 1);
        assert_eq!(first_flagged(equal(w, b'=')), 4);
        assert_eq!(first_flagged(below(w, 0x20)), 2);
        assert_eq!(first_flagged(equal(w, b'z')), 8);
        assert_eq!(count_equal(w, b'&'), 3);
        // `'` is `&` ^ 1: a borrowing count would take it for a second `&`.
        assert_eq!(count_equal(word_at(b"&'aaaaaa", 0).expect("word"), b'&'), 1);
        assert_eq!(word_at(&bytes, 1), None);
    }
}
