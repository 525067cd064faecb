//! The cheapest encoder (`queue.compression = "fast"`): greedy LZ77 with one probe into a
//! 4096-slot table of 4-byte sequences and a single fixed-Huffman block. About a third of the
//! CPU of the chained, lazy, dynamic-Huffman encoder, for entries about a quarter larger.

use super::bits::{distance_code, BitWriter, DISTANCES, LENGTHS, LENGTH_CODE};
use super::block::fixed;

/// Slots of the match-finder hash table (positions of earlier 4-byte sequences).
const HASH_BITS: u32 = 12;
/// Shortest match encoded as a back-reference.
const MIN_MATCH: usize = 4;
/// Longest deflate match.
const MAX_MATCH: usize = 258;
/// Deflate's window: farthest back a match may reach.
const MAX_DISTANCE: usize = 32_768;

/// The deflate data of `input`: one final fixed-Huffman block, padded to a byte.
pub fn deflate(input: &[u8], out: &mut BitWriter) {
    let codes = fixed();
    let literal = |out: &mut BitWriter, b: u8| {
        let s = usize::from(b);
        out.bits(
            u32::from(codes.litlen[s]),
            u32::from(super::bits::FIXED_LITLEN_LENGTHS[s]),
        );
    };
    // BFINAL = 1, BTYPE = 01 (fixed Huffman codes).
    out.bits(0b011, 3);
    let mut table = [u32::MAX; 1 << HASH_BITS];
    let (mut i, mut literals_from) = (0, 0);
    while i + MIN_MATCH <= input.len() {
        let slot = hash(&input[i..i + MIN_MATCH]);
        let candidate = table[slot] as usize;
        // Lossless: inputs over 4 GB never come here (see `compress_fast`).
        table[slot] = i as u32;
        let len = if candidate < i && i - candidate <= MAX_DISTANCE {
            common_length(input, candidate, i)
        } else {
            0
        };
        if len < MIN_MATCH {
            i += 1;
            continue;
        }
        for &b in &input[literals_from..i] {
            literal(out, b);
        }
        // Lossless: len <= 258 and the distance <= 32768.
        let (len32, distance) = (len as u32, (i - candidate) as u32);
        let code = usize::from(LENGTH_CODE[len]);
        let s = 257 + code;
        out.bits(
            u32::from(codes.litlen[s]),
            u32::from(super::bits::FIXED_LITLEN_LENGTHS[s]),
        );
        out.bits(
            len32 - u32::from(LENGTHS[code].0),
            u32::from(LENGTHS[code].1),
        );
        let dcode = distance_code(distance);
        out.bits(u32::from(codes.dist[dcode]), 5);
        out.bits(
            distance - u32::from(DISTANCES[dcode].0),
            u32::from(DISTANCES[dcode].1),
        );
        // Index the positions inside the match too (cheap, and it finds more matches later).
        let end = i + len;
        for p in i + 1..end.min(input.len() + 1 - MIN_MATCH) {
            table[hash(&input[p..p + MIN_MATCH])] = p as u32;
        }
        i = end;
        literals_from = end;
    }
    for &b in &input[literals_from..] {
        literal(out, b);
    }
    out.bits(u32::from(codes.litlen[256]), 7);
    out.align();
}

fn hash(four: &[u8]) -> usize {
    let v = u32::from_le_bytes([four[0], four[1], four[2], four[3]]);
    (v.wrapping_mul(0x9E37_79B1) >> (32 - HASH_BITS)) as usize
}

/// Length of the common run of `input[from..]` and `input[at..]`, at most [`MAX_MATCH`].
fn common_length(input: &[u8], from: usize, at: usize) -> usize {
    let limit = (input.len() - at).min(MAX_MATCH);
    let mut n = 0;
    while n < limit && input[from + n] == input[at + n] {
        n += 1;
    }
    n
}
