//! PHP's `parse_str` (how `$_GET` and `$_POST` are filled from a query string or a form body),
//! so the parameters we queue are the ones PHP would have queued.
//!
//! What PHP does, and so what we do: pairs split on `&`; `+` and `%XX` decoded in names and
//! values; leading spaces of a name dropped; `.` and ` ` in the base name turned into `_`;
//! `name[]` and `name[key]` build nested arrays (an unclosed `[` becomes `_`); a later
//! duplicate wins; at most [`MAX_INPUT_VARS`] pairs are read (PHP's `max_input_vars`), and a
//! name nested deeper than [`MAX_NESTING`] levels (`max_input_nesting_level`) is dropped together
//! with whatever its base name held, as PHP drops it. Bytes that are not UTF-8 are read as
//! ISO-8859-1, as Matomo does. A name that is (or nests) [`SERDE_RAW_VALUE_KEY`] is dropped.
//! Pure; never panics.

use std::borrow::Cow;

use matomo_wire::php::string_from_request_bytes;
use matomo_wire::Params;
use serde_json::Value;

use super::SERDE_RAW_VALUE_KEY;

/// PHP's default `max_input_vars`: pairs beyond it are ignored.
pub const MAX_INPUT_VARS: usize = 1000;
/// PHP's default `max_input_nesting_level`.
pub const MAX_NESTING: usize = 64;

/// Parses `input` (without the leading `?`) as PHP's `parse_str` does.
pub fn parse_str(input: &[u8]) -> Params {
    // Sized for every pair up front: no rehashing or regrowth while the map fills.
    let pair_count = input.iter().filter(|&&b| b == b'&').count() + 1;
    let mut out = Params::with_capacity(pair_count.min(MAX_INPUT_VARS));
    let pairs = input
        .split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .take(MAX_INPUT_VARS);
    for pair in pairs {
        let (raw_key, raw_value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        let key = url_decoded(raw_key);
        let value = request_string(url_decoded(raw_value));
        register(&mut out, &key, Value::String(value));
    }
    out
}

/// Where the name in a decoded raw name lies: it stops at a NUL byte, and leading spaces are
/// skipped. An empty range means no name (the pair is ignored).
pub(super) fn name_bounds(raw_name: &[u8]) -> std::ops::Range<usize> {
    let end = raw_name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(raw_name.len());
    let start = raw_name[..end]
        .iter()
        .position(|&b| b != b' ')
        .unwrap_or(end);
    start..end
}

/// [`url_decode`], borrowing `input` when there is nothing to decode (the common case).
fn url_decoded(input: &[u8]) -> Cow<'_, [u8]> {
    if input.iter().any(|&b| b == b'+' || b == b'%') {
        Cow::Owned(url_decode(input))
    } else {
        Cow::Borrowed(input)
    }
}

/// A decoded request value as a string (ISO-8859-1 when not UTF-8), reusing the decoded bytes'
/// allocation when there is one.
fn request_string(bytes: Cow<'_, [u8]>) -> String {
    request_str(bytes).into_owned()
}

/// [`request_string`], borrowing what it can: valid UTF-8 that needed no decoding stays a
/// slice of the request.
pub(super) fn request_str(bytes: Cow<'_, [u8]>) -> Cow<'_, str> {
    match bytes {
        Cow::Borrowed(b) => string_from_request_bytes(b),
        Cow::Owned(v) => Cow::Owned(
            String::from_utf8(v)
                .unwrap_or_else(|e| string_from_request_bytes(e.as_bytes()).into_owned()),
        ),
    }
}

/// PHP's `urldecode`: `+` is a space, `%XX` a byte; a malformed escape stays as it is.
pub fn url_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < input.len() => match (hex_val(input[i + 1]), hex_val(input[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// `php_register_variable_ex`: stores `value` under the (possibly bracketed) raw name.
fn register(out: &mut Params, raw_name: &[u8], value: Value) {
    let name = &raw_name[name_bounds(raw_name)];
    if name.is_empty() {
        return;
    }
    let (base, indexes) = split_indexes(name);
    if base.is_empty() {
        return;
    }
    let base = string_from_request_bytes(&base).into_owned();
    let reserved = |name: &[u8]| name == SERDE_RAW_VALUE_KEY.as_bytes();
    if reserved(base.as_bytes()) || indexes.iter().flatten().any(|i| reserved(i)) {
        return;
    }
    let Some(indexes) = indexes else {
        // Nested deeper than `max_input_nesting_level`: PHP drops the pair and deletes what the
        // base name already held.
        out.shift_remove(&base);
        return;
    };
    if indexes.is_empty() {
        out.insert(base, value);
        return;
    }
    let slot = out
        .entry(base)
        .and_modify(|v| {
            if !v.is_object() {
                *v = Value::Object(Params::new());
            }
        })
        .or_insert_with(|| Value::Object(Params::new()));
    insert_nested(slot, &indexes, value);
}

/// Splits `a.b[x][]` into the mangled base name `a_b` and the indexes `["x", ""]`; the indexes
/// are `None` when there are more than [`MAX_NESTING`] groups.
pub(super) fn split_indexes(name: &[u8]) -> (Cow<'_, [u8]>, Option<Vec<Vec<u8>>>) {
    if !name.iter().any(|&b| matches!(b, b'[' | b'.' | b' ')) {
        // A plain name (nearly every tracking parameter): nothing to mangle or split.
        return (Cow::Borrowed(name), Some(Vec::new()));
    }
    let (base, indexes) = split_bracketed(name);
    (Cow::Owned(base), indexes)
}

/// [`split_indexes`] of a name that has brackets, dots or spaces.
fn split_bracketed(name: &[u8]) -> (Vec<u8>, Option<Vec<Vec<u8>>>) {
    let mut base = Vec::with_capacity(name.len());
    let mut i = 0;
    let mut indexes = Vec::new();
    while i < name.len() {
        let b = name[i];
        if b == b'[' {
            if let Some(close) = name[i + 1..].iter().position(|&c| c == b']') {
                // Found the first index: parse the rest as a chain of [..] groups.
                indexes.push(name[i + 1..i + 1 + close].to_vec());
                let mut j = i + 1 + close + 1;
                while j < name.len() && name[j] == b'[' {
                    if indexes.len() == MAX_NESTING {
                        return (base, None);
                    }
                    match name[j + 1..].iter().position(|&c| c == b']') {
                        Some(c) => {
                            indexes.push(name[j + 1..j + 1 + c].to_vec());
                            j = j + 1 + c + 1;
                        }
                        None => break,
                    }
                }
                return (base, Some(indexes));
            }
            // An unclosed bracket: PHP turns it into `_` and keeps the rest literally.
            base.push(b'_');
            base.extend_from_slice(&name[i + 1..]);
            return (base, Some(indexes));
        }
        base.push(if b == b'.' || b == b' ' { b'_' } else { b });
        i += 1;
    }
    (base, Some(indexes))
}

fn insert_nested(slot: &mut Value, indexes: &[Vec<u8>], value: Value) {
    let Some((first, rest)) = indexes.split_first() else {
        *slot = value;
        return;
    };
    if !slot.is_object() {
        *slot = Value::Object(Params::new());
    }
    let Value::Object(map) = slot else { return };
    let key = if first.is_empty() {
        next_index(map).to_string()
    } else {
        php_array_key(&string_from_request_bytes(first))
    };
    if rest.is_empty() {
        map.insert(key, value);
    } else {
        let child = map
            .entry(key)
            .or_insert_with(|| Value::Object(Params::new()));
        insert_nested(child, rest, value);
    }
}

/// The next integer key PHP's `$a[] = …` uses: one more than the largest integer key, or 0.
fn next_index(map: &Params) -> i64 {
    map.keys()
        .filter_map(|k| canonical_int(k))
        .max()
        .map_or(0, |m| m.saturating_add(1))
}

/// PHP array keys: a decimal integer string in canonical form becomes that integer.
fn php_array_key(key: &str) -> String {
    match canonical_int(key) {
        Some(n) => n.to_string(),
        None => key.to_owned(),
    }
}

fn canonical_int(key: &str) -> Option<i64> {
    let n: i64 = key.parse().ok()?;
    (n.to_string() == key).then_some(n)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parsed(s: &str) -> Value {
        Value::Object(parse_str(s.as_bytes()))
    }

    #[test]
    fn plain_pairs_decode_and_keep_order() {
        assert_eq!(
            parsed("idsite=1&rec=1&url=http%3A%2F%2Fa.b%2F%3Fx%3Dy&action_name=A+b%20c"),
            json!({"idsite":"1","rec":"1","url":"http://a.b/?x=y","action_name":"A b c"})
        );
    }

    #[test]
    fn later_duplicates_win_but_keep_first_position() {
        assert_eq!(parsed("a=1&b=2&a=3"), json!({"a":"3","b":"2"}));
    }

    #[test]
    fn names_are_mangled_like_php() {
        assert_eq!(
            parsed("a.b=1&c d=2&%20e=3"),
            json!({"a_b":"1","c_d":"2","e":"3"})
        );
        assert_eq!(parsed("x[y=1"), json!({"x_y":"1"}));
        assert_eq!(parsed("=1&&b"), json!({"b":""}));
    }

    #[test]
    fn brackets_build_arrays() {
        assert_eq!(
            parsed("a[]=1&a[]=2&b[k]=v&b[5]=x&b[]=y&c[d][e]=f"),
            json!({"a":{"0":"1","1":"2"},"b":{"k":"v","5":"x","6":"y"},"c":{"d":{"e":"f"}}})
        );
        // A scalar is replaced by an array when brackets follow.
        assert_eq!(parsed("a=1&a[]=2"), json!({"a":{"0":"2"}}));
        // Text after a closing bracket that is not another group is ignored.
        assert_eq!(parsed("a[x]junk[y]=1"), json!({"a":{"x":"1"}}));
    }

    #[test]
    fn malformed_escapes_stay_and_latin1_is_read() {
        assert_eq!(
            parsed("a=%zz%4&b=caf%E9&c=%"),
            json!({"a":"%zz%4","b":"café","c":"%"})
        );
    }

    #[test]
    fn names_nested_too_deep_are_dropped_with_their_base() {
        // PHP's tests/basic/027.phpt, at the default limit of 64 levels.
        let deep = "[]".repeat(MAX_NESTING + 1);
        let input = format!("a=1&c=0&c{deep}=123&d=123&e[][]][]=3");
        assert_eq!(
            parsed(&input),
            json!({"a":"1","d":"123","e":{"0":{"0":"3"}}})
        );
        let at_limit = parsed(&format!("c{}=x", "[]".repeat(MAX_NESTING)));
        let mut level = &at_limit["c"];
        for _ in 1..MAX_NESTING {
            level = &level["0"];
        }
        assert_eq!(level["0"], json!("x"));
        // 100k unclosed groups: no recursion, no panic.
        let huge = format!("z{}=1&y=2", "[".repeat(100_000));
        assert_eq!(parse_str(huge.as_bytes()).len(), 2);
    }

    #[test]
    fn the_serde_raw_value_key_is_dropped_at_any_depth() {
        let input = format!(
            "{k}=%7B%7D&a[{k}]=1&a[b]=2&{k}[x]=3&idsite=1",
            k = SERDE_RAW_VALUE_KEY
        );
        assert_eq!(parsed(&input), json!({"a":{"b":"2"},"idsite":"1"}));
    }

    #[test]
    fn only_max_input_vars_pairs_are_read() {
        let many: Vec<String> = (0..MAX_INPUT_VARS + 5).map(|i| format!("k{i}=v")).collect();
        assert_eq!(parse_str(many.join("&").as_bytes()).len(), MAX_INPUT_VARS);
    }
}
