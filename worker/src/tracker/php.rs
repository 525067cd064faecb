//! PHP semantics the tracker depends on: `Common::getRequestVar` typing (string / int / float /
//! json), PHP's numeric-string rules, `(int)` and `(float)` casts, `empty()`.
//!
//! Matomo reads every tracking parameter through `getRequestVar`, so a value such as `revenue=4,20`
//! or `e_v=1e3` is stored as PHP's casts make it (4 and 1000). Pure functions, no I/O.

use matomo_wire::php::decode_then_escape;
use serde_json::Value;

/// `Common::sanitizeInputValues` for one string (no line-break removal: that is
/// `sanitizeInputValue`, singular, used elsewhere): entities decoded, NUL removed, re-escaped.
pub fn sanitize_string(value: &str) -> String {
    sanitized_str(value).into_owned()
}

/// [`sanitize_string`] without a copy when nothing changes: only `&` (entities), NUL and
/// `" ' < >` are ever rewritten, and a numeric string (returned as it is) holds none of them.
pub fn sanitized_str(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['&', '\0', '"', '\'', '<', '>']) {
        return std::borrow::Cow::Borrowed(value);
    }
    std::borrow::Cow::Owned(decode_then_escape(value))
}

/// PHP 8 `is_numeric()` for a string: optional leading whitespace, sign, digits with an
/// optional fraction, optional exponent, optional trailing whitespace.
pub fn is_numeric(s: &str) -> bool {
    parse_numeric(s).is_some()
}

/// The value of a PHP numeric string, or None when PHP would not call it numeric.
pub fn parse_numeric(s: &str) -> Option<f64> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\u{b}', '\u{c}']);
    let t = t.trim_end_matches([' ', '\t', '\n', '\r', '\u{b}', '\u{c}']);
    if t.is_empty() {
        return None;
    }
    let b = t.as_bytes();
    let mut i = 0;
    if b[0] == b'+' || b[0] == b'-' {
        i = 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let fs = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = i - fs;
    }
    if int_digits + frac_digits == 0 {
        return None;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        let es = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > es {
            i = j;
        }
    }
    if i != b.len() {
        return None;
    }
    t.parse::<f64>().ok()
}

/// PHP's `(int)$string`: the leading numeric prefix, floats truncated, saturating.
pub fn php_intval(s: &str) -> i64 {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\u{b}', '\u{c}']);
    // longest numeric prefix
    let mut end = 0;
    for i in (1..=t.len()).rev() {
        if t.is_char_boundary(i) && parse_numeric(&t[..i]).is_some() {
            end = i;
            break;
        }
    }
    if end == 0 {
        return 0;
    }
    let prefix = &t[..end];
    if prefix.contains(['.', 'e', 'E']) {
        let f: f64 = prefix.parse().unwrap_or(0.0);
        if f.is_nan() {
            0
        } else {
            f as i64
        }
    } else {
        prefix.parse::<i64>().unwrap_or(if prefix.starts_with('-') {
            i64::MIN
        } else {
            i64::MAX
        })
    }
}

/// PHP's `(float)$string`: the leading numeric prefix, 0 when there is none.
pub fn php_floatval(s: &str) -> f64 {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\u{b}', '\u{c}']);
    for i in (1..=t.len()).rev() {
        if t.is_char_boundary(i) {
            if let Some(v) = parse_numeric(&t[..i]) {
                return v;
            }
        }
    }
    0.0
}

/// A raw parameter as PHP's `$_GET` would hold it: strings as they are, numbers in PHP's
/// string form, booleans as "1"/"", null as absent; arrays/objects are not strings.
pub fn raw_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(true) => Some("1".into()),
        Value::Bool(false) => Some(String::new()),
        _ => None,
    }
}

/// [`raw_string`] borrowed from a string value (the common case), owned otherwise.
fn raw_str(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        Value::String(s) => Some(std::borrow::Cow::Borrowed(s.as_str())),
        other => raw_string(other).map(std::borrow::Cow::Owned),
    }
}

/// `getRequestVar($name, '', 'string')`: None when absent or empty.
pub fn request_string(v: Option<&Value>) -> Option<String> {
    let raw = raw_str(v?)?;
    if raw.is_empty() {
        return None;
    }
    Some(sanitized_str(&raw).into_owned())
}

/// `getRequestVar($name, $default, 'int')`.
pub fn request_int(v: Option<&Value>, default: i64) -> i64 {
    let Some(raw) = v.and_then(raw_str) else {
        return default;
    };
    if raw.is_empty() {
        return default;
    }
    let value = sanitized_str(&raw);
    let cast = php_intval(&value);
    // `$value == (string)(int)$value` under PHP 8 comparison rules.
    let ok = match parse_numeric(&value) {
        Some(f) => f == cast as f64,
        None => value == cast.to_string(),
    };
    if ok {
        cast
    } else {
        default
    }
}

/// `getRequestVar($name, false, 'float')`: None when absent or empty; an invalid value becomes
/// `settype(false, 'float')`, i.e. 0.
pub fn request_float(v: Option<&Value>) -> Option<f64> {
    let raw = v.and_then(raw_str)?;
    if raw.is_empty() {
        return None;
    }
    Some(request_float_or(v, 0.0))
}

/// `getRequestVar($name, $default, 'float')` with a numeric default.
pub fn request_float_or(v: Option<&Value>, default: f64) -> f64 {
    let Some(raw) = v.and_then(raw_str) else {
        return default;
    };
    if raw.is_empty() {
        return default;
    }
    let value = sanitized_str(&raw);
    let compare = value.replace(',', ".");
    if !is_float_syntax(&compare) {
        return default;
    }
    php_floatval(&value)
}

/// Matomo's float regex `^[+-]?((\d+)|(\d*\.\d+)|(\d+\.\d*))([eE][+-]?\d+)?$`.
fn is_float_syntax(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let a = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = i - a;
    let mut frac = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let f = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac = i - f;
    }
    if int_digits + frac == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let e = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == e {
            return false;
        }
    }
    i == b.len()
}

/// `getRequestVar($name, '', 'json')`: a JSON string decoded (or a structured value taken as
/// is), then every string inside sanitised.
pub fn request_json(v: Option<&Value>) -> Option<Value> {
    let v = v?;
    let decoded = match v {
        Value::String(s) if s.is_empty() => return None,
        Value::String(s) => serde_json::from_str::<Value>(s).ok()?,
        other => other.clone(),
    };
    Some(sanitize_json(decoded))
}

fn sanitize_json(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(sanitize_string(&s)),
        Value::Array(a) => Value::Array(a.into_iter().map(sanitize_json).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (sanitize_string(&k), sanitize_json(v)))
                .collect(),
        ),
        other => other,
    }
}

/// PHP `empty()` on a string value.
pub fn empty_str(s: &str) -> bool {
    s.is_empty() || s == "0"
}

/// PHP `mb_substr($s, 0, $n)`.
pub fn mb_substr(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// PHP `trim()` default characters: space, \t, \n, \r, \0, \x0B.
pub fn php_trim(s: &str) -> &str {
    s.trim_matches([' ', '\t', '\n', '\r', '\0', '\u{b}'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use matomo_wire::php::{html_entity_decode, htmlspecialchars};
    use serde_json::json;

    #[test]
    fn int_rules_follow_php() {
        assert_eq!(request_int(Some(&json!("12")), -1), 12);
        assert_eq!(request_int(Some(&json!("12abc")), -1), -1);
        assert_eq!(request_int(Some(&json!("1.5")), -1), -1);
        assert_eq!(request_int(Some(&json!("")), 7), 7);
        assert_eq!(request_int(None, 7), 7);
        assert_eq!(request_int(Some(&json!(3)), 0), 3);
    }

    #[test]
    fn float_rules_follow_php() {
        assert_eq!(request_float(Some(&json!("4,20"))), Some(4.0));
        assert_eq!(request_float(Some(&json!("1E2"))), Some(100.0));
        assert_eq!(request_float(Some(&json!("abc"))), Some(0.0));
        assert_eq!(request_float(Some(&json!(""))), None);
        assert_eq!(request_float_or(Some(&json!("x")), 10.0), 10.0);
        assert_eq!(request_float(Some(&json!("-2.5"))), Some(-2.5));
    }

    #[test]
    fn strings_are_escaped_like_matomo() {
        assert_eq!(
            request_string(Some(&json!("a & <b>"))).unwrap(),
            "a &amp; &lt;b&gt;"
        );
        assert_eq!(
            request_string(Some(&json!("a &amp; b"))).unwrap(),
            "a &amp; b"
        );
        assert_eq!(request_string(Some(&json!("it's"))).unwrap(), "it&#039;s");
        assert_eq!(request_string(Some(&json!(""))), None);
    }

    proptest::proptest! {
        /// The copy-free path returns what the whole sanitising (numeric strings as they are,
        /// else entities decoded, NUL removed, re-escaped) returns.
        #[test]
        fn sanitized_str_is_the_full_sanitising(s in "[a-z0-9 .+eE&;#<>\"'\\x00-]{0,12}") {
            let full = if is_numeric(&s) {
                s.clone()
            } else {
                htmlspecialchars(&html_entity_decode(&s).replace('\0', "")).into_owned()
            };
            proptest::prop_assert_eq!(sanitized_str(&s).into_owned(), full);
        }
    }

    #[test]
    fn numeric_strings() {
        assert!(is_numeric(" 12"));
        assert!(is_numeric("1e3"));
        assert!(!is_numeric("1e"));
        assert!(!is_numeric("."));
        assert_eq!(php_intval("12abc"), 12);
        assert_eq!(php_floatval("4,20"), 4.0);
    }
}
