//! The on-disk record format of the spool, pure (no I/O) so it can be property-tested.
//!
//! A segment file is a sequence of records:
//!
//! ```text
//! magic "MTsp" (4) | len u32 LE (4) | crc32 u32 LE (4) | queue id u16 LE (2) | entry bytes (len)
//! ```
//!
//! `len` counts the entry bytes; the CRC-32 (IEEE) covers the queue id and the entry bytes. The
//! magic is not needed to read an intact segment; it lets the reader find the next record after a
//! corrupt one ([`resync`]), since a damaged `len` cannot be trusted to skip it.

/// Marks the start of every record.
pub const MAGIC: [u8; 4] = *b"MTsp";
/// Bytes before the entry: magic, length, CRC, queue id.
pub const HEADER_LEN: usize = 14;
/// Largest entry a record may hold; longer lengths are treated as corruption.
pub const MAX_ENTRY_LEN: usize = 256 * 1024 * 1024;

/// One spooled entry as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Queue (shard) id.
    pub queue_id: u16,
    /// The encoded QueuedTracking entry.
    pub bytes: Vec<u8>,
}

/// What [`decode`] found at a position.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A valid record, and the bytes it took.
    Record(Record, usize),
    /// Not enough bytes for the record (a half-written tail, or the end of what was read).
    Incomplete,
    /// The bytes there are not a valid record.
    Corrupt,
}

/// Appends the record of `bytes` for `queue_id` to `out`.
pub fn encode_into(out: &mut Vec<u8>, queue_id: u16, bytes: &[u8]) {
    out.reserve(HEADER_LEN + bytes.len());
    out.extend_from_slice(&MAGIC);
    // Callers never pass entries over MAX_ENTRY_LEN (request bodies are far smaller); a longer
    // one would be read back as corrupt, not misread.
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&checksum(queue_id, bytes).to_le_bytes());
    out.extend_from_slice(&queue_id.to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The encoded size of a record holding `len` entry bytes.
pub fn encoded_len(len: usize) -> usize {
    HEADER_LEN + len
}

fn checksum(queue_id: u16, bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&queue_id.to_le_bytes());
    hasher.update(bytes);
    hasher.finalize()
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(word)
}

/// Reads the record at the start of `buf`.
pub fn decode(buf: &[u8]) -> Decoded {
    if buf.len() < HEADER_LEN {
        return if MAGIC.starts_with(&buf[..buf.len().min(4)]) {
            Decoded::Incomplete
        } else {
            Decoded::Corrupt
        };
    }
    if buf[..4] != MAGIC {
        return Decoded::Corrupt;
    }
    let len = u32_at(buf, 4) as usize;
    if len > MAX_ENTRY_LEN {
        return Decoded::Corrupt;
    }
    let crc = u32_at(buf, 8);
    let queue_id = u16::from_le_bytes([buf[12], buf[13]]);
    let Some(bytes) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Decoded::Incomplete;
    };
    if checksum(queue_id, bytes) != crc {
        return Decoded::Corrupt;
    }
    Decoded::Record(
        Record {
            queue_id,
            bytes: bytes.to_vec(),
        },
        HEADER_LEN + len,
    )
}

/// The offset of the next valid record in `buf` after a corrupt one at offset 0, or `None` when
/// no complete valid record follows (the rest may be a half-written tail).
pub fn resync(buf: &[u8]) -> Option<usize> {
    let mut from = 1;
    while from < buf.len() {
        let at = from + find_magic(&buf[from..])?;
        if let Decoded::Record(..) = decode(&buf[at..]) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// One step of reading a buffer of records.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// A valid record and the bytes it took.
    Record(Record, usize),
    /// This many bytes are not a valid record, and a valid record follows them.
    Corrupt(usize),
    /// No valid record in the rest of the buffer (empty, a half-written tail, or garbage).
    Tail,
}

/// Reads the next record of `buf`, skipping a corrupt stretch when a valid record follows it.
pub fn step(buf: &[u8]) -> Step {
    if buf.is_empty() {
        return Step::Tail;
    }
    match decode(buf) {
        Decoded::Record(record, n) => Step::Record(record, n),
        // A damaged length can make a record look incomplete: it is corrupt if a valid record
        // follows, a tail otherwise.
        Decoded::Incomplete | Decoded::Corrupt => match resync(buf) {
            Some(at) => Step::Corrupt(at),
            None => Step::Tail,
        },
    }
}

fn find_magic(buf: &[u8]) -> Option<usize> {
    buf.windows(MAGIC.len()).position(|w| w == MAGIC)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn encode_all(records: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (q, bytes) in records {
            encode_into(&mut out, *q, bytes);
        }
        out
    }

    /// Reads every record, skipping corrupt stretches; returns records, corrupt count and
    /// whether a non-empty tail was left.
    fn decode_all(mut buf: &[u8]) -> (Vec<Record>, usize, bool) {
        let mut records = Vec::new();
        let mut corrupt = 0;
        loop {
            match step(buf) {
                Step::Record(r, n) => {
                    records.push(r);
                    buf = &buf[n..];
                }
                Step::Corrupt(n) => {
                    corrupt += 1;
                    buf = &buf[n..];
                }
                Step::Tail => return (records, corrupt, !buf.is_empty()),
            }
        }
    }

    fn records() -> impl Strategy<Value = Vec<(u16, Vec<u8>)>> {
        proptest::collection::vec(
            (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..300)),
            1..20,
        )
    }

    proptest! {
        #[test]
        fn round_trip(records in records()) {
            let buf = encode_all(&records);
            let (back, corrupt, tail) = decode_all(&buf);
            prop_assert_eq!(corrupt, 0);
            prop_assert!(!tail);
            let back: Vec<(u16, Vec<u8>)> = back.into_iter().map(|r| (r.queue_id, r.bytes)).collect();
            prop_assert_eq!(back, records);
        }

        #[test]
        fn a_bit_flip_is_detected_and_only_that_record_is_lost(
            records in records(),
            victim in any::<prop::sample::Index>(),
            bit in any::<prop::sample::Index>(),
        ) {
            let victim = victim.index(records.len());
            let start: usize = records[..victim].iter().map(|(_, b)| encoded_len(b.len())).sum();
            let len = encoded_len(records[victim].1.len());
            let mut buf = encode_all(&records);
            let bit = bit.index(len * 8);
            buf[start + bit / 8] ^= 1 << (bit % 8);
            let (back, corrupt, tail) = decode_all(&buf);
            let back: Vec<(u16, Vec<u8>)> = back.into_iter().map(|r| (r.queue_id, r.bytes)).collect();
            // Records before the flipped one all come back, the flipped one never does (CRC-32
            // detects every single-bit error), and the ones after it are found again.
            prop_assert_eq!(&back[..victim], &records[..victim]);
            prop_assert_eq!(&back[victim..], &records[victim + 1..]);
            if victim + 1 < records.len() {
                prop_assert_eq!(corrupt, 1);
            } else {
                // The last record damaged: nothing valid follows, so it reads as a tail.
                prop_assert!(tail);
            }
        }

        #[test]
        fn a_truncated_tail_is_incomplete(records in records(), cut in any::<prop::sample::Index>()) {
            let buf = encode_all(&records);
            let last = encoded_len(records.last().map_or(0, |(_, b)| b.len()));
            // Keep between 1 and all but one byte of the last record.
            let cut = buf.len() - last + 1 + cut.index(last - 1);
            let (back, corrupt, tail) = decode_all(&buf[..cut]);
            prop_assert_eq!(corrupt, 0);
            prop_assert!(tail);
            prop_assert_eq!(back.len(), records.len() - 1);
        }
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        assert_eq!(decode(b"xx"), Decoded::Corrupt);
        assert_eq!(decode(b"MT"), Decoded::Incomplete);
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[0; 6]);
        assert_eq!(decode(&huge), Decoded::Corrupt);
        assert_eq!(resync(b"no magic here"), None);
    }
}
