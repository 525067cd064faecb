//! One typed, validated configuration for every binary of the tier.
//!
//! [`settings`] holds the shape and defaults. Loading from a TOML file, Matomo's
//! `config.ini.php`, environment variables and command-line flags, and validation, happen once
//! at start-up; a bad setting stops the binary with one line naming the setting and the problem.
#![deny(missing_docs)]

pub mod settings;

pub use settings::*;
