use std::path::Path;

use super::*;
use crate::tracker::exclusion::query_parameters_to_exclude;
use crate::tracker::lists::{SearchEngines, Socials, SpamList};

const ENGINES: &str = r#"
Google:
  -
    urls:
      - www.google.com
      - 'google.{}'
    params:
      - q
    backlink: 'search?q={k}'
Google Images:
  -
    urls:
      - 'google.{}/imgres'
    params:
      - q
Bing:
  -
    urls:
      - www.bing.com
    params:
      - q
1.cz:
  -
    urls:
      - 1.cz
    params:
      - '/s\/([^\/]+)/'
      - q
Yahoo!:
  -
    urls:
      - search.yahoo.com
    params:
      - p
Poisk.Ru:
  -
    urls:
      - www.poisk.ru
    params:
      - text
    charsets:
      - windows-1251
Mailru:
  -
    urls:
      - go.mail.ru
    params:
      - q
    charsets:
      - UTF-8
      - windows-1251
"#;

const SOCIALS: &str = "Facebook:\n  - facebook.com\nVkontakte:\n  - vk.com\n";

fn lists() -> ReferrerLists {
    ReferrerLists {
        search_engines: SearchEngines::from_yaml(ENGINES, Path::new("SE")).expect("engines"),
        socials: Socials::from_yaml(SOCIALS, Path::new("S")).expect("socials"),
        spammers: SpamList::default(),
    }
}

struct Fixture {
    lists: ReferrerLists,
    urls: SiteUrlIndex,
    campaign: CampaignParams,
    matcher: ParamMatcher,
}

impl Fixture {
    fn new() -> Self {
        let campaign = CampaignParams::default();
        let matcher = ParamMatcher::new(&query_parameters_to_exclude(
            "",
            "",
            "gclid,sessionid",
            &campaign,
        ));
        Fixture {
            lists: lists(),
            urls: SiteUrlIndex::from_site_urls([
                (1, "http://example.com"),
                (1, "http://www.example.com"),
                (2, "https://shop.example.org"),
                (3, "http://blog.example.net/travel"),
            ]),
            campaign,
            matcher,
        }
    }

    fn detect_with(
        &self,
        idsite: u32,
        url: &str,
        urlref: &str,
        existing: Option<&ExistingReferrer>,
        excluded: &[String],
    ) -> ReferrerInfo {
        let detector = ReferrerDetector {
            lists: &self.lists,
            site_urls: &self.urls,
            campaign: &self.campaign,
        };
        let site = SiteReferrerSettings {
            idsite,
            exclude_unknown_urls: false,
            keep_url_fragment: false,
            excluded_referrers: excluded,
            url_exclusions: &self.matcher,
        };
        let raw = Params::new();
        detector.detect(
            &site,
            &ReferrerRequest {
                url,
                urlref,
                raw: &raw,
            },
            existing,
        )
    }

    fn detect(&self, url: &str, urlref: &str) -> ReferrerInfo {
        self.detect_with(1, url, urlref, None, &[])
    }
}

fn cols(i: &ReferrerInfo) -> (u8, Option<&str>, Option<&str>, Option<&str>) {
    (
        i.referer_type as u8,
        i.referer_name.as_deref(),
        i.referer_keyword.as_deref(),
        i.referer_url.as_deref(),
    )
}

fn cols3(i: &ReferrerInfo) -> (u8, Option<&str>, Option<&str>) {
    (
        i.referer_type as u8,
        i.referer_name.as_deref(),
        i.referer_keyword.as_deref(),
    )
}

#[test]
fn direct_entries() {
    let f = Fixture::new();
    assert_eq!(
        cols(&f.detect("http://example.com/", "")),
        (1, None, None, Some(""))
    );
    // a referrer on the site itself or its alias, or on the request URL's host
    assert_eq!(
        cols(&f.detect("http://example.com/b", "http://www.example.com/a?x=1")),
        (1, None, None, Some("http://www.example.com/a?x=1"))
    );
    assert_eq!(
        f.detect("http://staging.example.io/", "http://staging.example.io/x")
            .referer_type,
        ReferrerType::Direct
    );
    // garbage referrers are ignored
    assert_eq!(
        cols(&f.detect("http://example.com/", "not a url")),
        (1, None, None, Some(""))
    );
    assert_eq!(
        f.detect("http://example.com/", "javascript://x")
            .referer_type,
        ReferrerType::Direct
    );
}

#[test]
fn ignore_referrer_parameter() {
    let f = Fixture::new();
    let i = f.detect(
        "http://example.com/?ignore_referrer=1",
        "https://www.google.com/search?q=x",
    );
    assert_eq!(cols(&i), (1, Some(""), Some(""), Some("")));
    let i = f.detect("http://example.com/?ignore_referer=1&utm_campaign=x", "");
    assert_eq!(i.referer_type, ReferrerType::Direct);
}

#[test]
fn websites() {
    let f = Fixture::new();
    assert_eq!(
        cols(&f.detect("http://example.com/", "https://WWW.Example.co.uk/page")),
        (
            3,
            Some("www.example.co.uk"),
            None,
            Some("https://www.example.co.uk/page")
        )
    );
    assert_eq!(
        cols(&f.detect("http://example.com/", "android-app://com.google.android.gm")),
        (
            3,
            Some("com.google.android.gm"),
            None,
            Some("android-app://com.google.android.gm")
        )
    );
    assert_eq!(
        cols(&f.detect("http://example.com/", "http://192.168.0.10:8080/intranet")),
        (
            3,
            Some("192.168.0.10"),
            None,
            Some("http://192.168.0.10:8080/intranet")
        )
    );
    // another site's URL: website named with the matching site path
    assert_eq!(
        f.detect(
            "http://example.com/",
            "http://blog.example.net/travel/lisbon"
        )
        .referer_name
        .as_deref(),
        Some("blog.example.net/travel")
    );
    assert_eq!(
        f.detect("http://example.com/", "https://shop.example.org/cart")
            .referer_name
            .as_deref(),
        Some("shop.example.org")
    );
    // excluded query parameters are removed from the stored URL
    assert_eq!(
        f.detect("http://example.com/", "https://a.org/x?gclid=1&k=v#frag")
            .referer_url
            .as_deref(),
        Some("https://a.org/x?k=v")
    );
}

#[test]
fn excluded_referrers_become_direct() {
    let f = Fixture::new();
    let excluded = vec![
        "partner.example".to_owned(),
        "https://ads.example/path".to_owned(),
    ];
    let i = f.detect_with(
        1,
        "http://example.com/",
        "http://sub.partner.example/x",
        None,
        &excluded,
    );
    assert_eq!(
        i.referer_type,
        ReferrerType::Website,
        "subdomains are not excluded"
    );
    let i = f.detect_with(
        1,
        "http://example.com/",
        "http://partner.example/x",
        None,
        &excluded,
    );
    assert_eq!(cols(&i), (1, None, None, Some("")));
    let i = f.detect_with(
        1,
        "http://example.com/",
        "http://ads.example/path/deeper",
        None,
        &excluded,
    );
    assert_eq!(i.referer_type, ReferrerType::Direct);
    let i = f.detect_with(
        1,
        "http://example.com/",
        "http://ads.example/other",
        None,
        &excluded,
    );
    assert_eq!(i.referer_type, ReferrerType::Website);
}

#[test]
fn search_engines() {
    let f = Fixture::new();
    let i = f.detect(
        "http://example.com/",
        "https://www.google.de/search?q=Lissabon+Reisef%C3%BChrer&ei=abc&client=x",
    );
    assert_eq!(
        cols(&i),
        (
            2,
            Some("Google"),
            Some("lissabon reiseführer"),
            Some("https://www.google.de/search?q=Lissabon+Reisef%C3%BChrer")
        )
    );
    // Google without a keyword: still a search engine, keyword NULL
    assert_eq!(
        cols(&f.detect("http://example.com/", "https://www.google.com/")),
        (2, Some("Google"), None, Some("https://www.google.com/"))
    );
    // present but empty keyword parameter
    assert_eq!(
        f.detect(
            "http://example.com/",
            "https://www.bing.com/search?form=x&q="
        )
        .referer_keyword,
        None
    );
    // Google image search via tbm
    assert_eq!(
        f.detect(
            "http://example.com/",
            "https://www.google.com/search?tbm=isch&q=cat"
        )
        .referer_name
        .as_deref(),
        Some("Google Images")
    );
    // keyword in a path regex
    assert_eq!(
        f.detect("http://example.com/", "http://1.cz/s/hled%C3%A1n%C3%AD/")
            .referer_keyword
            .as_deref(),
        Some("hledání")
    );
    // regional Yahoo hosts
    assert_eq!(
        f.detect(
            "http://example.com/",
            "https://de.search.yahoo.com/search?p=Zug"
        )
        .referer_name
        .as_deref(),
        Some("Yahoo!")
    );
    // keyword from the fragment
    assert_eq!(
        f.detect(
            "http://example.com/",
            "https://www.google.com/#q=fragment+kw"
        )
        .referer_keyword
        .as_deref(),
        Some("fragment kw")
    );
}

#[test]
fn lossy_hosts() {
    assert_eq!(lossy_host("www.google.co.uk"), "google.{}");
    assert_eq!(lossy_host("www.google.de"), "google.{}");
    assert_eq!(lossy_host("www2.google.com.br"), "google.{}");
    assert_eq!(lossy_host("m.facebook.com"), "facebook.com");
    assert_eq!(lossy_host("de.search.yahoo.com"), "{}.search.yahoo.com");
    assert_eq!(lossy_host("search.example.com"), "example.com");
    assert_eq!(lossy_host("example.com"), "example.com");
}

#[test]
fn socials() {
    let f = Fixture::new();
    assert_eq!(
        cols(&f.detect("http://example.com/", "https://vk.com/away.php?to=x")),
        (
            7,
            Some("Vkontakte"),
            Some(""),
            Some("https://vk.com/away.php?to=x")
        )
    );
    // facebook's h= and p= are stripped from the stored URL
    assert_eq!(
        f.detect(
            "http://example.com/",
            "https://l.facebook.com/l.php?u=x&h=AT1&p=2"
        )
        .referer_url
        .as_deref(),
        Some("https://l.facebook.com/l.php?u=x")
    );
}

#[test]
fn campaigns() {
    let f = Fixture::new();
    let i = f.detect(
        "http://example.com/?pk_campaign=Autumn-Escapes&pk_kwd=Lisboa%20Tram",
        "",
    );
    assert_eq!(
        cols(&i),
        (6, Some("autumn-escapes"), Some("lisboa tram"), Some(""))
    );
    // utm_source alone names the campaign; no keyword and no referrer host → ""
    let i = f.detect(
        "https://shop.example.org/?utm_source=Instagram&utm_medium=story",
        "",
    );
    assert_eq!(cols(&i), (6, Some("instagram"), Some(""), Some("")));
    // keyword falls back to the referrer host
    let i = f.detect(
        "http://example.com/?mtm_campaign=Retarget",
        "https://ads.adnetwork.example/click?id=42",
    );
    assert_eq!(
        cols(&i),
        (
            6,
            Some("retarget"),
            Some("ads.adnetwork.example"),
            Some("https://ads.adnetwork.example/click?id=42")
        )
    );
    // or to the search keyword of the referrer
    let i = f.detect(
        "http://example.com/?pk_cpn=Spring",
        "https://www.bing.com/search?q=Garden+Hose",
    );
    assert_eq!(i.referer_keyword.as_deref(), Some("garden hose"));
    // campaign in the URL fragment
    let i = f.detect(
        "http://example.com/page#mtm_campaign=Hash-Campaign&mtm_kwd=Anchor",
        "",
    );
    assert_eq!(cols3(&i), (6, Some("hash-campaign"), Some("anchor")));
    // a name in the query without keyword: the fragment is read only for a campaign name
    let i = f.detect("http://example.com/?pk_campaign=A#pk_kwd=B", "");
    assert_eq!(
        (i.referer_name.as_deref(), i.referer_keyword.as_deref()),
        (Some("a"), Some(""))
    );
    // an existing visit of the same campaign keeps its keyword
    let existing = ExistingReferrer {
        referer_type: Some(6),
        referer_name: Some("Retarget".into()),
        referer_keyword: Some("banner".into()),
    };
    let i = f.detect_with(
        1,
        "http://example.com/?mtm_campaign=retarget",
        "http://example.com/",
        Some(&existing),
        &[],
    );
    assert_eq!(i.referer_keyword.as_deref(), Some("banner"));
    // AdSense
    let i = f.detect("http://example.com/", "https://googleads.g.doubleclick.net/pagead/ads?url=https%3A%2F%2Fnews.example%2Fa&ad_type=text");
    assert_eq!(
        cols3(&i),
        (6, Some("adwords (text)"), Some("(adwords) news.example"))
    );
}

#[test]
fn campaign_from_tracking_parameters() {
    let f = Fixture::new();
    let detector = ReferrerDetector {
        lists: &f.lists,
        site_urls: &f.urls,
        campaign: &f.campaign,
    };
    let site = SiteReferrerSettings {
        idsite: 1,
        exclude_unknown_urls: false,
        keep_url_fragment: false,
        excluded_referrers: &[],
        url_exclusions: &f.matcher,
    };
    let mut raw = Params::new();
    raw.insert("utm_campaign".into(), "Image-Tracking".into());
    raw.insert("utm_term".into(), "Pixel".into());
    let i = detector.detect(
        &site,
        &ReferrerRequest {
            url: "http://example.com/?pk_campaign=x",
            urlref: "",
            raw: &raw,
        },
        None,
    );
    assert_eq!(cols3(&i), (6, Some("image-tracking"), Some("pixel")));
}

#[test]
fn long_values_are_capped() {
    let f = Fixture::new();
    let long = "n".repeat(300);
    let i = f.detect(
        &format!("http://example.com/?pk_campaign={long}&pk_kwd={long}"),
        "",
    );
    assert_eq!(
        i.referer_name.as_ref().map(|s| s.chars().count()),
        Some(255)
    );
    assert_eq!(
        i.referer_keyword.as_ref().map(|s| s.chars().count()),
        Some(255)
    );
    let url = format!("https://a.org/{}", "é".repeat(1600));
    let i = f.detect("http://example.com/", &url);
    assert!(i
        .referer_url
        .as_ref()
        .is_some_and(|u| u.chars().count() <= 1500));
}

#[test]
fn existing_visit_and_conversion_attribution() {
    let f = Fixture::new();
    let website = f.detect("http://example.com/", "https://a.org/");
    assert_eq!(
        ReferrerDetector::for_existing_visit(Some(1), &website),
        Some(website.clone())
    );
    assert_eq!(
        ReferrerDetector::for_existing_visit(Some(3), &website),
        None
    );
    let direct = f.detect("http://example.com/", "");
    assert_eq!(ReferrerDetector::for_existing_visit(Some(1), &direct), None);

    let detector = ReferrerDetector {
        lists: &f.lists,
        site_urls: &f.urls,
        campaign: &f.campaign,
    };
    let site = SiteReferrerSettings {
        idsite: 1,
        exclude_unknown_urls: false,
        keep_url_fragment: false,
        excluded_referrers: &[],
        url_exclusions: &f.matcher,
    };
    let raw = Params::new();
    let visit = ExistingReferrer {
        referer_type: Some(1),
        referer_name: None,
        referer_keyword: None,
    };
    let c = detector.for_conversion(&site, &raw, ("Spring%20Sale", "KW", ""), &visit);
    assert_eq!(
        c,
        ConversionReferrer {
            referer_type: Some(6),
            referer_name: Some("spring sale".into()),
            referer_keyword: Some("kw".into())
        }
    );
    let c = detector.for_conversion(
        &site,
        &raw,
        ("", "", "https://www.google.com/search?q=x"),
        &visit,
    );
    assert_eq!(c.referer_type, Some(2));
    let c = detector.for_conversion(&site, &raw, ("", "", "http://example.com/self"), &visit);
    assert_eq!(
        c.referer_type,
        Some(1),
        "a direct _ref keeps the visit's referrer"
    );
    let campaign_visit = ExistingReferrer {
        referer_type: Some(6),
        referer_name: Some("x".into()),
        referer_keyword: Some("y".into()),
    };
    let c = detector.for_conversion(
        &site,
        &raw,
        ("", "", "https://www.google.com/search?q=x"),
        &campaign_visit,
    );
    assert_eq!(
        c.referer_name.as_deref(),
        Some("x"),
        "the visit's campaign wins over _ref"
    );
}

#[test]
fn keyword_charsets() {
    let f = Fixture::new();
    let kw = |url: &str| f.detect("http://example.com/", url).referer_keyword;
    // windows-1251 bytes are converted
    assert_eq!(
        kw("http://www.poisk.ru/?text=%CF%F0%E8%E2%E5%F2").as_deref(),
        Some("привет")
    );
    // with [UTF-8, windows-1251], valid UTF-8 stays UTF-8, anything else is read as windows-1251
    assert_eq!(
        kw("https://go.mail.ru/search?q=%D0%BF%D1%80%D0%B8%D0%B2%D0%B5%D1%82").as_deref(),
        Some("привет")
    );
    assert_eq!(
        kw("https://go.mail.ru/search?q=%CF%F0%E8%E2%E5%F2").as_deref(),
        Some("привет")
    );
    // UTF-8 sent to a windows-1251 engine is mis-decoded exactly as iconv does
    assert_eq!(
        kw("http://www.poisk.ru/?text=%D0%BF").as_deref(),
        Some("рї")
    );
}

proptest::proptest! {
    #[test]
    fn detection_never_panics(url in "[a-zA-Z:/?#@%+=&.;_0-9-]{0,40}", urlref in "\\PC{0,40}", r in "(https?://)?[a-z.]{0,12}/?[a-z?=&#%0-9]{0,20}") {
        let f = Fixture::new();
        let _ = f.detect(&url, &urlref);
        let _ = f.detect(&url, &r);
        let _ = f.detect(&r, &url);
    }
}
