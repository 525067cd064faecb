//! What the wire code needs of one request's parameters, whatever holds them: reading a
//! parameter as PHP's string cast gives it ([`ParamLookup`], for routing and validation) and
//! writing the whole set as the PHP array `json_encode` writes ([`WritePhpArray`], for entries).
//!
//! [`Params`] (the `serde_json` map every decoded entry and bulk request uses) implements both;
//! the ingest node's single-hit path implements them for its own flat, borrowed parameter
//! lists, so a hit is routed and encoded without building a map. Both must give the bytes and
//! answers the [`Params`] of the same request gives.

use std::borrow::Cow;
use std::fmt::Debug;

use crate::envelope::{param_str, Params};
use crate::phpjson;

/// Read access to one request's parameters.
pub trait ParamLookup {
    /// The parameter `key` as PHP's string cast gives it (see [`param_str`]): `None` when it is
    /// absent, `false`, `null` or an array.
    fn param(&self, key: &str) -> Option<Cow<'_, str>>;
    /// Whether the request has no parameter at all.
    fn is_empty(&self) -> bool;
}

impl ParamLookup for Params {
    fn param(&self, key: &str) -> Option<Cow<'_, str>> {
        param_str(self, key)
    }

    fn is_empty(&self) -> bool {
        Params::is_empty(self)
    }
}

/// A PHP array written as PHP's `json_encode` writes it ([`phpjson::write_map`] rules: a list
/// when the keys are `0..n` in order, an object otherwise).
pub trait WritePhpArray: Debug {
    /// Appends the array's JSON to `out`.
    fn write_php_array(&self, out: &mut String);
}

impl WritePhpArray for Params {
    fn write_php_array(&self, out: &mut String) {
        phpjson::write_map(out, self);
    }
}
