//! Braces as PCRE2 read them before 10.43, the versions PHP 8.2 and 8.3 run (10.40–10.42), on
//! the bundled 10.46.
//!
//! Before 10.43 only `{n}`, `{n,}` and `{n,m}`, digits and nothing else, are quantifiers; any
//! other `{` is literal text. 10.43 also reads `{,m}` and blanks (spaces, tabs) around the numbers
//! and the comma as quantifiers, and allows blanks inside the braces of `\x{…}`, `\o{…}`,
//! `\g{…}`, `\k{…}` and `\N{…}`, which 10.42 refuses. So [`as_before_10_43`] escapes every `{`
//! that only 10.43+ would read as a quantifier (it stays literal text), and refuses a pattern
//! with blanks in those escapes' braces or with `\N` quantified the new way, as PHP does.
//!
//! Escaping a `{` that is literal anyway changes nothing, inside a character class too, so the
//! scan only has to step over what is not pattern syntax: escapes (a backslash and its byte, the
//! braces of the escapes above and of `\p{…}` / `\P{…}`, `\c` and its byte, `\Q…\E`), comments
//! `(?#…)`, callout strings `(?C{…})` and verb names `(*MARK:…)`. Comments of the `x` modifier
//! (`# … newline`) are not followed: a `{,2}` in one is escaped, which a comment does not mind,
//! but a `\Q` or `\x{` in one would hide what follows (documented).

use std::borrow::Cow;

use super::PatternError;

/// A pattern body as PCRE2 10.46 must see it, and where backslashes were inserted.
pub(super) struct Rewritten<'a> {
    pub(super) body: Cow<'a, [u8]>,
    /// Offsets in `body` of the inserted backslashes, ascending.
    inserted: Vec<usize>,
}

impl Rewritten<'_> {
    /// An offset in the rewritten body as an offset in the pattern as written.
    pub(super) fn original_offset(&self, offset: usize) -> usize {
        offset - self.inserted.iter().take_while(|&&p| p < offset).count()
    }
}

/// See the module documentation.
pub(super) fn as_before_10_43(body: &[u8]) -> Result<Rewritten<'_>, PatternError> {
    let refuse = |offset: usize, message: &str| PatternError::Compile {
        offset,
        message: format!("{message} (PCRE2 before 10.43, which PHP 8.2 and 8.3 run, refuses it)"),
    };
    let mut out: Vec<u8> = Vec::new();
    let mut inserted = Vec::new();
    // How much of `body` is in `out` already (nothing is copied until a brace is escaped).
    let mut copied = 0;
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'\\' => {
                let next = body.get(i + 1).copied();
                let after = i + 2;
                i = match next {
                    // Literal text up to `\E` or the end of the pattern.
                    Some(b'Q') => find(body, after, b"\\E").map_or(body.len(), |e| e + 2),
                    Some(letter @ (b'x' | b'o' | b'g' | b'k' | b'N' | b'p' | b'P'))
                        if body.get(after) == Some(&b'{') =>
                    {
                        let close = find(body, after, b"}");
                        let inner = &body[after + 1..close.unwrap_or(body.len())];
                        // Property names are matched loosely since 10.40: blanks were fine.
                        if !matches!(letter, b'p' | b'P') && inner.iter().any(is_blank) {
                            return Err(refuse(i, "blanks inside the braces of an escape"));
                        }
                        if letter == b'N' && quantifies_since_10_43_only(&body[after + 1..]) {
                            return Err(refuse(i, "\\N with a quantifier of the new form"));
                        }
                        close.map_or(body.len(), |c| c + 1)
                    }
                    Some(b'c') => after + 1,
                    _ => after,
                };
            }
            b'(' => i = skip_non_syntax(body, i),
            b'{' if quantifies_since_10_43_only(&body[i + 1..]) => {
                out.extend_from_slice(&body[copied..i]);
                inserted.push(out.len());
                out.extend_from_slice(b"\\{");
                copied = i + 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    if inserted.is_empty() {
        return Ok(Rewritten {
            body: Cow::Borrowed(body),
            inserted,
        });
    }
    out.extend_from_slice(&body[copied..]);
    Ok(Rewritten {
        body: Cow::Owned(out),
        inserted,
    })
}

/// From the `(` at `open`: past a comment `(?#…)`, a callout string `(?C{…})` (or another of
/// its delimiters) or a verb name `(*MARK:…)`, where a `{` or a backslash is not pattern syntax;
/// just past the `(` otherwise.
fn skip_non_syntax(body: &[u8], open: usize) -> usize {
    let rest = &body[open + 1..];
    let to_close_paren = |from: usize| find(body, from, b")").map_or(body.len(), |c| c + 1);
    if rest.starts_with(b"?#") {
        return to_close_paren(open + 3);
    }
    if let Some(&delim) = rest.strip_prefix(b"?C").and_then(<[u8]>::first) {
        // Callout string delimiters; `{` closes with `}`, a doubled delimiter is one literal.
        let close = match delim {
            b'{' => b'}',
            b'`' | b'\'' | b'"' | b'^' | b'%' | b'#' | b'$' => delim,
            _ => return open + 1,
        };
        let mut j = open + 4;
        while j < body.len() {
            if body[j] == close {
                if close != b'}' && body.get(j + 1) == Some(&close) {
                    j += 2;
                    continue;
                }
                return j + 1;
            }
            j += 1;
        }
        return body.len();
    }
    if let Some(verb) = rest.strip_prefix(b"*") {
        // `(*:NAME)` and the verbs that take a name; other `(*…` items hold pattern syntax
        // (`(*pla:…)`) or none (`(*UTF)`).
        let named = [
            &b":"[..],
            b"MARK:",
            b"PRUNE:",
            b"SKIP:",
            b"THEN:",
            b"COMMIT:",
            b"ACCEPT:",
        ];
        if named.iter().any(|v| verb.starts_with(v)) {
            return to_close_paren(open + 2);
        }
    }
    open + 1
}

/// The index of the first `needle` at or after `from`.
fn find(body: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    body.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

fn is_blank(b: &u8) -> bool {
    *b == b' ' || *b == b'\t'
}

/// Whether `rest`, the text after a `{`, makes a quantifier for PCRE2 10.43+ (`{n}`, `{n,}`,
/// `{n,m}` or `{,m}`, blanks allowed around the numbers and the comma) but not for 10.42, where
/// only `{n}`, `{n,}` and `{n,m}` without any blank quantify.
fn quantifies_since_10_43_only(rest: &[u8]) -> bool {
    let Some(close) = rest.iter().position(|&b| b == b'}') else {
        return false;
    };
    let inner = &rest[..close];
    let comma = inner.iter().position(|&b| b == b',');
    // 10.43+: each side is blanks, digits, blanks; at least one side has digits.
    let part = |p: &[u8]| -> Option<bool> {
        let Some(first) = p.iter().position(|b| !is_blank(b)) else {
            return Some(false);
        };
        let last = p.iter().rposition(|b| !is_blank(b)).unwrap_or(first);
        p[first..=last]
            .iter()
            .all(u8::is_ascii_digit)
            .then_some(true)
    };
    let new_syntax = match comma {
        None => part(inner) == Some(true),
        Some(c) => match (part(&inner[..c]), part(&inner[c + 1..])) {
            (Some(min), Some(max)) => min || max,
            _ => false,
        },
    };
    let digits = |p: &[u8]| p.iter().all(u8::is_ascii_digit);
    let old_syntax = match comma {
        None => !inner.is_empty() && digits(inner),
        Some(c) => c > 0 && digits(&inner[..c]) && digits(&inner[c + 1..]),
    };
    new_syntax && !old_syntax
}
