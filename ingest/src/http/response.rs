//! The answers `matomo.php` gives, byte for byte as Matomo's `Tracker\Response` and
//! `BulkTracking\Tracker\Response` produce them, built in one place.
//!
//! PHP details reproduced on purpose: `Cache-Control: no-store` only for GET; `send_image=0` turns
//! any GIF answer into a 204; an invalid single hit gets status 400 with the GIF *followed by* the
//! notice text (PHP prints both), or only the notice when `send_image=0`; every non-GET answer
//! carries `Access-Control-Allow-Origin: <Origin or *>` and `Access-Control-Allow-Credentials:
//! true`; a CORS preflight gets none of those, only its own three headers.

use axum::body::Body;
use axum::response::Response;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};

/// The 43-byte transparent GIF Matomo answers with.
pub const GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// The page `matomo.php` shows when it tracked nothing.
pub const NOTICE: &str = "This resource is part of Matomo. Keep full control of your data with the leading free and open source <a href='https://matomo.org' target='_blank' rel='noopener noreferrer nofollow'>web analytics & conversion optimisation platform</a>.<br>\nThis file is the endpoint for the Matomo tracking API. If you want to access the Matomo UI or use the Reporting API, please use <a href='index.php'>index.php</a> instead.\n";

const HTML: &str = "text/html; charset=UTF-8";

/// What the request looked like, for the headers every answer depends on.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Whether the method is GET (Cache-Control, CORS).
    pub is_get: bool,
    /// The `Origin` header, echoed in CORS answers to non-GET requests.
    pub origin: Option<HeaderValue>,
}

impl Ctx {
    /// From the request method and headers.
    pub fn new(method: &Method, headers: &HeaderMap) -> Self {
        Self {
            is_get: method == Method::GET,
            origin: headers.get(header::ORIGIN).cloned(),
        }
    }

    fn finish(
        &self,
        status: StatusCode,
        headers: impl IntoIterator<Item = (header::HeaderName, HeaderValue)>,
        body: Body,
    ) -> Response {
        let mut response = Response::new(body);
        *response.status_mut() = status;
        let h = response.headers_mut();
        for (name, value) in headers {
            h.insert(name, value);
        }
        if !self.is_get {
            let origin = self.origin.clone().unwrap_or(HeaderValue::from_static("*"));
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        response
    }

    /// `Cache-Control: no-store`, which Matomo sends with GET answers only.
    fn no_store(&self) -> Option<(header::HeaderName, HeaderValue)> {
        self.is_get
            .then(|| (header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
    }

    /// `outputApiResponse`: the GIF with `status`, or a 204 when `send_image=0`.
    pub fn api_response(&self, status: StatusCode, no_image: bool) -> Response {
        let headers = self.no_store();
        if no_image {
            return self.finish(StatusCode::NO_CONTENT, headers, Body::empty());
        }
        let gif = (header::CONTENT_TYPE, HeaderValue::from_static("image/gif"));
        self.finish(status, headers.into_iter().chain([gif]), Body::from(GIF))
    }

    /// An invalid hit (Matomo's 400): the GIF and the notice, or only the notice with
    /// `send_image=0`.
    pub fn invalid(&self, no_image: bool) -> Response {
        let headers = self.no_store().into_iter();
        if no_image {
            let html = (header::CONTENT_TYPE, HeaderValue::from_static(HTML));
            let headers = headers.chain([html]);
            return self.finish(StatusCode::BAD_REQUEST, headers, Body::from(NOTICE));
        }
        let gif = (header::CONTENT_TYPE, HeaderValue::from_static("image/gif"));
        let mut body = GIF.to_vec();
        body.extend_from_slice(NOTICE.as_bytes());
        self.finish(
            StatusCode::BAD_REQUEST,
            headers.chain([gif]),
            Body::from(body),
        )
    }

    /// Nothing to track: the notice, 200 for a bare GET and 400 otherwise.
    pub fn notice(&self, bare_get: bool) -> Response {
        let status = if bare_get {
            StatusCode::OK
        } else {
            StatusCode::BAD_REQUEST
        };
        let headers = [(header::CONTENT_TYPE, HeaderValue::from_static(HTML))];
        self.finish(status, headers, Body::from(NOTICE))
    }

    /// A bulk answer: JSON with `status`, or 204 when the body said `send_image: 0`.
    pub fn bulk(&self, status: StatusCode, json: String, no_image: bool) -> Response {
        let headers = [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )];
        if no_image && status == StatusCode::OK {
            return self.finish(StatusCode::NO_CONTENT, headers, Body::empty());
        }
        self.finish(status, headers, Body::from(json))
    }

    /// A failure of ours (Redis down, cache not loaded, slow or oversized request): a short
    /// plain-text reason.
    pub fn failure(&self, status: StatusCode, reason: &str) -> Response {
        let headers = [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )];
        self.finish(status, headers, Body::from(format!("{reason}\n")))
    }
}

/// The CORS preflight answer (`Tracker::isPreFlightCorsRequest`).
pub fn preflight() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// Whether a request is a CORS preflight: OPTIONS with a non-empty
/// `Access-Control-Request-Headers` or `-Method`.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    let present = |name| {
        headers
            .get(name)
            .is_some_and(|v: &HeaderValue| !v.is_empty())
    };
    method == Method::OPTIONS
        && (present(header::ACCESS_CONTROL_REQUEST_HEADERS)
            || present(header::ACCESS_CONTROL_REQUEST_METHOD))
}

/// The bulk JSON body, as PHP's `json_encode` writes the result array.
pub fn bulk_json(status: &str, tracked: usize, invalid: &[usize], with_indices: bool) -> String {
    let mut out = format!(
        "{{\"status\":\"{status}\",\"tracked\":{tracked},\"invalid\":{}",
        invalid.len()
    );
    if with_indices {
        let list: Vec<String> = invalid.iter().map(usize::to_string).collect();
        out.push_str(&format!(",\"invalid_indices\":[{}]", list.join(",")));
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    #[test]
    fn gif_is_matomos() {
        let expected = base64::engine::general_purpose::STANDARD
            .decode("R0lGODlhAQABAIAAAAAAAAAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
            .expect("base64");
        assert_eq!(GIF, expected.as_slice());
        assert_eq!(GIF.len(), 43);
    }

    #[test]
    fn bulk_json_matches_php() {
        assert_eq!(
            bulk_json("success", 2, &[], false),
            r#"{"status":"success","tracked":2,"invalid":0}"#
        );
        assert_eq!(
            bulk_json("success", 1, &[0, 3], true),
            r#"{"status":"success","tracked":1,"invalid":2,"invalid_indices":[0,3]}"#
        );
    }

    #[test]
    fn cors_headers_only_for_non_get() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://a.example"),
        );
        let post = Ctx::new(&Method::POST, &h).api_response(StatusCode::OK, false);
        assert_eq!(
            post.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://a.example"
        );
        assert_eq!(
            post.headers()[header::ACCESS_CONTROL_ALLOW_CREDENTIALS],
            "true"
        );
        assert!(post.headers().get(header::CACHE_CONTROL).is_none());
        let get = Ctx::new(&Method::GET, &h).api_response(StatusCode::OK, true);
        assert_eq!(get.status(), StatusCode::NO_CONTENT);
        assert_eq!(get.headers()[header::CACHE_CONTROL], "no-store");
        assert!(get
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none());
    }
}
