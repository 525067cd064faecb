//! Deflate's bit order and symbol tables: the LSB-first bit writer, the length and distance
//! code tables of RFC 1951 §3.2.5, and the fixed Huffman code of §3.2.6.

/// (base length, extra bits) of length codes 257..=285.
pub const LENGTHS: [(u16, u8); 29] = [
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
pub const DISTANCES: [(u16, u8); 30] = [
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

/// Length code index (0..=28, symbol 257 + index) of every match length 0..=258 (entries below
/// 3 are unused).
pub const LENGTH_CODE: [u8; 259] = length_codes();

const fn length_codes() -> [u8; 259] {
    let mut table = [0u8; 259];
    let mut code = 0;
    let mut len = 3;
    while len <= 258 {
        while code + 1 < LENGTHS.len() && LENGTHS[code + 1].0 as usize <= len {
            code += 1;
        }
        table[len] = code as u8;
        len += 1;
    }
    table
}

/// Distance codes of `d - 1` for d in 1..=256, and of `(d - 1) >> 7` for larger d (zlib's
/// two-part lookup: codes 16 and up change only every 128 distances).
const DIST_CODE_LOW: [u8; 256] = dist_codes(0);
const DIST_CODE_HIGH: [u8; 256] = dist_codes(7);

const fn dist_codes(shift: u32) -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut code = 0;
    let mut i = 0;
    while i < 256 {
        let distance = ((i as u32) << shift) + 1;
        while code + 1 < DISTANCES.len() && DISTANCES[code + 1].0 as u32 <= distance {
            code += 1;
        }
        table[i] = code as u8;
        i += 1;
    }
    table
}

/// Distance code (0..=29) of a distance 1..=32768.
#[inline]
pub fn distance_code(distance: u32) -> usize {
    let d = distance as usize - 1;
    if d < 256 {
        usize::from(DIST_CODE_LOW[d])
    } else {
        usize::from(DIST_CODE_HIGH[(d >> 7) & 0xFF])
    }
}

/// The fixed literal/length code lengths (symbols 0..=287).
pub const FIXED_LITLEN_LENGTHS: [u8; 288] = fixed_lengths();
/// The fixed distance code: 5 bits for each of the 30 codes (and the two unused ones).
pub const FIXED_DIST_LENGTHS: [u8; 30] = [5; 30];

const fn fixed_lengths() -> [u8; 288] {
    let mut table = [0u8; 288];
    let mut symbol = 0;
    while symbol < 288 {
        table[symbol] = match symbol {
            0..=143 => 8,
            144..=255 => 9,
            256..=279 => 7,
            _ => 8,
        };
        symbol += 1;
    }
    table
}

/// Deflate's bit order: values LSB first, Huffman codes MSB first (stored bit-reversed).
pub struct BitWriter {
    pub bytes: Vec<u8>,
    acc: u64,
    used: u32,
}

impl BitWriter {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(capacity),
            acc: 0,
            used: 0,
        }
    }

    /// The low `count` (at most 32) bits of `value`, least significant first.
    #[inline]
    pub fn bits(&mut self, value: u32, count: u32) {
        debug_assert!(count <= 32 && (count == 32 || value >> count == 0));
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

    /// Bits written but not yet a whole byte... or word: the bit position modulo 8 is this
    /// modulo 8.
    pub fn pending_bits(&self) -> u32 {
        self.used
    }

    /// Writes out the bits still held, padded with zeros to a whole byte.
    pub fn align(&mut self) {
        while self.used > 0 {
            // Lossless: the low byte.
            self.bytes.push(self.acc as u8);
            self.acc >>= 8;
            self.used = self.used.saturating_sub(8);
        }
        self.acc = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_tables_agree_with_the_base_tables() {
        for len in 3..=258u16 {
            let code = usize::from(LENGTH_CODE[usize::from(len)]);
            let (base, extra) = LENGTHS[code];
            assert!(base <= len && len - base < (1 << extra) || (len == 258 && code == 28));
        }
        // 258 has its own code (285), not 284 + 31.
        assert_eq!(LENGTH_CODE[258], 28);
        assert_eq!(LENGTH_CODE[257], 27);
        for distance in 1..=32_768u32 {
            let (base, extra) = DISTANCES[distance_code(distance)];
            let base = u32::from(base);
            assert!(
                base <= distance && distance - base < (1 << extra),
                "{distance}"
            );
        }
    }

    #[test]
    fn bits_come_out_lsb_first() {
        let mut w = BitWriter::with_capacity(8);
        w.bits(0b1, 1);
        w.bits(0b10, 2);
        w.bits(0xABCD, 16);
        w.bits(0xFFFF_FFFF, 32);
        w.align();
        let v = u64::from_le_bytes({
            let mut b = [0u8; 8];
            b[..w.bytes.len()].copy_from_slice(&w.bytes);
            b
        });
        assert_eq!(w.bytes.len(), 7);
        assert_eq!(v, 0b101 | (0xABCD << 3) | (0xFFFF_FFFF << 19));
    }
}
