//! Referrer detection: the five `log_visit` referrer columns (`referer_type`, `referer_name`,
//! `referer_keyword`, `referer_url`) computed exactly as Matomo 5's
//! `plugins/Referrers/Columns/Base.php` does, in its order: `ignore_referrer`, campaign (landing
//! URL query then fragment, keyword from the referrer's search engine or an AdSense `url=`,
//! then raw tracking parameters), direct entry (referrer host is one of any site's URLs, the
//! request URL's host counting for the current site), search engine, social network, website
//! (lowercased host, `www.` kept, plus the path of a matching site URL). Search-engine keyword
//! extraction follows `Referrers\SearchEngine::extractInformationFromUrl` (lossy host patterns,
//! Google special cases, hidden keywords, charsets).
//!
//! NULL vs empty matters to reports: a direct entry has NULL name and keyword, a search engine
//! without keyword a NULL keyword, a social network an empty keyword — `Option` carries that.
//! Pure code, no I/O.
//!
//! API:
//! - `SiteUrlIndex::from_site_urls(iter of (idsite, url))` — all sites' main URLs and aliases
//! - `ReferrerDetector { lists, site_urls, campaign }.detect(&SiteReferrerSettings, &ReferrerRequest,
//!   existing: Option<&ExistingReferrer>) -> ReferrerInfo`
//! - `ReferrerDetector::for_existing_visit(current_type, info) -> Option<ReferrerInfo>`
//! - `ReferrerDetector::for_conversion(..) -> ConversionReferrer` (`_rcn`/`_rck`/`_ref` attribution)
//! - `extract_search_engine(&SearchEngines, url) -> Option<SearchEngineHit>`
//! - `lossy_host(host) -> String` (`UrlHelper::getLossyUrl`)

use std::collections::HashMap;

use matomo_wire::php::htmlspecialchars_decode;
use matomo_wire::Params;

use super::campaign::{campaign_from_query, campaign_from_raw_params, php_trim, CampaignParams};
use super::exclusion::exclude_query_parameters_from_url;
use super::lists::ReferrerLists;
use super::phpurl::{
    empty_str, is_look_like_url, parse_url, query_params, urldecode, ParamMatcher, ParsedUrl,
    QueryValue,
};

mod search;
pub use search::{extract_search_engine, lossy_host, SearchEngineHit};

/// `referer_type` values (`Common::REFERRER_TYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ReferrerType {
    /// 1: no referrer, or a referrer on one of the site's own URLs.
    Direct = 1,
    /// 2: a search engine from `SearchEngines.yml`.
    SearchEngine = 2,
    /// 3: any other website.
    Website = 3,
    /// 6: a campaign.
    Campaign = 6,
    /// 7: a social network from `Socials.yml`.
    Social = 7,
}

/// The referrer columns for a visit; `None` is SQL NULL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferrerInfo {
    /// `referer_type`.
    pub referer_type: ReferrerType,
    /// `referer_name` (≤ 255 characters).
    pub referer_name: Option<String>,
    /// `referer_keyword` (≤ 255 characters).
    pub referer_keyword: Option<String>,
    /// `referer_url` (≤ 1500 characters).
    pub referer_url: Option<String>,
}

/// The referrer columns of the visit a hit belongs to (from `log_visit`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExistingReferrer {
    /// `referer_type` as stored.
    pub referer_type: Option<u8>,
    /// `referer_name` as stored.
    pub referer_name: Option<String>,
    /// `referer_keyword` as stored.
    pub referer_keyword: Option<String>,
}

/// Per-site settings the detection reads (from the site cache).
#[derive(Debug, Clone, Copy)]
pub struct SiteReferrerSettings<'a> {
    /// The site of the hit.
    pub idsite: u32,
    /// `site.exclude_unknown_urls`.
    pub exclude_unknown_urls: bool,
    /// Whether URL fragments are kept for this site (site setting or global default).
    pub keep_url_fragment: bool,
    /// Excluded referrers: global option first, then the site's (`SitesManager::getExcludedReferrers`).
    pub excluded_referrers: &'a [String],
    /// `PageUrl::getQueryParametersToExclude($idsite)` (see `exclusion::query_parameters_to_exclude`).
    pub url_exclusions: &'a ParamMatcher,
}

/// The request values the detection reads.
#[derive(Debug, Clone, Copy)]
pub struct ReferrerRequest<'a> {
    /// The `url` parameter as the request reader returns it (sanitised), `""` when absent.
    pub url: &'a str,
    /// The `urlref` parameter (sanitised), `""` when absent.
    pub urlref: &'a str,
    /// The raw request parameters (campaign parameters sent with the hit itself).
    pub raw: &'a Params,
}

/// A conversion's attributed referrer (`getValueForRecordGoal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionReferrer {
    /// `referer_type` (as stored on the visit or detected).
    pub referer_type: Option<u8>,
    /// `referer_name`.
    pub referer_name: Option<String>,
    /// `referer_keyword`.
    pub referer_keyword: Option<String>,
}

/// All sites' URLs grouped by canonical host (lowercased, `www.` removed), then by lowercased
/// path ending in `/`, deepest first (`SiteUrls::groupUrlsByHost`).
#[derive(Debug, Clone, Default)]
pub struct SiteUrlIndex {
    hosts: HashMap<String, Vec<(String, Vec<u32>)>>,
}

fn canonical_host(host: &str) -> String {
    let h = host.to_lowercase();
    match h.strip_prefix("www.") {
        Some(rest) => rest.to_owned(),
        None => h,
    }
}

fn canonical_path(p: &ParsedUrl) -> String {
    match &p.path {
        Some(path) => {
            let mut s = path.to_lowercase();
            if !s.ends_with('/') {
                s.push('/');
            }
            s
        }
        None => "/".to_owned(),
    }
}

fn path_depth_order(a: &str, b: &str) -> std::cmp::Ordering {
    let (na, nb) = (a.matches('/').count(), b.matches('/').count());
    if na == nb {
        b.cmp(a)
    } else {
        nb.cmp(&na)
    }
}

impl SiteUrlIndex {
    /// `groupUrlsByHost` over `(idsite, url)` pairs (site main URLs then aliases).
    pub fn from_site_urls<'u>(urls: impl IntoIterator<Item = (u32, &'u str)>) -> Self {
        let mut idx = SiteUrlIndex::default();
        for (idsite, url) in urls {
            idx.add(idsite, url, true);
        }
        for paths in idx.hosts.values_mut() {
            paths.sort_by(|a, b| path_depth_order(&a.0, &b.0));
        }
        idx
    }

    /// The index `isReferrerExcluded` builds (insertion order, no sorting).
    fn excluded_referrers(idsite: u32, list: &[String]) -> Self {
        let mut idx = SiteUrlIndex::default();
        for entry in list {
            let stripped = entry
                .strip_prefix("https://")
                .or_else(|| entry.strip_prefix("http://"))
                .unwrap_or(entry);
            idx.add(idsite, &format!("https://{stripped}"), true);
        }
        idx
    }

    /// `addUrlByHost`.
    fn add(&mut self, idsite: u32, url: &str, add_path: bool) {
        let Some(parsed) = parse_url(url) else { return };
        let Some(host) = parsed.host.as_deref() else {
            return;
        };
        let host = canonical_host(host);
        let path = if add_path {
            canonical_path(&parsed)
        } else {
            "/".to_owned()
        };
        let paths = self.hosts.entry(host).or_default();
        match paths.iter_mut().find(|(p, _)| *p == path) {
            Some((_, sites)) => {
                if !sites.contains(&idsite) {
                    sites.push(idsite);
                }
            }
            None => paths.push((path, vec![idsite])),
        }
    }

    /// `getIdSitesMatchingUrl`, with the request URL's host added for the current site
    /// (`addRequestUrlToSiteUrls`) when `request` is given.
    pub(crate) fn sites_matching(
        &self,
        parsed: &ParsedUrl,
        request: Option<(&str, u32)>,
    ) -> Option<Vec<u32>> {
        let host = parsed.host.as_deref().filter(|h| !empty_str(h))?;
        let mut url_host = canonical_host(host);
        let url_path = canonical_path(parsed);
        let mut candidates = vec![url_host.clone(), format!(".{url_host}")];
        while url_host.matches('.').count() >= 2 {
            let cut = url_host.find('.').map_or(0, |p| p + 1);
            url_host = url_host[cut..].to_owned();
            candidates.push(format!(".{url_host}"));
        }
        for cand in candidates {
            let extra = request.filter(|(h, _)| *h == cand).map(|(_, id)| id);
            let paths = self.hosts.get(&cand);
            if paths.is_none() && extra.is_none() {
                continue;
            }
            let mut list: Vec<(String, Vec<u32>)> = paths.cloned().unwrap_or_default();
            if let Some(id) = extra {
                match list.iter_mut().find(|(p, _)| p == "/") {
                    Some((_, sites)) => {
                        if !sites.contains(&id) {
                            sites.push(id);
                        }
                    }
                    None => list.push(("/".to_owned(), vec![id])),
                }
            }
            for (path, sites) in &list {
                if url_path.starts_with(path.as_str()) {
                    return Some(sites.clone());
                }
            }
            if let Some((_, sites)) = list.iter().find(|(p, _)| p == "/") {
                return Some(sites.clone());
            }
        }
        None
    }

    /// `getPathMatchingUrl` (exact canonical host only).
    fn path_matching(&self, parsed: &ParsedUrl, request: Option<(&str, u32)>) -> Option<String> {
        let host = parsed.host.as_deref().filter(|h| !empty_str(h))?;
        let host = canonical_host(host);
        let path = canonical_path(parsed);
        let mut list = self.hosts.get(&host).cloned().unwrap_or_default();
        if request.is_some_and(|(h, _)| h == host) && !list.iter().any(|(p, _)| p == "/") {
            list.push(("/".to_owned(), Vec::new()));
        }
        list.into_iter()
            .map(|(p, _)| p)
            .find(|p| path.starts_with(p.as_str()))
    }
}

/// `PageUrl::cleanupUrl`: unescape, trim, drop line breaks and NULs, cap at 1024 bytes, convert
/// matrix parameters (`;a=1`) into a query string.
pub fn cleanup_url(url: &str) -> String {
    let s = htmlspecialchars_decode(url);
    let s = php_trim(&s).replace(['\n', '\r', '\0'], "");
    let s = truncate_bytes(&s, 1024).to_owned();
    convert_matrix_url(&s)
}

fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn convert_matrix_url(url: &str) -> String {
    let Some(semi) = url.find(';') else {
        return url.to_owned();
    };
    let question = url.find('?');
    let mut s = url.to_owned();
    let mut replace = question.is_none();
    if let Some(q) = question {
        if q > semi {
            s.replace_range(q..q + 1, ";");
            replace = true;
        }
    }
    if replace {
        if let Some(first) = s.find(';') {
            s.replace_range(first..first + 1, "?");
        }
        s = s.replace(';', "&");
    }
    s
}

fn mb_truncate(s: String, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => s[..i].to_owned(),
        None => s,
    }
}

/// Detection context: the loaded lists, the all-sites URL index and the campaign parameters.
#[derive(Debug, Clone, Copy)]
pub struct ReferrerDetector<'a> {
    /// Search engines, socials, spam list.
    pub lists: &'a ReferrerLists,
    /// All sites' URLs.
    pub site_urls: &'a SiteUrlIndex,
    /// Campaign parameter names.
    pub campaign: &'a CampaignParams,
}

struct Analysis {
    typ: ReferrerType,
    name: Option<String>,
    keyword: Option<String>,
}

impl ReferrerDetector<'_> {
    /// `getReferrerInformation($urlref, $url, $idsite, …)`: the referrer columns of a hit.
    /// `existing` is the current visit's referrer (None for a new visit).
    pub fn detect(
        &self,
        site: &SiteReferrerSettings<'_>,
        req: &ReferrerRequest<'_>,
        existing: Option<&ExistingReferrer>,
    ) -> ReferrerInfo {
        let current = cleanup_url(req.url);
        let current_parsed = parse_url(&current);
        if let Some(q) = current_parsed
            .as_ref()
            .and_then(|p| p.query.as_deref())
            .filter(|q| !empty_str(q))
        {
            let qp = query_params(q);
            let is_one = |k: &str| qp.get(k).and_then(QueryValue::as_str) == Some("1");
            if is_one("ignore_referrer") || is_one("ignore_referer") {
                return ReferrerInfo {
                    referer_type: ReferrerType::Direct,
                    referer_name: Some(String::new()),
                    referer_keyword: Some(String::new()),
                    referer_url: Some(String::new()),
                };
            }
        }
        let mut referrer_url = htmlspecialchars_decode(req.urlref).into_owned();
        if !empty_str(&referrer_url)
            && (!is_look_like_url(&referrer_url) || self.is_referrer_excluded(site, &referrer_url))
        {
            referrer_url.clear();
        }
        let ref_parsed = parse_url(&referrer_url);
        let ref_host = ref_parsed
            .as_ref()
            .and_then(|p| p.host.clone())
            .unwrap_or_default();
        let request_host = parse_url(req.url)
            .and_then(|p| p.host)
            .map(|h| (canonical_host(&h), site.idsite));
        let request = request_host.as_ref().map(|(h, id)| (h.as_str(), *id));

        let analysis = self
            .campaign(
                current_parsed.as_ref(),
                &referrer_url,
                ref_parsed.as_ref(),
                &ref_host,
                req.raw,
                existing,
            )
            .or_else(|| {
                let parsed = ref_parsed.as_ref()?;
                self.is_direct_entry(site, parsed, &ref_host, current_parsed.as_ref(), request)
                    .then_some(Analysis {
                        typ: ReferrerType::Direct,
                        name: None,
                        keyword: None,
                    })
            })
            .or_else(|| {
                extract_search_engine(&self.lists.search_engines, &referrer_url).map(|hit| {
                    Analysis {
                        typ: ReferrerType::SearchEngine,
                        name: Some(hit.name),
                        keyword: hit.keyword,
                    }
                })
            })
            .or_else(|| {
                self.lists
                    .socials
                    .network_for_url(&referrer_url)
                    .map(|n| Analysis {
                        typ: ReferrerType::Social,
                        name: Some(n.to_owned()),
                        keyword: Some(String::new()),
                    })
            })
            .or_else(|| {
                if empty_str(&ref_host) {
                    return None;
                }
                let mut name = ref_host.to_lowercase();
                if let Some(path) = ref_parsed
                    .as_ref()
                    .and_then(|p| self.site_urls.path_matching(p, request))
                {
                    if !path.is_empty() && path != "/" {
                        name.push_str(path.trim_end_matches('/'));
                    }
                }
                Some(Analysis {
                    typ: ReferrerType::Website,
                    name: Some(name),
                    keyword: None,
                })
            })
            .unwrap_or(Analysis {
                typ: ReferrerType::Direct,
                name: None,
                keyword: None,
            });

        let extra = referrer_param_exclusions(&ref_host);
        let referer_url = exclude_query_parameters_from_url(
            &referrer_url,
            site.url_exclusions,
            &extra,
            site.keep_url_fragment,
        )
        .map(|u| mb_truncate(u, 1500));
        let cap = |v: Option<String>| {
            v.map(|s| {
                if empty_str(&s) {
                    s
                } else {
                    mb_truncate(s, 255)
                }
            })
        };
        ReferrerInfo {
            referer_type: analysis.typ,
            referer_name: cap(analysis.name),
            referer_keyword: cap(analysis.keyword),
            referer_url,
        }
    }

    /// `onExistingVisit` of the referrer dimensions: a visit that started as a direct entry takes
    /// the referrer of a later hit that has one; otherwise nothing changes (`None`).
    pub fn for_existing_visit(
        current_type: Option<u8>,
        info: &ReferrerInfo,
    ) -> Option<ReferrerInfo> {
        (current_type == Some(ReferrerType::Direct as u8)
            && info.referer_type != ReferrerType::Direct)
            .then(|| info.clone())
    }

    /// `getValueForRecordGoal`: the referrer a conversion is attributed to. `rcn`, `rck` and
    /// `ref_url` are the request's `_rcn`, `_rck`, `_ref` parameters (sanitised, `""` when absent);
    /// `visit` is the visit's referrer after this hit.
    pub fn for_conversion(
        &self,
        site: &SiteReferrerSettings<'_>,
        raw: &Params,
        (rcn, rck, ref_url): (&str, &str, &str),
        visit: &ExistingReferrer,
    ) -> ConversionReferrer {
        let name = php_trim(&urldecode(rcn)).to_owned();
        let keyword = php_trim(&urldecode(rck)).to_owned();
        let mut out = ConversionReferrer {
            referer_type: visit.referer_type,
            referer_name: visit.referer_name.clone(),
            referer_keyword: visit.referer_keyword.clone(),
        };
        let visit_is_campaign = visit.referer_type == Some(ReferrerType::Campaign as u8)
            && !visit.referer_name.as_deref().is_none_or(empty_str);
        if empty_str(&name) && visit_is_campaign {
            // keep the visit's campaign
        } else if !empty_str(&name) {
            out = ConversionReferrer {
                referer_type: Some(ReferrerType::Campaign as u8),
                referer_name: Some(name.to_lowercase()),
                referer_keyword: Some(if empty_str(&keyword) {
                    keyword
                } else {
                    keyword.to_lowercase()
                }),
            };
        } else if !empty_str(ref_url) {
            let req = ReferrerRequest {
                url: "",
                urlref: ref_url,
                raw,
            };
            let info = self.detect(site, &req, Some(visit));
            if matches!(
                info.referer_type,
                ReferrerType::SearchEngine | ReferrerType::Website | ReferrerType::Social
            ) {
                out = ConversionReferrer {
                    referer_type: Some(info.referer_type as u8),
                    referer_name: info.referer_name,
                    referer_keyword: info.referer_keyword,
                };
            }
        }
        out
    }

    fn is_referrer_excluded(&self, site: &SiteReferrerSettings<'_>, referrer_url: &str) -> bool {
        if site.excluded_referrers.is_empty() {
            return false;
        }
        let Some(parsed) = parse_url(referrer_url) else {
            return false;
        };
        let idx = SiteUrlIndex::excluded_referrers(site.idsite, site.excluded_referrers);
        idx.sites_matching(&parsed, None)
            .is_some_and(|s| s.contains(&site.idsite))
    }

    fn is_direct_entry(
        &self,
        site: &SiteReferrerSettings<'_>,
        ref_parsed: &ParsedUrl,
        ref_host: &str,
        current: Option<&ParsedUrl>,
        request: Option<(&str, u32)>,
    ) -> bool {
        if empty_str(ref_host) {
            return false;
        }
        match self.site_urls.sites_matching(ref_parsed, request) {
            Some(sites) => sites.contains(&site.idsite),
            None => {
                !site.exclude_unknown_urls
                    && current
                        .and_then(|c| c.host.as_deref())
                        .is_some_and(|h| h.to_lowercase() == ref_host.to_lowercase())
            }
        }
    }

    /// `detectReferrerCampaign`: `Some` when the hit is a campaign hit.
    fn campaign(
        &self,
        current: Option<&ParsedUrl>,
        referrer_url: &str,
        ref_parsed: Option<&ParsedUrl>,
        ref_host: &str,
        raw: &Params,
        existing: Option<&ExistingReferrer>,
    ) -> Option<Analysis> {
        let mut is_campaign = false;
        let mut name = String::new();
        let mut keyword: Option<String> = Some(String::new());
        // 1) landing URL: the query string, then the fragment unless a keyword was found
        if let Some(cur) = current {
            let mut apply = |part: &str| -> bool {
                let f = campaign_from_query(self.campaign, part);
                let Some(n) = f.name else { return false };
                is_campaign = true;
                name = n;
                if let Some(k) = f.keyword {
                    keyword = Some(k);
                }
                !keyword.as_deref().is_none_or(empty_str)
            };
            let found = cur.query.as_deref().is_some_and(&mut apply);
            if !found {
                if let Some(fragment) = cur.fragment.as_deref() {
                    apply(fragment);
                }
            }
        }
        // 2) keyword from the referrer URL (search engine keyword, AdSense url=)
        let kw_empty = |k: &Option<String>| k.as_deref().is_none_or(empty_str);
        if empty_str(&name) || kw_empty(&keyword) {
            if !empty_str(&name) {
                if let Some(k) = extract_search_engine(&self.lists.search_engines, referrer_url)
                    .and_then(|h| h.keyword)
                    .filter(|k| !empty_str(k))
                {
                    keyword = Some(k);
                }
            }
            let ref_query = ref_parsed
                .and_then(|p| p.query.as_deref())
                .filter(|q| !empty_str(q));
            if let Some(q) = ref_query.filter(|_| {
                kw_empty(&keyword)
                    && !empty_str(ref_host)
                    && (ref_host.contains("googleads") || ref_host.contains("doubleclick"))
            }) {
                let qp = query_params(q);
                let value = |k: &str| {
                    php_trim(&urldecode(
                        qp.get(k).and_then(QueryValue::as_str).unwrap_or(""),
                    ))
                    .to_owned()
                };
                let target = value("url");
                if !empty_str(&target) {
                    if let Some(host) = parse_url(&target)
                        .and_then(|p| p.host)
                        .filter(|h| !empty_str(h))
                    {
                        if empty_str(&name) {
                            let ad_type = value("ad_type");
                            name = if empty_str(&ad_type) {
                                "AdWords".to_owned()
                            } else {
                                format!("AdWords ({ad_type})")
                            };
                            is_campaign = true;
                        }
                        keyword = Some(format!("(adwords) {host}"));
                    }
                }
            }
        }
        // 3) campaign parameters sent with the tracking request
        if let Some((n, k)) = campaign_from_raw_params(self.campaign, raw) {
            is_campaign = true;
            name = n;
            if let Some(k) = k {
                keyword = Some(k);
            }
        }
        let lower_name = mb_truncate(name.to_lowercase(), 255);
        let same_campaign = existing.is_some_and(|e| {
            e.referer_name.as_deref().unwrap_or("").to_lowercase() == lower_name
                && e.referer_type == Some(ReferrerType::Campaign as u8)
        });
        if kw_empty(&keyword) {
            keyword = if same_campaign {
                existing.and_then(|e| e.referer_keyword.clone())
            } else {
                Some(ref_host.to_owned())
            };
        }
        if !is_campaign {
            return None;
        }
        Some(Analysis {
            typ: ReferrerType::Campaign,
            name: Some(name.to_lowercase()),
            keyword: Some(keyword.unwrap_or_default().to_lowercase()),
        })
    }
}

/// Query parameters Matomo strips from referrer URLs of some well-known hosts.
fn referrer_param_exclusions(host: &str) -> Vec<&'static str> {
    let mut v = Vec::new();
    if host.is_empty() {
        return v;
    }
    if host.contains("instagram.com") {
        v.extend(["e", "s"]);
    }
    if host.contains("facebook.com") {
        v.extend(["h", "p"]);
    }
    if host.contains("google.") || host.contains("googleusercontent.") {
        v.extend([
            "ust", "usg", "usd", "sa", "sntz", "ei", "bvm", "ved", "client", "channel",
        ]);
    }
    if host.contains("main.exoclick.com") {
        v.extend(["data", "wpn"]);
    }
    if host.contains("youtube.com") {
        v.extend(["redir_token", "html_redirect", "continuation", "feature"]);
    }
    if host.contains("bing.com") {
        v.extend([
            "cvid", "refig", "elv", "plvar", "setlang", "qs", "cc", "mkt", "PC", "form", "src",
        ]);
    }
    v
}

#[cfg(test)]
mod tests;
