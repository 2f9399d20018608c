//! How the ranks of a distributed job share the tracking: the [`Strategy`].

use crate::error::{Error, Result};

/// Which ranks of a multi-process job write runs, and how.
///
/// Chosen with [`crate::Settings::strategy`] or `RANKLOG_STRATEGY`; the
/// training code is the same on every rank whatever the strategy. In a
/// single-process job every strategy gives the one process an ordinary run.
///
/// # Examples
///
/// ```
/// use ranklog::Strategy;
/// let s: Strategy = "rank-zero-only".parse()?;
/// assert_eq!(s, Strategy::RankZeroOnly);
/// assert_eq!(Strategy::default(), Strategy::Grouped);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Strategy {
    /// Every rank opens its own run; the runs of one job share a group key
    /// (named `<group>-rank<N>` unless named). The default.
    #[default]
    Grouped,
    /// Rank 0 owns the run; every other rank gets a disabled run that writes
    /// nothing (what Lightning and accelerate do). The run stands for the
    /// whole job, so it records no rank.
    RankZeroOnly,
    /// Rank 0 owns the one run; every other rank's rows travel to it through
    /// a cross-process queue and are merged there ([`crate::queue`]).
    SingleWriter,
}

impl Strategy {
    /// The name used by `RANKLOG_STRATEGY` and `ranklog launch --strategy`:
    /// `grouped`, `rank-zero-only` or `single-writer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Grouped => "grouped",
            Strategy::RankZeroOnly => "rank-zero-only",
            Strategy::SingleWriter => "single-writer",
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Strategy {
    type Err = Error;

    /// Parses `grouped`, `rank-zero-only` (also `rank_zero_only`,
    /// `rankzeroonly`, `rank0`) or `single-writer` (also `single_writer`),
    /// ignoring case.
    fn from_str(s: &str) -> Result<Strategy> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "grouped" => Ok(Strategy::Grouped),
            "rank-zero-only" | "rankzeroonly" | "rank0" => Ok(Strategy::RankZeroOnly),
            "single-writer" | "singlewriter" => Ok(Strategy::SingleWriter),
            _ => Err(Error::InvalidSetting {
                name: "strategy".into(),
                value: s.to_string(),
                reason: "use grouped, rank-zero-only or single-writer".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() -> Result<()> {
        for s in [
            Strategy::Grouped,
            Strategy::RankZeroOnly,
            Strategy::SingleWriter,
        ] {
            assert_eq!(s.as_str().parse::<Strategy>()?, s);
        }
        assert_eq!(
            "RANK_ZERO_ONLY".parse::<Strategy>()?,
            Strategy::RankZeroOnly
        );
        assert!("everyone".parse::<Strategy>().is_err());
        Ok(())
    }
}
