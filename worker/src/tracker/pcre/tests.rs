//! PHP's delimiter and modifier rules, PCRE's byte mode and PCRE-only constructs, limits, and
//! the capture read-out, each as PHP 8's `preg_match` answers them.

use std::sync::Arc;

use proptest::prelude::*;

use super::{PatternError, PhpRegex};

fn re(pattern: &str) -> PhpRegex {
    PhpRegex::new(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"))
}

fn matches(pattern: &str, subject: &str) -> bool {
    re(pattern).is_match(subject.as_bytes())
}

#[test]
fn delimiters_as_php_reads_them() {
    assert!(matches("/a/", "xa"));
    assert!(matches("#^/a#", "/ab"));
    assert!(matches("{a{1}}", "a"), "nested braces count");
    assert!(matches("(a(b)c)", "abc"));
    assert!(matches("[a]", "a"));
    assert!(matches("<a>", "a"));
    assert!(
        matches(" \t\n\x0b/a/", "a"),
        "leading whitespace, vertical tab included"
    );
    assert!(
        matches(r"/a\/b/", "a/b"),
        "an escaped delimiter is part of the body"
    );
    assert!(
        matches(")a)", "a"),
        "a closing bracket opens and closes itself"
    );
    assert!(matches("//", "anything"), "an empty body matches");
    assert_eq!(PhpRegex::new("").unwrap_err(), PatternError::Empty);
    assert_eq!(PhpRegex::new("  ").unwrap_err(), PatternError::Empty);
    assert_eq!(PhpRegex::new("bot").unwrap_err(), PatternError::Delimiter);
    assert_eq!(PhpRegex::new(r"\a\").unwrap_err(), PatternError::Delimiter);
    assert_eq!(PhpRegex::new("\0a\0").unwrap_err(), PatternError::Delimiter);
    assert_eq!(PhpRegex::new("/abc").unwrap_err(), PatternError::NoEnd);
    assert_eq!(PhpRegex::new(r"/abc\/").unwrap_err(), PatternError::NoEnd);
    assert_eq!(PhpRegex::new("{a{b}").unwrap_err(), PatternError::NoEnd);
    assert!(
        matches(r"(a\))", "a)"),
        "an escaped closing bracket does not close"
    );
    // A multi-byte delimiter is its first byte: the second byte, after the closing one, is an
    // unknown modifier.
    assert!(matches!(
        PhpRegex::new("\u{a7}a\u{a7}"),
        Err(PatternError::Modifier(_))
    ));
    assert_eq!(re("/a/i").as_str(), "/a/i");
}

#[test]
fn modifiers_as_php_maps_them() {
    assert!(matches("/A/i", "a"));
    assert!(!matches("/A/", "a"));
    assert!(matches("/^b/m", "a\nb"));
    assert!(matches("/a.b/s", "a\nb"));
    assert!(!matches("/a.b/", "a\nb"));
    assert!(matches("/a b # comment/x", "ab"));
    assert!(
        matches("/a/ S X\n\r", "a"),
        "S, X, spaces and newlines are accepted"
    );
    // A: anchored at the start; D: `$` only at the very end.
    assert!(!matches("/b/A", "ab"));
    assert!(matches("/b/A", "ba"));
    assert!(matches("/a$/", "a\n"));
    assert!(!matches("/a$/D", "a\n"));
    assert!(matches("/a$/Dm", "a\n"), "D is ignored with m");
    // U: quantifiers lazy by default.
    assert_eq!(re("/(a+)/U").first_group(b"aaa"), Some(Some(&b"a"[..])));
    assert_eq!(re("/(a+)/").first_group(b"aaa"), Some(Some(&b"aaa"[..])));
    // J: duplicate names; n: no automatic captures.
    assert!(PhpRegex::new("/(?<n>a)|(?<n>b)/").is_err());
    assert!(matches("/(?<n>a)|(?<n>b)/J", "b"));
    assert_eq!(re("/(a)b/n").first_group(b"ab"), Some(None));
    for bad in ["/a/q", "/a/e", "/a/r", "/a/\0", "/a/ii!"] {
        assert!(
            matches!(PhpRegex::new(bad), Err(PatternError::Modifier(_))),
            "{bad:?} has a modifier PHP 8.2 and 8.3 refuse"
        );
    }
}

#[test]
fn bytes_without_u_and_unicode_with_it() {
    // Without `u` PCRE works on bytes: `.` is one byte, `i` and `\w` are ASCII-only.
    assert!(!matches("/^.{3}$/", "été"));
    assert!(matches("/^.{5}$/", "été"));
    assert!(matches("/^.{3}$/u", "été"));
    assert!(!matches("/É/i", "é"));
    assert!(matches("/É/iu", "é"));
    assert!(!matches(r"/^\w+$/", "é"));
    assert!(
        matches(r"/^\w+$/u", "é"),
        "u brings Unicode properties (PCRE2_UCP)"
    );
    assert!(
        !matches("/k/i", "\u{212a}"),
        "no Kelvin sign folding in byte mode"
    );
    // Under `u` a subject that is not UTF-8 is an error, which preg_match reports as false.
    assert!(!re("/a/u").is_match(b"a\xff"));
    assert!(re("/a/").is_match(b"a\xff"));
    // A non-ASCII pattern means its bytes without `u` and its character with it.
    assert!(re("/^\u{e9}$/").is_match("\u{e9}".as_bytes()));
    assert!(
        !matches("/^[\u{e9}]$/", "\u{e9}"),
        "a class of two bytes matches one byte"
    );
    assert!(matches("/^[\u{e9}]$/u", "\u{e9}"));
}

#[test]
fn pcre_only_constructs_work() {
    assert!(matches("/foo(?!bar)/", "foobaz"));
    assert!(!matches("/foo(?!bar)/", "foobar"));
    assert!(matches("/(?<=x)y/", "xy"));
    assert!(!matches("/(?<=x)y/", "zy"));
    assert!(matches(r"/(a)\1/", "aa"));
    assert!(!matches(r"/(a)\1/", "ab"));
    assert!(
        !matches("/(?>a+)ab/", "aaab"),
        "atomic group gives nothing back"
    );
    assert!(!matches("/a++ab/", "aaab"), "possessive quantifier");
    assert!(matches(r"/a\hb/", "a\tb"));
    assert!(matches(r"/\Qa.b\E/", "a.b"));
    assert!(!matches(r"/\Qa.b\E/", "axb"));
    assert!(matches("/(?i)BOT/", "bot"));
    assert!(matches("/(?(?=a)ab|cd)/", "cd"), "conditional group");
    // PHP's compile context allows \K inside a look-around.
    assert!(PhpRegex::new(r"/(?=a\K)a/").is_ok());
    // Look-behinds are fixed-length, as in the PCRE2 of PHP 8.2 and 8.3 (10.43 added
    // variable-length ones); alternatives of different fixed lengths are fine.
    assert!(matches!(
        PhpRegex::new("/(?<=ab?)x/"),
        Err(PatternError::Compile { .. })
    ));
    assert!(matches("/(?<=ab|c)x/", "abx"));
}

/// PHP 8.2 and 8.3 run PCRE2 10.40–10.42, where only `{n}`, `{n,}` and `{n,m}` quantify;
/// 10.43 also reads `{,m}` and blanks around the numbers as quantifiers.
#[test]
fn braces_quantify_as_in_pcre2_before_10_43() {
    for (pattern, subject, expected) in [
        ("/^a{,2}$/", "a{,2}", true),
        ("/^a{,2}$/", "aa", false),
        ("/^a{ 2}$/", "a{ 2}", true),
        ("/^a{ 2}$/", "aa", false),
        ("/^a{1, 2}$/", "a{1, 2}", true),
        ("/^a{1,\t2}$/", "aa", false),
        ("/^a{ 70000}$/", "a{ 70000}", true),
        ("/^{,2}$/", "{,2}", true),
        ("/^(a|{,2})$/", "{,2}", true),
        ("/^a {1, 2}$/x", "a{1,2}", true),
        ("/^a {1, 2}$/x", "aa", false),
        (r"/^a\E{,2}$/", "a{,2}", true),
        (r"/^\\{,2}$/", "\\{,2}", true),
        ("/^a{ 2$/", "a{ 2", true),
        // Quantifiers before 10.43 still quantify.
        ("/^a{1,2}$/", "aa", true),
        ("/^a{2,}$/", "aaa", true),
        // Escapes keep their braces; `\c` takes the next byte whatever it is.
        (r"/^\x{41}{,2}$/", "A{,2}", true),
        (r"/^\c{ 2}$/", "\x3b 2}", true),
        (r"/^(a)\g{1}{,2}$/", "aa{,2}", true),
        (r"/^\Qa{,2}$/", "a{,2}$", true),
        // Comments, callout strings and verb names are not pattern syntax.
        (r"/^(?#\Q)a{,2}$/", "a{,2}", true),
        ("/^a(?C{ 2})b$/", "ab", true),
        ("/^a(?C{,3})b$/", "ab", true),
        ("/^(*MARK:a{,2})b$/", "b", true),
    ] {
        assert_eq!(
            matches(pattern, subject),
            expected,
            "{pattern} on {subject:?}"
        );
    }
    // What 10.43 newly allows inside escapes' braces, PHP's PCRE2 refuses.
    for refused in [
        r"/\x{ 41 }/",
        r"/(a)\g{ 1}/",
        r"/\o{ 101}/",
        r"/\N{,3}/",
        r"/\N{ 3}/",
    ] {
        assert!(
            matches!(PhpRegex::new(refused), Err(PatternError::Compile { .. })),
            "{refused}"
        );
    }
    assert!(
        PhpRegex::new(r"/\p{ Lu }/u").is_ok(),
        "loose property names, since 10.40"
    );
    assert!(PhpRegex::new(r"/^\N{3}$/").is_ok());
    // The body is passed on as written when nothing changes, byte for byte otherwise.
    let same = super::braces::as_before_10_43(b"a{1,2}[{]\\x{41}").expect("valid");
    assert!(matches!(same.body, std::borrow::Cow::Borrowed(_)));
    let changed = super::braces::as_before_10_43(b"a{,2}b{ 1}").expect("valid");
    assert_eq!(&changed.body[..], &b"a\\{,2}b\\{ 1}"[..]);
    // A compile error's offset is in the pattern as written: the unclosed group ends it.
    match PhpRegex::new("/a{,2}(/") {
        Err(PatternError::Compile { offset, .. }) => assert_eq!(offset, 6),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_match_over_the_backtracking_limit_is_no_match() {
    let errors_before = super::MATCH_ERRORS.get();
    // The first branch backtracks exponentially before `a*b` is tried; PHP's preg_match gives
    // up at pcre.backtrack_limit and returns false, so the match that exists is not seen.
    let pattern = "/(a+)+c|a*b/";
    assert!(matches(pattern, "aaaab"));
    assert!(!matches(pattern, &format!("{}b", "a".repeat(40))));
    // Interpreted (so the count is PCRE2's match() calls, ~2.5 x 2^n here): 18 a's take ~0.66M,
    // under PHP's 1,000,000; 21 take ~5.2M, which PCRE2's own default limit (10,000,000) allows.
    let interpreted = "/(*NO_JIT)(a+)+c|a*b/";
    assert!(matches(interpreted, &format!("{}b", "a".repeat(18))));
    assert!(!matches(interpreted, &format!("{}b", "a".repeat(21))));
    // pcre.recursion_limit (100,000) bounds the interpreter's backtracking depth: two frames
    // per repetition here, where PCRE2's default depth limit would allow millions.
    let deep = "/(*NO_JIT)^(a|b)*c/";
    assert!(matches(deep, &format!("{}c", "a".repeat(49_000))));
    assert!(!matches(deep, &format!("{}c", "a".repeat(51_000))));
    // The thread's scratch is still good for the next pattern.
    assert!(matches("/a/", "a"));
    // The three give-ups above were counted (other tests only add to the counter) and logged.
    assert!(super::MATCH_ERRORS.get() >= errors_before + 3);
    for logged in [pattern, interpreted, deep] {
        assert!(super::warned_about(logged), "{logged}");
    }
}

#[test]
fn a_plain_miss_is_not_a_match_error() {
    // Patterns no other test uses: others in this process may log theirs meanwhile.
    let miss = "/^zzz(?!y)/";
    assert!(!re(miss).is_match(b"abc"));
    assert!(!super::warned_about(miss));
    // Logged once per pattern, whatever the compiled copy: a second copy's error finds it
    // logged already (the set is what decides, so the test reads it).
    let limited = "/(*NO_JIT)(a+)+c|a*b|zz/";
    let subject = format!("{}b", "a".repeat(21));
    assert!(!re(limited).is_match(subject.as_bytes()));
    assert!(super::warned_about(limited));
    let errors = super::MATCH_ERRORS.get();
    assert!(!re(limited).is_match(subject.as_bytes()));
    assert!(
        super::MATCH_ERRORS.get() > errors,
        "each give-up is counted"
    );
}

#[test]
fn first_group_reads_matches_1() {
    let r = re(r"/x(\d+)/");
    assert_eq!(r.first_group(b"ax12b"), Some(Some(&b"12"[..])));
    assert_eq!(r.first_group(b"ab"), None);
    assert_eq!(re(r"/x(\d+)?/").first_group(b"x"), Some(None));
    assert_eq!(
        re("/(a)|(b)(c)(d)/").first_group(b"bcd"),
        Some(None),
        "more groups than kept pairs: still a match, group 1 unset"
    );
    assert_eq!(re("/(a)(b)(c)/").first_group(b"abc"), Some(Some(&b"a"[..])));
    assert_eq!(re("/^$/").first_group(b""), Some(None));
    assert!(re("/^$/").is_match(b""));
    assert!(!re("/a/").is_match(b""));
    // A pattern without groups right after one with a group on the same thread: the stale
    // pair is not read.
    assert_eq!(re("/(b)/").first_group(b"b"), Some(Some(&b"b"[..])));
    assert_eq!(re("/a/").first_group(b"a"), Some(None));
}

#[test]
fn one_pattern_serves_many_threads() {
    let r = Arc::new(re(r"/^bot-(\d+)$/i"));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let r = Arc::clone(&r);
            std::thread::spawn(move || {
                for i in 0..2_000 {
                    let subject = format!("BOT-{}", t * 10_000 + i);
                    let expected = (t * 10_000 + i).to_string();
                    assert_eq!(
                        r.first_group(subject.as_bytes()),
                        Some(Some(expected.as_bytes()))
                    );
                    assert!(!r.is_match(b"robot"));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a matching thread panicked");
    }
}

proptest! {
    #[test]
    fn any_pattern_and_subject_are_safe(pattern in "\\PC{0,24}", subject in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(r) = PhpRegex::new(&pattern) {
            let _ = r.is_match(&subject);
            if let Some(Some(group)) = r.first_group(&subject) {
                let start = group.as_ptr() as usize - subject.as_ptr() as usize;
                prop_assert!(start + group.len() <= subject.len());
            }
        }
    }

    #[test]
    fn delimited_regex_syntax_is_safe(body in "[a-cQENgkxoCpP.*+?()|\\[\\]^$\\\\{}0-9,<=!:#* \t-]{0,20}", mods in "[imsxADSUuJnq]{0,3}") {
        let pattern = format!("/{body}/{mods}");
        if let Ok(r) = PhpRegex::new(&pattern) {
            let _ = r.is_match(b"abcabc\n");
            let _ = r.first_group(b"cab");
        }
    }
}
