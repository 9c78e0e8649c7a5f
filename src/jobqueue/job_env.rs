//! Which batch job this process runs in: each batch system's own variables, asked of that
//! system's description (the one place that knows them).

use crate::config::SystemKind;

/// The batch job this process runs in, from the variables each batch system sets.
pub fn batch_job_id() -> Option<String> {
    for kind in SystemKind::ALL {
        for var in super::system(kind).job_id_variables() {
            let Ok(value) = std::env::var(var) else {
                continue;
            };
            if value.is_empty() {
                continue;
            }
            if *var == "_CONDOR_JOB_AD" {
                // HTCondor names a file holding the job ad; the id is its ClusterId.
                let ad = std::fs::read_to_string(&value).unwrap_or_default();
                if let Some(id) = ad.lines().find_map(|l| l.trim().strip_prefix("ClusterId")) {
                    return Some(id.trim_start_matches([' ', '=']).trim().to_string());
                }
                continue;
            }
            return Some(value);
        }
    }
    None
}
