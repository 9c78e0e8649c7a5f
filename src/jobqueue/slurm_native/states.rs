//! libslurm's job records read as `squeue` shows them: the state word squeue would print
//! (then mapped by the squeue parser's own table, `slurm::state_of`), and the ids of the
//! elements a pending array record stands for.

use crate::jobqueue::JobState;

// The state flags of slurm.h (SLURM_BIT(n) macros, which bindgen cannot evaluate; unchanged
// since SLURM 17.11).
const JOB_STATE_BASE: u32 = 0xff;
const JOB_REQUEUE: u32 = 1 << 10;
const JOB_REQUEUE_HOLD: u32 = 1 << 11;
const JOB_SPECIAL_EXIT: u32 = 1 << 12;
const JOB_RESIZING: u32 = 1 << 13;
const JOB_CONFIGURING: u32 = 1 << 14;
const JOB_COMPLETING: u32 = 1 << 15;
const JOB_STOPPED: u32 = 1 << 16;
const JOB_REVOKED: u32 = 1 << 19;
const JOB_REQUEUE_FED: u32 = 1 << 20;
const JOB_RESV_DEL_HOLD: u32 = 1 << 21;
const JOB_SIGNALING: u32 = 1 << 22;
const JOB_STAGE_OUT: u32 = 1 << 23;

/// The word `squeue --format=%T` prints for `job_state` (libslurm's job_state_string: the
/// flags first, in its order, then the base state).
pub fn state_word(job_state: u32) -> &'static str {
    const FLAGS: &[(u32, &str)] = &[
        (JOB_COMPLETING, "COMPLETING"),
        (JOB_STAGE_OUT, "STAGE_OUT"),
        (JOB_CONFIGURING, "CONFIGURING"),
        (JOB_RESIZING, "RESIZING"),
        (JOB_REQUEUE, "REQUEUED"),
        (JOB_REQUEUE_FED, "REQUEUE_FED"),
        (JOB_REQUEUE_HOLD, "REQUEUE_HOLD"),
        (JOB_SPECIAL_EXIT, "SPECIAL_EXIT"),
        (JOB_STOPPED, "STOPPED"),
        (JOB_REVOKED, "REVOKED"),
        (JOB_RESV_DEL_HOLD, "RESV_DEL_HOLD"),
        (JOB_SIGNALING, "SIGNALING"),
    ];
    if let Some((_, word)) = FLAGS.iter().find(|(bit, _)| job_state & bit != 0) {
        return word;
    }
    match job_state & JOB_STATE_BASE {
        0 => "PENDING",
        1 => "RUNNING",
        2 => "SUSPENDED",
        3 => "COMPLETED",
        4 => "CANCELLED",
        5 => "FAILED",
        6 => "TIMEOUT",
        7 => "NODE_FAIL",
        8 => "PREEMPTED",
        9 => "BOOT_FAIL",
        10 => "DEADLINE",
        11 => "OUT_OF_MEMORY",
        _ => "UNKNOWN",
    }
}

/// Our state for a job record's `job_state`, exactly as the squeue path maps it.
pub fn job_state(job_state: u32) -> JobState {
    crate::jobqueue::slurm::state_of(state_word(job_state))
}

/// The task ids of a pending array record's `array_task_str` ("0-63", "1,3,5-7", "0-63%4",
/// "1-9:2"); None when it is not of that form.
pub fn array_tasks(text: &str) -> Option<Vec<u32>> {
    // "%N" limits how many run at once; it names no task.
    let text = text.split('%').next()?;
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (range, step) = match part.split_once(':') {
            Some((r, s)) => (r, s.parse::<u32>().ok().filter(|s| *s > 0)?),
            None => (part, 1),
        };
        let (lo, hi) = match range.split_once('-') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => {
                let n = range.parse::<u32>().ok()?;
                (n, n)
            }
        };
        // An array holds at most MaxArraySize (at most 4,000,001) tasks.
        if hi < lo || hi - lo > 4_000_000 {
            return None;
        }
        out.extend((lo..=hi).step_by(step as usize));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_as_squeue_prints_them() {
        assert_eq!(state_word(0), "PENDING");
        assert_eq!(job_state(0), JobState::Pending);
        assert_eq!(job_state(1), JobState::Running);
        assert_eq!(job_state(3), JobState::Completed);
        assert_eq!(job_state(4), JobState::Cancelled);
        assert_eq!(job_state(5), JobState::Failed);
        assert_eq!(job_state(6), JobState::Failed);
        assert_eq!(job_state(11), JobState::Failed);
        // A finished job still completing its epilog is shown COMPLETING: still running.
        assert_eq!(state_word(3 | JOB_COMPLETING), "COMPLETING");
        assert_eq!(job_state(3 | JOB_COMPLETING), JobState::Running);
        // Nodes booting for a running job: squeue says CONFIGURING, which is pending to us.
        assert_eq!(job_state(1 | JOB_CONFIGURING), JobState::Pending);
        assert_eq!(job_state(JOB_REQUEUE_HOLD), JobState::Pending);
        assert_eq!(state_word(200), "UNKNOWN");
        assert_eq!(job_state(200), JobState::Gone);
    }

    #[test]
    fn every_base_state_has_a_word_the_squeue_table_knows() {
        for base in 0..12 {
            assert_ne!(state_word(base), "UNKNOWN");
            assert_ne!(job_state(base), JobState::Gone, "state {base}");
        }
    }

    #[test]
    fn pending_array_records_name_their_tasks() {
        assert_eq!(array_tasks("0-3"), Some(vec![0, 1, 2, 3]));
        assert_eq!(array_tasks("1,3,5-7"), Some(vec![1, 3, 5, 6, 7]));
        assert_eq!(array_tasks("0-63%4").map(|v| v.len()), Some(64));
        assert_eq!(array_tasks("1-9:4"), Some(vec![1, 5, 9]));
        assert_eq!(array_tasks("5"), Some(vec![5]));
        assert_eq!(array_tasks("x"), None);
        assert_eq!(array_tasks("9-1"), None);
        assert_eq!(array_tasks("1-9:0"), None);
    }
}
