//! Campaign detection as Matomo's `Referrers\Columns\Base` does it, and the campaign-related
//! decisions the visit logic needs:
//! - the parameter names (`[Tracker] campaign_var_name` / `campaign_keyword_var_name`, Matomo's
//!   defaults without MarketingCampaignsReporting: `pk_cpn, pk_campaign, piwik_campaign,
//!   mtm_campaign, matomo_campaign, utm_campaign, utm_source, utm_medium` and `pk_kwd,
//!   pk_keyword, piwik_kwd, mtm_kwd, mtm_keyword, matomo_kwd, utm_term`);
//! - reading them from a query string or URL fragment (`detectCampaignFromString`) and from the
//!   tracking request's raw parameters (`detectReferrerCampaignFromTrackerParams`);
//! - `campaign_forces_new_visit` (`Campaign::shouldForceNewVisit`);
//! - the referrer a conversion is attributed to (`getValueForRecordGoal`: `_rcn`, `_rck`, `_ref`).
//!
//! Pure functions, no I/O.
//!
//! API:
//! - `CampaignParams::default()` / `CampaignParams::from_config(names, keywords)`
//! - `CampaignParams::all_names() -> impl Iterator<Item=&str>` (what page URLs drop)
//! - `campaign_from_query(&CampaignParams, query) -> CampaignFound`
//! - `campaign_from_raw_params(&CampaignParams, &Params) -> Option<(String, Option<String>)>`
//! - `campaign_forces_new_visit(enabled, &ReferrerInfo, current: &ExistingReferrer) -> bool`

use matomo_wire::{param_str, Params};

use super::phpurl::{empty_str, query_params, urldecode};
use super::referrers::{ExistingReferrer, ReferrerInfo, ReferrerType};

/// Matomo's default `campaign_var_name`.
pub const DEFAULT_CAMPAIGN_NAME_PARAMS: &str =
    "pk_cpn,pk_campaign,piwik_campaign,mtm_campaign,matomo_campaign,utm_campaign,utm_source,utm_medium";
/// Matomo's default `campaign_keyword_var_name`.
pub const DEFAULT_CAMPAIGN_KEYWORD_PARAMS: &str =
    "pk_kwd,pk_keyword,piwik_kwd,mtm_kwd,mtm_keyword,matomo_kwd,utm_term";

/// The campaign name and keyword parameter names, in priority order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignParams {
    /// Parameters naming the campaign.
    pub names: Vec<String>,
    /// Parameters carrying the campaign keyword.
    pub keywords: Vec<String>,
}

impl Default for CampaignParams {
    fn default() -> Self {
        Self::from_config(
            DEFAULT_CAMPAIGN_NAME_PARAMS,
            DEFAULT_CAMPAIGN_KEYWORD_PARAMS,
        )
    }
}

impl CampaignParams {
    /// `Common::getCampaignParameters`: comma-separated lists, each entry trimmed.
    pub fn from_config(names: &str, keywords: &str) -> Self {
        let split =
            |s: &str| -> Vec<String> { s.split(',').map(|p| p.trim().to_owned()).collect() };
        CampaignParams {
            names: split(names),
            keywords: split(keywords),
        }
    }

    /// Every campaign parameter name (names then keywords), as page URLs have them removed.
    pub fn all_names(&self) -> impl Iterator<Item = &str> {
        self.names
            .iter()
            .chain(self.keywords.iter())
            .map(String::as_str)
    }
}

/// What `detectCampaignFromString` found in one query string or fragment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CampaignFound {
    /// The campaign name (trimmed, url-decoded, not yet lowercased), if one was present.
    pub name: Option<String>,
    /// The campaign keyword, if one was present (only looked for when a name was found).
    pub keyword: Option<String>,
}

impl CampaignFound {
    /// Matomo's return value: true only when a keyword was found too (so the fragment is then
    /// not searched).
    pub fn complete(&self) -> bool {
        self.keyword.is_some()
    }
}

fn first_value(query: &super::phpurl::QueryParams, names: &[String]) -> Option<String> {
    for n in names {
        let Some(v) = query.get(n).and_then(|v| v.as_str()) else {
            continue;
        };
        let v = php_trim(&urldecode(v)).to_owned();
        if !empty_str(&v) {
            return Some(v);
        }
    }
    None
}

/// `detectCampaignFromString($string)` on a landing URL's query string or fragment.
pub fn campaign_from_query(params: &CampaignParams, query: &str) -> CampaignFound {
    let parsed = query_params(query);
    let Some(name) = first_value(&parsed, &params.names) else {
        return CampaignFound::default();
    };
    CampaignFound {
        keyword: first_value(&parsed, &params.keywords),
        name: Some(name),
    }
}

/// `detectReferrerCampaignFromTrackerParams`: campaign parameters sent directly with the
/// tracking request (raw values, as sent). Returns the name and, if present, the keyword.
pub fn campaign_from_raw_params(
    params: &CampaignParams,
    raw: &Params,
) -> Option<(String, Option<String>)> {
    let non_empty = |key: &str| {
        param_str(raw, key)
            .map(|v| v.into_owned())
            .filter(|v| !empty_str(v))
    };
    let name = params.names.iter().find_map(|p| non_empty(p))?;
    let keyword = params.keywords.iter().find_map(|p| non_empty(p));
    Some((name, keyword))
}

/// `Campaign::shouldForceNewVisit`: with `create_new_visit_when_campaign_changes` on, a hit whose
/// referrer is a campaign that differs (case-insensitively, on type, name or keyword) from the
/// current visit's referrer starts a new visit — unless the current visit is a direct entry, in
/// which case the visit is updated instead.
pub fn campaign_forces_new_visit(
    enabled: bool,
    new: &ReferrerInfo,
    current: &ExistingReferrer,
) -> bool {
    if !enabled || new.referer_type != ReferrerType::Campaign {
        return false;
    }
    if current.referer_type == Some(ReferrerType::Direct as u8) {
        return false;
    }
    referrer_information_is_new(new, current)
}

/// `isReferrerInformationNew`: keyword, name or type differ (lowercased string comparison).
pub fn referrer_information_is_new(new: &ReferrerInfo, current: &ExistingReferrer) -> bool {
    let lc = |s: Option<&str>| s.unwrap_or("").to_lowercase();
    lc(current.referer_keyword.as_deref()) != lc(new.referer_keyword.as_deref())
        || lc(current.referer_name.as_deref()) != lc(new.referer_name.as_deref())
        || current
            .referer_type
            .map(|t| t.to_string())
            .unwrap_or_default()
            != (new.referer_type as u8).to_string()
}

/// PHP `trim()` default characters.
pub(crate) fn php_trim(s: &str) -> &str {
    s.trim_matches([' ', '\t', '\n', '\r', '\0', '\x0B'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_parameter_lists() {
        let p = CampaignParams::default();
        assert_eq!(p.names[0], "pk_cpn");
        assert_eq!(p.names.len(), 8);
        assert_eq!(p.keywords.last().map(String::as_str), Some("utm_term"));
        assert_eq!(p.all_names().count(), 15);
        let c = CampaignParams::from_config(" a , b", "k");
        assert_eq!(c.names, vec!["a", "b"]);
    }

    #[test]
    fn detects_from_query_with_priority_and_decoding() {
        let p = CampaignParams::default();
        let f = campaign_from_query(&p, "utm_campaign=Later&pk_campaign=First%20One&pk_kwd=+Kw+");
        assert_eq!(f.name.as_deref(), Some("First One"));
        assert_eq!(f.keyword.as_deref(), Some("Kw"));
        assert!(f.complete());
        let f = campaign_from_query(&p, "utm_source=newsletter&utm_medium=email");
        assert_eq!(f.name.as_deref(), Some("newsletter"));
        assert!(!f.complete());
        // "0" and blank names are empty in PHP
        assert_eq!(
            campaign_from_query(&p, "pk_campaign=0&mtm_campaign=%20"),
            CampaignFound::default()
        );
        // a flag without value is not a string
        assert_eq!(
            campaign_from_query(&p, "pk_campaign&utm_campaign=x")
                .name
                .as_deref(),
            Some("x")
        );
        // values are sanitised before decoding: a literal '<' becomes &lt;, an encoded one stays '<'
        assert_eq!(
            campaign_from_query(&p, "pk_campaign=<a>%3Cb%3E")
                .name
                .as_deref(),
            Some("&lt;a&gt;<b>")
        );
    }

    #[test]
    fn detects_from_raw_params() {
        let p = CampaignParams::default();
        let mut raw = Params::new();
        raw.insert("utm_medium".into(), "Email".into());
        raw.insert("pk_kwd".into(), "0".into());
        assert_eq!(
            campaign_from_raw_params(&p, &raw),
            Some(("Email".into(), None))
        );
        raw.insert("mtm_kwd".into(), "K".into());
        assert_eq!(
            campaign_from_raw_params(&p, &raw),
            Some(("Email".into(), Some("K".into())))
        );
        assert_eq!(campaign_from_raw_params(&p, &Params::new()), None);
    }

    fn info(t: ReferrerType, name: Option<&str>, kw: Option<&str>) -> ReferrerInfo {
        ReferrerInfo {
            referer_type: t,
            referer_name: name.map(str::to_owned),
            referer_keyword: kw.map(str::to_owned),
            referer_url: Some(String::new()),
        }
    }

    #[test]
    fn campaign_change_rules() {
        let new = info(ReferrerType::Campaign, Some("spring"), Some(""));
        let direct = ExistingReferrer {
            referer_type: Some(1),
            referer_name: None,
            referer_keyword: None,
        };
        assert!(
            !campaign_forces_new_visit(true, &new, &direct),
            "direct visits are updated instead"
        );
        let website = ExistingReferrer {
            referer_type: Some(3),
            referer_name: Some("example.org".into()),
            referer_keyword: None,
        };
        assert!(campaign_forces_new_visit(true, &new, &website));
        assert!(!campaign_forces_new_visit(false, &new, &website));
        let same = ExistingReferrer {
            referer_type: Some(6),
            referer_name: Some("Spring".into()),
            referer_keyword: Some(String::new()),
        };
        assert!(!campaign_forces_new_visit(true, &new, &same));
        let other_kw = ExistingReferrer {
            referer_keyword: Some("x".into()),
            ..same
        };
        assert!(campaign_forces_new_visit(true, &new, &other_kw));
        let not_campaign = info(ReferrerType::Website, Some("a.org"), None);
        assert!(!campaign_forces_new_visit(true, &not_campaign, &website));
    }
}
