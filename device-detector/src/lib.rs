//! A Rust engine that reproduces matomo/device-detector (6.4.1, as shipped with Matomo 5.2) from
//! its own YAML regex files, loaded at run time.
//!
//! ```no_run
//! use matomo_device_detector::{ClientHints, DeviceDetector};
//! let dd = DeviceDetector::from_dir("vendor/matomo/device-detector/regexes".as_ref()).unwrap();
//! // What Matomo stores for a visit: raw user agent and hints in, Matomo's sanitising applied.
//! let d = dd.detect_for_matomo("Mozilla/5.0 (Windows NT 10.0; Win64; x64) ...", &ClientHints::default());
//! let columns = d.matomo_columns(); // config_os = "WIN", …
//! # let _ = columns;
//! ```
//!
//! Layout: `rules` reads the YAML files; `pattern` gives PHP/PCRE semantics (prefixes,
//! `$1` substitution, version building, `version_compare`) with bounded match work; `scan`
//! is the first-match-wins rule scan with its prefilters (literal index, chunk DFAs built from
//! the superset patterns of `translate`); `os`, `client`,
//! `browser` and `device` are DeviceDetector's parsers; `engine` is `DeviceDetector::parse`
//! with its heuristics; `detection` is the result and Matomo's column mapping; `hints` reads
//! client hints; `matomo` is Matomo's input sanitising; `tables` holds the data
//! DeviceDetector keeps in PHP, per release. This file owns the public handle and its bounded
//! result cache.

#![deny(missing_docs)]

mod browser;
mod client;
mod detection;
mod device;
mod engine;
mod hints;
mod matomo;
mod os;
mod pattern;
mod rules;
mod scan;
mod tables;
mod translate;

use std::path::{Path, PathBuf};

pub use detection::{
    BotInfo, BotProducer, ClientInfo, ClientType, Detection, DeviceType, MatomoDeviceColumns,
    OsInfo,
};
pub use hints::{ClientHints, HintsError};
pub use matomo::sanitize_input_value;
pub use pattern::VersionTruncation;
pub use tables::AlgorithmVersion;

/// User agents are cut to this many bytes before detection. DeviceDetector 6.4.1 and Matomo
/// apply no limit; real user agents stay far below it (the longest fixture has ~400 bytes), and
/// the cap bounds the work a hostile one can cause.
pub const MAX_USER_AGENT_LEN: usize = 2048;

/// Why the regex files could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The path given is not a directory.
    #[error("device-detector regexes directory {0} does not exist or is not a directory")]
    NotADirectory(PathBuf),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not the YAML shape DeviceDetector uses.
    #[error("cannot parse {path}: {source}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The YAML error.
        source: serde_yaml::Error,
    },
    /// Some patterns are not valid PCRE (only reported by [`DeviceDetector::validate`]).
    #[error("{} invalid pattern(s), first: {}", .0.len(), .0.first().map(String::as_str).unwrap_or(""))]
    Patterns(Vec<String>),
}

/// Settings of a [`DeviceDetector`].
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How many version parts to keep. Matomo never changes DeviceDetector's default, `Minor`
    /// (`98.0.4758.87` is stored as `98.0`); DeviceDetector's fixtures are written with `None`.
    pub version_truncation: VersionTruncation,
    /// Maximum number of cached results (user agent + hints → detection); 0 disables the cache.
    pub cache_capacity: u64,
    /// Which DeviceDetector release to reproduce; must match the regex files' release
    /// (6.4 for Matomo 5.2+, 6.3 for Matomo 5.1).
    pub algorithm: AlgorithmVersion,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            version_truncation: VersionTruncation::Minor,
            cache_capacity: 50_000,
            algorithm: AlgorithmVersion::V6_4,
        }
    }
}

/// A compiled device detector. Cheap to share (`Send + Sync`); patterns are compiled on first use
/// and results are cached per user agent + hints in a bounded cache.
pub struct DeviceDetector {
    engine: engine::Engine,
    cache: Option<moka::sync::Cache<(String, ClientHints), Detection>>,
}

impl std::fmt::Debug for DeviceDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceDetector")
            .field("cached", &self.cache.as_ref().map(|c| c.entry_count()))
            .finish_non_exhaustive()
    }
}

impl DeviceDetector {
    /// Loads DeviceDetector's regex files from `regexes_dir` (a Matomo install's
    /// `vendor/matomo/device-detector/regexes`) with Matomo's settings ([`Options::default`]).
    pub fn from_dir(regexes_dir: &Path) -> Result<Self, LoadError> {
        Self::with_options(regexes_dir, Options::default())
    }

    /// Like [`DeviceDetector::from_dir`], with explicit [`Options`].
    pub fn with_options(regexes_dir: &Path, options: Options) -> Result<Self, LoadError> {
        let files = rules::RuleFiles::load(regexes_dir)?;
        let engine = engine::Engine::new(&files, options.version_truncation, options.algorithm);
        let cache =
            (options.cache_capacity > 0).then(|| moka::sync::Cache::new(options.cache_capacity));
        Ok(Self { engine, cache })
    }

    /// Compiles every pattern now (normally compiled on first use) and reports those PCRE
    /// rejects. Useful at start-up to fail early and to warm the detector.
    pub fn validate(&self) -> Result<(), LoadError> {
        let errors = self.engine.check();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(LoadError::Patterns(errors))
        }
    }

    /// Detects bot / OS / client / device, answering from the bounded cache when it can.
    pub fn detect(&self, user_agent: &str, hints: &ClientHints) -> Detection {
        let ua = cap_user_agent(user_agent);
        let Some(cache) = &self.cache else {
            return self.engine.detect(ua, hints);
        };
        let key = (ua.to_string(), hints.clone());
        if let Some(hit) = cache.get(&key) {
            return hit;
        }
        let detection = self.engine.detect(ua, hints);
        cache.insert(key, detection.clone());
        detection
    }

    /// Detects on the values as Matomo passes them to DeviceDetector: `raw_user_agent` (the
    /// `ua` parameter or `User-Agent` header) and `raw_hints` go through Matomo's input
    /// sanitising first ([`sanitize_input_value`]). This is what the tracker stores.
    pub fn detect_for_matomo(&self, raw_user_agent: &str, raw_hints: &ClientHints) -> Detection {
        let ua = sanitize_input_value(raw_user_agent);
        if raw_hints.is_empty() {
            return self.detect(&ua, raw_hints);
        }
        self.detect(&ua, &raw_hints.sanitized_for_matomo())
    }

    /// Detects without touching the cache.
    pub fn detect_uncached(&self, user_agent: &str, hints: &ClientHints) -> Detection {
        self.engine.detect(cap_user_agent(user_agent), hints)
    }
}

/// Single-parser entry points, for DeviceDetector's per-parser fixtures (conformance tests).
#[doc(hidden)]
impl DeviceDetector {
    pub fn parse_os_only(&self, user_agent: &str, hints: &ClientHints) -> Option<OsInfo> {
        self.engine.parse_os(cap_user_agent(user_agent), hints)
    }

    pub fn parse_client_only(
        &self,
        client_type: ClientType,
        user_agent: &str,
        hints: &ClientHints,
    ) -> Option<ClientInfo> {
        self.engine
            .parse_client_as(client_type, cap_user_agent(user_agent), hints)
    }

    /// `file` is a device regex file such as `device/cameras.yml`; returns type, brand, model.
    pub fn parse_device_only(
        &self,
        file: &str,
        user_agent: &str,
    ) -> Option<(Option<DeviceType>, String, String)> {
        self.engine
            .parse_device_file(file, cap_user_agent(user_agent))
            .map(|r| (r.device_type, r.brand, r.model))
    }

    pub fn vendor_fragment_only(&self, user_agent: &str) -> Option<String> {
        self.engine
            .vendor_fragment(cap_user_agent(user_agent))
            .map(str::to_string)
    }
}

fn cap_user_agent(ua: &str) -> &str {
    if ua.len() <= MAX_USER_AGENT_LEN {
        return ua;
    }
    let mut end = MAX_USER_AGENT_LEN;
    while !ua.is_char_boundary(end) {
        end -= 1;
    }
    &ua[..end]
}
