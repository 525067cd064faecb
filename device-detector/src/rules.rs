//! Loading DeviceDetector's YAML regex files into typed rule lists.
//!
//! Owns the file layout under `regexes/` and the shape of each file; nothing here matches user
//! agents. Order is preserved everywhere (the first matching rule wins in DeviceDetector), which is
//! why mappings are read into [`Ordered`] lists rather than hash maps. Scalars are read as their
//! source text, so an unquoted `28` or `1.0` stays exactly what the file says.

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::LoadError;

/// A YAML mapping read in file order.
#[derive(Debug, Clone)]
pub(crate) struct Ordered<V>(pub(crate) Vec<(String, V)>);

impl<V> Default for Ordered<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OrderedVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for OrderedVisitor<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, V>()? {
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Ordered(Vec::new()))
            }
        }
        deserializer.deserialize_map(OrderedVisitor(PhantomData))
    }
}

/// `bots.yml`: one entry per bot.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BotRule {
    pub(crate) regex: String,
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) category: Option<String>,
    #[serde(default)]
    pub(crate) url: Option<String>,
    #[serde(default)]
    pub(crate) producer: Option<BotProducerRule>,
}

/// The `producer` block of a bot.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BotProducerRule {
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) url: Option<String>,
}

/// `oss.yml`: an OS with optional version sub-rules.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct OsRule {
    pub(crate) regex: String,
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) version: Option<String>,
    #[serde(default)]
    pub(crate) versions: Vec<OsVersionRule>,
}

/// One `versions:` entry of an OS rule.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct OsVersionRule {
    pub(crate) regex: String,
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) version: Option<String>,
}

/// A client rule (browsers, feed readers, libraries, media players, mobile apps, PIMs, engines).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ClientRule {
    pub(crate) regex: String,
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) version: Option<String>,
    #[serde(default)]
    pub(crate) engine: Option<EngineRule>,
}

/// The `engine:` block of a browser rule.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct EngineRule {
    #[serde(default)]
    pub(crate) default: Option<String>,
    #[serde(default)]
    pub(crate) versions: Ordered<String>,
}

/// A device brand rule (`device/*.yml`).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct DeviceRule {
    pub(crate) regex: String,
    #[serde(default)]
    pub(crate) device: Option<String>,
    #[serde(default)]
    pub(crate) model: Option<String>,
    #[serde(default)]
    pub(crate) models: Option<Vec<ModelRule>>,
}

/// One `models:` entry of a device rule.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ModelRule {
    pub(crate) regex: String,
    #[serde(default)]
    pub(crate) model: Option<String>,
    #[serde(default)]
    pub(crate) brand: Option<String>,
    #[serde(default)]
    pub(crate) device: Option<String>,
}

/// Every regex file DeviceDetector reads, parsed.
#[derive(Debug)]
pub(crate) struct RuleFiles {
    pub(crate) bots: Vec<BotRule>,
    pub(crate) oss: Vec<OsRule>,
    pub(crate) browsers: Vec<ClientRule>,
    pub(crate) engines: Vec<ClientRule>,
    pub(crate) feed_readers: Vec<ClientRule>,
    pub(crate) mobile_apps: Vec<ClientRule>,
    pub(crate) media_players: Vec<ClientRule>,
    pub(crate) pims: Vec<ClientRule>,
    pub(crate) libraries: Vec<ClientRule>,
    pub(crate) app_hints: Ordered<String>,
    pub(crate) browser_hints: Ordered<String>,
    pub(crate) televisions: Ordered<DeviceRule>,
    pub(crate) shell_tvs: Ordered<DeviceRule>,
    pub(crate) notebooks: Ordered<DeviceRule>,
    pub(crate) consoles: Ordered<DeviceRule>,
    pub(crate) car_browsers: Ordered<DeviceRule>,
    pub(crate) cameras: Ordered<DeviceRule>,
    pub(crate) portable_media_players: Ordered<DeviceRule>,
    pub(crate) mobiles: Ordered<DeviceRule>,
    pub(crate) vendor_fragments: Ordered<Vec<String>>,
}

impl RuleFiles {
    /// Reads every file under `dir` (a DeviceDetector `regexes/` folder).
    pub(crate) fn load(dir: &Path) -> Result<Self, LoadError> {
        if !dir.is_dir() {
            return Err(LoadError::NotADirectory(dir.to_path_buf()));
        }
        Ok(Self {
            bots: read(dir, "bots.yml")?,
            oss: read(dir, "oss.yml")?,
            browsers: read(dir, "client/browsers.yml")?,
            engines: read(dir, "client/browser_engine.yml")?,
            feed_readers: read(dir, "client/feed_readers.yml")?,
            mobile_apps: read(dir, "client/mobile_apps.yml")?,
            media_players: read(dir, "client/mediaplayers.yml")?,
            pims: read(dir, "client/pim.yml")?,
            libraries: read(dir, "client/libraries.yml")?,
            app_hints: read(dir, "client/hints/apps.yml")?,
            browser_hints: read(dir, "client/hints/browsers.yml")?,
            televisions: read(dir, "device/televisions.yml")?,
            shell_tvs: read(dir, "device/shell_tv.yml")?,
            notebooks: read(dir, "device/notebooks.yml")?,
            consoles: read(dir, "device/consoles.yml")?,
            car_browsers: read(dir, "device/car_browsers.yml")?,
            cameras: read(dir, "device/cameras.yml")?,
            portable_media_players: read(dir, "device/portable_media_player.yml")?,
            mobiles: read(dir, "device/mobiles.yml")?,
            vendor_fragments: read(dir, "vendorfragments.yml")?,
        })
    }
}

fn read<T: DeserializeOwned>(dir: &Path, file: &str) -> Result<T, LoadError> {
    let path: PathBuf = dir.join(file);
    let text = std::fs::read_to_string(&path).map_err(|source| LoadError::Read {
        path: path.clone(),
        source,
    })?;
    serde_yaml::from_str(&text).map_err(|source| LoadError::Yaml { path, source })
}
