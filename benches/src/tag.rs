//! Hit tags: how a generated hit is found again in Matomo's tables.
//!
//! Every hit carries a `pv_id` of six characters that Matomo stores as-is in
//! `log_link_visit_action.idpageview` for every action row (page view, site search, event,
//! download, outlink, content). The first two characters are the run tag (random per run), the
//! last four the hit's sequence number in base 62, so a row maps back to exactly one hit of one
//! run without any join. Ecommerce orders carry `ec_id = lg-<run id>-<seq>`, which Matomo stores
//! in `log_conversion.idorder`. This module owns that encoding and nothing else.

/// The 62 characters Matomo's JavaScript tracker also uses for `pv_id`.
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Largest number of hits one run can tag (62^4).
pub const MAX_HITS_PER_RUN: u64 = 62 * 62 * 62 * 62;

/// The identity of one run: a 2-character tag inside `pv_id` and a longer id for order ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunTag {
    short: [u8; 2],
    long: String,
}

/// A tag that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TagError {
    /// The run tag is not two characters of `[0-9A-Za-z]`.
    #[error("run tag {0:?} must be two characters of [0-9A-Za-z]")]
    BadRunTag(String),
    /// The run would send more hits than four base-62 digits can number.
    #[error(
        "hit number {0} is beyond the {MAX_HITS_PER_RUN} hits one run can tag; shorten the run"
    )]
    TooManyHits(u64),
}

impl RunTag {
    /// A run tag from a random 64-bit value (the run id).
    pub fn from_random(value: u64) -> Self {
        let short = [
            ALPHABET[(value % 62) as usize],
            ALPHABET[((value / 62) % 62) as usize],
        ];
        Self {
            short,
            long: format!("{value:016x}"),
        }
    }

    /// A run tag given explicitly (two base-62 characters), with a run id for order ids.
    pub fn new(short: &str, long: &str) -> Result<Self, TagError> {
        let bytes = short.as_bytes();
        if bytes.len() != 2 || !bytes.iter().all(|b| ALPHABET.contains(b)) {
            return Err(TagError::BadRunTag(short.to_owned()));
        }
        Ok(Self {
            short: [bytes[0], bytes[1]],
            long: long.to_owned(),
        })
    }

    /// The two characters that open every `pv_id` of this run.
    pub fn short(&self) -> &str {
        std::str::from_utf8(&self.short).unwrap_or("??")
    }

    /// The run id used in order ids.
    pub fn long(&self) -> &str {
        &self.long
    }

    /// The `pv_id` of hit `seq`.
    pub fn pv_id(&self, seq: u64) -> Result<String, TagError> {
        if seq >= MAX_HITS_PER_RUN {
            return Err(TagError::TooManyHits(seq));
        }
        let mut out = Vec::with_capacity(6);
        out.extend_from_slice(&self.short);
        let mut digits = [0u8; 4];
        let mut rest = seq;
        for d in digits.iter_mut().rev() {
            *d = ALPHABET[(rest % 62) as usize];
            rest /= 62;
        }
        out.extend_from_slice(&digits);
        Ok(String::from_utf8(out).unwrap_or_default())
    }

    /// The hit number encoded in an `idpageview`, when it belongs to this run.
    pub fn seq_of_pv_id(&self, pv_id: &str) -> Option<u64> {
        let bytes = pv_id.as_bytes();
        if bytes.len() != 6 || bytes[..2] != self.short {
            return None;
        }
        let mut seq = 0u64;
        for b in &bytes[2..] {
            let digit = ALPHABET.iter().position(|a| a == b)? as u64;
            seq = seq * 62 + digit;
        }
        Some(seq)
    }

    /// The `ec_id` (stored as `log_conversion.idorder`) of order hit `seq`.
    pub fn order_id(&self, seq: u64) -> String {
        format!("lg-{}-{seq}", self.long)
    }

    /// The prefix shared by every order id of this run (for a `LIKE 'prefix%'` scan).
    pub fn order_id_prefix(&self) -> String {
        format!("lg-{}-", self.long)
    }

    /// The hit number encoded in an order id, when it belongs to this run.
    pub fn seq_of_order_id(&self, idorder: &str) -> Option<u64> {
        idorder.strip_prefix(&self.order_id_prefix())?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pv_ids_round_trip_and_stay_six_chars() {
        let tag = RunTag::new("Zq", "abc").unwrap();
        for seq in [0, 1, 61, 62, 3843, 1_000_000, MAX_HITS_PER_RUN - 1] {
            let pv = tag.pv_id(seq).unwrap();
            assert_eq!(pv.len(), 6);
            assert!(pv.starts_with("Zq"));
            assert_eq!(tag.seq_of_pv_id(&pv), Some(seq));
        }
        assert_eq!(
            tag.pv_id(MAX_HITS_PER_RUN),
            Err(TagError::TooManyHits(MAX_HITS_PER_RUN))
        );
    }

    #[test]
    fn foreign_ids_are_not_ours() {
        let tag = RunTag::new("Zq", "abc").unwrap();
        let other = RunTag::new("Zr", "abd").unwrap();
        assert_eq!(tag.seq_of_pv_id(&other.pv_id(5).unwrap()), None);
        assert_eq!(tag.seq_of_pv_id("Zq00"), None);
        assert_eq!(tag.seq_of_pv_id("Zq00-0"), None);
        assert_eq!(tag.seq_of_order_id(&tag.order_id(42)), Some(42));
        assert_eq!(tag.seq_of_order_id(&other.order_id(42)), None);
        assert!(RunTag::new("Z", "x").is_err());
        assert!(RunTag::new("Z-", "x").is_err());
    }
}
