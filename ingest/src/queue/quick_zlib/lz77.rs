//! The match finder and parser: hash chains over the last 32 KB, lazy matching with one step
//! of lookahead (as zlib's `deflate_slow`), tokens handed out in blocks.
//!
//! The state is reused between entries: the chain links (`prev`) are never cleared — a link
//! is only followed from a position inserted for the current input, and links are written
//! before they are read — and only as much of the head table as the input's size calls for is
//! zeroed (1 KB to 128 KB: 4 KB for a typical entry).

/// Shortest back-reference.
pub const MIN_MATCH: usize = 3;
/// Longest back-reference.
pub const MAX_MATCH: usize = 258;
/// Window: matches reach at most `WINDOW - 1` bytes back (the ring of chain links has one slot
/// per window position, and the current position's own slot is written before the search).
const WINDOW: usize = 32_768;
/// Length-3 matches farther than this cost more than their three literals (zlib's `TOO_FAR`).
const TOO_FAR: usize = 4096;
/// Tokens per deflate block (the last may be shorter).
pub const BLOCK_TOKENS: usize = 16_384;
/// Largest head table: 2^15 slots.
const MAX_HASH_BITS: u32 = 15;

/// How hard the parser looks.
#[derive(Debug, Clone, Copy)]
pub struct Effort {
    /// Chain links followed per search.
    pub max_chain: u32,
    /// A match this long ends the search.
    pub nice: usize,
    /// A match this long is taken without looking one byte ahead.
    pub lazy: usize,
    /// The positions inside a match up to this long are entered in the hash chains.
    pub insert_within: usize,
}

/// A token: a literal byte (`< 256`) or `distance << 16 | length`.
#[inline]
pub fn literal(byte: u8) -> u32 {
    u32::from(byte)
}

/// Splits a match token into (length, distance); distance 0 for a literal.
#[inline]
pub fn split(token: u32) -> (u32, u32) {
    (token & 0xFFFF, token >> 16)
}

/// The reusable state of the parser.
pub struct Matcher {
    /// Per hash: position + 1 of its latest occurrence (0: none).
    head: Vec<u32>,
    /// Per position modulo the window: distance back to the previous occurrence of its hash
    /// (0: none).
    prev: Vec<u16>,
    bits: u32,
}

impl Matcher {
    pub fn new() -> Self {
        Self {
            head: vec![0; 1 << MAX_HASH_BITS],
            prev: vec![0; WINDOW],
            bits: MAX_HASH_BITS,
        }
    }

    fn reset(&mut self, len: usize) {
        // About one slot per input byte, at least 256 and at most 2^15.
        let want = usize::BITS - len.max(1).leading_zeros();
        self.bits = want.clamp(8, MAX_HASH_BITS);
        self.head[..1 << self.bits].fill(0);
    }

    #[inline]
    fn hash(&self, input: &[u8], at: usize) -> usize {
        let v =
            u32::from(input[at]) | u32::from(input[at + 1]) << 8 | u32::from(input[at + 2]) << 16;
        (v.wrapping_mul(0x9E37_79B1) >> (32 - self.bits)) as usize
    }

    /// Enters position `at` (which has [`MIN_MATCH`] bytes after it) and returns the position
    /// + 1 of the previous occurrence of its hash (0: none).
    #[inline]
    fn insert(&mut self, input: &[u8], at: usize) -> usize {
        let slot = self.hash(input, at);
        let candidate = self.head[slot] as usize;
        // Lossless: positions of inputs over 4 GB are not entered (see `compress`).
        self.head[slot] = (at + 1) as u32;
        let back = at + 1 - candidate;
        self.prev[at % WINDOW] = if candidate != 0 && back < WINDOW {
            // Lossless: back < WINDOW <= u16::MAX.
            back as u16
        } else {
            0
        };
        candidate
    }

    /// The longest match at `at` longer than `beat`, nearest first among equals, following
    /// the chain from `candidate` (position + 1): (length, distance), length 0 if none.
    #[inline]
    fn longest(
        &self,
        input: &[u8],
        at: usize,
        mut candidate: usize,
        beat: usize,
        effort: &Effort,
    ) -> (usize, usize) {
        let limit = (input.len() - at).min(MAX_MATCH);
        let (mut best, mut best_distance) = (beat, 0);
        if best >= limit {
            return (0, 0);
        }
        let mut chain = effort.max_chain;
        while candidate != 0 && chain > 0 {
            let from = candidate - 1;
            let distance = at - from;
            if distance >= WINDOW {
                break;
            }
            if input[from + best] == input[at + best] {
                let len = match_length(input, from, at, limit);
                if len > best && (len > MIN_MATCH || distance <= TOO_FAR) {
                    best = len;
                    best_distance = distance;
                    if len >= effort.nice.min(limit) {
                        break;
                    }
                }
            }
            let back = usize::from(self.prev[from % WINDOW]);
            if back == 0 || back >= WINDOW - distance {
                break;
            }
            candidate -= back;
            chain -= 1;
        }
        if best_distance == 0 || best < MIN_MATCH {
            (0, 0)
        } else {
            (best, best_distance)
        }
    }

    /// Parses `input` into tokens; `flush(tokens, start, end, last)` receives each block's
    /// tokens and the input range they cover (the last call, `last` true, covers the rest).
    pub fn parse(
        &mut self,
        input: &[u8],
        effort: &Effort,
        tokens: &mut Vec<u32>,
        mut flush: impl FnMut(&[u32], usize, usize, bool),
    ) {
        self.reset(input.len());
        tokens.clear();
        let n = input.len();
        let hashable = |at: usize| at + MIN_MATCH <= n;
        let mut block_start = 0;
        let mut at = 0;
        let mut found = (0, 0);
        if hashable(0) {
            let candidate = self.insert(input, 0);
            found = self.longest(input, 0, candidate, MIN_MATCH - 1, effort);
        }
        while at < n {
            let (len, distance) = found;
            if len < MIN_MATCH {
                tokens.push(literal(input[at]));
                at += 1;
                found = (0, 0);
                if hashable(at) {
                    let candidate = self.insert(input, at);
                    found = self.longest(input, at, candidate, MIN_MATCH - 1, effort);
                }
            } else {
                let mut inserted = at + 1;
                if len < effort.lazy && hashable(at + 1) {
                    let candidate = self.insert(input, at + 1);
                    inserted = at + 2;
                    let next = self.longest(input, at + 1, candidate, len, effort);
                    if next.0 > len {
                        tokens.push(literal(input[at]));
                        at += 1;
                        found = next;
                        if tokens.len() >= BLOCK_TOKENS {
                            flush(tokens, block_start, at, false);
                            tokens.clear();
                            block_start = at;
                        }
                        continue;
                    }
                }
                // Lossless: distance < 2^15 and len <= 258.
                tokens.push((distance as u32) << 16 | len as u32);
                let end = at + len;
                let insert_end = if len <= effort.insert_within {
                    end
                } else {
                    inserted
                };
                for p in inserted..insert_end.min(n.saturating_sub(MIN_MATCH - 1)) {
                    self.insert(input, p);
                }
                at = end;
                found = (0, 0);
                if hashable(at) {
                    let candidate = self.insert(input, at);
                    found = self.longest(input, at, candidate, MIN_MATCH - 1, effort);
                }
            }
            if tokens.len() >= BLOCK_TOKENS {
                flush(tokens, block_start, at, false);
                tokens.clear();
                block_start = at;
            }
        }
        flush(tokens, block_start, n, true);
        tokens.clear();
    }
}

/// Length of the common run of `input[from..]` and `input[at..]` (`from < at`), at most `limit`
/// (`at + limit <= input.len()`).
#[inline]
fn match_length(input: &[u8], from: usize, at: usize, limit: usize) -> usize {
    let mut len = 0;
    while len + 8 <= limit {
        let a = u64::from_le_bytes(word(&input[from + len..]));
        let b = u64::from_le_bytes(word(&input[at + len..]));
        let diff = a ^ b;
        if diff != 0 {
            return len + (diff.trailing_zeros() / 8) as usize;
        }
        len += 8;
    }
    while len < limit && input[from + len] == input[at + len] {
        len += 1;
    }
    len
}

#[inline]
fn word(bytes: &[u8]) -> [u8; 8] {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[..8]);
    w
}
