//! The Matomo configuration the tracker reads from MySQL — Matomo's tracker cache
//! (`core/Tracker/Cache.php`): sites and their URLs, goals, custom dimensions, global options,
//! fingerprint salts, and who may send `cip`/`cdt` (token hashes, super users, access rows).
//!
//! Loaded in one go into an immutable [`Snapshot`]; the [`super::Tracker`] swaps in a fresh one
//! periodically. Loading only reads; the fingerprint salts Matomo creates lazily are written by
//! the batch (inside the engine's transaction), never from here.

use std::collections::{HashMap, HashSet};

use mysql_async::prelude::Queryable;
use serde_json::Value;

/// One `site` row plus its URLs.
#[derive(Debug, Clone, Default)]
pub struct Site {
    /// idsite.
    pub idsite: u32,
    /// The `timezone` column (`UTC`, `America/New_York`, or `UTC+2`-style offsets), parsed.
    pub zone: super::prepare::Zone,
    /// main_url followed by every `site_url` alias.
    pub urls: Vec<String>,
    /// Whether the site has ecommerce enabled.
    pub ecommerce: bool,
    /// Site search on.
    pub sitesearch: bool,
    /// Site-specific keyword parameters (empty → global default).
    pub sitesearch_keyword_parameters: Vec<String>,
    /// Site-specific category parameters (empty → global default).
    pub sitesearch_category_parameters: Vec<String>,
    /// Excluded IPs / ranges (site only).
    pub excluded_ips: Vec<String>,
    /// Excluded query parameters (site only).
    pub excluded_parameters: Vec<String>,
    /// Excluded user agents (site only).
    pub excluded_user_agents: Vec<String>,
    /// Excluded referrers (site only).
    pub excluded_referrers: Vec<String>,
    /// exclude_unknown_urls.
    pub exclude_unknown_urls: bool,
    /// keep_url_fragment: 0 use the global default, 1 yes, 2 no.
    pub keep_url_fragment: i64,
    /// ts_created as unix seconds.
    pub ts_created: i64,
}

/// One `goal` row.
#[derive(Debug, Clone)]
pub struct Goal {
    /// idgoal.
    pub idgoal: i64,
    /// `url`, `title`, `event_category`, `manually`, `file`, `external_website`, …
    pub match_attribute: String,
    /// Pattern.
    pub pattern: String,
    /// `contains`, `exact` or `regex`.
    pub pattern_type: String,
    /// case_sensitive.
    pub case_sensitive: bool,
    /// allow_multiple.
    pub allow_multiple: bool,
    /// Default revenue.
    pub revenue: f64,
    /// event_value_as_revenue.
    pub event_value_as_revenue: bool,
    /// A regex goal's patterns, compiled once per snapshot (`None` for other goals).
    pub regex: Option<std::sync::Arc<super::goals::GoalRegex>>,
}

/// One active custom dimension.
#[derive(Debug, Clone)]
pub struct CustomDimension {
    /// idcustomdimension (the `dimensionN` parameter).
    pub id: i64,
    /// The column index (`custom_dimension_<index>`).
    pub index: i64,
    /// `visit` or `action`.
    pub scope: String,
    /// case_sensitive (applies to the extraction patterns).
    pub case_sensitive: bool,
    /// Extractions from the `extractions` JSON column, in order.
    pub extractions: Vec<Extraction>,
}

/// One custom dimension extraction (`Dimension\Extraction`).
#[derive(Debug, Clone)]
pub struct Extraction {
    /// `url`, `urlparam` or `action_name` (any other name reads that request parameter).
    pub dimension: String,
    /// The regular expression (one group), or the parameter name for `urlparam`.
    pub pattern: String,
    /// The pattern as PHP formats it (`super::dimensions::compile_extraction`); None when PHP's
    /// `preg_match` would fail on it, so it never extracts anything.
    pub regex: Option<std::sync::Arc<super::pcre::PhpRegex>>,
}

/// `Configuration::decodeExtractions`: a JSON list of `{"dimension":…,"pattern":…}`; entries
/// without a dimension or with an empty pattern are skipped, as the request processor does.
pub fn parse_extractions(json: &str, case_sensitive: bool) -> Vec<Extraction> {
    let Ok(Value::Array(list)) = serde_json::from_str::<Value>(json) else {
        return Vec::new();
    };
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    list.iter()
        .filter_map(|e| {
            let dimension = e.get("dimension").and_then(text)?;
            let pattern = e.get("pattern").and_then(text)?;
            if pattern.is_empty() || pattern == "0" {
                return None;
            }
            let regex = super::dimensions::compile_extraction(&dimension, &pattern, case_sensitive);
            Some(Extraction {
                dimension,
                pattern,
                regex,
            })
        })
        .collect()
}

/// A token hash that may authenticate tracking overrides.
#[derive(Debug, Clone)]
pub struct TokenRow {
    /// The login owning the token.
    pub login: String,
    /// Expiry as unix seconds, if any.
    pub expires: Option<i64>,
    /// `secure_only`: a super user's token then counts only in a POST (a site writer's counts
    /// however sent, as in Matomo).
    pub secure_only: bool,
}

/// An immutable copy of everything above.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Sites by idsite.
    pub sites: HashMap<u32, Site>,
    /// Non-deleted goals by idsite.
    pub goals: HashMap<u32, Vec<Goal>>,
    /// Active custom dimensions by idsite.
    pub dimensions: HashMap<u32, Vec<CustomDimension>>,
    /// `option` rows the tracker cares about (globals, PrivacyManager, salts).
    pub options: HashMap<String, String>,
    /// sha512(token . salt) → owner.
    pub tokens: HashMap<String, TokenRow>,
    /// Super users.
    pub superusers: HashSet<String>,
    /// (login, idsite) with admin or write access.
    pub writers: HashSet<(String, u32)>,
    /// Global excluded IPs (`SitesManager_ExcludedIpsGlobal`).
    pub global_excluded_ips: Vec<String>,
    /// Global excluded query parameters.
    pub global_excluded_parameters: Vec<String>,
    /// Global excluded user agents.
    pub global_excluded_user_agents: Vec<String>,
    /// Global excluded referrers.
    pub global_excluded_referrers: Vec<String>,
    /// Global site search keyword parameters.
    pub global_search_keyword_parameters: Vec<String>,
    /// Global site search category parameters.
    pub global_search_category_parameters: Vec<String>,
    /// Global keep-url-fragment default.
    pub global_keep_url_fragment: bool,
    /// Per site, its exclusion lists merged with the global ones (built by `load`).
    pub exclusions: HashMap<u32, SiteExclusions>,
    /// Per site, the query parameters removed from page URLs, built on first use
    /// (`super::prepare::url_matchers`): they depend on the tracker's campaign parameters too.
    pub url_matchers: std::sync::OnceLock<super::prepare::UrlMatchers>,
    /// Every site's URLs grouped by host (`SiteUrls::groupUrlsByHost`), built on first use
    /// ([`Snapshot::site_url_index`]).
    pub site_url_index: std::sync::OnceLock<super::referrers::SiteUrlIndex>,
}

/// A site's exclusion lists merged with the global ones, as the tracker checks them on every
/// request: built once per snapshot instead of per request.
#[derive(Debug, Clone, Default)]
pub struct SiteExclusions {
    /// Excluded IP ranges, site then global (`VisitExcluded::getIpsToExclude`'s order).
    pub ip_ranges: Vec<super::exclusion::IpRange>,
    /// Excluded user agents, global then site.
    pub user_agents: super::exclusion::UserAgentExclusions,
    /// Excluded referrers, global then site.
    pub referrers: Vec<String>,
}

/// Failure to read the configuration tables.
#[derive(Debug, thiserror::Error)]
#[error("reading Matomo configuration table {table}: {source}")]
pub struct LoadError {
    /// The table being read.
    pub table: &'static str,
    /// The driver error.
    #[source]
    pub source: mysql_async::Error,
}

fn split_list(s: &str) -> Vec<String> {
    s.split([',', '\n'])
        .map(|x| x.trim().to_owned())
        .filter(|x| !x.is_empty())
        .collect()
}

impl Snapshot {
    /// Every site's URLs grouped by host, for direct-entry and referrer detection: built once
    /// per snapshot (it was built on every batch, a cost growing with the installation).
    pub fn site_url_index(&self) -> &super::referrers::SiteUrlIndex {
        self.site_url_index.get_or_init(|| {
            super::referrers::SiteUrlIndex::from_site_urls(
                self.sites
                    .values()
                    .flat_map(|s| s.urls.iter().map(move |u| (s.idsite, u.as_str()))),
            )
        })
    }

    /// Reads every configuration table with the given table prefix.
    pub async fn load(conn: &mut mysql_async::Conn, prefix: &str) -> Result<Snapshot, LoadError> {
        let mut snap = Snapshot::default();
        let err = |table| move |source| LoadError { table, source };

        let sites: Vec<mysql_async::Row> = conn
            .query(format!(
                "SELECT idsite, main_url, timezone, ecommerce, sitesearch, \
                 COALESCE(sitesearch_keyword_parameters,''), COALESCE(sitesearch_category_parameters,''), \
                 COALESCE(excluded_ips,''), COALESCE(excluded_parameters,''), COALESCE(excluded_user_agents,''), \
                 COALESCE(excluded_referrers,''), exclude_unknown_urls, keep_url_fragment, \
                 TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', ts_created) FROM `{prefix}site`"
            ))
            .await
            .map_err(err("site"))?;
        for r in sites {
            let g = |i: usize| -> String {
                r.get::<Option<String>, _>(i).flatten().unwrap_or_default()
            };
            let n = |i: usize| -> i64 { r.get::<Option<i64>, _>(i).flatten().unwrap_or(0) };
            let site = Site {
                idsite: n(0) as u32,
                urls: vec![g(1)],
                zone: super::prepare::Zone::parse(&g(2)),
                ecommerce: n(3) == 1,
                sitesearch: n(4) == 1,
                sitesearch_keyword_parameters: split_list(&g(5)),
                sitesearch_category_parameters: split_list(&g(6)),
                excluded_ips: split_list(&g(7)),
                excluded_parameters: split_list(&g(8)),
                excluded_user_agents: split_list(&g(9)),
                excluded_referrers: split_list(&g(10)),
                exclude_unknown_urls: n(11) == 1,
                keep_url_fragment: n(12),
                ts_created: n(13),
            };
            snap.sites.insert(site.idsite, site);
        }
        let urls: Vec<(u32, String)> = conn
            .query(format!(
                "SELECT idsite, url FROM `{prefix}site_url` ORDER BY idsite, url"
            ))
            .await
            .map_err(err("site_url"))?;
        for (idsite, url) in urls {
            if let Some(s) = snap.sites.get_mut(&idsite) {
                if !s.urls.contains(&url) {
                    s.urls.push(url);
                }
            }
        }
        let goals: Vec<mysql_async::Row> = conn
            .query(format!(
                "SELECT idsite, idgoal, match_attribute, pattern, pattern_type, case_sensitive, \
                 allow_multiple, revenue, event_value_as_revenue FROM `{prefix}goal` \
                 WHERE deleted = 0 ORDER BY idsite, idgoal"
            ))
            .await
            .map_err(err("goal"))?;
        for r in goals {
            let idsite: u32 = r.get(0).unwrap_or(0);
            let mut goal = Goal {
                idgoal: r.get(1).unwrap_or(0),
                match_attribute: r.get(2).unwrap_or_default(),
                pattern: r.get(3).unwrap_or_default(),
                pattern_type: r.get(4).unwrap_or_default(),
                case_sensitive: r.get::<i64, _>(5).unwrap_or(0) == 1,
                allow_multiple: r.get::<i64, _>(6).unwrap_or(0) == 1,
                revenue: r.get::<f64, _>(7).unwrap_or(0.0),
                event_value_as_revenue: r.get::<i64, _>(8).unwrap_or(0) == 1,
                regex: None,
            };
            goal.regex = super::goals::compile_regex(&goal);
            snap.goals.entry(idsite).or_default().push(goal);
        }
        let dims: Vec<(i64, u32, i64, String, i64, String)> = conn
            .query(format!(
                "SELECT idcustomdimension, idsite, `index`, scope, case_sensitive, extractions \
                 FROM `{prefix}custom_dimensions` WHERE active = 1 ORDER BY idsite, idcustomdimension"
            ))
            .await
            .map_err(err("custom_dimensions"))?;
        for (id, idsite, index, scope, case_sensitive, extractions) in dims {
            snap.dimensions
                .entry(idsite)
                .or_default()
                .push(CustomDimension {
                    id,
                    index,
                    scope,
                    case_sensitive: case_sensitive != 0,
                    extractions: parse_extractions(&extractions, case_sensitive != 0),
                });
        }
        let options: Vec<(String, String)> = conn
            .query(format!(
                "SELECT option_name, option_value FROM `{prefix}option` WHERE option_name LIKE 'SitesManager\\_%' \
                 OR option_name LIKE 'PrivacyManager.%' OR option_name LIKE 'fingerprint\\_salt\\_%' \
                 OR option_name IN ('useridsalt', 'delete_logs_enable', 'delete_logs_older_than', \
                 'delete_logs_schedule_lowest_interval')"
            ))
            .await
            .map_err(err("option"))?;
        snap.options = options.into_iter().collect();
        let opt = |k: &str| snap.options.get(k).cloned().unwrap_or_default();
        snap.global_excluded_ips = split_list(&opt("SitesManager_ExcludedIpsGlobal"));
        snap.global_excluded_parameters = split_list(&opt("SitesManager_ExcludedQueryParameters"));
        snap.global_excluded_user_agents =
            split_list(&opt("SitesManager_ExcludedUserAgentsGlobal"));
        snap.global_excluded_referrers = split_list(&opt("SitesManager_ExcludedReferrersGlobal"));
        snap.global_search_keyword_parameters = {
            let v = split_list(&opt("SitesManager_SearchKeywordParameters"));
            if v.is_empty() {
                ["q", "query", "s", "search", "searchword", "k", "keyword"]
                    .map(String::from)
                    .to_vec()
            } else {
                v
            }
        };
        snap.global_search_category_parameters =
            split_list(&opt("SitesManager_SearchCategoryParameters"));
        snap.global_keep_url_fragment = opt("SitesManager_KeepURLFragmentsGlobal") == "1";

        let tokens: Vec<(String, String, Option<i64>, i64)> = conn
            .query(format!(
                "SELECT password, login, IF(date_expired IS NULL, NULL, \
                 TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', date_expired)), secure_only \
                 FROM `{prefix}user_token_auth`"
            ))
            .await
            .map_err(err("user_token_auth"))?;
        for (hash, login, expires, secure_only) in tokens {
            snap.tokens.insert(
                hash,
                TokenRow {
                    login,
                    expires,
                    // Matomo treats any value but 0 as set (`TINYINT(2)`).
                    secure_only: secure_only != 0,
                },
            );
        }
        let supers: Vec<String> = conn
            .query(format!(
                "SELECT login FROM `{prefix}user` WHERE superuser_access = 1"
            ))
            .await
            .map_err(err("user"))?;
        snap.superusers = supers.into_iter().collect();
        let access: Vec<(String, u32)> = conn
            .query(format!(
                "SELECT login, idsite FROM `{prefix}access` WHERE access IN ('admin', 'write')"
            ))
            .await
            .map_err(err("access"))?;
        snap.writers = access.into_iter().collect();
        snap.exclusions = snap
            .sites
            .values()
            .map(|site| (site.idsite, snap.build_exclusions(site)))
            .collect();
        Ok(snap)
    }

    /// `site`'s exclusion lists merged with the global ones (built when a snapshot not read
    /// by `load` lacks them).
    pub fn exclusions(&self, site: &Site) -> std::borrow::Cow<'_, SiteExclusions> {
        match self.exclusions.get(&site.idsite) {
            Some(e) => std::borrow::Cow::Borrowed(e),
            None => std::borrow::Cow::Owned(self.build_exclusions(site)),
        }
    }

    fn build_exclusions(&self, site: &Site) -> SiteExclusions {
        let merged = |global: &[String], own: &[String]| -> Vec<String> {
            global.iter().chain(own).cloned().collect()
        };
        SiteExclusions {
            ip_ranges: super::exclusion::excluded_ip_ranges(
                &site.excluded_ips.join(","),
                &self.global_excluded_ips.join(","),
            ),
            user_agents: super::exclusion::UserAgentExclusions::new(&merged(
                &self.global_excluded_user_agents,
                &site.excluded_user_agents,
            )),
            referrers: merged(&self.global_excluded_referrers, &site.excluded_referrers),
        }
    }

    /// The stored fingerprint salt for a site and day, if one exists.
    pub fn fingerprint_salt(&self, idsite: u32, day: &str) -> Option<String> {
        let raw = self
            .options
            .get(&format!("fingerprint_salt_{idsite}_{day}"))?;
        let v: Value = serde_json::from_str(raw).ok()?;
        v.get("value").and_then(Value::as_str).map(str::to_owned)
    }

    /// PrivacyManager option as a boolean (PHP's `settype(…, 'boolean')`: '' and '0' are
    /// false), with Matomo's default.
    pub fn privacy_flag(&self, name: &str, default: bool) -> bool {
        match self.privacy_option(name) {
            Some(v) => !(v.is_empty() || v == "0"),
            None => default,
        }
    }

    /// PrivacyManager option as an integer, with Matomo's default.
    pub fn privacy_int(&self, name: &str, default: i64) -> i64 {
        self.privacy_option(name)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(default)
    }

    /// PrivacyManager option as a string (`anonymizeReferrer`), '' when unset.
    pub fn privacy_string(&self, name: &str) -> &str {
        self.privacy_option(name).map_or("", String::as_str)
    }

    /// The `PrivacyManager.<name>` option; the key is put together on the stack (these are read
    /// several times per request).
    fn privacy_option(&self, name: &str) -> Option<&String> {
        const PREFIX: &[u8] = b"PrivacyManager.";
        let mut buf = [0u8; 96];
        let n = PREFIX.len() + name.len();
        if n > buf.len() {
            return self.options.get(&format!("PrivacyManager.{name}"));
        }
        buf[..PREFIX.len()].copy_from_slice(PREFIX);
        buf[PREFIX.len()..n].copy_from_slice(name.as_bytes());
        // Both parts are UTF-8, so the whole is.
        self.options.get(std::str::from_utf8(&buf[..n]).ok()?)
    }

    /// The `useridsalt` option (PrivacyManager's salt for pseudonymised user ids), if set.
    pub fn userid_salt(&self) -> Option<&str> {
        self.options
            .get("useridsalt")
            .map(String::as_str)
            .filter(|s| !s.is_empty() && *s != "0")
    }

    /// The oldest `cdt` a request may carry at wall-clock time `now`
    /// (`Request::getCustomTimestamp`): with `delete_logs_enable` and `delete_logs_older_than`
    /// set, `now - (older_than + schedule_lowest_interval) days`; None when deletion is off.
    /// Read from the `option` rows Matomo's data-purge settings write (`[Deletelogs]` defaults:
    /// off, 180 days, 7 days).
    pub fn delete_logs_cutoff(&self, now: i64) -> Option<i64> {
        let int = |name: &str, default: i64| {
            self.options
                .get(name)
                .map_or(default, |v| super::php::php_intval(v))
        };
        let older_than = int("delete_logs_older_than", 180);
        if int("delete_logs_enable", 0) == 0 || older_than == 0 {
            return None;
        }
        let interval = int("delete_logs_schedule_lowest_interval", 7);
        Some(now - (older_than + interval) * 86_400)
    }

    /// Site search keyword parameters for a site (site list, else global default).
    pub fn search_keyword_params(&self, site: &Site) -> Vec<String> {
        if site.sitesearch_keyword_parameters.is_empty() {
            self.global_search_keyword_parameters.clone()
        } else {
            site.sitesearch_keyword_parameters.clone()
        }
    }

    /// Site search category parameters for a site (site list, else global default).
    pub fn search_category_params(&self, site: &Site) -> Vec<String> {
        if site.sitesearch_category_parameters.is_empty() {
            self.global_search_category_parameters.clone()
        } else {
            site.sitesearch_category_parameters.clone()
        }
    }

    /// Whether URL fragments are kept for this site.
    pub fn keep_fragment(&self, site: &Site) -> bool {
        match site.keep_url_fragment {
            1 => true,
            2 => false,
            _ => self.global_keep_url_fragment,
        }
    }
}
