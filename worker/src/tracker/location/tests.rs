use super::*;

#[test]
fn browser_language_normalisation_cases() {
    // the cases the golden corpus exercises, and PHP's filters
    assert_eq!(browser_language("", "en_US"), "en-us");
    assert_eq!(browser_language("", "EN-us"), "en-us");
    assert_eq!(browser_language("", "de-CH, de;q=0.9"), "de-ch,de");
    assert_eq!(browser_language("", "sr-SP,sr;q=0.9"), "sr-rs,sr");
    assert_eq!(browser_language("", "zh-Hans-CN,zh;q=0.8"), "zh-hans-cn,zh");
    assert_eq!(browser_language("", "es-419,es;q=0.9"), "es-419,es");
    assert_eq!(browser_language("", "*;q=0.1"), "*");
    assert_eq!(
        browser_language("fr-CH", "de-DE"),
        "fr-ch",
        "lang= overrides the header"
    );
    assert_eq!(
        browser_language("0", "de-DE"),
        "de-de",
        "'0' is empty in PHP"
    );
    assert_eq!(browser_language("", ""), "");
    assert_eq!(normalize_browser_language("en_CA.UTF-8"), "en-ca");
    assert_eq!(normalize_browser_language("fr (France), en"), "fr,en");
    assert_eq!(normalize_browser_language("en-us,chrome:/x,de"), "en-us");
    assert_eq!(normalize_browser_language("fr,en-securid,de"), "fr,de");
    assert_eq!(normalize_browser_language("en-securid,de"), "de");
    assert_eq!(normalize_browser_language("de,en-securid"), "de");
}

#[test]
fn location_browser_lang_keeps_first_valid_language_with_region() {
    assert_eq!(location_browser_lang("de-ch,de"), "de-ch");
    assert_eq!(location_browser_lang("zh-hans-cn,zh"), "zh-cn");
    assert_eq!(location_browser_lang("es-419,es"), "es");
    assert_eq!(location_browser_lang("*"), "xx");
    assert_eq!(
        location_browser_lang("xyz,fr"),
        "fr",
        "unknown 3-letter codes are skipped"
    );
    assert_eq!(location_browser_lang(""), "");
    assert_eq!(location_browser_lang("sr-rs,sr"), "sr-rs");
}

#[test]
fn country_guess_from_language() {
    assert_eq!(country_from_language("de-ch,de", true), "ch");
    assert_eq!(country_from_language("de", true), "de");
    assert_eq!(country_from_language("de;q=1", true), "de");
    assert_eq!(country_from_language("de", false), "xx");
    assert_eq!(country_from_language("en", true), "xx", "en is not guessed");
    assert_eq!(country_from_language("en,en-gb", true), "gb");
    assert_eq!(country_from_language("zh-hans-cn", true), "cn");
    assert_eq!(
        country_from_language("es-419,es", true),
        "xx",
        "the guess needs the first tag alone"
    );
    assert_eq!(country_from_language("es-419", true), "xx");
    assert_eq!(country_from_language("ja", true), "jp");
    assert_eq!(country_from_language("*", true), "xx");
    assert_eq!(country_from_language("xx", true), "xx");
    assert_eq!(
        country_from_language("en-uk", true),
        "xx",
        "uk is not an ISO country"
    );
}

#[test]
fn binary_ip_forms() {
    assert_eq!(ip_to_binary("192.168.50.140"), vec![192, 168, 50, 140]);
    assert_eq!(ip_to_binary("2001:db8::1").len(), 16);
    let mapped = ip_to_binary("::ffff:10.1.2.3");
    assert_eq!(mapped.len(), 16, "IPv4-mapped stays 16 bytes");
    assert_eq!(&mapped[10..], &[0xff, 0xff, 10, 1, 2, 3]);
    assert_eq!(ip_to_binary("not an ip"), vec![0, 0, 0, 0]);
    assert_eq!(ip_to_binary("1.2.3.4:80"), vec![0, 0, 0, 0]);
    assert_eq!(binary_to_ip_string(&[10, 0, 0, 1]), "10.0.0.1");
    assert_eq!(binary_to_ip_string(&mapped), "::ffff:10.1.2.3");
    assert_eq!(
        binary_to_ip_string(&ip_to_binary("2001:db8::1")),
        "2001:db8::1"
    );
    assert_eq!(binary_to_ip_string(&ip_to_binary("::1")), "::1");
    assert_eq!(binary_to_ip_string(&[1, 2, 3]), "0.0.0.0");
}

#[test]
fn anonymisation_like_ipanonymizer() {
    let v4 = ip_to_binary("203.0.113.195");
    assert_eq!(anonymize_ip(&v4, 0), v4);
    assert_eq!(anonymize_ip(&v4, 1), vec![203, 0, 113, 0]);
    assert_eq!(anonymize_ip(&v4, 2), vec![203, 0, 0, 0]);
    assert_eq!(anonymize_ip(&v4, 4), vec![0, 0, 0, 0]);
    assert_eq!(anonymize_ip(&v4, 9), vec![0, 0, 0, 0]);
    let v6 = ip_to_binary("2001:db8:85a3:1234:5678:8a2e:370:7334");
    let s = |b: Vec<u8>| binary_to_ip_string(&b);
    assert_eq!(
        s(anonymize_ip(&v6, 0)),
        "2001:db8:85a3:1234:5678:8a2e:370:7334"
    );
    assert_eq!(s(anonymize_ip(&v6, 1)), "2001:db8:85a3:1234::");
    assert_eq!(s(anonymize_ip(&v6, 2)), "2001:db8:85a3::");
    assert_eq!(s(anonymize_ip(&v6, 3)), "2001:d00::");
    assert_eq!(s(anonymize_ip(&v6, 4)), "::");
    let mapped = ip_to_binary("::ffff:10.1.2.3");
    assert_eq!(s(anonymize_ip(&mapped, 2)), "::ffff:10.1.0.0");
}

#[test]
fn privacy_options() {
    let d = PrivacySettings::from_options(|_| None);
    assert_eq!(d, PrivacySettings::default());
    assert_eq!(d.stored_ip(&[1, 2, 3, 4]), vec![1, 2, 0, 0]);
    let off = PrivacySettings::from_options(|k| {
        (k == "PrivacyManager.ipAnonymizerEnabled").then(|| "0".into())
    });
    assert!(!off.ip_anonymizer_enabled);
    assert_eq!(off.stored_ip(&[1, 2, 3, 4]), vec![1, 2, 3, 4]);
    let three = PrivacySettings::from_options(|k| {
        (k == "PrivacyManager.ipAddressMaskLength").then(|| "3".into())
    });
    assert_eq!(three.stored_ip(&[1, 2, 3, 4]), vec![1, 0, 0, 0]);
}

#[test]
fn default_provider_without_geoip() {
    let p = PrivacySettings::default();
    let l = locate(None, &p, true, &[1, 2, 3, 4], &[1, 2, 0, 0], "pt-br,pt");
    assert_eq!(l.country, "br");
    assert_eq!(
        (l.region, l.city, l.latitude, l.longitude),
        (None, None, None, None)
    );
}

#[test]
fn cli_lang_fallback() {
    assert_eq!(browser_language_cli("", "", Some("C.UTF-8")), "c");
    assert_eq!(
        location_browser_lang(&browser_language_cli("", "", Some("C.UTF-8"))),
        "xx"
    );
    assert_eq!(browser_language_cli("", "", Some("de_DE.UTF-8")), "de-de");
    assert_eq!(browser_language_cli("", "fr", Some("de_DE.UTF-8")), "fr");
    assert_eq!(browser_language_cli("it", "fr", Some("de_DE.UTF-8")), "it");
    assert_eq!(browser_language_cli("", "", None), "");
}
