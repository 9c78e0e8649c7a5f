//! Which batch job this process runs in: each batch system's own variables, asked of that
//! system's description (the one place that knows them).

use crate::config::SystemKind;

/// The batch job this process runs in, from the variables each batch system sets.
pub fn batch_job_id() -> Option<String> {
    job_id_in(&|var| std::env::var(var).ok())
}

/// The first system (in [`SystemKind::ALL`]'s order) whose variables in `env` name a job.
pub fn job_id_in(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    SystemKind::ALL
        .into_iter()
        .find_map(|kind| super::system(kind).job_id_from_env(env))
}

/// The variables that name the job alike on every rank of an MPI launch, each system's
/// [`super::BatchSystem::launch_job_id_variable`] once.
pub fn launch_job_id_variables() -> Vec<&'static str> {
    let mut vars: Vec<&'static str> = Vec::new();
    for kind in SystemKind::ALL {
        if let Some(var) = super::system(kind).launch_job_id_variable() {
            if !vars.contains(&var) {
                vars.push(var);
            }
        }
    }
    vars
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
    fn each_systems_variables_name_its_job() {
        assert_eq!(
            job_id_in(&env(&[("SLURM_JOBID", "77")])).as_deref(),
            Some("77")
        );
        assert_eq!(
            job_id_in(&env(&[("SLURM_JOB_ID", ""), ("PBS_JOBID", "5.srv")])).as_deref(),
            Some("5.srv")
        );
        assert_eq!(job_id_in(&env(&[("JOB_ID", "12")])).as_deref(), Some("12"));
        assert_eq!(job_id_in(&env(&[("LSB_JOBID", "9")])).as_deref(), Some("9"));
        assert_eq!(job_id_in(&env(&[("OAR_JOBID", "3")])).as_deref(), Some("3"));
        assert_eq!(
            job_id_in(&env(&[("MOAB_JOBID", "Moab.4")])).as_deref(),
            Some("Moab.4")
        );
        assert_eq!(
            job_id_in(&env(&[("RDASK_LOCAL_JOB_ID", "4242")])).as_deref(),
            Some("4242")
        );
        assert_eq!(job_id_in(&env(&[])), None);

        let dir = tempfile::tempdir().unwrap();
        let ad = dir.path().join(".job.ad");
        std::fs::write(&ad, "Owner = \"u\"\nClusterId = 1234\nProcId = 0\n").unwrap();
        let ad = ad.display().to_string();
        assert_eq!(
            job_id_in(&env(&[("_CONDOR_JOB_AD", &ad)])).as_deref(),
            Some("1234")
        );
        // An ad without a ClusterId names no job.
        std::fs::write(&ad, "Owner = \"u\"\n").unwrap();
        assert_eq!(job_id_in(&env(&[("_CONDOR_JOB_AD", &ad)])), None);
    }

    #[test]
    fn launch_variables_are_the_mpi_systems_own() {
        assert_eq!(
            launch_job_id_variables(),
            ["SLURM_JOB_ID", "PBS_JOBID", "JOB_ID", "LSB_JOBID"]
        );
    }
}
