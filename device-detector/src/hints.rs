//! User-agent client hints: from `Sec-CH-UA*` request headers or Matomo's `uadata` parameter.
//!
//! Mirrors DeviceDetector's `ClientHints::factory`: the same header and JSON key names (case- and
//! `_`/`-`-insensitive, with or without PHP's `HTTP_` prefix), the same precedence between
//! `Sec-CH-UA` and `Sec-CH-UA-Full-Version-List`, and the same brand-list parsing. Pure: no I/O.

use serde_json::Value;

/// Error reading Matomo's `uadata` parameter.
#[derive(Debug, thiserror::Error)]
pub enum HintsError {
    /// The parameter is not JSON.
    #[error("uadata is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The parameter is JSON but not an object.
    #[error("uadata must be a JSON object")]
    NotAnObject,
}

/// Client hints, as DeviceDetector's `ClientHints` holds them. `Default` means "no hints".
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ClientHints {
    /// `Sec-CH-UA-Arch`.
    pub architecture: String,
    /// `Sec-CH-UA-Bitness`.
    pub bitness: String,
    /// `Sec-CH-UA-Mobile` is `?1`.
    pub mobile: bool,
    /// `Sec-CH-UA-Model`.
    pub model: String,
    /// `Sec-CH-UA-Platform`.
    pub platform: String,
    /// `Sec-CH-UA-Platform-Version`.
    pub platform_version: String,
    /// `Sec-CH-UA-Full-Version`.
    pub ua_full_version: String,
    /// Brand → version, from `Sec-CH-UA-Full-Version-List` (or `Sec-CH-UA`), in header order.
    pub brands: Vec<(String, String)>,
    /// `X-Requested-With` (the Android app id), unless it is `XMLHttpRequest`.
    pub app: String,
    /// `Sec-CH-UA-Form-Factors`, lowercased.
    pub form_factors: Vec<String>,
}

/// A header or `uadata` value: JSON keeps its structure, headers are strings.
enum HintValue<'a> {
    Str(&'a str),
    Json(&'a Value),
}

impl ClientHints {
    /// Reads hints from request headers (`Sec-CH-UA`, `Sec-CH-UA-Model`, …, `X-Requested-With`).
    /// Names may also be given PHP-style (`HTTP_SEC_CH_UA_MODEL`). Unknown headers are ignored.
    pub fn from_headers<I, K, V>(headers: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut hints = Self::default();
        for (name, value) in headers {
            hints.apply(name.as_ref(), HintValue::Str(value.as_ref()));
        }
        hints
    }

    /// Reads Matomo's `uadata` tracking parameter (the JSON of `navigator.userAgentData`'s
    /// high-entropy values: `fullVersionList`, `mobile`, `model`, `platform`, `platformVersion`, …).
    pub fn from_uadata_json(json: &str) -> Result<Self, HintsError> {
        let value: Value = serde_json::from_str(json)?;
        let Value::Object(map) = &value else {
            return Err(HintsError::NotAnObject);
        };
        let mut hints = Self::default();
        for (name, value) in map {
            hints.apply(name, HintValue::Json(value));
        }
        Ok(hints)
    }

    /// Whether no hint at all is set.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// The brand list, as `ClientHints::getBrandList` returns it.
    pub fn brand_list(&self) -> &[(String, String)] {
        &self.brands
    }

    fn apply(&mut self, name: &str, value: HintValue<'_>) {
        let key = name.to_ascii_lowercase().replace('_', "-");
        let text = || match &value {
            HintValue::Str(s) => Some(s.trim_matches('"').to_string()),
            HintValue::Json(Value::String(s)) => Some(s.trim_matches('"').to_string()),
            HintValue::Json(Value::Number(n)) => Some(n.to_string()),
            HintValue::Json(_) => None,
        };
        match key.as_str() {
            "http-sec-ch-ua-arch" | "sec-ch-ua-arch" | "arch" | "architecture" => {
                if let Some(v) = text() {
                    self.architecture = v;
                }
            }
            "http-sec-ch-ua-bitness" | "sec-ch-ua-bitness" | "bitness" => {
                if let Some(v) = text() {
                    self.bitness = v;
                }
            }
            "http-sec-ch-ua-mobile" | "sec-ch-ua-mobile" | "mobile" => {
                self.mobile = match &value {
                    HintValue::Str(s) => *s == "1" || *s == "?1",
                    HintValue::Json(Value::Bool(b)) => *b,
                    HintValue::Json(Value::String(s)) => s == "1" || s == "?1",
                    HintValue::Json(_) => false,
                };
            }
            "http-sec-ch-ua-model" | "sec-ch-ua-model" | "model" => {
                if let Some(v) = text() {
                    self.model = v;
                }
            }
            "http-sec-ch-ua-full-version" | "sec-ch-ua-full-version" | "uafullversion" => {
                if let Some(v) = text() {
                    self.ua_full_version = v;
                }
            }
            "http-sec-ch-ua-platform" | "sec-ch-ua-platform" | "platform" => {
                if let Some(v) = text() {
                    self.platform = v;
                }
            }
            "http-sec-ch-ua-platform-version"
            | "sec-ch-ua-platform-version"
            | "platformversion" => {
                if let Some(v) = text() {
                    self.platform_version = v;
                }
            }
            "brands" | "fullversionlist" => {
                if key == "brands" && !self.brands.is_empty() {
                    return;
                }
                if let HintValue::Json(Value::Array(items)) = value {
                    self.brands = brand_list_from_json(items);
                }
            }
            "http-sec-ch-ua"
            | "sec-ch-ua"
            | "http-sec-ch-ua-full-version-list"
            | "sec-ch-ua-full-version-list" => {
                if key.ends_with("sec-ch-ua") && !self.brands.is_empty() {
                    return;
                }
                if let Some(v) = text_raw(&value) {
                    let list = parse_brand_header(v);
                    if !list.is_empty() {
                        self.brands = list;
                    }
                }
            }
            "http-x-requested-with" | "x-requested-with" => {
                if let Some(v) = text_raw(&value) {
                    if !v.eq_ignore_ascii_case("xmlhttprequest") {
                        self.app = v.to_string();
                    }
                }
            }
            "formfactors" | "http-sec-ch-ua-form-factors" | "sec-ch-ua-form-factors" => match value
            {
                HintValue::Json(Value::Array(items)) => {
                    self.form_factors = items.iter().map(|v| json_text(v).to_lowercase()).collect();
                }
                other => {
                    if let Some(v) = text_raw(&other) {
                        let found = quoted_words(&v.to_lowercase());
                        if !found.is_empty() {
                            self.form_factors = found;
                        }
                    }
                }
            },
            _ => {}
        }
    }
}

fn text_raw<'a>(value: &'a HintValue<'a>) -> Option<&'a str> {
    match value {
        HintValue::Str(s) => Some(s),
        HintValue::Json(Value::String(s)) => Some(s),
        HintValue::Json(_) => None,
    }
}

fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(true) => "1".to_string(),
        _ => String::new(),
    }
}

/// `array_combine(array_column($list, 'brand'), array_column($list, 'version'))`.
fn brand_list_from_json(items: &[Value]) -> Vec<(String, String)> {
    let brands: Vec<String> = items
        .iter()
        .filter_map(|i| i.get("brand").map(json_text))
        .collect();
    let versions: Vec<String> = items
        .iter()
        .filter_map(|i| i.get("version").map(json_text))
        .collect();
    if brands.len() != versions.len() {
        return Vec::new();
    }
    combine(brands.into_iter().zip(versions))
}

/// PHP array semantics: a repeated brand keeps its first position and takes the last version.
fn combine(pairs: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (brand, version) in pairs {
        match out.iter_mut().find(|(b, _)| *b == brand) {
            Some(slot) => slot.1 = version,
            None => out.push((brand, version)),
        }
    }
    out
}

/// Parses `"Brand";v="1.2", "Other";v="3"` from the start, stopping at the first item that does
/// not fit (as DeviceDetector's `^"([^"]+)"; ?v="([^"]+)"(?:, )?` loop does).
fn parse_brand_header(mut value: &str) -> Vec<(String, String)> {
    let mut list = Vec::new();
    while let Some(rest) = value.strip_prefix('"') {
        let Some(end) = rest.find('"') else { break };
        if end == 0 {
            break;
        }
        let brand = &rest[..end];
        let mut tail = &rest[end + 1..];
        let Some(t) = tail.strip_prefix(';') else {
            break;
        };
        tail = t.strip_prefix(' ').unwrap_or(t);
        let Some(t) = tail.strip_prefix("v=\"") else {
            break;
        };
        let Some(vend) = t.find('"') else { break };
        if vend == 0 {
            break;
        }
        let version = &t[..vend];
        tail = &t[vend + 1..];
        tail = tail.strip_prefix(", ").unwrap_or(tail);
        list.push((brand.to_string(), version.to_string()));
        value = tail;
    }
    combine(list.into_iter())
}

/// `preg_match_all('~"([a-z]+)"~i', …)`.
fn quoted_words(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = value.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'"' {
            let start = i + 1;
            let mut j = start;
            while j < bytes.len() && bytes[j].is_ascii_alphabetic() {
                j += 1;
            }
            if j > start && j < bytes.len() && bytes[j] == b'"' {
                out.push(value[start..j].to_string());
                i = j + 1;
                continue;
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_like_device_detector() {
        let h = ClientHints::from_headers([
            (
                "Sec-CH-UA",
                r#"" Not A;Brand";v="99", "Chromium";v="98", "Google Chrome";v="98""#,
            ),
            ("Sec-CH-UA-Mobile", "?1"),
            ("HTTP_SEC_CH_UA_MODEL", "\"ZC554KL\""),
            ("Sec-CH-UA-Form-Factors", r#""EInk", "Watch""#),
            ("X-Requested-With", "XMLHttpRequest"),
        ]);
        assert_eq!(h.brands.len(), 3);
        assert_eq!(h.brands[2], ("Google Chrome".into(), "98".into()));
        assert!(h.mobile);
        assert_eq!(h.model, "ZC554KL");
        assert_eq!(h.form_factors, vec!["eink", "watch"]);
        assert_eq!(h.app, "");
    }

    #[test]
    fn full_version_list_wins_over_sec_ch_ua() {
        let h = ClientHints::from_headers([
            ("sec-ch-ua-full-version-list", r#""Chromium";v="98.0.1""#),
            ("sec-ch-ua", r#""Chromium";v="98""#),
        ]);
        assert_eq!(h.brands, vec![("Chromium".into(), "98.0.1".into())]);
    }

    #[test]
    fn uadata_json() {
        let h = ClientHints::from_uadata_json(
            r#"{"brands":[{"brand":"A","version":"1"}],"fullVersionList":[{"brand":"Chromium","version":"120.0.1"}],"mobile":true,"model":"Pixel","platform":"Android","platformVersion":"14.0.0"}"#,
        )
        .unwrap();
        assert_eq!(h.brands, vec![("Chromium".into(), "120.0.1".into())]);
        assert!(h.mobile);
        assert_eq!(h.platform_version, "14.0.0");
        assert!(ClientHints::from_uadata_json("[1]").is_err());
        assert!(ClientHints::from_uadata_json("{").is_err());
    }
}
