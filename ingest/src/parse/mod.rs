//! Pure parsing of what a client sends to `matomo.php` into Matomo tracking requests.
//!
//! - [`phpquery`]: PHP's `parse_str`, the way `$_GET`/`$_POST` are filled.
//! - [`bulk`]: the JSON bulk body (`{"requests":[…],"token_auth":…}`), whose entries
//!   ([`bulk_entry`]) are parsed one at a time.
//! - [`single_request`]: one hit, the query string merged with a form body (`$_GET + $_POST`).
//!
//! No I/O and no clock here: every function maps bytes to typed values or a clear error, so the
//! parsers can be unit-, property- and fuzz-tested. The HTTP layer only wires them.

pub mod bulk;
pub mod bulk_entry;
pub mod phpquery;
#[cfg(test)]
mod proptests;

use matomo_wire::Params;

/// A key serde_json treats specially when it is the first key of an object and its `raw_value`
/// feature is on (axum turns it on for the whole workspace): the object is then replaced by the
/// JSON its string value holds. A parameter of that name would let a client rewrite a request
/// after edge validation, or make the entry undecodable, wherever a queue entry is decoded
/// into a `serde_json::Value`. No Matomo parameter has this name, so the parsers drop it (at
/// any depth) instead of queueing it.
pub const SERDE_RAW_VALUE_KEY: &str = "$serde_json::private::RawValue";

pub use bulk::{is_bulk_body, parse_bulk, BulkBody, BulkError};
pub use bulk_entry::{BulkEntry, EntryTooLarge};
pub use phpquery::parse_str;

/// One hit's parameters: `$_GET + $_POST` — the query string's parameters first, then the form
/// body's parameters whose names the query string does not have (the query string wins).
pub fn single_request(query: &[u8], form: Option<&[u8]>) -> Params {
    let mut params = parse_str(query);
    if let Some(form) = form {
        for (key, value) in parse_str(form) {
            params.entry(key).or_insert(value);
        }
    }
    params
}

/// Whether a `Content-Type` makes PHP fill `$_POST` from the body (form encoding).
pub fn is_form_content_type(content_type: &str) -> bool {
    content_type.split(';').next().is_some_and(|mime| {
        mime.trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}

/// `$request['send_image'] === '0'` on `$_GET + $_POST`: the hit asked for a 204, not the GIF.
pub fn wants_no_image(params: &Params) -> bool {
    params.get("send_image").and_then(|v| v.as_str()) == Some("0")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn query_wins_over_form_and_comes_first() {
        let p = single_request(b"idsite=1&rec=1", Some(b"idsite=2&url=http%3A%2F%2Fa%2F"));
        assert_eq!(
            serde_json::Value::Object(p),
            json!({"idsite":"1","rec":"1","url":"http://a/"})
        );
    }

    #[test]
    fn fuzz_crash_serde_raw_value_key_made_our_entry_undecodable() {
        // cargo fuzz (parse_request) found: a parameter named like serde_json's internal raw
        // value key, queued first in its object, made `decode` reparse its value as JSON.
        use crate::queue::{entries_for, Envelope, Routed, Routing};
        let params = single_request(SERDE_RAW_VALUE_KEY.as_bytes(), Some(b"idsite=1"));
        assert_eq!(
            serde_json::Value::Object(params.clone()),
            json!({"idsite":"1"})
        );
        let envelope = Envelope::default();
        let routing = Routing::default();
        let routed = [Routed {
            params: &params,
            ip: "192.0.2.1",
        }];
        let entries = entries_for(&routed, &envelope, routing, || "0".repeat(16));
        let set = matomo_wire::decode(&entries[0].bytes).expect("decodes");
        assert_eq!(set.requests, vec![params]);
    }

    #[test]
    fn form_content_types() {
        assert!(is_form_content_type(
            "application/x-www-form-urlencoded; charset=UTF-8"
        ));
        assert!(is_form_content_type("Application/X-WWW-Form-Urlencoded"));
        assert!(!is_form_content_type("application/json"));
        assert!(!is_form_content_type("text/plain"));
    }

    #[test]
    fn send_image_zero_is_exactly_the_string_zero() {
        assert!(wants_no_image(&single_request(b"send_image=0", None)));
        assert!(!wants_no_image(&single_request(b"send_image=00", None)));
        assert!(!wants_no_image(&single_request(b"send_image=", None)));
        assert!(!wants_no_image(&single_request(b"idsite=1", None)));
    }
}
