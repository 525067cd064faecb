//! Small zlib encoders for queue entries. [`compress`] (`queue.compression = "default"`): LZ77
//! with hash chains and lazy matching ([`lz77`]), then per block the smallest of a
//! dynamic-Huffman, fixed-Huffman or stored deflate block ([`block`], codes from [`huffman`]) —
//! output as small as zlib level 9's. [`compress_fast`] (`"fast"`): greedy, one fixed-Huffman
//! block ([`fixed`]) — a third of the CPU, entries about a quarter larger.
//!
//! Why not zlib itself: an entry is ~1 KB of JSON, and zlib (zlib-rs, like zlib-ng) clears
//! a 128 KB hash table and sets up a 300 KB state for every stream; that costs more than
//! compressing the entry. This encoder keeps its state per thread and clears only a head
//! table sized to the input (4 KB for a typical entry). What it writes is ordinary zlib data —
//! PHP's `gzuncompress`, flate2 and any inflater read it — only the compressed bytes differ
//! from zlib's. Its correctness is pinned by round-trip property tests against flate2's
//! decoder.

mod bits;
mod block;
mod fixed;
mod huffman;
mod lz77;

use std::cell::RefCell;

use bits::BitWriter;
use lz77::{Effort, Matcher};

/// The parser's effort for entries (chains are short in a 1 KB input anyway).
const EFFORT: Effort = Effort {
    max_chain: 64,
    nice: 258,
    lazy: 258,
    insert_within: 258,
};

/// Reusable per-thread state: the match finder's tables and the token buffer.
struct Scratch {
    matcher: Matcher,
    tokens: Vec<u32>,
}

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

/// `input` as a zlib stream (header `78 5e`, deflate blocks, Adler-32). Inputs of 4 GB and
/// more are not supported (positions are 32-bit); the caller sends those elsewhere.
pub fn compress(input: &[u8]) -> Vec<u8> {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut kept) => {
            let scratch = kept.get_or_insert_with(|| Scratch {
                matcher: Matcher::new(),
                tokens: Vec::with_capacity(lz77::BLOCK_TOKENS),
            });
            compress_with(input, scratch)
        }
        // A nested call (none today) finds the state in use: use a fresh one.
        Err(_) => compress_with(
            input,
            &mut Scratch {
                matcher: Matcher::new(),
                tokens: Vec::new(),
            },
        ),
    })
}

/// `input` as a zlib stream of one fixed-Huffman block from a greedy one-probe parse ([`fixed`]):
/// the cheapest compression, larger output. Header `78 01`.
pub fn compress_fast(input: &[u8]) -> Vec<u8> {
    let mut out = BitWriter::with_capacity(input.len() / 2 + 16);
    // CMF 0x78 (deflate, 32 KB window), FLG 0x01 (FLEVEL 0, "fastest"; 0x7801 % 31 == 0).
    out.bytes.extend_from_slice(&[0x78, 0x01]);
    fixed::deflate(input, &mut out);
    out.bytes.extend_from_slice(&adler32(input).to_be_bytes());
    out.bytes
}

fn compress_with(input: &[u8], scratch: &mut Scratch) -> Vec<u8> {
    let mut out = BitWriter::with_capacity(input.len() / 2 + 64);
    // CMF 0x78 (deflate, 32 KB window), FLG 0x5e (FLEVEL 1, "fast"; 0x785e % 31 == 0).
    out.bytes.extend_from_slice(&[0x78, 0x5E]);
    let Scratch { matcher, tokens } = scratch;
    matcher.parse(input, &EFFORT, tokens, |tokens, start, end, last| {
        block::write_block(&mut out, tokens, &input[start..end], last);
    });
    out.align();
    out.bytes.extend_from_slice(&adler32(input).to_be_bytes());
    out.bytes
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

#[cfg(test)]
mod tests;
