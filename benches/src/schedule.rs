//! Open-model arrival schedule: when each hit is *meant* to be sent.
//!
//! A rate profile is a list of segments whose rate goes linearly from a start to an end value
//! (a constant rate, a ramp, and a staircase of steps are all such lists). Hit number `j` is due
//! at the instant the integral of the rate reaches `j`, so the schedule never depends on how
//! fast the target answers: a slow target does not slow the offered load down (the failure of
//! closed-model tools), and latency is measured from these due times.

use std::time::Duration;

use serde::Serialize;

/// One piece of a rate profile.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Segment {
    /// Length of the segment.
    #[serde(rename = "secs", serialize_with = "secs")]
    pub duration: Duration,
    /// Hits per second at its start.
    pub start_rate: f64,
    /// Hits per second at its end.
    pub end_rate: f64,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// A profile that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProfileError {
    /// Rates must be finite and not negative.
    #[error("rate {0} is not a usable hits-per-second value")]
    BadRate(f64),
    /// The run must last.
    #[error("the duration must be positive")]
    ZeroDuration,
    /// Steps need a positive length.
    #[error("step length must be positive")]
    ZeroStep,
}

/// A whole rate profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateProfile {
    /// The segments, in order.
    pub segments: Vec<Segment>,
}

fn check_rate(r: f64) -> Result<f64, ProfileError> {
    if r.is_finite() && r >= 0.0 {
        Ok(r)
    } else {
        Err(ProfileError::BadRate(r))
    }
}

impl RateProfile {
    /// `rate` hits per second for `duration`.
    pub fn constant(rate: f64, duration: Duration) -> Result<Self, ProfileError> {
        Self::ramp(rate, rate, duration)
    }

    /// A linear ramp from `from` to `to` hits per second over `duration`.
    pub fn ramp(from: f64, to: f64, duration: Duration) -> Result<Self, ProfileError> {
        if duration.is_zero() {
            return Err(ProfileError::ZeroDuration);
        }
        let segment = Segment {
            duration,
            start_rate: check_rate(from)?,
            end_rate: check_rate(to)?,
        };
        Ok(Self {
            segments: vec![segment],
        })
    }

    /// Steps of `step` seconds starting at `from` hits/s and rising by `by` until `duration`.
    pub fn steps(
        from: f64,
        by: f64,
        step: Duration,
        duration: Duration,
    ) -> Result<Self, ProfileError> {
        if duration.is_zero() {
            return Err(ProfileError::ZeroDuration);
        }
        if step.is_zero() {
            return Err(ProfileError::ZeroStep);
        }
        check_rate(from)?;
        if !by.is_finite() {
            return Err(ProfileError::BadRate(by));
        }
        let mut segments = Vec::new();
        let mut left = duration;
        let mut rate = from;
        while !left.is_zero() {
            let d = left.min(step);
            let r = check_rate(rate)?;
            segments.push(Segment {
                duration: d,
                start_rate: r,
                end_rate: r,
            });
            left -= d;
            rate += by;
        }
        Ok(Self { segments })
    }

    /// Total length.
    pub fn duration(&self) -> Duration {
        self.segments.iter().map(|s| s.duration).sum()
    }

    /// Hits the profile offers in total (the integral of the rate).
    pub fn total_hits(&self) -> f64 {
        self.segments.iter().map(Segment::area).sum()
    }

    /// The intended rate at `t` after the start.
    pub fn rate_at(&self, t: Duration) -> f64 {
        let mut start = Duration::ZERO;
        for s in &self.segments {
            if t < start + s.duration {
                let x = (t - start).as_secs_f64() / s.duration.as_secs_f64();
                return s.start_rate + (s.end_rate - s.start_rate) * x;
            }
            start += s.duration;
        }
        0.0
    }

    /// Start and end of each segment, with its rate at the start (for step analysis).
    pub fn windows(&self) -> Vec<(Duration, Duration, f64)> {
        let mut start = Duration::ZERO;
        self.segments
            .iter()
            .map(|s| {
                let w = (start, start + s.duration, s.start_rate);
                start += s.duration;
                w
            })
            .collect()
    }

    /// The due times of all hits, as an iterator.
    pub fn arrivals(&self) -> Arrivals<'_> {
        Arrivals {
            profile: self,
            next: 0,
            segment: 0,
            base_count: 0.0,
            base_time: Duration::ZERO,
        }
    }
}

impl Segment {
    fn area(&self) -> f64 {
        (self.start_rate + self.end_rate) / 2.0 * self.duration.as_secs_f64()
    }

    /// Seconds into the segment at which the cumulative count reaches `k`, if inside it.
    fn time_of(&self, k: f64) -> Option<f64> {
        let len = self.duration.as_secs_f64();
        let a = self.start_rate;
        let b = (self.end_rate - self.start_rate) / len;
        let t = if b.abs() < 1e-12 {
            if a <= 0.0 {
                return None;
            }
            k / a
        } else {
            let disc = a * a + 2.0 * b * k;
            if disc < 0.0 {
                return None;
            }
            (-a + disc.sqrt()) / b
        };
        (t >= 0.0 && t < len).then_some(t)
    }
}

/// Due times of successive hits, relative to the start of the run.
pub struct Arrivals<'a> {
    profile: &'a RateProfile,
    next: u64,
    segment: usize,
    base_count: f64,
    base_time: Duration,
}

impl Iterator for Arrivals<'_> {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let k = self.next as f64;
        while let Some(s) = self.profile.segments.get(self.segment) {
            if let Some(t) = s.time_of((k - self.base_count).max(0.0)) {
                self.next += 1;
                return Some(self.base_time + Duration::from_secs_f64(t));
            }
            self.base_count += s.area();
            self.base_time += s.duration;
            self.segment += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_rate_is_evenly_spaced() {
        let p = RateProfile::constant(100.0, Duration::from_secs(2)).unwrap();
        let times: Vec<Duration> = p.arrivals().collect();
        assert_eq!(times.len(), 200);
        assert_eq!(times[0], Duration::ZERO);
        assert!((times[100].as_secs_f64() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn ramp_and_steps_offer_their_integral() {
        let ramp = RateProfile::ramp(0.0, 200.0, Duration::from_secs(10)).unwrap();
        let n = ramp.arrivals().count() as f64;
        assert!((n - 1000.0).abs() <= 1.0, "{n}");
        // the first half of a ramp from 0 carries a quarter of its hits
        let first_half = ramp.arrivals().filter(|t| t.as_secs_f64() < 5.0).count() as f64;
        assert!((first_half - 250.0).abs() <= 1.0, "{first_half}");
        let steps =
            RateProfile::steps(100.0, 100.0, Duration::from_secs(2), Duration::from_secs(6))
                .unwrap();
        assert_eq!(steps.segments.len(), 3);
        let n = steps.arrivals().count() as f64;
        assert!((n - 1200.0).abs() <= 1.0, "{n}");
        assert!((steps.rate_at(Duration::from_secs(5)) - 300.0).abs() < 1e-9);
    }

    #[test]
    fn bad_profiles_are_refused() {
        assert_eq!(
            RateProfile::constant(f64::NAN, Duration::from_secs(1))
                .unwrap_err()
                .to_string(),
            "rate NaN is not a usable hits-per-second value"
        );
        assert_eq!(
            RateProfile::constant(1.0, Duration::ZERO),
            Err(ProfileError::ZeroDuration)
        );
        assert_eq!(
            RateProfile::steps(1.0, 1.0, Duration::ZERO, Duration::from_secs(1)),
            Err(ProfileError::ZeroStep)
        );
        assert!(
            RateProfile::steps(10.0, -20.0, Duration::from_secs(1), Duration::from_secs(3))
                .is_err()
        );
    }
}
