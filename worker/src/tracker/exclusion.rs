//! Which hits Matomo drops, in `core/Tracker/VisitExcluded::isExcluded`'s order: non-human bots
//! (device detection's verdict, passed in, or an address in Matomo's built-in bot ranges —
//! Google, Bing 157.54.0.0/15, Yahoo… — unless `bots=1`), `rec` not set, excluded IPs (site +
//! global; CIDR, wildcards `1.2.3.*`, single addresses, as `IPUtils::getIPRangeBounds` parses
//! them), excluded user agents (site + global; case-insensitive substring, or a PHP regex),
//! the referrer spam list, unknown URLs (`exclude_unknown_urls`), and prefetch requests.
//!
//! Also the URL query-parameter exclusion shared by page and referrer URLs
//! (`PageUrl::getQueryParametersToExclude` / `excludeQueryParametersFromUrl`).
//!
//! Also `[Tracker] exclude_requests` rules (`Request::isRequestExcluded`) and the `matomo_ignore`
//! cookie. Not covered (documented): legacy signed ignore cookies, plugin hooks. Pure, no I/O.
//!
//! API:
//! - `IpRange::parse(&str) -> Option<IpRange>`; `ip_in_ranges(&[u8], &[IpRange])`
//! - `excluded_ip_ranges(site_excluded_ips, global_excluded_ips) -> Vec<IpRange>`
//! - `comma_list(global, site) -> Vec<String>` (`filterBlankFromCommaSepList(global . ',' . site)`)
//! - `UserAgentExclusions::new(&[String])`; `is_user_agent_excluded(ua, &UserAgentExclusions)`
//! - `query_parameters_to_exclude(site, global, config, &CampaignParams) -> Vec<String>`
//! - `exclude_query_parameters_from_url(url, &ParamMatcher, extra, keep_fragment) -> Option<String>`
//! - `parse_exclude_requests(config) -> Vec<RequestRule>`; `is_request_excluded(&rules, param_fn)`
//! - `is_ignore_cookie(cookie_value) -> bool`
//! - `check(&ExclusionInput) -> Option<ExclusionReason>` (the ordered decision);
//!   `check_full(&ExclusionInput, ExtraChecks)` adds `exclude_requests` and the ignore cookie

use std::sync::{Arc, OnceLock};

use super::campaign::CampaignParams;
use super::lists::SpamList;
use super::pcre::PhpRegex;
use super::phpurl::{
    empty_str, parse_url, query_params, query_string_excluding_extra, ParamMatcher,
};
use super::referrers::{cleanup_url, SiteUrlIndex};

/// An inclusive address range in binary form (4 or 16 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRange {
    low: Vec<u8>,
    high: Vec<u8>,
}

fn inet_pton(s: &str) -> Option<Vec<u8>> {
    if s.contains(':') {
        s.parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|a| a.octets().to_vec())
    } else {
        s.parse::<std::net::Ipv4Addr>()
            .ok()
            .map(|a| a.octets().to_vec())
    }
}

/// PHP `is_numeric` then `(int)` for the CIDR bits part.
fn numeric_bits(s: &str) -> Option<i64> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0B', '\x0C']);
    let t = t.trim_end_matches([' ', '\t', '\n', '\r', '\x0B', '\x0C']);
    let v: f64 = t.parse().ok().filter(|_| {
        !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | '+' | '-' | 'e' | 'E'))
    })?;
    v.is_finite().then_some(v.trunc() as i64)
}

fn wildcard_rejected(s: &str) -> bool {
    // '/[^.:]\*|\*.*([^.:*]|::)/'
    let b = s.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'*' {
            if i > 0 && b[i - 1] != b'.' && b[i - 1] != b':' {
                return true;
            }
            let rest = &s[i + 1..];
            if rest.bytes().any(|c| !matches!(c, b'.' | b':' | b'*')) || rest.contains("::") {
                return true;
            }
        }
    }
    false
}

impl IpRange {
    /// `IPUtils::getIPRangeBounds`: `a.b.c.d`, `a.b.c.d/n`, `a.b.*.*`, and the IPv6 forms.
    pub fn parse(range: &str) -> Option<IpRange> {
        let r = range.trim_matches([' ', '\t', '\n', '\r', '\0', '\x0B']);
        if empty_str(r) {
            return None;
        }
        let (addr, bits): (String, Option<i64>) = if r.contains('*') {
            if wildcard_rejected(r) {
                return None;
            }
            let wildcards = r.matches('*').count() as i64;
            let addr = r.replace('*', "0");
            let bin = inet_pton(&addr)?;
            let max = (bin.len() * 8) as i64;
            (addr, Some(max - if max == 32 { 8 } else { 16 } * wildcards))
        } else if let Some(pos) = r.find('/') {
            (r[..pos].to_owned(), Some(numeric_bits(&r[pos + 1..])?))
        } else {
            (r.to_owned(), None)
        };
        let mut low = inet_pton(&addr)?;
        let max = (low.len() * 8) as i64;
        let bits = bits.unwrap_or(max);
        if bits < 0 || bits > max {
            return None;
        }
        let bits = bits as usize;
        let mut high = low.clone();
        let mut octet = bits.div_ceil(8);
        for i in octet..low.len() {
            low[i] = 0;
            high[i] = 255;
        }
        let n = bits % 8;
        if n != 0 {
            let mask = (1u8 << (8 - n)) - 1;
            octet -= 1;
            let value = low[octet] & !mask;
            low[octet] = value;
            high[octet] = value | mask;
        }
        Some(IpRange { low, high })
    }

    /// `IP::isInRange` on a binary address.
    pub fn contains(&self, ip: &[u8]) -> bool {
        ip.len() == self.low.len() && ip >= self.low.as_slice() && ip <= self.high.as_slice()
    }
}

/// `IP::isInRanges`.
pub fn ip_in_ranges(ip: &[u8], ranges: &[IpRange]) -> bool {
    (ip.len() == 4 || ip.len() == 16) && ranges.iter().any(|r| r.contains(ip))
}

/// `SitesManager::getTrackerExcludedIps`: the site's list then the global one; unparsable
/// entries are skipped.
pub fn excluded_ip_ranges(site_excluded_ips: &str, global_excluded_ips: &str) -> Vec<IpRange> {
    format!("{site_excluded_ips},{global_excluded_ips}")
        .split(',')
        .filter_map(IpRange::parse)
        .collect()
}

const GOOGLE_BOT_RANGES: &[&str] = &[
    "216.239.32.0/19",
    "64.233.160.0/19",
    "66.249.80.0/20",
    "72.14.192.0/18",
    "209.85.128.0/17",
    "66.102.0.0/20",
    "74.125.0.0/16",
    "64.18.0.0/20",
    "207.126.144.0/20",
    "173.194.0.0/16",
];

const OTHER_BOT_RANGES: &[&str] = &[
    // Live/Bing/MSN
    "64.4.0.0/18",
    "65.52.0.0/14",
    "157.54.0.0/15",
    "157.56.0.0/14",
    "157.60.0.0/16",
    "207.46.0.0/16",
    "207.68.128.0/18",
    "207.68.192.0/20",
    "131.253.26.0/20",
    "131.253.24.0/20",
    // Yahoo
    "72.30.198.0/20",
    "72.30.196.0/20",
    "98.137.207.0/20",
    // a Chinese crawler
    "1.202.218.8",
];

fn google_ranges() -> &'static [IpRange] {
    static R: OnceLock<Vec<IpRange>> = OnceLock::new();
    R.get_or_init(|| {
        GOOGLE_BOT_RANGES
            .iter()
            .filter_map(|r| IpRange::parse(r))
            .collect()
    })
}

fn bot_ranges() -> &'static [IpRange] {
    static R: OnceLock<Vec<IpRange>> = OnceLock::new();
    R.get_or_init(|| {
        GOOGLE_BOT_RANGES
            .iter()
            .chain(OTHER_BOT_RANGES)
            .filter_map(|r| IpRange::parse(r))
            .collect()
    })
}

/// `VisitExcluded::isIpInRange`: the address is in Matomo's built-in bot ranges (Google
/// addresses behind Chrome's data-saver proxy excepted).
pub fn is_bot_ip(ip: &[u8], http_via: &str) -> bool {
    let data_saver = http_via.to_lowercase().contains("chrome-compression-proxy")
        && ip_in_ranges(ip, google_ranges());
    !data_saver && ip_in_ranges(ip, bot_ranges())
}

/// `filterBlankFromCommaSepList($first . ',' . $second)`: split, drop empty, drop duplicates.
pub fn comma_list(first: &str, second: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in format!("{first},{second}").split(',') {
        if !item.is_empty() && !out.iter().any(|o| o == item) {
            out.push(item.to_owned());
        }
    }
    out
}

/// Excluded user agents prepared once per configuration snapshot, not per request: each entry
/// ASCII-lowercased for the substring test and, when it is a valid PHP regex, compiled
/// (compiling it cost more than the rest of a hit).
#[derive(Debug, Clone, Default)]
pub struct UserAgentExclusions {
    entries: Vec<(String, Option<Arc<PhpRegex>>)>,
}

impl UserAgentExclusions {
    /// Prepares `entries` (global then site, as Matomo lists them).
    pub fn new(entries: &[String]) -> Self {
        Self {
            entries: entries
                .iter()
                .map(|e| (e.to_ascii_lowercase(), PhpRegex::new(e).ok().map(Arc::new)))
                .collect(),
        }
    }
}

/// `VisitExcluded::isUserAgentExcluded`: an entry contained in the user agent (ASCII
/// case-insensitive) excludes; the first entry that is a valid PHP regex decides alone.
pub fn is_user_agent_excluded(user_agent: &str, excluded: &UserAgentExclusions) -> bool {
    let ua_lower = user_agent.to_ascii_lowercase();
    for (lower, regex) in &excluded.entries {
        if ua_lower.contains(lower.as_str()) {
            return true;
        }
        if let Some(re) = regex {
            return re.is_match(user_agent.as_bytes());
        }
    }
    false
}

/// `PageUrl::getQueryParametersToExclude`: `ignore_referrer`, `ignore_referer`, the site's and
/// the global excluded parameters, `[Tracker] url_query_parameter_to_exclude_from_url`, and
/// every campaign parameter, lowercased. Build a `ParamMatcher` from it once per site.
pub fn query_parameters_to_exclude(
    site_excluded_parameters: &str,
    global_excluded_parameters: &str,
    config_parameters: &str,
    campaign: &CampaignParams,
) -> Vec<String> {
    let mut out: Vec<String> = vec!["ignore_referrer".into(), "ignore_referer".into()];
    out.extend(comma_list(
        site_excluded_parameters,
        global_excluded_parameters,
    ));
    out.extend(config_parameters.split(',').map(|p| p.trim().to_owned()));
    out.extend(campaign.all_names().map(str::to_owned));
    out.iter().map(|p| p.to_lowercase()).collect()
}

/// `PageUrl::excludeQueryParametersFromUrl`: the cleaned URL with excluded parameters removed
/// from its query (or, without a query, from its fragment), host lowercased, fragment dropped
/// unless kept. `None` where PHP returns `false` (unparsable URL).
pub fn exclude_query_parameters_from_url(
    url: &str,
    exclude: &ParamMatcher,
    extra: &[&str],
    keep_fragment: bool,
) -> Option<String> {
    let cleaned = cleanup_url(url);
    let mut parsed = parse_url(&cleaned)?;
    if let Some(h) = parsed.host.as_mut().filter(|h| !empty_str(h)) {
        *h = h.to_lowercase();
    }
    if let Some(f) = parsed.fragment.as_mut().filter(|f| !empty_str(f)) {
        if keep_fragment {
            if f.ends_with('#') {
                f.pop();
            }
        } else {
            f.clear();
        }
    }
    match parsed.query.as_deref().filter(|q| !empty_str(q)) {
        Some(q) => {
            parsed.query = Some(query_string_excluding_extra(
                &query_params(q),
                exclude,
                extra,
            ));
        }
        None => {
            if let Some(f) = parsed.fragment.as_deref().filter(|f| !empty_str(f)) {
                parsed.fragment = Some(query_string_excluding_extra(
                    &query_params(f),
                    exclude,
                    extra,
                ));
            }
        }
    }
    Some(parsed.reverse())
}

/// `VisitExcluded::isUrlExcluded`: with `exclude_unknown_urls`, a URL on none of the site's URLs.
pub fn is_url_excluded(
    exclude_unknown_urls: bool,
    idsite: u32,
    site_urls: &[String],
    url: &str,
) -> bool {
    if !exclude_unknown_urls || site_urls.is_empty() {
        return false;
    }
    let index = SiteUrlIndex::from_site_urls(site_urls.iter().map(|u| (idsite, u.as_str())));
    match parse_url(url) {
        Some(parsed) => !index
            .sites_matching(&parsed, None)
            .is_some_and(|s| s.contains(&idsite)),
        None => true,
    }
}

/// One `[Tracker] exclude_requests` rule (`e_c==Media`, `action_name=@privacy`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRule {
    param: String,
    op: RuleOp,
    value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RuleOp {
    Equal,
    NotEqual,
    Contains,
    NotContains,
    StartsWith,
    EndsWith,
}

/// Parses `[Tracker] exclude_requests` (comma-separated; the value is url-decoded, compared
/// lowercased). Entries without an operator are ignored, as in `Request::isRequestExcluded`.
pub fn parse_exclude_requests(config: &str) -> Vec<RequestRule> {
    const OPS: [(&str, RuleOp); 6] = [
        ("==", RuleOp::Equal),
        ("!=", RuleOp::NotEqual),
        ("=@", RuleOp::Contains),
        ("!@", RuleOp::NotContains),
        ("=^", RuleOp::StartsWith),
        ("=$", RuleOp::EndsWith),
    ];
    let mut rules = Vec::new();
    if empty_str(config) {
        return rules;
    }
    for entry in config.split(',') {
        // '/^(.+?)(==|!=|=@|!@|=\^|=\$){1}(.*)/': the first operator after at least one character
        let line = entry.split('\n').next().unwrap_or("");
        let found = line.char_indices().skip(1).find_map(|(i, _)| {
            OPS.iter()
                .find(|(op, _)| line[i..].starts_with(op))
                .map(|(op, kind)| (i, op.len(), *kind))
        });
        if let Some((i, len, op)) = found {
            rules.push(RequestRule {
                param: line[..i].to_owned(),
                op,
                value: super::phpurl::urldecode(&line[i + len..]).to_lowercase(),
            });
        }
    }
    rules
}

/// `Request::isRequestExcluded`: any rule matches the request. `param` returns a parameter's
/// sanitised string value (`""` when absent).
pub fn is_request_excluded(rules: &[RequestRule], param: impl Fn(&str) -> String) -> bool {
    rules.iter().any(|r| {
        let actual = param(&r.param).to_lowercase();
        let (a, v) = (actual.to_ascii_lowercase(), r.value.to_ascii_lowercase());
        match r.op {
            RuleOp::Equal => actual == r.value,
            RuleOp::NotEqual => actual != r.value,
            RuleOp::Contains => a.contains(&v),
            RuleOp::NotContains => !a.contains(&v),
            RuleOp::StartsWith => a.starts_with(&v),
            RuleOp::EndsWith => {
                r.value.is_empty() || (!actual.is_empty() && actual.ends_with(&r.value))
            }
        }
    })
}

/// Why a hit was excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExclusionReason {
    /// Device detection says bot, or the address is in the built-in bot ranges (no `bots=1`).
    Bot,
    /// `rec` is missing or 0.
    NotRecorded,
    /// A `[Tracker] exclude_requests` rule matched.
    ExcludedRequest,
    /// The visitor set Matomo's ignore cookie.
    IgnoreCookie,
    /// The address is in the site's or the global excluded IPs.
    ExcludedIp,
    /// The user agent matches an excluded user agent.
    ExcludedUserAgent,
    /// `urlref` contains a host of the referrer spam list.
    ReferrerSpam,
    /// `exclude_unknown_urls` and the URL is not one of the site's.
    UnknownUrl,
    /// A browser prefetch (`X-Purpose: preview|instant`, `X-Moz: prefetch`).
    Prefetch,
}

/// Everything `check` reads for one hit.
#[derive(Debug, Clone, Copy)]
pub struct ExclusionInput<'a> {
    /// `bots` parameter as an int (non-zero allows bots).
    pub bots_param: i64,
    /// Device detection's `isBot()` for the hit's user agent and client hints.
    pub device_is_bot: bool,
    /// `rec` parameter as an int.
    pub rec_param: i64,
    /// The request's IP in binary form (before anonymisation).
    pub ip: &'a [u8],
    /// `HTTP_VIA` header (`""` when absent).
    pub http_via: &'a str,
    /// Excluded IP ranges (site + global).
    pub excluded_ips: &'a [IpRange],
    /// The user agent (unsanitised).
    pub user_agent: &'a str,
    /// Excluded user agents (global + site).
    pub excluded_user_agents: &'a UserAgentExclusions,
    /// `[Tracker] enable_spam_filter`.
    pub spam_filter_enabled: bool,
    /// The spam list.
    pub spammers: &'a SpamList,
    /// The `urlref` parameter (sanitised).
    pub urlref: &'a str,
    /// The site's `exclude_unknown_urls`.
    pub exclude_unknown_urls: bool,
    /// The site's URLs (main URL and aliases).
    pub site_urls: &'a [String],
    /// The hit's site.
    pub idsite: u32,
    /// The `url` parameter (sanitised).
    pub url: &'a str,
    /// `HTTP_X_PURPOSE` header.
    pub x_purpose: &'a str,
    /// `HTTP_X_MOZ` header.
    pub x_moz: &'a str,
}

/// `IgnoreCookie::isIgnoreCookieFound` on the value of the `matomo_ignore` cookie
/// (`[Tracker] ignore_visits_cookie_name`) as Matomo 4+ writes it: `ignore=<base64 of "*">`,
/// `:`-separated pairs. Legacy signed cookies (Matomo 3) are not read.
pub fn is_ignore_cookie(value: &str) -> bool {
    if !value.contains('=') {
        return false;
    }
    value.split(':').any(|pair| {
        let Some((name, v)) = pair.split_once('=') else {
            return false;
        };
        name == "ignore" && base64_lenient(v) == b"*"
    })
}

/// PHP's non-strict `base64_decode`: characters outside the alphabet are skipped.
fn base64_lenient(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// The checks that need more than `ExclusionInput` (computed by the caller).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtraChecks {
    /// `is_request_excluded(&parse_exclude_requests(config), …)` for the hit.
    pub request_excluded: bool,
    /// `is_ignore_cookie(cookie value)` for the hit's `matomo_ignore` cookie.
    pub ignore_cookie_found: bool,
}

/// `VisitExcluded::isExcluded` without the `exclude_requests` and ignore-cookie checks (see
/// `check_full`).
pub fn check(i: &ExclusionInput<'_>) -> Option<ExclusionReason> {
    check_full(i, ExtraChecks::default())
}

/// `VisitExcluded::isExcluded`: the first reason that applies, in Matomo's order (bots, `rec`,
/// `exclude_requests`, ignore cookie, IPs, user agents, spam, unknown URLs, prefetch).
pub fn check_full(i: &ExclusionInput<'_>, extra: ExtraChecks) -> Option<ExclusionReason> {
    if i.bots_param == 0 && (i.device_is_bot || is_bot_ip(i.ip, i.http_via)) {
        return Some(ExclusionReason::Bot);
    }
    if i.rec_param == 0 {
        return Some(ExclusionReason::NotRecorded);
    }
    if extra.request_excluded {
        return Some(ExclusionReason::ExcludedRequest);
    }
    if extra.ignore_cookie_found {
        return Some(ExclusionReason::IgnoreCookie);
    }
    if ip_in_ranges(i.ip, i.excluded_ips) {
        return Some(ExclusionReason::ExcludedIp);
    }
    if is_user_agent_excluded(i.user_agent, i.excluded_user_agents) {
        return Some(ExclusionReason::ExcludedUserAgent);
    }
    if i.spam_filter_enabled && i.spammers.is_spam(i.urlref) {
        return Some(ExclusionReason::ReferrerSpam);
    }
    if is_url_excluded(i.exclude_unknown_urls, i.idsite, i.site_urls, i.url) {
        return Some(ExclusionReason::UnknownUrl);
    }
    if matches!(i.x_purpose, "preview" | "instant") || i.x_moz == "prefetch" {
        return Some(ExclusionReason::Prefetch);
    }
    None
}

#[cfg(test)]
mod tests;
