//! What Matomo does to the user agent and client hints before DeviceDetector sees them.
//!
//! Matomo reads both through `Common::getRequestVar`, which sanitises every string:
//! line breaks and NUL bytes removed, `html_entity_decode` then `htmlspecialchars(ENT_QUOTES)`.
//! So Matomo detects on `K&amp;M`, not `K&M`, and the stored columns can differ from
//! DeviceDetector's own fixtures (which use raw strings). The tracker must detect on the
//! sanitised values to store what Matomo stores; [`crate::DeviceDetector::detect_for_matomo`] does it.

use crate::hints::ClientHints;

/// Matomo's `Common::sanitizeInputValue` for one string.
///
/// `html_entity_decode` is reproduced for numeric entities and the entities that matter in
/// practice (`&amp; &lt; &gt; &quot; &#039; &nbsp;`); other HTML 4 named entities are left as
/// they are (they do not occur in real user agents).
pub fn sanitize_input_value(value: &str) -> String {
    // Nothing to remove, decode or escape (the common case): the value itself.
    if !value.contains(['\n', '\r', '\0', '&', '"', '\'', '<', '>']) {
        return value.to_owned();
    }
    let cleaned: String = value
        .chars()
        .filter(|c| !matches!(c, '\n' | '\r' | '\0'))
        .collect();
    let decoded = html_entity_decode(&cleaned);
    let mut out = String::with_capacity(decoded.len() + 8);
    for c in decoded.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#039;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => {}
            other => out.push(other),
        }
    }
    out
}

fn html_entity_decode(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('&') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        match decode_entity(tail) {
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
    out
}

/// One entity at the start of `s` (which starts with `&`): the character and the bytes used.
fn decode_entity(s: &str) -> Option<(char, usize)> {
    let end = s[1..].find(';')? + 1;
    if end > 12 {
        return None;
    }
    let name = &s[1..end];
    let c = match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "nbsp" => '\u{a0}',
        _ => {
            let num = name.strip_prefix('#')?;
            let code = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => num.parse::<u32>().ok()?,
            };
            // PHP leaves entities for NUL, surrogates and non-characters undecoded.
            if code == 0 {
                return None;
            }
            char::from_u32(code)?
        }
    };
    Some((c, end + 1))
}

impl ClientHints {
    /// The hints as Matomo hands them to DeviceDetector: every string sanitised like
    /// [`sanitize_input_value`] (Matomo sanitises the decoded `uadata` array and the headers).
    pub fn sanitized_for_matomo(&self) -> Self {
        let s = |v: &String| sanitize_input_value(v);
        Self {
            architecture: s(&self.architecture),
            bitness: s(&self.bitness),
            mobile: self.mobile,
            model: s(&self.model),
            platform: s(&self.platform),
            platform_version: s(&self.platform_version),
            ua_full_version: s(&self.ua_full_version),
            brands: self.brands.iter().map(|(b, v)| (s(b), s(v))).collect(),
            app: s(&self.app),
            form_factors: self.form_factors.iter().map(s).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_htmlspecialchars_after_decoding() {
        assert_eq!(sanitize_input_value("K&M"), "K&amp;M");
        assert_eq!(sanitize_input_value("K&amp;M"), "K&amp;M");
        assert_eq!(sanitize_input_value("a'b\"<c>"), "a&#039;b&quot;&lt;c&gt;");
        assert_eq!(sanitize_input_value("x\r\ny\0"), "xy");
        assert_eq!(
            sanitize_input_value("&#65;&#x42;&bogus;&"),
            "AB&amp;bogus;&amp;"
        );
        assert_eq!(
            sanitize_input_value("Mozilla/5.0 (X11)"),
            "Mozilla/5.0 (X11)"
        );
    }
}
