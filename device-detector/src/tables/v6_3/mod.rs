//! Tables of DeviceDetector 6.3.2 (Matomo 5.1).

pub(crate) mod brands;
pub(crate) mod browsers;
pub(crate) mod os;
