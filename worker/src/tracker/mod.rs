//! The tracker core: turns decoded QueuedTracking entries into the `log_visit`,
//! `log_link_visit_action`, `log_action`, `log_conversion` and `log_conversion_item` rows PHP
//! Matomo 5 writes for the same hits.
//!
//! The engine owns locks, batches, transactions and progress markers; it calls
//! [`Tracker::process_batch`] with its transaction and a per-shard [`ShardCache`]. This module
//! never commits or rolls back.
//!
//! Layout: [`request`] reads one request as `core/Tracker/Request.php` does; [`actions`]
//! classifies it; [`log_action`] resolves action names for the whole batch; [`visit`] holds the
//! log_visit row; [`batch`] runs the hits of a batch in order against in-memory state and writes
//! everything with multi-row statements at the end; [`settings`] is Matomo's tracker cache;
//! [`dimensions`] computes custom dimension values (parameters and extractions); [`privacy`]
//! anonymises referrers as PrivacyManager does.
//!
//! Note for the tracker-context modules (`referrers`, `campaign`, `lists`, `location`,
//! `exclusion`): the core calls `lists::ReferrerLists::load(vendor_dir)` at start-up and uses
//! `phpurl` for URL handling. Referrer detection, exclusions and location are called from
//! [`batch`] once their APIs land.

pub mod actions;
pub mod ahead;
pub mod batch;
pub mod campaign;
pub mod dimensions;
pub mod exclusion;
pub mod goals;
pub mod hit;
pub mod lists;
pub mod location;
pub mod log_action;
pub mod pcre;
pub mod performance;
pub mod php;
pub mod phpurl;
pub mod prepare;
pub mod privacy;
pub mod referrers;
pub mod request;
pub mod settings;
pub mod sql;
pub mod visit;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

pub use ahead::Ahead;
pub use batch::ShardCache;

/// Failure to start the tracker.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    /// MySQL could not be reached or a configuration table could not be read.
    #[error("database: {0}")]
    Database(String),
    /// An upstream data file (search engines, socials, spam list) could not be loaded.
    #[error("data files: {0}")]
    DataFiles(String),
}

/// Why a batch failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BatchError {
    /// Deadlock, lock wait or statement timeout, lost connection…: roll back and retry the same
    /// batch later (repeated failures while MySQL answers make the batch suspect).
    #[error("transient: {0}")]
    Transient(String),
    /// MySQL cannot take work (down, read-only, too many connections) or its schema or
    /// privileges are wrong: roll back and retry later; never blamed on an entry.
    #[error("mysql unavailable: {0}")]
    Unavailable(String),
    /// MySQL refused a value of the batch, without saying which entry it came from (a data
    /// error in a multi-row statement): the engine bisects the batch to find the entry.
    #[error("mysql refused the batch's data: {0}")]
    Data(String),
    /// Entry `index` can never be processed: roll back, set it aside, re-run without it.
    #[error("entry {index} cannot be processed: {reason}")]
    Poison {
        /// Index of the entry in the batch.
        index: usize,
        /// Why.
        reason: String,
        /// Whether to keep it in the dead-letter list (false: PHP leaves no trace either).
        dead_letter: bool,
    },
}

impl From<mysql_async::Error> for BatchError {
    fn from(e: mysql_async::Error) -> Self {
        use crate::engine::error::{classify_mysql, MysqlFailure};
        match classify_mysql(&e) {
            MysqlFailure::Contention => BatchError::Transient(e.to_string()),
            MysqlFailure::Unavailable | MysqlFailure::Setup => {
                BatchError::Unavailable(e.to_string())
            }
            MysqlFailure::Data => BatchError::Data(e.to_string()),
        }
    }
}

/// What happened to each input set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// One per input set, in order.
    pub sets: Vec<SetOutcome>,
}

/// Requests of one set recorded / skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetOutcome {
    /// Requests that produced rows.
    pub recorded: usize,
    /// Requests skipped (excluded, rec != 1, invalid…).
    pub skipped: usize,
}

/// How often the configuration snapshot is re-read.
const SNAPSHOT_TTL: Duration = Duration::from_secs(30);

/// One per process; shared by the pool's tasks.
pub struct Tracker {
    pub(crate) config: tier_config::Config,
    pub(crate) prefix: String,
    pub(crate) pool: mysql_async::Pool,
    pub(crate) snapshot: RwLock<(Arc<settings::Snapshot>, Instant)>,
    pub(crate) actions: log_action::ActionCache,
    /// Fingerprint salts (`fingerprint_salt_<idsite>_<day>` options) already committed in
    /// MySQL; they never change once written (kept at most [`SNAPSHOT_TTL`]).
    pub(crate) salts: moka::sync::Cache<(u32, String), String>,
    pub(crate) lists: Arc<lists::ReferrerLists>,
    pub(crate) campaign: campaign::CampaignParams,
    pub(crate) geo: Option<Arc<location::GeoIpDb>>,
    pub(crate) devices: Option<Arc<matomo_device_detector::DeviceDetector>>,
    pub(crate) consecutive_autoinc: bool,
    pub(crate) exclude_rules: Vec<exclusion::RequestRule>,
    pub(crate) token_hashes: request::TokenHashes,
}

impl Tracker {
    /// Loads what the tracker needs from MySQL and the vendor folder.
    pub async fn new(
        config: &tier_config::Config,
        pool: mysql_async::Pool,
    ) -> Result<Tracker, TrackerError> {
        let prefix = config.database.tables_prefix.clone();
        let mut conn = pool
            .get_conn()
            .await
            .map_err(|e| TrackerError::Database(e.to_string()))?;
        ensure_userid_salt(&mut conn, &prefix)
            .await
            .map_err(|e| TrackerError::Database(e.to_string()))?;
        let snap = settings::Snapshot::load(&mut conn, &prefix)
            .await
            .map_err(|e| TrackerError::Database(e.to_string()))?;
        let mode: Option<i64> = conn
            .query_first("SELECT @@innodb_autoinc_lock_mode")
            .await
            .map_err(|e| TrackerError::Database(e.to_string()))?;
        drop(conn);
        let lists = match &config.matomo.vendor_dir {
            Some(dir) => lists::ReferrerLists::load(dir)
                .map_err(|e| TrackerError::DataFiles(e.to_string()))?,
            None => lists::ReferrerLists::default(),
        };
        let devices = match &config.matomo.vendor_dir {
            Some(dir) if dir.join("device-detector/regexes").is_dir() => {
                Some(Arc::new(load_device_detector(config, dir)?))
            }
            _ => None,
        };
        let geo = match &config.matomo.geoip_db {
            Some(path) => Some(Arc::new(
                location::GeoIpDb::open(path)
                    .map_err(|e| TrackerError::DataFiles(e.to_string()))?,
            )),
            None => None,
        };
        Ok(Tracker {
            geo,
            devices,
            config: config.clone(),
            prefix,
            pool,
            snapshot: RwLock::new((Arc::new(snap), Instant::now())),
            actions: moka::sync::Cache::new(200_000),
            // Matomo deletes old salts; a day re-created after that is picked up again within
            // the time to live, as configuration changes are within SNAPSHOT_TTL.
            salts: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(SNAPSHOT_TTL)
                .build(),
            lists: Arc::new(lists),
            campaign: campaign::CampaignParams::default(),
            consecutive_autoinc: mode.unwrap_or(1) != 2,
            exclude_rules: exclusion::parse_exclude_requests(
                &config.matomo.tracker.exclude_requests,
            ),
            token_hashes: request::TokenHashes::default(),
        })
    }

    /// Compiles every device-detection pattern now instead of on first use, so the first
    /// hits of a new user-agent family do not pay for it (seconds of CPU in all). Reports the
    /// patterns PCRE rejects; those never match, exactly as when compiled lazily.
    pub fn warm_up(&self) -> Result<(), TrackerError> {
        match &self.devices {
            Some(dd) => dd
                .validate()
                .map_err(|e| TrackerError::DataFiles(e.to_string())),
            None => Ok(()),
        }
    }

    /// A fresh per-shard visitor cache.
    pub fn new_shard_cache(&self) -> ShardCache {
        ShardCache::default()
    }

    /// The current configuration snapshot, re-read when older than [`SNAPSHOT_TTL`].
    pub(crate) async fn snapshot(&self) -> Result<Arc<settings::Snapshot>, BatchError> {
        let has_userid_salt = {
            let guard = self
                .snapshot
                .read()
                .map_err(|_| BatchError::Transient("snapshot lock poisoned".into()))?;
            if guard.1.elapsed() < SNAPSHOT_TTL {
                return Ok(guard.0.clone());
            }
            guard.0.userid_salt().is_some()
        };
        let mut conn = self.pool.get_conn().await?;
        if !has_userid_salt {
            ensure_userid_salt(&mut conn, &self.prefix).await?;
        }
        let snap = Arc::new(
            settings::Snapshot::load(&mut conn, &self.prefix)
                .await
                .map_err(|e| BatchError::Transient(e.to_string()))?,
        );
        let mut guard = self
            .snapshot
            .write()
            .map_err(|_| BatchError::Transient("snapshot lock poisoned".into()))?;
        *guard = (snap.clone(), Instant::now());
        Ok(snap)
    }

    /// Turns a batch of queue entries (in queue order) into Matomo rows written through `tx`.
    /// `ahead`: the batch's [`Tracker::read_ahead`], when it was made (used only when it fits).
    pub async fn process_batch(
        &self,
        tx: &mut mysql_async::Transaction<'static>,
        cache: &mut ShardCache,
        sets: &[matomo_wire::RequestSet],
        ahead: Option<Ahead>,
    ) -> Result<BatchOutcome, BatchError> {
        let snap = self.snapshot().await?;
        batch::run(self, &snap, tx, cache, sets, ahead).await
    }

    /// Table name with the configured prefix.
    /// Every request of `sets` read with `snap` (`Request.php`'s constructor); `None`: unknown
    /// site, skipped.
    pub(crate) fn requests<'a>(
        &'a self,
        snap: &'a settings::Snapshot,
        sets: &'a [matomo_wire::RequestSet],
    ) -> Vec<Vec<Option<request::Request<'a>>>> {
        let env = request::RequestEnv {
            salt: &self.config.matomo.salt,
            snap,
            tracker: &self.config.matomo.tracker,
            token_hashes: &self.token_hashes,
        };
        sets.iter()
            .map(|set| {
                set.requests
                    .iter()
                    .map(|params| request::Request::new(params, set, env.clone()).ok())
                    .collect()
            })
            .collect()
    }

    pub(crate) fn table(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name)
    }
}

/// The alphabet of `PrivacyManager::getUserIdSalt` (PHP's, without `q` and `Q`).
const USERID_SALT_ALPHABET: &[u8] =
    b"abcdefghijklmnoprstuvwxyzABCDEFGHIJKLMNOPRSTUVWXYZ0123456789_-$";

/// `PrivacyManager::getUserIdSalt`, which Matomo runs whenever it builds its tracker cache:
/// creates the `useridsalt` option (40 random characters, autoload 1) when it is missing or
/// empty, so that pseudonymised user ids (`anonymizeUserId`) have a stable salt.
async fn ensure_userid_salt(
    conn: &mut mysql_async::Conn,
    prefix: &str,
) -> Result<(), mysql_async::Error> {
    let salt = prepare::random_string_from(40, USERID_SALT_ALPHABET);
    conn.query_drop(format!(
        "INSERT INTO `{prefix}option` (option_name, option_value, autoload) VALUES ('useridsalt', '{salt}', 1) \
         ON DUPLICATE KEY UPDATE option_value = IF(option_value IN ('', '0'), VALUES(option_value), option_value)"
    ))
    .await
}

/// Loads DeviceDetector's regexes from `<vendor>/device-detector/regexes` with the algorithm of
/// the release configured in `matomo.device_detector` (`auto`: the install's
/// `DeviceDetector.php` says which).
fn load_device_detector(
    config: &tier_config::Config,
    vendor: &std::path::Path,
) -> Result<matomo_device_detector::DeviceDetector, TrackerError> {
    use matomo_device_detector::{AlgorithmVersion, DeviceDetector, Options};
    use tier_config::DeviceDetectorRelease;

    let php = std::fs::read_to_string(vendor.join("device-detector/DeviceDetector.php")).ok();
    let algorithm = match config.matomo.device_detector.resolve(php.as_deref()) {
        DeviceDetectorRelease::V6_3 => AlgorithmVersion::V6_3,
        DeviceDetectorRelease::V6_4 | DeviceDetectorRelease::Auto => AlgorithmVersion::V6_4,
    };
    let options = Options {
        algorithm,
        ..Options::default()
    };
    DeviceDetector::with_options(&vendor.join("device-detector/regexes"), options)
        .map_err(|e| TrackerError::DataFiles(e.to_string()))
}
