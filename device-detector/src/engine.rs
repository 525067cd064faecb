//! The detection algorithm of `DeviceDetector::parse()`: bot first, then OS, client and device,
//! and the heuristics DeviceDetector applies after the device regexes (Apple brand clean-up,
//! Android version and `Chrome … Mobile` → smartphone/tablet, Windows touch → tablet, TV markers,
//! desktop fallback, …). Holds every compiled parser; never panics on any input.

use crate::browser::BrowserParser;
use crate::client::{hint_table, BotParser, ClientParser};
use crate::detection::{ClientInfo, ClientType, Detection, DeviceType, OsInfo};
use crate::device::{DeviceCommon, DeviceKind, DeviceParser, VendorFragments};
use crate::hints::ClientHints;
use crate::os::OsParser;
use crate::pattern::{version_compare, Pattern, VersionTruncation};
use crate::rules::RuleFiles;
use crate::tables::{AlgorithmVersion, Tables};

/// The `DeviceDetector::matchUserAgent` checks the heuristics use, compiled once.
#[derive(Debug)]
struct Heuristics {
    touch: Pattern,
    android_tablet: Pattern,
    android_mobile: Pattern,
    android_vr: Pattern,
    desktop: Pattern,
    chrome: Pattern,
    mobile_word: Pattern,
    pad_apad: Pattern,
    opera_tablet: Pattern,
    puffin_desktop: Pattern,
    puffin_smartphone: Pattern,
    puffin_tablet: Pattern,
    opera_tv: Pattern,
    android_tv: Pattern,
    android_tv_6_3: Pattern,
    smart_tv: Pattern,
    tv_paren: Pattern,
}

impl Heuristics {
    fn new() -> Self {
        let p = Pattern::detector;
        Self {
            touch: p("Touch"),
            android_tablet: p(r"Android( [\.0-9]+)?; Tablet;|Tablet(?! PC)|.*\-tablet$"),
            android_mobile: p(r"Android( [\.0-9]+)?; Mobile;|.*\-mobile$"),
            android_vr: p(r"Android( [\.0-9]+)?; Mobile VR;| VR "),
            desktop: p(r"Desktop(?: (x(?:32|64)|WOW64))?;"),
            chrome: p(r"Chrome/[\.0-9]*"),
            mobile_word: p(r"(?:Mobile|eliboM)"),
            pad_apad: p("Pad/APad"),
            opera_tablet: p("Opera Tablet"),
            puffin_desktop: p(r"Puffin/(?:\d+[.\d]+)[LMW]D"),
            puffin_smartphone: p(r"Puffin/(?:\d+[.\d]+)[AIFLW]P"),
            puffin_tablet: p(r"Puffin/(?:\d+[.\d]+)[AILW]T"),
            opera_tv: p(r"Opera TV Store| OMI/"),
            android_tv: p(r"Andr0id|(?:Android(?: UHD)?|Google) TV|\(lite\) TV|BRAVIA| TV$"),
            android_tv_6_3: p(r"Andr0id|(?:Android(?: UHD)?|Google) TV|\(lite\) TV|BRAVIA"),
            smart_tv: p(r"SmartTV|Tizen.+ TV .+$"),
            tv_paren: p(r"\(TV;"),
        }
    }
}

/// Browser names DeviceDetector always reports as TVs.
const TV_CLIENTS: [&str; 13] = [
    "Kylo",
    "Espial TV Browser",
    "LUJO TV Browser",
    "LogicUI TV Browser",
    "Open TV Browser",
    "Seraphic Sraf",
    "Opera Devices",
    "Crow Browser",
    "Vewd Browser",
    "TiviMate",
    "Quick Search TV",
    "QJY TV Browser",
    "TV Bro",
];

const APPLE_OS_NAMES: [&str; 5] = ["iPadOS", "tvOS", "watchOS", "iOS", "Mac"];

/// All compiled parsers.
#[derive(Debug)]
pub(crate) struct Engine {
    t: &'static Tables,
    trunc: VersionTruncation,
    bot: BotParser,
    os: OsParser,
    clients_before_browser: Vec<ClientParser>,
    browser: BrowserParser,
    library: ClientParser,
    devices: Vec<DeviceParser>,
    device_common: DeviceCommon,
    vendor: VendorFragments,
    heur: Heuristics,
    has_letter: Pattern,
}

impl Engine {
    pub(crate) fn new(
        files: &RuleFiles,
        trunc: VersionTruncation,
        version: AlgorithmVersion,
    ) -> Self {
        let t = version.tables();
        let app_hints = hint_table(&files.app_hints);
        let clients_before_browser = vec![
            ClientParser::new(
                ClientType::FeedReader,
                "client/feed_readers.yml",
                &files.feed_readers,
                None,
            ),
            ClientParser::new(
                ClientType::MobileApp,
                "client/mobile_apps.yml",
                &files.mobile_apps,
                Some(app_hints),
            ),
            ClientParser::new(
                ClientType::MediaPlayer,
                "client/mediaplayers.yml",
                &files.media_players,
                None,
            ),
            ClientParser::new(ClientType::Pim, "client/pim.yml", &files.pims, None),
        ];
        let devices = vec![
            DeviceParser::new(
                DeviceKind::HbbTv,
                "device/televisions.yml",
                &files.televisions,
            ),
            DeviceParser::new(DeviceKind::ShellTv, "device/shell_tv.yml", &files.shell_tvs),
            DeviceParser::new(
                DeviceKind::Notebook,
                "device/notebooks.yml",
                &files.notebooks,
            ),
            DeviceParser::new(DeviceKind::Gated, "device/consoles.yml", &files.consoles),
            DeviceParser::new(
                DeviceKind::Gated,
                "device/car_browsers.yml",
                &files.car_browsers,
            ),
            DeviceParser::new(DeviceKind::Gated, "device/cameras.yml", &files.cameras),
            DeviceParser::new(
                DeviceKind::Gated,
                "device/portable_media_player.yml",
                &files.portable_media_players,
            ),
            DeviceParser::new(DeviceKind::Mobile, "device/mobiles.yml", &files.mobiles),
        ];
        Self {
            t,
            trunc,
            bot: BotParser::new(&files.bots),
            os: OsParser::new(t, &files.oss),
            clients_before_browser,
            browser: BrowserParser::new(
                t,
                &files.browsers,
                &files.engines,
                hint_table(&files.browser_hints),
            ),
            library: ClientParser::new(
                ClientType::Library,
                "client/libraries.yml",
                &files.libraries,
                None,
            ),
            devices,
            device_common: DeviceCommon::new(t),
            vendor: VendorFragments::new(&files.vendor_fragments),
            heur: Heuristics::new(),
            has_letter: Pattern::raw("([a-z])".into(), true),
        }
    }

    /// Compiles every pattern and lists the ones that fail.
    pub(crate) fn check(&self) -> Vec<String> {
        let mut errors = self.bot.check();
        errors.extend(self.os.check());
        for c in &self.clients_before_browser {
            errors.extend(c.check());
        }
        errors.extend(self.browser.check());
        errors.extend(self.library.check());
        for d in &self.devices {
            errors.extend(d.check());
        }
        errors.extend(self.vendor.check());
        errors
    }

    pub(crate) fn detect(&self, ua: &str, hints: &ClientHints) -> Detection {
        let mut det = Detection {
            version: self.t.version,
            ..Detection::default()
        };
        if (ua.is_empty() || !self.has_letter.is_match(ua)) && hints.is_empty() {
            return det;
        }
        det.bot = self.bot.parse(ua);
        if det.bot.is_some() {
            return det;
        }
        det.os = self.os.parse(ua, hints, self.trunc);
        det.client = self.parse_client(ua, hints);
        self.parse_device(ua, hints, &mut det);
        det.is_mobile = self.is_mobile(&det, hints);
        det
    }

    pub(crate) fn parse_os(&self, ua: &str, hints: &ClientHints) -> Option<OsInfo> {
        self.os.parse(ua, hints, self.trunc)
    }

    /// One client parser on its own (per-parser fixtures).
    pub(crate) fn parse_client_as(
        &self,
        client_type: ClientType,
        ua: &str,
        hints: &ClientHints,
    ) -> Option<ClientInfo> {
        match client_type {
            ClientType::Browser => self.browser.parse(ua, hints, self.trunc),
            ClientType::Library => self.library.parse(ua, hints, self.trunc),
            other => self
                .clients_before_browser
                .iter()
                .find(|p| p.client_type() == other)
                .and_then(|p| p.parse(ua, hints, self.trunc)),
        }
    }

    /// One device parser on its own, by file name (per-parser fixtures).
    pub(crate) fn parse_device_file(
        &self,
        file: &str,
        ua: &str,
    ) -> Option<crate::device::DeviceResult> {
        self.devices
            .iter()
            .find(|p| p.file() == file)
            .and_then(|p| p.parse(&self.device_common, ua, &ClientHints::default()))
    }

    pub(crate) fn vendor_fragment(&self, ua: &str) -> Option<&str> {
        self.vendor.brand(ua)
    }

    fn parse_client(&self, ua: &str, hints: &ClientHints) -> Option<ClientInfo> {
        for parser in &self.clients_before_browser {
            if let Some(c) = parser.parse(ua, hints, self.trunc) {
                return Some(c);
            }
        }
        if let Some(c) = self.browser.parse(ua, hints, self.trunc) {
            return Some(c);
        }
        self.library.parse(ua, hints, self.trunc)
    }

    fn parse_device(&self, ua: &str, hints: &ClientHints, det: &mut Detection) {
        let h = &self.heur;
        let mut device: Option<DeviceType> = None;
        let mut brand = String::new();
        let mut model = String::new();
        for parser in &self.devices {
            if let Some(found) = parser.parse(&self.device_common, ua, hints) {
                device = found.device_type;
                brand = found.brand;
                model = found.model;
                break;
            }
        }
        if model.is_empty() {
            model = hints.model.clone();
        }
        if brand.is_empty() {
            brand = self.vendor.brand(ua).unwrap_or_default().to_string();
        }
        let os_name = os_attr(det.os.as_ref(), |o| &o.name);
        let os_family = det
            .os
            .as_ref()
            .map_or("UNK", |o| o.family.as_deref().unwrap_or("UNK"));
        let os_version = os_attr(det.os.as_ref(), |o| &o.version);
        let client_name = det.client.as_ref().map_or("UNK", |c| c.name.as_str());

        if brand == "Apple" && !APPLE_OS_NAMES.contains(&os_name) {
            device = None;
            brand.clear();
            model.clear();
        }
        if brand.is_empty() && APPLE_OS_NAMES.contains(&os_name) {
            brand = "Apple".into();
        }
        if device.is_none() && h.android_vr.is_match(ua) {
            device = Some(DeviceType::Wearable);
        }
        if device.is_none() && os_family == "Android" && h.chrome.is_match(ua) {
            device = Some(if h.mobile_word.is_match(ua) {
                DeviceType::Smartphone
            } else {
                DeviceType::Tablet
            });
        }
        if device == Some(DeviceType::Smartphone) && h.pad_apad.is_match(ua) {
            device = Some(DeviceType::Tablet);
        }
        if device.is_none() && (h.android_tablet.is_match(ua) || h.opera_tablet.is_match(ua)) {
            device = Some(DeviceType::Tablet);
        }
        if device.is_none() && h.android_mobile.is_match(ua) {
            device = Some(DeviceType::Smartphone);
        }
        if device.is_none() && os_name == "Android" && !os_version.is_empty() {
            if version_compare(os_version, "2.0") == -1 {
                device = Some(DeviceType::Smartphone);
            } else if version_compare(os_version, "3.0") >= 0
                && version_compare(os_version, "4.0") == -1
            {
                device = Some(DeviceType::Tablet);
            }
        }
        if device == Some(DeviceType::FeaturePhone) && os_family == "Android" {
            device = Some(DeviceType::Smartphone);
        }
        if os_name == "Java ME" && device.is_none() {
            device = Some(DeviceType::FeaturePhone);
        }
        if device.is_none()
            && (os_name == "Windows RT"
                || (os_name == "Windows" && version_compare(os_version, "8") >= 0))
            && h.touch.is_match(ua)
        {
            device = Some(DeviceType::Tablet);
        }
        let v6_4 = self.t.version == AlgorithmVersion::V6_4;
        if v6_4 && device.is_none() && h.puffin_desktop.is_match(ua) {
            device = Some(DeviceType::Desktop);
        }
        if v6_4 && device.is_none() && h.puffin_smartphone.is_match(ua) {
            device = Some(DeviceType::Smartphone);
        }
        if v6_4 && device.is_none() && h.puffin_tablet.is_match(ua) {
            device = Some(DeviceType::Tablet);
        }
        if h.opera_tv.is_match(ua) {
            device = Some(DeviceType::Tv);
        }
        let android_tv = if v6_4 {
            &h.android_tv
        } else {
            &h.android_tv_6_3
        };
        if android_tv.is_match(ua) {
            device = Some(DeviceType::Tv);
        }
        if device.is_none() && h.smart_tv.is_match(ua) {
            device = Some(DeviceType::Tv);
        }
        if TV_CLIENTS.contains(&client_name) {
            device = Some(DeviceType::Tv);
        }
        if device.is_none() && h.tv_paren.is_match(ua) {
            device = Some(DeviceType::Tv);
        }
        if device != Some(DeviceType::Desktop) && ua.contains("Desktop") && h.desktop.is_match(ua) {
            device = Some(DeviceType::Desktop);
        }
        if device.is_none() && det.is_desktop() {
            device = Some(DeviceType::Desktop);
        }
        det.device_type = device;
        det.brand = (!brand.is_empty()).then_some(brand);
        det.model = (!model.is_empty()).then_some(model);
    }

    /// `DeviceDetector::isMobile()`.
    fn is_mobile(&self, det: &Detection, hints: &ClientHints) -> bool {
        use DeviceType::*;
        if hints.mobile {
            return true;
        }
        match det.device_type {
            Some(FeaturePhone | Smartphone | Tablet | Phablet | Camera | PortableMediaPlayer) => {
                return true
            }
            Some(Tv | SmartDisplay | Console) => return false,
            _ => {}
        }
        if det.uses_mobile_browser() {
            return true;
        }
        let os_name = os_attr(det.os.as_ref(), |o| &o.name);
        if os_name.is_empty() || os_name == "UNK" {
            return false;
        }
        !det.is_bot() && !det.is_desktop()
    }
}

/// `getOsAttribute`: `UNK` when there is no OS.
fn os_attr<'a>(os: Option<&'a OsInfo>, f: impl Fn(&'a OsInfo) -> &'a String) -> &'a str {
    os.map_or("UNK", |o| f(o).as_str())
}
