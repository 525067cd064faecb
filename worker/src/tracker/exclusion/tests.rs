use std::path::Path;

use super::*;
use crate::tracker::location::ip_to_binary;

fn ip(s: &str) -> Vec<u8> {
    ip_to_binary(s)
}

#[test]
fn ip_ranges_parse_like_iputils() {
    let r = IpRange::parse("157.54.0.0/15").expect("cidr");
    assert!(r.contains(&ip("157.54.0.1")));
    assert!(r.contains(&ip("157.55.255.255")));
    assert!(!r.contains(&ip("157.56.0.0")));
    let w = IpRange::parse(" 192.168.*.* ").expect("wildcards");
    assert!(w.contains(&ip("192.168.3.4")));
    assert!(!w.contains(&ip("192.169.0.0")));
    let single = IpRange::parse("1.202.218.8").expect("single");
    assert!(single.contains(&ip("1.202.218.8")));
    assert!(!single.contains(&ip("1.202.218.9")));
    let v6 = IpRange::parse("2001:db8::/32").expect("v6");
    assert!(v6.contains(&ip("2001:db8:1::5")));
    assert!(!v6.contains(&ip("1.2.3.4")), "families never match");
    assert!(
        IpRange::parse("1.2.*.4").is_none(),
        "wildcards must be trailing"
    );
    assert!(IpRange::parse("1.2*.0.0").is_none());
    assert!(IpRange::parse("1.2.3.0/33").is_none());
    assert!(IpRange::parse("1.2.3.0/abc").is_none());
    assert!(IpRange::parse("").is_none());
    assert!(IpRange::parse("example.com").is_none());
    let odd = IpRange::parse("10.0.0.129/25").expect("non-aligned base");
    assert!(odd.contains(&ip("10.0.0.128")) && odd.contains(&ip("10.0.0.255")));
    assert!(!odd.contains(&ip("10.0.0.127")));
}

#[test]
fn excluded_ips_site_then_global() {
    let ranges = excluded_ip_ranges("10.0.0.1,, bad", "192.168.0.0/16");
    assert_eq!(ranges.len(), 2);
    assert!(ip_in_ranges(&ip("10.0.0.1"), &ranges));
    assert!(ip_in_ranges(&ip("192.168.9.9"), &ranges));
    assert!(!ip_in_ranges(&ip("10.0.0.2"), &ranges));
}

#[test]
fn built_in_bot_ranges() {
    assert!(is_bot_ip(&ip("157.55.39.1"), ""), "Bing 157.54.0.0/15");
    assert!(is_bot_ip(&ip("66.249.80.5"), ""), "Googlebot");
    assert!(
        !is_bot_ip(&ip("66.249.80.5"), "1.1 Chrome-Compression-Proxy"),
        "data saver"
    );
    assert!(!is_bot_ip(&ip("8.8.8.8"), ""));
}

#[test]
fn user_agent_rules() {
    let list = UserAgentExclusions::new(&comma_list("", "curl,HeadlessChrome"));
    assert!(is_user_agent_excluded(
        "Mozilla/5.0 headlesschrome/90",
        &list
    ));
    assert!(is_user_agent_excluded("curl/8.0", &list));
    assert!(!is_user_agent_excluded("Mozilla/5.0 Firefox", &list));
    // a PHP regex entry decides alone, even when it does not match
    let regex_first =
        UserAgentExclusions::new(&["/^Mozilla.*Bot/i".to_owned(), "firefox".to_owned()]);
    assert!(is_user_agent_excluded("Mozilla/5.0 SomeBOT", &regex_first));
    assert!(!is_user_agent_excluded("Mozilla/5.0 Firefox", &regex_first));
    assert_eq!(comma_list("a,,b", "b,c"), vec!["a", "b", "c"]);
}

/// Entries are PCRE as in PHP: a look-ahead is a regex (and decides alone), and a pattern PHP
/// refuses is only a substring.
#[test]
fn user_agent_regexes_are_pcre() {
    let list =
        UserAgentExclusions::new(&["/^(?!.*Googlebot).*bot/i".to_owned(), "curl".to_owned()]);
    assert!(is_user_agent_excluded("SomeBot/1.0", &list));
    assert!(!is_user_agent_excluded(
        "Mozilla/5.0 (compatible; Googlebot/2.1)",
        &list
    ));
    assert!(
        !is_user_agent_excluded("curl/8.0", &list),
        "the first valid regex decides alone"
    );
    let refused = UserAgentExclusions::new(&["/bot/q".to_owned(), "curl".to_owned()]);
    assert!(is_user_agent_excluded("curl/8.0", &refused));
    assert!(!is_user_agent_excluded("a bot", &refused));
    assert!(
        is_user_agent_excluded("x /bot/q y", &refused),
        "still a substring"
    );
}

/// Excluded parameters written as PCRE (`inArrayMatchesRegex`) drop the names they match.
#[test]
fn excluded_parameter_regexes_are_pcre() {
    let m = ParamMatcher::new(&["/^utm_(?!campaign$)/".to_owned(), "sid".to_owned()]);
    assert_eq!(
        exclude_query_parameters_from_url(
            "http://a.com/?utm_source=x&utm_campaign=y&sid=1&q=2",
            &m,
            &[],
            false
        )
        .as_deref(),
        Some("http://a.com/?utm_campaign=y&q=2")
    );
}

#[test]
fn parameters_excluded_from_urls() {
    let c = CampaignParams::default();
    let list = query_parameters_to_exclude("sessionid,Foo", "", "gclid, fbclid", &c);
    assert_eq!(
        &list[..4],
        &["ignore_referrer", "ignore_referer", "sessionid", "foo"]
    );
    assert!(list.contains(&"utm_term".to_owned()) && list.contains(&"fbclid".to_owned()));
    let m = ParamMatcher::new(&list);
    let u = |url: &str, keep: bool| exclude_query_parameters_from_url(url, &m, &[], keep);
    assert_eq!(
        u(
            "HTTPS://Shop.Example.ORG/a?b=1&SessionId=x&utm_source=n&c#frag",
            false
        )
        .as_deref(),
        Some("HTTPS://shop.example.org/a?b=1&c")
    );
    assert_eq!(
        u("http://a.org/p#x=1&gclid=2", true).as_deref(),
        Some("http://a.org/p#x=1")
    );
    assert_eq!(
        u("http://a.org/p#frag#", true).as_deref(),
        Some("http://a.org/p#frag")
    );
    assert_eq!(
        u("http://a.org/p;sessionid=1;x=2", false).as_deref(),
        Some("http://a.org/p?x=2")
    );
    assert_eq!(u("", false).as_deref(), Some(""));
    assert_eq!(u("http://a.org:99999/", false), None);
    let extra = exclude_query_parameters_from_url(
        "https://www.bing.com/search?q=x&PC=U&form=A",
        &m,
        &["PC", "form"],
        false,
    );
    assert_eq!(extra.as_deref(), Some("https://www.bing.com/search?q=x"));
}

#[test]
fn unknown_urls() {
    let urls = vec![
        "http://example.com".to_owned(),
        "https://shop.example.com/store".to_owned(),
    ];
    assert!(!is_url_excluded(false, 1, &urls, "http://evil.org/"));
    assert!(is_url_excluded(true, 1, &urls, "http://evil.org/"));
    assert!(!is_url_excluded(
        true,
        1,
        &urls,
        "https://www.example.com/x"
    ));
    assert!(!is_url_excluded(
        true,
        1,
        &urls,
        "https://shop.example.com/store/item"
    ));
    assert!(
        is_url_excluded(true, 1, &urls, "https://shop.example.com/other"),
        "only under /store"
    );
    assert!(is_url_excluded(true, 1, &urls, "not a url"));
    assert!(!is_url_excluded(true, 1, &[], "http://evil.org/"));
}

fn input<'a>(
    spam: &'a SpamList,
    ranges: &'a [IpRange],
    agents: &'a UserAgentExclusions,
    ip: &'a [u8],
) -> ExclusionInput<'a> {
    ExclusionInput {
        bots_param: 0,
        device_is_bot: false,
        rec_param: 1,
        ip,
        http_via: "",
        excluded_ips: ranges,
        user_agent: "Mozilla/5.0",
        excluded_user_agents: agents,
        spam_filter_enabled: true,
        spammers: spam,
        urlref: "",
        exclude_unknown_urls: false,
        site_urls: &[],
        idsite: 1,
        url: "http://example.com/",
        x_purpose: "",
        x_moz: "",
    }
}

#[test]
fn ordered_decision() {
    let spam = SpamList::from_text("semalt.com\n", Path::new("spammers.txt")).expect("list");
    let ranges = excluded_ip_ranges("10.0.0.0/8", "");
    let agents = UserAgentExclusions::new(&["curl".to_owned()]);
    let normal = ip("8.8.4.4");
    let base = input(&spam, &ranges, &agents, &normal);
    assert_eq!(check(&base), None);
    assert_eq!(
        check(&ExclusionInput {
            device_is_bot: true,
            ..base
        }),
        Some(ExclusionReason::Bot)
    );
    assert_eq!(
        check(&ExclusionInput {
            device_is_bot: true,
            bots_param: 1,
            ..base
        }),
        None,
        "bots=1 records bots"
    );
    let bing = ip("157.54.1.1");
    assert_eq!(
        check(&ExclusionInput { ip: &bing, ..base }),
        Some(ExclusionReason::Bot)
    );
    assert_eq!(
        check(&ExclusionInput {
            ip: &bing,
            bots_param: 1,
            ..base
        }),
        None
    );
    assert_eq!(
        check(&ExclusionInput {
            device_is_bot: true,
            rec_param: 0,
            ..base
        }),
        Some(ExclusionReason::Bot),
        "bots are checked first"
    );
    assert_eq!(
        check(&ExclusionInput {
            rec_param: 0,
            ..base
        }),
        Some(ExclusionReason::NotRecorded)
    );
    let internal = ip("10.1.1.1");
    assert_eq!(
        check(&ExclusionInput {
            ip: &internal,
            ..base
        }),
        Some(ExclusionReason::ExcludedIp)
    );
    assert_eq!(
        check(&ExclusionInput {
            user_agent: "curl/8",
            ..base
        }),
        Some(ExclusionReason::ExcludedUserAgent)
    );
    assert_eq!(
        check(&ExclusionInput {
            urlref: "http://semalt.com/",
            ..base
        }),
        Some(ExclusionReason::ReferrerSpam)
    );
    assert_eq!(
        check(&ExclusionInput {
            urlref: "http://semalt.com/",
            spam_filter_enabled: false,
            ..base
        }),
        None
    );
    let urls = vec!["http://example.org".to_owned()];
    assert_eq!(
        check(&ExclusionInput {
            exclude_unknown_urls: true,
            site_urls: &urls,
            ..base
        }),
        Some(ExclusionReason::UnknownUrl)
    );
    assert_eq!(
        check(&ExclusionInput {
            x_moz: "prefetch",
            ..base
        }),
        Some(ExclusionReason::Prefetch)
    );
    assert_eq!(
        check(&ExclusionInput {
            x_purpose: "preview",
            ..base
        }),
        Some(ExclusionReason::Prefetch)
    );
}

#[test]
fn exclude_requests_rules() {
    let rules = parse_exclude_requests(
        "e_c==Media,action_name=@privacy,url=^http%3A%2F%2Fstaging,bad,uid!=,e_a=$Play",
    );
    assert_eq!(rules.len(), 5);
    let req = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map_or(String::new(), |(_, v)| (*v).to_owned())
        }
    };
    assert!(is_request_excluded(&rules[..1], req(&[("e_c", "MEDIA")])));
    assert!(!is_request_excluded(
        &rules[..1],
        req(&[("e_c", "Media player")])
    ));
    assert!(is_request_excluded(
        &rules[1..2],
        req(&[("action_name", "Our Privacy Policy")])
    ));
    assert!(is_request_excluded(
        &rules[2..3],
        req(&[("url", "http://Staging.example.com/")])
    ));
    assert!(!is_request_excluded(
        &rules[2..3],
        req(&[("url", "https://example.com/?http://staging")])
    ));
    assert!(
        is_request_excluded(&rules[3..4], req(&[("uid", "someone")])),
        "uid != ''"
    );
    assert!(!is_request_excluded(&rules[3..4], req(&[])));
    assert!(is_request_excluded(
        &rules[4..5],
        req(&[("e_a", "autoplay")])
    ));
    assert!(parse_exclude_requests("").is_empty());
    let spam = SpamList::default();
    let normal = ip("8.8.4.4");
    let no_agents = UserAgentExclusions::default();
    let base = input(&spam, &[], &no_agents, &normal);
    let excluded = ExtraChecks {
        request_excluded: true,
        ignore_cookie_found: true,
    };
    assert_eq!(
        check_full(&base, excluded),
        Some(ExclusionReason::ExcludedRequest)
    );
    let no_rec = ExclusionInput {
        rec_param: 0,
        ..base
    };
    assert_eq!(
        check_full(&no_rec, excluded),
        Some(ExclusionReason::NotRecorded)
    );
    let cookie = ExtraChecks {
        ignore_cookie_found: true,
        ..ExtraChecks::default()
    };
    assert_eq!(
        check_full(&base, cookie),
        Some(ExclusionReason::IgnoreCookie)
    );
    assert_eq!(check_full(&base, ExtraChecks::default()), None);
}

#[test]
fn ignore_cookie_values() {
    assert!(is_ignore_cookie("ignore=Kg=="));
    assert!(is_ignore_cookie("other=MQ==:ignore=Kg=="));
    assert!(!is_ignore_cookie("ignore=MQ=="));
    assert!(!is_ignore_cookie("ignore"));
    assert!(!is_ignore_cookie(""));
}
