//! Where a process stands in a multi-process job.

use serde::{Deserialize, Serialize};

/// The position of one process in a distributed job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RankInfo {
    /// Global rank, `0..world_size`.
    pub rank: u32,
    /// Rank on this node, `0..local_world_size`.
    pub local_rank: u32,
    /// Number of processes in the job.
    pub world_size: u32,
    /// Number of processes on this node.
    pub local_world_size: u32,
    /// Index of this node.
    pub node_rank: u32,
}

impl RankInfo {
    /// The position of a process that is not part of a multi-process job.
    pub const SINGLE: RankInfo = RankInfo {
        rank: 0,
        local_rank: 0,
        world_size: 1,
        local_world_size: 1,
        node_rank: 0,
    };
}
