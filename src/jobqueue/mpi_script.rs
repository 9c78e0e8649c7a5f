//! `job-script --mpi --ranks N`: a batch script that runs the MPI-style runner in one
//! allocation, from the same configuration as the worker job scripts. In this mode `cores`
//! and `memory` are per rank (each worker rank gets them), `--ranks` counts all ranks
//! (scheduler, driver and workers). The scripts in launchers/ are commented versions of these.

use std::path::Path;

use crate::config::{JobConfig, SystemKind};
use crate::error::{Error, Result};

use super::command::{shell_quote, shell_quote_expanding};

/// The script for `ranks` ranks whose driver runs `driver` (words after `mpi`).
pub fn render(cfg: &JobConfig, ranks: u32, driver: &[String], own_binary: &Path) -> Result<String> {
    if ranks < 3 {
        return Err(Error::invalid(format!(
            "--ranks {ranks}: the MPI-style runner needs at least 3 ranks (scheduler, driver, one worker)"
        )));
    }
    let cores = cfg.cores.max(1);
    // A worker rank's memory limit: 90% of what the batch system grants the rank, leaving
    // room for the process itself.
    let limit = format!("{}MiB", (cfg.memory.bytes() / 10 * 9) >> 20);
    let name = &cfg.job_name;
    let mut header: Vec<String> = Vec::new();
    let mut setup: Vec<String> = Vec::new();
    let (launcher, sched_file) = match cfg.system {
        SystemKind::Slurm => {
            header.push(format!("#SBATCH -J {name}"));
            if let Some(q) = &cfg.queue {
                header.push(format!("#SBATCH -p {q}"));
            }
            if let Some(a) = &cfg.account {
                header.push(format!("#SBATCH -A {a}"));
            }
            header.push(format!("#SBATCH --ntasks={ranks}"));
            header.push(format!("#SBATCH --cpus-per-task={cores}"));
            let per_cpu = crate::units::ByteSize(cfg.memory.bytes().div_ceil(cores as u64));
            header.push(format!("#SBATCH --mem-per-cpu={}", per_cpu.slurm()));
            header.push(format!("#SBATCH -t {}", cfg.walltime.slurm()));
            (
                "srun --kill-on-bad-exit=1".to_string(),
                "rdask-scheduler-$SLURM_JOB_ID.json",
            )
        }
        SystemKind::Pbs | SystemKind::Moab => {
            header.push(format!("#PBS -N {name}"));
            if let Some(q) = &cfg.queue {
                header.push(format!("#PBS -q {q}"));
            }
            if let Some(a) = &cfg.account {
                header.push(format!("#PBS -A {a}"));
            }
            header.push(format!(
                "#PBS -l select={ranks}:ncpus={cores}:mpiprocs=1:mem={}",
                cfg.memory.pbs()
            ));
            header.push(format!("#PBS -l walltime={}", cfg.walltime.hhmmss()));
            setup.push("cd \"$PBS_O_WORKDIR\"".into());
            (
                format!("mpirun -np {ranks}"),
                "rdask-scheduler-$PBS_JOBID.json",
            )
        }
        SystemKind::Sge => {
            header.push(format!("#$ -N {name}"));
            if let Some(q) = &cfg.queue {
                header.push(format!("#$ -q {q}"));
            }
            if let Some(a) = &cfg.account {
                header.push(format!("#$ -P {a}"));
            }
            // Grid Engine counts slots; one rank per slot here, with `cores` threads each
            // only if the parallel environment grants that many cores per slot.
            header.push(format!("#$ -pe mpi {ranks}"));
            header.push(format!("#$ -l h_rt={}", cfg.walltime.hhmmss()));
            header.push("#$ -cwd".into());
            header.push("#$ -j y".into());
            (
                "mpirun -np \"$NSLOTS\"".into(),
                "rdask-scheduler-$JOB_ID.json",
            )
        }
        SystemKind::Lsf => {
            let unit = super::Site::discover(cfg).lsf_unit;
            header.push(format!("#BSUB -J {name}"));
            if let Some(q) = &cfg.queue {
                header.push(format!("#BSUB -q {q}"));
            }
            if let Some(a) = &cfg.account {
                header.push(format!("#BSUB -P {a}"));
            }
            header.push(format!("#BSUB -n {}", ranks * cores));
            header.push(format!("#BSUB -R \"span[ptile={cores}]\""));
            header.push(format!("#BSUB -M {}", cfg.memory.lsf(unit)));
            header.push(format!("#BSUB -W {}", cfg.walltime.lsf()));
            (
                format!("mpirun -np {ranks}"),
                "rdask-scheduler-$LSB_JOBID.json",
            )
        }
        SystemKind::Local => (format!("mpirun -np {ranks}"), "rdask-scheduler-local.json"),
        other => {
            return Err(Error::invalid(format!(
                "--mpi: {} has no MPI launcher we support; use slurm, pbs, moab, sge, lsf or local",
                other.name()
            )))
        }
    };
    header.extend(cfg.job_extra_directive.iter().map(|d| {
        let prefix = match cfg.system {
            SystemKind::Slurm => "#SBATCH",
            SystemKind::Pbs | SystemKind::Moab => "#PBS",
            SystemKind::Sge => "#$",
            SystemKind::Lsf => "#BSUB",
            _ => "#",
        };
        format!("{prefix} {d}")
    }));
    let driver = if driver.is_empty() {
        "array 'x.mean(axis=0)' --input x=data.h5:/x --output result.h5:/mean0 --overwrite --quiet"
            .to_string()
    } else {
        driver
            .iter()
            .map(|w| shell_quote(w))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut command = format!(
        "{launcher} {} mpi --scheduler-file \"$PWD/{sched_file}\" --nthreads {cores} --memory-limit {limit} --death-timeout {}",
        shell_quote(&own_binary.display().to_string()),
        cfg.death_timeout
    );
    if let Some(i) = &cfg.interface {
        command.push_str(&format!(" --interface {}", shell_quote(i)));
    }
    if let Some(d) = &cfg.local_directory {
        command.push_str(&format!(" --local-directory {}", shell_quote_expanding(d)));
    }
    command.push_str(&format!(" \\\n    {driver}"));
    let mut out = vec![cfg.shebang.clone()];
    out.extend(header);
    out.push(String::new());
    out.push(format!(
        "# {ranks} ranks: rank 0 the scheduler, rank 1 the driver, {} worker ranks of {cores} threads.",
        ranks - 2
    ));
    out.extend(setup);
    out.extend(cfg.prologue.iter().cloned());
    out.push(command);
    out.extend(cfg.epilogue.iter().cloned());
    Ok(out.join("\n") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JobConfig;

    fn cfg(system: SystemKind) -> JobConfig {
        JobConfig {
            system,
            cores: 4,
            memory: "16GiB".parse().unwrap(),
            queue: Some("debug".into()),
            ..JobConfig::default()
        }
    }

    #[test]
    fn scripts_launch_the_ranks_with_the_systems_launcher() {
        let bin = Path::new("/opt/rdask-jobqueue");
        let driver = vec![
            "array".to_string(),
            "x.sum()".into(),
            "--input".into(),
            "x=a b.h5:/x".into(),
        ];
        let s = render(&cfg(SystemKind::Slurm), 8, &driver, bin).unwrap();
        assert!(
            s.contains("#SBATCH --ntasks=8\n#SBATCH --cpus-per-task=4\n"),
            "{s}"
        );
        assert!(s.contains("#SBATCH -p debug"));
        assert!(
            s.contains("srun --kill-on-bad-exit=1 /opt/rdask-jobqueue mpi"),
            "{s}"
        );
        assert!(s.contains("--nthreads 4"));
        assert!(s.contains("array 'x.sum()' --input 'x=a b.h5:/x'"), "{s}");
        let p = render(&cfg(SystemKind::Pbs), 8, &[], bin).unwrap();
        assert!(
            p.contains("#PBS -l select=8:ncpus=4:mpiprocs=1:mem=16GB"),
            "{p}"
        );
        assert!(p.contains("mpirun -np 8"));
        let g = render(&cfg(SystemKind::Sge), 6, &[], bin).unwrap();
        assert!(
            g.contains("#$ -pe mpi 6") && g.contains("mpirun -np \"$NSLOTS\""),
            "{g}"
        );
        let l = render(&cfg(SystemKind::Lsf), 4, &[], bin).unwrap();
        assert!(
            l.contains("#BSUB -n 16") && l.contains("span[ptile=4]"),
            "{l}"
        );
        assert!(render(&cfg(SystemKind::Slurm), 2, &[], bin)
            .unwrap_err()
            .to_string()
            .contains("at least 3 ranks"));
        assert!(render(&cfg(SystemKind::Htcondor), 4, &[], bin)
            .unwrap_err()
            .to_string()
            .contains("no MPI launcher"));
    }
}
