//! The result of one detection, and its mapping to Matomo's `log_visit` columns.
//!
//! [`Detection`] carries what DeviceDetector's `getInfoFromUserAgent` reports (the fixtures check
//! it); [`Detection::matomo_columns`] turns it into exactly what Matomo's DevicesDetection column
//! classes store (`plugins/DevicesDetection/Columns/*.php`), including their `UNK`/empty defaults
//! and truncations.

use crate::tables::AlgorithmVersion;

/// A detected bot (`bots.yml` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotInfo {
    /// Bot name.
    pub name: String,
    /// Category (`Search bot`, `Crawler`, …) when the regex file gives one.
    pub category: Option<String>,
    /// Information URL when given.
    pub url: Option<String>,
    /// Producer when given.
    pub producer: Option<BotProducer>,
}

/// Who runs a bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotProducer {
    /// Producer name when given.
    pub name: Option<String>,
    /// Producer URL when given.
    pub url: Option<String>,
}

/// A detected operating system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsInfo {
    /// Full name (`Windows`, `Android`, `GNU/Linux`).
    pub name: String,
    /// Short code as Matomo stores it in `config_os` (`WIN`, `AND`, `LIN`).
    pub short_name: String,
    /// Version, possibly empty.
    pub version: String,
    /// `ARM`, `x64`, `x86`, `MIPS`, `SuperH`, `SPARC64`, `LoongArch64` or empty.
    pub platform: String,
    /// OS family (`Android`, `Windows`, `GNU/Linux`), `None` when the OS has none.
    pub family: Option<String>,
}

/// Kind of client software.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientType {
    /// A web browser.
    Browser,
    /// A feed reader.
    FeedReader,
    /// A mobile app.
    MobileApp,
    /// A media player.
    MediaPlayer,
    /// A personal information manager (mail client, …).
    Pim,
    /// An HTTP library or tool.
    Library,
}

impl ClientType {
    /// DeviceDetector's name for the type (`browser`, `feed reader`, `mobile app`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Browser => "browser",
            Self::FeedReader => "feed reader",
            Self::MobileApp => "mobile app",
            Self::MediaPlayer => "mediaplayer",
            Self::Pim => "pim",
            Self::Library => "library",
        }
    }

    /// Matomo's `config_client_type` value (`getClientTypeMapping()`).
    pub fn matomo_id(self) -> u8 {
        match self {
            Self::Browser => 1,
            Self::Library => 2,
            Self::FeedReader => 3,
            Self::MediaPlayer => 4,
            Self::MobileApp => 5,
            Self::Pim => 6,
        }
    }
}

/// A detected client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// What kind of client.
    pub client_type: ClientType,
    /// Name (`Chrome Mobile`, `Facebook`, `curl`).
    pub name: String,
    /// Browser short code (`CM`, `FF`); `None` for other client types.
    pub short_name: Option<String>,
    /// Version, possibly empty.
    pub version: String,
    /// Browser engine (`Blink`, `Gecko`, …), empty when unknown or not a browser.
    pub engine: String,
    /// Engine version, possibly empty.
    pub engine_version: String,
    /// Browser family (`Chrome`, `Firefox`), `None` when unknown or not a browser.
    pub family: Option<String>,
}

/// Device types with Matomo's numeric ids (`config_device_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum DeviceType {
    Desktop,
    Smartphone,
    Tablet,
    FeaturePhone,
    Console,
    Tv,
    CarBrowser,
    SmartDisplay,
    Camera,
    PortableMediaPlayer,
    Phablet,
    SmartSpeaker,
    Wearable,
    Peripheral,
}

impl DeviceType {
    const ALL: [(DeviceType, &'static str); 14] = [
        (Self::Desktop, "desktop"),
        (Self::Smartphone, "smartphone"),
        (Self::Tablet, "tablet"),
        (Self::FeaturePhone, "feature phone"),
        (Self::Console, "console"),
        (Self::Tv, "tv"),
        (Self::CarBrowser, "car browser"),
        (Self::SmartDisplay, "smart display"),
        (Self::Camera, "camera"),
        (Self::PortableMediaPlayer, "portable media player"),
        (Self::Phablet, "phablet"),
        (Self::SmartSpeaker, "smart speaker"),
        (Self::Wearable, "wearable"),
        (Self::Peripheral, "peripheral"),
    ];

    /// Matomo's and DeviceDetector's numeric id (0 desktop … 13 peripheral).
    pub fn id(self) -> u8 {
        Self::ALL.iter().position(|(t, _)| *t == self).unwrap_or(0) as u8
    }

    /// DeviceDetector's name (`smartphone`, `feature phone`, …).
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(t, _)| *t == self)
            .map_or("", |(_, n)| n)
    }

    /// The type with DeviceDetector's name `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(t, _)| *t)
    }

    /// The type with numeric id `id`.
    pub fn from_id(id: u8) -> Option<Self> {
        Self::ALL.get(usize::from(id)).map(|(t, _)| *t)
    }
}

/// Everything detected for one user agent (+ client hints).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detection {
    /// Set when the user agent is a bot; nothing else is detected then.
    pub bot: Option<BotInfo>,
    /// Operating system, when detected.
    pub os: Option<OsInfo>,
    /// Client, when detected.
    pub client: Option<ClientInfo>,
    /// Device type, when detected.
    pub device_type: Option<DeviceType>,
    /// Device brand name (`Samsung`, `Apple`), when detected.
    pub brand: Option<String>,
    /// Device model, when detected.
    pub model: Option<String>,
    /// DeviceDetector's `isMobile()` for this result (Matomo's `generic mobile` model uses it).
    pub is_mobile: bool,
    /// Which release's tables name the codes (brand short codes, OS families).
    pub(crate) version: AlgorithmVersion,
}

/// The device columns of a `log_visit` row, as Matomo writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatomoDeviceColumns {
    /// OS short code, `UNK` when unknown, `BOT` for bots.
    pub config_os: String,
    /// OS version; `UNK` when no OS was detected (Matomo reads a missing attribute as `UNK`).
    pub config_os_version: String,
    /// Browser short code, or the client's name for non-browsers, `UNK` when unknown.
    pub config_browser_name: String,
    /// Client version, at most 20 bytes.
    pub config_browser_version: String,
    /// Browser engine or empty.
    pub config_browser_engine: String,
    /// 1 browser, 2 library, 3 feed reader, 4 media player, 5 mobile app, 6 PIM.
    pub config_client_type: Option<u8>,
    /// Device type id.
    pub config_device_type: Option<u8>,
    /// Brand short code (`AP`, `SA`) or empty.
    pub config_device_brand: String,
    /// Model, else `generic <device type>`, else `generic mobile` (mobile), else empty.
    pub config_device_model: String,
}

const UNKNOWN: &str = "UNK";

impl Detection {
    /// Whether a bot was detected.
    pub fn is_bot(&self) -> bool {
        self.bot.is_some()
    }

    /// DeviceDetector's `isDesktop()`: a desktop OS family and no mobile-only browser.
    pub fn is_desktop(&self) -> bool {
        let os_name = self.os.as_ref().map_or("UNK", |o| o.name.as_str());
        if os_name.is_empty() || os_name == UNKNOWN || self.uses_mobile_browser() {
            return false;
        }
        self.version.tables().is_desktop_os(os_name)
    }

    /// DeviceDetector's `usesMobileBrowser()`.
    pub(crate) fn uses_mobile_browser(&self) -> bool {
        self.client.as_ref().is_some_and(|c| {
            c.client_type == ClientType::Browser
                && self.version.tables().is_mobile_only_browser(&c.name)
        })
    }

    /// The brand's short code, as `DeviceDetector::getBrand()` returns it.
    pub fn brand_short_code(&self) -> &'static str {
        let Some(brand) = self.brand.as_deref() else {
            return "";
        };
        self.version.tables().brand_code(brand)
    }

    /// The values Matomo's DevicesDetection dimensions store for this detection.
    pub fn matomo_columns(&self) -> MatomoDeviceColumns {
        let config_os = if self.is_bot() {
            "BOT".to_string()
        } else {
            self.os
                .as_ref()
                .map_or(UNKNOWN.to_string(), |os| os.short_name.clone())
        };
        let config_os_version = self
            .os
            .as_ref()
            .map_or(UNKNOWN.to_string(), |os| os.version.clone());
        let client = self.client.as_ref();
        let config_browser_name = match client {
            Some(c) => match c.short_name.as_deref() {
                Some(short) if !short.is_empty() => short.to_string(),
                _ if !c.name.is_empty() => c.name.clone(),
                _ => UNKNOWN.to_string(),
            },
            None => UNKNOWN.to_string(),
        };
        let config_browser_version = client.map_or(String::new(), |c| substr(&c.version, 20));
        let config_browser_engine = client.map_or(String::new(), |c| c.engine.clone());
        let config_client_type = client.map(|c| c.client_type.matomo_id());
        let config_device_model = match (self.model.as_deref(), self.device_type) {
            (Some(model), _) if !model.is_empty() => model.chars().take(100).collect(),
            (_, Some(t)) => format!("generic {}", t.name()),
            _ if self.is_mobile => "generic mobile".to_string(),
            _ => String::new(),
        };
        MatomoDeviceColumns {
            config_os,
            config_os_version,
            config_browser_name,
            config_browser_version,
            config_browser_engine,
            config_client_type,
            config_device_type: self.device_type.map(DeviceType::id),
            config_device_brand: self.brand_short_code().to_string(),
            config_device_model,
        }
    }
}

/// PHP `substr($s, 0, $n)` on bytes, kept at a character boundary.
fn substr(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
