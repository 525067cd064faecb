//! Round trips through flate2's decoder (an independent inflater) for every kind of input, and
//! the choice of block type.

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

fn round_trip(input: &[u8]) -> Vec<u8> {
    let fast = compress_fast(input);
    assert_eq!(inflate(&fast), input, "fast");
    let compressed = compress(input);
    assert_eq!(
        (u16::from(compressed[0]) << 8 | u16::from(compressed[1])) % 31,
        0,
        "zlib header check bits"
    );
    assert_eq!(inflate(&compressed), input);
    compressed
}

/// BTYPE of the first block.
fn first_block_type(compressed: &[u8]) -> u8 {
    (compressed[2] >> 1) & 0b11
}

/// A pseudo-random byte stream (xorshift), reproducible.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 32) as u8
        })
        .collect()
}

fn json_like(n: usize) -> Vec<u8> {
    let mut s = String::from("{\"requests\":[");
    for i in 0..n {
        s.push_str(&format!(
            "{{\"idsite\":\"{}\",\"rec\":\"1\",\"url\":\"https:\\/\\/example.com\\/page\\/{}\",\
             \"_id\":\"{:016x}\",\"action_name\":\"Page {}\"}},",
            i % 3,
            i * 7 % 101,
            (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            i % 13
        ));
    }
    s.push_str("],\"env\":{\"server\":{\"REMOTE_ADDR\":\"203.0.113.7\"}}}");
    s.into_bytes()
}

proptest! {
    #[test]
    fn round_trips_arbitrary_bytes(input in proptest::collection::vec(any::<u8>(), 0..5000)) {
        round_trip(&input);
    }

    #[test]
    fn round_trips_repetitive_text(
        words in proptest::collection::vec("[a-d]{1,6}|\"idsite\":\"1\"|http:\\\\/\\\\/|\\{\\}", 0..800),
        repeat in 1usize..4,
    ) {
        round_trip(&words.concat().repeat(repeat).into_bytes());
    }

    #[test]
    fn round_trips_few_distinct_bytes(
        input in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(0u8)], 0..3000),
    ) {
        round_trip(&input);
    }

    #[test]
    fn round_trips_runs(runs in proptest::collection::vec((any::<u8>(), 1usize..600), 0..40)) {
        let input: Vec<u8> = runs.iter().flat_map(|&(b, n)| std::iter::repeat_n(b, n)).collect();
        round_trip(&input);
    }
}

#[test]
fn tiny_and_uniform_inputs() {
    for input in [
        &b""[..],
        b"a",
        b"ab",
        b"abc",
        b"abcd",
        b"aaaa",
        b"\0",
        b"\xff\xff\xff",
    ] {
        round_trip(input);
    }
    for len in [1, 2, 3, 4, 5, 257, 258, 259, 260, 1000, 70_000] {
        round_trip(&vec![b'x'; len]);
        round_trip(&vec![0u8; len]);
    }
    // A run compresses to a handful of bytes.
    assert!(round_trip(&vec![b'x'; 70_000]).len() < 300);
}

#[test]
fn large_inputs_span_blocks_and_the_window() {
    // > 64 KB of text (several blocks), then far repeats and noise (stored blocks).
    let text = json_like(2000);
    assert!(text.len() > 200_000);
    let compressed = round_trip(&text);
    assert!(compressed.len() < text.len() / 4, "{}", compressed.len());
    let mut mixed = vec![b'a'; 100_000];
    let random = noise(70_000, 7);
    mixed.extend_from_slice(&random);
    mixed.extend_from_slice(&random[..40_000]);
    mixed.extend_from_slice(&text[..30_000]);
    mixed.extend_from_slice(&noise(140_000, 9));
    round_trip(&mixed);
    round_trip(&noise(200_000, 3));
}

#[test]
fn each_block_type_is_chosen_where_it_is_smallest() {
    // Random bytes: stored (no code makes them smaller).
    let random = noise(1000, 5);
    let compressed = round_trip(&random);
    assert_eq!(first_block_type(&compressed), 0b00);
    assert!(compressed.len() <= random.len() + 11);
    // A few bytes: fixed (a dynamic header would cost more than it saves).
    assert_eq!(first_block_type(&round_trip(b"hello hello")), 0b01);
    // An entry-sized JSON: dynamic.
    let json = json_like(6);
    let compressed = round_trip(&json);
    assert_eq!(first_block_type(&compressed), 0b10);
    assert!(compressed.len() < json.len() * 6 / 10);
}

#[test]
fn the_scratch_leaves_nothing_behind() {
    // The same input after others (some larger, some in other windows) gives the same bytes.
    let json = json_like(5);
    let first = compress(&json);
    compress(&json_like(3000));
    compress(&noise(50_000, 11));
    compress(b"");
    assert_eq!(compress(&json), first);
}

#[test]
fn adler32_matches_the_reference_value() {
    // RFC 1950's example checksum of "Wikipedia".
    assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    assert_eq!(adler32(b""), 1);
    let long = vec![0xFFu8; 100_000];
    let (mut a, mut b) = (1u64, 0u64);
    for &x in &long {
        a = (a + u64::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    assert_eq!(u64::from(adler32(&long)), b << 16 | a);
}
