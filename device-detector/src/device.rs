//! Device parsers (`Parser/Device/*.php`): HbbTV and Shell TVs, notebooks, consoles, car
//! browsers, cameras, portable media players and mobiles, each a brand → model rule list, plus
//! the client-hint model and form factors and the `Android 10; K` / desktop user-agent rewrites
//! `AbstractDeviceParser::parse` does before matching. Vendor fragments live here too.

use crate::detection::DeviceType;
use crate::hints::ClientHints;
use crate::pattern::{build_by_match, Captures, Pattern};
use crate::rules::{DeviceRule, Ordered};
use crate::scan::{OverallGate, Scanner};
use crate::tables::{AlgorithmVersion, Tables};

/// What a device parser found (`getDeviceType()`, `getModel()`, `getBrand()`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DeviceResult {
    pub(crate) device_type: Option<DeviceType>,
    pub(crate) model: String,
    pub(crate) brand: String,
}

/// Which subclass of `AbstractDeviceParser` a parser is (they differ in their pre-checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeviceKind {
    HbbTv,
    ShellTv,
    Notebook,
    /// Console, car browser, camera, portable media player: gated by `preMatchOverall`.
    Gated,
    Mobile,
}

#[derive(Debug)]
struct ModelEntry {
    model: String,
    brand: Option<String>,
    device: Option<String>,
}

#[derive(Debug)]
struct BrandEntry {
    brand: String,
    device: Option<String>,
    model: Option<String>,
    models: Option<(Scanner, Vec<ModelEntry>)>,
}

/// Patterns every device parser shares.
#[derive(Debug)]
pub(crate) struct DeviceCommon {
    t: &'static Tables,
    desktop: Pattern,
    desktop_exclude: Pattern,
    ua_hints_fragment: Pattern,
    android10_k: Pattern,
    x11_linux: Pattern,
    td_suffix: Pattern,
}

impl DeviceCommon {
    pub(crate) fn new(t: &'static Tables) -> Self {
        let exclude = [
            "CE-HTML",
            r" Mozilla/|Andr[o0]id|Tablet|Mobile|iPhone|Windows Phone|ricoh|OculusBrowser",
            r"PicoBrowser|Lenovo|compatible; MSIE|Trident/|Tesla/|XBOX|FBMD/|ARM; ?([^)]+)",
        ]
        .join("|");
        Self {
            t,
            desktop: Pattern::parser(r"(?:Windows (?:NT|IoT)|X11; Linux x86_64)"),
            desktop_exclude: Pattern::parser(&exclude),
            ua_hints_fragment: Pattern::raw(r"Android 10[.\d]*; K(?: Build/|[;)])".into(), true),
            android10_k: Pattern::raw(r"Android 10[.\d]*; K".into(), false),
            x11_linux: Pattern::raw(r"X11; Linux x86_64".into(), false),
            td_suffix: Pattern::raw(r" TD$".into(), true),
        }
    }

    /// `AbstractDeviceParser::hasDesktopFragment`.
    pub(crate) fn has_desktop_fragment(&self, ua: &str) -> bool {
        self.desktop.is_match(ua) && !self.desktop_exclude.is_match(ua)
    }
}

/// One device parser.
#[derive(Debug)]
pub(crate) struct DeviceParser {
    kind: DeviceKind,
    file: &'static str,
    pre_check: Option<Pattern>,
    gate: Option<OverallGate>,
    scanner: Scanner,
    brands: Vec<BrandEntry>,
}

impl DeviceParser {
    pub(crate) fn new(kind: DeviceKind, file: &'static str, rules: &Ordered<DeviceRule>) -> Self {
        let pre_check = match kind {
            DeviceKind::HbbTv => Some(Pattern::parser(r"HbbTV/([1-9]{1}(?:\.[0-9]{1}){1,2})")),
            DeviceKind::ShellTv => Some(Pattern::parser(
                r"[a-z]+[ _]Shell[ _]\w{6}|tclwebkit(\d+[\.\d]*)",
            )),
            DeviceKind::Notebook => Some(Pattern::parser("FBMD/")),
            DeviceKind::Gated | DeviceKind::Mobile => None,
        };
        let gate = (kind == DeviceKind::Gated)
            .then(|| OverallGate::new(rules.0.iter().map(|(_, r)| r.regex.as_str())));
        let brands = rules
            .0
            .iter()
            .map(|(brand, rule)| BrandEntry {
                brand: brand.clone(),
                device: rule.device.clone(),
                model: rule.model.clone(),
                models: rule.models.as_ref().map(|models| {
                    (
                        Scanner::new(models.iter().map(|m| m.regex.as_str())),
                        models
                            .iter()
                            .map(|m| ModelEntry {
                                model: m.model.clone().unwrap_or_default(),
                                brand: m.brand.clone(),
                                device: m.device.clone(),
                            })
                            .collect(),
                    )
                }),
            })
            .collect();
        Self {
            kind,
            file,
            pre_check,
            gate,
            scanner: Scanner::new(rules.0.iter().map(|(_, r)| r.regex.as_str())),
            brands,
        }
    }

    pub(crate) fn file(&self) -> &'static str {
        self.file
    }

    pub(crate) fn check(&self) -> Vec<String> {
        let mut errors: Vec<String> = self
            .scanner
            .check()
            .into_iter()
            .map(|(i, e)| format!("{} brand {}: {e}", self.file, self.brands[i].brand))
            .collect();
        for b in &self.brands {
            if let Some((scanner, _)) = &b.models {
                errors.extend(
                    scanner
                        .check()
                        .into_iter()
                        .map(|(i, e)| format!("{} brand {} model {i}: {e}", self.file, b.brand)),
                );
            }
        }
        errors
    }

    /// The parser's `parse()`: `None` where PHP returns a falsy value (the detector then tries the
    /// next parser), otherwise what the parser holds afterwards.
    pub(crate) fn parse(
        &self,
        common: &DeviceCommon,
        ua: &str,
        hints: &ClientHints,
    ) -> Option<DeviceResult> {
        if let Some(pre) = &self.pre_check {
            if !pre.is_match(ua) {
                return None;
            }
        }
        if let Some(gate) = &self.gate {
            if !gate.passes(ua) {
                return None;
            }
        }
        let result = self.parse_base(common, ua, hints);
        match self.kind {
            DeviceKind::HbbTv | DeviceKind::ShellTv => {
                let mut r = result.unwrap_or_default();
                r.device_type = Some(DeviceType::Tv);
                Some(r)
            }
            _ => result,
        }
    }

    /// `AbstractDeviceParser::parse`.
    fn parse_base(
        &self,
        common: &DeviceCommon,
        ua: &str,
        hints: &ClientHints,
    ) -> Option<DeviceResult> {
        let v6_4 = common.t.version == AlgorithmVersion::V6_4;
        let hint_model = hints.model.as_str();
        let hint_result = (!hint_model.is_empty()).then(|| DeviceResult {
            // Form factors arrived in 6.4.
            device_type: form_factor_type(&hints.form_factors).filter(|_| v6_4),
            model: String::new(),
            brand: String::new(),
        });
        let mut ua = ua.to_string();
        if !hint_model.is_empty() && common.ua_hints_fragment.is_match(&ua) {
            let os_version = if hints.platform_version.is_empty() {
                "10"
            } else {
                hints.platform_version.as_str()
            };
            ua = common
                .android10_k
                .replace_all(&ua, &format!("Android {os_version}; {hint_model}"));
        }
        if v6_4 && !hint_model.is_empty() && common.has_desktop_fragment(&ua) {
            ua = common
                .x11_linux
                .replace_all(&ua, &format!("X11; Linux x86_64; {hint_model}"));
        }
        if hint_model.is_empty()
            && ((v6_4 && common.ua_hints_fragment.is_match(&ua))
                || common.has_desktop_fragment(&ua))
        {
            return Some(DeviceResult::default());
        }
        let Some((idx, caps)) = self.scanner.first(&ua) else {
            return hint_result;
        };
        let entry = &self.brands[idx];
        let mut result = DeviceResult::default();
        if entry.brand != "Unknown" {
            result.brand = entry.brand.clone();
        }
        if let Some(t) = entry.device.as_deref().and_then(DeviceType::from_name) {
            result.device_type = Some(t);
        }
        if let Some(model) = &entry.model {
            result.model = build_model(common, model, &caps);
        }
        if let Some((scanner, models)) = &entry.models {
            let Some((midx, mcaps)) = scanner.first(&ua) else {
                return Some(result);
            };
            let m = &models[midx];
            result.model = build_model(common, &m.model, &mcaps);
            if let Some(brand) = m.brand.as_deref().filter(|b| common.t.is_known_brand(b)) {
                result.brand = brand.to_string();
            }
            if let Some(t) = m.device.as_deref().and_then(DeviceType::from_name) {
                result.device_type = Some(t);
            }
        }
        Some(result)
    }
}

/// `AbstractDeviceParser::buildModel`.
fn build_model(common: &DeviceCommon, model: &str, caps: &Captures) -> String {
    let model = build_by_match(model, caps).replace('_', " ");
    let model = common.td_suffix.replace_all(&model, "");
    if model == "Build" || model.is_empty() {
        return String::new();
    }
    model.trim().to_string()
}

/// `$clientHintFormFactorsMapping`: the first mapped form factor (in the mapping's order) wins.
fn form_factor_type(form_factors: &[String]) -> Option<DeviceType> {
    const MAPPING: [(&str, DeviceType); 7] = [
        ("automotive", DeviceType::CarBrowser),
        ("xr", DeviceType::Wearable),
        ("watch", DeviceType::Wearable),
        ("mobile", DeviceType::Smartphone),
        ("tablet", DeviceType::Tablet),
        ("desktop", DeviceType::Desktop),
        ("eink", DeviceType::Tablet),
    ];
    MAPPING
        .iter()
        .find(|(f, _)| form_factors.iter().any(|x| x == f))
        .map(|(_, t)| *t)
}

/// `Parser/VendorFragment.php`.
#[derive(Debug)]
pub(crate) struct VendorFragments {
    brands: Vec<String>,
    scanner: Scanner,
}

impl VendorFragments {
    pub(crate) fn new(rules: &Ordered<Vec<String>>) -> Self {
        let mut brands = Vec::new();
        let mut regexes = Vec::new();
        for (brand, list) in &rules.0 {
            for r in list {
                brands.push(brand.clone());
                regexes.push(format!("{r}[^a-z0-9]+"));
            }
        }
        Self {
            brands,
            scanner: Scanner::new(regexes.iter().map(String::as_str)),
        }
    }

    pub(crate) fn check(&self) -> Vec<String> {
        self.scanner
            .check()
            .into_iter()
            .map(|(i, e)| format!("vendorfragments.yml {}: {e}", self.brands[i]))
            .collect()
    }

    pub(crate) fn brand(&self, ua: &str) -> Option<&str> {
        let (idx, _) = self.scanner.first(ua)?;
        Some(self.brands[idx].as_str())
    }
}
