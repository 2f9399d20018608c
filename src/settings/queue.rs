//! The settings of the single-writer queue, from code and the environment.

use std::path::PathBuf;
use std::time::Duration;

use super::{parse_env, Settings};
use crate::error::{Error, Result};
use crate::queue::{Merge, Policy, QueueConfig, Transport};
use crate::rank::RankInfo;
use crate::strategy::Strategy;

impl Settings {
    /// The queue of a single-writer job of several ranks.
    pub(super) fn queue_config(
        &self,
        strategy: Strategy,
        rank: Option<&RankInfo>,
        group: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<QueueConfig>> {
        let Some(rank) = rank.filter(|r| r.world_size > 1) else {
            return Ok(None);
        };
        if strategy != Strategy::SingleWriter {
            return Ok(None);
        }
        let invalid = |name: &str, value: &str, reason: &str| Error::InvalidSetting {
            name: name.into(),
            value: value.into(),
            reason: reason.into(),
        };
        let master_port = env("MASTER_PORT")
            .map(|p| {
                p.parse::<u16>()
                    .map_err(|_| invalid("MASTER_PORT", &p, "expected a port number"))
            })
            .transpose()?;
        let port = match (self.queue_port, env("RANKLOG_QUEUE_PORT")) {
            (Some(p), _) => p,
            (None, Some(p)) => p
                .parse()
                .map_err(|_| invalid("RANKLOG_QUEUE_PORT", &p, "expected a port number"))?,
            (None, None) => master_port.map_or(29501, |p| p.wrapping_add(1)),
        };
        // The job's name for the rendezvous: its group, else its master port.
        let job = match (group, master_port) {
            (Some(g), _) => g.to_string(),
            (None, Some(p)) => format!("port-{p}"),
            (None, None) => {
                return Err(Error::GroupRequired {
                    world_size: rank.world_size,
                    launcher: "single-writer job",
                })
            }
        };
        let token = env("RANKLOG_JOB_TOKEN").unwrap_or_else(|| format!("job:{job}"));
        let seconds = |code: Option<Duration>, var: &str, default: u64| -> Result<Duration> {
            match (code, env(var)) {
                (Some(d), _) => Ok(d),
                (None, Some(v)) => Ok(Duration::from_secs(parse_env(var, &v)?)),
                (None, None) => Ok(Duration::from_secs(default)),
            }
        };
        let transport = match (self.transport, env("RANKLOG_TRANSPORT")) {
            (Some(t), _) => t,
            (None, Some(v)) => v
                .parse()
                .map_err(|r: String| invalid("RANKLOG_TRANSPORT", &v, &r))?,
            (None, None) => Transport::Auto,
        };
        let policy = match (self.drop_policy, env("RANKLOG_DROP_POLICY")) {
            (Some(p), _) => p,
            (None, Some(v)) => v
                .parse()
                .map_err(|r: String| invalid("RANKLOG_DROP_POLICY", &v, &r))?,
            (None, None) => Policy::Block,
        };
        let merge = match (&self.merge, env("RANKLOG_MERGE")) {
            (Some(m), _) => m.clone(),
            (None, Some(v)) => v
                .parse()
                .map_err(|r: String| invalid("RANKLOG_MERGE", &v, &r))?,
            (None, None) => Merge::default(),
        };
        let master = env("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into());
        let rendezvous = match env("RANKLOG_RENDEZVOUS_DIR") {
            Some(d) => PathBuf::from(d),
            // SAFETY: geteuid has no preconditions.
            None => std::env::temp_dir()
                .join(format!("ranklog-{}", unsafe { libc::geteuid() }))
                .join(&job),
        };
        let connect_timeout = seconds(self.connect_timeout, "RANKLOG_QUEUE_CONNECT_TIMEOUT_S", 60)?;
        Ok(Some(QueueConfig {
            transport,
            rendezvous,
            address: format!("{master}:{port}"),
            token,
            merge,
            policy,
            capacity: self.queue_capacity.unwrap_or(8192),
            connect_timeout,
            straggler_timeout: seconds(self.straggler_timeout, "RANKLOG_STRAGGLER_TIMEOUT_S", 60)?,
            goodbye_timeout: self.finish_timeout.unwrap_or(Duration::from_secs(30)),
            stall_timeout: match seconds(self.stall_timeout, "RANKLOG_QUEUE_STALL_TIMEOUT_S", 60)? {
                d if d.is_zero() => {
                    return Err(invalid(
                        "RANKLOG_QUEUE_STALL_TIMEOUT_S",
                        "0",
                        "the stall timeout must be at least 1 s",
                    ))
                }
                d => d,
            },
        }))
    }
}
