//! The `Transfer-Encoding: chunked` request-body decoder (RFC 9112 §7.1): an incremental state
//! machine fed whatever bytes have arrived, so a body split anywhere across reads decodes the
//! same. Chunk extensions and trailer fields are read and dropped, within a byte budget. Pure.

/// Bytes of chunk extensions and trailer fields a body may carry in all.
const MAX_OVERHEAD: usize = 16 * 1024;

/// Why a chunked body is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// Not the chunked syntax.
    #[error("malformed chunked body: {0}")]
    Malformed(&'static str),
    /// Chunk extensions and trailers longer than allowed.
    #[error("chunk extensions or trailers too long")]
    TooLong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the chunk size's hex digits.
    Size,
    /// Whitespace after the size.
    SizeSpace,
    /// A chunk extension, up to the CR.
    Extension,
    /// The LF ending the size line.
    SizeLf,
    /// Chunk data.
    Data,
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// The start of a trailer line (or the final CRLF).
    TrailerStart,
    /// Inside a trailer field, up to the CR.
    Trailer,
    /// The LF ending a trailer field.
    TrailerLf,
    /// The LF of the final CRLF.
    EndLf,
    /// The body has ended.
    Done,
}

/// Decodes one chunked body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// The size being read, then the data left in the current chunk.
    size: u64,
    digits: u8,
    overhead: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        Self {
            state: State::Size,
            size: 0,
            digits: 0,
            overhead: 0,
        }
    }

    /// Whether the final chunk and the trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads from `input`, appending chunk data to `out`; returns how many bytes of `input` it
    /// used. It uses everything unless the body ends inside `input` (the rest belongs to the
    /// next request).
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < input.len() && self.state != State::Done {
            if self.state == State::Data {
                let take = usize::try_from(self.size)
                    .unwrap_or(usize::MAX)
                    .min(input.len() - i);
                out.extend_from_slice(&input[i..i + take]);
                i += take;
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            self.step(input[i])?;
            i += 1;
        }
        Ok(i)
    }

    fn step(&mut self, byte: u8) -> Result<(), ChunkError> {
        use ChunkError::Malformed;
        self.state = match (self.state, byte) {
            (State::Size, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                if self.digits == 16 {
                    return Err(Malformed("chunk size too large"));
                }
                let digit = (byte as char).to_digit(16).unwrap_or(0);
                self.size = self.size << 4 | u64::from(digit);
                self.digits += 1;
                State::Size
            }
            (State::Size, _) if self.digits == 0 => return Err(Malformed("missing chunk size")),
            (State::Size | State::SizeSpace, b' ' | b'\t') => State::SizeSpace,
            (State::Size | State::SizeSpace, b';') => self.overhead(State::Extension)?,
            (State::Size | State::SizeSpace | State::Extension, b'\r') => State::SizeLf,
            (State::Extension, b'\n') => return Err(Malformed("bare LF in chunk extension")),
            (State::Extension, _) => self.overhead(State::Extension)?,
            (State::SizeLf, b'\n') if self.size == 0 => State::TrailerStart,
            (State::SizeLf, b'\n') => State::Data,
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => {
                self.size = 0;
                self.digits = 0;
                State::Size
            }
            (State::TrailerStart, b'\r') => State::EndLf,
            (State::TrailerStart | State::Trailer, b'\n') => {
                return Err(Malformed("bare LF in trailer"))
            }
            (State::Trailer, b'\r') => State::TrailerLf,
            (State::TrailerStart | State::Trailer, _) => self.overhead(State::Trailer)?,
            (State::TrailerLf, b'\n') => State::TrailerStart,
            (State::EndLf, b'\n') => State::Done,
            _ => return Err(Malformed("unexpected byte")),
        };
        Ok(())
    }

    fn overhead(&mut self, next: State) -> Result<State, ChunkError> {
        self.overhead += 1;
        if self.overhead > MAX_OVERHEAD {
            return Err(ChunkError::TooLong);
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, usize, bool), ChunkError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let used = d.decode(input, &mut out)?;
        Ok((out, used, d.is_done()))
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        let body = b"5;name=value\r\nhello\r\n7\r\n, world\r\n0\r\nX-T: 1\r\n\r\nGET /";
        let (out, used, done) = decode_all(body).expect("valid");
        assert_eq!(out, b"hello, world");
        assert!(done);
        assert_eq!(&body[used..], b"GET /");
        let (out, _, done) = decode_all(b"A \r\n0123456789\r\n0\r\n\r\n").expect("valid");
        assert_eq!((out.len(), done), (10, true));
    }

    #[test]
    fn an_unfinished_body_is_not_done() {
        let (out, used, done) = decode_all(b"5\r\nhel").expect("valid");
        assert_eq!((out.as_slice(), used, done), (&b"hel"[..], 6, false));
        let (_, _, done) = decode_all(b"0\r\n\r").expect("valid");
        assert!(!done);
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for bad in [
            &b"\r\n"[..],
            b"g\r\n",
            b"5\r\nhelloX",
            b"5\nhello",
            b"11111111111111111\r\n",
            b"0\r\nX\nY",
            b"3;ext\n",
        ] {
            assert!(
                matches!(decode_all(bad), Err(ChunkError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut endless = b"1;".to_vec();
        endless.extend(std::iter::repeat_n(b'x', MAX_OVERHEAD + 1));
        assert_eq!(decode_all(&endless), Err(ChunkError::TooLong));
    }

    fn encode(body: &[u8], sizes: &[usize], ext: bool, trailer: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = body;
        let mut sizes = sizes.iter().cycle();
        while !rest.is_empty() {
            let n = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
            out.extend_from_slice(format!("{n:X}").as_bytes());
            if ext {
                out.extend_from_slice(b" ;a=\"b\"");
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&rest[..n]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        out.extend_from_slice(b"0\r\n");
        if trailer {
            out.extend_from_slice(b"X-Checksum: abc\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    proptest! {
        #[test]
        fn any_split_decodes_the_same(
            body in proptest::collection::vec(any::<u8>(), 0..600),
            sizes in proptest::collection::vec(1usize..80, 1..6),
            cuts in proptest::collection::vec(1usize..40, 1..8),
            ext in any::<bool>(),
            trailer in any::<bool>(),
        ) {
            let wire = encode(&body, &sizes, ext, trailer);
            let mut d = ChunkedDecoder::new();
            let mut out = Vec::new();
            let mut at = 0;
            let mut cuts = cuts.iter().cycle();
            while at < wire.len() {
                let end = (at + cuts.next().copied().unwrap_or(1)).min(wire.len());
                let used = d.decode(&wire[at..end], &mut out).expect("valid");
                prop_assert_eq!(used, end - at);
                at = end;
            }
            prop_assert!(d.is_done());
            prop_assert_eq!(out, body);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut out = Vec::new();
            let _ = ChunkedDecoder::new().decode(&bytes, &mut out);
        }
    }
}
