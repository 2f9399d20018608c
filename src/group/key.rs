//! The group key that ties the runs of one job together, and the names of
//! grouped runs.
//!
//! The key is, first match wins: the `group` setting or `RANKLOG_GROUP`;
//! `TORCHELASTIC_RUN_ID` unless it is the literal `none` (torchrun's default);
//! `SLURM_JOB_ID`, followed by `.SLURM_STEP_ID` when that is set. A job of
//! several ranks that finds none of them is an error
//! ([`Error::GroupRequired`]): ranklog never silently gives every rank its own
//! group. Characters a group may not hold (see [`crate::Settings::group`]) are
//! replaced by `-` in keys taken from a launcher.

use crate::error::{Error, Result};
use crate::rank::Detected;

/// Decides the group key of a run.
///
/// `explicit` is the setting or `RANKLOG_GROUP` (already checked). A missing
/// key is an error only when `required` (a [`Strategy::Grouped`](crate::Strategy::Grouped) run that
/// writes files) in a job of more than one rank.
pub(crate) fn resolve(
    explicit: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
    rank: Option<&Detected>,
    required: bool,
) -> Result<Option<String>> {
    let from_env = || {
        let var = |k: &str| {
            env(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if let Some(id) = var("TORCHELASTIC_RUN_ID").filter(|id| id != "none") {
            return Some(sanitize(&id));
        }
        let job = var("SLURM_JOB_ID")?;
        Some(sanitize(&match var("SLURM_STEP_ID") {
            Some(step) => format!("{job}.{step}"),
            None => job,
        }))
    };
    let group = explicit.or_else(from_env);
    match (group, rank) {
        (None, Some(d)) if d.info.world_size > 1 && required => Err(Error::GroupRequired {
            launcher: d.launcher.as_str(),
            world_size: d.info.world_size,
        }),
        (group, _) => Ok(group),
    }
}

/// The name of a grouped rank's run when the user named none: `<group>-rank<N>`.
pub(crate) fn run_name(group: &str, rank: u32) -> String {
    format!("{group}-rank{rank}")
}

/// Makes a launcher's job id a valid group: letters, digits, `-`, `_`, `.`,
/// not starting with `.`, at most 128 characters.
fn sanitize(id: &str) -> String {
    let mut s: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(crate::names::MAX_NAME_LEN)
        .collect();
    if s.starts_with('.') {
        s.replace_range(0..1, "-");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::{Launcher, RankInfo};

    use crate::settings::env_table as env;

    fn ranks(world_size: u32) -> Detected {
        Detected {
            launcher: Launcher::Torchrun,
            info: RankInfo {
                world_size,
                local_world_size: world_size,
                ..RankInfo::SINGLE
            },
        }
    }

    #[test]
    fn key_rules_in_order() -> Result<()> {
        let four = ranks(4);
        type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], Option<&'a str>);
        let table: &[Case] = &[
            (
                Some("mine"),
                &[("TORCHELASTIC_RUN_ID", "te"), ("SLURM_JOB_ID", "7")],
                Some("mine"),
            ),
            (
                None,
                &[("TORCHELASTIC_RUN_ID", "te-42"), ("SLURM_JOB_ID", "7")],
                Some("te-42"),
            ),
            (
                None,
                &[("TORCHELASTIC_RUN_ID", "none"), ("SLURM_JOB_ID", "7")],
                Some("7"),
            ),
            (
                None,
                &[("SLURM_JOB_ID", "7"), ("SLURM_STEP_ID", "2")],
                Some("7.2"),
            ),
            (None, &[("TORCHELASTIC_RUN_ID", "a b/c:d")], Some("a-b-c-d")),
            (None, &[("TORCHELASTIC_RUN_ID", ".x")], Some("-x")),
        ];
        for (explicit, vars, want) in table {
            let got = resolve(explicit.map(String::from), &env(vars), Some(&four), true)?;
            assert_eq!(got.as_deref(), *want, "{explicit:?} {vars:?}");
        }
        Ok(())
    }

    #[test]
    fn multi_rank_job_without_key_is_an_error() -> Result<()> {
        let e = resolve(
            None,
            &env(&[("TORCHELASTIC_RUN_ID", "none")]),
            Some(&ranks(4)),
            true,
        );
        assert!(matches!(e, Err(Error::GroupRequired { world_size: 4, .. })));
        // One process, one rank, or a strategy with one run: no group needed.
        assert_eq!(resolve(None, &env(&[]), None, true)?, None);
        assert_eq!(resolve(None, &env(&[]), Some(&ranks(1)), true)?, None);
        assert_eq!(resolve(None, &env(&[]), Some(&ranks(4)), false)?, None);
        Ok(())
    }

    #[test]
    fn run_names_carry_group_and_rank() {
        assert_eq!(run_name("job-7", 3), "job-7-rank3");
    }
}
