//! A JSON writer that produces what PHP's `json_encode` (default flags) produces for the same
//! data, so a PHP reader sees the entries it would have written itself.
//!
//! Differences from serde_json's default output: `/` is written `\/`; every non-ASCII character
//! is written as lowercase `\uXXXX` (astral characters as surrogate pairs); an object whose keys
//! are exactly `"0"`, `"1"`, … in order is a PHP list and is written as an array; an empty
//! object is an empty PHP array and is written `[]`.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// Encodes `value` as PHP's `json_encode` would.
pub fn to_string(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    write_value(&mut out, value);
    out
}

/// Appends `value` to `out`.
pub fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => write_list(out, items.iter()),
        Value::Object(map) => write_map(out, map),
    }
}

/// Appends a PHP array with string keys (or a list, when the keys are 0..n in order).
pub fn write_map(out: &mut String, map: &Map<String, Value>) {
    if is_php_list(map) {
        write_list(out, map.values());
        return;
    }
    out.push('{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, k);
        out.push(':');
        write_value(out, v);
    }
    out.push('}');
}

fn write_list<'a>(out: &mut String, items: impl Iterator<Item = &'a Value>) {
    out.push('[');
    for (i, v) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_value(out, v);
    }
    out.push(']');
}

/// PHP encodes an array as a JSON list when its keys are exactly 0, 1, …, n−1 in order
/// (an empty array included).
fn is_php_list(map: &Map<String, Value>) -> bool {
    map.keys()
        .enumerate()
        .all(|(i, k)| k.parse::<usize>().ok() == Some(i) && k == &i.to_string())
}

fn write_number(out: &mut String, n: &serde_json::Number) {
    if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
        // PHP (serialize_precision = -1) writes the shortest round-trip form and keeps ".0"
        // on integral floats, as serde_json does.
        if f.is_finite() {
            let _ = write!(
                out,
                "{}",
                serde_json::Number::from_f64(f).unwrap_or_else(|| 0.into())
            );
        } else {
            out.push('0');
        }
    } else {
        let _ = write!(out, "{n}");
    }
}

/// Appends `s` as a PHP-escaped JSON string.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || (c as u32) >= 0x80 => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn escapes_like_php() {
        assert_eq!(to_string(&json!("a/b")), r#""a\/b""#);
        assert_eq!(to_string(&json!("é€😀")), r#""\u00e9\u20ac\ud83d\ude00""#);
        assert_eq!(to_string(&json!("q\"\\\n\t\u{1}")), r#""q\"\\\n\t\u0001""#);
        assert_eq!(to_string(&json!("\u{7f}")), "\"\u{7f}\"");
    }

    #[test]
    fn arrays_follow_php_rules() {
        assert_eq!(to_string(&json!({})), "[]");
        assert_eq!(to_string(&json!({"0": "a", "1": "b"})), r#"["a","b"]"#);
        assert_eq!(to_string(&json!({"1": "a"})), r#"{"1":"a"}"#);
        assert_eq!(to_string(&json!({"01": "a"})), r#"{"01":"a"}"#);
        assert_eq!(
            to_string(&json!({"idsite": "1", "n": 2, "f": 1.5, "t": true, "z": null})),
            r#"{"idsite":"1","n":2,"f":1.5,"t":true,"z":null}"#
        );
    }

    #[test]
    fn output_is_valid_json_that_reads_back_equal() {
        let v = json!({"requests": [{"url": "http://x/é?a=1&b=</script>"}], "e": [], "t": 1.25});
        let back: Value = serde_json::from_str(&to_string(&v)).expect("valid json");
        assert_eq!(back["requests"], v["requests"]);
        assert_eq!(back["t"], v["t"]);
    }
}
