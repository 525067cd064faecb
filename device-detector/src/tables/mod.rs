//! Data tables DeviceDetector keeps in its PHP classes rather than in the YAML files (short codes,
//! families, brand codes), one set per supported DeviceDetector release. Transcribed facts, not
//! logic; [`Tables`] gathers one release's set behind lookups that mirror the PHP helpers.

mod v6_3;
mod v6_4;

/// Which DeviceDetector release's algorithm and tables to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AlgorithmVersion {
    /// DeviceDetector 6.4.x, shipped with Matomo 5.2 and later.
    #[default]
    V6_4,
    /// DeviceDetector 6.3.x, shipped with Matomo 5.1 (use with that release's regexes).
    V6_3,
}

/// One release's tables.
#[derive(Debug)]
pub(crate) struct Tables {
    pub(crate) version: AlgorithmVersion,
    pub(crate) operating_systems: &'static [(&'static str, &'static str)],
    pub(crate) os_families: &'static [(&'static str, &'static [&'static str])],
    pub(crate) os_client_hint_mapping: &'static [(&'static str, &'static [&'static str])],
    pub(crate) desktop_os_families: &'static [&'static str],
    pub(crate) fire_os_versions: &'static [(&'static str, &'static str)],
    pub(crate) lineage_os_versions: &'static [(&'static str, &'static str)],
    pub(crate) browsers: &'static [(&'static str, &'static str)],
    pub(crate) browser_families: &'static [(&'static str, &'static [&'static str])],
    pub(crate) mobile_only_browsers: &'static [&'static str],
    pub(crate) browser_client_hint_mapping: &'static [(&'static str, &'static [&'static str])],
    pub(crate) engines: &'static [&'static str],
    pub(crate) device_brands: &'static [(&'static str, &'static str)],
}

macro_rules! tables {
    ($name:ident, $m:ident, $version:expr) => {
        static $name: Tables = Tables {
            version: $version,
            operating_systems: $m::os::OPERATING_SYSTEMS,
            os_families: $m::os::OS_FAMILIES,
            os_client_hint_mapping: $m::os::OS_CLIENT_HINT_MAPPING,
            desktop_os_families: $m::os::DESKTOP_OS_FAMILIES,
            fire_os_versions: $m::os::FIRE_OS_VERSIONS,
            lineage_os_versions: $m::os::LINEAGE_OS_VERSIONS,
            browsers: $m::browsers::BROWSERS,
            browser_families: $m::browsers::BROWSER_FAMILIES,
            mobile_only_browsers: $m::browsers::MOBILE_ONLY_BROWSERS,
            browser_client_hint_mapping: $m::browsers::BROWSER_CLIENT_HINT_MAPPING,
            engines: $m::browsers::ENGINES,
            device_brands: $m::brands::DEVICE_BRANDS,
        };
    };
}

tables!(TABLES_6_4, v6_4, AlgorithmVersion::V6_4);
tables!(TABLES_6_3, v6_3, AlgorithmVersion::V6_3);

impl AlgorithmVersion {
    pub(crate) fn tables(self) -> &'static Tables {
        match self {
            Self::V6_4 => &TABLES_6_4,
            Self::V6_3 => &TABLES_6_3,
        }
    }
}

fn family_of(
    names: &[(&str, &str)],
    families: &'static [(&'static str, &'static [&'static str])],
    label: &str,
) -> Option<&'static str> {
    // PHP: `in_array($label, $names)` → `array_search` (first code with that name), then the
    // first family listing the code.
    let code = names
        .iter()
        .find(|(_, n)| *n == label)
        .map_or(label, |(code, _)| code);
    families
        .iter()
        .find(|(_, codes)| codes.contains(&code))
        .map(|(family, _)| *family)
}

impl Tables {
    /// `OperatingSystem::getOsFamily` — accepts a name or a short code.
    pub(crate) fn os_family(&self, label: &str) -> Option<&'static str> {
        family_of(self.operating_systems, self.os_families, label)
    }

    /// `OperatingSystem::isDesktopOs`.
    pub(crate) fn is_desktop_os(&self, name: &str) -> bool {
        self.os_family(name)
            .is_some_and(|f| self.desktop_os_families.contains(&f))
    }

    /// Short code of an OS named exactly `name` (`array_search`).
    pub(crate) fn os_code(&self, name: &str) -> Option<&'static str> {
        self.operating_systems
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(code, _)| *code)
    }

    /// `Browser::getBrowserShortName` (case-insensitive name → first short code).
    pub(crate) fn browser_short_name(&self, name: &str) -> Option<&'static str> {
        let lower = name.to_lowercase();
        self.browsers
            .iter()
            .find(|(_, n)| n.to_lowercase() == lower)
            .map(|(code, _)| *code)
    }

    /// `Browser::getBrowserFamily` — accepts a name or a short code.
    pub(crate) fn browser_family(&self, label: &str) -> Option<&'static str> {
        family_of(self.browsers, self.browser_families, label)
    }

    /// `Browser::isMobileOnlyBrowser`.
    pub(crate) fn is_mobile_only_browser(&self, name: &str) -> bool {
        self.mobile_only_browsers.contains(&name)
            || self
                .browsers
                .iter()
                .find(|(_, n)| *n == name)
                .is_some_and(|(code, _)| self.mobile_only_browsers.contains(code))
    }

    /// `AbstractDeviceParser::getShortCode`: first code of a brand name, empty when unknown.
    pub(crate) fn brand_code(&self, brand: &str) -> &'static str {
        self.device_brands
            .iter()
            .find(|(_, n)| *n == brand)
            .map_or("", |(code, _)| code)
    }

    /// Whether `brand` is in `$deviceBrands`.
    pub(crate) fn is_known_brand(&self, brand: &str) -> bool {
        self.device_brands.iter().any(|(_, n)| *n == brand)
    }
}
