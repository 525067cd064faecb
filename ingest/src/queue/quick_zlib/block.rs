//! One deflate block from the parser's tokens: symbol statistics, the dynamic Huffman codes and
//! their header (RFC 1951 §3.2.7), and the choice of the smallest of the dynamic, fixed and
//! stored forms, measured in exact bits.

use super::bits::{
    distance_code, BitWriter, DISTANCES, FIXED_DIST_LENGTHS, FIXED_LITLEN_LENGTHS, LENGTHS,
    LENGTH_CODE,
};
use super::huffman::{canonical_codes, code_lengths};
use super::lz77::split;

/// Literal/length symbols a block can use (0..=285).
const LITLEN: usize = 286;
/// Distance symbols a block can use (0..=29).
const DIST: usize = 30;
/// Order in which the code-length code's lengths are written.
const CL_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];
/// Extra bits of code-length symbols 16, 17, 18.
const CL_EXTRA: [u32; 3] = [2, 3, 7];
/// Largest stored block.
const STORED_MAX: usize = 65_535;

/// The fixed codes, bit-reversed, computed once.
pub struct Fixed {
    pub litlen: [u16; 288],
    pub dist: [u16; 30],
}

pub fn fixed() -> &'static Fixed {
    static FIXED: std::sync::OnceLock<Fixed> = std::sync::OnceLock::new();
    FIXED.get_or_init(|| {
        let mut codes = Fixed {
            litlen: [0; 288],
            dist: [0; 30],
        };
        canonical_codes(&FIXED_LITLEN_LENGTHS, &mut codes.litlen);
        canonical_codes(&FIXED_DIST_LENGTHS, &mut codes.dist);
        codes
    })
}

/// The code lengths sequence (literal/length then distance lengths) as code-length symbols:
/// (symbol 0..=18, extra bits value).
struct Header {
    hlit: usize,
    hdist: usize,
    hclen: usize,
    rle: Rle,
    cl_lengths: [u8; 19],
    cl_codes: [u16; 19],
    bits: u64,
}

impl Header {
    fn new(lit_lengths: &[u8; LITLEN], dist_lengths: &[u8; DIST]) -> Self {
        let hlit = 257
            + lit_lengths[257..]
                .iter()
                .rposition(|&l| l > 0)
                .map_or(0, |i| i + 1);
        let hdist = 1 + dist_lengths.iter().rposition(|&l| l > 0).unwrap_or(0);
        let mut seq = [0u8; LITLEN + DIST];
        seq[..hlit].copy_from_slice(&lit_lengths[..hlit]);
        seq[hlit..hlit + hdist].copy_from_slice(&dist_lengths[..hdist]);
        let rle = run_lengths(&seq[..hlit + hdist]);
        let mut cl_freq = [0u32; 19];
        for &(symbol, _) in rle.items() {
            cl_freq[usize::from(symbol)] += 1;
        }
        let mut cl_lengths = [0u8; 19];
        code_lengths(&cl_freq, 7, &mut cl_lengths);
        let mut cl_codes = [0u16; 19];
        canonical_codes(&cl_lengths, &mut cl_codes);
        let hclen = 4.max(
            1 + CL_ORDER
                .iter()
                .rposition(|&s| cl_lengths[s] > 0)
                .unwrap_or(0),
        );
        let mut bits = 5 + 5 + 4 + 3 * hclen as u64;
        for (symbol, &freq) in cl_freq.iter().enumerate() {
            let extra = if symbol >= 16 {
                CL_EXTRA[symbol - 16]
            } else {
                0
            };
            bits += u64::from(freq) * (u64::from(cl_lengths[symbol]) + u64::from(extra));
        }
        Self {
            hlit,
            hdist,
            hclen,
            rle,
            cl_lengths,
            cl_codes,
            bits,
        }
    }

    fn write(&self, out: &mut BitWriter) {
        // Lossless: hlit <= 286, hdist <= 30, hclen <= 19.
        out.bits((self.hlit - 257) as u32, 5);
        out.bits((self.hdist - 1) as u32, 5);
        out.bits((self.hclen - 4) as u32, 4);
        for &symbol in &CL_ORDER[..self.hclen] {
            out.bits(u32::from(self.cl_lengths[symbol]), 3);
        }
        for &(symbol, extra) in self.rle.items() {
            let s = usize::from(symbol);
            out.bits(u32::from(self.cl_codes[s]), u32::from(self.cl_lengths[s]));
            if s >= 16 {
                out.bits(u32::from(extra), CL_EXTRA[s - 16]);
            }
        }
    }
}

/// Code-length symbols with their extra-bits values (at most one per code length).
struct Rle {
    items: [(u8, u8); LITLEN + DIST],
    len: usize,
}

impl Rle {
    fn push(&mut self, item: (u8, u8)) {
        self.items[self.len] = item;
        self.len += 1;
    }

    fn items(&self) -> &[(u8, u8)] {
        &self.items[..self.len]
    }
}

/// Run-length coding of code lengths with symbols 16 (repeat the previous 3–6 times), 17 (3–10
/// zeros) and 18 (11–138 zeros).
fn run_lengths(seq: &[u8]) -> Rle {
    let mut out = Rle {
        items: [(0, 0); LITLEN + DIST],
        len: 0,
    };
    let mut i = 0;
    while i < seq.len() {
        let len = seq[i];
        let run = seq[i..].iter().take_while(|&&l| l == len).count();
        let mut left = run;
        if len == 0 {
            while left >= 11 {
                let take = left.min(138);
                // Lossless: take - 11 <= 127.
                out.push((18, (take - 11) as u8));
                left -= take;
            }
            if left >= 3 {
                out.push((17, (left - 3) as u8));
                left = 0;
            }
        } else {
            out.push((len, 0));
            left -= 1;
            while left >= 3 {
                let take = left.min(6);
                out.push((16, (take - 3) as u8));
                left -= take;
            }
        }
        for _ in 0..left {
            out.push((len, 0));
        }
        i += run;
    }
    out
}

/// Writes `tokens` (which encode `raw`) as one block, in whichever form is smallest.
pub fn write_block(out: &mut BitWriter, tokens: &[u32], raw: &[u8], last: bool) {
    let mut lit_freq = [0u32; LITLEN];
    let mut dist_freq = [0u32; DIST];
    let mut extra_bits = 0u64;
    for &token in tokens {
        let (len, distance) = split(token);
        if distance == 0 {
            lit_freq[len as usize] += 1;
        } else {
            let code = usize::from(LENGTH_CODE[len as usize]);
            lit_freq[257 + code] += 1;
            let dcode = distance_code(distance);
            dist_freq[dcode] += 1;
            extra_bits += u64::from(LENGTHS[code].1) + u64::from(DISTANCES[dcode].1);
        }
    }
    lit_freq[256] = 1;

    let mut lit_lengths = [0u8; LITLEN];
    let mut dist_lengths = [0u8; DIST];
    code_lengths(&lit_freq, 15, &mut lit_lengths);
    code_lengths(&dist_freq, 15, &mut dist_lengths);
    let header = Header::new(&lit_lengths, &dist_lengths);
    let cost = |lit: &[u8], dist: &[u8]| -> u64 {
        let l: u64 = lit_freq
            .iter()
            .zip(lit)
            .map(|(&f, &l)| u64::from(f) * u64::from(l))
            .sum();
        let d: u64 = dist_freq
            .iter()
            .zip(dist)
            .map(|(&f, &l)| u64::from(f) * u64::from(l))
            .sum();
        l + d + extra_bits
    };
    let dynamic_bits = 3 + header.bits + cost(&lit_lengths, &dist_lengths);
    let fixed_bits = 3 + cost(&FIXED_LITLEN_LENGTHS[..LITLEN], &FIXED_DIST_LENGTHS);
    let chunks = raw.len().div_ceil(STORED_MAX).max(1) as u64;
    // Each stored chunk: 3 header bits padded to a byte, then LEN and NLEN.
    let pad = (8 - (out.pending_bits() + 3) % 8) % 8;
    let stored_bits = 3 + u64::from(pad) + 32 + (chunks - 1) * 40 + 8 * raw.len() as u64;

    if stored_bits < dynamic_bits.min(fixed_bits) {
        write_stored(out, raw, last);
    } else if fixed_bits <= dynamic_bits {
        out.bits(u32::from(last) | 0b01 << 1, 3);
        let f = fixed();
        write_tokens(
            out,
            tokens,
            &f.litlen,
            &FIXED_LITLEN_LENGTHS,
            &f.dist,
            &FIXED_DIST_LENGTHS,
        );
    } else {
        out.bits(u32::from(last) | 0b10 << 1, 3);
        header.write(out);
        let mut lit_codes = [0u16; LITLEN];
        let mut dist_codes = [0u16; DIST];
        canonical_codes(&lit_lengths, &mut lit_codes);
        canonical_codes(&dist_lengths, &mut dist_codes);
        write_tokens(
            out,
            tokens,
            &lit_codes,
            &lit_lengths,
            &dist_codes,
            &dist_lengths,
        );
    }
}

fn write_stored(out: &mut BitWriter, raw: &[u8], last: bool) {
    let mut chunks = raw.chunks(STORED_MAX).peekable();
    if chunks.peek().is_none() {
        out.bits(u32::from(last), 3);
        out.align();
        out.bytes.extend_from_slice(&[0, 0, 0xFF, 0xFF]);
        return;
    }
    while let Some(chunk) = chunks.next() {
        out.bits(u32::from(last && chunks.peek().is_none()), 3);
        out.align();
        // Lossless: a chunk is at most 65535 bytes.
        let len = chunk.len() as u16;
        out.bytes.extend_from_slice(&len.to_le_bytes());
        out.bytes.extend_from_slice(&(!len).to_le_bytes());
        out.bytes.extend_from_slice(chunk);
    }
}

fn write_tokens(
    out: &mut BitWriter,
    tokens: &[u32],
    lit_codes: &[u16],
    lit_lengths: &[u8],
    dist_codes: &[u16],
    dist_lengths: &[u8],
) {
    for &token in tokens {
        let (len, distance) = split(token);
        if distance == 0 {
            let s = len as usize;
            out.bits(u32::from(lit_codes[s]), u32::from(lit_lengths[s]));
        } else {
            let code = usize::from(LENGTH_CODE[len as usize]);
            let (base, extra) = LENGTHS[code];
            let s = 257 + code;
            let sym_len = u32::from(lit_lengths[s]);
            out.bits(
                u32::from(lit_codes[s]) | (len - u32::from(base)) << sym_len,
                sym_len + u32::from(extra),
            );
            let dcode = distance_code(distance);
            let (base, extra) = DISTANCES[dcode];
            let sym_len = u32::from(dist_lengths[dcode]);
            out.bits(
                u32::from(dist_codes[dcode]) | (distance - u32::from(base)) << sym_len,
                sym_len + u32::from(extra),
            );
        }
    }
    out.bits(u32::from(lit_codes[256]), u32::from(lit_lengths[256]));
}
