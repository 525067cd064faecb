//! PHP string functions whose exact behaviour the tier must reproduce: Matomo's
//! `Common::sanitizeInputValue` (line breaks and NUL bytes removed, `html_entity_decode` then
//! `htmlspecialchars`, both with `ENT_QUOTES` and the HTML 4.01 table), and the way PHP turns a
//! request's raw bytes into a string.
//!
//! Ingest needs these to route a `uid` to the same shard PHP would; the worker needs them for
//! every stored value. Pure functions, no I/O.

use std::borrow::Cow;

use crate::entities::HTML401_ENTITIES;

/// Matomo's `Common::sanitizeInputValue` for one string value.
///
/// `\n` and `\r` are removed, entities are decoded (`html_entity_decode(ENT_QUOTES)`), NUL bytes
/// removed, then `& " ' < >` are escaped (`htmlspecialchars(ENT_QUOTES)`: `&amp; &quot; &#039;
/// &lt; &gt;`).
pub fn sanitize_input_value(value: &str) -> String {
    let no_breaks: Cow<'_, str> = if value.contains(['\n', '\r']) {
        Cow::Owned(value.replace(['\n', '\r'], ""))
    } else {
        Cow::Borrowed(value)
    };
    decode_then_escape(&no_breaks)
}

/// `htmlspecialchars(str_replace("\0", "", html_entity_decode($s)), ENT_QUOTES)` in one pass:
/// each entity is decoded and the character escaped at once, NUL bytes dropped. The same as
/// the three steps, because escaping works character by character and a decoded entity is never
/// NUL ([`html401_allows`]).
pub fn decode_then_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 16);
    let mut rest = value;
    while let Some(pos) = rest.find(['&', '\0', '"', '\'', '<', '>']) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        let (c, len) = match tail.as_bytes()[0] {
            b'&' => decode_entity_at(tail).unwrap_or(('&', 1)),
            b => (char::from(b), 1),
        };
        if c != '\0' {
            push_escaped(&mut out, c);
        }
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

/// [`sanitize_input_value`] without a copy when there is nothing to change (no line break, NUL,
/// `&`, quote, `<` or `>`: the common case for tracking parameters).
pub fn sanitized(value: Cow<'_, str>) -> Cow<'_, str> {
    if value.contains(['\n', '\r', '\0', '&', '"', '\'', '<', '>']) {
        Cow::Owned(sanitize_input_value(&value))
    } else {
        value
    }
}

/// PHP's `htmlspecialchars($s, ENT_QUOTES)` on valid UTF-8 (double encoding on).
pub fn htmlspecialchars(value: &str) -> Cow<'_, str> {
    if !value.contains(['&', '"', '\'', '<', '>']) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 16);
    for c in value.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

/// Appends `c` as `htmlspecialchars(ENT_QUOTES)` writes it.
fn push_escaped(out: &mut String, c: char) {
    match c {
        '&' => out.push_str("&amp;"),
        '"' => out.push_str("&quot;"),
        '\'' => out.push_str("&#039;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        c => out.push(c),
    }
}

/// PHP's `htmlspecialchars_decode($s, ENT_QUOTES)` (Matomo's `Common::unsanitizeInputValue`):
/// decodes only `&amp; &quot; &#039; &#39; &#x27; &lt; &gt;`.
pub fn htmlspecialchars_decode(value: &str) -> Cow<'_, str> {
    if !value.contains('&') {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find('&') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        let mut matched = false;
        for (entity, c) in [
            ("&amp;", '&'),
            ("&quot;", '"'),
            ("&#039;", '\''),
            ("&#39;", '\''),
            ("&#x27;", '\''),
            ("&#X27;", '\''),
            ("&lt;", '<'),
            ("&gt;", '>'),
        ] {
            if let Some(after) = tail.strip_prefix(entity) {
                out.push(c);
                rest = after;
                matched = true;
                break;
            }
        }
        if !matched {
            out.push('&');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// PHP's `html_entity_decode($s, ENT_QUOTES, 'UTF-8')` with the HTML 4.01 document type: named
/// entities of HTML 4.01 and numeric entities (`&#NN;`, `&#xHH;`) of code points allowed in
/// HTML 4.01 are decoded; anything else is left as written.
pub fn html_entity_decode(value: &str) -> Cow<'_, str> {
    if !value.contains('&') {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find('&') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        match decode_entity_at(tail) {
            Some((c, len)) => {
                out.push(c);
                rest = &tail[len..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Decodes the entity at the start of `s` (which starts with `&`), returning the character and
/// the entity's length in bytes.
fn decode_entity_at(s: &str) -> Option<(char, usize)> {
    let body = &s[1..];
    let end = body.find(';')?;
    let name = &body[..end];
    let len = end + 2;
    if let Some(num) = name.strip_prefix('#') {
        let code = if let Some(hex) = num.strip_prefix(['x', 'X']) {
            if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) || hex.len() > 8 {
                return None;
            }
            u32::from_str_radix(hex, 16).ok()?
        } else {
            if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) || num.len() > 10 {
                return None;
            }
            num.parse::<u64>()
                .ok()
                .and_then(|n| u32::try_from(n).ok())?
        };
        if !html401_allows(code) {
            return None;
        }
        return char::from_u32(code).map(|c| (c, len));
    }
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    HTML401_ENTITIES
        .binary_search_by(|(n, _)| n.as_bytes().cmp(name.as_bytes()))
        .ok()
        .map(|i| (HTML401_ENTITIES[i].1, len))
}

/// The code points PHP lets a numeric entity decode to in an HTML 4.01 document.
fn html401_allows(cp: u32) -> bool {
    (0x20..=0x7E).contains(&cp)
        || cp == 0x0A
        || cp == 0x09
        || cp == 0x0D
        || (0xA0..=0xD7FF).contains(&cp)
        || ((0xE000..=0x10FFFF).contains(&cp)
            && (cp & 0xFFFF) < 0xFFFE
            && !(0xFDD0..=0xFDEF).contains(&cp))
}

/// Turns raw request bytes into the string Matomo ends up storing: valid UTF-8 is kept; anything
/// else is read as ISO-8859-1, which is what `Common::sanitizeInputValue` does (`utf8_encode`)
/// when `htmlspecialchars` rejects its input.
pub fn string_from_request_bytes(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(bytes.iter().map(|&b| b as char).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn decode_then_escape_is_the_three_steps(s in "([a-z0-9 ;#&<>\"'\\x00\n]|&amp;|&lt;|&#0?39;|&#x3C;|&nbsp;|&eacute;|&#0;){0,10}") {
            let three = htmlspecialchars(&html_entity_decode(&s).replace('\0', "")).into_owned();
            proptest::prop_assert_eq!(decode_then_escape(&s), three);
        }
    }

    #[test]
    fn sanitized_is_sanitize_input_value() {
        for v in [
            "",
            "abc",
            "a&amp;b",
            "a\nb",
            "x\0y",
            "<b>",
            "it's",
            "caf\u{e9}",
            "&#x1F600;",
        ] {
            assert_eq!(
                sanitized(Cow::Borrowed(v)),
                sanitize_input_value(v),
                "{v:?}"
            );
        }
        assert!(matches!(
            sanitized(Cow::Borrowed("7cb66ae00cf4c764")),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn escapes_like_htmlspecialchars_ent_quotes() {
        assert_eq!(
            sanitize_input_value("a & b <c> \"d\" 'e'"),
            "a &amp; b &lt;c&gt; &quot;d&quot; &#039;e&#039;"
        );
    }

    #[test]
    fn decodes_before_escaping_so_nothing_is_double_escaped() {
        assert_eq!(sanitize_input_value("a &amp; b"), "a &amp; b");
        assert_eq!(sanitize_input_value("&lt;script&gt;"), "&lt;script&gt;");
        assert_eq!(
            sanitize_input_value("caf&eacute; &#8364; &#x1F600;"),
            "café € 😀"
        );
    }

    #[test]
    fn leaves_unknown_and_disallowed_entities_alone() {
        // &apos; is not an HTML 4.01 entity; &#0; and &#xD800; are not allowed code points.
        assert_eq!(
            html_entity_decode("&apos; &#0; &#xD800; &bogus; &#;"),
            "&apos; &#0; &#xD800; &bogus; &#;"
        );
        assert_eq!(sanitize_input_value("&apos;"), "&amp;apos;");
    }

    #[test]
    fn removes_line_breaks_and_nul_bytes() {
        assert_eq!(sanitize_input_value("a\nb\r\nc\0d"), "abcd");
        assert_eq!(sanitize_input_value("x&#10;y"), "x\ny");
    }

    #[test]
    fn unsanitize_reverses_only_special_chars() {
        assert_eq!(
            htmlspecialchars_decode("&lt;a&gt; &amp;eacute; &#039; &#39;"),
            "<a> &eacute; ' '"
        );
    }

    #[test]
    fn invalid_utf8_reads_as_latin1() {
        assert_eq!(string_from_request_bytes(b"caf\xe9"), "café");
        assert_eq!(string_from_request_bytes("café".as_bytes()), "café");
    }

    #[test]
    fn entity_table_is_sorted_for_binary_search() {
        assert!(HTML401_ENTITIES
            .windows(2)
            .all(|w| w[0].0.as_bytes() < w[1].0.as_bytes()));
        assert_eq!(HTML401_ENTITIES.len(), 252);
    }
}
