//! A small zlib encoder for queue entries (`queue.compression = "fast"`): greedy LZ77 over a
//! 4096-slot hash table and one deflate block with the fixed Huffman codes (RFC 1950/1951).
//!
//! Why not zlib at level 1: an entry is ~1 KB of JSON, and zlib (zlib-rs, like zlib-ng) clears
//! a 128 KB hash table for every stream; that clearing, and the cache lines it evicts, cost more
//! than compressing the entry. This encoder's whole state is a 16 KB table on the stack. What
//! it writes is ordinary zlib data — PHP's `gzuncompress`, flate2 and any inflater read it —
//! only the compressed bytes differ from zlib's (and are a few percent larger than level 1's).
//! Its correctness is pinned by round-trip property tests against flate2's decoder.

/// Slots of the match-finder hash table (positions of earlier 4-byte sequences).
const HASH_BITS: u32 = 12;
/// Shortest match encoded as a back-reference.
const MIN_MATCH: usize = 4;
/// Longest deflate match.
const MAX_MATCH: usize = 258;
/// Deflate's window: farthest back a match may reach.
const MAX_DISTANCE: usize = 32_768;

/// `input` as a zlib stream (header `78 01`, one fixed-Huffman block, Adler-32).
pub fn compress(input: &[u8]) -> Vec<u8> {
    let mut out = BitWriter::with_capacity(input.len() / 2 + 16);
    // CMF 0x78 (deflate, 32 KB window), FLG 0x01 (fastest, check bits: 0x7801 % 31 == 0).
    out.bytes.extend_from_slice(&[0x78, 0x01]);
    // BFINAL = 1, BTYPE = 01 (fixed Huffman codes).
    out.bits(0b011, 3);
    let mut table = [u32::MAX; 1 << HASH_BITS];
    let mut i = 0;
    let mut literals_from = 0;
    while i + MIN_MATCH <= input.len() {
        let slot = hash(&input[i..i + MIN_MATCH]);
        let candidate = table[slot] as usize;
        table[slot] = i as u32;
        let len = if candidate < i && i - candidate <= MAX_DISTANCE {
            match_length(input, candidate, i)
        } else {
            0
        };
        if len < MIN_MATCH {
            i += 1;
            continue;
        }
        for &b in &input[literals_from..i] {
            out.literal(b);
        }
        out.back_reference(len, i - candidate);
        // Index the positions inside the match too (cheap, and it finds more matches later).
        let end = i + len;
        let mut p = i + 1;
        while p < end && p + MIN_MATCH <= input.len() {
            table[hash(&input[p..p + MIN_MATCH])] = p as u32;
            p += 1;
        }
        i = end;
        literals_from = end;
    }
    for &b in &input[literals_from..] {
        out.literal(b);
    }
    out.symbol(256);
    out.align();
    out.bytes.extend_from_slice(&adler32(input).to_be_bytes());
    out.bytes
}

fn hash(four: &[u8]) -> usize {
    let v = u32::from_le_bytes([four[0], four[1], four[2], four[3]]);
    (v.wrapping_mul(0x9E37_79B1) >> (32 - HASH_BITS)) as usize
}

/// Length of the common run of `input[from..]` and `input[at..]`, at most [`MAX_MATCH`].
fn match_length(input: &[u8], from: usize, at: usize) -> usize {
    let limit = (input.len() - at).min(MAX_MATCH);
    let mut n = 0;
    while n < limit && input[from + n] == input[at + n] {
        n += 1;
    }
    n
}

fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    let (mut a, mut b) = (1u32, 0u32);
    // 5552 bytes is the most that can be summed before `b` could overflow.
    for chunk in data.chunks(5552) {
        for &byte in chunk {
            a += u32::from(byte);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

/// (base length, extra bits) of length codes 257..=285.
const LENGTHS: [(u16, u8); 29] = [
    (3, 0),
    (4, 0),
    (5, 0),
    (6, 0),
    (7, 0),
    (8, 0),
    (9, 0),
    (10, 0),
    (11, 1),
    (13, 1),
    (15, 1),
    (17, 1),
    (19, 2),
    (23, 2),
    (27, 2),
    (31, 2),
    (35, 3),
    (43, 3),
    (51, 3),
    (59, 3),
    (67, 4),
    (83, 4),
    (99, 4),
    (115, 4),
    (131, 5),
    (163, 5),
    (195, 5),
    (227, 5),
    (258, 0),
];

/// (base distance, extra bits) of distance codes 0..=29.
const DISTANCES: [(u16, u8); 30] = [
    (1, 0),
    (2, 0),
    (3, 0),
    (4, 0),
    (5, 1),
    (7, 1),
    (9, 2),
    (13, 2),
    (17, 3),
    (25, 3),
    (33, 4),
    (49, 4),
    (65, 5),
    (97, 5),
    (129, 6),
    (193, 6),
    (257, 7),
    (385, 7),
    (513, 8),
    (769, 8),
    (1025, 9),
    (1537, 9),
    (2049, 10),
    (3073, 10),
    (4097, 11),
    (6145, 11),
    (8193, 12),
    (12289, 12),
    (16385, 13),
    (24577, 13),
];

/// The fixed literal/length code of every symbol 0..=287, bit-reversed (deflate writes Huffman
/// codes most significant bit first into an LSB-first stream), with its length.
const FIXED_CODES: [(u16, u8); 288] = fixed_codes();

const fn fixed_codes() -> [(u16, u8); 288] {
    let mut table = [(0u16, 0u8); 288];
    let mut symbol = 0;
    while symbol < 288 {
        let (code, len) = match symbol {
            0..=143 => (0x30 + symbol, 8),
            144..=255 => (0x190 + (symbol - 144), 9),
            256..=279 => (symbol - 256, 7),
            _ => (0xC0 + (symbol - 280), 8),
        };
        // Lossless: fixed codes are at most 9 bits.
        table[symbol as usize] = (
            ((code as u32).reverse_bits() >> (32 - len)) as u16,
            len as u8,
        );
        symbol += 1;
    }
    table
}

/// Deflate's bit order: values LSB first, Huffman codes MSB first.
struct BitWriter {
    bytes: Vec<u8>,
    acc: u64,
    used: u32,
}

impl BitWriter {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(capacity),
            acc: 0,
            used: 0,
        }
    }

    /// The low `count` (at most 32) bits of `value`, least significant first.
    #[inline]
    fn bits(&mut self, value: u32, count: u32) {
        self.acc |= u64::from(value) << self.used;
        self.used += count;
        if self.used >= 32 {
            // Lossless: the low 32 bits of the accumulator.
            self.bytes
                .extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.used -= 32;
        }
    }

    /// A Huffman code of `len` bits, most significant bit first.
    #[inline]
    fn code(&mut self, code: u32, len: u32) {
        self.bits(code.reverse_bits() >> (32 - len), len);
    }

    /// A literal/length symbol (0..=287) in the fixed code.
    #[inline]
    fn symbol(&mut self, symbol: u16) {
        let (code, len) = FIXED_CODES[usize::from(symbol)];
        self.bits(u32::from(code), u32::from(len));
    }

    #[inline]
    fn literal(&mut self, byte: u8) {
        self.symbol(u16::from(byte));
    }

    /// A match of `len` (3..=258) bytes `distance` (1..=32768) back.
    fn back_reference(&mut self, len: usize, distance: usize) {
        // Lossless: len <= 258 and distance <= 32768 fit in u16.
        let (len, distance) = (len as u16, distance as u16);
        let code = LENGTHS.partition_point(|&(base, _)| base <= len) - 1;
        let (base, extra) = LENGTHS[code];
        self.symbol(257 + code as u16);
        self.bits(u32::from(len - base), u32::from(extra));
        let code = DISTANCES.partition_point(|&(base, _)| base <= distance) - 1;
        let (base, extra) = DISTANCES[code];
        self.code(code as u32, 5);
        self.bits(u32::from(distance - base), u32::from(extra));
    }

    /// Writes out the bits still held, padded to a whole byte.
    fn align(&mut self) {
        while self.used > 0 {
            self.bytes.push(self.acc as u8);
            self.acc >>= 8;
            self.used = self.used.saturating_sub(8);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use proptest::prelude::*;

    use super::*;

    fn inflate(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("valid zlib");
        out
    }

    proptest! {
        #[test]
        fn round_trips_arbitrary_bytes(input in proptest::collection::vec(any::<u8>(), 0..4000)) {
            prop_assert_eq!(inflate(&compress(&input)), input);
        }

        #[test]
        fn round_trips_repetitive_text(
            words in proptest::collection::vec("[a-d]{1,6}|\"idsite\":\"1\"|http:\\\\/\\\\/", 0..600),
            repeat in 1usize..4,
        ) {
            let input = words.concat().repeat(repeat).into_bytes();
            prop_assert_eq!(inflate(&compress(&input)), input);
        }
    }

    #[test]
    fn long_runs_far_matches_and_large_inputs() {
        let mut input = vec![b'a'; 100_000];
        let noise: Vec<u8> = (0..70_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        input.extend_from_slice(&noise);
        input.extend_from_slice(&noise[..40_000]);
        let compressed = compress(&input);
        assert!(compressed.len() < input.len());
        assert_eq!(inflate(&compressed), input);
        assert_eq!(inflate(&compress(b"")), b"");
        assert_eq!(inflate(&compress(b"abc")), b"abc");
    }

    #[test]
    fn adler32_matches_the_reference_value() {
        // RFC 1950's example checksum of "Wikipedia".
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        assert_eq!(adler32(b""), 1);
    }
}
