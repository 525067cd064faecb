//! One hit's parameters as a flat list in query order ([`HitParams`]), the single-hit path's
//! alternative to a [`Params`] map: names and values borrow from the request's bytes when
//! nothing needed decoding, so a hit costs one allocation instead of two and a SipHash per
//! parameter.
//!
//! [`parse_flat`] has exactly [`super::parse_str`]'s semantics (the same pair splitting,
//! decoding, name mangling, ISO-8859-1 fallback, reserved-name drop, and "a later duplicate
//! wins but keeps the first position") for requests whose names have no `[` (PHP arrays); for
//! those, and for requests with more than [`FLAT_MAX_PAIRS`] pairs (where a linear duplicate
//! check would cost more than a hash map), it declines and the caller uses `parse_str`.
//! Property tests (`super::proptests`) hold the two equal. Pure; never panics.

use std::borrow::Cow;

use matomo_wire::{phpjson, swar, ParamLookup, Params, WritePhpArray};
use serde_json::Value;

use matomo_wire::php::string_from_request_bytes;

use super::phpquery::{name_bounds, request_str, split_indexes, url_decode, MAX_INPUT_VARS};
use super::SERDE_RAW_VALUE_KEY;

/// Requests with more pairs than this are left to [`super::parse_str`].
pub const FLAT_MAX_PAIRS: usize = 128;
// So `max_input_vars` never binds here: `parse_flat` reads every pair.
const _: () = assert!(FLAT_MAX_PAIRS <= MAX_INPUT_VARS);

/// Byte classes of the single pass of [`parse_flat`] (0: an ordinary byte).
const AMP: u8 = 1;
const EQ: u8 = 2;
/// `+` or `%`: the part needs URL decoding.
const DECODE: u8 = 4;
/// NUL, space, `.` or `[`: in a name, these need PHP's name handling.
const NAME_SPECIAL: u8 = 8;

static CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    table[b'&' as usize] = AMP;
    table[b'=' as usize] = EQ;
    table[b'+' as usize] = DECODE;
    table[b'%' as usize] = DECODE;
    table[0] = NAME_SPECIAL;
    table[b' ' as usize] = NAME_SPECIAL;
    table[b'.' as usize] = NAME_SPECIAL;
    table[b'[' as usize] = NAME_SPECIAL;
    table
};

/// One hit's parameters: unique names in the order PHP's `$_GET` would list them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HitParams<'a> {
    pairs: Vec<Pair<'a>>,
    /// One bit per [`tag_bit`] of the names held: a name whose bit is clear is not here, so
    /// most lookups of an absent name and most new names skip the scan.
    tags_seen: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pair<'a> {
    /// [`tag`] of the name: most names differ here, so finding a name rarely compares strings.
    tag: u32,
    name: Cow<'a, str>,
    value: Cow<'a, str>,
}

/// Length, first, middle and last byte of a non-empty name, packed.
fn tag(name: &str) -> u32 {
    let b = name.as_bytes();
    match (b.first(), b.last()) {
        (Some(&first), Some(&last)) => {
            (b.len() as u32 & 0xff)
                | u32::from(first) << 8
                | u32::from(b[b.len() / 2]) << 16
                | u32::from(last) << 24
        }
        _ => 0,
    }
}

/// The bit of `tags_seen` for `tag`.
fn tag_bit(tag: u32) -> u64 {
    1 << (tag.wrapping_mul(0x9E37_79B9) >> 26)
}

impl<'a> HitParams<'a> {
    fn position(&self, name: &str) -> Option<usize> {
        self.position_tagged(name, tag(name))
    }

    /// [`Self::position`] of `name`, whose [`tag`] is `tag`.
    fn position_tagged(&self, name: &str, tag: u32) -> Option<usize> {
        if self.tags_seen & tag_bit(tag) == 0 {
            return None;
        }
        self.pairs
            .iter()
            .position(|p| p.tag == tag && p.name == name)
    }

    /// Stores `value` under `name`: a new name goes last, a known one keeps its place and takes
    /// the new value (PHP's `$_GET[$name] = $value`).
    fn set(&mut self, name: Cow<'a, str>, value: Cow<'a, str>) {
        let tag = tag(&name);
        match self.position_tagged(&name, tag) {
            Some(i) => self.pairs[i].value = value,
            None => self.push(Pair { tag, name, value }),
        }
    }

    fn push(&mut self, pair: Pair<'a>) {
        self.tags_seen |= tag_bit(pair.tag);
        self.pairs.push(pair);
    }

    /// `$_GET + $_POST`: appends the form's parameters whose names `self` (the query string's)
    /// does not have, in the form's order. (The form's names are unique, so the ones appended
    /// never match a later one.)
    pub fn merge_form(&mut self, form: HitParams<'a>) {
        for pair in form.pairs {
            if self.position_tagged(&pair.name, pair.tag).is_none() {
                self.push(pair);
            }
        }
    }

    /// `(name, value)` in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.pairs.iter().map(|p| (&*p.name, &*p.value))
    }

    /// The same parameters as the [`Params`] map [`super::parse_str`] builds.
    pub fn to_params(&self) -> Params {
        self.iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
            .collect()
    }
}

impl ParamLookup for HitParams<'_> {
    fn param(&self, key: &str) -> Option<Cow<'_, str>> {
        self.position(key)
            .map(|i| Cow::Borrowed(&*self.pairs[i].value))
    }

    fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

impl WritePhpArray for HitParams<'_> {
    fn write_php_array(&self, out: &mut String) {
        phpjson::write_entries(out, self.iter(), phpjson::write_str);
    }
}

/// What a raw name turns into.
enum Name<'a> {
    /// A plain parameter name (mangled, as a string).
    Plain(Cow<'a, str>),
    /// No name, or the reserved one: the pair is ignored.
    Skip,
    /// A PHP array name (`a[…]`): left to `parse_str`.
    Nested,
}

/// `php_register_variable_ex`'s name handling for a name without `[`.
fn name_of(key: Cow<'_, [u8]>) -> Name<'_> {
    let bounds = name_bounds(&key);
    let name = &key[bounds.clone()];
    if name.is_empty() {
        return Name::Skip;
    }
    if name.contains(&b'[') {
        return Name::Nested;
    }
    if name == SERDE_RAW_VALUE_KEY.as_bytes() {
        return Name::Skip;
    }
    // No `[`: the base name is the whole name with `.` and ` ` mangled to `_`.
    let base = match key {
        Cow::Borrowed(k) => split_indexes(&k[bounds]).0,
        Cow::Owned(ref k) => Cow::Owned(split_indexes(&k[bounds]).0.into_owned()),
    };
    Name::Plain(request_str(base))
}

/// The first index at or after `from` whose byte may have a [`CLASS`] (`input.len()` when
/// none): eight bytes at a time, a byte is a candidate when it is below `0` (0x30: NUL, space,
/// `%`, `&`, `+`, `.` and some ordinary ones, which the caller's table lookup passes over), `=`
/// or `[`. The lowest flag is exact ([`swar`]); the last few bytes are all candidates.
fn next_candidate(input: &[u8], from: usize) -> usize {
    let mut i = from;
    while let Some(w) = swar::word_at(input, i) {
        let flags = swar::below(w, b'0') | swar::equal(w, b'=') | swar::equal(w, b'[');
        if flags != 0 {
            return i + swar::first_flagged(flags);
        }
        i += 8;
    }
    i.min(input.len())
}

/// How many `&` `input` holds, eight bytes at a time.
pub(super) fn count_ampersands(input: &[u8]) -> usize {
    let mut chunks = input.chunks_exact(8);
    let mut count = 0;
    for chunk in &mut chunks {
        let w = u64::from_le_bytes(<[u8; 8]>::try_from(chunk).unwrap_or_default());
        count += swar::count_equal(w, b'&') as usize;
    }
    count + chunks.remainder().iter().filter(|&&b| b == b'&').count()
}

/// [`super::parse_str`] of `input` as a flat list, or `None` when a name is a PHP array or
/// there are more than [`FLAT_MAX_PAIRS`] pairs.
///
/// One pass over the bytes finds each pair's `=` and whether its name or value needs decoding
/// or name handling; UTF-8 is checked once for the whole input, so a plain name or value is a
/// slice of it.
pub fn parse_flat(input: &[u8]) -> Option<HitParams<'_>> {
    let pair_count = count_ampersands(input) + 1;
    if pair_count > FLAT_MAX_PAIRS {
        return None;
    }
    let text = std::str::from_utf8(input).ok();
    // A part between `&`/`=` delimiters (ASCII, so always a character boundary of `text`).
    let part = |range: std::ops::Range<usize>| match text.and_then(|t| t.get(range.clone())) {
        Some(s) => Cow::Borrowed(s),
        None => string_from_request_bytes(&input[range]),
    };
    let mut out = HitParams {
        pairs: Vec::with_capacity(pair_count),
        tags_seen: 0,
    };
    let mut start = 0;
    while start < input.len() {
        let (mut eq, mut name_class, mut value_class) = (None, 0, 0);
        let mut end = start;
        while end < input.len() {
            end = next_candidate(input, end);
            let Some(&b) = input.get(end) else { break };
            let class = CLASS[usize::from(b)];
            if class != 0 {
                if class == AMP {
                    break;
                }
                match eq {
                    None if class == EQ => eq = Some(end),
                    None => name_class |= class,
                    Some(_) => value_class |= class,
                }
            }
            end += 1;
        }
        let (name_end, value_start) = eq.map_or((end, end), |i| (i, i + 1));
        let next = end + 1;
        if end == start {
            // An empty pair (`&&`).
            start = next;
            continue;
        }
        let name = if name_class == 0 {
            match &input[start..name_end] {
                b"" => Name::Skip,
                raw if raw == SERDE_RAW_VALUE_KEY.as_bytes() => Name::Skip,
                _ => Name::Plain(part(start..name_end)),
            }
        } else if name_class & DECODE != 0 {
            name_of(Cow::Owned(url_decode(&input[start..name_end])))
        } else {
            name_of(Cow::Borrowed(&input[start..name_end]))
        };
        match name {
            Name::Plain(name) => {
                let value = if value_class & DECODE != 0 {
                    request_str(Cow::Owned(url_decode(&input[value_start..end])))
                } else {
                    part(value_start..end)
                };
                out.set(name, value);
            }
            Name::Skip => {}
            Name::Nested => return None,
        }
        start = next;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn flat(s: &str) -> Value {
        Value::Object(parse_flat(s.as_bytes()).expect("flat").to_params())
    }

    #[test]
    fn plain_names_borrow_the_request() {
        let input = b"idsite=1&url=http%3A%2F%2Fa%2F&a.b=c";
        let p = parse_flat(input).expect("flat");
        assert!(matches!(&p.pairs[0].name, Cow::Borrowed(_)));
        assert!(matches!(&p.pairs[0].value, Cow::Borrowed(_)));
        assert!(matches!(&p.pairs[1].value, Cow::Owned(_)));
        assert!(matches!(&p.pairs[2].name, Cow::Owned(_)));
        assert_eq!(p.param("url").as_deref(), Some("http://a/"));
        assert_eq!(p.param("a_b").as_deref(), Some("c"));
        assert_eq!(p.param("a.b"), None);
    }

    #[test]
    fn duplicates_names_and_encodings_as_parse_str() {
        assert_eq!(flat("a=1&b=2&a=3"), json!({"a":"3","b":"2"}));
        assert_eq!(
            flat("a.b=1&c d=2&%20e=3&=x&&f"),
            json!({"a_b":"1","c_d":"2","e":"3","f":""})
        );
        assert_eq!(flat("k%00junk=1&b=caf%E9"), json!({"k":"1","b":"café"}));
        assert_eq!(flat("caf%E9=1"), json!({"café":"1"}));
        let reserved = format!("{SERDE_RAW_VALUE_KEY}=1&idsite=1");
        assert_eq!(flat(&reserved), json!({"idsite":"1"}));
    }

    #[test]
    fn next_candidate_never_passes_a_classed_byte() {
        // Every byte value at every position of inputs around the eight-byte steps, after
        // filler that is ordinary (`a`), ordinary but flagged (`-`, below `0`) or non-ASCII;
        // the first byte with a class must never be skipped.
        for len in [1, 7, 8, 9, 15, 16, 17, 24] {
            for filler in [b'a', b'-', 0xe9] {
                for at in 0..len {
                    for b in 0..=255u8 {
                        let mut input = vec![filler; len];
                        input[at] = b;
                        let first = input
                            .iter()
                            .position(|&c| CLASS[usize::from(c)] != 0)
                            .unwrap_or(len);
                        let mut i = 0;
                        while i < len && CLASS[usize::from(input[i])] == 0 {
                            let next = next_candidate(&input, i);
                            assert!(next >= i && next <= first, "{input:?} from {i}");
                            i = next.max(i + 1);
                        }
                        assert_eq!(i.min(len), first, "{input:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn arrays_and_huge_requests_are_declined() {
        assert!(parse_flat(b"a[]=1").is_none());
        assert!(parse_flat(b"a%5Bb%5D=1").is_none());
        assert!(parse_flat(b"x[y=1").is_none());
        // A `[` in a value is just a character.
        assert!(parse_flat(b"a=[1]").is_some());
        let many = vec!["k=v"; FLAT_MAX_PAIRS + 1].join("&");
        assert!(parse_flat(many.as_bytes()).is_none());
        let most = vec!["k=v"; FLAT_MAX_PAIRS].join("&");
        assert!(parse_flat(most.as_bytes()).is_some());
    }

    #[test]
    fn the_form_fills_in_what_the_query_lacks() {
        let mut q = parse_flat(b"idsite=1&rec=1").expect("flat");
        q.merge_form(parse_flat(b"url=u&idsite=2&rec=0&x=1").expect("flat"));
        assert_eq!(
            Value::Object(q.to_params()),
            json!({"idsite":"1","rec":"1","url":"u","x":"1"})
        );
    }

    #[test]
    fn writes_what_write_map_writes() {
        for input in [
            "",
            "0=a&1=b",
            "1=a",
            "0=a&2=b",
            "idsite=1&url=http%3A%2F%2F%C3%A9",
        ] {
            let p = parse_flat(input.as_bytes()).expect("flat");
            let (mut ours, mut theirs) = (String::new(), String::new());
            p.write_php_array(&mut ours);
            phpjson::write_map(&mut theirs, &p.to_params());
            assert_eq!(ours, theirs, "{input}");
        }
    }
}
