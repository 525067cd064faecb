//! Tables of DeviceDetector 6.4.1 (Matomo 5.2).

pub(crate) mod brands;
pub(crate) mod browsers;
pub(crate) mod os;
