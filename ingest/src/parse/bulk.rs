//! The bulk tracking body, read as Matomo's BulkTracking plugin reads it.
//!
//! A body is bulk when `"requests"` (or `'requests'`) occurs in it after the first byte. It is
//! trimmed, its line breaks removed, and decoded as JSON. Entries: a string is a URL whose query
//! part holds the parameters (a string without a query is dropped); an object or list is the
//! parameter map itself; any other value is an empty request (counted as tracked, records
//! nothing). Entry indices in responses (`invalid_indices`) count the kept entries only, as PHP
//! does. Pure; never panics.

use matomo_wire::php::sanitize_input_value;
use matomo_wire::Params;
use serde_json::Value;

use super::phpquery::parse_str;

/// A decoded bulk body.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BulkBody {
    /// The requests PHP keeps, in order (their index is the one `invalid_indices` reports).
    pub requests: Vec<Params>,
    /// `token_auth` of the body, sanitised as `Common::getRequestVar` returns it; `None` if absent.
    pub token_auth: Option<String>,
    /// `false` when the body says `"send_image": "0"` (the answer is then a 204).
    pub send_image: bool,
}

/// Why a bulk body is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BulkError {
    /// Not JSON (PHP would silently track nothing; we say why).
    #[error("the bulk body is not valid JSON: {0}")]
    NotJson(String),
    /// More entries than the configured maximum.
    #[error("the bulk body has {got} requests, more than the {max} allowed")]
    TooManyRequests {
        /// Entries sent.
        got: usize,
        /// `ingest.max_bulk_requests`.
        max: usize,
    },
}

/// `Requests::isUsingBulkRequest`: `strpos($raw, '"requests"') || strpos($raw, "'requests'")`,
/// which is false when the word starts the body (position 0).
pub fn is_bulk_body(body: &[u8]) -> bool {
    let found_after_start = |needle: &[u8]| {
        body.windows(needle.len())
            .position(|w| w == needle)
            .is_some_and(|pos| pos > 0)
    };
    found_after_start(b"\"requests\"") || found_after_start(b"'requests'")
}

/// Decodes a bulk body, refusing more than `max_requests` entries.
pub fn parse_bulk(body: &[u8], max_requests: usize) -> Result<BulkBody, BulkError> {
    let cleaned: Vec<u8> = body
        .trim_ascii()
        .iter()
        .copied()
        .filter(|&b| b != b'\n' && b != b'\r')
        .collect();
    let json: Value =
        serde_json::from_slice(&cleaned).map_err(|e| BulkError::NotJson(e.to_string()))?;
    let Value::Object(mut top) = json else {
        // Valid JSON that is not an object holds no requests (PHP: `isset($json['requests'])`).
        return Ok(BulkBody {
            send_image: true,
            ..BulkBody::default()
        });
    };
    let token_auth = top.get("token_auth").and_then(request_var_string);
    let send_image = top
        .get("send_image")
        .and_then(request_var_string)
        .is_none_or(|v| v != "0");
    let entries: Vec<Value> = match top.remove("requests") {
        Some(Value::Array(items)) => items,
        Some(Value::Object(map)) => map.into_iter().map(|(_, v)| v).collect(),
        _ => Vec::new(),
    };
    if entries.len() > max_requests {
        return Err(BulkError::TooManyRequests {
            got: entries.len(),
            max: max_requests,
        });
    }
    let requests = entries.into_iter().filter_map(entry_params).collect();
    Ok(BulkBody {
        requests,
        token_auth,
        send_image,
    })
}

/// One entry as `Requests::initRequestsAndTokenAuth` turns it into a request, or `None` when
/// PHP drops it (a string without a query part).
fn entry_params(entry: Value) -> Option<Params> {
    match entry {
        Value::String(url) => {
            let query = url_query(&url)?;
            Some(parse_str(query.as_bytes()))
        }
        Value::Object(map) => Some(map),
        Value::Array(items) => Some(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), v))
                .collect(),
        ),
        Value::Null | Value::Bool(_) | Value::Number(_) => Some(Params::new()),
    }
}

/// The non-empty query part of a URL as `parse_url($url)['query']` gives it: after the first
/// `?`, up to the first `#`.
fn url_query(url: &str) -> Option<&str> {
    let after = &url[url.find('?')? + 1..];
    let query = after.split('#').next().unwrap_or_default();
    (!query.is_empty()).then_some(query)
}

/// `Common::getRequestVar($name, false, 'string', $json)`: a non-empty string or integer,
/// sanitised; anything else is absent.
fn request_var_string(value: &Value) -> Option<String> {
    let raw = match value {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Bool(true) => "1".to_owned(),
        _ => return None,
    };
    Some(sanitize_input_value(&raw))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn detection_needs_the_quoted_word_after_the_start() {
        assert!(is_bulk_body(br#"{"requests":[]}"#));
        assert!(is_bulk_body(b"{'requests':[]}"));
        assert!(!is_bulk_body(br#""requests""#));
        assert!(!is_bulk_body(b"idsite=1&requests=2"));
        assert!(!is_bulk_body(b""));
    }

    #[test]
    fn strings_objects_and_scalars_become_requests() {
        let body =
            br#"{"requests":["?idsite=1&rec=1","http://x/matomo.php?idsite=2#frag","no-query","",
            {"idsite":3,"rec":"1"}, null, ["a"]], "token_auth":"abc"}"#;
        let bulk = parse_bulk(body, 100).expect("parses");
        assert_eq!(bulk.token_auth.as_deref(), Some("abc"));
        assert!(bulk.send_image);
        let as_json: Vec<Value> = bulk.requests.into_iter().map(Value::Object).collect();
        assert_eq!(
            as_json,
            vec![
                json!({"idsite":"1","rec":"1"}),
                json!({"idsite":"2"}),
                json!({"idsite":3,"rec":"1"}),
                json!({}),
                json!({"0":"a"}),
            ]
        );
    }

    #[test]
    fn send_image_and_token_follow_get_request_var() {
        let b = parse_bulk(br#"{"requests":[],"send_image":0,"token_auth":""}"#, 10).unwrap();
        assert!(!b.send_image);
        assert_eq!(b.token_auth, None);
        let b = parse_bulk(
            br#"{"requests":[],"send_image":"1","token_auth":["x"]}"#,
            10,
        )
        .unwrap();
        assert!(b.send_image);
        assert_eq!(b.token_auth, None);
    }

    #[test]
    fn line_breaks_are_removed_before_decoding() {
        let b = parse_bulk(b"  {\"requests\":\r\n[\"?idsite=1\"]}\n", 10).expect("parses");
        assert_eq!(b.requests.len(), 1);
    }

    #[test]
    fn errors_are_clear() {
        assert!(matches!(
            parse_bulk(b"{\"requests\":[", 10),
            Err(BulkError::NotJson(_))
        ));
        assert_eq!(
            parse_bulk(br#"{"requests":["?a=1","?a=2","?a=3"]}"#, 2),
            Err(BulkError::TooManyRequests { got: 3, max: 2 })
        );
        assert_eq!(parse_bulk(b"[1]", 2).map(|b| b.requests.len()), Ok(0));
    }
}
