//! Request heads: `httparse` over the connection's read buffer, turned into
//! [`http::request::Parts`] whose URI and header values share the buffer's bytes, plus what the
//! connection needs to know — how the body is framed, whether to keep the connection, and whether
//! the client waits for `100 Continue`. Pure: no I/O.
//!
//! The query string of an origin-form target (`/…?…`) is not part of the URI: it rides along
//! as a [`RawQuery`] extension, the bytes the client sent (httparse has checked them: visible
//! ASCII and valid UTF-8). The `http` crate would scan every byte of a tracking query (~450
//! bytes) again to build a `Uri`, ~4 % of the node's user-space instructions per hit, for a
//! check that only turned queries PHP's web server accepts (a raw `"`, `<` or `>`) into 400s.
//! Other targets (absolute-form, `*`) and HTTP/2 requests keep the strict `Uri`.

use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};

use crate::http::RawQuery;

/// Most header fields a request may have (hyper's default too).
pub const MAX_HEADERS: usize = 100;

/// Size limits for a head.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest request target (`ingest.max_url_bytes`).
    pub max_url: usize,
    /// Longest head, request line and header fields together.
    pub max_head: usize,
}

impl Limits {
    /// Room for a request target of `max_url` bytes and 64 KiB of header fields.
    pub fn for_url(max_url: usize) -> Self {
        Self {
            max_url,
            max_head: max_url.saturating_add(64 * 1024),
        }
    }
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head.
#[derive(Debug)]
pub struct Head {
    /// Method, URI, version and headers.
    pub parts: http::request::Parts,
    /// The body's framing.
    pub framing: Framing,
    /// Whether the connection may serve another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on HTTP/1.1.
    pub expect_continue: bool,
}

/// Why a head is refused. The connection answers with [`HeadError::status`] and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// The request target is longer than allowed.
    #[error("request URI too long")]
    UriTooLong,
    /// Too many header fields, or the head is longer than allowed.
    #[error("request header fields too large")]
    HeadersTooLarge,
    /// Not an HTTP/1.x request head, or one we will not read (conflicting framing).
    #[error("bad request: {0}")]
    Malformed(&'static str),
}

impl HeadError {
    /// The status to answer with.
    pub fn status(self) -> StatusCode {
        match self {
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Takes a complete head off the front of `buf`: `Ok(None)` while it is incomplete (read more and
/// call again), `Ok(Some(head))` with the head's bytes removed from `buf` (a pipelined next
/// request or the body stays), or the reason to refuse it.
pub fn take_head(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Head>, HeadError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            if buf.len() <= limits.max_head {
                return Ok(None);
            }
            // Over the limit before the head ended: blame the target while the request line
            // itself has not ended yet.
            let line_ended = buf.iter().take(limits.max_head).any(|&b| b == b'\n');
            return Err(if line_ended {
                HeadError::HeadersTooLarge
            } else {
                HeadError::UriTooLong
            });
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::HeadersTooLarge),
        Err(httparse::Error::Version) => return Err(HeadError::Malformed("unsupported version")),
        Err(_) => return Err(HeadError::Malformed("invalid request head")),
    };
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Malformed("invalid request head"));
    };
    if path.len() > limits.max_url {
        return Err(HeadError::UriTooLong);
    }
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| HeadError::Malformed("invalid method"))?;
    let version = if version == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // Where each piece lies in the buffer, so they can share its bytes once it is frozen.
    let base = buf.as_ptr() as usize;
    let span = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    let path = span(path.as_bytes());
    let mut spans = Vec::with_capacity(req.headers.len());
    for field in req.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| HeadError::Malformed("invalid header name"))?;
        spans.push((name, span(field.value)));
    }
    let bytes = buf.split_to(len).freeze();
    let (path, query) = split_target(&bytes, path);
    let uri = Uri::from_maybe_shared(bytes.slice(path))
        .map_err(|_| HeadError::Malformed("invalid request target"))?;
    let mut headers = HeaderMap::with_capacity(spans.len());
    for (name, value) in spans {
        let value = HeaderValue::from_maybe_shared(bytes.slice(value))
            .map_err(|_| HeadError::Malformed("invalid header value"))?;
        headers.append(name, value);
    }
    let framing = framing(&headers, version)?;
    let keep_alive = keep_alive(&headers, version);
    let expect_continue = version == Version::HTTP_11
        && headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    if let Some(query) = query {
        request
            .extensions_mut()
            .insert(RawQuery(bytes.slice(query)));
    }
    let (parts, ()) = request.into_parts();
    Ok(Some(Head {
        parts,
        framing,
        keep_alive,
        expect_continue,
    }))
}

/// The body framing (RFC 9112 §6.3). A request with both `Transfer-Encoding` and
/// `Content-Length`, or with lengths that disagree, is refused rather than guessed at: those are
/// the shapes request smuggling uses.
fn framing(headers: &HeaderMap, version: Version) -> Result<Framing, HeadError> {
    let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter().peekable();
    if codings.peek().is_some() {
        if version == Version::HTTP_10 {
            return Err(HeadError::Malformed("transfer-encoding in HTTP/1.0"));
        }
        if headers.contains_key(header::CONTENT_LENGTH) {
            return Err(HeadError::Malformed(
                "both transfer-encoding and content-length",
            ));
        }
        let last = codings
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|c| !c.is_empty())
            .last();
        return match last {
            Some(c) if c.eq_ignore_ascii_case(b"chunked") => Ok(Framing::Chunked),
            _ => Err(HeadError::Malformed("unsupported transfer-encoding")),
        };
    }
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for item in value.as_bytes().split(|&b| b == b',') {
            let item = item.trim_ascii();
            let n = parse_length(item).ok_or(HeadError::Malformed("invalid content-length"))?;
            if length.is_some_and(|seen| seen != n) {
                return Err(HeadError::Malformed("conflicting content-length"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        None | Some(0) => Framing::None,
        Some(n) => Framing::Length(n),
    })
}

/// A `Content-Length` value: ASCII digits only, no sign, at most 19 of them.
fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')),
    )
}

/// Persistent by default on HTTP/1.1 unless `Connection: close`; on HTTP/1.0 only with
/// `Connection: keep-alive`.
fn keep_alive(headers: &HeaderMap, version: Version) -> bool {
    let mut close = false;
    let mut keep = false;
    for value in headers.get_all(header::CONNECTION) {
        for token in value.as_bytes().split(|&b| b == b',') {
            let token = token.trim_ascii();
            close |= token.eq_ignore_ascii_case(b"close");
            keep |= token.eq_ignore_ascii_case(b"keep-alive");
        }
    }
    !close && (version == Version::HTTP_11 || keep)
}

/// Splits an origin-form target (`/…`) at its first `?` into the path and the query (up to a
/// `#`). Any other target (`*`, an absolute URI) stays whole for `Uri` to judge, with no query.
fn split_target(
    bytes: &[u8],
    target: std::ops::Range<usize>,
) -> (std::ops::Range<usize>, Option<std::ops::Range<usize>>) {
    let text = &bytes[target.clone()];
    if text.first() != Some(&b'/') {
        return (target, None);
    }
    match memchr::memchr2(b'?', b'#', text) {
        Some(at) if text[at] == b'?' => {
            let rest = &text[at + 1..];
            let end = memchr::memchr(b'#', rest).unwrap_or(rest.len());
            let start = target.start + at + 1;
            (target.start..target.start + at, Some(start..start + end))
        }
        Some(at) => (target.start..target.start + at, None),
        None => (target, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(raw: &str) -> Result<Option<Head>, HeadError> {
        take_bytes(raw.as_bytes())
    }

    fn take_bytes(raw: &[u8]) -> Result<Option<Head>, HeadError> {
        let mut buf = BytesMut::from(raw);
        take_head(&mut buf, &Limits::for_url(1024))
    }

    fn head(raw: &str) -> Head {
        take(raw).expect("valid").expect("complete")
    }

    #[test]
    fn reads_a_get_and_leaves_the_next_request() {
        let mut buf = BytesMut::from(
            &b"GET /matomo.php?idsite=1&rec=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: a\r\n\r\nGET /"[..],
        );
        let h = take_head(&mut buf, &Limits::for_url(1024))
            .expect("valid")
            .expect("complete");
        assert_eq!(h.parts.method, Method::GET);
        assert_eq!(h.parts.uri.path(), "/matomo.php");
        assert_eq!(h.parts.uri.query(), None, "the query rides as an extension");
        assert_eq!(RawQuery::of(&h.parts), b"idsite=1&rec=1");
        assert_eq!(h.parts.headers["user-agent"], "a");
        assert_eq!(h.framing, Framing::None);
        assert!(h.keep_alive && !h.expect_continue);
        assert_eq!(&buf[..], b"GET /");
    }

    #[test]
    fn the_query_is_the_bytes_the_client_sent() {
        let query = |raw: &[u8]| {
            let h = take_bytes(raw).expect("valid").expect("complete");
            (h.parts.uri.to_string(), RawQuery::of(&h.parts).to_vec())
        };
        // Bytes a `Uri` refuses in a query but PHP's web server passes on: kept, not a 400.
        let (path, q) = query("GET /m.php?a=\"<x>\"&b=café HTTP/1.1\r\n\r\n".as_bytes());
        assert_eq!(path, "/m.php");
        assert_eq!(q, "a=\"<x>\"&b=café".as_bytes());
        // httparse still refuses what is not UTF-8.
        assert!(take_bytes(b"GET /m.php?b=caf\xe9 HTTP/1.1\r\n\r\n").is_err());
        // A fragment ends the query; one before any `?` leaves no query.
        assert_eq!(query(b"GET /m.php?a=1#frag?b HTTP/1.1\r\n\r\n").1, b"a=1");
        assert_eq!(
            query(b"GET /m.php#x?a=1 HTTP/1.1\r\n\r\n"),
            ("/m.php".into(), vec![])
        );
        // An empty query and none at all read the same; `/?` alone has the root path.
        assert_eq!(query(b"GET /m.php? HTTP/1.1\r\n\r\n").1, b"");
        assert_eq!(query(b"GET /? HTTP/1.1\r\n\r\n"), ("/".into(), vec![]));
        // An absolute target keeps its query in the URI.
        let (uri, q) = query(b"GET http://h/m.php?a=1 HTTP/1.1\r\n\r\n");
        assert_eq!((uri.as_str(), &q[..]), ("http://h/m.php?a=1", &b"a=1"[..]));
        // The path itself is still checked by `Uri`.
        assert!(matches!(
            take_bytes(b"GET /m<.php?a=1 HTTP/1.1\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn incomplete_heads_wait_for_more() {
        assert!(take("GET /matomo.php HTTP/1.1\r\nHost: x\r\n")
            .expect("ok")
            .is_none());
        assert!(take("GE").expect("ok").is_none());
        assert!(take("").expect("ok").is_none());
    }

    #[test]
    fn framing_follows_the_headers() {
        let h = head("POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(12));
        let h = head("POST / HTTP/1.1\r\nContent-Length: 12, 12\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(12));
        let h = head("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        let h = head("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(h.framing, Framing::None);
        for bad in [
            "POST / HTTP/1.1\r\nContent-Length: 12\r\nContent-Length: 13\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(matches!(take(bad), Err(HeadError::Malformed(_))), "{bad:?}");
        }
    }

    #[test]
    fn keep_alive_and_expect() {
        assert!(!head("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
        let h = head("POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n");
        assert!(h.expect_continue);
        let h = head("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
        assert!(!h.expect_continue);
    }

    #[test]
    fn limits_name_the_part_that_is_too_long() {
        let limits = Limits {
            max_url: 16,
            max_head: 64,
        };
        let mut long_target = BytesMut::from(&b"GET /matomo.php?abcdefghijkl HTTP/1.1\r\n\r\n"[..]);
        assert_eq!(
            take_head(&mut long_target, &limits).map(|_| ()),
            Err(HeadError::UriTooLong)
        );
        let mut endless_line = BytesMut::from(vec![b'a'; 65].as_slice());
        endless_line[..4].copy_from_slice(b"GET ");
        assert_eq!(
            take_head(&mut endless_line, &limits).map(|_| ()),
            Err(HeadError::UriTooLong)
        );
        let mut big_headers = BytesMut::from(&b"GET / HTTP/1.1\r\nX-A: "[..]);
        big_headers.extend_from_slice(&[b'a'; 64]);
        assert_eq!(
            take_head(&mut big_headers, &limits).map(|_| ()),
            Err(HeadError::HeadersTooLarge)
        );
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: 1\r\n")).collect();
        assert_eq!(
            take(&format!("GET / HTTP/1.1\r\n{many}\r\n")).map(|_| ()),
            Err(HeadError::HeadersTooLarge)
        );
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            "GET / HTTP/2.0\r\n\r\n",
            "GET  HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
        ] {
            assert!(take(bad).is_err(), "{bad:?}");
        }
        let tls_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
        assert!(take_bytes(tls_hello).is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let mut buf = BytesMut::from(bytes.as_slice());
            let _ = take_head(&mut buf, &Limits { max_url: 64, max_head: 256 });
        }
    }
}
