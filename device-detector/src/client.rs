//! Bots and the simple client parsers (`Parser/Bot.php`, `Parser/Client/AbstractClientParser.php`
//! and its feed reader, mobile app, media player, PIM and library subclasses, with the mobile-app
//! client hint `X-Requested-With`). Browsers are in [`crate::browser`].

use std::collections::HashMap;

use crate::detection::{BotInfo, BotProducer, ClientInfo, ClientType};
use crate::hints::ClientHints;
use crate::pattern::{build_by_match, build_version, VersionTruncation};
use crate::rules::{BotRule, ClientRule, Ordered};
use crate::scan::{OverallGate, Scanner};

/// `Parser/Bot.php`.
#[derive(Debug)]
pub(crate) struct BotParser {
    gate: OverallGate,
    scanner: Scanner,
    rules: Vec<BotRule>,
}

impl BotParser {
    pub(crate) fn new(rules: &[BotRule]) -> Self {
        Self {
            gate: OverallGate::new(rules.iter().map(|r| r.regex.as_str())),
            scanner: Scanner::new(rules.iter().map(|r| r.regex.as_str())),
            rules: rules.to_vec(),
        }
    }

    pub(crate) fn check(&self) -> Vec<String> {
        self.scanner
            .check()
            .into_iter()
            .map(|(i, e)| format!("bots.yml rule {i}: {e}"))
            .collect()
    }

    pub(crate) fn parse(&self, ua: &str) -> Option<BotInfo> {
        // PHP runs the gate first; a rule can only be found when the gate also matches, so the
        // (expensive) gate is only consulted once a rule matched. Same answer, less work.
        let (idx, _) = self.scanner.first(ua)?;
        if !self.gate.passes(ua) {
            return None;
        }
        let rule = &self.rules[idx];
        Some(BotInfo {
            name: rule.name.clone(),
            category: rule.category.clone(),
            url: rule.url.clone(),
            producer: rule.producer.as_ref().map(|p| BotProducer {
                name: p.name.clone(),
                url: p.url.clone(),
            }),
        })
    }
}

/// A hint table (`client/hints/*.yml`): app id → name.
pub(crate) fn hint_table(table: &Ordered<String>) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for (id, name) in &table.0 {
        // PHP arrays keep the last value of a repeated key.
        map.insert(id.clone(), name.clone());
    }
    map
}

/// `AbstractClientParser` for one client type.
#[derive(Debug)]
pub(crate) struct ClientParser {
    client_type: ClientType,
    gate: OverallGate,
    scanner: Scanner,
    rules: Vec<(String, String)>,
    /// Only for mobile apps: `X-Requested-With` app ids.
    app_hints: Option<HashMap<String, String>>,
    file: &'static str,
}

impl ClientParser {
    pub(crate) fn new(
        client_type: ClientType,
        file: &'static str,
        rules: &[ClientRule],
        app_hints: Option<HashMap<String, String>>,
    ) -> Self {
        Self {
            client_type,
            gate: OverallGate::new(rules.iter().map(|r| r.regex.as_str())),
            scanner: Scanner::new(rules.iter().map(|r| r.regex.as_str())),
            rules: rules
                .iter()
                .map(|r| (r.name.clone(), r.version.clone().unwrap_or_default()))
                .collect(),
            app_hints,
            file,
        }
    }

    pub(crate) fn client_type(&self) -> ClientType {
        self.client_type
    }

    pub(crate) fn check(&self) -> Vec<String> {
        self.scanner
            .check()
            .into_iter()
            .map(|(i, e)| format!("{} rule {i}: {e}", self.file))
            .collect()
    }

    pub(crate) fn parse(
        &self,
        ua: &str,
        hints: &ClientHints,
        trunc: VersionTruncation,
    ) -> Option<ClientInfo> {
        let mut found = None;
        // The gate (PHP's `preMatchOverall`) is consulted only after a rule matched: same
        // answer as gate-then-rules, without the big alternation on every user agent.
        if let Some((idx, caps)) = self.scanner.first(ua) {
            if self.gate.passes(ua) {
                let (name, version) = &self.rules[idx];
                found = Some((
                    build_by_match(name, &caps),
                    build_version(version, &caps, trunc),
                ));
            }
        }
        if let Some(apps) = &self.app_hints {
            // MobileApp::parse: a known app id overrides what the user agent says.
            let (mut name, mut version) = found.unwrap_or_default();
            if let Some(app) = apps.get(&hints.app).filter(|n| !n.is_empty()) {
                if *app != name {
                    name = app.clone();
                    version = String::new();
                }
            }
            if name.is_empty() {
                return None;
            }
            found = Some((name, version));
        }
        let (name, version) = found?;
        Some(ClientInfo {
            client_type: self.client_type,
            name,
            short_name: None,
            version,
            engine: String::new(),
            engine_version: String::new(),
            family: None,
        })
    }
}
