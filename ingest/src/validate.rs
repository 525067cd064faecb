//! Edge validation: the checks for which Matomo itself answers 400, done before a hit is queued
//! so junk never reaches Redis.
//!
//! Matomo's order and rules (core/Tracker/Request.php): a custom timestamp (`cdt`/`cdo`) older
//! than `tracking_requests_require_authentication_when_custom_timestamp_newer_than` needs a
//! valid token; `idsite` must be a positive integer (`Common::getRequestVar(..., 'int')`) naming
//! a row of `site`; `cip` needs a valid token; for a recorded hit (`rec=1`) a `cid` must be 16
//! characters. Everything else is left to the worker, which re-checks all of it. Pure: the
//! caller passes the snapshot and the clock. Parameters are read through
//! [`ParamLookup`], so a bulk request's map and a single hit's flat list are checked alike.

use matomo_wire::php::sanitized;
use matomo_wire::ParamLookup;

use crate::sites::{Grant, Snapshot};

/// Why Matomo would answer 400 for a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// `idsite` missing, not an integer, or not positive.
    #[error("invalid idSite: '{0}'")]
    InvalidIdSite(String),
    /// `idsite` is not a row of the `site` table.
    #[error("unknown idSite: {0}")]
    UnknownSite(u32),
    /// `cid` is not 16 characters.
    #[error("visitor id (cid) must be 16 characters long")]
    CidLength,
    /// `cip` without a token that may track for the site.
    #[error("tracker API 'cip' was used, requires valid token_auth")]
    CipNeedsToken,
    /// `cdt` older than the threshold without a valid token.
    #[error("custom timestamp is {0} seconds old, requires token_auth")]
    CdtNeedsToken(i64),
}

/// Settings and context of one check.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The site/token cache.
    pub snapshot: &'a Snapshot,
    /// The request set's token (bulk body or `token_auth` parameter), if any.
    pub token_auth: Option<&'a str>,
    /// Whether the request came as a POST (secure-only tokens).
    pub via_post: bool,
    /// Receive time, Unix seconds.
    pub now: i64,
    /// `[Tracker] tracking_requests_require_authentication`.
    pub require_auth: bool,
    /// `[Tracker] tracking_requests_require_authentication_when_custom_timestamp_newer_than`.
    pub cdt_auth_threshold: i64,
}

/// The outcome of a valid request: its site and whether its token authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// `idsite`, or `None` for an empty request.
    pub idsite: Option<u32>,
    /// Whether `cip` is honoured (the IP used for queue routing).
    pub authenticated: bool,
}

/// Checks one request as Matomo's tracker would before recording it.
pub fn validate<P: ParamLookup + ?Sized>(
    params: &P,
    ctx: &Context<'_>,
) -> Result<Accepted, Rejection> {
    if params.is_empty() {
        return Ok(Accepted {
            idsite: None,
            authenticated: false,
        });
    }
    let site = idsite(params, ctx.snapshot);
    let mut auth_cache: Option<bool> = None;
    let mut authenticated = |site: Result<u32, &Rejection>| -> bool {
        *auth_cache.get_or_insert_with(|| is_authenticated(params, ctx, site.ok()))
    };

    if let Some(cdt) = custom_timestamp(params, ctx.now) {
        let age = ctx.now - cdt;
        if age >= ctx.cdt_auth_threshold && !authenticated(site.as_ref().copied()) {
            return Err(Rejection::CdtNeedsToken(age));
        }
    }
    let idsite = site?;
    if params
        .param("cip")
        .is_some_and(|c| !c.is_empty() && c != "0")
        && !authenticated(Ok(idsite))
    {
        return Err(Rejection::CipNeedsToken);
    }
    if php_int(params, "rec") == Some(1) {
        if let Some(cid) = params.param("cid") {
            let cid = sanitized(cid);
            if !cid.is_empty() && cid.len() != 16 {
                return Err(Rejection::CidLength);
            }
        }
    }
    let authenticated = authenticated(Ok(idsite));
    Ok(Accepted {
        idsite: Some(idsite),
        authenticated,
    })
}

/// Whether the request's token may track for its site (`Request::isAuthenticated`).
fn is_authenticated<P: ParamLookup + ?Sized>(
    params: &P,
    ctx: &Context<'_>,
    idsite: Option<u32>,
) -> bool {
    if !ctx.require_auth {
        return true;
    }
    let Some(idsite) = idsite else { return false };
    let from_param;
    let token = match ctx.token_auth.filter(|t| !t.is_empty()) {
        Some(t) => t,
        None => {
            from_param = params.param("token_auth").map(sanitized);
            match from_param.as_deref() {
                Some(t) if !t.is_empty() => t,
                _ => return false,
            }
        }
    };
    ctx.snapshot
        .grant(token, Some(idsite), ctx.via_post, ctx.now)
        != Grant::None
}

/// The site id, checked against the snapshot.
fn idsite<P: ParamLookup + ?Sized>(params: &P, snapshot: &Snapshot) -> Result<u32, Rejection> {
    let raw = || {
        params
            .param("idsite")
            .map(|s| s.into_owned())
            .unwrap_or_default()
    };
    let id = match php_int(params, "idsite") {
        Some(n) if n > 0 => u32::try_from(n).map_err(|_| Rejection::InvalidIdSite(raw()))?,
        _ => return Err(Rejection::InvalidIdSite(raw())),
    };
    if snapshot.site_exists(id) {
        Ok(id)
    } else {
        Err(Rejection::UnknownSite(id))
    }
}

/// `Common::getRequestVar($name, 0, 'int', $params)`: the integer when the sanitised value equals
/// its own integer cast (PHP 8 `==`), else `None` (the default).
pub fn php_int<P: ParamLookup + ?Sized>(params: &P, key: &str) -> Option<i64> {
    let value = sanitized(params.param(key)?);
    // Plain digits (`idsite=1`, `rec=1`), the usual case: few enough that the float below is
    // exact, so the integer read directly is the same number without a float parse.
    if (1..=15).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse().ok();
    }
    numeric_int(&value)
}

/// A PHP numeric string that is an integer within `i64`, as its value, else `None`.
fn numeric_int(s: &str) -> Option<i64> {
    numeric_string(s)
        .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
        .map(|f| f as i64)
}

/// PHP 8 numeric strings: optional surrounding whitespace, sign, digits, decimals, exponent.
fn numeric_string(s: &str) -> Option<f64> {
    let t = s.trim_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    let mut chars = body.chars().peekable();
    let mut digits = 0;
    while chars.next_if(char::is_ascii_digit).is_some() {
        digits += 1;
    }
    if chars.next_if_eq(&'.').is_some() {
        while chars.next_if(char::is_ascii_digit).is_some() {
            digits += 1;
        }
    }
    if digits == 0 {
        return None;
    }
    if chars.next_if(|c| *c == 'e' || *c == 'E').is_some() {
        chars.next_if(|c| *c == '+' || *c == '-');
        let mut exp_digits = 0;
        while chars.next_if(char::is_ascii_digit).is_some() {
            exp_digits += 1;
        }
        if exp_digits == 0 {
            return None;
        }
    }
    if chars.next().is_some() {
        return None;
    }
    t.parse().ok()
}

/// `Request::getCustomTimestamp` for numeric `cdt`: the timestamp when it is valid (not in the
/// future, not over 20 years old), else `None`. Non-numeric dates (PHP's `strtotime`) are left to
/// the worker.
fn custom_timestamp<P: ParamLookup + ?Sized>(params: &P, now: i64) -> Option<i64> {
    let cdt = params.param("cdt").map(sanitized);
    let cdo = php_int(params, "cdo").unwrap_or(0);
    let cdt = match cdt.as_deref() {
        Some(v) if !php_empty(v) => numeric_string(v)? as i64,
        _ if cdo != 0 => now,
        _ => return None,
    };
    let cdt = cdt - cdo.abs();
    (cdt <= now && cdt > now - 20 * 365 * 86_400).then_some(cdt)
}

fn php_empty(s: &str) -> bool {
    s.is_empty() || s == "0"
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::sites::TokenRow;

    const NOW: i64 = 1_800_000_000;

    fn snapshot() -> Snapshot {
        let hash = Snapshot::new("salt", [], [], [], []).hash_token("good");
        let row = TokenRow {
            login: "admin".into(),
            expires_at: None,
            secure_only: false,
        };
        Snapshot::new("salt", [1, 7], [(hash, row)], ["admin".to_string()], [])
    }

    fn check(v: serde_json::Value, token: Option<&str>) -> Result<Accepted, Rejection> {
        let snap = snapshot();
        let ctx = Context {
            snapshot: &snap,
            token_auth: token,
            via_post: false,
            now: NOW,
            require_auth: true,
            cdt_auth_threshold: 86_400,
        };
        validate(v.as_object().expect("object"), &ctx)
    }

    proptest::proptest! {
        /// The plain-digits shortcut reads every digit string as the general numeric-string
        /// path does (leading zeros, the longest strings it takes, and past them).
        #[test]
        fn digit_strings_read_as_numeric_strings(digits in "[0-9]{1,17}") {
            let params = json!({ "n": digits.clone() });
            let params = params.as_object().expect("object");
            proptest::prop_assert_eq!(php_int(params, "n"), numeric_int(&digits));
        }
    }

    #[test]
    fn idsite_must_be_a_known_positive_integer() {
        assert!(check(json!({"idsite":"1","rec":"1"}), None).is_ok());
        assert!(check(json!({"idsite":" 7","rec":"1"}), None).is_ok());
        assert!(check(json!({"idsite":"1.0"}), None).is_ok());
        assert!(check(json!({"idsite":7}), None).is_ok());
        for bad in [
            json!("0"),
            json!("-1"),
            json!("abc"),
            json!("1abc"),
            json!("1.5"),
            json!(""),
        ] {
            assert!(
                matches!(
                    check(json!({"idsite": bad}), None),
                    Err(Rejection::InvalidIdSite(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            check(json!({"rec":"1"}), None),
            Err(Rejection::InvalidIdSite(_))
        ));
        assert_eq!(
            check(json!({"idsite":"2"}), None),
            Err(Rejection::UnknownSite(2))
        );
    }

    #[test]
    fn empty_requests_pass() {
        assert_eq!(
            check(json!({}), None),
            Ok(Accepted {
                idsite: None,
                authenticated: false
            })
        );
    }

    #[test]
    fn cid_must_be_16_chars_on_recorded_hits() {
        assert!(check(
            json!({"idsite":"1","rec":"1","cid":"0123456789abcdef"}),
            None
        )
        .is_ok());
        assert_eq!(
            check(json!({"idsite":"1","rec":"1","cid":"abc"}), None),
            Err(Rejection::CidLength)
        );
        assert!(check(json!({"idsite":"1","rec":"0","cid":"abc"}), None).is_ok());
    }

    #[test]
    fn cip_and_old_cdt_need_a_valid_token() {
        let cip = json!({"idsite":"1","rec":"1","cip":"1.2.3.4"});
        assert_eq!(check(cip.clone(), None), Err(Rejection::CipNeedsToken));
        assert_eq!(
            check(cip.clone(), Some("bad")),
            Err(Rejection::CipNeedsToken)
        );
        assert!(check(cip, Some("good")).unwrap().authenticated);
        let with_param = json!({"idsite":"1","cip":"1.2.3.4","token_auth":"good"});
        assert!(check(with_param, None).is_ok());

        let old = json!({"idsite":"1","rec":"1","cdt": (NOW - 90_000).to_string()});
        assert_eq!(
            check(old.clone(), None),
            Err(Rejection::CdtNeedsToken(90_000))
        );
        assert!(check(old, Some("good")).is_ok());
        // Recent, future and absurdly old timestamps need nothing.
        assert!(check(json!({"idsite":"1","cdt": (NOW - 60).to_string()}), None).is_ok());
        assert!(check(json!({"idsite":"1","cdt": (NOW + 600).to_string()}), None).is_ok());
        assert!(check(json!({"idsite":"1","cdt":"5"}), None).is_ok());
        assert!(check(json!({"idsite":"1","cdt":"2020-01-01 00:00:00"}), None).is_ok());
        // cdo alone counts from now.
        assert_eq!(
            check(json!({"idsite":"1","cdo":"100000"}), None),
            Err(Rejection::CdtNeedsToken(100_000))
        );
    }

    #[test]
    fn numeric_strings_follow_php8() {
        assert_eq!(numeric_string(" 12 "), Some(12.0));
        assert_eq!(numeric_string("1e3"), Some(1000.0));
        assert_eq!(numeric_string("-.5"), Some(-0.5));
        assert_eq!(numeric_string("1."), Some(1.0));
        assert_eq!(numeric_string("."), None);
        assert_eq!(numeric_string("1e"), None);
        assert_eq!(numeric_string("0x1A"), None);
        assert_eq!(numeric_string("1 2"), None);
    }
}
