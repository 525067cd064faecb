//! Data-file tests of the tracker's request context: the upstream referrer lists loaded from both
//! data sets (`matomo-data/` for Matomo 5.2 and `matomo-data/for-matomo-5.1/`), GeoIP lookups on
//! MaxMind's test databases, and the referrer / language / country columns of every visit of the
//! PHP golden run, recomputed from the hit that opened it.
//!
//! The data lives outside the repository (`<workspace>/../shared`, or `MATOMO_SHARED_DIR`); each
//! test prints a clear message and returns when it is absent.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use matomo_wire::php::sanitize_input_value;
use matomo_wire::Params;
use matomo_worker::tracker::campaign::CampaignParams;
use matomo_worker::tracker::exclusion::query_parameters_to_exclude;
use matomo_worker::tracker::lists::{ListOptions, ReferrerLists};
use matomo_worker::tracker::location::{
    browser_language, country_from_language, ip_to_binary, locate, location_browser_lang, GeoIpDb,
    PrivacySettings,
};
use matomo_worker::tracker::phpurl::ParamMatcher;
use matomo_worker::tracker::referrers::{
    extract_search_engine, ExistingReferrer, ReferrerDetector, ReferrerRequest,
    SiteReferrerSettings, SiteUrlIndex,
};
use serde_json::Value;
use sha1::{Digest, Sha1};

fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("MATOMO_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    dir.is_dir().then_some(dir)
}

fn data_dir(sub: &str) -> Option<PathBuf> {
    let Some(shared) = shared_dir() else {
        println!("SKIPPED: shared data folder not found (set MATOMO_SHARED_DIR)");
        return None;
    };
    let dir = shared.join(sub);
    if !dir.is_dir() {
        println!("SKIPPED: {} not found", dir.display());
        return None;
    }
    Some(dir)
}

#[test]
fn lists_load_from_both_data_sets() {
    for sub in ["matomo-data", "matomo-data/for-matomo-5.1"] {
        let Some(dir) = data_dir(sub) else { return };
        let lists = ReferrerLists::load(&dir).expect("lists load");
        assert!(
            lists.search_engines.len() > 600,
            "{sub}: {}",
            lists.search_engines.len()
        );
        assert!(lists.socials.len() > 100, "{sub}");
        assert!(lists.spammers.len() > 2000, "{sub}");
        let hit = extract_search_engine(
            &lists.search_engines,
            "https://www.google.de/search?q=Lissabon+Reisef%C3%BChrer",
        )
        .expect("google");
        assert_eq!(hit.name, "Google");
        assert_eq!(hit.keyword.as_deref(), Some("lissabon reiseführer"));
        let no_kw = extract_search_engine(&lists.search_engines, "https://www.google.com/")
            .expect("google");
        assert_eq!(no_kw.keyword, None);
        assert_eq!(
            lists.socials.network_for_url("https://vk.com/away.php"),
            Some("Vkontakte")
        );
        assert!(lists.spammers.is_spam("http://semalt.com/"));
    }
    // Startpage reads `query=`; with `q=` (as in the golden corpus) it is a website in both lists
    for sub in ["matomo-data", "matomo-data/for-matomo-5.1"] {
        let Some(dir) = data_dir(sub) else { return };
        let lists = ReferrerLists::load(&dir).expect("lists");
        let engines = &lists.search_engines;
        let with_query =
            extract_search_engine(engines, "https://www.startpage.com/do/search?query=lisbon");
        assert_eq!(
            with_query.map(|h| h.name).as_deref(),
            Some("StartPage"),
            "{sub}"
        );
        let with_q = extract_search_engine(
            engines,
            "https://www.startpage.com/do/search?q=budget+travel",
        );
        assert_eq!(with_q, None, "{sub}");
    }
}

/// The option values PHP Matomo 5.1.2 stored (parsed from the YAML by Spyc) describe exactly
/// the lists this crate parses from the same YAML files.
#[test]
fn option_values_equal_the_parsed_files() {
    let (Some(golden), Some(vendor)) = (
        data_dir("golden-php"),
        data_dir("matomo-data/for-matomo-5.1"),
    ) else {
        return;
    };
    let sql = std::fs::read_to_string(golden.join("matomo-state/config-data.sql"))
        .expect("config-data.sql");
    let option = |name: &str| -> String {
        let needle = format!("VALUES ('{name}','");
        let start = sql
            .find(&needle)
            .map(|p| p + needle.len())
            .expect("option present");
        let end = start + sql[start..].find('\'').expect("closing quote");
        sql[start..end].to_owned()
    };
    let files = ReferrerLists::load(&vendor).expect("lists");
    let mut from_options = ReferrerLists::default();
    let (se, so) = (
        option("SearchEngineDefinitions"),
        option("SocialDefinitions"),
    );
    from_options
        .apply_options(ListOptions {
            search_engines: Some(&se),
            socials: Some(&so),
            spammers: None,
        })
        .expect("options decode");
    let sorted = |l: &ReferrerLists| {
        let mut v: Vec<_> = l
            .search_engines
            .iter()
            .map(|(k, d)| (k.to_owned(), d.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    assert_eq!(
        files.search_engines.len(),
        from_options.search_engines.len()
    );
    assert_eq!(sorted(&files), sorted(&from_options));
    assert_eq!(files.socials.entries(), from_options.socials.entries());
}

#[test]
fn missing_vendor_dir_is_a_clear_error() {
    let err = ReferrerLists::load(Path::new("/nonexistent/vendor/matomo")).expect_err("must fail");
    assert!(err.to_string().contains("SearchEngines.yml"), "{err}");
}

#[test]
fn geoip_city_and_country_databases() {
    let Some(dir) = data_dir("matomo-data/maxmind-test-data/test-data") else {
        return;
    };
    let city = GeoIpDb::open(&dir.join("GeoIP2-City-Test.mmdb")).expect("opens");
    let loc = city.lookup("2.125.160.216").expect("in the test db");
    assert_eq!(loc.country_code, "GB");
    assert_eq!(loc.city.as_deref(), Some("Boxford"));
    assert_eq!(
        loc.region_code.as_deref(),
        Some("WBK"),
        "GB takes the last subdivision"
    );
    assert_eq!(loc.latitude, Some(51.75));
    assert_eq!(loc.longitude, Some(-1.25));
    let us = city.lookup("216.160.83.56").expect("in the test db");
    assert_eq!(
        (us.country_code.as_str(), us.region_code.as_deref()),
        ("US", Some("WA"))
    );
    assert_eq!(us.city.as_deref(), Some("Milton"));
    assert!(
        city.lookup("10.0.0.1").is_none(),
        "absent → default provider"
    );
    let country = GeoIpDb::open(&dir.join("GeoIP2-Country-Test.mmdb")).expect("opens");
    let c = country.lookup("2.125.160.216").expect("found");
    assert_eq!(
        (
            c.country_code.as_str(),
            c.city.as_deref(),
            c.region_code.as_deref()
        ),
        ("GB", None, None)
    );
    assert!(GeoIpDb::open(&dir.join("does-not-exist.mmdb")).is_err());

    // the whole location step: GeoIP first, the browser-language guess as fallback
    let privacy = PrivacySettings::default();
    let ip = ip_to_binary("216.160.83.56");
    let stored = privacy.stored_ip(&ip);
    assert_eq!(stored, vec![216, 160, 0, 0]);
    let l = locate(Some(&city), &privacy, true, &ip, &stored, "de-de");
    assert_eq!(
        (l.country.as_str(), l.region.as_deref()),
        ("us", Some("WA"))
    );
    let l = locate(
        Some(&city),
        &privacy,
        true,
        &ip_to_binary("10.1.1.1"),
        &stored,
        "de-de",
    );
    assert_eq!((l.country.as_str(), l.city), ("de", None));
    // geolocating the anonymised address (216.160.0.0 is not in the test database)
    let anon = PrivacySettings {
        use_anonymized_ip_for_visit_enrichment: true,
        ..privacy
    };
    assert_eq!(
        locate(Some(&city), &anon, true, &ip, &stored, "fr").country,
        "fr"
    );
}

/// One corpus hit: its decoded parameters and its Accept-Language header.
type Hit = (HashMap<String, String>, String);

fn visitor_ids(p: &HashMap<String, String>) -> Vec<String> {
    let mut ids = Vec::new();
    if let Some(uid) = p.get("uid").filter(|u| !u.is_empty()) {
        ids.push(hex::encode(Sha1::digest(uid.as_bytes()))[..16].to_owned());
    }
    for k in ["cid", "_id"] {
        if let Some(v) = p.get(k).filter(|v| v.len() >= 16) {
            ids.push(v[..16].to_lowercase());
        }
    }
    ids
}

fn datetime(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

fn as_opt(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// For every golden visit, the hit that opened it (same site, first action time and visitor id)
/// gives the visit's referrer columns, `location_browser_lang` and `location_country` (no GeoIP
/// database in the golden run). Visits whose referrer was changed by a later hit (a direct entry
/// that learns its referrer) are checked only for language and country.
#[test]
fn golden_visits_referrer_and_language_columns() {
    let (Some(golden), Some(vendor)) = (
        data_dir("golden-php"),
        data_dir("matomo-data/for-matomo-5.1"),
    ) else {
        return;
    };
    let lists = ReferrerLists::load(&vendor).expect("lists");
    let corpus = std::fs::read_to_string(golden.join("corpus.jsonl")).expect("corpus");
    let dump: Value =
        serde_json::from_slice(&std::fs::read(golden.join("golden-get.json")).expect("golden"))
            .expect("json");
    let campaign = CampaignParams::default();
    let defaults = "gclid,fbclid,msclkid,twclid,wbraid,gbraid,yclid,fb_xd_fragment,fb_comment_id,phpsessid,jsessionid,sessionid,aspsessionid,doing_wp_cron,sid,pk_vid";
    let matchers: HashMap<u32, ParamMatcher> = [(1u32, ""), (2, "sessionid")]
        .into_iter()
        .map(|(id, site)| {
            (
                id,
                ParamMatcher::new(&query_parameters_to_exclude(site, "", defaults, &campaign)),
            )
        })
        .collect();
    let site_urls = SiteUrlIndex::from_site_urls([
        (1, "http://example.com"),
        (2, "https://shop.example.org"),
        (1, "http://www.example.com"),
    ]);
    let detector = ReferrerDetector {
        lists: &lists,
        site_urls: &site_urls,
        campaign: &campaign,
    };

    // index hits by (idsite, datetime)
    let mut hits: HashMap<(u32, String), Vec<Hit>> = HashMap::new();
    for line in corpus.lines() {
        let v: Value = serde_json::from_str(line).expect("corpus line");
        let query = v["query"].as_str().unwrap_or_default();
        let p: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let idsite: u32 = p.get("idsite").and_then(|s| s.parse().ok()).unwrap_or(0);
        let ts: i64 = p.get("cdt").and_then(|s| s.parse().ok()).unwrap_or(0);
        let lang_header = v["headers"]["Accept-Language"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        hits.entry((idsite, datetime(ts)))
            .or_default()
            .push((p, lang_header));
    }

    let visits = dump["tables"]["log_visit"].as_array().expect("visits");
    let (mut checked, mut referrer_checked, mut failures) = (0, 0, Vec::new());
    for row in visits {
        let idsite = row["idsite"].as_u64().unwrap_or(0) as u32;
        let first = row["visit_first_action_time"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let idvisitor = row["idvisitor"].as_str().unwrap_or_default();
        let Some(candidates) = hits.get(&(idsite, first.clone())) else {
            continue;
        };
        let hit = candidates
            .iter()
            .find(|(p, _)| visitor_ids(p).iter().any(|id| id == idvisitor))
            .or_else(|| (candidates.len() == 1).then(|| &candidates[0]));
        let Some((p, header)) = hit else { continue };
        checked += 1;
        let lang = browser_language(p.get("lang").map_or("", String::as_str), header);
        let got_lang = location_browser_lang(&lang);
        let got_country = country_from_language(&lang, true);
        let key = row["_key"].as_str().unwrap_or_default();
        if Some(got_lang.clone()) != as_opt(&row["location_browser_lang"]) {
            failures.push(format!(
                "{key}: lang {got_lang:?} vs {}",
                row["location_browser_lang"]
            ));
        }
        if Some(got_country.clone()) != as_opt(&row["location_country"]) {
            failures.push(format!(
                "{key}: country {got_country:?} vs {}",
                row["location_country"]
            ));
        }

        let raw: Params = p
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let url = sanitize_input_value(p.get("url").map_or("", String::as_str));
        let urlref = sanitize_input_value(p.get("urlref").map_or("", String::as_str));
        let site = SiteReferrerSettings {
            idsite,
            exclude_unknown_urls: false,
            keep_url_fragment: false,
            excluded_referrers: &[],
            url_exclusions: &matchers[&idsite],
        };
        let info = detector.detect(
            &site,
            &ReferrerRequest {
                url: &url,
                urlref: &urlref,
                raw: &raw,
            },
            None,
        );
        let golden_type = row["referer_type"].as_u64().unwrap_or(0) as u8;
        if info.referer_type as u8 == 1 && golden_type != 1 {
            continue; // the referrer arrived with a later hit of the visit
        }
        referrer_checked += 1;
        let got = (
            info.referer_type as u8,
            info.referer_name.clone(),
            info.referer_keyword.clone(),
            info.referer_url.clone(),
        );
        let want = (
            golden_type,
            as_opt(&row["referer_name"]),
            as_opt(&row["referer_keyword"]),
            as_opt(&row["referer_url"]),
        );
        if got != want {
            failures.push(format!("{key}: referrer {got:?} vs {want:?}"));
        }
    }
    println!(
        "golden visits checked: {checked} (referrer columns: {referrer_checked}), mismatches: {}",
        failures.len()
    );
    for f in failures.iter().take(40) {
        println!("  {f}");
    }
    assert!(
        checked > 300,
        "most visits should be matched to their first hit, got {checked}"
    );
    assert!(failures.is_empty(), "{} mismatches", failures.len());
}

/// Every golden conversion's referrer columns (`_rcn` / `_rck` / `_ref` attribution, else the
/// visit's referrer), recomputed from the hit that converted and the visit's stored referrer.
#[test]
fn golden_conversions_referrer_attribution() {
    let (Some(golden), Some(vendor)) = (
        data_dir("golden-php"),
        data_dir("matomo-data/for-matomo-5.1"),
    ) else {
        return;
    };
    let lists = ReferrerLists::load(&vendor).expect("lists");
    let corpus = std::fs::read_to_string(golden.join("corpus.jsonl")).expect("corpus");
    let dump: Value =
        serde_json::from_slice(&std::fs::read(golden.join("golden-get.json")).expect("golden"))
            .expect("json");
    let campaign = CampaignParams::default();
    let matcher = ParamMatcher::new(&query_parameters_to_exclude(
        "",
        "",
        "gclid,sessionid",
        &campaign,
    ));
    let site_urls = SiteUrlIndex::from_site_urls([
        (1, "http://example.com"),
        (2, "https://shop.example.org"),
        (1, "http://www.example.com"),
    ]);
    let detector = ReferrerDetector {
        lists: &lists,
        site_urls: &site_urls,
        campaign: &campaign,
    };
    let mut hits: HashMap<(u32, String), Vec<HashMap<String, String>>> = HashMap::new();
    for line in corpus.lines() {
        let v: Value = serde_json::from_str(line).expect("corpus line");
        let query = v["query"].as_str().unwrap_or_default();
        let p: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let idsite: u32 = p.get("idsite").and_then(|s| s.parse().ok()).unwrap_or(0);
        let ts: i64 = p.get("cdt").and_then(|s| s.parse().ok()).unwrap_or(0);
        hits.entry((idsite, datetime(ts))).or_default().push(p);
    }
    let visits: HashMap<&str, &Value> = dump["tables"]["log_visit"]
        .as_array()
        .expect("visits")
        .iter()
        .map(|v| (v["_key"].as_str().unwrap_or_default(), v))
        .collect();
    let (mut checked, mut failures) = (0, Vec::new());
    for row in dump["tables"]["log_conversion"]
        .as_array()
        .expect("conversions")
    {
        let idsite = row["idsite"].as_u64().unwrap_or(0) as u32;
        let time = row["server_time"].as_str().unwrap_or_default().to_owned();
        let idvisitor = row["idvisitor"].as_str().unwrap_or_default();
        let Some(visit) = visits.get(row["visit"].as_str().unwrap_or_default()) else {
            continue;
        };
        let Some(candidates) = hits.get(&(idsite, time)) else {
            continue;
        };
        let found: Vec<_> = candidates
            .iter()
            .filter(|p| visitor_ids(p).iter().any(|id| id == idvisitor))
            .collect();
        let p = match (found.as_slice(), candidates.as_slice()) {
            ([one], _) => *one,
            ([], [only]) => only,
            _ => continue,
        };
        checked += 1;
        let get = |k: &str| sanitize_input_value(p.get(k).map_or("", String::as_str));
        let raw: Params = p
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let site = SiteReferrerSettings {
            idsite,
            exclude_unknown_urls: false,
            keep_url_fragment: false,
            excluded_referrers: &[],
            url_exclusions: &matcher,
        };
        let current = ExistingReferrer {
            referer_type: visit["referer_type"].as_u64().map(|t| t as u8),
            referer_name: as_opt(&visit["referer_name"]),
            referer_keyword: as_opt(&visit["referer_keyword"]),
        };
        let got = detector.for_conversion(
            &site,
            &raw,
            (&get("_rcn"), &get("_rck"), &get("_ref")),
            &current,
        );
        let want = (
            row["referer_type"].as_u64().map(|t| t as u8),
            as_opt(&row["referer_name"]),
            as_opt(&row["referer_keyword"]),
        );
        if (
            got.referer_type,
            got.referer_name.clone(),
            got.referer_keyword.clone(),
        ) != want
        {
            failures.push(format!("{}: {got:?} vs {want:?}", row["_key"]));
        }
    }
    println!(
        "golden conversions checked: {checked}, mismatches: {}",
        failures.len()
    );
    for f in failures.iter().take(40) {
        println!("  {f}");
    }
    assert!(
        checked > 100,
        "most conversions should be matched to their hit, got {checked}"
    );
    assert!(failures.is_empty(), "{} mismatches", failures.len());
}
