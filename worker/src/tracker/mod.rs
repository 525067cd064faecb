//! Placeholder: the tracker core (owned by the tracker-core work) replaces this file.

pub mod phpurl;
pub mod lists;
