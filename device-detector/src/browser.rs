//! Browser detection (`Parser/Client/Browser.php` and `Browser/Engine*.php`): user agent rules,
//! engines and engine versions, the client-hint brand list, the `X-Requested-With` browser apps,
//! the merge of hints with the user agent, and the browser family / mobile-only tables.

use std::collections::HashMap;

use crate::detection::{ClientInfo, ClientType};
use crate::hints::ClientHints;
use crate::os::fuzzy_eq;
use crate::pattern::{
    build_by_match, build_version, version_compare, Captures, Pattern, VersionTruncation,
};
use crate::rules::{ClientRule, EngineRule};
use crate::scan::Scanner;
use crate::tables::{AlgorithmVersion, Tables};

#[derive(Debug)]
struct Rule {
    name: String,
    version: String,
    engine: EngineRule,
}

#[derive(Debug, Default, Clone)]
struct Found {
    name: String,
    short: String,
    version: String,
    engine: String,
    engine_version: String,
}

/// The browser parser.
#[derive(Debug)]
pub(crate) struct BrowserParser {
    t: &'static Tables,
    scanner: Scanner,
    rules: Vec<Rule>,
    engine_scanner: Scanner,
    engine_names: Vec<String>,
    engine_versions: HashMap<&'static str, Pattern>,
    gecko_version: Pattern,
    chrome_safari: Pattern,
    browser_hints: HashMap<String, String>,
}

impl BrowserParser {
    pub(crate) fn new(
        t: &'static Tables,
        rules: &[ClientRule],
        engines: &[ClientRule],
        browser_hints: HashMap<String, String>,
    ) -> Self {
        let v6_3 = t.version == AlgorithmVersion::V6_3;
        let engine_versions = t
            .engines
            .iter()
            .map(|&engine| {
                let token = match engine {
                    "Blink" if v6_3 => "Chrome|Cronet".to_string(),
                    "Blink" => "Chr[o0]me|Cronet".to_string(),
                    "Arachne" => r"Arachne\/5\.".to_string(),
                    "LibWeb" => r"LibWeb\+LibJs".to_string(),
                    other => other.to_string(),
                };
                let re =
                    format!(r"(?:{token})\s*/?\s*((?(?=\d+\.\d)\d+[.\d]*|\d{{1,7}}(?=(?:\D|$))))");
                (engine, Pattern::raw(re, true))
            })
            .collect();
        Self {
            t,
            scanner: Scanner::new(rules.iter().map(|r| r.regex.as_str())),
            rules: rules
                .iter()
                .map(|r| Rule {
                    name: r.name.clone(),
                    version: r.version.clone().unwrap_or_default(),
                    engine: r.engine.clone().unwrap_or_default(),
                })
                .collect(),
            engine_scanner: Scanner::new(engines.iter().map(|r| r.regex.as_str())),
            engine_names: engines.iter().map(|r| r.name.clone()).collect(),
            engine_versions,
            gecko_version: Pattern::raw(
                r"[ ](?:rv[: ]([0-9\.]+)).*(?:g|cl)ecko/[0-9]{8,10}".to_string(),
                true,
            ),
            chrome_safari: Pattern::raw(r"Chrome/.+ Safari/537.36".to_string(), true),
            browser_hints,
        }
    }

    pub(crate) fn check(&self) -> Vec<String> {
        let mut errors: Vec<String> = self
            .scanner
            .check()
            .into_iter()
            .map(|(i, e)| format!("client/browsers.yml rule {i}: {e}"))
            .collect();
        errors.extend(
            self.engine_scanner
                .check()
                .into_iter()
                .map(|(i, e)| format!("client/browser_engine.yml rule {i}: {e}")),
        );
        errors
    }

    pub(crate) fn parse(
        &self,
        ua: &str,
        hints: &ClientHints,
        trunc: VersionTruncation,
    ) -> Option<ClientInfo> {
        let t = self.t;
        let v6_3 = t.version == AlgorithmVersion::V6_3;
        let from_hints = from_client_hints(t, hints, trunc);
        let from_ua = self.parse_user_agent(ua, trunc);
        let (mut name, mut version, mut short, mut engine, mut engine_version);
        if !from_hints.name.is_empty() && !from_hints.version.is_empty() {
            name = from_hints.name.clone();
            version = from_hints.version.clone();
            short = from_hints.short.clone();
            engine = String::new();
            engine_version = String::new();
            if version.starts_with("202") && matches!(version.as_bytes().get(3), Some(b'0'..=b'4'))
            {
                name = "Iridium".into();
                short = "I1".into();
            }
            if version.starts_with("15") && from_ua.version.starts_with("114") {
                name = "360 Secure Browser".into();
                short = "3B".into();
                engine = from_ua.engine.clone();
                engine_version = from_ua.engine_version.clone();
            }
            const KEEP_UA_VERSION: [&str; 8] = ["A0", "AL", "HP", "JR", "MU", "OM", "OP", "VR"];
            if v6_3 {
                if name == "Atom" || name == "Huawei Browser" {
                    version = from_ua.version.clone();
                }
                if name == "DuckDuckGo Privacy Browser" {
                    version = String::new();
                }
            } else if !from_ua.version.is_empty() && KEEP_UA_VERSION.contains(&short.as_str()) {
                version = from_ua.version.clone();
            }
            if name == "Vewd Browser" {
                engine = from_ua.engine.clone();
                engine_version = from_ua.engine_version.clone();
            }
            let replace_chromium = if v6_3 {
                name == "Chromium" && !from_ua.name.is_empty() && from_ua.name != "Chromium"
            } else {
                (name == "Chromium" || name == "Chrome Webview")
                    && !from_ua.name.is_empty()
                    && !["CR", "CV", "AN"].contains(&from_ua.short.as_str())
            };
            if replace_chromium {
                name = from_ua.name.clone();
                short = from_ua.short.clone();
                version = from_ua.version.clone();
            }
            if format!("{name} Mobile") == from_ua.name {
                name = from_ua.name.clone();
                short = from_ua.short.clone();
            }
            if name != from_ua.name && t.browser_family(&name) == t.browser_family(&from_ua.name) {
                engine = from_ua.engine.clone();
                engine_version = from_ua.engine_version.clone();
            }
            if name == from_ua.name {
                engine = from_ua.engine.clone();
                engine_version = from_ua.engine_version.clone();
            }
            // 6.3 only refines the version when both sources name the same browser.
            if (!v6_3 || name == from_ua.name)
                && !from_ua.version.is_empty()
                && from_ua.version.starts_with(version.as_str())
                && version_compare(&version, &from_ua.version) < 0
            {
                version = from_ua.version.clone();
            }
            if !v6_3 && name == "DuckDuckGo Privacy Browser" {
                version = String::new();
            }
        } else {
            name = from_ua.name;
            version = from_ua.version;
            short = from_ua.short;
            engine = from_ua.engine;
            engine_version = from_ua.engine_version;
        }
        let mut family = t.browser_family(&short).map(str::to_string);
        if let Some(app_name) = self.browser_hints.get(&hints.app).filter(|n| !n.is_empty()) {
            if *app_name != name {
                name = app_name.clone();
                version = String::new();
                let code = t.browser_short_name(&name);
                short = code.unwrap_or_default().to_string();
                if self.chrome_safari.is_match(ua) {
                    engine = "Blink".into();
                    family = Some(
                        code.and_then(|c| t.browser_family(c))
                            .unwrap_or("Chrome")
                            .to_string(),
                    );
                    engine_version = self.engine_version(ua, &engine);
                }
            }
        }
        if name.is_empty() {
            return None;
        }
        if engine == "Blink" && name == "Flow Browser" {
            engine_version = String::new();
        }
        if name == "Every Browser" {
            family = Some("Chrome".into());
            engine = "Blink".into();
            engine_version = String::new();
        }
        if !v6_3 && name == "TV-Browser Internet" && engine == "Gecko" {
            family = Some("Chrome".into());
            engine = "Blink".into();
            engine_version = String::new();
        }
        Some(ClientInfo {
            client_type: ClientType::Browser,
            name,
            short_name: Some(short),
            version,
            engine,
            engine_version,
            family,
        })
    }

    fn parse_user_agent(&self, ua: &str, trunc: VersionTruncation) -> Found {
        let Some((idx, caps)) = self.scanner.first(ua) else {
            return Found::default();
        };
        let rule = &self.rules[idx];
        let name = build_by_match(&rule.name, &caps);
        let Some(short) = self.t.browser_short_name(&name) else {
            // PHP throws here ("not found in $availableBrowsers"); an unknown name is no result.
            return Found::default();
        };
        let version = build_version(&rule.version, &caps, trunc);
        let engine = self.build_engine(ua, &rule.engine, &version);
        let engine_version = self.engine_version(ua, &engine);
        Found {
            name,
            short: short.to_string(),
            version,
            engine,
            engine_version,
        }
    }

    fn build_engine(&self, ua: &str, rule: &EngineRule, browser_version: &str) -> String {
        let mut engine = rule.default.clone().unwrap_or_default();
        for (min_version, versioned) in &rule.versions.0 {
            if version_compare(browser_version, min_version) < 0 {
                continue;
            }
            engine = versioned.clone();
        }
        if engine.is_empty() {
            if let Some((idx, caps)) = self.engine_scanner.first(ua) {
                let name = build_by_match(&self.engine_names[idx], &caps);
                engine = self
                    .t
                    .engines
                    .iter()
                    .find(|e| e.to_lowercase() == name.to_lowercase())
                    .map_or(String::new(), |e| e.to_string());
            }
        }
        engine
    }

    /// `Engine\Version::parse`.
    fn engine_version(&self, ua: &str, engine: &str) -> String {
        if engine.is_empty() {
            return String::new();
        }
        if engine == "Gecko" || engine == "Clecko" {
            if let Some(caps) = self.gecko_version.captures(ua) {
                return caps.last().to_string();
            }
        }
        let pattern = match self.engine_versions.get(engine) {
            Some(p) => p,
            None => return String::new(),
        };
        pattern
            .captures(ua)
            .map_or(String::new(), |caps| caps.last().to_string())
    }
}

fn from_client_hints(t: &Tables, hints: &ClientHints, trunc: VersionTruncation) -> Found {
    let brands = hints.brand_list();
    if brands.is_empty() {
        return Found::default();
    }
    let (mut name, mut short, mut version) = (String::new(), String::new(), String::new());
    for (brand, brand_version) in brands {
        let brand = t
            .browser_client_hint_mapping
            .iter()
            .find(|(_, aliases)| {
                aliases
                    .iter()
                    .any(|a| a.to_lowercase() == brand.to_lowercase())
            })
            .map_or(brand.as_str(), |(canonical, _)| canonical);
        for (code, browser) in t.browsers {
            if fuzzy_eq(brand, browser)
                || fuzzy_eq(&format!("{brand} Browser"), browser)
                || fuzzy_eq(brand, &format!("{browser} Browser"))
            {
                name = browser.to_string();
                short = code.to_string();
                version = brand_version.clone();
                break;
            }
        }
        if !name.is_empty() && name != "Chromium" && name != "Microsoft Edge" {
            break;
        }
    }
    if !hints.ua_full_version.is_empty() {
        version = hints.ua_full_version.clone();
    }
    Found {
        name,
        short,
        version: build_version(&version, &Captures::default(), trunc),
        ..Found::default()
    }
}
