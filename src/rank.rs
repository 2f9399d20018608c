//! Where a process stands in a multi-process job, read from its launcher's
//! environment.
//!
//! [`detect`] looks for the variables of each launcher in turn; the first
//! launcher whose rank variable is set wins:
//!
//! | launcher | rank | world size | local rank | local world size | node |
//! |---|---|---|---|---|---|
//! | torchrun ([`Launcher::Torchrun`]) | `RANK` | `WORLD_SIZE` | `LOCAL_RANK` | `LOCAL_WORLD_SIZE` | `GROUP_RANK` |
//! | Open MPI ([`Launcher::OpenMpi`]) | `OMPI_COMM_WORLD_RANK` | `OMPI_COMM_WORLD_SIZE` | `OMPI_COMM_WORLD_LOCAL_RANK` | `OMPI_COMM_WORLD_LOCAL_SIZE` | `OMPI_COMM_WORLD_NODE_RANK` |
//! | MPICH, Intel MPI ([`Launcher::Mpich`]) | `PMI_RANK` | `PMI_SIZE` | `MPI_LOCALRANKID` | `MPI_LOCALNRANKS` | — |
//! | Slurm ([`Launcher::Slurm`]) | `SLURM_PROCID` | `SLURM_NTASKS` | `SLURM_LOCALID` | `SLURM_TASKS_PER_NODE` | `SLURM_NODEID` |
//!
//! torchrun comes first because it is often started inside a Slurm job, where
//! `SLURM_PROCID` describes the torchrun process, not the rank. The rank and
//! world size variables are required together; a missing partner, a value
//! that is not a number, or a rank outside the world is an
//! [`Error::RankEnvironment`] naming the variable. Optional variables take
//! these defaults: local world size = world size (one node), node = 0 (for
//! MPICH: rank ÷ local world size, which assumes ranks placed node by node).
//!
//! No launcher variable at all means a single process: [`detect`] returns `None`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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

/// The launcher whose variables gave a process its rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Launcher {
    /// `torchrun` / `torch.distributed.run` (and `ranklog launch`).
    Torchrun,
    /// Open MPI's `mpirun`.
    OpenMpi,
    /// MPICH's or Intel MPI's `mpiexec` (PMI).
    Mpich,
    /// Slurm's `srun`.
    Slurm,
    /// Set in code with [`crate::Settings::rank`].
    Explicit,
}

impl Launcher {
    /// A short name for messages: `torchrun`, `Open MPI`, `MPICH/Intel MPI`, `Slurm`.
    pub fn as_str(self) -> &'static str {
        match self {
            Launcher::Torchrun => "torchrun",
            Launcher::OpenMpi => "Open MPI",
            Launcher::Mpich => "MPICH/Intel MPI",
            Launcher::Slurm => "Slurm",
            Launcher::Explicit => "Settings::rank",
        }
    }
}

/// A rank found in the environment, with the launcher that set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detected {
    /// The launcher whose variables matched.
    pub launcher: Launcher,
    /// The position of this process.
    pub info: RankInfo,
}

/// Reads this process's rank from a launcher's environment variables.
///
/// `env` looks a variable up (`None` when unset or empty); ranklog passes the
/// process environment, tests pass a table. Returns `None` when no launcher
/// variable is set (a single process).
///
/// # Errors
///
/// [`Error::RankEnvironment`] when a launcher's variables are inconsistent: a
/// missing partner variable, a value that is not a number, a rank not below
/// its world size.
///
/// # Examples
///
/// ```
/// use ranklog::rank::{detect, Launcher};
/// let env = |k: &str| match k {
///     "RANK" => Some("3".to_string()),
///     "WORLD_SIZE" | "LOCAL_WORLD_SIZE" => Some("4".to_string()),
///     "LOCAL_RANK" => Some("3".to_string()),
///     "SLURM_PROCID" => Some("0".to_string()), // torchrun inside an sbatch job
///     _ => None,
/// };
/// let found = detect(&env)?.ok_or("no rank")?;
/// assert_eq!(found.launcher, Launcher::Torchrun);
/// assert_eq!(found.info.rank, 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn detect(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Detected>> {
    let env = Env { get: env };
    if env.any(&["RANK", "WORLD_SIZE"]) {
        return torchrun(&env).map(Some);
    }
    if env.any(&["OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"]) {
        return open_mpi(&env).map(Some);
    }
    if env.any(&["PMI_RANK", "PMI_SIZE"]) {
        return mpich(&env).map(Some);
    }
    if env.any(&["SLURM_PROCID"]) {
        return slurm(&env).map(Some);
    }
    Ok(None)
}

struct Env<'a> {
    get: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    fn any(&self, vars: &[&str]) -> bool {
        vars.iter().any(|v| self.raw(v).is_some())
    }

    fn raw(&self, var: &str) -> Option<String> {
        (self.get)(var).filter(|v| !v.trim().is_empty())
    }

    fn number(&self, var: &str, launcher: Launcher) -> Result<Option<u32>> {
        match self.raw(var) {
            None => Ok(None),
            Some(v) => v.trim().parse::<u32>().map(Some).map_err(|_| {
                bad(
                    var,
                    format!(
                        "{var}={v:?} is not a whole number (set by {})",
                        launcher.as_str()
                    ),
                )
            }),
        }
    }

    /// A variable that must be set because `partner` is.
    fn required(&self, var: &str, partner: &str, launcher: Launcher) -> Result<u32> {
        self.number(var, launcher)?.ok_or_else(|| {
            bad(
                var,
                format!(
                    "{partner} is set but {var} is not; {} sets both, so the environment is incomplete",
                    launcher.as_str()
                ),
            )
        })
    }
}

fn bad(var: &str, reason: String) -> Error {
    Error::RankEnvironment {
        var: var.to_string(),
        reason,
    }
}

/// Checks the ranges and builds the rank.
fn build(
    launcher: Launcher,
    vars: [&str; 4],
    [rank, world_size, local_rank, local_world_size]: [u32; 4],
    node_rank: u32,
) -> Result<Detected> {
    let [rank_var, world_var, local_var, local_world_var] = vars;
    if world_size == 0 {
        return Err(bad(
            world_var,
            format!("{world_var}=0: a job has at least one process"),
        ));
    }
    if rank >= world_size {
        return Err(bad(
            rank_var,
            format!("{rank_var}={rank} is not below {world_var}={world_size}"),
        ));
    }
    if local_world_size == 0 || local_world_size > world_size {
        return Err(bad(
            local_world_var,
            format!(
                "{local_world_var}={local_world_size} must be between 1 and {world_var}={world_size}"
            ),
        ));
    }
    if local_rank >= local_world_size {
        return Err(bad(
            local_var,
            format!("{local_var}={local_rank} is not below {local_world_var}={local_world_size}"),
        ));
    }
    Ok(Detected {
        launcher,
        info: RankInfo {
            rank,
            local_rank,
            world_size,
            local_world_size,
            node_rank,
        },
    })
}

fn torchrun(env: &Env) -> Result<Detected> {
    let l = Launcher::Torchrun;
    let rank = env.required("RANK", "WORLD_SIZE", l)?;
    let world = env.required("WORLD_SIZE", "RANK", l)?;
    let local = env.required("LOCAL_RANK", "RANK", l)?;
    let local_world = env.number("LOCAL_WORLD_SIZE", l)?.unwrap_or(world);
    let node = env.number("GROUP_RANK", l)?.unwrap_or(0);
    build(
        l,
        ["RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"],
        [rank, world, local, local_world],
        node,
    )
}

fn open_mpi(env: &Env) -> Result<Detected> {
    let l = Launcher::OpenMpi;
    let rank = env.required("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", l)?;
    let world = env.required("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", l)?;
    let local = env.required("OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_RANK", l)?;
    let local_world = env.required("OMPI_COMM_WORLD_LOCAL_SIZE", "OMPI_COMM_WORLD_RANK", l)?;
    let node = env.number("OMPI_COMM_WORLD_NODE_RANK", l)?.unwrap_or(0);
    build(
        l,
        [
            "OMPI_COMM_WORLD_RANK",
            "OMPI_COMM_WORLD_SIZE",
            "OMPI_COMM_WORLD_LOCAL_RANK",
            "OMPI_COMM_WORLD_LOCAL_SIZE",
        ],
        [rank, world, local, local_world],
        node,
    )
}

fn mpich(env: &Env) -> Result<Detected> {
    let l = Launcher::Mpich;
    let rank = env.required("PMI_RANK", "PMI_SIZE", l)?;
    let world = env.required("PMI_SIZE", "PMI_RANK", l)?;
    let (local, local_world) = match (
        env.number("MPI_LOCALRANKID", l)?,
        env.number("MPI_LOCALNRANKS", l)?,
    ) {
        (Some(local), Some(n)) => (local, n),
        (Some(_), None) => {
            return Err(bad(
                "MPI_LOCALNRANKS",
                "MPI_LOCALRANKID is set but MPI_LOCALNRANKS is not; MPICH/Intel MPI sets both"
                    .into(),
            ))
        }
        (None, Some(_)) => {
            return Err(bad(
                "MPI_LOCALRANKID",
                "MPI_LOCALNRANKS is set but MPI_LOCALRANKID is not; MPICH/Intel MPI sets both"
                    .into(),
            ))
        }
        (None, None) => (rank, world),
    };
    let node = rank.checked_div(local_world).unwrap_or(0);
    build(
        l,
        ["PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"],
        [rank, world, local, local_world],
        node,
    )
}

fn slurm(env: &Env) -> Result<Detected> {
    let l = Launcher::Slurm;
    let rank = env.required("SLURM_PROCID", "SLURM_PROCID", l)?;
    let world = env.required("SLURM_NTASKS", "SLURM_PROCID", l)?;
    let local = env.required("SLURM_LOCALID", "SLURM_PROCID", l)?;
    let node = env.number("SLURM_NODEID", l)?.unwrap_or(0);
    let local_world = match env.raw("SLURM_TASKS_PER_NODE") {
        Some(spec) => tasks_on_node(&spec, node).ok_or_else(|| {
            bad(
                "SLURM_TASKS_PER_NODE",
                format!("SLURM_TASKS_PER_NODE={spec:?} is not a list like \"4(x2),3\" covering node {node}"),
            )
        })?,
        None => world,
    };
    build(
        l,
        [
            "SLURM_PROCID",
            "SLURM_NTASKS",
            "SLURM_LOCALID",
            "SLURM_TASKS_PER_NODE",
        ],
        [rank, world, local, local_world],
        node,
    )
}

/// The task count of `node` in Slurm's compressed list, e.g. `2(x3),1`.
fn tasks_on_node(spec: &str, node: u32) -> Option<u32> {
    let mut seen: u32 = 0;
    for part in spec.split(',') {
        let part = part.trim();
        let (count, repeat) = match part.split_once("(x") {
            Some((c, r)) => (c, r.strip_suffix(')')?.parse::<u32>().ok()?),
            None => (part, 1),
        };
        let count = count.parse::<u32>().ok()?;
        seen = seen.checked_add(repeat)?;
        if node < seen {
            return Some(count);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::settings::env_table as env;

    fn info(
        rank: u32,
        local_rank: u32,
        world_size: u32,
        local_world_size: u32,
        node_rank: u32,
    ) -> RankInfo {
        RankInfo {
            rank,
            local_rank,
            world_size,
            local_world_size,
            node_rank,
        }
    }

    #[test]
    fn every_launcher_is_detected() {
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, &'a str)],
            Option<(Launcher, RankInfo)>,
        );
        let table: &[Case] = &[
            ("nothing", &[], None),
            (
                "torchrun",
                &[
                    ("RANK", "5"),
                    ("WORLD_SIZE", "8"),
                    ("LOCAL_RANK", "1"),
                    ("LOCAL_WORLD_SIZE", "4"),
                    ("GROUP_RANK", "1"),
                ],
                Some((Launcher::Torchrun, info(5, 1, 8, 4, 1))),
            ),
            (
                "torch.distributed.launch without LOCAL_WORLD_SIZE",
                &[("RANK", "2"), ("WORLD_SIZE", "4"), ("LOCAL_RANK", "2")],
                Some((Launcher::Torchrun, info(2, 2, 4, 4, 0))),
            ),
            (
                "open mpi",
                &[
                    ("OMPI_COMM_WORLD_RANK", "6"),
                    ("OMPI_COMM_WORLD_SIZE", "16"),
                    ("OMPI_COMM_WORLD_LOCAL_RANK", "2"),
                    ("OMPI_COMM_WORLD_LOCAL_SIZE", "4"),
                    ("OMPI_COMM_WORLD_NODE_RANK", "1"),
                ],
                Some((Launcher::OpenMpi, info(6, 2, 16, 4, 1))),
            ),
            (
                "mpich with local ids",
                &[
                    ("PMI_RANK", "5"),
                    ("PMI_SIZE", "8"),
                    ("MPI_LOCALRANKID", "1"),
                    ("MPI_LOCALNRANKS", "4"),
                ],
                Some((Launcher::Mpich, info(5, 1, 8, 4, 1))),
            ),
            (
                "mpich without local ids",
                &[("PMI_RANK", "1"), ("PMI_SIZE", "2")],
                Some((Launcher::Mpich, info(1, 1, 2, 2, 0))),
            ),
            (
                "slurm",
                &[
                    ("SLURM_PROCID", "9"),
                    ("SLURM_NTASKS", "12"),
                    ("SLURM_LOCALID", "1"),
                    ("SLURM_NODEID", "2"),
                    ("SLURM_TASKS_PER_NODE", "4(x2),4"),
                ],
                Some((Launcher::Slurm, info(9, 1, 12, 4, 2))),
            ),
            (
                "torchrun inside slurm: torchrun wins",
                &[
                    ("SLURM_PROCID", "0"),
                    ("SLURM_NTASKS", "1"),
                    ("SLURM_LOCALID", "0"),
                    ("RANK", "3"),
                    ("WORLD_SIZE", "4"),
                    ("LOCAL_RANK", "3"),
                    ("LOCAL_WORLD_SIZE", "4"),
                ],
                Some((Launcher::Torchrun, info(3, 3, 4, 4, 0))),
            ),
            (
                "mpirun inside slurm: open mpi wins",
                &[
                    ("SLURM_PROCID", "0"),
                    ("SLURM_NTASKS", "1"),
                    ("SLURM_LOCALID", "0"),
                    ("OMPI_COMM_WORLD_RANK", "1"),
                    ("OMPI_COMM_WORLD_SIZE", "2"),
                    ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
                    ("OMPI_COMM_WORLD_LOCAL_SIZE", "2"),
                ],
                Some((Launcher::OpenMpi, info(1, 1, 2, 2, 0))),
            ),
        ];
        for (what, vars, want) in table {
            let got = detect(&env(vars)).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(got.map(|d| (d.launcher, d.info)), *want, "{what}");
        }
    }

    #[test]
    fn inconsistent_variables_name_the_variable() {
        let table: &[(&[(&str, &str)], &str)] = &[
            (
                &[("RANK", "4"), ("WORLD_SIZE", "4"), ("LOCAL_RANK", "0")],
                "RANK",
            ),
            (&[("RANK", "1")], "WORLD_SIZE"),
            (&[("WORLD_SIZE", "4")], "RANK"),
            (&[("RANK", "1"), ("WORLD_SIZE", "4")], "LOCAL_RANK"),
            (
                &[("RANK", "one"), ("WORLD_SIZE", "4"), ("LOCAL_RANK", "0")],
                "RANK",
            ),
            (
                &[("RANK", "1"), ("WORLD_SIZE", "0"), ("LOCAL_RANK", "0")],
                "WORLD_SIZE",
            ),
            (
                &[
                    ("RANK", "1"),
                    ("WORLD_SIZE", "4"),
                    ("LOCAL_RANK", "2"),
                    ("LOCAL_WORLD_SIZE", "2"),
                ],
                "LOCAL_RANK",
            ),
            (
                &[
                    ("RANK", "1"),
                    ("WORLD_SIZE", "4"),
                    ("LOCAL_RANK", "0"),
                    ("LOCAL_WORLD_SIZE", "8"),
                ],
                "LOCAL_WORLD_SIZE",
            ),
            (
                &[("OMPI_COMM_WORLD_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "2")],
                "OMPI_COMM_WORLD_LOCAL_RANK",
            ),
            (
                &[
                    ("PMI_RANK", "1"),
                    ("PMI_SIZE", "2"),
                    ("MPI_LOCALRANKID", "0"),
                ],
                "MPI_LOCALNRANKS",
            ),
            (&[("PMI_RANK", "-1"), ("PMI_SIZE", "2")], "PMI_RANK"),
            (
                &[("SLURM_PROCID", "0"), ("SLURM_LOCALID", "0")],
                "SLURM_NTASKS",
            ),
            (
                &[
                    ("SLURM_PROCID", "0"),
                    ("SLURM_NTASKS", "2"),
                    ("SLURM_LOCALID", "0"),
                    ("SLURM_TASKS_PER_NODE", "two"),
                ],
                "SLURM_TASKS_PER_NODE",
            ),
        ];
        for (vars, want) in table {
            match detect(&env(vars)) {
                Err(Error::RankEnvironment { var, reason }) => {
                    assert_eq!(&var, want, "{vars:?}: {reason}");
                    assert!(reason.contains(want), "{reason}");
                }
                other => panic!("{vars:?}: expected an error naming {want}, got {other:?}"),
            }
        }
    }

    #[test]
    fn slurm_task_lists_expand() {
        assert_eq!(tasks_on_node("4", 0), Some(4));
        assert_eq!(tasks_on_node("2(x3),1", 2), Some(2));
        assert_eq!(tasks_on_node("2(x3),1", 3), Some(1));
        assert_eq!(tasks_on_node("2(x3),1", 4), None);
        assert_eq!(tasks_on_node("2(x", 0), None);
    }
}
