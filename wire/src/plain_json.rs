//! JSON text → [`serde_json::Value`] with no key treated specially.
//!
//! serde_json's own `Value` deserializer, when its `raw_value` feature is on (axum turns it on for
//! the whole build), reads an object whose first key is `$serde_json::private::RawValue` as the
//! JSON held in that key's string instead of as an object. PHP's `json_decode` has no such key,
//! so a queue entry with a request parameter of that name must decode like any other: this
//! visitor builds the `Value` itself.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses `bytes` as JSON (serde_json's syntax and depth limit) into a plain `Value`.
pub fn from_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Plain.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

#[derive(Clone, Copy)]
struct Plain;

impl<'de> DeserializeSeed<'de> for Plain {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Plain {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(v) = seq.next_element_seed(Plain)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(Plain)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn same_values_as_serde_json_for_ordinary_json() {
        let text =
            r#"{"a":[1,-2,3.5,"x",null,true,{"b":{}}],"c":"\u00e9\/","d":18446744073709551615}"#;
        let ours = from_slice(text.as_bytes()).expect("parses");
        let theirs: Value = serde_json::from_str(text).expect("parses");
        assert_eq!(ours, theirs);
    }

    #[test]
    fn the_raw_value_key_is_an_ordinary_key() {
        let text = r#"{"$serde_json::private::RawValue":"{\"idsite\":\"2\"}","idsite":"1"}"#;
        let value = from_slice(text.as_bytes()).expect("parses");
        assert_eq!(
            value,
            json!({"$serde_json::private::RawValue": "{\"idsite\":\"2\"}", "idsite": "1"})
        );
    }

    #[test]
    fn bad_json_is_an_error() {
        assert!(from_slice(b"{\"a\":").is_err());
        assert!(from_slice(b"[1] x").is_err());
        assert!(from_slice(&vec![b'['; 100_000]).is_err());
    }
}
