//! PHP's `preg_match` for the regular expressions of Matomo's configuration: goal patterns,
//! excluded user agents and query parameters, custom dimension extractions and the search-engine
//! list's keyword patterns.
//!
//! Matomo hands these to PHP's PCRE extension, so they are compiled here by PCRE2 itself, the
//! way `php_pcre.c` (PHP 8.2 and 8.3) does it:
//! - the delimiters: leading whitespace skipped, any non-alphanumeric, non-backslash byte opens,
//!   `(`, `[`, `{` and `<` close with their pair (nesting counted), a backslash escapes the next
//!   byte while the closing delimiter is searched for;
//! - the modifiers `i m s x A D S X U u J n` and spaces or newlines after the closing delimiter,
//!   anything else refused (PHP warns and `preg_match` returns `false`);
//! - byte mode unless `u` (then UTF with Unicode properties, and a subject that is not UTF-8 is
//!   an error, hence no match); `\K` allowed in look-arounds, as PHP's compile context allows it;
//! - JIT, with a JIT stack of 32 KiB growing to 192 KiB, the backtracking limit of
//!   `pcre.backtrack_limit` (1,000,000) and the depth limit of `pcre.recursion_limit`
//!   (100,000). A match that hits a limit is an error, which PHP's callers read as no match.
//!
//! The PCRE2 is the one `pcre2-sys` bundles (10.46, linked statically: `.cargo/config.toml`
//! sets `PCRE2_SYS_STATIC`), newer than the 10.40–10.42 PHP 8.2 and 8.3 run with. Variable-length
//! look-behinds, which 10.43 added, are refused as those versions refuse them, and braces are
//! read as they were ([`braces`]: `x{,3}` and `x{1, 3}` are literal text there, quantifiers
//! since 10.43); other syntax newer than 10.42 keeps its 10.46 meaning.
//!
//! So look-arounds, back-references, atomic groups, possessive quantifiers and every other PCRE
//! construct mean what they mean in PHP. A pattern is compiled once (per configuration snapshot,
//! list load or start-up) and shared by all threads; each thread keeps one match context, JIT
//! stack and match data for all patterns.
//!
//! A match PCRE2 gives up on is counted in [`MATCH_ERRORS`] (exported as
//! `matomo_worker_pattern_match_errors_total`) and logged once per pattern, so an operator can
//! find a pattern that backtracks without bound: PHP gives up on it the same way, silently.
//!
//! This module is the worker's one use of PCRE2's C API (`pcre2-sys`): the `pcre2` crate's
//! builder has no way to set `A`, `D`, `U`, `J`, `n` or a compile context, which PHP sets. Every
//! `unsafe` block says why it is sound.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::collections::HashSet;
use std::ffi::{c_int, c_void};
use std::fmt;
use std::ptr::{self, NonNull};
use std::sync::{LazyLock, Mutex};

use pcre2_sys as sys;
use prometheus_client::metrics::counter::Counter;

/// Matches PCRE2 gave up on, for every pattern of every thread: the backtracking, depth, JIT stack
/// or heap limit, a subject that is not UTF-8 under `u`, no memory for the match. The worker's
/// metrics register it.
pub static MATCH_ERRORS: LazyLock<Counter> = LazyLock::new(Counter::default);

/// `pcre.backtrack_limit`'s default.
const MATCH_LIMIT: u32 = 1_000_000;
/// `pcre.recursion_limit`'s default.
const DEPTH_LIMIT: u32 = 100_000;
/// `PCRE_JIT_STACK_MIN_SIZE` and `PCRE_JIT_STACK_MAX_SIZE` in `php_pcre.c`.
const JIT_STACK_MIN: usize = 32 * 1024;
const JIT_STACK_MAX: usize = 192 * 1024;
/// Capture pairs kept per match: the whole match and group 1 are all the callers read; PCRE2
/// fills the first pairs and reports 0 when a pattern has more groups, which is still a match.
const OVECTOR_PAIRS: u32 = 2;
/// What an empty subject points at: PCRE2 may read the subject pointer even for a length of 0,
/// and an empty slice's pointer is dangling.
static EMPTY_SUBJECT: [u8; 1] = [0];

/// Why PHP would not compile a pattern (its warning, in short).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Nothing but whitespace.
    #[error("empty regular expression")]
    Empty,
    /// The first byte after the whitespace is alphanumeric, a backslash or NUL.
    #[error("delimiter must not be alphanumeric, backslash, or NUL")]
    Delimiter,
    /// The closing delimiter is missing.
    #[error("no ending delimiter")]
    NoEnd,
    /// A byte after the closing delimiter that is not a modifier.
    #[error("unknown modifier {0:?}")]
    Modifier(char),
    /// PCRE2 refused the pattern.
    #[error("compilation failed at offset {offset}: {message}")]
    Compile {
        /// Byte offset in the pattern between the delimiters.
        offset: usize,
        /// PCRE2's message.
        message: String,
    },
}

/// A pattern compiled as PHP compiles it; see the module documentation.
pub struct PhpRegex {
    code: NonNull<sys::pcre2_code_8>,
    /// Capturing groups in the pattern (PCRE2 leaves the ovector pairs beyond them untouched).
    groups: u32,
    source: Box<str>,
}

// SAFETY: a compiled PCRE2 pattern (JIT code included) is read-only after compilation, and the
// PCRE2 documentation allows one to be used by several threads at once; every per-match state
// lives in the thread-local scratch below.
unsafe impl Send for PhpRegex {}
// SAFETY: as above; no method mutates the code.
unsafe impl Sync for PhpRegex {}

impl Drop for PhpRegex {
    fn drop(&mut self) {
        // SAFETY: `code` came from `pcre2_compile_8`, is freed once, here, and no match can be
        // running on it (that would need a borrow of `self`).
        unsafe { sys::pcre2_code_free_8(self.code.as_ptr()) }
    }
}

impl fmt::Debug for PhpRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PhpRegex").field(&self.source).finish()
    }
}

/// The body between the delimiters and the compile options the modifiers ask for.
fn split(pattern: &[u8]) -> Result<(&[u8], u32), PatternError> {
    let start = pattern
        .iter()
        .position(|b| !b.is_ascii_whitespace() && *b != 0x0b)
        .ok_or(PatternError::Empty)?;
    let open = pattern[start];
    if open.is_ascii_alphanumeric() || open == b'\\' || open == 0 {
        return Err(PatternError::Delimiter);
    }
    let close = match open {
        b'(' => b')',
        b'[' => b']',
        b'{' => b'}',
        b'<' => b'>',
        other => other,
    };
    let body_start = start + 1;
    let mut i = body_start;
    let mut depth = 1usize;
    let end = loop {
        let Some(&b) = pattern.get(i) else {
            return Err(PatternError::NoEnd);
        };
        if b == b'\\' && i + 1 < pattern.len() {
            i += 2;
            continue;
        }
        if b == close {
            if open == close {
                break i;
            }
            depth -= 1;
            if depth == 0 {
                break i;
            }
        } else if b == open {
            depth += 1;
        }
        i += 1;
    };
    let mut options = 0u32;
    for &m in &pattern[end + 1..] {
        options |= match m {
            b'i' => sys::PCRE2_CASELESS,
            b'm' => sys::PCRE2_MULTILINE,
            b's' => sys::PCRE2_DOTALL,
            b'x' => sys::PCRE2_EXTENDED,
            b'A' => sys::PCRE2_ANCHORED,
            b'D' => sys::PCRE2_DOLLAR_ENDONLY,
            b'U' => sys::PCRE2_UNGREEDY,
            b'u' => sys::PCRE2_UTF | sys::PCRE2_UCP,
            b'J' => sys::PCRE2_DUPNAMES,
            b'n' => sys::PCRE2_NO_AUTO_CAPTURE,
            b'S' | b'X' | b' ' | b'\n' | b'\r' => 0,
            other => return Err(PatternError::Modifier(char::from(other))),
        };
    }
    Ok((&pattern[body_start..end], options))
}

impl PhpRegex {
    /// Compiles a PHP pattern written with delimiters (`/bot/i`, `#^/a#`, `{x}`), or says why
    /// PHP would refuse it.
    pub fn new(pattern: &str) -> Result<Self, PatternError> {
        let (body, options) = split(pattern.as_bytes())?;
        let rewritten = braces::as_before_10_43(body)?;
        let code = compile(&rewritten.body, options).map_err(|e| match e {
            PatternError::Compile { offset, message } => PatternError::Compile {
                offset: rewritten.original_offset(offset),
                message,
            },
            other => other,
        })?;
        let mut groups: u32 = 0;
        // SAFETY: `code` is a live compiled pattern; CAPTURECOUNT writes one `uint32_t`.
        let rc = unsafe {
            sys::pcre2_pattern_info_8(
                code.as_ptr(),
                sys::PCRE2_INFO_CAPTURECOUNT,
                (&mut groups as *mut u32).cast::<c_void>(),
            )
        };
        Ok(Self {
            code,
            groups: if rc == 0 { groups } else { 0 },
            source: pattern.into(),
        })
    }

    /// The pattern as written, delimiters and modifiers included.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// `preg_match($pattern, $subject) === 1`; a match error (a limit hit, a subject that is not
    /// UTF-8 under `u`) is no match.
    pub fn is_match(&self, subject: &[u8]) -> bool {
        self.run(subject, |_| ()).is_some()
    }

    /// `$matches[1]` of `preg_match($pattern, $subject, $matches)` when the match has a first
    /// group that took part; `Some(None)` for a match without it; `None` for no match.
    pub fn first_group<'s>(&self, subject: &'s [u8]) -> Option<Option<&'s [u8]>> {
        self.run(subject, |ovector| {
            let (&start, &end) = (ovector.get(2)?, ovector.get(3)?);
            (start != usize::MAX && start <= end && end <= subject.len())
                .then(|| &subject[start..end])
        })
    }

    /// Runs one match with this thread's scratch and hands `read` the ovector pairs this
    /// pattern defines on a match: the whole match, then group 1 when the pattern has one (a
    /// group that did not take part is `usize::MAX`, PCRE2's unset).
    fn run<T>(&self, subject: &[u8], read: impl FnOnce(&[usize]) -> T) -> Option<T> {
        SCRATCH.with(|cell| {
            let mut slot = cell.borrow_mut();
            let scratch = match slot.as_mut() {
                Some(s) => s,
                None => match Scratch::new() {
                    Some(s) => slot.insert(s),
                    None => {
                        MATCH_ERRORS.inc();
                        return None;
                    }
                },
            };
            // SAFETY: `code` is a live compiled pattern (owned by `self`), `subject` is a valid
            // slice for its whole length, and the match data, match context and JIT stack are
            // this thread's own, alive for the call and not used by anything else meanwhile
            // (the `RefCell` borrow is held; nothing here re-enters).
            let subject_ptr = if subject.is_empty() {
                EMPTY_SUBJECT.as_ptr()
            } else {
                subject.as_ptr()
            };
            let rc = unsafe {
                sys::pcre2_match_8(
                    self.code.as_ptr(),
                    subject_ptr,
                    subject.len(),
                    0,
                    0,
                    scratch.match_data.as_ptr(),
                    scratch.context.as_ptr(),
                )
            };
            if rc < 0 {
                // PCRE2_ERROR_NOMATCH, or an error PHP's `preg_match` turns into `false`.
                if rc != sys::PCRE2_ERROR_NOMATCH {
                    self.match_error(rc);
                }
                return None;
            }
            // After a match PCRE2 has written pair 0 and, up to the vector's size, one pair per
            // group of the pattern (`PCRE2_UNSET`, `usize::MAX`, for a group that did not take
            // part; with more groups than pairs it returns 0 and fills the pairs it has). Pairs
            // beyond the pattern's groups keep what an earlier match wrote, so only the defined
            // ones are handed on.
            let pairs = (self.groups as usize + 1).min(OVECTOR_PAIRS as usize);
            // SAFETY: the match data has `OVECTOR_PAIRS` pairs (so at least `pairs`), which
            // PCRE2 keeps alive as long as the match data, alive for this borrow; the first
            // `pairs` pairs were written by this match (above), so they are initialised.
            let ovector = unsafe {
                let p = sys::pcre2_get_ovector_pointer_8(scratch.match_data.as_ptr());
                std::slice::from_raw_parts(p, 2 * pairs)
            };
            Some(read(ovector))
        })
    }
}

/// The patterns a match error was logged for, across every compiled copy (a pattern is compiled
/// again with each configuration snapshot, per site, per batch for some lists), so each is
/// logged once per process; bounded, after which errors are only counted.
static WARNED: LazyLock<Mutex<HashSet<Box<str>>>> = LazyLock::new(Default::default);
const WARNED_MAX: usize = 1_000;

impl PhpRegex {
    /// Counts a match error, and logs the first one of this pattern.
    #[cold]
    fn match_error(&self, rc: c_int) {
        MATCH_ERRORS.inc();
        let first = WARNED
            .lock()
            .is_ok_and(|mut seen| seen.len() < WARNED_MAX && seen.insert(self.source.clone()));
        if first {
            let shown: String = self.source.chars().take(200).collect();
            tracing::warn!(
                pattern = ?shown,
                error = %error_message(rc),
                "PCRE gave up matching a configuration pattern on a hit (PHP's preg_match gives \
                 up the same way), so it counted as not matching; simplify the pattern if \
                 matomo_worker_pattern_match_errors_total keeps growing (logged once per pattern)"
            );
        }
    }
}

/// Whether a match error of `pattern` was logged (tests).
#[cfg(test)]
fn warned_about(pattern: &str) -> bool {
    WARNED.lock().is_ok_and(|seen| seen.contains(pattern))
}

/// `pcre2_compile` with PHP's compile context, then the JIT (PHP's `pcre.jit=1`; a pattern the
/// JIT cannot take runs interpreted, as in PHP).
fn compile(body: &[u8], options: u32) -> Result<NonNull<sys::pcre2_code_8>, PatternError> {
    // SAFETY: a null general context asks for PCRE2's default allocator; the result is checked.
    let context = NonNull::new(unsafe { sys::pcre2_compile_context_create_8(ptr::null_mut()) })
        .ok_or_else(|| PatternError::Compile {
            offset: 0,
            message: "out of memory".into(),
        })?;
    let mut error: c_int = 0;
    let mut offset: usize = 0;
    // SAFETY: `context` is live until freed below; `body` is valid for `body.len()` bytes (a
    // length is given, so no NUL terminator is needed); `error` and `offset` are valid for
    // writes.
    let code = unsafe {
        sys::pcre2_set_compile_extra_options_8(
            context.as_ptr(),
            sys::PCRE2_EXTRA_ALLOW_LOOKAROUND_BSK,
        );
        // PCRE2 before 10.43 (what PHP 8.2 and 8.3 run) has fixed-length look-behinds only.
        sys::pcre2_set_max_varlookbehind_8(context.as_ptr(), 0);
        let code = sys::pcre2_compile_8(
            body.as_ptr(),
            body.len(),
            options,
            &mut error,
            &mut offset,
            context.as_ptr(),
        );
        sys::pcre2_compile_context_free_8(context.as_ptr());
        code
    };
    let Some(code) = NonNull::new(code) else {
        return Err(PatternError::Compile {
            offset,
            message: error_message(error),
        });
    };
    // SAFETY: `code` is a freshly compiled pattern no other thread can see yet. A JIT failure
    // leaves the pattern usable by the interpreter, so its result is not an error.
    unsafe { sys::pcre2_jit_compile_8(code.as_ptr(), sys::PCRE2_JIT_COMPLETE) };
    Ok(code)
}

/// PCRE2's message for an error code.
fn error_message(code: c_int) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for writes of its length; PCRE2 writes a NUL-terminated message of
    // at most that many bytes and returns its length (negative on error).
    let n = unsafe { sys::pcre2_get_error_message_8(code, buf.as_mut_ptr(), buf.len()) };
    match usize::try_from(n) {
        Ok(n) => String::from_utf8_lossy(&buf[..n.min(buf.len())]).into_owned(),
        Err(_) => format!("PCRE2 error {code}"),
    }
}

/// One thread's match context (PHP's limits and JIT stack) and match data, reused by every
/// pattern.
struct Scratch {
    match_data: NonNull<sys::pcre2_match_data_8>,
    context: NonNull<sys::pcre2_match_context_8>,
    jit_stack: Option<NonNull<sys::pcre2_jit_stack_8>>,
}

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

impl Scratch {
    /// `None` only when PCRE2 cannot allocate (then nothing matches, as a failing `preg_match`).
    fn new() -> Option<Self> {
        // SAFETY: null general contexts ask for PCRE2's default allocator; every result is
        // checked, and whatever was created is freed if a later step fails (by `Drop`).
        unsafe {
            let context = NonNull::new(sys::pcre2_match_context_create_8(ptr::null_mut()))?;
            let match_data = match NonNull::new(sys::pcre2_match_data_create_8(
                OVECTOR_PAIRS,
                ptr::null_mut(),
            )) {
                Some(m) => m,
                None => {
                    sys::pcre2_match_context_free_8(context.as_ptr());
                    return None;
                }
            };
            sys::pcre2_set_match_limit_8(context.as_ptr(), MATCH_LIMIT);
            sys::pcre2_set_depth_limit_8(context.as_ptr(), DEPTH_LIMIT);
            let jit_stack = NonNull::new(sys::pcre2_jit_stack_create_8(
                JIT_STACK_MIN,
                JIT_STACK_MAX,
                ptr::null_mut(),
            ));
            if let Some(stack) = jit_stack {
                // No callback: the stack is used for every JIT match with this context.
                sys::pcre2_jit_stack_assign_8(
                    context.as_ptr(),
                    None,
                    stack.as_ptr().cast::<c_void>(),
                );
            }
            Some(Self {
                match_data,
                context,
                jit_stack,
            })
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SAFETY: each was created by PCRE2 for this scratch alone and is freed once; no match
        // is running (the thread is ending or the scratch is being replaced).
        unsafe {
            sys::pcre2_match_data_free_8(self.match_data.as_ptr());
            sys::pcre2_match_context_free_8(self.context.as_ptr());
            if let Some(stack) = self.jit_stack {
                sys::pcre2_jit_stack_free_8(stack.as_ptr());
            }
        }
    }
}

mod braces;
#[cfg(test)]
mod tests;
