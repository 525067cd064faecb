//! Translation of a DeviceDetector PCRE pattern into a Rust `regex` pattern that matches a
//! superset of it, for the DFA prefilter in [`crate::scan`].
//!
//! The prefilter may only ever say "maybe" too often, never "no" wrongly, so every construct is
//! either translated to something at least as permissive or the pattern is refused (`None`) and
//! stays PCRE-only. Look-arounds become empty groups, atomic groups plain groups, possessive
//! quantifiers greedy ones; back-references, conditionals, recursion, verbs, `\Q…\E`, POSIX
//! classes, non-ASCII bytes in classes and other rarities are refused. The result is meant for
//! `regex::bytes` with `(?i-u)`: ASCII-only case folding and byte-wise `.`, as PHP's byte mode.

/// The translated pattern, or `None` when the pattern uses something not handled.
pub(crate) fn superset(pcre: &str) -> Option<String> {
    translate(pcre, false)
}

/// Like [`superset`], with every ASCII letter lowered: matched case-sensitively against the
/// ASCII-lowercased user agent it accepts whatever PCRE's caseless match accepts. Used for
/// literal extraction; refuses inline flag changes and ranges lowering would narrow.
pub(crate) fn lowercase_superset(pcre: &str) -> Option<String> {
    translate(pcre, true)
}

fn translate(pcre: &str, lower: bool) -> Option<String> {
    let chars: Vec<char> = pcre.chars().collect();
    let mut out = String::with_capacity(pcre.len() * 2);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                let next = *chars.get(i + 1)?;
                i += 2;
                match next {
                    'd' | 'D' | 'w' | 'W' | 's' | 'S' | 'b' | 'B' | 'n' | 'r' | 't' | 'f' => {
                        out.push('\\');
                        out.push(next);
                    }
                    'x' => {
                        let (text, used) = hex_escape(&chars[i..], lower)?;
                        out.push_str(&text);
                        i += used;
                    }
                    c if c.is_ascii_alphanumeric() => return None,
                    c if c.is_ascii() => push_byte_literal(&mut out, c),
                    c => {
                        if is_quantifier_start(&chars, i) {
                            return None;
                        }
                        out.push(c);
                    }
                }
            }
            '[' => {
                let (text, used) = class(&chars[i..], lower)?;
                out.push_str(&text);
                i += used;
            }
            '(' => {
                let (text, used) = group_open(&chars[i..])?;
                if lower && text.starts_with("(?") && !text.starts_with("(?:") {
                    return None;
                }
                out.push_str(&text);
                i += used;
            }
            ')' | '|' | '^' | '.' => {
                out.push(c);
                i += 1;
            }
            '$' => {
                // PCRE `$` (no multiline): at the end or before a final newline.
                out.push_str(r"(?:\n?\z)");
                i += 1;
            }
            '*' | '+' | '?' => {
                out.push(c);
                i += 1;
                i += quantifier_suffix(&chars, i, &mut out);
            }
            '{' => match counted_quantifier(&chars[i..]) {
                Some((text, used)) => {
                    out.push_str(&text);
                    i += used;
                    i += quantifier_suffix(&chars, i, &mut out);
                }
                None => {
                    // PCRE2 10.43+ also reads `{,n}` and spaced forms as quantifiers.
                    let end = chars[i..].iter().position(|&c| c == '}');
                    let looks_counted = end.is_some_and(|e| {
                        e > 1
                            && chars[i + 1..i + e]
                                .iter()
                                .all(|c| c.is_ascii_digit() || *c == ',' || *c == ' ')
                    });
                    if looks_counted {
                        return None;
                    }
                    push_byte_literal(&mut out, '{');
                    i += 1;
                }
            },
            c if c.is_ascii_alphanumeric() || c == ' ' => {
                out.push(if lower { c.to_ascii_lowercase() } else { c });
                i += 1;
            }
            c if c.is_ascii() => {
                push_byte_literal(&mut out, c);
                i += 1;
            }
            c => {
                // A multi-byte character: PCRE quantifies only its last byte.
                if is_quantifier_start(&chars, i + 1) {
                    return None;
                }
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

fn push_byte_literal(out: &mut String, c: char) {
    out.push_str(&format!(r"\x{{{:02X}}}", c as u32));
}

fn is_quantifier_start(chars: &[char], i: usize) -> bool {
    match chars.get(i) {
        Some('*' | '+' | '?') => true,
        Some('{') => counted_quantifier(&chars[i..]).is_some(),
        _ => false,
    }
}

/// Lazy `?` is kept; possessive `+` is dropped (greedy is a superset).
fn quantifier_suffix(chars: &[char], i: usize, out: &mut String) -> usize {
    match chars.get(i) {
        Some('?') => {
            out.push('?');
            1
        }
        Some('+') => 1,
        _ => 0,
    }
}

/// `{n}`, `{n,}`, `{n,m}` (PCRE treats anything else as literal text).
fn counted_quantifier(chars: &[char]) -> Option<(String, usize)> {
    let end = chars.iter().position(|&c| c == '}')?;
    let body: String = chars[1..end].iter().collect();
    let (min, max) = match body.split_once(',') {
        Some((a, b)) => (a, Some(b)),
        None => (body.as_str(), None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(min) || max.is_some_and(|m| !m.is_empty() && !digits(m)) {
        return None;
    }
    Some((format!("{{{body}}}"), end + 1))
}

/// `\xHH` or `\x{H…}` after the `\x` (already consumed); returns text and characters used.
fn hex_escape(chars: &[char], lower: bool) -> Option<(String, usize)> {
    let fold = |v: u32| {
        if lower && (0x41..=0x5A).contains(&v) {
            v + 0x20
        } else {
            v
        }
    };
    if chars.first() == Some(&'{') {
        let end = chars.iter().position(|&c| c == '}')?;
        let hex: String = chars[1..end].iter().collect();
        let v = u32::from_str_radix(&hex, 16).ok()?;
        if v > 0x7F {
            return None;
        }
        return Some((format!(r"\x{{{:02X}}}", fold(v)), end + 1));
    }
    let hex: String = chars
        .iter()
        .take(2)
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    let v = if hex.is_empty() {
        0
    } else {
        u32::from_str_radix(&hex, 16).ok()?
    };
    if v > 0x7F {
        return None;
    }
    Some((format!(r"\x{{{:02X}}}", fold(v)), hex.len()))
}

/// A character class starting at `[`.
fn class(chars: &[char], lower: bool) -> Option<(String, usize)> {
    let mut out = String::from("[");
    let mut i = 1;
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    let mut first = true;
    loop {
        let c = *chars.get(i)?;
        if c == ']' && !first {
            out.push(']');
            return Some((out, i + 1));
        }
        first = false;
        match c {
            '[' if chars.get(i + 1) == Some(&':') => return None,
            '\\' => {
                let next = *chars.get(i + 1)?;
                i += 2;
                match next {
                    'd' | 'D' | 'w' | 'W' | 's' | 'S' | 'n' | 'r' | 't' | 'f' => {
                        out.push('\\');
                        out.push(next);
                    }
                    'x' => {
                        let (text, used) = hex_escape(&chars[i..], lower)?;
                        out.push_str(&text);
                        i += used;
                    }
                    c if c.is_ascii_alphanumeric() => return None,
                    c if c.is_ascii() => push_byte_literal(&mut out, c),
                    _ => return None,
                }
            }
            '-' => {
                // A range dash between two items stays a range; elsewhere it is a literal.
                let at_end = chars.get(i + 1) == Some(&']');
                let at_start = out.ends_with('[') || out.ends_with("[^");
                if at_end || at_start {
                    push_byte_literal(&mut out, '-');
                } else {
                    // Lowering `A-z` to `a-z` would drop `[\]^_` and the backtick.
                    let from = chars[i - 1];
                    let to = *chars.get(i + 1)?;
                    if lower && from.is_ascii_uppercase() && !to.is_ascii_uppercase() {
                        return None;
                    }
                    out.push('-');
                }
                i += 1;
            }
            c if c.is_ascii_alphanumeric() || c == ' ' => {
                out.push(if lower { c.to_ascii_lowercase() } else { c });
                i += 1;
            }
            c if c.is_ascii() => {
                push_byte_literal(&mut out, c);
                i += 1;
            }
            _ => return None,
        }
    }
}

/// A group opening at `(`.
fn group_open(chars: &[char]) -> Option<(String, usize)> {
    if chars.get(1) != Some(&'?') {
        if chars.get(1) == Some(&'*') {
            return None;
        }
        return Some(("(?:".into(), 1));
    }
    match chars.get(2)? {
        ':' => Some(("(?:".into(), 3)),
        '>' => Some(("(?:".into(), 3)),
        '=' | '!' => Some(("(?:)".into(), skip_group(chars)?)),
        '<' => match chars.get(3)? {
            '=' | '!' => Some(("(?:)".into(), skip_group(chars)?)),
            _ => named_group(chars, 3, '>'),
        },
        'P' => match chars.get(3)? {
            '<' => named_group(chars, 4, '>'),
            _ => None,
        },
        '\'' => named_group(chars, 3, '\''),
        '#' => {
            let end = chars.iter().position(|&c| c == ')')?;
            Some(("(?:)".into(), end + 1))
        }
        _ => {
            // Inline flags: `(?i)`, `(?-i:…)`; only i, m, s are meant the same way.
            let mut j = 2;
            let mut flags = String::new();
            while let Some(&c) = chars.get(j) {
                match c {
                    'i' | 'm' | 's' | '-' => flags.push(c),
                    ')' | ':' => {
                        if flags.is_empty() {
                            return None;
                        }
                        return Some((format!("(?{flags}{c}"), j + 1));
                    }
                    _ => return None,
                }
                j += 1;
            }
            None
        }
    }
}

fn named_group(chars: &[char], start: usize, close: char) -> Option<(String, usize)> {
    let end = start + chars[start..].iter().position(|&c| c == close)?;
    if chars[start..end]
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == '_')
    {
        Some(("(?:".into(), end + 1))
    } else {
        None
    }
}

/// Length of a whole (balanced) group starting at `(`, honouring escapes and classes.
fn skip_group(chars: &[char]) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '[' => {
                let (_, used) = class(&chars[i..], false)?;
                i += used;
                continue;
            }
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re(p: &str) -> regex::bytes::Regex {
        let t = superset(p).unwrap_or_else(|| panic!("untranslated: {p}"));
        regex::bytes::Regex::new(&format!("(?i-u){t}")).unwrap_or_else(|e| panic!("{p} → {t}: {e}"))
    }

    #[test]
    fn translations_match_what_pcre_matches() {
        assert!(re(r"Chrome/(\d+[\.\d]+)").is_match(b"x chrome/12.0"));
        assert!(re(r"SM-G(?!9)\d{3}").is_match(b"SM-G973"));
        assert!(re(r"(?:BUZZ [1-5])(?:[);/ ]|$)").is_match(b"buzz 4"));
        assert!(re(r"[^A-Z0-9_-]foo").is_match(b" foo"));
        assert!(re(r"a]b[]x-]").is_match(b"a]b-"));
        assert!(re(r"\/\.\ \-").is_match(b"/. -"));
        assert!(re(r"x{2,}+y").is_match(b"xxy"));
        assert!(re(r"(?<name>ab)c").is_match(b"abc"));
        assert!(re(r"Krüger").is_match("Krüger".as_bytes()));
        assert!(re(r"a{b").is_match(b"a{b"));
        assert!(superset(r"a{,3}").is_none());
    }

    #[test]
    fn refuses_what_it_cannot_widen() {
        for p in [
            r"(a)\1",
            r"(?(1)a|b)",
            r"\Qx\E",
            r"[[:alpha:]]",
            r"ü+",
            r"[ü]",
            r"\p{L}",
            r"(*UTF)a",
        ] {
            assert!(superset(p).is_none(), "{p}");
        }
    }
}
