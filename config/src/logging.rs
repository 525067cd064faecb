//! Process-wide tracing set-up from [`LogConfig`]: text or JSON lines on stderr, filtered by the
//! `log.level` directive. Called once by each binary's `main`, after the configuration loaded.

use tracing_subscriber::EnvFilter;

use crate::error::ConfigError;
use crate::settings::{LogConfig, LogFormat};

/// Installs the global tracing subscriber. Fails if the level is not a valid filter or a
/// subscriber is already installed.
pub fn init_tracing(log: &LogConfig) -> Result<(), ConfigError> {
    let filter = EnvFilter::try_new(&log.level)
        .map_err(|e| ConfigError::Logging(format!("log.level = {:?}: {e}", log.level)))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| ConfigError::Logging(e.to_string()))
}
