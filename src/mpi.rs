//! Rank roles for the MPI-style runner: inside one allocation, `mpirun`/`srun` starts N copies
//! of `rdask-jobqueue mpi ...`; rank 0 becomes the scheduler, rank 1 the driver (the array
//! expression or the user's program), the others workers.
//!
//! With the cargo feature `mpi` (rsmpi), ranks come from MPI itself and the scheduler's
//! address and secret reach every rank by `MPI_Bcast` from rank 0 ([`native`]). Without it —
//! or when MPI sees a world of 1 although the launcher started more (OpenMPI under an `srun`
//! without PMIx) — ranks are discovered from the launcher's environment (OpenMPI, PMI, PMIx,
//! SLURM), so one binary works under any launcher; the address and secret then travel through
//! a scheduler file in a shared directory, stamped with an id of this launch so that a file
//! left by an earlier run is never taken for this one's.
//!
//! The driver's exit status travels with its request to shut the scheduler down; the scheduler
//! passes it to every rank's connection as it stops (`ShuttingDown`), so every rank ends with
//! it, and no collective call is left at the end for a dead rank to hang.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// This process's place in the launch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct World {
    pub rank: usize,
    pub size: usize,
    /// Which variables said so (for messages).
    pub source: &'static str,
    /// An id of this launch, the same on every rank and different for every launch.
    pub launch_id: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Scheduler,
    Driver,
    Worker,
}

/// Rank and size from the launcher's environment, first match wins.
const SOURCES: &[(&str, &str, &str)] = &[
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OpenMPI"),
    ("PMI_RANK", "PMI_SIZE", "PMI (MPICH, Intel MPI)"),
    ("PMIX_RANK", "PMIX_SIZE", "PMIx"),
    ("SLURM_PROCID", "SLURM_NTASKS", "SLURM (srun)"),
];

/// Variables of the launchers that identify one launch within a batch job (job step, MPI
/// job, PMIx namespace). The batch job's own id variables are the batch-system descriptions'
/// (`jobqueue::job_env::launch_job_id_variables`).
const LAUNCHER_VARS: &[&str] = &[
    "SLURM_STEP_ID",
    "PMIX_NAMESPACE",
    "OMPI_MCA_ess_base_jobid",
    "OMPI_MCA_orte_ess_jobid",
    "PMI_JOBID",
];

/// Variables a launcher sets only when the ranks can initialise MPI through it: OpenMPI's
/// mpirun, and PMI-1/2 or PMIx (srun --mpi=..., MPICH's and Intel MPI's launchers).
const MPI_LAUNCH_VARS: &[&str] = &["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "PMI_FD"];

/// Whether this process was started by a launcher MPI can initialise with.
pub fn launched_for_mpi(is_set: impl Fn(&str) -> bool) -> bool {
    MPI_LAUNCH_VARS.iter().any(|k| is_set(k))
}

/// Reads the world from `env` (a lookup, so tests need not touch the process environment).
pub fn discover(env: impl Fn(&str) -> Option<String>) -> World {
    let launch_id = {
        let batch_job = crate::jobqueue::job_env::launch_job_id_variables();
        let parts: Vec<String> = batch_job
            .iter()
            .chain(LAUNCHER_VARS)
            .filter_map(|k| env(k).map(|v| format!("{k}={v}")))
            .collect();
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(",")
        }
    };
    for (rank_var, size_var, source) in SOURCES {
        let rank = env(rank_var).and_then(|v| v.parse().ok());
        let size = env(size_var).and_then(|v| v.parse().ok());
        if let (Some(rank), Some(size)) = (rank, size) {
            return World {
                rank,
                size,
                source,
                launch_id,
            };
        }
    }
    World {
        rank: 0,
        size: 1,
        source: "no launcher variables",
        launch_id,
    }
}

impl World {
    /// Refuses worlds too small for the roles, including N singletons (a binary started by
    /// another MPI implementation's launcher sees itself alone).
    pub fn check(&self, no_driver: bool) -> Result<()> {
        // A launcher's variables are only text: a rank past the world (a stale or hand-set
        // OMPI_COMM_WORLD_RANK) would take a role no one expects, or wait for peers forever.
        if self.rank >= self.size {
            return Err(Error::invalid(format!(
                "rank {} is outside a world of {} ranks (from {}): the launcher's rank and size \
                 variables disagree; start the ranks with mpirun or srun, not by hand",
                self.rank, self.size, self.source
            )));
        }
        let needed = if no_driver { 2 } else { 3 };
        if self.size >= needed {
            return Ok(());
        }
        let hint = if self.size == 1 {
            " This process sees a world of 1: start it under `mpirun -np N` or `srun -n N`. If \
             you did, the launcher belongs to another MPI than the one this environment \
             provides (each rank then runs alone), or it sets none of OMPI_COMM_WORLD_RANK, \
             PMI_RANK, PMIX_RANK, SLURM_PROCID."
        } else {
            ""
        };
        Err(Error::invalid(format!(
            "the MPI-style runner needs at least {needed} ranks (rank 0 the scheduler, {}the \
             rest workers), this launch has {} (from {}).{hint}",
            if no_driver { "" } else { "rank 1 the driver, " },
            self.size,
            self.source
        )))
    }

    pub fn role(&self, no_driver: bool) -> Role {
        match self.rank {
            0 => Role::Scheduler,
            1 if !no_driver => Role::Driver,
            _ => Role::Worker,
        }
    }

    /// The default scheduler file: in the current directory, named after the batch job.
    pub fn default_scheduler_file(&self) -> PathBuf {
        let job = crate::jobqueue::batch_job_id().unwrap_or_else(|| "local".to_string());
        let safe: String = job
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        PathBuf::from(format!("rdask-scheduler-{safe}.json"))
    }
}

/// The scheduler file of one launch.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SchedulerFile {
    pub address: String,
    pub secret: String,
    pub launch_id: String,
}

/// Waits for this launch's scheduler file (rank 0 writes it once the scheduler listens).
pub fn wait_for_scheduler_file(
    path: &Path,
    launch_id: &str,
    timeout: Duration,
) -> Result<SchedulerFile> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(f) = serde_json::from_str::<SchedulerFile>(&text) {
                if f.launch_id == launch_id {
                    return Ok(f);
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::runtime(format!(
                "no scheduler file for this launch at {} after {} s: rank 0 did not start a \
                 scheduler (see its output), or the directory is not shared between the nodes \
                 (use --scheduler-file on a shared filesystem)",
                path.display(),
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Rank discovery and broadcasts through the MPI library (cargo feature `mpi`, rsmpi). Only
/// the main thread calls MPI, before and after the async runtime's work, so single-threaded
/// MPI suffices. The universe lives until the process ends its role; dropping it finalises.
#[cfg(feature = "mpi")]
pub mod native {
    use mpi::traits::{Communicator, Root};

    use super::World;

    pub struct Mpi {
        universe: mpi::environment::Universe,
    }

    impl Mpi {
        /// Initialises MPI; None when it cannot be (already initialised, or no MPI runtime).
        pub fn init() -> Option<Mpi> {
            mpi::initialize().map(|universe| Mpi { universe })
        }

        pub fn world(&self, launch_id: String) -> World {
            let w = self.universe.world();
            World {
                rank: w.rank() as usize,
                size: w.size() as usize,
                source: "MPI",
                launch_id,
            }
        }

        /// `data` from `root` to every rank (collective: every rank must call it).
        pub fn broadcast(&self, root: usize, data: Option<Vec<u8>>) -> Vec<u8> {
            let world = self.universe.world();
            let process = world.process_at_rank(root as i32);
            let mut len = data.as_ref().map_or(0, |d| d.len() as u64);
            process.broadcast_into(&mut len);
            let mut buf = data.unwrap_or_else(|| vec![0u8; len as usize]);
            process.broadcast_into(&mut buf[..]);
            buf
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn ranks_come_from_the_launcher() {
        let w = discover(env(&[
            ("OMPI_COMM_WORLD_RANK", "2"),
            ("OMPI_COMM_WORLD_SIZE", "4"),
            ("OMPI_MCA_ess_base_jobid", "77"),
        ]));
        assert_eq!((w.rank, w.size, w.source), (2, 4, "OpenMPI"));
        assert_eq!(w.role(false), Role::Worker);
        assert!(w.launch_id.contains("77"));
        let s = discover(env(&[
            ("SLURM_PROCID", "1"),
            ("SLURM_NTASKS", "3"),
            ("SLURM_JOB_ID", "9"),
            ("SLURM_STEP_ID", "0"),
        ]));
        assert_eq!((s.rank, s.size), (1, 3));
        assert_eq!(s.role(false), Role::Driver);
        assert_eq!(s.role(true), Role::Worker);
        assert!(s.check(false).is_ok());
        let p = discover(env(&[("PMI_RANK", "0"), ("PMI_SIZE", "2")]));
        assert_eq!(p.role(false), Role::Scheduler);
        assert!(p
            .check(false)
            .unwrap_err()
            .to_string()
            .contains("at least 3"));
        assert!(p.check(true).is_ok());
        let alone = discover(env(&[]));
        assert!(alone
            .check(false)
            .unwrap_err()
            .to_string()
            .contains("world of 1"));
    }

    /// The launch id carries the batch job's id (the batch systems' own variables) and the
    /// launcher's: two jobs, or two steps of one job, never share one.
    #[test]
    fn the_launch_id_names_the_batch_job_and_the_step() {
        let id = |pairs: &[(&str, &str)]| {
            let mut all = vec![("OMPI_COMM_WORLD_RANK", "0"), ("OMPI_COMM_WORLD_SIZE", "3")];
            all.extend_from_slice(pairs);
            discover(env(&all)).launch_id
        };
        for var in ["SLURM_JOB_ID", "PBS_JOBID", "JOB_ID", "LSB_JOBID"] {
            assert_ne!(id(&[(var, "1")]), id(&[(var, "2")]), "{var}");
            assert!(id(&[(var, "1")]).contains(&format!("{var}=1")));
        }
        assert_ne!(
            id(&[("SLURM_JOB_ID", "1"), ("SLURM_STEP_ID", "0")]),
            id(&[("SLURM_JOB_ID", "1"), ("SLURM_STEP_ID", "1")])
        );
        assert_eq!(id(&[]), "none");
    }

    #[test]
    fn a_rank_outside_the_world_is_refused() {
        for (rank, size) in [("5", "4"), ("4", "4"), ("0", "0")] {
            let w = discover(env(&[
                ("OMPI_COMM_WORLD_RANK", rank),
                ("OMPI_COMM_WORLD_SIZE", size),
            ]));
            let err = w.check(false).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains("outside a world"), "{err}");
        }
        let ok = discover(env(&[("PMI_RANK", "3"), ("PMI_SIZE", "4")]));
        assert!(ok.check(false).is_ok());
    }

    #[test]
    fn mpi_is_initialised_only_under_an_mpi_launcher() {
        let env = |vars: &'static [&'static str]| move |k: &str| vars.contains(&k);
        assert!(launched_for_mpi(env(&["OMPI_COMM_WORLD_RANK"])));
        assert!(launched_for_mpi(env(&["SLURM_PROCID", "PMIX_RANK"])));
        // A plain srun (no PMI) and a process started by hand.
        assert!(!launched_for_mpi(env(&["SLURM_PROCID", "SLURM_NTASKS"])));
        assert!(!launched_for_mpi(env(&[])));
    }

    #[test]
    fn files_of_another_launch_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s.json");
        let old = SchedulerFile {
            address: "tcp://h:1".into(),
            secret: "00".into(),
            launch_id: "old".into(),
        };
        std::fs::write(&f, serde_json::to_string(&old).unwrap()).unwrap();
        let e = wait_for_scheduler_file(&f, "new", Duration::from_millis(200)).unwrap_err();
        assert!(e.to_string().contains("no scheduler file for this launch"));
        assert_eq!(
            wait_for_scheduler_file(&f, "old", Duration::ZERO).unwrap(),
            old
        );
    }
}
