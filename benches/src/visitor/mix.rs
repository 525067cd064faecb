//! Kinds of hits and the configurable mix they are drawn from.
//!
//! A hit kind also decides what Matomo stores for it, which reconciliation needs: action kinds
//! write exactly one `log_link_visit_action` row, an ecommerce order one `log_conversion` row,
//! a manual goal at most one conversion (once per visit unless the goal allows more), a ping
//! updates the visit only.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// What a generated hit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HitKind {
    /// A page view (`url` + `action_name`, often with performance timings).
    Pageview,
    /// A site search (`search`, `search_cat`, `search_count`).
    Search,
    /// An event (`e_c`, `e_a`, `e_n`, `e_v`).
    Event,
    /// A download (`download`).
    Download,
    /// An outlink (`link`).
    Outlink,
    /// A content impression or interaction (`c_n`, `c_p`, `c_t`, `c_i`).
    Content,
    /// A manual goal conversion (`idgoal=N`).
    Goal,
    /// An ecommerce order (`idgoal=0&ec_id=…`).
    Order,
    /// A heart-beat ping (`ping=1`).
    Ping,
}

impl HitKind {
    /// Every kind, in a fixed order.
    pub const ALL: [HitKind; 9] = [
        HitKind::Pageview,
        HitKind::Search,
        HitKind::Event,
        HitKind::Download,
        HitKind::Outlink,
        HitKind::Content,
        HitKind::Goal,
        HitKind::Order,
        HitKind::Ping,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            HitKind::Pageview => "pageview",
            HitKind::Search => "search",
            HitKind::Event => "event",
            HitKind::Download => "download",
            HitKind::Outlink => "outlink",
            HitKind::Content => "content",
            HitKind::Goal => "goal",
            HitKind::Order => "order",
            HitKind::Ping => "ping",
        }
    }

    /// Whether Matomo writes exactly one `log_link_visit_action` row for an accepted hit.
    pub fn writes_action_row(self) -> bool {
        matches!(
            self,
            HitKind::Pageview
                | HitKind::Search
                | HitKind::Event
                | HitKind::Download
                | HitKind::Outlink
                | HitKind::Content
        )
    }

    /// Index in [`HitKind::ALL`].
    pub fn index(self) -> usize {
        HitKind::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }
}

impl fmt::Display for HitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A mix that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MixError {
    /// An entry is not `kind=weight`.
    #[error("mix entry {0:?} is not kind=weight")]
    Syntax(String),
    /// An unknown kind.
    #[error("mix entry {0:?}: unknown hit kind (known: pageview search event download outlink content goal order ping)")]
    UnknownKind(String),
    /// All weights are zero.
    #[error("the mix has no hit kind with a positive weight")]
    Empty,
}

/// Relative weights of the hit kinds that follow a visit's landing page view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mix {
    weights: [u32; 9],
}

impl Default for Mix {
    /// Roughly what a content site with a small shop sends: mostly page views, then events and
    /// pings, a few of everything else.
    fn default() -> Self {
        Self {
            weights: [55, 4, 14, 2, 3, 3, 2, 1, 16],
        }
    }
}

impl Mix {
    /// The weight of one kind.
    pub fn weight(&self, kind: HitKind) -> u32 {
        self.weights[kind.index()]
    }

    /// Sum of the weights.
    pub fn total(&self) -> u32 {
        self.weights.iter().sum()
    }

    /// The kind at position `roll` in `0..total()`.
    pub fn pick(&self, mut roll: u32) -> HitKind {
        for kind in HitKind::ALL {
            let w = self.weight(kind);
            if roll < w {
                return kind;
            }
            roll -= w;
        }
        HitKind::Pageview
    }
}

impl FromStr for Mix {
    type Err = MixError;

    /// `pageview=60,event=20,ping=20`; kinds not named get weight 0.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut weights = [0u32; 9];
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, weight) = entry
                .split_once('=')
                .ok_or_else(|| MixError::Syntax(entry.to_owned()))?;
            let kind = HitKind::ALL
                .into_iter()
                .find(|k| k.name() == name.trim())
                .ok_or_else(|| MixError::UnknownKind(entry.to_owned()))?;
            weights[kind.index()] = weight
                .trim()
                .parse()
                .map_err(|_| MixError::Syntax(entry.to_owned()))?;
        }
        if weights.iter().all(|w| *w == 0) {
            return Err(MixError::Empty);
        }
        Ok(Self { weights })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_picks() {
        let mix: Mix = "pageview=2, ping=1".parse().unwrap();
        assert_eq!(mix.total(), 3);
        assert_eq!(mix.pick(0), HitKind::Pageview);
        assert_eq!(mix.pick(1), HitKind::Pageview);
        assert_eq!(mix.pick(2), HitKind::Ping);
    }

    #[test]
    fn rejects_bad_mixes() {
        assert_eq!(
            "pageview".parse::<Mix>(),
            Err(MixError::Syntax("pageview".into()))
        );
        assert!(matches!(
            "views=1".parse::<Mix>(),
            Err(MixError::UnknownKind(_))
        ));
        assert_eq!("ping=0".parse::<Mix>(), Err(MixError::Empty));
        assert!(matches!("ping=-1".parse::<Mix>(), Err(MixError::Syntax(_))));
    }
}
