//! Phase 1 of a batch: everything about a request that does not depend on visit state — its
//! time, IP, visitor id, device, exclusion verdict (`VisitExcluded`), config_id (`Settings`)
//! and action (`Action::factory`). Pure apart from reading the configuration snapshot; the
//! fingerprint salts it needs were fetched or created before (`batch::load_salts`).

use std::collections::HashMap;

use matomo_device_detector::{ClientHints, MatomoDeviceColumns};
use md5::Digest;

use super::actions::{self, ActionCtx, ActionSpec};
use super::exclusion;
use super::php;
use super::phpurl::ParamMatcher;
use super::request::{Request, RequestError};
use super::settings::Snapshot;
use super::sql;
use super::Tracker;

/// Per site, the query parameters removed from page URLs (`PageUrl::getQueryParametersToExclude`),
/// built once per configuration snapshot.
pub type UrlMatchers = HashMap<u32, ParamMatcher>;

/// The snapshot's [`UrlMatchers`], built for every site on first use. They were built on every
/// batch, which cost every batch ~µs per site of the installation, hit or not.
pub fn url_matchers<'s>(
    snap: &'s Snapshot,
    campaign: &super::campaign::CampaignParams,
) -> &'s UrlMatchers {
    snap.url_matchers
        .get_or_init(|| build_url_matchers(snap, campaign))
}

/// Builds [`UrlMatchers`] for every site of the snapshot.
pub fn build_url_matchers(
    snap: &Snapshot,
    campaign: &super::campaign::CampaignParams,
) -> UrlMatchers {
    snap.sites
        .values()
        .map(|site| {
            let names = exclusion::query_parameters_to_exclude(
                &site.excluded_parameters.join(","),
                &snap.global_excluded_parameters.join(","),
                &actions::DEFAULT_EXCLUDED.join(","),
                campaign,
            );
            (site.idsite, ParamMatcher::new(&names))
        })
        .collect()
}

/// A request read in phase 1.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Index of the set in the batch.
    pub set: usize,
    /// Index of the request in its set.
    pub params: usize,
    /// Requests of the set tracked before this one (QueuedTracking's `$this->count`).
    pub count_before: usize,
    /// idsite.
    pub idsite: u32,
    /// The request's current time.
    pub ts: i64,
    /// IP string (cip or client address).
    pub ip: String,
    /// `getVisitorId()`.
    pub visitor_id: Option<[u8; 8]>,
    /// config_id.
    pub config_id: [u8; 8],
    /// Device columns, when device detection is loaded.
    pub device: Option<MatomoDeviceColumns>,
    /// The action, when the request records one (no manual goal, ecommerce or ping).
    pub spec: Option<ActionSpec>,
}

/// Fingerprint salts of the batch: the snapshot's, plus those read or created in MySQL for
/// days the snapshot does not know yet (see `batch::load_salts`).
#[derive(Debug, Default)]
pub struct SaltBook {
    /// (idsite, day) → salt, for days missing from the snapshot.
    pub known: HashMap<(u32, String), String>,
    /// (idsite, day) → what [`SaltBook::salt`] answers, for the days of the batch, worked out
    /// once ([`SaltBook::resolve`]) instead of parsing the snapshot's JSON option per request.
    resolved: HashMap<(u32, String), String>,
}

impl SaltBook {
    /// The salt of a site and day (`FingerprintSalt::getSalt`); empty when unknown, which only
    /// happens for a day `batch::load_salts` did not see.
    pub fn salt(&self, snap: &Snapshot, idsite: u32, day: &str) -> String {
        let key = (idsite, day.to_owned());
        if let Some(salt) = self.resolved.get(&key) {
            return salt.clone();
        }
        self.lookup(snap, &key)
    }

    fn lookup(&self, snap: &Snapshot, key: &(u32, String)) -> String {
        snap.fingerprint_salt(key.0, &key.1)
            .or_else(|| self.known.get(key).cloned())
            .unwrap_or_default()
    }

    /// Works out the salts of `keys` once, as [`SaltBook::salt`] would.
    pub fn resolve<'k>(
        &mut self,
        snap: &Snapshot,
        keys: impl IntoIterator<Item = &'k (u32, String)>,
    ) {
        for key in keys {
            let salt = self.lookup(snap, key);
            self.resolved.insert(key.clone(), salt);
        }
    }
}

/// `n` characters of `[a-z0-9]` (Matomo's `Common::getRandomString`).
pub fn random_string(n: usize) -> String {
    random_string_from(n, b"abcdefghijklmnopqrstuvwxyz0123456789")
}

/// `n` characters drawn from `alphabet` (`Common::getRandomString($len, $alphabet)`).
pub fn random_string_from(n: usize, alphabet: &[u8]) -> String {
    use rand::Rng;
    let mut r = rand::rng();
    (0..n)
        .map(|_| alphabet[r.random_range(0..alphabet.len())] as char)
        .collect()
}

/// A site's time zone, parsed once when the configuration snapshot is read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    /// An IANA zone (`Europe/Berlin`, `UTC`).
    Named(chrono_tz::Tz),
    /// Matomo's manual offsets (`UTC+5.5`, `UTC-3`) in seconds; also what an unknown name
    /// becomes (0, as Matomo falls back to UTC).
    Fixed(i64),
}

impl Default for Zone {
    fn default() -> Self {
        Zone::Fixed(0)
    }
}

impl Zone {
    /// The zone a `site.timezone` value names.
    pub fn parse(tz: &str) -> Zone {
        if let Ok(z) = tz.parse::<chrono_tz::Tz>() {
            return Zone::Named(z);
        }
        match tz.strip_prefix("UTC").map(str::parse::<f64>) {
            Some(Ok(h)) => Zone::Fixed((h * 3600.0) as i64),
            _ => Zone::Fixed(0),
        }
    }

    /// Seconds to add to UTC `ts` for the local time.
    pub fn offset(&self, ts: i64) -> i64 {
        match self {
            Zone::Named(z) => {
                use chrono::{Offset, TimeZone};
                let utc = chrono::DateTime::from_timestamp(ts, 0)
                    .unwrap_or_default()
                    .naive_utc();
                i64::from(z.offset_from_utc_datetime(&utc).fix().local_minus_utc())
            }
            Zone::Fixed(s) => *s,
        }
    }

    /// The local day of `ts` as a day number (days since 1970-01-01), to compare days without
    /// formatting them.
    pub fn day_number(&self, ts: i64) -> i64 {
        (ts + self.offset(ts)).div_euclid(86_400)
    }
}

/// The site-local calendar day (`YYYY-MM-DD`) of `ts`.
pub fn local_day(zone: &Zone, ts: i64) -> String {
    sql::datetime(ts + zone.offset(ts))[..10].to_owned()
}

/// `IPUtils::stringToBinaryIP` (0.0.0.0 when unparsable).
pub fn ip_to_bytes(ip: &str) -> Vec<u8> {
    match ip.trim().parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => v4.octets().to_vec(),
        Ok(std::net::IpAddr::V6(v6)) => v6.octets().to_vec(),
        Err(_) => vec![0, 0, 0, 0],
    }
}

/// The parts of Matomo's config hash (`Settings::getConfigHash`).
#[derive(Debug, Clone, Copy)]
pub struct ConfigParts<'a> {
    /// OS short name (`UNK`, `BOT`).
    pub os: &'a str,
    /// Browser short name (browsers only, else `UNK`).
    pub browser: &'a str,
    /// Browser version (browsers only).
    pub version: &'a str,
    /// fla java qt realp pdf wma ag cookie.
    pub plugins: [i64; 8],
    /// IP as it enters the hash: the IP string, or the binary address when
    /// `useAnonymizedIpForVisitEnrichment` is on (see [`config_ip`]).
    pub ip: &'a [u8],
    /// Browser language.
    pub lang: &'a str,
    /// `[General] salt`.
    pub salt: &'a str,
    /// Daily fingerprint salt followed by the day.
    pub day_salt: &'a str,
    /// idsite (omitted when fingerprints are shared across sites).
    pub idsite: Option<u32>,
}

/// The IP that enters config_id. `VisitRequestProcessor` passes the IP string, except with
/// PrivacyManager's `useAnonymizedIpForVisitEnrichment`, where it passes the `location_ip`
/// property — at that point still the binary, not yet anonymised, address.
pub fn config_ip<'a>(use_anonymized_ip: bool, ip: &'a str, ip_bin: &'a [u8]) -> &'a [u8] {
    if use_anonymized_ip {
        ip_bin
    } else {
        ip.as_bytes()
    }
}

/// config_id: the first 8 bytes of the md5 of the configuration string.
pub fn config_id(c: &ConfigParts<'_>) -> [u8; 8] {
    // os browser version fla java 0 qt realp pdf wma 0 ag cookie, ip, lang (20 chars), salt,
    // day salt, idsite — appended in place (this runs for every request).
    let [fla, java, qt, realp, pdf, wma, ag, cookie] = c.plugins;
    let mut s = String::with_capacity(128);
    s.push_str(c.os);
    s.push_str(c.browser);
    s.push_str(c.version);
    for v in [fla, java, 0, qt, realp, pdf, wma, 0, ag, cookie] {
        sql::push_int(&mut s, v);
    }
    let mut s = s.into_bytes();
    s.extend_from_slice(c.ip);
    let mut rest = String::with_capacity(96);
    rest.extend(c.lang.chars().take(20));
    rest.push_str(c.salt);
    rest.push_str(c.day_salt);
    if let Some(idsite) = c.idsite {
        sql::push_int(&mut rest, i64::from(idsite));
    }
    s.extend_from_slice(rest.as_bytes());
    let d = md5::Md5::digest(&s);
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

fn client_hints(req: &Request<'_>) -> ClientHints {
    match req
        .raw("uadata")
        .and_then(php::raw_string)
        .filter(|s| !s.is_empty())
    {
        Some(json) => ClientHints::from_uadata_json(&json).unwrap_or_default(),
        None => ClientHints::from_headers(
            req.server
                .iter()
                .filter_map(|(k, v)| php::raw_string(v).map(|v| (k.clone(), v))),
        ),
    }
}

/// Location parameters that need a token (`Visit::$fieldsThatRequireAuth`).
pub const LOCATION_OVERRIDES: [&str; 5] = ["city", "region", "country", "lat", "long"];

/// Reads one request in the order `Visit::handle` does. `Ok(None)`: excluded or `rec` not 1
/// (nothing recorded, no error); `Err`: PHP throws for this request. `count_before` is
/// QueuedTracking's count of requests of the set tracked before this one.
pub fn prepare(
    t: &Tracker,
    snap: &Snapshot,
    salts: &SaltBook,
    req: &mut Request<'_>,
    (set, params): (usize, usize),
    count_before: usize,
    matchers: &UrlMatchers,
) -> Result<Option<Prepared>, RequestError> {
    let empty = ParamMatcher::default();
    let tr = &t.config.matomo.tracker;
    // validateRequest: location overrides and the custom timestamp need a token.
    for field in LOCATION_OVERRIDES {
        if !php::empty_str(&req.str(field)) && !req.is_authenticated() {
            return Err(RequestError::InvalidParameter(format!(
                "Tracker API '{field}' was used, requires valid token_auth"
            )));
        }
    }
    let ts = req.timestamp()?;
    let ip = req.ip_string()?;
    let idsite = req.idsite();

    // The user agent as sent (`ua` parameter, else the header); DeviceDetector gets it the
    // way Matomo passes it, sanitised (`detect_for_matomo`).
    let ua = req
        .raw("ua")
        .and_then(php::raw_string)
        .filter(|s| !s.is_empty())
        .or_else(|| req.server_str("HTTP_USER_AGENT"))
        .unwrap_or_default();
    let detection = t
        .devices
        .as_ref()
        .map(|dd| dd.detect_for_matomo(&ua, &client_hints(req)));
    let ip_bin = ip_to_bytes(&ip);
    let lists = snap.exclusions(req.site);
    let via = req.server_str("HTTP_VIA").unwrap_or_default();
    let x_purpose = req.server_str("HTTP_X_PURPOSE").unwrap_or_default();
    let x_moz = req.server_str("HTTP_X_MOZ").unwrap_or_default();
    let urlref = req.str("urlref");
    let url = req.str("url");
    let input = exclusion::ExclusionInput {
        bots_param: req.int("bots", 0),
        device_is_bot: detection.as_ref().is_some_and(|d| d.is_bot()),
        rec_param: req.int("rec", 0),
        ip: &ip_bin,
        http_via: &via,
        excluded_ips: &lists.ip_ranges,
        user_agent: &ua,
        excluded_user_agents: &lists.user_agents,
        spam_filter_enabled: true,
        spammers: &t.lists.spammers,
        urlref: &urlref,
        exclude_unknown_urls: req.site.exclude_unknown_urls,
        site_urls: &req.site.urls,
        idsite,
        url: &url,
        x_purpose: &x_purpose,
        x_moz: &x_moz,
    };
    let extra = exclusion::ExtraChecks {
        request_excluded: exclusion::is_request_excluded(&t.exclude_rules, |name| req.str(name)),
        ignore_cookie_found: req
            .cookie
            .get(&tr.ignore_visits_cookie_name)
            .and_then(php::raw_string)
            .is_some_and(|v| exclusion::is_ignore_cookie(&v)),
    };
    if exclusion::check_full(&input, extra).is_some() {
        return Ok(None);
    }
    let visitor_id = req.visitor_id()?;

    let device = detection.as_ref().map(|d| d.matomo_columns());
    let (os, browser, version) = match &device {
        Some(d) if d.config_client_type == Some(1) => (
            d.config_os.clone(),
            d.config_browser_name.clone(),
            d.config_browser_version.clone(),
        ),
        Some(d) => (d.config_os.clone(), "UNK".to_owned(), String::new()),
        None => ("UNK".to_owned(), "UNK".to_owned(), String::new()),
    };
    let mut plugins = req.plugins();
    if detection
        .as_ref()
        .and_then(|d| d.client.as_ref())
        .is_some_and(|c| c.name == "Internet Explorer")
    {
        plugins[7] = 0;
    }
    let across_sites = tr.enable_fingerprinting_across_websites;
    let day_salt = if !across_sites && tr.create_new_visit_after_midnight {
        let day = local_day(&req.site.zone, ts);
        format!("{}{day}", salts.salt(snap, idsite, &day))
    } else {
        String::new()
    };
    let config_id = config_id(&ConfigParts {
        os: &os,
        browser: &browser,
        version: &version,
        plugins,
        ip: config_ip(
            snap.privacy_flag("useAnonymizedIpForVisitEnrichment", false),
            &ip,
            &ip_bin,
        ),
        lang: &req.browser_language(),
        salt: &t.config.matomo.salt,
        day_salt: &day_salt,
        idsite: (!across_sites).then_some(idsite),
    });

    let idgoal = req.int("idgoal", -1);
    let spec = if idgoal >= 0 || req.int("ping", 0) == 1 {
        None
    } else {
        let ctx = ActionCtx {
            snap,
            exclude: matchers.get(&idsite).unwrap_or(&empty),
            limit: tr.page_maximum_length,
            title_delimiter: &tr.action_title_category_delimiter,
        };
        Some(actions::classify(req, &ctx).map_err(|e| RequestError::InvalidParameter(e.0))?)
    };
    Ok(Some(Prepared {
        set,
        params,
        count_before,
        idsite,
        ts,
        ip,
        visitor_id,
        config_id,
        device,
        spec,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_days() {
        // 2026-11-10 03:00 UTC is still 2026-11-09 in New York.
        let ts = 1_794_279_600;
        let day = |tz: &str| local_day(&Zone::parse(tz), ts);
        assert_eq!(day("UTC"), "2026-11-10");
        assert_eq!(day("America/New_York"), "2026-11-09");
        assert_eq!(day("UTC+5.5"), "2026-11-10");
    }

    #[test]
    fn config_id_is_md5_prefix() {
        let parts = ConfigParts {
            os: "UNK",
            browser: "UNK",
            version: "",
            plugins: [0; 8],
            ip: b"1.2.3.4",
            lang: "en",
            salt: "s",
            day_salt: "",
            idsite: Some(1),
        };
        let d = md5::Md5::digest(b"UNKUNK00000000001.2.3.4ens1");
        assert_eq!(config_id(&parts).to_vec(), d[..8].to_vec());
    }

    #[test]
    fn config_id_takes_the_binary_ip_for_anonymised_enrichment() {
        let ip_bin = ip_to_bytes("1.2.3.4");
        assert_eq!(config_ip(false, "1.2.3.4", &ip_bin), b"1.2.3.4");
        let parts = ConfigParts {
            os: "UNK",
            browser: "UNK",
            version: "",
            plugins: [0; 8],
            ip: config_ip(true, "1.2.3.4", &ip_bin),
            lang: "en",
            salt: "s",
            day_salt: "",
            idsite: Some(1),
        };
        let mut s = b"UNKUNK0000000000".to_vec();
        s.extend_from_slice(&[1, 2, 3, 4]);
        s.extend_from_slice(b"ens1");
        assert_eq!(
            config_id(&parts).to_vec(),
            md5::Md5::digest(&s)[..8].to_vec()
        );
    }

    #[test]
    fn ip_bytes() {
        assert_eq!(ip_to_bytes("192.168.50.140"), vec![192, 168, 50, 140]);
        assert_eq!(ip_to_bytes("::1").len(), 16);
        assert_eq!(ip_to_bytes("junk"), vec![0, 0, 0, 0]);
    }
}
