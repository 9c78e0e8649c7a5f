//! The dashboard's Cluster page for a named cluster: the `status` reply ([`ClusterStatus`])
//! as a [`ClusterPanel`], and the scaling decisions as lines with their reasons. Pure: the
//! daemon calls these after each scaling tick.

use std::collections::{BTreeMap, VecDeque};

use super::control::{ClusterStatus, JobView};
use crate::dashboard::{ClusterPanel, JobRow};
use crate::jobqueue::scaler::{Decision, Target, Tick};

/// Decisions the Cluster page lists.
pub const DECISIONS_SHOWN: usize = 20;

/// A decision as the page lists it: when (local time), what, and the numbers behind it.
pub fn decision_line(d: &Decision, tick: &Tick, now: f64) -> String {
    let when = crate::sys::local_clock(now)
        .map(|(h, m, s)| format!("{h:02}:{m:02}:{s:02}"))
        .unwrap_or_default();
    format!(
        "{when} {d} (target {} job(s), {} counted, {} pending)",
        tick.target_jobs, tick.counted_jobs, tick.pending_jobs
    )
}

fn row(j: &JobView) -> JobRow {
    JobRow {
        job_id: j.job_id.clone(),
        name: j.name.clone(),
        state: j.state.clone(),
        pending_reason: j.pending_reason.clone(),
        age_s: j.age,
        workers: j.workers.len() as u64,
        detail: j.detail.clone(),
    }
}

pub fn of(s: &ClusterStatus, decisions: &VecDeque<String>) -> ClusterPanel {
    let mut jobs_by_state: BTreeMap<String, u64> = BTreeMap::new();
    for j in &s.jobs {
        *jobs_by_state.entry(j.state.clone()).or_default() += 1;
    }
    let target_workers = match s.target {
        Target::Fixed { workers } => workers,
        // What adapting asks for now, in workers.
        Target::Adaptive { .. } => s.wanted_jobs * s.processes.max(1),
    } as u64;
    ClusterPanel {
        name: s.name.clone(),
        system: s.system.clone(),
        target: s.target.describe(s.processes),
        target_workers,
        workers: s.workers.len() as u64,
        jobs_by_state,
        jobs: s.jobs.iter().map(row).collect(),
        decisions: decisions.iter().cloned().collect(),
        // Jobs that ended for a reason of their own carry why, and the end of their output.
        failed: s
            .ended_jobs
            .iter()
            .filter(|j| j.detail.is_some())
            .map(row)
            .collect(),
        submit_failures: s.failures.total + s.failures.start_total,
        paused: s.failures.paused.as_ref().map(|p| p.reason.to_string()),
        errors: s.errors.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobqueue::scaler::Failures;

    fn job(id: &str, state: &str, reason: Option<&str>, detail: Option<&str>) -> JobView {
        JobView {
            job_id: Some(id.into()),
            name: format!("rdask-c-{id}"),
            state: state.into(),
            age: 1.0,
            workers: Vec::new(),
            end_reason: None,
            detail: detail.map(str::to_string),
            pending_reason: reason.map(str::to_string),
        }
    }

    #[test]
    fn the_panel_counts_jobs_by_state_and_lists_failed_ones_with_their_output() {
        let s = ClusterStatus {
            name: "c".into(),
            address: "tcp://h:1".into(),
            system: "slurm".into(),
            pid: 1,
            target: Target::Fixed { workers: 4 },
            processes: 2,
            workers: Vec::new(),
            jobs: vec![
                job("1", "pending", Some("Resources"), None),
                job("2", "pending", Some("Priority"), None),
                job("3", "running", None, None),
            ],
            ended_jobs: vec![
                job("0", "failed", None, Some("ended (failed): boom")),
                job("9", "cancelled", None, None),
            ],
            tasks: Default::default(),
            wanted_jobs: 2,
            counted_jobs: 3,
            blocked: None,
            failures: Failures {
                total: 1,
                start_total: 2,
                ..Failures::default()
            },
            errors: Vec::new(),
            dashboard: None,
            batch_path: "commands".into(),
        };
        let p = of(
            &s,
            &VecDeque::from(["12:00:00 submit 1 job(s)".to_string()]),
        );
        assert_eq!(p.jobs_by_state["pending"], 2);
        assert_eq!(p.jobs_by_state["running"], 1);
        assert_eq!(p.target_workers, 4);
        assert_eq!(p.jobs[1].pending_reason.as_deref(), Some("Priority"));
        assert_eq!(p.failed.len(), 1);
        assert_eq!(p.failed[0].detail.as_deref(), Some("ended (failed): boom"));
        assert_eq!(p.submit_failures, 3);
        assert_eq!(p.decisions.len(), 1);
    }
}
