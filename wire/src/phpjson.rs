//! A JSON writer that produces what PHP's `json_encode` (default flags) produces for the same
//! data, so a PHP reader sees the entries it would have written itself.
//!
//! Differences from serde_json's default output: `/` is written `\/`; every non-ASCII character
//! is written as lowercase `\uXXXX` (astral characters as surrogate pairs); an object whose keys
//! are exactly `"0"`, `"1"`, … in order is a PHP list and is written as an array; an empty
//! object is an empty PHP array and is written `[]`.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::swar;

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
    write_entries(out, map.iter(), write_value);
}

/// Appends the PHP array of `entries` (key, value; in order, keys unique) as [`write_map`]
/// writes the map of the same entries: a JSON list when the keys are exactly `"0"`, `"1"`, …,
/// an object otherwise (`[]` when empty). `write_value` writes one value.
pub fn write_entries<K, V, I>(
    out: &mut String,
    entries: I,
    mut write_value: impl FnMut(&mut String, V),
) where
    K: AsRef<str>,
    I: Iterator<Item = (K, V)> + Clone,
{
    let is_list = entries
        .clone()
        .enumerate()
        .all(|(i, (k, _))| is_decimal_of(k.as_ref(), i));
    let (open, close) = if is_list { ('[', ']') } else { ('{', '}') };
    out.push(open);
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            out.push(',');
        }
        if !is_list {
            write_str(out, k.as_ref());
            out.push(':');
        }
        write_value(out, v);
    }
    out.push(close);
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

/// Whether `key` is `i` in decimal (`i.to_string()`), without allocating: PHP encodes an array
/// as a JSON list when its keys are exactly 0, 1, …, n−1 in order (an empty array included).
fn is_decimal_of(key: &str, i: usize) -> bool {
    key == itoa::Buffer::new().format(i)
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

/// How [`write_str`] writes each byte: `0` as it is, `b'u'` as `\uXXXX` (control characters;
/// bytes of non-ASCII characters), any other value `\` followed by that byte.
static ESCAPES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = match b as u8 {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            0x08 => b'b',
            0x0c => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x00..=0x1f | 0x80..=0xff => b'u',
            _ => 0,
        };
        b += 1;
    }
    table
};

/// Appends `s` as a PHP-escaped JSON string.
///
/// Runs of characters written as they are (printable ASCII but `"`, `\` and `/`) are copied
/// in one piece, found eight bytes at a time ([`next_escape`]); this is the hot loop of every
/// queue entry. Most strings of a hit (parameter names, numbers, server variable names) have
/// nothing to escape: that check and copy are inlined into the caller, the rest is
/// [`write_escaped`].
#[inline]
pub fn write_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let first = next_escape(s.as_bytes(), 0);
    if first == s.len() {
        out.push_str(s);
    } else {
        write_escaped(out, s, first);
    }
    out.push('"');
}

/// Appends `s` from its first byte to escape, `first`, on, copying the runs between escapes.
#[inline(never)]
fn write_escaped(out: &mut String, s: &str, first: usize) {
    let bytes = s.as_bytes();
    out.push_str(&s[..first]);
    let mut i = first;
    while let Some(&b) = bytes.get(i) {
        let escape = ESCAPES[usize::from(b)];
        let next = if escape == b'u' {
            // A control character or the first byte of a non-ASCII character (`i` is on a
            // character boundary: every byte before it was copied as ASCII or escaped whole).
            let c = s[i..].chars().next().unwrap_or('\u{fffd}');
            let mut units = [0u16; 2];
            for &unit in c.encode_utf16(&mut units).iter() {
                push_u_escape(out, unit);
            }
            i + c.len_utf8().max(1)
        } else {
            out.push('\\');
            out.push(char::from(escape));
            i + 1
        };
        i = next_escape(bytes, next);
        out.push_str(&s[next..i]);
    }
}

/// The index of the first byte at or after `from` that [`write_str`] escapes, or `bytes.len()`.
///
/// Eight bytes at a time (SWAR): a byte is flagged when its top bit is set (non-ASCII), when it
/// is below 0x20, or when it equals `"`, `\` or `/`. The subtractions can flag a byte falsely
/// only above (after) a truly flagged one, so the lowest flag is exact.
fn next_escape(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    while let Some(w) = swar::word_at(bytes, i) {
        let flags = (w & swar::HIGH)
            | swar::below(w, 0x20)
            | swar::equal(w, b'"')
            | swar::equal(w, b'\\')
            | swar::equal(w, b'/');
        if flags != 0 {
            return i + swar::first_flagged(flags);
        }
        i += 8;
    }
    bytes[i.min(bytes.len())..]
        .iter()
        .position(|&b| ESCAPES[usize::from(b)] != 0)
        .map_or(bytes.len(), |p| i + p)
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
    fn next_escape_finds_every_escaped_byte_at_every_position() {
        for len in [1, 7, 8, 9, 16, 17] {
            for pos in 0..len {
                for b in 0..=255u8 {
                    let mut bytes = vec![b'a'; len];
                    bytes[pos] = b;
                    let expected = if ESCAPES[usize::from(b)] != 0 {
                        pos
                    } else {
                        len
                    };
                    assert_eq!(
                        next_escape(&bytes, 0),
                        expected,
                        "byte {b:#x} at {pos}/{len}"
                    );
                    // A later escaped byte does not hide an earlier one, nor the reverse.
                    bytes[len - 1] = b'/';
                    let first = if ESCAPES[usize::from(b)] != 0 {
                        pos
                    } else {
                        len - 1
                    };
                    assert_eq!(next_escape(&bytes, 0), first, "byte {b:#x} at {pos}/{len}");
                    assert_eq!(next_escape(&bytes, pos.min(len - 1)), first.max(pos));
                }
            }
        }
        assert_eq!(next_escape(b"", 0), 0);
        assert_eq!(next_escape(b"abc", 3), 3);
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
