//! A visit's location columns and stored IP, as Matomo 5 computes them:
//! - the browser language (`Request::getBrowserLanguage` / `Common::getBrowserLanguage`: `lang=`
//!   overrides the `Accept-Language` header; lowercased, `_`→`-`, quality values, comments,
//!   charsets and spaces removed, `sr-sp`→`sr-rs`) and `location_browser_lang`
//!   (`extractLanguageAndRegionCodeFromBrowserLanguage`: first valid language, with its region);
//! - the `default` provider's country guess (`Common::getCountry` with Matomo's
//!   language→country table, `enable_language_to_country_guess`), `xx` when unknown;
//! - GeoIP2 (`geoip2php` provider) from a MaxMind-format `.mmdb`: country (lowercase when
//!   stored), region ISO code (GB uses the last subdivision; `CC-` prefixes stripped), English
//!   city name, latitude/longitude rounded to 3 decimals; the default provider is the fallback
//!   when the address is not in the database;
//! - IP anonymisation (`IPv4/IPv6::anonymize`, PrivacyManager options) and the binary form stored
//!   in `location_ip` (4 bytes for IPv4, 16 for IPv6, IPv4-mapped addresses stay 16 bytes).
//!
//! Opening the database is the only I/O (`GeoIpDb::open`); the rest is pure.
//!
//! API:
//! - `browser_language(lang_param, accept_language_header) -> String`
//!   (`browser_language_cli(.., process_lang)` adds the PHP CLI `LANG` fallback)
//! - `location_browser_lang(&browser_lang) -> String`
//! - `country_from_language(&browser_lang, enable_guess) -> String`
//! - `ip_to_binary(&str) -> Vec<u8>`, `binary_to_ip_string(&[u8]) -> String`
//! - `anonymize_ip(&[u8], mask_bytes) -> Vec<u8>`; `PrivacySettings::stored_ip(&[u8]) -> Vec<u8>`
//! - `GeoIpDb::open(path)`, `GeoIpDb::lookup(&ip_string) -> Option<GeoLocation>`
//! - `locate(geo, &privacy, enable_guess, raw_ip, anonymized_ip, &browser_lang) -> Location`

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use matomo_wire::php::sanitize_input_value;
use regex::Regex;
use serde::Deserialize;

mod tables;
pub use tables::{COUNTRY_CODES, COUNTRY_CODES_EXTRA, LANGUAGE_CODES, LANGUAGE_TO_COUNTRY};

/// `Common::LANGUAGE_CODE_INVALID`, also `Visit::UNKNOWN_CODE`.
pub const UNKNOWN: &str = "xx";

fn lang_patterns() -> &'static [Regex] {
    static RES: OnceLock<Vec<Regex>> = OnceLock::new();
    RES.get_or_init(|| {
        [r"\\.", r"(?-u:\s)+", r"\([^)]*\)", r";q=[0-9.]+", r"\..*"]
            .iter()
            .filter_map(|p| Regex::new(p).ok())
            .collect()
    })
}

/// `Request::getBrowserLanguage()`: the `lang` parameter when it is not empty (PHP truthiness),
/// else the `Accept-Language` header, normalised by `Common::getBrowserLanguage`. Both inputs
/// are raw values (they are sanitised here as Matomo does).
pub fn browser_language(lang_param: &str, accept_language: &str) -> String {
    let param = sanitize_input_value(lang_param);
    let value = if param.is_empty() || param == "0" {
        sanitize_input_value(accept_language)
    } else {
        param
    };
    normalize_browser_language(&value)
}

/// `browser_language` as a PHP CLI worker (QueuedTracking) computes it: without `lang` and
/// without an `Accept-Language` header, the worker process's `LANG` environment value is used
/// (`Common::getBrowserLanguage` in CLI mode), e.g. `C.UTF-8` → `c`.
pub fn browser_language_cli(
    lang_param: &str,
    accept_language: &str,
    process_lang: Option<&str>,
) -> String {
    let param = sanitize_input_value(lang_param);
    if !(param.is_empty() || param == "0") {
        return normalize_browser_language(&param);
    }
    let header = sanitize_input_value(accept_language);
    if header.is_empty() || header == "0" {
        if let Some(env) = process_lang {
            return normalize_browser_language(env);
        }
    }
    normalize_browser_language(&header)
}

/// `Common::getBrowserLanguage($value)` for a given, non-null value.
pub fn normalize_browser_language(value: &str) -> String {
    if value.is_empty() || value == "0" {
        return String::new();
    }
    let mut s = value.replace('_', "-").to_lowercase();
    for re in lang_patterns() {
        s = re.replace_all(&s, "").into_owned();
    }
    // Firefox bug: "chrome:" pseudo-locale; first occurrence only
    if let Some(p) = find_chrome(&s) {
        s.truncate(p);
    }
    s = remove_en_securid(&s);
    s.replace("sr-sp", "sr-rs")
}

fn find_chrome(s: &str) -> Option<usize> {
    if s.starts_with("chrome:") {
        return Some(0);
    }
    s.find(",chrome:")
}

fn remove_en_securid(s: &str) -> String {
    // '/(,)(?:en-securid,)|(?:(^|,)en-securid(,|$))/' replaced by '$1', first match only
    let mut best: Option<(usize, usize, &str)> = None;
    let mut consider = |start: usize, end: usize, rep: &'static str| {
        if best.is_none_or(|(b, _, _)| start < b) {
            best = Some((start, end, rep));
        }
    };
    if let Some(p) = s.find(",en-securid,") {
        consider(p, p + 12, ",");
    }
    if s.starts_with("en-securid") && (s.len() == 10 || s[10..].starts_with(',')) {
        consider(0, if s.len() == 10 { 10 } else { 11 }, "");
    }
    let mut from = 0;
    while let Some(p) = s[from..].find(",en-securid") {
        let start = from + p;
        let end = start + 11;
        if end == s.len() {
            consider(start, end, "");
            break;
        }
        from = start + 1;
    }
    match best {
        Some((start, end, rep)) => format!("{}{}{}", &s[..start], rep, &s[end..]),
        None => s.to_owned(),
    }
}

fn lang_region_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(?:^|,)([a-z]{2,3})(?:-[a-z]{4})?(-[a-z]{2})?")
            .unwrap_or_else(|e| unreachable!("{e}"))
    })
}

/// `extractLanguageAndRegionCodeFromBrowserLanguage` with Matomo's language list and no forced
/// region validation: `de-ch,de` → `de-ch`, `zh-hans-cn` → `zh-cn`, `es-419` → `es`.
pub fn language_and_region(browser_lang: &str) -> String {
    for caps in lang_region_regex().captures_iter(browser_lang) {
        let lang = caps.get(1).map_or("", |m| m.as_str());
        if lang.is_empty() || !LANGUAGE_CODES.contains(&lang) {
            continue;
        }
        return match caps.get(2) {
            Some(region) => format!("{lang}{}", region.as_str()),
            None => lang.to_owned(),
        };
    }
    UNKNOWN.to_owned()
}

/// `location_browser_lang` for a new visit: `""` without a language, else the first valid
/// language (with region), else `xx`.
pub fn location_browser_lang(browser_lang: &str) -> String {
    if browser_lang.is_empty() || browser_lang == "0" {
        return String::new();
    }
    language_and_region(browser_lang)
}

fn lang_only_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^([a-z]{2,3})(?:,|;|$)").unwrap_or_else(|e| unreachable!("{e}")))
}

fn region_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"-([a-z]{2})").unwrap_or_else(|e| unreachable!("{e}")))
}

/// `Common::getCountry($lang, $enableLanguageToCountryGuess, $ip)`: the default provider's guess.
pub fn country_from_language(browser_lang: &str, enable_guess: bool) -> String {
    if browser_lang.is_empty() || browser_lang.len() < 2 || browser_lang == UNKNOWN {
        return UNKNOWN.to_owned();
    }
    if enable_guess {
        if let Some(lang) = lang_only_regex()
            .captures(browser_lang)
            .and_then(|c| c.get(1))
        {
            if let Some((_, country)) = LANGUAGE_TO_COUNTRY
                .iter()
                .find(|(l, _)| *l == lang.as_str())
            {
                return (*country).to_owned();
            }
        }
    }
    for caps in region_regex().captures_iter(browser_lang) {
        let cc = caps.get(1).map_or("", |m| m.as_str());
        if COUNTRY_CODES.contains(&cc) {
            return cc.to_owned();
        }
    }
    UNKNOWN.to_owned()
}

/// `IPUtils::stringToBinaryIP`: 4 or 16 bytes; an invalid address is `0.0.0.0`.
pub fn ip_to_binary(ip: &str) -> Vec<u8> {
    if ip.contains(':') {
        match ip.parse::<Ipv6Addr>() {
            Ok(a) => a.octets().to_vec(),
            Err(_) => vec![0; 4],
        }
    } else {
        match ip.parse::<Ipv4Addr>() {
            Ok(a) => a.octets().to_vec(),
            Err(_) => vec![0; 4],
        }
    }
}

/// `IPUtils::binaryToStringIP` (`inet_ntop`); anything not 4 or 16 bytes is `0.0.0.0`.
pub fn binary_to_ip_string(bin: &[u8]) -> String {
    match bin.len() {
        4 => Ipv4Addr::new(bin[0], bin[1], bin[2], bin[3]).to_string(),
        16 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(bin);
            let a = Ipv6Addr::from(o);
            let seg = a.segments();
            // glibc prints IPv4-compatible addresses (::a.b.c.d) in dotted form
            if seg[..6].iter().all(|&s| s == 0) && seg[6] != 0 {
                format!("::{}.{}.{}.{}", o[12], o[13], o[14], o[15])
            } else {
                a.to_string()
            }
        }
        _ => "0.0.0.0".to_owned(),
    }
}

fn is_mapped_v4(bin: &[u8]) -> bool {
    bin.len() == 16
        && (bin[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] || bin[..12] == [0u8; 12])
}

/// `IP::anonymize($byteCount)`: IPv4 (and IPv4-mapped / -compatible IPv6) lose their last
/// `mask` bytes; other IPv6 addresses keep 128 / 64 / 48 / 24 / 0 leading bits for mask 0–4.
pub fn anonymize_ip(bin: &[u8], mask: u8) -> Vec<u8> {
    let mut out = bin.to_vec();
    if bin.len() == 4 || is_mapped_v4(bin) {
        let n = usize::from(mask).min(out.len());
        let len = out.len();
        out[len - n..].iter_mut().for_each(|b| *b = 0);
        return out;
    }
    if bin.len() != 16 {
        return out;
    }
    let keep_bits = match mask {
        0 => 128,
        1 => 64,
        2 => 48,
        3 => 24,
        _ => 0,
    };
    for (i, b) in out.iter_mut().enumerate() {
        let bit = i * 8;
        if bit >= keep_bits {
            *b = 0;
        } else if bit + 8 > keep_bits {
            *b &= 0xffu8 << (8 - (keep_bits - bit));
        }
    }
    out
}

/// The PrivacyManager options the tracker uses (`PrivacyManager.<name>` rows of `option`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrivacySettings {
    /// `ipAnonymizerEnabled` (default on).
    pub ip_anonymizer_enabled: bool,
    /// `ipAddressMaskLength` (default 2 bytes).
    pub ip_address_mask_length: u8,
    /// `useAnonymizedIpForVisitEnrichment` (default off): geolocate the anonymised address.
    pub use_anonymized_ip_for_visit_enrichment: bool,
}

impl Default for PrivacySettings {
    fn default() -> Self {
        PrivacySettings {
            ip_anonymizer_enabled: true,
            ip_address_mask_length: 2,
            use_anonymized_ip_for_visit_enrichment: false,
        }
    }
}

impl PrivacySettings {
    /// Reads the settings from option values (`get("PrivacyManager.ipAnonymizerEnabled")`),
    /// casting as PHP's `settype` does; missing options keep Matomo's defaults.
    pub fn from_options(get: impl Fn(&str) -> Option<String>) -> Self {
        let d = PrivacySettings::default();
        let as_bool = |v: String| !(v.is_empty() || v == "0");
        let as_int = |v: String| {
            let digits: String = v
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse::<u8>().unwrap_or(0)
        };
        PrivacySettings {
            ip_anonymizer_enabled: get("PrivacyManager.ipAnonymizerEnabled")
                .map_or(d.ip_anonymizer_enabled, as_bool),
            ip_address_mask_length: get("PrivacyManager.ipAddressMaskLength")
                .map_or(d.ip_address_mask_length, as_int),
            use_anonymized_ip_for_visit_enrichment: get(
                "PrivacyManager.useAnonymizedIpForVisitEnrichment",
            )
            .map_or(d.use_anonymized_ip_for_visit_enrichment, as_bool),
        }
    }

    /// The bytes stored in `location_ip` for a raw binary address.
    pub fn stored_ip(&self, raw: &[u8]) -> Vec<u8> {
        if self.ip_anonymizer_enabled {
            anonymize_ip(raw, self.ip_address_mask_length)
        } else {
            raw.to_vec()
        }
    }
}

/// Errors opening a GeoIP database.
#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    /// The file could not be opened or is not a MaxMind DB.
    #[error("cannot open GeoIP database {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The reader's error.
        source: maxminddb::MaxMindDbError,
    },
}

/// What a GeoIP lookup gives (as Matomo's provider returns it, before storage).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GeoLocation {
    /// ISO country code, uppercase (`""` when the record has none).
    pub country_code: String,
    /// Region ISO code (`None` without subdivisions).
    pub region_code: Option<String>,
    /// English city name.
    pub city: Option<String>,
    /// Latitude rounded to 3 decimals.
    pub latitude: Option<f64>,
    /// Longitude rounded to 3 decimals.
    pub longitude: Option<f64>,
}

#[derive(Deserialize, Default)]
struct Named {
    #[serde(default)]
    names: HashMap<String, String>,
    #[serde(default)]
    iso_code: Option<String>,
}

#[derive(Deserialize, Default)]
struct Coordinates {
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
}

#[derive(Deserialize, Default)]
struct Record {
    #[serde(default)]
    country: Named,
    #[serde(default)]
    city: Named,
    #[serde(default)]
    location: Coordinates,
    #[serde(default)]
    subdivisions: Vec<Named>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum DbKind {
    Country,
    City,
    Unknown,
}

/// An opened GeoIP2 / GeoLite2 / DB-IP database.
pub struct GeoIpDb {
    reader: maxminddb::Reader<Vec<u8>>,
    kind: DbKind,
}

impl std::fmt::Debug for GeoIpDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIpDb")
            .field("database_type", &self.reader.metadata().database_type)
            .finish()
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

impl GeoIpDb {
    /// Opens a `.mmdb` file.
    pub fn open(path: &Path) -> Result<Self, LocationError> {
        let reader =
            maxminddb::Reader::open_readfile(path).map_err(|source| LocationError::Open {
                path: path.to_owned(),
                source,
            })?;
        let kind = match reader.metadata().database_type.as_str() {
            "GeoLite2-Country"
            | "GeoIP2-Country"
            | "DBIP-Country-Lite"
            | "DBIP-Country"
            | "DBIP-Location (compat=Country)" => DbKind::Country,
            "GeoLite2-City"
            | "DBIP-City-Lite"
            | "DBIP-City"
            | "GeoIP2-City"
            | "GeoIP2-City-Africa"
            | "GeoIP2-City-Asia-Pacific"
            | "GeoIP2-City-Europe"
            | "GeoIP2-City-North-America"
            | "GeoIP2-City-South-America"
            | "DBIP-Location (compat=City)"
            | "GeoIP2-Enterprise"
            | "DBIP-Location-ISP (compat=Enterprise)"
            | "DBIP-Enterprise" => DbKind::City,
            _ => DbKind::Unknown,
        };
        Ok(GeoIpDb { reader, kind })
    }

    /// The provider's lookup: `None` when the address is not in the database (or the database
    /// type is one Matomo does not read), which makes Matomo fall back to the default provider.
    pub fn lookup(&self, ip: &str) -> Option<GeoLocation> {
        if self.kind == DbKind::Unknown {
            return None;
        }
        let addr: IpAddr = ip.parse().ok()?;
        let record: Record = self.reader.lookup(addr).ok()?.decode().ok()??;
        let country_code = record.country.iso_code.unwrap_or_default().to_uppercase();
        let mut loc = GeoLocation {
            country_code,
            ..GeoLocation::default()
        };
        if self.kind == DbKind::City {
            loc.city = record.city.names.get("en").cloned();
            loc.latitude = record.location.latitude.map(round3);
            loc.longitude = record.location.longitude.map(round3);
            let sub = if loc.country_code == "GB" {
                record.subdivisions.last()
            } else {
                record.subdivisions.first()
            };
            if let Some(sub) = sub {
                let mut code = sub.iso_code.clone().unwrap_or_default().to_uppercase();
                let prefix = format!("{}-", loc.country_code);
                if let Some(rest) = code.strip_prefix(&prefix) {
                    code = rest.to_owned();
                }
                loc.region_code = Some(code);
            }
        }
        Some(loc)
    }
}

/// The location columns of a new visit.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    /// `location_country` (lowercase, `xx` when unknown).
    pub country: String,
    /// `location_region`.
    pub region: Option<String>,
    /// `location_city`.
    pub city: Option<String>,
    /// `location_latitude`.
    pub latitude: Option<f64>,
    /// `location_longitude`.
    pub longitude: Option<f64>,
}

/// `VisitorGeolocator::getLocation` with the configured provider (`geo`, or the default
/// provider when `None`) and the default provider as fallback.
pub fn locate(
    geo: Option<&GeoIpDb>,
    privacy: &PrivacySettings,
    enable_guess: bool,
    raw_ip: &[u8],
    anonymized_ip: &[u8],
    browser_lang: &str,
) -> Location {
    let ip = if privacy.use_anonymized_ip_for_visit_enrichment {
        anonymized_ip
    } else {
        raw_ip
    };
    let found = geo.and_then(|g| g.lookup(&binary_to_ip_string(ip)));
    match found {
        Some(g) => Location {
            country: if g.country_code.is_empty() {
                UNKNOWN.to_owned()
            } else {
                g.country_code.to_lowercase()
            },
            region: g.region_code,
            city: g.city,
            latitude: g.latitude,
            longitude: g.longitude,
        },
        None => Location {
            country: country_from_language(browser_lang, enable_guess),
            region: None,
            city: None,
            latitude: None,
            longitude: None,
        },
    }
}

#[cfg(test)]
mod tests;
