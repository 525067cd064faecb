//! Targets (tracking endpoints) and how visitors are spread over them.
//!
//! A visitor is assigned a target once, when the model first creates it; every hit of every
//! visit of that visitor then goes to that target. That is the property Trafficinator lacks and
//! the one Matomo needs: a visit split over two independent Matomo installs is two half-visits.

use std::fmt;
use std::str::FromStr;

use http::Uri;
use rand::Rng;
use serde::Serialize;

/// How visitors are spread over targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Distribution {
    /// New visitor number n goes to target n mod count.
    RoundRobin,
    /// Smooth weighted round robin over the targets' weights (deterministic).
    Weighted,
    /// A random target for each new visitor, in proportion to the weights.
    Random,
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Distribution::RoundRobin => "round-robin",
            Distribution::Weighted => "weighted",
            Distribution::Random => "random",
        })
    }
}

/// A target URL that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    /// Not a URL.
    #[error("target {0:?} is not a valid URL")]
    BadUrl(String),
    /// Only plain HTTP is spoken (put TLS in front of the harness's side, or test the backend).
    #[error("target {0:?}: only http:// URLs are supported")]
    UnsupportedScheme(String),
    /// Weights must match the targets.
    #[error("{weights} weights given for {targets} targets")]
    WeightCount {
        /// Weights given.
        weights: usize,
        /// Targets given.
        targets: usize,
    },
    /// A weight of zero everywhere.
    #[error("target weights must not all be zero")]
    ZeroWeights,
    /// No target.
    #[error("at least one --target is needed")]
    NoTarget,
}

/// One tracking endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// The endpoint URL as given, with `matomo.php` appended when it ended in `/`.
    pub url: String,
    /// Relative weight (1 unless given).
    pub weight: u32,
    #[serde(skip)]
    uri: Uri,
}

impl Target {
    /// Parses `http://host:port/path/matomo.php` (or `http://host:port/`, meaning `/matomo.php`).
    pub fn parse(raw: &str, weight: u32) -> Result<Self, TargetError> {
        let mut url = raw.trim().to_owned();
        let uri: Uri = url
            .parse()
            .map_err(|_| TargetError::BadUrl(raw.to_owned()))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(_) => return Err(TargetError::UnsupportedScheme(raw.to_owned())),
            None => return Err(TargetError::BadUrl(raw.to_owned())),
        }
        if uri.host().is_none() {
            return Err(TargetError::BadUrl(raw.to_owned()));
        }
        if uri.query().is_some() {
            return Err(TargetError::BadUrl(raw.to_owned()));
        }
        if uri.path().ends_with('/') || uri.path().is_empty() {
            if !url.ends_with('/') {
                url.push('/');
            }
            url.push_str("matomo.php");
        }
        let uri = url
            .parse()
            .map_err(|_| TargetError::BadUrl(raw.to_owned()))?;
        Ok(Self { url, weight, uri })
    }

    /// The endpoint as a URI.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }
}

/// Parses the targets and their optional weights.
pub fn parse_targets(urls: &[String], weights: &[u32]) -> Result<Vec<Target>, TargetError> {
    if urls.is_empty() {
        return Err(TargetError::NoTarget);
    }
    if !weights.is_empty() && weights.len() != urls.len() {
        return Err(TargetError::WeightCount {
            weights: weights.len(),
            targets: urls.len(),
        });
    }
    let targets = urls
        .iter()
        .enumerate()
        .map(|(i, u)| Target::parse(u, weights.get(i).copied().unwrap_or(1)))
        .collect::<Result<Vec<_>, _>>()?;
    if targets.iter().all(|t| t.weight == 0) {
        return Err(TargetError::ZeroWeights);
    }
    Ok(targets)
}

/// Picks the target of each new visitor.
#[derive(Debug, Clone)]
pub struct Assigner {
    strategy: Distribution,
    weights: Vec<u32>,
    next: usize,
    current: Vec<i64>,
}

impl Assigner {
    /// An assigner over targets with these weights.
    pub fn new(strategy: Distribution, weights: Vec<u32>) -> Self {
        let current = vec![0; weights.len()];
        Self {
            strategy,
            weights,
            next: 0,
            current,
        }
    }

    /// The target of the next new visitor.
    pub fn assign(&mut self, rng: &mut impl Rng) -> usize {
        let n = self.weights.len();
        if n <= 1 {
            return 0;
        }
        match self.strategy {
            Distribution::RoundRobin => {
                let t = self.next % n;
                self.next += 1;
                t
            }
            Distribution::Weighted => {
                // nginx's smooth weighted round robin: spreads a 3:1 split as a a b a, not a a a b.
                let total: i64 = self.weights.iter().map(|w| i64::from(*w)).sum();
                let mut best = 0;
                for i in 0..n {
                    self.current[i] += i64::from(self.weights[i]);
                    if self.current[i] > self.current[best] {
                        best = i;
                    }
                }
                self.current[best] -= total;
                best
            }
            Distribution::Random => {
                let total: u32 = self.weights.iter().sum();
                let mut roll = rng.random_range(0..total.max(1));
                for (i, w) in self.weights.iter().enumerate() {
                    if roll < *w {
                        return i;
                    }
                    roll -= w;
                }
                n - 1
            }
        }
    }
}

impl FromStr for Distribution {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        <Self as clap::ValueEnum>::from_str(s, true)
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn urls_are_normalised_and_checked() {
        assert_eq!(
            Target::parse("http://127.0.0.1:8080/", 1).unwrap().url,
            "http://127.0.0.1:8080/matomo.php"
        );
        assert_eq!(
            Target::parse("http://h/piwik.php", 1).unwrap().url,
            "http://h/piwik.php"
        );
        assert!(matches!(
            Target::parse("https://h/", 1),
            Err(TargetError::UnsupportedScheme(_))
        ));
        assert!(matches!(
            Target::parse("not a url", 1),
            Err(TargetError::BadUrl(_))
        ));
        assert!(matches!(
            parse_targets(&[], &[]),
            Err(TargetError::NoTarget)
        ));
        assert!(matches!(
            parse_targets(&["http://a/".into()], &[1, 2]),
            Err(TargetError::WeightCount { .. })
        ));
    }

    #[test]
    fn weighted_is_smooth_and_proportional() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut a = Assigner::new(Distribution::Weighted, vec![3, 1]);
        let picks: Vec<usize> = (0..8).map(|_| a.assign(&mut rng)).collect();
        assert_eq!(picks, vec![0, 0, 1, 0, 0, 0, 1, 0]);
        let mut r = Assigner::new(Distribution::Random, vec![3, 1]);
        let zeros = (0..4000).filter(|_| r.assign(&mut rng) == 0).count();
        assert!((2800..3200).contains(&zeros), "{zeros}");
    }
}
