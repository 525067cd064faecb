//! Length-limited canonical Huffman codes for deflate's dynamic blocks (RFC 1951 §3.2.2).
//!
//! Lengths come from an ordinary Huffman tree (Moffat and Katajainen's in-place construction
//! over the symbols sorted by frequency); when the tree is deeper than the limit (15 bits for literal/length and
//! distance codes, 7 for the code-length code) the over-long codes are shortened to the limit
//! and the Kraft sum is brought back to exactly one by lengthening the deepest codes that are
//! shorter than the limit (each step keeps the number of codes and lowers the sum by exactly
//! one unit of 2^-limit). The lengths are then handed out by frequency, shortest to the most
//! frequent. Every used symbol gets a code; when fewer than two symbols are used, the code is
//! padded to two one-bit codes (as zlib does), so every code written is complete.

/// Most symbols in an alphabet (literal/length: 286 used, 288 defined).
pub const MAX_SYMBOLS: usize = 288;
/// Longest code length deflate can describe.
const MAX_LIMIT: usize = 15;

/// Fills `lengths[..freqs.len()]` with code lengths for `freqs` (0 for unused symbols), none
/// longer than `limit` (1..=15). `freqs.len()` must be 2..=[`MAX_SYMBOLS`] and
/// `freqs.len() <= 1 << limit`; every frequency at most `u32::MAX / MAX_SYMBOLS`.
pub fn code_lengths(freqs: &[u32], limit: u8, lengths: &mut [u8]) {
    let n_all = freqs.len();
    let limit = usize::from(limit);
    debug_assert!((2..=MAX_SYMBOLS).contains(&n_all) && (1..=MAX_LIMIT).contains(&limit));
    let lengths = &mut lengths[..n_all];
    lengths.fill(0);
    // Used symbols, ascending by frequency (ties by symbol, so the output is deterministic).
    let mut sorted = [0u64; MAX_SYMBOLS];
    let mut n = 0;
    for (symbol, &freq) in freqs.iter().enumerate() {
        if freq > 0 {
            sorted[n] = (u64::from(freq) << 16) | symbol as u64;
            n += 1;
        }
    }
    let sorted = &mut sorted[..n];
    match n {
        0 => {
            lengths[0] = 1;
            lengths[1] = 1;
            return;
        }
        1 => {
            let only = (sorted[0] & 0xFFFF) as usize;
            lengths[only] = 1;
            lengths[usize::from(only == 0)] = 1;
            return;
        }
        _ => {}
    }
    sorted.sort_unstable();
    // Moffat and Katajainen's in-place construction ("In-place calculation of minimum-redundancy
    // codes", 1995): `a` starts as the weights in ascending order and ends as the depth of each
    // leaf (non-increasing: the least frequent symbol deepest).
    let mut a = [0u32; MAX_SYMBOLS];
    for (slot, &key) in a.iter_mut().zip(sorted.iter()) {
        *slot = (key >> 16) as u32;
    }
    let a = &mut a[..n];
    // Phase 1: internal node weights, each replaced by its parent's index once merged.
    a[0] += a[1];
    let (mut root, mut leaf) = (0, 2);
    for next in 1..n - 1 {
        if leaf >= n || a[root] < a[leaf] {
            a[next] = a[root];
            a[root] = next as u32;
            root += 1;
        } else {
            a[next] = a[leaf];
            leaf += 1;
        }
        if leaf >= n || (root < next && a[root] < a[leaf]) {
            a[next] += a[root];
            a[root] = next as u32;
            root += 1;
        } else {
            a[next] += a[leaf];
            leaf += 1;
        }
    }
    // Phase 2: internal node depths.
    a[n - 2] = 0;
    for next in (0..n - 2).rev() {
        a[next] = a[a[next] as usize] + 1;
    }
    // Phase 3: leaf depths, level by level.
    let mut count = [0u32; MAX_SYMBOLS + 1];
    let (mut available, mut depth) = (1u32, 0u32);
    let mut root = n as isize - 2;
    while available > 0 {
        let mut used = 0;
        while root >= 0 && a[root as usize] == depth {
            used += 1;
            root -= 1;
        }
        count[depth as usize] += available - used;
        available = 2 * used;
        depth += 1;
    }
    limit_lengths(&mut count, limit);
    // Longest codes to the least frequent symbols.
    let mut next = 0;
    for len in (1..=limit).rev() {
        for _ in 0..count[len] {
            lengths[(sorted[next] & 0xFFFF) as usize] = len as u8;
            next += 1;
        }
    }
}

/// Turns the code length counts of a complete prefix code (`count[len]` codes of each length,
/// Kraft sum exactly one) into the counts of a complete code with no code longer than `limit`.
fn limit_lengths(count: &mut [u32; MAX_SYMBOLS + 1], limit: usize) {
    let overlong: u32 = count[limit + 1..].iter().sum();
    if overlong == 0 {
        return;
    }
    count[limit] += overlong;
    count[limit + 1..].fill(0);
    // Kraft sum in units of 2^-limit. Shortening codes only raised it above one.
    let mut total: u64 = (1..=limit)
        .map(|len| u64::from(count[len]) << (limit - len))
        .sum();
    while total > 1 << limit {
        // Remove one code of the maximum length (−1 unit) and split a leaf of the deepest
        // shorter length into two one level down (±0 units): −1 unit, same number of codes.
        // A shorter code exists while the sum exceeds one, because the number of codes is at
        // most 2^limit.
        count[limit] -= 1;
        let Some(len) = (1..limit).rev().find(|&len| count[len] > 0) else {
            break;
        };
        count[len] -= 1;
        count[len + 1] += 2;
        total -= 1;
    }
}

/// Canonical codes (RFC 1951 §3.2.2) for `lengths`, bit-reversed for the LSB-first writer.
pub fn canonical_codes(lengths: &[u8], codes: &mut [u16]) {
    let mut count = [0u16; MAX_LIMIT + 1];
    for &len in lengths {
        count[usize::from(len)] += 1;
    }
    count[0] = 0;
    let mut next = [0u16; MAX_LIMIT + 1];
    let mut code = 0u16;
    for len in 1..=MAX_LIMIT {
        code = (code + count[len - 1]) << 1;
        next[len] = code;
    }
    for (symbol, &len) in lengths.iter().enumerate() {
        if len > 0 {
            let len = usize::from(len);
            codes[symbol] = next[len].reverse_bits() >> (16 - len);
            next[len] += 1;
        } else {
            codes[symbol] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Kraft sum in units of 2^-15.
    fn kraft(lengths: &[u8]) -> u64 {
        lengths
            .iter()
            .filter(|&&l| l > 0)
            .map(|&l| 1u64 << (15 - l))
            .sum()
    }

    fn cost(freqs: &[u32], lengths: &[u8]) -> u64 {
        freqs
            .iter()
            .zip(lengths)
            .map(|(&f, &l)| u64::from(f) * u64::from(l))
            .sum()
    }

    /// Optimal unlimited Huffman cost by repeated merging of the two smallest weights.
    fn huffman_cost(freqs: &[u32]) -> u64 {
        let mut w: Vec<u64> = freqs
            .iter()
            .filter(|&&f| f > 0)
            .map(|&f| u64::from(f))
            .collect();
        let mut total = 0;
        while w.len() > 1 {
            w.sort_unstable_by(|a, b| b.cmp(a));
            let merged = w.pop().unwrap_or(0) + w.pop().unwrap_or(0);
            total += merged;
            w.push(merged);
        }
        total
    }

    fn check(freqs: &[u32], limit: u8) -> Vec<u8> {
        let mut lengths = vec![0u8; freqs.len()];
        code_lengths(freqs, limit, &mut lengths);
        assert_eq!(
            kraft(&lengths),
            1 << 15,
            "complete code for {freqs:?}: {lengths:?}"
        );
        assert!(
            lengths.iter().all(|&l| l <= limit),
            "{lengths:?} within {limit}"
        );
        for (&f, &l) in freqs.iter().zip(&lengths) {
            assert!(f == 0 || l > 0, "every used symbol has a code");
        }
        let used = freqs.iter().filter(|&&f| f > 0).count();
        if used >= 2 {
            assert!(
                freqs.iter().zip(&lengths).all(|(&f, &l)| f > 0 || l == 0),
                "unused symbols get no code"
            );
            if lengths.iter().all(|&l| l < limit) {
                // The limit did not bind: the code is an optimal Huffman code.
                assert_eq!(cost(freqs, &lengths), huffman_cost(freqs));
            }
        }
        // A more frequent symbol never has a longer code.
        for (a, (&fa, &la)) in freqs.iter().zip(&lengths).enumerate() {
            for (&fb, &lb) in freqs[a..].iter().zip(&lengths[a..]) {
                if fa > 0 && fb > 0 {
                    assert!(fa <= fb || la <= lb);
                    assert!(fb <= fa || lb <= la);
                }
            }
        }
        lengths
    }

    fn fibonacci(n: usize) -> Vec<u32> {
        let mut f = vec![1u32, 1];
        while f.len() < n {
            f.push(f[f.len() - 1] + f[f.len() - 2]);
        }
        f
    }

    #[test]
    fn fibonacci_frequencies_respect_the_limits() {
        // Unlimited, these make a tree as deep as there are symbols.
        let lengths = check(&fibonacci(30), 15);
        assert_eq!(lengths.iter().max(), Some(&15));
        let lengths = check(&fibonacci(19), 7);
        assert_eq!(lengths.iter().max(), Some(&7));
        let mut freqs = vec![0u32; 286];
        for (slot, f) in freqs.iter_mut().step_by(9).zip(fibonacci(32)) {
            *slot = f;
        }
        check(&freqs, 15);
        // Deep and wide at once: most symbols rare, a few dominant.
        let mut freqs = vec![1u32; 286];
        for (slot, f) in freqs.iter_mut().zip(fibonacci(25).into_iter().rev()) {
            *slot = f;
        }
        check(&freqs, 15);
        check(&[1; 19], 7);
        check(&[1; 128], 7);
    }

    #[test]
    fn fewer_than_two_symbols_get_two_one_bit_codes() {
        assert_eq!(check(&[0, 0, 0], 15), vec![1, 1, 0]);
        assert_eq!(check(&[0, 0, 5], 15), vec![1, 0, 1]);
        assert_eq!(check(&[7, 0, 0], 7), vec![1, 1, 0]);
        assert_eq!(check(&[3, 9], 15), vec![1, 1]);
    }

    #[test]
    fn canonical_codes_follow_rfc_1951() {
        // RFC 1951 §3.2.2's example: lengths (3, 3, 3, 3, 3, 2, 4, 4) for A..H.
        let lengths = [3, 3, 3, 3, 3, 2, 4, 4];
        let mut codes = [0u16; 8];
        canonical_codes(&lengths, &mut codes);
        let expected = [0b010, 0b011, 0b100, 0b101, 0b110, 0b00, 0b1110, 0b1111u16];
        for ((&code, &len), want) in codes.iter().zip(&lengths).zip(expected) {
            assert_eq!(code.reverse_bits() >> (16 - len), want);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_frequencies_make_complete_limited_codes(
            freqs in proptest::collection::vec(
                prop_oneof![Just(0u32), 1u32..4, 1u32..100_000, Just(1u32 << 20)], 2..=288),
            limit in prop_oneof![Just(7u8), Just(15u8), 9u8..=15],
        ) {
            // The code-length alphabet (the one limited to 7 bits) has 19 symbols.
            let n = if limit == 7 { freqs.len().min(19) } else { freqs.len() };
            check(&freqs[..n], limit);
        }

        #[test]
        fn skewed_frequencies_make_complete_limited_codes(
            n in 2usize..=30, limit in prop_oneof![Just(7u8), Just(15u8)], zeros in 0usize..8,
        ) {
            let mut freqs = fibonacci(n);
            freqs.extend(std::iter::repeat_n(0, zeros));
            freqs.rotate_left(zeros / 2);
            check(&freqs, limit);
        }
    }
}
