//! HTTP/1.1 for `pace`, without I/O: a hit as the bytes of its GET request, and where an
//! answer ends in the bytes read so far.

use crate::visitor::Hit;

/// Most header lines an answer may have.
const MAX_HEADERS: usize = 32;

/// The bytes of `hit`'s GET request to `path` on `host`, with the browser's headers, kept
/// alive.
pub fn request(host: &str, path: &str, hit: &Hit) -> Vec<u8> {
    format!(
        "GET {path}?{query} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {ua}\r\nAccept-Language: {lang}\r\n\r\n",
        query = hit.query,
        ua = hit.user_agent,
        lang = hit.language,
    )
    .into_bytes()
}

/// A complete answer at the start of the bytes read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// Its status code.
    pub status: u16,
    /// Its length, head and body: where the next answer starts.
    pub len: usize,
    /// The server closes the connection after it.
    pub close: bool,
}

/// An answer this client cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// Not an HTTP/1.x head.
    #[error("malformed answer head: {0}")]
    Head(String),
    /// The body's length is not given by a `Content-Length` (chunked, or read to the close).
    #[error("answer without a Content-Length (status {0})")]
    NoLength(u16),
}

/// The answer at the start of `read`, if all of it is there (`Ok(None)`: read more).
pub fn answer(read: &[u8]) -> Result<Option<Answer>, AnswerError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Response::new(&mut headers);
    let head_len = match head.parse(read) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(AnswerError::Head(e.to_string())),
    };
    let status = head.code.unwrap_or(0);
    let mut body_len = None;
    let mut close = head.version == Some(0);
    for h in head.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let len = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| AnswerError::Head("bad Content-Length".into()))?;
            body_len = Some(len);
        } else if h.name.eq_ignore_ascii_case("connection") {
            let value = String::from_utf8_lossy(h.value);
            if value.eq_ignore_ascii_case("close") {
                close = true;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                close = false;
            }
        }
    }
    // 1xx, 204 and 304 answers have no body.
    let body_len = match (status, body_len) {
        (100..=199 | 204 | 304, _) => 0,
        (_, Some(len)) => len,
        (_, None) => return Err(AnswerError::NoLength(status)),
    };
    let len = head_len
        .checked_add(body_len)
        .ok_or_else(|| AnswerError::Head("Content-Length too large".into()))?;
    Ok((read.len() >= len).then_some(Answer { status, len, close }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GIF_ANSWER: &[u8] =
        b"HTTP/1.1 200 OK\r\ncontent-type: image/gif\r\nContent-Length: 3\r\n\r\nGIFHTTP/1.1 204";

    #[test]
    fn an_answer_ends_after_its_content_length() {
        let a = answer(GIF_ANSWER).unwrap().unwrap();
        assert_eq!(
            a,
            Answer {
                status: 200,
                len: GIF_ANSWER.len() - "HTTP/1.1 204".len(),
                close: false
            }
        );
        let no_content = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
        assert_eq!(
            answer(no_content).unwrap(),
            Some(Answer {
                status: 204,
                len: no_content.len(),
                close: true
            })
        );
        let old = b"HTTP/1.0 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        assert!(answer(old).unwrap().unwrap().close);
    }

    #[test]
    fn unreadable_answers_are_errors() {
        assert!(matches!(
            answer(b"HTTP/1.1 2x0 OK\r\n\r\n"),
            Err(AnswerError::Head(_))
        ));
        assert_eq!(
            answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(AnswerError::NoLength(200))
        );
        assert!(matches!(
            answer(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"),
            Err(AnswerError::Head(_))
        ));
        let huge = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", usize::MAX);
        assert!(matches!(answer(huge.as_bytes()), Err(AnswerError::Head(_))));
    }

    proptest! {
        /// Cut anywhere before its end, an answer is incomplete; whole, it is found, whatever
        /// follows it.
        #[test]
        fn an_answer_is_complete_only_when_all_of_it_is_read(
            body in proptest::collection::vec(any::<u8>(), 0..64),
            cut in any::<prop::sample::Index>(),
            next in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            let mut bytes = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
            bytes.extend_from_slice(&body);
            let whole = bytes.len();
            let cut = cut.index(whole);
            prop_assert_eq!(answer(&bytes[..cut]), Ok(None));
            bytes.extend_from_slice(&next);
            prop_assert_eq!(answer(&bytes), Ok(Some(Answer { status: 200, len: whole, close: false })));
        }
    }
}
