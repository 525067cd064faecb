//! The visitor model: a deterministic stream of realistic tracking hits.
//!
//! A fixed number of visits are open at any moment; each next hit comes from one of them, so
//! hits of different visitors interleave as they do on a live site while each visit keeps its
//! order. A visit opens with a landing page view carrying its referrer (direct, search engine,
//! social network, website or campaign URL) and continues with hits drawn from the [`Mix`].
//! Visitors keep their `_id`, browser, language, site and target across visits, and some come
//! back (returning visitors). The same seed always yields the same hits.
//!
//! This module only produces hits; it never does I/O and never looks at the clock.

mod catalog;
mod mix;
mod model;

pub use mix::{HitKind, Mix, MixError};
pub use model::{Hit, ModelConfig, VisitorModel};
