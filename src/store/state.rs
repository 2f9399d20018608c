//! Whether a run is running, finished, failed or crashed.

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::meta::Meta;
use crate::record::{Exit, ExitState};

/// How often a live writer touches its log when there is nothing else to write.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);

/// A run on another host whose log has not changed for this long, and that
/// has no exit record, is considered crashed.
pub const STALE_AFTER: Duration = Duration::from_secs(60);

/// The state of a run as seen from its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// No exit record, and the writer is alive.
    Running,
    /// Ended normally.
    Finished,
    /// Ended as failed (a panic, or marked failed).
    Failed,
    /// No exit record, and the writer is gone.
    Crashed,
}

impl RunState {
    /// The lower-case name used in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Finished => "finished",
            RunState::Failed => "failed",
            RunState::Crashed => "crashed",
        }
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Decides the state of a run.
///
/// With an exit record: finished or failed. Without: on the host that wrote
/// it, running while the writing process (same pid and start time) lives; on
/// another host, running while the log changed within [`STALE_AFTER`].
pub fn detect(meta: &Meta, exit: Option<&Exit>, log: &Path) -> RunState {
    if let Some(exit) = exit {
        return match exit.state {
            ExitState::Finished => RunState::Finished,
            ExitState::Failed => RunState::Failed,
        };
    }
    let alive = if meta.host == crate::sys::hostname() {
        crate::sys::process_alive(meta.pid, meta.pid_start)
    } else {
        std::fs::metadata(log)
            .and_then(|m| m.modified())
            .is_ok_and(|t| changed_recently(t, SystemTime::now()))
    };
    if alive {
        RunState::Running
    } else {
        RunState::Crashed
    }
}

/// Whether a log modified at `modified` changed within [`STALE_AFTER`] of
/// `now`. A time in the future (this host's clock went backwards, or is
/// behind the file server's) counts as recent: a live run must not read as
/// crashed because of a clock.
fn changed_recently(modified: SystemTime, now: SystemTime) -> bool {
    match now.duration_since(modified) {
        Ok(age) => age < STALE_AFTER,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_modified_in_the_future_is_recent_not_crashed() {
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        assert!(changed_recently(now + hour, now), "clock went backwards");
        assert!(changed_recently(now - Duration::from_secs(5), now));
        assert!(!changed_recently(now - hour, now));
    }
}
