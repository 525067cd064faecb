//! Operating system detection (`Parser/OperatingSystem.php`): user agent rules from `oss.yml`,
//! client hints (`Sec-CH-UA-Platform[-Version]`), how the two are merged, the platform (CPU
//! architecture) and the OS family tables.

use crate::detection::OsInfo;
use crate::hints::ClientHints;
use crate::pattern::{
    build_by_match, build_version, php_int, Captures, Pattern, VersionTruncation,
};
use crate::rules::OsRule;
use crate::scan::Scanner;
use crate::tables::Tables;

/// `OperatingSystem::getShortOsData`: canonical name and short code (`UNK` when unknown).
fn short_os_data(t: &Tables, name: &str) -> (String, String) {
    t.operating_systems
        .iter()
        .find(|(_, n)| n.to_lowercase() == name.to_lowercase())
        .map_or((name.to_string(), "UNK".to_string()), |(code, n)| {
            (n.to_string(), code.to_string())
        })
}

pub(crate) fn fuzzy_eq(a: &str, b: &str) -> bool {
    a.to_lowercase().replace(' ', "") == b.to_lowercase().replace(' ', "")
}

fn map_version(table: &[(&str, &str)], version: &str) -> String {
    let major = php_int(version).to_string();
    table
        .iter()
        .find(|(k, _)| *k == version)
        .or_else(|| table.iter().find(|(k, _)| *k == major))
        .map_or(String::new(), |(_, v)| v.to_string())
}

#[derive(Debug)]
struct VersionRule {
    pattern: Pattern,
    name: Option<String>,
    version: Option<String>,
}

#[derive(Debug)]
struct Rule {
    name: String,
    version: Option<String>,
    versions: Vec<VersionRule>,
}

#[derive(Debug, Default)]
struct Found {
    name: String,
    short: String,
    version: String,
}

/// The OS parser.
#[derive(Debug)]
pub(crate) struct OsParser {
    t: &'static Tables,
    scanner: Scanner,
    rules: Vec<Rule>,
    platforms: Vec<(Pattern, &'static str)>,
}

impl OsParser {
    pub(crate) fn new(t: &'static Tables, rules: &[OsRule]) -> Self {
        let scanner = Scanner::new(rules.iter().map(|r| r.regex.as_str()));
        let rules = rules
            .iter()
            .map(|r| Rule {
                name: r.name.clone(),
                version: r.version.clone(),
                versions: r
                    .versions
                    .iter()
                    .map(|v| VersionRule {
                        pattern: Pattern::parser(&v.regex),
                        name: v.name.clone(),
                        version: v.version.clone(),
                    })
                    .collect(),
            })
            .collect();
        let platforms = [
            (
                r"arm[ _;)ev]|.*arm$|.*arm64|aarch64|Apple ?TV|Watch ?OS|Watch1,[12]",
                "ARM",
            ),
            ("loongarch64", "LoongArch64"),
            ("mips", "MIPS"),
            ("sh4", "SuperH"),
            ("sparc64", "SPARC64"),
            (
                r"64-?bit|WOW64|(?:Intel)?x64|WINDOWS_64|win64|amd64|x86_?64",
                "x64",
            ),
            (r".*32bit|.*win32|(?:i[0-9]|x)86|i86pc", "x86"),
        ]
        .into_iter()
        .map(|(re, name)| (Pattern::parser(re), name))
        .collect();
        Self {
            t,
            scanner,
            rules,
            platforms,
        }
    }

    pub(crate) fn check(&self) -> Vec<String> {
        let mut errors: Vec<String> = self
            .scanner
            .check()
            .into_iter()
            .map(|(i, e)| format!("oss.yml rule {i}: {e}"))
            .collect();
        for (i, rule) in self.rules.iter().enumerate() {
            for v in &rule.versions {
                if let Err(e) = v.pattern.check() {
                    errors.push(format!("oss.yml rule {i} versions: {e}"));
                }
            }
        }
        errors
    }

    pub(crate) fn parse(
        &self,
        ua: &str,
        hints: &ClientHints,
        trunc: VersionTruncation,
    ) -> Option<OsInfo> {
        let t = self.t;
        let from_hints = from_client_hints(t, hints, trunc);
        let from_ua = self.parse_user_agent(ua, trunc);
        let (mut name, mut short, mut version);
        if !from_hints.name.is_empty() {
            name = from_hints.name.clone();
            version = from_hints.version.clone();
            if version.is_empty() && t.os_family(&name) == t.os_family(&from_ua.name) {
                version = from_ua.version.clone();
            }
            if t.os_family(&from_ua.name) == Some(name.as_str()) && from_ua.name != name {
                name = from_ua.name.clone();
                if name == "HarmonyOS" {
                    version = String::new();
                }
                if name == "PICO OS" {
                    version = from_ua.version.clone();
                }
                if from_ua.name == "Fire OS" {
                    version = map_version(t.fire_os_versions, &version);
                }
            }
            short = from_hints.short.clone();
            if name == "GNU/Linux"
                && from_ua.name == "Chrome OS"
                && from_hints.version == from_ua.version
            {
                name = from_ua.name.clone();
                short = from_ua.short.clone();
            }
        } else if !from_ua.name.is_empty() {
            name = from_ua.name;
            version = from_ua.version;
            short = from_ua.short;
        } else {
            return None;
        }
        let platform = self.platform(ua, hints);
        let mut family = t.os_family(&short).map(str::to_string);
        const ANDROID_APPS: [&str; 4] = [
            "com.hisense.odinbrowser",
            "com.seraphic.openinet.pre",
            "com.appssppa.idesktoppcbrowser",
            "every.browser.inc",
        ];
        if ANDROID_APPS.contains(&hints.app.as_str()) && name != "Android" {
            name = "Android".into();
            family = Some("Android".into());
            short = "ADR".into();
            version = String::new();
        }
        if hints.app == "org.lineageos.jelly" && name != "Lineage OS" {
            name = "Lineage OS".into();
            family = Some("Android".into());
            short = "LEN".into();
            version = map_version(t.lineage_os_versions, &version);
        }
        if hints.app == "org.mozilla.tv.firefox" && name != "Fire OS" {
            name = "Fire OS".into();
            family = Some("Android".into());
            short = "FIR".into();
            version = map_version(t.fire_os_versions, &version);
        }
        if let Some(code) = t.os_code(&name) {
            short = code.to_string();
        }
        Some(OsInfo {
            name,
            short_name: short,
            version,
            platform: platform.to_string(),
            family,
        })
    }

    fn parse_user_agent(&self, ua: &str, trunc: VersionTruncation) -> Found {
        let Some((idx, caps)) = self.scanner.first(ua) else {
            return Found::default();
        };
        let rule = &self.rules[idx];
        let (mut name, mut short) = short_os_data(self.t, &build_by_match(&rule.name, &caps));
        let mut version = rule
            .version
            .as_deref()
            .map_or(String::new(), |v| build_version(v, &caps, trunc));
        for v in &rule.versions {
            let Some(vcaps) = v.pattern.captures(ua) else {
                continue;
            };
            if let Some(n) = &v.name {
                (name, short) = short_os_data(self.t, &build_by_match(n, &vcaps));
            }
            if let Some(ver) = &v.version {
                version = build_version(ver, &vcaps, trunc);
            }
            break;
        }
        Found {
            name,
            short,
            version,
        }
    }

    fn platform(&self, ua: &str, hints: &ClientHints) -> &'static str {
        if !hints.architecture.is_empty() {
            let arch = hints.architecture.to_lowercase();
            if arch.contains("arm") {
                return "ARM";
            }
            if arch.contains("loongarch64") {
                return "LoongArch64";
            }
            if arch.contains("mips") {
                return "MIPS";
            }
            if arch.contains("sh4") {
                return "SuperH";
            }
            if arch.contains("sparc64") {
                return "SPARC64";
            }
            if arch.contains("x64") || (arch.contains("x86") && hints.bitness == "64") {
                return "x64";
            }
            if arch.contains("x86") {
                return "x86";
            }
        }
        self.platforms
            .iter()
            .find(|(p, _)| p.is_match(ua))
            .map_or("", |(_, name)| name)
    }
}

fn from_client_hints(t: &Tables, hints: &ClientHints, trunc: VersionTruncation) -> Found {
    if hints.platform.is_empty() {
        return Found::default();
    }
    let hint_name = t
        .os_client_hint_mapping
        .iter()
        .find(|(_, aliases)| {
            aliases
                .iter()
                .any(|a| a.to_lowercase() == hints.platform.to_lowercase())
        })
        .map_or(hints.platform.as_str(), |(canonical, _)| canonical);
    let (mut name, mut short) = (String::new(), String::new());
    if let Some((code, n)) = t
        .operating_systems
        .iter()
        .find(|(_, n)| fuzzy_eq(hint_name, n))
    {
        name = n.to_string();
        short = code.to_string();
    }
    let mut version = hints.platform_version.clone();
    if name == "Windows" {
        let major = php_int(&version);
        if major > 0 && major < 11 {
            version = "10".into();
        } else if major > 10 {
            version = "11".into();
        }
    }
    if php_int(&version) == 0 {
        version = String::new();
    }
    Found {
        name,
        short,
        version: build_version(&version, &Captures::default(), trunc),
    }
}
