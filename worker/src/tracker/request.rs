//! One tracking request as Matomo's `core/Tracker/Request.php` reads it: typed parameters,
//! the current time (`cdt`/`cdo` with the token rule), the IP (`cip`), the visitor id, plugin
//! flags, the browser language and the token_auth check.
//!
//! Pure: everything it needs (configuration snapshot, salt) is passed in. Errors are the
//! request-level failures PHP throws (`InvalidRequestParameterException`), which make PHP skip
//! the request.

use std::borrow::Cow;

use matomo_wire::{Params, RequestSet};
use serde_json::Value;
use sha1::Digest;

use super::php;
use super::settings::{Site, Snapshot};

/// Why a request is not recorded although it is well formed JSON.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    /// Unknown or non-positive idsite.
    #[error("invalid idsite {0}")]
    InvalidSite(i64),
    /// `cid` of the wrong length, `cdt` too old without a token, `cip` without a token…
    #[error("invalid request parameter: {0}")]
    InvalidParameter(String),
}

/// Receipt times a request accepts: from Matomo's first-website date (`Date::FIRST_WEBSITE_TIMESTAMP`,
/// 1991-08-06) to 9999-12-30 23:59:59 UTC, a day short of the end of MySQL's `DATETIME`, so that
/// local times in any site timezone and the end of their day stay storable.
pub const RECEIPT_TIME_RANGE: std::ops::RangeInclusive<i64> = 681_436_800..=253_402_214_399;

/// Tracker-wide values a request needs besides its own parameters.
#[derive(Debug, Clone)]
pub struct RequestEnv<'a> {
    /// `[General] salt`.
    pub salt: &'a str,
    /// Configuration snapshot.
    pub snap: &'a Snapshot,
    /// `[Tracker]` settings.
    pub tracker: &'a tier_config::TrackerSettings,
    /// sha512(token . salt) of tokens already seen (hashing is most of a token check).
    pub token_hashes: &'a TokenHashes,
}

/// Memo of `sha512(token . salt)` in hex, shared by a tracker's batches. Bounded: cleared
/// whenever it reaches [`TokenHashes::CAPACITY`] tokens.
#[derive(Debug, Default)]
pub struct TokenHashes(std::sync::Mutex<std::collections::HashMap<String, String>>);

impl TokenHashes {
    /// Most tokens remembered at once.
    pub const CAPACITY: usize = 1024;

    /// `hex(sha512(token . salt))`, from the memo when the token was seen before.
    pub fn hash(&self, token: &str, salt: &str) -> String {
        let mut memo = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(h) = memo.get(token) {
            return h.clone();
        }
        let mut h = sha2::Sha512::new();
        h.update(token.as_bytes());
        h.update(salt.as_bytes());
        let hash = hex::encode(h.finalize());
        if memo.len() >= Self::CAPACITY {
            memo.clear();
        }
        memo.insert(token.to_owned(), hash.clone());
        hash
    }
}

/// One request of a RequestSet with its environment.
pub struct Request<'a> {
    /// The raw parameters (`$this->params`).
    pub params: Cow<'a, Params>,
    /// `$_SERVER`.
    pub server: &'a Params,
    /// `$_COOKIE`.
    pub cookie: &'a Params,
    token_auth: Option<&'a str>,
    /// The set's time (`setCurrentTimestamp($state['time'])`).
    pub now: i64,
    env: RequestEnv<'a>,
    /// The site of the request.
    pub site: &'a Site,
    authenticated: Option<bool>,
    /// `getCurrentTimestamp()` once computed (it may check the token).
    timestamp: Option<Result<i64, RequestError>>,
    /// Failures to remember in `tracking_failure` (idfailure).
    pub failures: Vec<u8>,
    /// `params` by name with a fast hash, while `params` is borrowed (the tracker looks up
    /// hundreds of names per request; SipHash through the JSON map was ~10 % of its CPU).
    index: ParamIndex<'a>,
}

type ParamIndex<'a> = std::collections::HashMap<&'a str, &'a Value, foldhash::fast::RandomState>;

impl<'a> Request<'a> {
    /// Wraps request `params` of `set`; fails when the site is unknown.
    pub fn new(
        params: &'a Params,
        set: &'a RequestSet,
        env: RequestEnv<'a>,
    ) -> Result<Self, RequestError> {
        let mut params = Cow::Borrowed(params);
        // An empty url and urlref take HTTP_REFERER as url (Request::__construct).
        let empty = |p: &Params, k: &str| {
            p.get(k)
                .and_then(php::raw_string)
                .is_none_or(|s| php::empty_str(&s))
        };
        if empty(&params, "urlref") && empty(&params, "url") {
            if let Some(r) = set.server.get("HTTP_REFERER").and_then(php::raw_string) {
                if !php::empty_str(&r) {
                    params.to_mut().insert("url".into(), Value::String(r));
                }
            }
        }
        // The receipt time comes from whoever filled the queue; every date this request
        // produces is derived from it, so one outside what Matomo can store is refused here.
        if !RECEIPT_TIME_RANGE.contains(&set.time) {
            return Err(RequestError::InvalidParameter(format!(
                "the queue entry's receipt time {} is outside {}..={} (1991-08-06 to 9999-12-30)",
                set.time,
                RECEIPT_TIME_RANGE.start(),
                RECEIPT_TIME_RANGE.end()
            )));
        }
        let idsite = php::request_int(params.get("idsite"), 0);
        if idsite <= 0 || idsite > i64::from(u32::MAX) {
            return Err(RequestError::InvalidSite(idsite));
        }
        let site = env
            .snap
            .sites
            .get(&(idsite as u32))
            .ok_or(RequestError::InvalidSite(idsite))?;
        let mut req = Request {
            params,
            server: &set.server,
            cookie: &set.cookie,
            token_auth: set.token_auth.as_deref(),
            now: set.time,
            env,
            site,
            authenticated: None,
            timestamp: None,
            failures: Vec::new(),
            index: ParamIndex::default(),
        };
        // The index first: pseudonymising reads parameters. Once it rewrites one, `params`
        // is owned and look-ups go to the map itself.
        if let Cow::Borrowed(p) = req.params {
            req.index = p.iter().map(|(k, v)| (k.as_str(), v)).collect();
        }
        req.pseudonymise_ids();
        if matches!(req.params, Cow::Owned(_)) {
            req.index.clear();
        }
        Ok(req)
    }

    /// PrivacyManager's `RequestProcessor::manipulateRequest`: with `anonymizeUserId`, `uid`
    /// becomes sha1(uid . useridsalt) (unchanged while the salt is empty); with
    /// `anonymizeOrderId`, `ec_id` becomes sha1(random int . ec_id . time . [General] salt) —
    /// random like PHP's, so an anonymised order id never repeats.
    fn pseudonymise_ids(&mut self) {
        let snap = self.env.snap;
        if snap.privacy_flag("anonymizeUserId", false) {
            let uid = self.str("uid");
            if let (false, Some(salt)) = (uid.is_empty(), snap.userid_salt()) {
                let hash = hex::encode(sha1::Sha1::digest(format!("{uid}{salt}").as_bytes()));
                self.params
                    .to_mut()
                    .insert("uid".into(), Value::String(hash));
            }
        }
        if snap.privacy_flag("anonymizeOrderId", false) {
            let id = self.str("ec_id");
            if !id.is_empty() {
                let n: u32 = rand::random_range(0..=i32::MAX as u32);
                let input = format!("{n}{id}{}{}", chrono::Utc::now().timestamp(), self.env.salt);
                let hash = hex::encode(sha1::Sha1::digest(input.as_bytes()));
                self.params
                    .to_mut()
                    .insert("ec_id".into(), Value::String(hash));
            }
        }
    }

    /// The set-level token_auth (`RequestSet::tokenAuth`).
    pub fn token_auth(&self) -> Option<&str> {
        self.token_auth
    }

    /// idsite.
    pub fn idsite(&self) -> u32 {
        self.site.idsite
    }

    /// Raw value of a parameter.
    pub fn raw(&self, name: &str) -> Option<&Value> {
        match &self.params {
            Cow::Borrowed(_) => self.index.get(name).copied(),
            Cow::Owned(p) => p.get(name),
        }
    }

    /// `isset($this->params[$name])`.
    pub fn has(&self, name: &str) -> bool {
        matches!(self.raw(name), Some(v) if !v.is_null())
    }

    /// `getParam($name)` for a string parameter ('' default).
    pub fn str(&self, name: &str) -> String {
        php::request_string(self.raw(name)).unwrap_or_default()
    }

    /// `getParam($name)` for an int parameter.
    pub fn int(&self, name: &str, default: i64) -> i64 {
        php::request_int(self.raw(name), default)
    }

    /// `getParam($name)` for a float parameter with a `false` default.
    pub fn float(&self, name: &str) -> Option<f64> {
        php::request_float(self.raw(name))
    }

    /// A `$_SERVER` value as a string.
    pub fn server_str(&self, name: &str) -> Option<String> {
        self.server.get(name).and_then(php::raw_string)
    }

    /// `isAuthenticated()`: token_auth (set-level, else the parameter) hashed with the salt
    /// matches a live token of a super user or of a user with write/admin access to the site.
    pub fn is_authenticated(&mut self) -> bool {
        if let Some(a) = self.authenticated {
            return a;
        }
        let ok = if !self.env.tracker.tracking_requests_require_authentication {
            true
        } else {
            let token = match self.token_auth.filter(|t| !t.is_empty()) {
                Some(t) => t.to_owned(),
                None => self.str("token_auth"),
            };
            let ok = self.check_token(&token);
            if !ok {
                self.failures.push(FAILURE_NOT_AUTHENTICATED);
            }
            ok
        };
        self.authenticated = Some(ok);
        ok
    }

    fn check_token(&self, token: &str) -> bool {
        if token.is_empty() {
            return false;
        }
        let hash = self.env.token_hashes.hash(token, self.env.salt);
        let Some(row) = self.env.snap.tokens.get(&hash) else {
            return false;
        };
        if row.expires.is_some_and(|e| e <= self.now) {
            return false;
        }
        // A site's admin/write tokens count however sent (Matomo's `tracking_token_auth` hashes
        // ignore `secure_only`); a super user's secure-only token only in a POST (Matomo's
        // `Auth`, as `authenticateSuperUserOrAdminOrWrite` falls back to it).
        let writer = self
            .env
            .snap
            .writers
            .contains(&(row.login.clone(), self.idsite()));
        writer
            || (self.env.snap.superusers.contains(&row.login)
                && (!row.secure_only
                    || self.server_str("REQUEST_METHOD").as_deref() == Some("POST")))
    }

    /// `getCurrentTimestamp()`: `cdt`/`cdo` when valid (older than a day needs a token), else now.
    pub fn timestamp(&mut self) -> Result<i64, RequestError> {
        if let Some(t) = &self.timestamp {
            return t.clone();
        }
        let t = self.compute_timestamp();
        self.timestamp = Some(t.clone());
        t
    }

    fn compute_timestamp(&mut self) -> Result<i64, RequestError> {
        if !self.has("cdt") && !self.has("cdo") {
            return Ok(self.now);
        }
        let cdt_s = self.str("cdt");
        let cdo = self.int("cdo", 0);
        let mut cdt: Option<i64> = if php::empty_str(&cdt_s) {
            if cdo != 0 {
                Some(self.now)
            } else {
                None
            }
        } else if php::is_numeric(&cdt_s) {
            Some(php::php_intval(&cdt_s))
        } else {
            parse_datetime(&cdt_s)
        };
        let Some(mut t) = cdt.take() else {
            return Ok(self.now);
        };
        if cdo != 0 {
            // Saturating: `cdo` may be any 64-bit integer (PHP's abs() of its smallest is a
            // float, past any time anyway).
            t = t.saturating_sub(cdo.saturating_abs());
        }
        if !(t <= self.now && t > self.now - 20 * 365 * 86400) {
            return Ok(self.now);
        }
        let age = self.now - t;
        let limit = self
            .env
            .tracker
            .tracking_requests_require_authentication_when_custom_timestamp_newer_than;
        if age >= limit as i64 && !self.is_authenticated() {
            return Err(RequestError::InvalidParameter(format!(
                "Custom timestamp is {age} seconds old, requires &token_auth..."
            )));
        }
        // PrivacyManager's "delete old raw data": hits older than the deletion window are
        // refused (compared with the wall clock, as PHP's `time()`).
        if let Some(cutoff) = self
            .env
            .snap
            .delete_logs_cutoff(chrono::Utc::now().timestamp())
        {
            if t < cutoff {
                return Err(RequestError::InvalidParameter(
                    "Custom timestamp is older than the configured 'deleted old raw data' value"
                        .into(),
                ));
            }
        }
        Ok(t)
    }

    /// `getIpString()`: `cip` (token required) or the client address.
    pub fn ip_string(&mut self) -> Result<String, RequestError> {
        let cip = self.str("cip");
        if !php::empty_str(&cip) {
            if !self.is_authenticated() {
                return Err(RequestError::InvalidParameter(
                    "Tracker API 'cip' was used, requires valid token_auth".into(),
                ));
            }
            return Ok(cip);
        }
        for header in &self.env.tracker.proxy_client_headers {
            if let Some(v) = self.server_str(header) {
                if let Some(first) = v.split(',').map(str::trim).find(|s| !s.is_empty()) {
                    return Ok(first.to_owned());
                }
            }
        }
        Ok(self
            .server_str("REMOTE_ADDR")
            .unwrap_or_else(|| "0.0.0.0".into()))
    }

    /// `getForcedUserId()`.
    pub fn user_id(&self) -> Option<String> {
        let uid = self.str("uid");
        (!uid.is_empty()).then_some(uid)
    }

    /// `getVisitorId()`: uid hash, cid, `_id` — as 8 bytes.
    pub fn visitor_id(&self) -> Result<Option<[u8; 8]>, RequestError> {
        if self.env.tracker.enable_userid_overwrites_visitorid {
            if let Some(uid) = self.user_id() {
                return Ok(hex8(&user_id_hash(&uid)));
            }
        }
        let cid = self.str("cid");
        if !cid.is_empty() {
            if cid.len() != 16 {
                return Err(RequestError::InvalidParameter(format!(
                    "Visitor ID (cid) {cid} must be 16 characters long"
                )));
            }
            return Ok(hex8(&cid));
        }
        let id = self.str("_id");
        if id.len() >= 16 {
            // The first 16 bytes, as PHP's substr; `hex8` takes them only when they are 16
            // characters (anything else is not hex either), never cutting inside one.
            return Ok(hex8(&id));
        }
        Ok(None)
    }

    /// `getPlugins()`: fla java qt realp pdf wma ag cookie.
    pub fn plugins(&self) -> [i64; 8] {
        ["fla", "java", "qt", "realp", "pdf", "wma", "ag", "cookie"].map(|p| self.int(p, 0))
    }

    /// `getBrowserLanguage()`.
    pub fn browser_language(&self) -> String {
        let lang = self.str("lang");
        let raw = if lang.is_empty() {
            php::sanitize_string(&self.server_str("HTTP_ACCEPT_LANGUAGE").unwrap_or_default())
        } else {
            lang
        };
        normalise_browser_language(&raw)
    }

    /// `getUserAgent()`: `ua` parameter, else the header.
    pub fn user_agent(&self) -> String {
        let ua = self.str("ua");
        if !ua.is_empty() {
            return ua;
        }
        php::sanitize_string(&self.server_str("HTTP_USER_AGENT").unwrap_or_default())
    }

    /// `getLocalTime()`: `h:m:s` from the request, defaulting to the current UTC time.
    pub fn local_time(&mut self) -> String {
        let t = self.timestamp().unwrap_or(self.now);
        let secs = t.rem_euclid(86400);
        let part = |v: i64, max: i64| if (0..=max).contains(&v) { v } else { 0 };
        let h = part(self.int("h", secs / 3600), 23);
        let m = part(self.int("m", secs / 60 % 60), 59);
        let s = part(self.int("s", secs % 60), 59);
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// `tracking_failure.idfailure` for a failed authentication (Failures::FAILURE_ID_NOT_AUTHENTICATED).
pub const FAILURE_NOT_AUTHENTICATED: u8 = 2;

/// `substr(sha1($uid), 0, 16)`.
pub fn user_id_hash(uid: &str) -> String {
    let mut h = sha1::Sha1::new();
    h.update(uid.as_bytes());
    hex::encode(h.finalize())[..16].to_owned()
}

/// The 8 bytes the first 16 hex digits of `s` encode; `None` when they are not 16 hex digits.
fn hex8(s: &str) -> Option<[u8; 8]> {
    let bytes = hex::decode(s.get(..16)?).ok()?;
    bytes.try_into().ok()
}

/// `Common::getBrowserLanguage` on an already sanitised value.
pub fn normalise_browser_language(raw: &str) -> String {
    if php::empty_str(raw) {
        return String::new();
    }
    let mut s = raw.replace('_', "-").to_lowercase();
    // quoted pairs, whitespace, comments, quality values
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            c if c.is_whitespace() => {}
            '(' => {
                let rest: String = chars.clone().collect();
                if let Some(end) = rest.find(')') {
                    for _ in 0..rest[..=end].chars().count() {
                        chars.next();
                    }
                } else {
                    out.push('(');
                }
            }
            c => out.push(c),
        }
    }
    s = out;
    let q = regex_lite_q(&s);
    s = q;
    if let Some(dot) = s.find('.') {
        s.truncate(dot);
    }
    if s == "c" {
        s.clear();
    }
    if let Some(p) = s.find("chrome:") {
        if p == 0 || s.as_bytes()[p - 1] == b',' {
            s.truncate(p.saturating_sub(usize::from(p > 0)));
        }
    }
    s.replace("sr-sp", "sr-rs")
}

/// Removes every `;q=[0-9.]+`.
fn regex_lite_q(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b";q=") {
            let mut j = i + 3;
            while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'.') {
                j += 1;
            }
            if j > i + 3 {
                i = j;
                continue;
            }
        }
        let ch = s[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// `strtotime` for the common `YYYY-MM-DD HH:MM:SS` / `YYYY-MM-DD` forms (UTC).
fn parse_datetime(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S") {
        return Some(dt.and_utc().timestamp());
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| dt.and_utc().timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browser_language_like_php() {
        assert_eq!(normalise_browser_language("es-419,es;q=0.9"), "es-419,es");
        assert_eq!(normalise_browser_language("de-CH, de;q=0.9"), "de-ch,de");
        assert_eq!(normalise_browser_language("en_US"), "en-us");
        assert_eq!(normalise_browser_language("sr-SP"), "sr-rs");
        assert_eq!(normalise_browser_language(""), "");
    }

    #[test]
    fn uid_hash() {
        assert_eq!(user_id_hash("a").len(), 16);
    }
}
