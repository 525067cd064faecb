//! Detection never panics and always returns, whatever the user agent and hints: property tests
//! over arbitrary strings, header pairs and `uadata` text, plus hostile shapes (very long, deeply
//! repetitive) that stress backtracking. Also checks the public behaviour the tracker relies on
//! (cache equals uncached, Matomo column defaults). Skipped with a message when the data is absent.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use matomo_device_detector::{ClientHints, DeviceDetector, MAX_USER_AGENT_LEN};
use proptest::prelude::*;

fn detector() -> Option<&'static DeviceDetector> {
    static DD: OnceLock<Option<DeviceDetector>> = OnceLock::new();
    DD.get_or_init(|| {
        let shared = match std::env::var_os("MATOMO_SHARED_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
        };
        let dir = shared.join("matomo-data/device-detector/regexes");
        if !dir.is_dir() {
            println!("SKIPPED: device-detector regexes not found at {dir:?}");
            return None;
        }
        Some(DeviceDetector::from_dir(&dir).expect("load regexes"))
    })
    .as_ref()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_user_agents_and_headers_never_panic(
        ua in ".{0,300}",
        headers in prop::collection::vec(("[A-Za-z_-]{0,30}", ".{0,80}"), 0..6),
        uadata in ".{0,200}",
    ) {
        let Some(dd) = detector() else { return Ok(()) };
        let hints = ClientHints::from_headers(headers);
        let d = dd.detect(&ua, &hints);
        let cols = d.matomo_columns();
        prop_assert!(!cols.config_os.is_empty());
        prop_assert!(cols.config_browser_version.len() <= 20);
        if let Ok(h) = ClientHints::from_uadata_json(&uadata) {
            let _ = dd.detect_for_matomo(&ua, &h);
        }
    }

    #[test]
    fn token_soup_user_agents_never_panic(
        parts in prop::collection::vec(
            prop::sample::select(vec![
                "Mozilla/5.0", "(Linux;", "Android 10;", "K)", "Chrome/123.0.0.0", "Mobile",
                "Safari/537.36", "Windows NT 10.0;", "Win64; x64)", "iPhone", "CPU OS 17_0",
                "like Mac OS X)", "Build/", "HbbTV/1.2.1", "SmartTV", "Tablet", "Desktop;",
                "X11; Linux x86_64", "Firefox/", "rv:", "Gecko/20100101", "bot", "$1", "\\",
                "(", ")", ";", "_", "/", " ", "\u{e9}", "\u{1F600}",
            ]),
            0..40,
        ),
    ) {
        let Some(dd) = detector() else { return Ok(()) };
        let ua = parts.concat();
        prop_assert_eq!(dd.detect(&ua, &ClientHints::default()), dd.detect_uncached(&ua, &ClientHints::default()));
    }
}

#[test]
fn hostile_user_agents_return() {
    let Some(dd) = detector() else { return };
    let hostile = [
        "a".repeat(100_000),
        "Android ".repeat(5_000),
        format!("Mozilla/5.0 ({}", "1.".repeat(20_000)),
        "(".repeat(10_000),
        format!("{}\u{e9}", "x".repeat(MAX_USER_AGENT_LEN - 1)),
        "\0\u{1}\u{2}".repeat(1_000),
    ];
    for ua in &hostile {
        let _ = dd
            .detect_uncached(ua, &ClientHints::default())
            .matomo_columns();
    }
}

#[test]
fn empty_and_letterless_user_agents_detect_nothing() {
    let Some(dd) = detector() else { return };
    for ua in ["", "12345", "---"] {
        let d = dd.detect(ua, &ClientHints::default());
        assert!(d.bot.is_none() && d.os.is_none() && d.client.is_none() && d.device_type.is_none());
        let c = d.matomo_columns();
        assert_eq!(
            (c.config_os.as_str(), c.config_browser_name.as_str()),
            ("UNK", "UNK")
        );
        assert_eq!(c.config_os_version, "UNK");
        assert_eq!(c.config_client_type, None);
        assert_eq!(c.config_device_model, "");
    }
}

#[test]
fn matomo_columns_for_common_user_agents() {
    let Some(dd) = detector() else { return };
    let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.130 Safari/537.36";
    let c = dd.detect(chrome, &ClientHints::default()).matomo_columns();
    assert_eq!(c.config_os, "WIN");
    assert_eq!(c.config_os_version, "10");
    assert_eq!(c.config_browser_name, "CH");
    assert_eq!(c.config_browser_version, "120.0");
    assert_eq!(c.config_browser_engine, "Blink");
    assert_eq!(c.config_client_type, Some(1));
    assert_eq!(c.config_device_type, Some(0));
    assert_eq!(c.config_device_brand, "");
    assert_eq!(c.config_device_model, "generic desktop");

    let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
    let c = dd.detect(iphone, &ClientHints::default()).matomo_columns();
    assert_eq!(
        (c.config_os.as_str(), c.config_os_version.as_str()),
        ("IOS", "17.1")
    );
    assert_eq!(
        (
            c.config_browser_name.as_str(),
            c.config_device_brand.as_str()
        ),
        ("MF", "AP")
    );
    assert_eq!(
        (c.config_device_type, c.config_device_model.as_str()),
        (Some(1), "iPhone")
    );

    let bot = dd.detect(
        "Googlebot/2.1 (+http://www.google.com/bot.html)",
        &ClientHints::default(),
    );
    assert!(bot.is_bot());
    assert_eq!(bot.matomo_columns().config_os, "BOT");

    let curl = dd
        .detect("curl/8.4.0", &ClientHints::default())
        .matomo_columns();
    assert_eq!(
        (curl.config_browser_name.as_str(), curl.config_client_type),
        ("curl", Some(2))
    );
}

#[test]
fn client_hints_refine_the_frozen_user_agent() {
    let Some(dd) = detector() else { return };
    let ua = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36";
    let hints = ClientHints::from_headers([
        (
            "Sec-CH-UA-Full-Version-List",
            r#""Chromium";v="120.0.6099.144", "Google Chrome";v="120.0.6099.144""#,
        ),
        ("Sec-CH-UA-Model", "\"SM-G991B\""),
        ("Sec-CH-UA-Platform", "\"Android\""),
        ("Sec-CH-UA-Platform-Version", "\"14.0.0\""),
    ]);
    let d = dd.detect(ua, &hints);
    let c = d.matomo_columns();
    assert_eq!(
        (c.config_os.as_str(), c.config_os_version.as_str()),
        ("AND", "14.0")
    );
    assert_eq!(c.config_browser_name, "CM");
    assert_eq!(c.config_device_brand, "SA");
    assert_eq!(d.model.as_deref(), Some("Galaxy S21 5G"));
}

#[test]
fn missing_directory_is_a_clear_error() {
    let err = DeviceDetector::from_dir(Path::new("/nonexistent/regexes")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/regexes"), "{err}");
}
