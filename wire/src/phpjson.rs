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
///
/// Runs of characters written as they are (printable ASCII but `"`, `\\` and `/`) are copied
/// in one piece; this is the hot loop of every queue entry.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut run_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if (0x20..0x80).contains(&b) && b != b'"' && b != b'\\' && b != b'/' {
            i += 1;
            continue;
        }
        out.push_str(&s[run_start..i]);
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'/' => "\\/",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            _ => "",
        };
        if escape.is_empty() {
            // A control character or the first byte of a non-ASCII character (`i` is on a
            // character boundary: every byte before it in this loop was ASCII or a whole
            // character).
            let c = s[i..].chars().next().unwrap_or('\u{fffd}');
            let mut units = [0u16; 2];
            for &unit in c.encode_utf16(&mut units).iter() {
                push_u_escape(out, unit);
            }
            i += c.len_utf8().max(1);
        } else {
            out.push_str(escape);
            i += 1;
        }
        run_start = i;
    }
    out.push_str(&s[run_start..]);
    out.push('"');
}

/// Appends `\uXXXX` (lowercase hex), as PHP writes a UTF-16 code unit.
fn push_u_escape(out: &mut String, unit: u16) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push_str("\\u");
    for shift in [12, 8, 4, 0] {
        out.push(char::from(HEX[usize::from((unit >> shift) & 0xf)]));
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::any;
    use serde_json::json;

    use super::*;

    #[test]
    fn escapes_like_php() {
        assert_eq!(to_string(&json!("a/b")), r#""a\/b""#);
        assert_eq!(to_string(&json!("é€😀")), r#""\u00e9\u20ac\ud83d\ude00""#);
        assert_eq!(to_string(&json!("q\"\\\n\t\u{1}")), r#""q\"\\\n\t\u0001""#);
        assert_eq!(to_string(&json!("\u{7f}")), "\"\u{7f}\"");
    }

    /// The escaping rules one character at a time, as PHP states them.
    fn reference_escape(s: &str) -> String {
        let mut out = String::from("\"");
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
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    proptest::proptest! {
        #[test]
        fn runs_copied_whole_escape_as_char_by_char(s in any::<String>(), ascii in "[ -~]{0,40}") {
            for input in [s.as_str(), ascii.as_str(), &format!("{ascii}{s}{ascii}")] {
                let mut out = String::new();
                write_str(&mut out, input);
                proptest::prop_assert_eq!(out, reference_escape(input));
            }
        }
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
