//! Writing responses on an HTTP/1.1 connection: the status line and header block (with `date`,
//! the body's length and the connection's fate added as hyper would), then the body — in the same
//! write as the head when it is small and already in memory (every tracker answer), else streamed
//! with its length or chunked.

use std::cell::RefCell;
use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use http::header::{self, HeaderMap};
use http::{Response, StatusCode, Version};
use http_body_util::BodyExt as _;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};

/// Bodies of known length up to this size go out in the head's write.
const INLINE_BODY: u64 = 64 * 1024;

/// What the request said that shapes the response.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// The request's version.
    pub version: Version,
    /// A HEAD request: headers only.
    pub head_only: bool,
    /// Whether the connection may stay open after this response.
    pub keep_alive: bool,
}

/// Writes `response`; returns whether the connection may serve another request.
pub async fn write_response<W: AsyncWrite + Unpin>(
    out: &mut W,
    response: Response<Body>,
    shape: Shape,
) -> io::Result<bool> {
    let (parts, mut body) = response.into_parts();
    let status = parts.status;
    let no_body = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let exact = axum::body::HttpBody::size_hint(&body).exact();
    let length = declared.or(exact);
    let mut keep_alive = shape.keep_alive && !says_close(&parts.headers);
    let chunked = !no_body && length.is_none() && shape.version == Version::HTTP_11;
    if !no_body && length.is_none() && !chunked {
        // HTTP/1.0 without a length: the end of the connection ends the body.
        keep_alive = false;
    }

    let mut buf = Vec::with_capacity(256 + length.unwrap_or(0).min(INLINE_BODY) as usize);
    buf.extend_from_slice(b"HTTP/1.1 ");
    buf.extend_from_slice(status.as_str().as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    buf.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if name == header::CONNECTION || name == header::TRANSFER_ENCODING {
            continue;
        }
        line(&mut buf, name.as_str().as_bytes(), value.as_bytes());
    }
    if !no_body && declared.is_none() {
        if let Some(n) = exact {
            line(&mut buf, b"content-length", n.to_string().as_bytes());
        } else if chunked {
            line(&mut buf, b"transfer-encoding", b"chunked");
        }
    }
    if !parts.headers.contains_key(header::DATE) {
        with_date(|date| line(&mut buf, b"date", date));
    }
    if !keep_alive {
        line(&mut buf, b"connection", b"close");
    } else if shape.version == Version::HTTP_10 {
        line(&mut buf, b"connection", b"keep-alive");
    }
    buf.extend_from_slice(b"\r\n");

    if no_body || shape.head_only {
        out.write_all(&buf).await?;
        return Ok(keep_alive);
    }
    if length.is_some_and(|n| n <= INLINE_BODY) {
        // In memory already for every tracker answer: one frame, appended to the head.
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map_err(io::Error::other)?.into_data() {
                buf.extend_from_slice(&data);
            }
        }
        out.write_all(&buf).await?;
        return Ok(keep_alive);
    }
    out.write_all(&buf).await?;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(io::Error::other)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        if chunked {
            out.write_all(format!("{:X}\r\n", data.len()).as_bytes())
                .await?;
            out.write_all(&data).await?;
            out.write_all(b"\r\n").await?;
        } else {
            out.write_all(&data).await?;
        }
    }
    if chunked {
        out.write_all(b"0\r\n\r\n").await?;
    }
    Ok(keep_alive)
}

/// A bare answer of ours to a request that never reached a handler (a refused head).
pub fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(format!("{text}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn says_close(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
}

fn line(buf: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    buf.extend_from_slice(name);
    buf.extend_from_slice(b": ");
    buf.extend_from_slice(value);
    buf.extend_from_slice(b"\r\n");
}

thread_local! {
    /// The `date` value of the current second, formatted once per second per thread.
    static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

fn with_date(f: impl FnOnce(&[u8])) {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, text)| {
        if *at != second {
            *at = second;
            *text = httpdate::fmt_http_date(now);
        }
        f(text.as_bytes());
    });
}

#[cfg(test)]
mod tests {
    use futures::stream;
    use http::HeaderValue;

    use super::*;

    async fn written(response: Response<Body>, shape: Shape) -> (String, bool) {
        let mut out = Vec::new();
        let keep = write_response(&mut out, response, shape)
            .await
            .expect("write");
        (String::from_utf8_lossy(&out).into_owned(), keep)
    }

    const KEEP_11: Shape = Shape {
        version: Version::HTTP_11,
        head_only: false,
        keep_alive: true,
    };

    fn without_date(text: &str) -> String {
        text.lines()
            .filter(|l| !l.starts_with("date: "))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[tokio::test]
    async fn a_full_body_goes_out_with_its_length() {
        let mut r = Response::new(Body::from("hello"));
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let (text, keep) = written(r, KEEP_11).await;
        assert!(keep);
        assert!(text.contains("\r\ndate: "), "{text}");
        assert_eq!(
            without_date(&text),
            "HTTP/1.1 200 OK\ncache-control: no-store\ncontent-length: 5\n\nhello"
        );
    }

    #[tokio::test]
    async fn no_content_head_and_close() {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        let (text, keep) = written(
            r,
            Shape {
                keep_alive: false,
                ..KEEP_11
            },
        )
        .await;
        assert!(!keep);
        assert_eq!(
            without_date(&text),
            "HTTP/1.1 204 No Content\nconnection: close\n"
        );
        let (text, _) = written(
            Response::new(Body::from("abc")),
            Shape {
                head_only: true,
                ..KEEP_11
            },
        )
        .await;
        assert_eq!(without_date(&text), "HTTP/1.1 200 OK\ncontent-length: 3\n");
        let (text, keep) = written(
            Response::new(Body::from("abc")),
            Shape {
                version: Version::HTTP_10,
                ..KEEP_11
            },
        )
        .await;
        assert!(
            keep && text.contains("connection: keep-alive\r\n"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_stream_of_unknown_length_is_chunked_or_closes() {
        let parts = || {
            Body::from_stream(stream::iter(vec![
                Ok::<_, io::Error>(bytes::Bytes::from_static(b"ab")),
                Ok(bytes::Bytes::from_static(b"cde")),
            ]))
        };
        let (text, keep) = written(Response::new(parts()), KEEP_11).await;
        assert!(keep);
        assert_eq!(
            without_date(&text),
            "HTTP/1.1 200 OK\ntransfer-encoding: chunked\n\n2\nab\n3\ncde\n0\n"
        );
        let (text, keep) = written(
            Response::new(parts()),
            Shape {
                version: Version::HTTP_10,
                ..KEEP_11
            },
        )
        .await;
        assert!(!keep);
        assert_eq!(
            without_date(&text),
            "HTTP/1.1 200 OK\nconnection: close\n\nabcde"
        );
    }
}
