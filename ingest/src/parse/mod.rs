//! Pure parsing of what a client sends to `matomo.php` into Matomo tracking requests.
//!
//! - [`phpquery`]: PHP's `parse_str`, the way `$_GET`/`$_POST` are filled.
//! - [`bulk`]: the JSON bulk body (`{"requests":[…],"token_auth":…}`), whose entries
//!   ([`bulk_entry`]) are parsed one at a time.
//! - [`single_request`]: one hit, the query string merged with a form body (`$_GET + $_POST`).
//! - [`single_hit`]: the same hit as the handler reads it: a flat, borrowed list ([`flat`])
//!   unless a name is a PHP array, then [`single_request`]'s map.
//!
//! No I/O and no clock here: every function maps bytes to typed values or a clear error, so the
//! parsers can be unit-, property- and fuzz-tested. The HTTP layer only wires them.

pub mod bulk;
pub mod bulk_entry;
pub mod flat;
pub mod phpquery;
#[cfg(test)]
mod proptests;

use std::borrow::Cow;

use matomo_wire::{ParamLookup, Params, WritePhpArray};

/// A key serde_json treats specially when it is the first key of an object and its `raw_value`
/// feature is on (axum turns it on for the whole workspace): the object is then replaced by the
/// JSON its string value holds. A parameter of that name would let a client rewrite a request
/// after edge validation, or make the entry undecodable, wherever a queue entry is decoded
/// into a `serde_json::Value`. No Matomo parameter has this name, so the parsers drop it (at
/// any depth) instead of queueing it.
pub const SERDE_RAW_VALUE_KEY: &str = "$serde_json::private::RawValue";

pub use bulk::{is_bulk_body, parse_bulk, BulkBody, BulkError};
pub use bulk_entry::{BulkEntry, EntryTooLarge};
pub use flat::HitParams;
pub use phpquery::parse_str;

/// One hit's parameters as the single-hit path holds them. Both forms read and encode the same
/// as [`single_request`]'s map of the same request.
#[derive(Debug, Clone, PartialEq)]
pub enum Hit<'a> {
    /// No PHP array among the names (nearly every hit): a flat list borrowing the request.
    Flat(HitParams<'a>),
    /// Some name is a PHP array (`a[b]=…`): [`single_request`]'s map.
    Nested(Params),
}

impl Hit<'_> {
    /// The same parameters as [`single_request`]'s map.
    pub fn to_params(&self) -> Params {
        match self {
            Hit::Flat(flat) => flat.to_params(),
            Hit::Nested(params) => params.clone(),
        }
    }
}

impl ParamLookup for Hit<'_> {
    fn param(&self, key: &str) -> Option<Cow<'_, str>> {
        match self {
            Hit::Flat(flat) => flat.param(key),
            Hit::Nested(params) => params.param(key),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Hit::Flat(flat) => flat.is_empty(),
            Hit::Nested(params) => params.is_empty(),
        }
    }
}

impl WritePhpArray for Hit<'_> {
    fn write_php_array(&self, out: &mut String) {
        match self {
            Hit::Flat(flat) => flat.write_php_array(out),
            Hit::Nested(params) => params.write_php_array(out),
        }
    }
}

/// [`single_request`] for the handler: the flat list when neither part has a PHP array name
/// (nor more than [`flat::FLAT_MAX_PAIRS`] pairs), else the map.
pub fn single_hit<'a>(query: &'a [u8], form: Option<&'a [u8]>) -> Hit<'a> {
    if let Some(mut params) = flat::parse_flat(query) {
        match form.map(flat::parse_flat) {
            None => return Hit::Flat(params),
            Some(Some(form)) => {
                params.merge_form(form);
                return Hit::Flat(params);
            }
            Some(None) => {}
        }
    }
    Hit::Nested(single_request(query, form))
}

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
pub fn wants_no_image<P: ParamLookup + ?Sized>(params: &P) -> bool {
    params.param("send_image").as_deref() == Some("0")
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
