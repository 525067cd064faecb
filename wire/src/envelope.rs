//! One queue entry: a QueuedTracking `RequestSet` state, and its codec.
//!
//! PHP writes `gzcompress(json_encode($requestSet->getState()))` with the state
//! `{"requests":[params…],"env":{"server":{…},"cookie":[…]},"tokenAuth":…,"time":…}` and reads
//! entries back with `gzuncompress`, falling back to the raw bytes when they are not compressed.
//! We write the same, plus one key of our own (`tierEntryId`, a unique id PHP ignores), and read
//! both forms. Decoding never panics and never allocates without bound.

use std::borrow::Cow;
use std::io::{Read as _, Write as _};

use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::Compression;
use serde_json::{Map, Value};
use sha1::{Digest as _, Sha1};

use crate::params::WritePhpArray;
use crate::phpjson;

/// One raw Matomo tracking request: parameter name → value, in the order received. Values are
/// strings for GET/POST hits and whatever JSON type a bulk request used for object entries.
pub type Params = Map<String, Value>;

/// Largest decompressed entry accepted (a guard against compression bombs).
pub const MAX_DECODED_BYTES: u64 = 64 * 1024 * 1024;

/// Key of the entry id we add to the state.
const ENTRY_ID_KEY: &str = "tierEntryId";

/// A decoded queue entry (PHP's `RequestSet` state).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequestSet {
    /// The tracking requests, in order.
    pub requests: Vec<Params>,
    /// `env.server`: the PHP `$_SERVER` variables the tracker needs (`REMOTE_ADDR`,
    /// `HTTP_USER_AGENT`, `HTTP_ACCEPT_LANGUAGE`, `HTTP_REFERER`, `REQUEST_TIME`, client hints…).
    pub server: Params,
    /// `env.cookie`: `$_COOKIE` (written `[]` when empty, as PHP does).
    pub cookie: Params,
    /// `tokenAuth`: the token sent with the request, `None` (PHP `false`/`null`) when none.
    pub token_auth: Option<String>,
    /// `time`: when the hit was received, in Unix seconds; PHP uses it as the requests' "now".
    pub time: i64,
    /// Our unique id of this entry (`tierEntryId`); `None` for entries PHP wrote.
    pub entry_id: Option<String>,
}

impl RequestSet {
    /// Everything but the requests, borrowed (for [`write_state_json`]).
    pub fn env(&self) -> StateEnv<'_> {
        StateEnv {
            server: &self.server,
            cookie: &self.cookie,
            token_auth: self.token_auth.as_deref(),
            time: self.time,
            entry_id: self.entry_id.as_deref(),
        }
    }
}

/// Why an entry could not be decoded. Permanent: the same bytes never decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// Neither valid zlib nor JSON.
    #[error("entry is not valid JSON (after zlib): {0}")]
    Json(String),
    /// The decompressed entry is larger than [`MAX_DECODED_BYTES`].
    #[error("entry decompresses to more than {MAX_DECODED_BYTES} bytes")]
    TooLarge,
    /// Valid JSON, but not a RequestSet state.
    #[error("entry is not a RequestSet state: {0}")]
    Shape(String),
}

/// A parameter as PHP's string cast gives it: strings as they are, integers and floats in
/// decimal, `true` as `"1"`, `false`/`null` as absent. Arrays and objects are absent.
pub fn param_str<'a>(params: &'a Params, key: &str) -> Option<Cow<'a, str>> {
    match params.get(key)? {
        Value::String(s) => Some(Cow::Borrowed(s.as_str())),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(true) => Some(Cow::Borrowed("1")),
        Value::Bool(false) | Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// Everything of a state but its requests, borrowed: what the ingest node has at hand when it
/// writes an entry, so it need not copy parameters into a [`RequestSet`] first.
#[derive(Debug, Clone, Copy)]
pub struct StateEnv<'a> {
    /// `env.server` (a [`Params`], or the ingest node's own flat list).
    pub server: &'a dyn WritePhpArray,
    /// `env.cookie`.
    pub cookie: &'a Params,
    /// `tokenAuth` (`None` is PHP's `false`).
    pub token_auth: Option<&'a str>,
    /// `time`.
    pub time: i64,
    /// `tierEntryId`, when the entry carries one.
    pub entry_id: Option<&'a str>,
}

/// Serialises the state exactly as PHP's `json_encode($requestSet->getState())` does, with our
/// entry id as an extra key at the end.
pub fn state_json(set: &RequestSet) -> String {
    let mut out = String::with_capacity(512);
    write_state_json(&mut out, &set.requests, &set.env());
    out
}

/// Appends the state of `requests` with `env` to `out`: the bytes [`state_json`] returns for the
/// same request set (it is written by this function).
pub fn write_state_json<'r, R: WritePhpArray + ?Sized + 'r>(
    out: &mut String,
    requests: impl IntoIterator<Item = &'r R>,
    env: &StateEnv<'_>,
) {
    out.push_str("{\"requests\":[");
    for (i, request) in requests.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        request.write_php_array(out);
    }
    out.push_str("],\"env\":{\"server\":");
    env.server.write_php_array(out);
    out.push_str(",\"cookie\":");
    phpjson::write_map(out, env.cookie);
    out.push_str("},\"tokenAuth\":");
    match env.token_auth {
        Some(token) => phpjson::write_str(out, token),
        None => out.push_str("false"),
    }
    out.push_str(",\"time\":");
    out.push_str(itoa::Buffer::new().format(env.time));
    if let Some(id) = env.entry_id {
        out.push_str(",\"");
        out.push_str(ENTRY_ID_KEY);
        out.push_str("\":");
        phpjson::write_str(out, id);
    }
    out.push('}');
}

/// Encodes an entry as QueuedTracking stores it: `gzcompress(json_encode(state))`.
pub fn encode(set: &RequestSet) -> Vec<u8> {
    let json = state_json(set);
    let mut encoder = ZlibEncoder::new(
        Vec::with_capacity(json.len() / 2 + 16),
        Compression::default(),
    );
    // Writing into a Vec cannot fail.
    encoder
        .write_all(json.as_bytes())
        .expect("in-memory zlib write");
    encoder.finish().expect("in-memory zlib finish")
}

/// Decodes an entry written by PHP or by us: zlib-compressed or raw JSON.
pub fn decode(bytes: &[u8]) -> Result<RequestSet, WireError> {
    let json = inflate_if_compressed(bytes)?;
    let value = crate::plain_json::from_slice(&json).map_err(|e| WireError::Json(e.to_string()))?;
    from_state(value)
}

/// `gzuncompress` with PHP's fallback to the raw bytes when they do not inflate.
fn inflate_if_compressed(bytes: &[u8]) -> Result<Cow<'_, [u8]>, WireError> {
    let looks_zlib = bytes.len() >= 2
        && bytes[0] & 0x0f == 8
        && (u16::from(bytes[0]) << 8 | u16::from(bytes[1])) % 31 == 0;
    if !looks_zlib {
        return Ok(Cow::Borrowed(bytes));
    }
    let mut out = Vec::with_capacity(bytes.len() * 4);
    let mut decoder = ZlibDecoder::new(bytes).take(MAX_DECODED_BYTES + 1);
    match decoder.read_to_end(&mut out) {
        Ok(_) if out.len() as u64 > MAX_DECODED_BYTES => Err(WireError::TooLarge),
        Ok(_) if !out.is_empty() => Ok(Cow::Owned(out)),
        _ => Ok(Cow::Borrowed(bytes)),
    }
}

fn from_state(value: Value) -> Result<RequestSet, WireError> {
    let Value::Object(mut state) = value else {
        return Err(WireError::Shape("the state is not a JSON object".into()));
    };
    let requests = match state.remove("requests") {
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .filter(|(_, v)| !is_php_empty_scalar(v))
            .map(|(i, v)| {
                php_array(v).ok_or_else(|| {
                    WireError::Shape(format!("requests[{i}] is not a parameter map"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(Value::Object(map)) => map
            .into_iter()
            .filter(|(_, v)| !is_php_empty_scalar(v))
            .map(|(k, v)| {
                php_array(v).ok_or_else(|| {
                    WireError::Shape(format!("requests[{k}] is not a parameter map"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(Value::Null) | None => Vec::new(),
        Some(_) => return Err(WireError::Shape("\"requests\" is not a list".into())),
    };
    let mut env = match state.remove("env") {
        Some(v) => php_array(v).ok_or_else(|| WireError::Shape("\"env\" is not a map".into()))?,
        None => return Err(WireError::Shape("\"env\" is missing".into())),
    };
    let server = env.remove("server").and_then(php_array).unwrap_or_default();
    let cookie = env.remove("cookie").and_then(php_array).unwrap_or_default();
    let token_auth = match state.remove("tokenAuth") {
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let time = match state.remove("time") {
        Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| WireError::Shape("\"time\" is missing or not a number".into()))?;
    let entry_id = match state.remove(ENTRY_ID_KEY) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    Ok(RequestSet {
        requests,
        server,
        cookie,
        token_auth,
        time,
        entry_id,
    })
}

/// PHP's `empty()` on a scalar request, which `RequestSet::setRequests` skips.
fn is_php_empty_scalar(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty() || s == "0",
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

/// A decoded PHP array: a JSON object, or a JSON list (keys become "0", "1", …).
fn php_array(v: Value) -> Option<Params> {
    match v {
        Value::Object(map) => Some(map),
        Value::Array(items) => Some(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), v))
                .collect(),
        ),
        _ => None,
    }
}

/// A stable id of a queue entry, for exactly-once processing: the hex SHA-1 of its bytes.
/// Entries we write carry a unique id inside, so two of ours never share a digest.
pub fn entry_digest(bytes: &[u8]) -> String {
    hex::encode(Sha1::digest(bytes))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sample() -> RequestSet {
        let request = json!({"idsite": "1", "rec": "1", "url": "http://example.com/a?b=c", "action_name": "Café"});
        let server = json!({"REMOTE_ADDR": "127.0.0.1", "HTTP_USER_AGENT": "Mozilla/5.0", "REQUEST_TIME": 1794269759});
        RequestSet {
            requests: vec![request.as_object().cloned().unwrap_or_default()],
            server: server.as_object().cloned().unwrap_or_default(),
            cookie: Params::new(),
            token_auth: None,
            time: 1794269759,
            entry_id: Some("0123456789abcdef".into()),
        }
    }

    #[test]
    fn a_parameter_named_like_serde_raw_value_decodes_as_php_reads_it() {
        // PHP's json_decode knows no special key; serde_json's Value (with its raw_value feature,
        // on in the workspace build) would replace this request by `{"idsite":"9"}`.
        let json = concat!(
            r#"{"requests":[{"$serde_json::private::RawValue":"{\"idsite\":\"9\"}","idsite":"1"}],"#,
            r#""env":{"server":{},"cookie":[]},"tokenAuth":false,"time":5}"#
        );
        let set = decode(json.as_bytes()).expect("decodes");
        assert_eq!(
            serde_json::Value::Object(set.requests[0].clone()),
            json!({"$serde_json::private::RawValue": "{\"idsite\":\"9\"}", "idsite": "1"})
        );
    }

    #[test]
    fn state_json_is_what_php_writes() {
        let mut set = sample();
        set.entry_id = None;
        assert_eq!(
            state_json(&set),
            concat!(
                r#"{"requests":[{"idsite":"1","rec":"1","url":"http:\/\/example.com\/a?b=c","action_name":"Caf\u00e9"}],"#,
                r#""env":{"server":{"REMOTE_ADDR":"127.0.0.1","HTTP_USER_AGENT":"Mozilla\/5.0","REQUEST_TIME":1794269759},"cookie":[]},"#,
                r#""tokenAuth":false,"time":1794269759}"#
            )
        );
    }

    #[test]
    fn encoded_entries_are_zlib_and_round_trip() {
        let set = sample();
        let bytes = encode(&set);
        assert_eq!(&bytes[..2], &[0x78, 0x9c]);
        assert_eq!(decode(&bytes), Ok(set));
    }

    #[test]
    fn raw_json_entries_are_accepted() {
        let mut set = sample();
        set.token_auth = Some("abc".into());
        let decoded = decode(state_json(&set).as_bytes()).expect("raw json decodes");
        assert_eq!(decoded, set);
    }

    #[test]
    fn php_entries_with_lists_and_empties_decode() {
        let raw = r#"{"requests":[["a"],"",{"idsite":1}],"env":{"server":[],"cookie":[]},"tokenAuth":null,"time":"5"}"#;
        let set = decode(raw.as_bytes()).expect("decodes");
        assert_eq!(set.requests.len(), 2);
        assert_eq!(set.requests[0].get("0"), Some(&json!("a")));
        assert_eq!(param_str(&set.requests[1], "idsite").as_deref(), Some("1"));
        assert_eq!(set.time, 5);
        assert_eq!(set.token_auth, None);
    }

    #[test]
    fn garbage_is_a_clear_error_not_a_panic() {
        assert!(matches!(decode(b""), Err(WireError::Json(_))));
        assert!(matches!(
            decode(b"\x78\x9c\x00\x01"),
            Err(WireError::Json(_))
        ));
        assert!(matches!(decode(b"[1,2]"), Err(WireError::Shape(_))));
        assert!(matches!(
            decode(br#"{"requests":[5],"env":{},"time":1}"#),
            Err(WireError::Shape(_))
        ));
        assert!(matches!(
            decode(br#"{"requests":[],"time":1}"#),
            Err(WireError::Shape(_))
        ));
    }

    #[test]
    fn compression_bombs_are_refused() {
        let mut encoder = ZlibEncoder::new(Vec::new(), Compression::best());
        let zeros = vec![b' '; 1024 * 1024];
        for _ in 0..(MAX_DECODED_BYTES / zeros.len() as u64 + 2) {
            encoder.write_all(&zeros).expect("write");
        }
        let bomb = encoder.finish().expect("finish");
        assert_eq!(decode(&bomb), Err(WireError::TooLarge));
    }

    #[test]
    fn digest_is_stable_and_distinguishes_entries() {
        let a = encode(&sample());
        let mut other = sample();
        other.entry_id = Some("fedcba9876543210".into());
        assert_eq!(entry_digest(&a), entry_digest(&a));
        assert_ne!(entry_digest(&a), entry_digest(&encode(&other)));
    }
}
