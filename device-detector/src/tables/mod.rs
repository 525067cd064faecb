//! Data tables DeviceDetector keeps in its PHP classes rather than in the YAML files (short codes,
//! families, brand codes). Transcribed facts, not logic.

pub(crate) mod brands;
pub(crate) mod browsers;
pub(crate) mod os;
