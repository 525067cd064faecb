//! The spool's files: numbered segment files of [`super::record`]s, a persisted read cursor, and
//! the recovery that runs when a spool folder is opened.
//!
//! Layout of `ingest.spool.dir`:
//! - `segment-<n>.spool` (n = 20 digits, increasing): append-only records; only the newest is
//!   written to, older ones are sealed and deleted once the cursor has passed them;
//! - `cursor`: `<segment> <offset>` of the first record not yet replayed, replaced atomically
//!   (write to `cursor.tmp`, rename) after each replayed batch;
//! - `node-id`: a random id, made once, that names this spool's replay marker in Redis.
//!
//! Recovery on open truncates a half-written last record of the newest segment (a crash during an
//! append that was therefore never acknowledged) and counts the entries still to replay. A corrupt
//! record elsewhere is left in place and skipped, with a count, when it is read.
//!
//! Everything here is blocking file I/O: the writer thread and `spawn_blocking` call it.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use super::record::{self, Record, Step};

const SEGMENT_PREFIX: &str = "segment-";
const SEGMENT_SUFFIX: &str = ".spool";

/// A position in the spool: segment number and byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    /// Segment number.
    pub segment: u64,
    /// Byte offset in the segment.
    pub offset: u64,
}

impl Position {
    /// A fixed-width key that sorts like the position (for the replay marker in Redis).
    pub fn key(&self) -> String {
        format!("{:016x}{:016x}", self.segment, self.offset)
    }
}

/// What recovery found when the folder was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Segments present, with their lengths after recovery.
    pub segments: BTreeMap<u64, u64>,
    /// First record not yet replayed.
    pub cursor: Position,
    /// Valid records from the cursor on.
    pub entries: u64,
    /// Bytes cut from the end of the newest segment (a half-written record).
    pub truncated_bytes: u64,
    /// This spool's id.
    pub node_id: String,
}

/// Records read from the cursor on, and where the next read starts.
#[derive(Debug, Default)]
pub struct Batch {
    /// The records, oldest first, each with the position it starts at.
    pub records: Vec<(Position, Record)>,
    /// Corrupt stretches skipped (a record each).
    pub corrupt: u64,
    /// Where the read started.
    pub start: Position,
    /// The position after the last record (or skipped stretch) read.
    pub end: Position,
}

/// The path of segment `n` in `dir`.
pub fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{n:020}{SEGMENT_SUFFIX}"))
}

fn cursor_path(dir: &Path) -> PathBuf {
    dir.join("cursor")
}

/// Syncs the folder itself, so a created, renamed or deleted file survives a host crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Opens (creating if needed) the spool folder and recovers its state.
pub fn recover(dir: &Path) -> io::Result<Recovered> {
    fs::create_dir_all(dir)?;
    let node_id = node_id(dir)?;
    let mut segments = BTreeMap::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SEGMENT_PREFIX))
            .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        segments.insert(n, fs::metadata(segment_path(dir, n))?.len());
    }
    let mut cursor = read_cursor(dir)?;
    let first = segments.keys().next().copied();
    if first.is_some_and(|first| cursor.segment < first) {
        cursor = Position {
            segment: first.unwrap_or_default(),
            offset: 0,
        };
    }
    let mut truncated_bytes = 0;
    if let Some((&last, &len)) = segments.iter().next_back() {
        let valid = valid_length(&fs::read(segment_path(dir, last))?);
        if valid < len {
            let file = OpenOptions::new()
                .write(true)
                .open(segment_path(dir, last))?;
            file.set_len(valid)?;
            file.sync_all()?;
            truncated_bytes = len - valid;
            segments.insert(last, valid);
        }
    }
    let mut entries = 0;
    for (&n, &len) in segments.range(cursor.segment..) {
        let from = if n == cursor.segment {
            cursor.offset
        } else {
            0
        };
        if from < len {
            entries += count_records(&read_from(dir, n, from, len)?);
        }
    }
    Ok(Recovered {
        segments,
        cursor,
        entries,
        truncated_bytes,
        node_id,
    })
}

/// The length of the prefix of `buf` that ends with its last valid record (corrupt stretches
/// before it included).
fn valid_length(mut buf: &[u8]) -> u64 {
    let mut at = 0u64;
    let mut valid = 0u64;
    loop {
        match record::step(buf) {
            Step::Record(_, n) => {
                at += n as u64;
                valid = at;
                buf = &buf[n..];
            }
            Step::Corrupt(n) => {
                at += n as u64;
                buf = &buf[n..];
            }
            Step::Tail => return valid,
        }
    }
}

fn count_records(mut buf: &[u8]) -> u64 {
    let mut count = 0;
    loop {
        match record::step(buf) {
            Step::Record(_, n) => {
                count += 1;
                buf = &buf[n..];
            }
            Step::Corrupt(n) => buf = &buf[n..],
            Step::Tail => return count,
        }
    }
}

fn node_id(dir: &Path) -> io::Result<String> {
    let path = dir.join("node-id");
    match fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        Ok(_) => write_node_id(dir, &path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => write_node_id(dir, &path),
        Err(e) => Err(e),
    }
}

fn write_node_id(dir: &Path, path: &Path) -> io::Result<String> {
    let id = format!("{:016x}", rand::random::<u64>());
    let tmp = dir.join("node-id.tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(id.as_bytes())?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    sync_dir(dir)?;
    Ok(id)
}

fn read_cursor(dir: &Path) -> io::Result<Position> {
    let text = match fs::read_to_string(cursor_path(dir)) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Position::default()),
        Err(e) => return Err(e),
    };
    let mut words = text.split_whitespace().map(str::parse::<u64>);
    match (words.next(), words.next()) {
        (Some(Ok(segment)), Some(Ok(offset))) => Ok(Position { segment, offset }),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not `<segment> <offset>`", cursor_path(dir).display()),
        )),
    }
}

/// Persists the cursor (write a temporary file, rename it over the old one; synced when `sync`).
pub fn write_cursor(dir: &Path, at: Position, sync: bool) -> io::Result<()> {
    let tmp = dir.join("cursor.tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(format!("{} {}\n", at.segment, at.offset).as_bytes())?;
    if sync {
        file.sync_all()?;
    }
    fs::rename(&tmp, cursor_path(dir))?;
    if sync {
        sync_dir(dir)?;
    }
    Ok(())
}

fn read_from(dir: &Path, segment: u64, from: u64, to: u64) -> io::Result<Vec<u8>> {
    let mut file = File::open(segment_path(dir, segment))?;
    file.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::with_capacity(usize::try_from(to.saturating_sub(from)).unwrap_or(0));
    file.take(to.saturating_sub(from)).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Reads up to `max_records` records (and about `max_bytes`) from `from`. `segments` are the
/// segments with their committed lengths; the newest is still being written, so a tail without a
/// valid record there is left for later, while in a sealed segment it is skipped as corrupt.
pub fn read_batch(
    dir: &Path,
    segments: &BTreeMap<u64, u64>,
    from: Position,
    max_records: usize,
    max_bytes: usize,
) -> io::Result<Batch> {
    let newest = segments.keys().next_back().copied().unwrap_or_default();
    let mut batch = Batch {
        start: from,
        end: from,
        ..Batch::default()
    };
    let mut bytes = 0usize;
    for (&n, &len) in segments.range(from.segment..) {
        let start = if n == from.segment { from.offset } else { 0 };
        if n != batch.end.segment {
            batch.end = Position {
                segment: n,
                offset: 0,
            };
        }
        let buf = if start < len {
            read_from(dir, n, start, len)?
        } else {
            Vec::new()
        };
        let mut rest = &buf[..];
        let mut at = start;
        loop {
            if batch.records.len() >= max_records || bytes >= max_bytes {
                return Ok(batch);
            }
            match record::step(rest) {
                Step::Record(r, used) => {
                    bytes += r.bytes.len();
                    batch.records.push((
                        Position {
                            segment: n,
                            offset: at,
                        },
                        r,
                    ));
                    at += used as u64;
                    rest = &rest[used..];
                }
                Step::Corrupt(used) => {
                    batch.corrupt += 1;
                    at += used as u64;
                    rest = &rest[used..];
                }
                Step::Tail if n == newest => {
                    batch.end.offset = at;
                    return Ok(batch);
                }
                Step::Tail => {
                    if !rest.is_empty() {
                        batch.corrupt += 1;
                    }
                    break;
                }
            }
            batch.end.offset = at;
        }
        if n == newest {
            break;
        }
        // A sealed segment read to its end: the next read starts in the following one.
        batch.end = Position {
            segment: n + 1,
            offset: 0,
        };
    }
    Ok(batch)
}

/// The append side: the newest segment, opened for appending.
#[derive(Debug)]
pub struct Appender {
    dir: PathBuf,
    file: File,
    /// Number of the segment being written.
    pub segment: u64,
    /// Its length (everything written so far).
    pub len: u64,
}

impl Appender {
    /// Opens segment `segment` (created if missing) for appending at `len`.
    pub fn open(dir: &Path, segment: u64, len: u64) -> io::Result<Self> {
        let path = segment_path(dir, segment);
        let created = !path.exists();
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if created {
            sync_dir(dir)?;
        }
        Ok(Self {
            dir: dir.to_owned(),
            file,
            segment,
            len,
        })
    }

    /// Appends `buf`. On failure the segment is cut back to its previous length, so no partial
    /// record stays behind; if even that fails the error says so and the caller rolls over.
    pub fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        match self.file.write_all(buf) {
            Ok(()) => {
                self.len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.file.set_len(self.len)?;
                Err(e)
            }
        }
    }

    /// Cuts the segment back to `len` (dropping records written after it).
    pub fn rewind(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.len = len;
        Ok(())
    }

    /// fsync of the segment's data.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Seals this segment (synced when `sync`) and starts the next one.
    pub fn roll(&mut self, sync: bool) -> io::Result<()> {
        if sync {
            self.file.sync_all()?;
        }
        *self = Self::open(&self.dir, self.segment + 1, 0)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_records(dir: &Path, segment: u64, records: &[(u16, &[u8])]) -> Vec<u8> {
        let mut buf = Vec::new();
        for (q, bytes) in records {
            record::encode_into(&mut buf, *q, bytes);
        }
        fs::write(segment_path(dir, segment), &buf).expect("write");
        buf
    }

    #[test]
    fn recovery_truncates_a_half_written_tail_and_counts_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_records(dir.path(), 1, &[(0, b"a"), (1, b"bb")]);
        let mut buf = write_records(dir.path(), 2, &[(2, b"ccc"), (3, b"dddd")]);
        let full = buf.len();
        buf.truncate(full - 2);
        fs::write(segment_path(dir.path(), 2), &buf).expect("write");
        let recovered = recover(dir.path()).expect("recover");
        assert_eq!(recovered.entries, 3);
        assert_eq!(recovered.truncated_bytes, record::encoded_len(4) as u64 - 2);
        assert_eq!(
            recovered.cursor,
            Position {
                segment: 1,
                offset: 0
            }
        );
        let batch = read_batch(
            dir.path(),
            &recovered.segments,
            recovered.cursor,
            10,
            1 << 20,
        )
        .expect("read");
        let got: Vec<&[u8]> = batch.records.iter().map(|(_, r)| &r.bytes[..]).collect();
        assert_eq!(got, vec![&b"a"[..], b"bb", b"ccc"]);
        assert_eq!(batch.corrupt, 0);
        let again = recover(dir.path()).expect("recover twice");
        assert_eq!(again.truncated_bytes, 0);
        assert_eq!(again.node_id, recovered.node_id);
    }

    #[test]
    fn a_corrupt_record_in_a_sealed_segment_is_skipped_and_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut buf = write_records(dir.path(), 1, &[(0, b"one"), (0, b"two"), (0, b"three")]);
        let second = record::encoded_len(3);
        buf[second + record::HEADER_LEN] ^= 0x40;
        fs::write(segment_path(dir.path(), 1), &buf).expect("write");
        write_records(dir.path(), 2, &[(1, b"four")]);
        let recovered = recover(dir.path()).expect("recover");
        assert_eq!(recovered.entries, 3);
        let batch = read_batch(
            dir.path(),
            &recovered.segments,
            recovered.cursor,
            2,
            1 << 20,
        )
        .expect("read");
        let got: Vec<&[u8]> = batch.records.iter().map(|(_, r)| &r.bytes[..]).collect();
        assert_eq!(got, vec![&b"one"[..], b"three"]);
        assert_eq!(batch.corrupt, 1);
        let rest =
            read_batch(dir.path(), &recovered.segments, batch.end, 10, 1 << 20).expect("read");
        let got: Vec<&[u8]> = rest.records.iter().map(|(_, r)| &r.bytes[..]).collect();
        assert_eq!(got, vec![&b"four"[..]]);
        assert_eq!(
            rest.end,
            Position {
                segment: 2,
                offset: record::encoded_len(4) as u64
            }
        );
    }

    #[test]
    fn cursor_round_trips_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let at = Position {
            segment: 7,
            offset: 42,
        };
        write_cursor(dir.path(), at, true).expect("write");
        assert_eq!(read_cursor(dir.path()).expect("read"), at);
        fs::write(cursor_path(dir.path()), "nonsense").expect("write");
        assert!(read_cursor(dir.path()).is_err());
        assert!(
            at.key()
                < Position {
                    segment: 7,
                    offset: 43
                }
                .key()
        );
        assert!(
            Position {
                segment: 6,
                offset: u64::MAX
            }
            .key()
                < at.key()
        );
    }
}
