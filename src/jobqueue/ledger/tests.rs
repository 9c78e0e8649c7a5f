use super::*;
use crate::jobqueue::scaler::CancelReason;
use crate::jobqueue::JobState;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn fresh() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.json");
    (dir, path)
}

fn states(pairs: &[(&str, JobState)]) -> BTreeMap<String, JobState> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn missing_file_is_an_empty_ledger_and_is_not_created_until_a_change() {
    let (_dir, path) = fresh();
    let l = Ledger::open(&path, "c").unwrap();
    assert!(l.jobs().is_empty());
    assert!(!l.is_closed());
    assert_eq!(l.cluster(), "c");
    assert!(!path.exists());
}

#[test]
fn job_names_carry_the_cluster_and_sequence() {
    assert_eq!(job_name("default", 7), "rdask-default-7");
}

#[test]
fn records_before_and_after_submission_and_persists_each_step() {
    let (_dir, path) = fresh();
    let mut l = Ledger::open(&path, "c").unwrap();
    let (seq, name) = l.begin_submit(100.0).unwrap();
    assert_eq!((seq, name.as_str()), (0, "rdask-c-0"));
    // On disk already, before any submit command ran.
    let disk = Ledger::open(&path, "c").unwrap();
    assert_eq!(disk.jobs().len(), 1);
    assert_eq!(disk.jobs()[0].state, LedgerState::Submitting);
    assert_eq!(disk.jobs()[0].job_id, None);
    assert_eq!(disk.submitting_names(), vec!["rdask-c-0".to_string()]);

    l.submitted(seq, "4242", 101.0).unwrap();
    let disk = Ledger::open(&path, "c").unwrap();
    let j = disk.job("4242").unwrap();
    assert_eq!(j.state, LedgerState::Pending);
    assert_eq!(j.submitted_at, Some(101.0));
    assert_eq!(j.recorded_at, 100.0);
    assert!(disk.submitting_names().is_empty());
    assert_eq!(disk.unfinished_ids(), vec!["4242".to_string()]);
}

#[test]
fn sequence_numbers_are_never_reused_across_reloads() {
    let (_dir, path) = fresh();
    let mut l = Ledger::open(&path, "c").unwrap();
    assert_eq!(l.begin_submit(0.0).unwrap().0, 0);
    assert_eq!(l.begin_submit(0.0).unwrap().0, 1);
    let mut l = Ledger::open(&path, "c").unwrap();
    assert_eq!(l.begin_submit(0.0).unwrap(), (2, "rdask-c-2".to_string()));
    assert_eq!(l.job_by_seq(1).unwrap().name, "rdask-c-1");
}

#[test]
fn a_crash_between_record_and_submit_leaves_a_job_to_find_by_name() {
    let (_dir, path) = fresh();
    let mut l = Ledger::open(&path, "c").unwrap();
    let (a, _) = l.begin_submit(0.0).unwrap();
    l.submitted(a, "1", 0.0).unwrap();
    let (_b, _) = l.begin_submit(1.0).unwrap();
    drop(l); // the daemon dies before sbatch returns
    let l = Ledger::open(&path, "c").unwrap();
    let unfinished: Vec<_> = l.unfinished().map(|j| j.name.clone()).collect();
    assert_eq!(unfinished, vec!["rdask-c-0", "rdask-c-1"]);
    assert_eq!(l.unfinished_ids(), vec!["1".to_string()]);
    assert_eq!(l.submitting_names(), vec!["rdask-c-1".to_string()]);
}

#[test]
fn a_submitting_job_found_later_by_name_gets_its_id() {
    let (_dir, path) = fresh();
    let mut l = Ledger::open(&path, "c").unwrap();
    let (seq, _) = l.begin_submit(0.0).unwrap();
    let mut l = Ledger::open(&path, "c").unwrap();
    l.submitted(seq, "77", 5.0).unwrap();
    assert_eq!(l.job("77").unwrap().seq, seq);
}

#[test]
fn failed_submission_is_finished_with_its_message() {
    let (_dir, path) = fresh();
    let mut l = Ledger::open(&path, "c").unwrap();
    let (seq, _) = l.begin_submit(0.0).unwrap();
    l.submit_failed(seq, "sbatch: error: invalid partition", 2.0)
        .unwrap();
    let l = Ledger::open(&path, "c").unwrap();
    let j = l.job_by_seq(seq).unwrap();
    assert_eq!(j.state, LedgerState::NotSubmitted);
    assert!(j.is_finished());
    assert_eq!(j.end_reason, Some(EndReason::SubmitFailed));
    assert_eq!(
        j.detail.as_deref(),
        Some("sbatch: error: invalid partition")
    );
    assert_eq!(j.ended_at, Some(2.0));
    assert_eq!(l.unfinished().count(), 0);
}

#[test]
fn submit_steps_are_checked() {
    let (_dir, path) = fresh();
    let mut l = Ledger::open(&path, "c").unwrap();
    assert!(l.submitted(0, "1", 0.0).is_err(), "unknown seq");
    let (a, _) = l.begin_submit(0.0).unwrap();
    l.submitted(a, "1", 0.0).unwrap();
    let err = l.submitted(a, "2", 0.0).unwrap_err().to_string();
    assert!(err.contains("not submitting"), "{err}");
    assert!(l.submit_failed(a, "x", 0.0).is_err());
    let (b, _) = l.begin_submit(0.0).unwrap();
    let err = l.submitted(b, "1", 0.0).unwrap_err().to_string();
    assert!(err.contains("already recorded"), "{err}");
    // The failed steps changed nothing, in memory or on disk.
    assert_eq!(l.job_by_seq(b).unwrap().state, LedgerState::Submitting);
    let disk = Ledger::open(&path, "c").unwrap();
    assert_eq!(disk.jobs(), l.jobs());
}

#[test]
fn an_id_comes_back_only_after_its_job_finished_and_then_means_the_new_job() {
    let (_dir, path) = fresh();
    let mut l = Ledger::open(&path, "c").unwrap();
    let (a, _) = l.begin_submit(0.0).unwrap();
    l.submitted(a, "77", 0.0).unwrap();
    l.set_state("77", JobState::Gone, 1.0).unwrap();
    // Local job ids are pids: a later job may get the same one.
    let (b, _) = l.begin_submit(2.0).unwrap();
    l.submitted(b, "77", 2.0).unwrap();
    assert_eq!(l.job("77").unwrap().seq, b);
    l.set_state("77", JobState::Running, 3.0).unwrap();
    assert_eq!(l.job_by_seq(a).unwrap().state, LedgerState::Gone);
    assert_eq!(l.job_by_seq(b).unwrap().state, LedgerState::Running);
    assert_eq!(l.unfinished_ids(), ["77"]);
}

#[test]
fn polled_states_update_times_and_infer_reasons() {
    let (_dir, path) = fresh();
    let mut l = Ledger::open(&path, "c").unwrap();
    for id in ["1", "2", "3", "4"] {
        let (s, _) = l.begin_submit(0.0).unwrap();
        l.submitted(s, id, 0.0).unwrap();
    }
    let changed = l
        .update_states(
            &states(&[
                ("1", JobState::Running),
                ("2", JobState::Pending),
                ("3", JobState::Failed),
                ("4", JobState::Cancelled),
                ("not-ours", JobState::Running),
            ]),
            10.0,
        )
        .unwrap();
    assert_eq!(changed, vec!["1", "3", "4"]);
    let l = Ledger::open(&path, "c").unwrap();
    assert_eq!(l.job("1").unwrap().state, LedgerState::Running);
    assert_eq!(l.job("1").unwrap().started_at, Some(10.0));
    assert_eq!(l.job("2").unwrap().started_at, None);
    assert_eq!(l.job("3").unwrap().end_reason, Some(EndReason::Failed));
    assert_eq!(l.job("3").unwrap().ended_at, Some(10.0));
    assert_eq!(
        l.job("4").unwrap().end_reason,
        Some(EndReason::CancelledOutside)
    );
    assert_eq!(l.unfinished_ids(), vec!["1", "2"]);
}

#[test]
fn started_time_is_the_first_time_seen_running() {
    let (_dir, path) = fresh();
    let mut l = Ledger::open(&path, "c").unwrap();
    let (s, _) = l.begin_submit(0.0).unwrap();
    l.submitted(s, "1", 0.0).unwrap();
    assert!(l.set_state("1", JobState::Running, 5.0).unwrap());
    assert!(!l.set_state("1", JobState::Running, 6.0).unwrap());
    // Requeued, then running again: the first start stays.
    assert!(l.set_state("1", JobState::Pending, 7.0).unwrap());
    assert!(l.set_state("1", JobState::Running, 8.0).unwrap());
    assert_eq!(l.job("1").unwrap().started_at, Some(5.0));
}

#[test]
fn finished_states_are_final_but_gone_can_come_back() {
    let (_dir, path) = fresh();
    let mut l = Ledger::open(&path, "c").unwrap();
    for id in ["1", "2"] {
        let (s, _) = l.begin_submit(0.0).unwrap();
        l.submitted(s, id, 0.0).unwrap();
    }
    l.set_state("1", JobState::Completed, 1.0).unwrap();
    assert!(!l.set_state("1", JobState::Running, 2.0).unwrap());
    assert!(!l.set_state("1", JobState::Gone, 2.0).unwrap());
    assert_eq!(l.job("1").unwrap().state, LedgerState::Completed);

    l.set_state("2", JobState::Gone, 1.0).unwrap();
    assert_eq!(l.job("2").unwrap().end_reason, Some(EndReason::Vanished));
    assert!(l.unfinished_ids().is_empty());
    // The batch system lost sight of it for one poll; it is alive after all.
    assert!(l.set_state("2", JobState::Running, 2.0).unwrap());
    let j = l.job("2").unwrap();
    assert_eq!(j.state, LedgerState::Running);
    assert_eq!(j.ended_at, None);
    assert_eq!(j.end_reason, None);
    assert_eq!(l.unfinished_ids(), vec!["2"]);
}

#[test]
fn our_reason_given_before_cancelling_survives_the_cancelled_state() {
    let (_dir, path) = fresh();
    let mut l = Ledger::open(&path, "c").unwrap();
    for id in ["1", "2"] {
        let (s, _) = l.begin_submit(0.0).unwrap();
        l.submitted(s, id, 0.0).unwrap();
    }
    l.set_end_reason("1", CancelReason::ScaleDown.into())
        .unwrap();
    l.set_end_reason("2", CancelReason::StartupTimeout.into())
        .unwrap();
    l.update_states(
        &states(&[("1", JobState::Cancelled), ("2", JobState::Gone)]),
        3.0,
    )
    .unwrap();
    let l = Ledger::open(&path, "c").unwrap();
    assert_eq!(l.job("1").unwrap().end_reason, Some(EndReason::ScaledDown));
    assert!(l.job("1").unwrap().end_reason.unwrap().is_ours());
    assert_eq!(
        l.job("2").unwrap().end_reason,
        Some(EndReason::StartupTimeout)
    );
}

#[test]
fn walltime_overrides_an_inferred_reason() {
    let (_dir, path) = fresh();
    let mut l = Ledger::open(&path, "c").unwrap();
    let (s, _) = l.begin_submit(0.0).unwrap();
    l.submitted(s, "1", 0.0).unwrap();
    l.set_state("1", JobState::Failed, 3600.0).unwrap();
    l.set_end_reason("1", EndReason::Walltime).unwrap();
    assert_eq!(l.job("1").unwrap().end_reason, Some(EndReason::Walltime));
    assert!(!EndReason::Walltime.is_ours());
    assert!(l.set_end_reason("nope", EndReason::Failed).is_err());
}

#[test]
fn workers_seen_records_the_first_time_only() {
    let (_dir, path) = fresh();
    let mut l = Ledger::open(&path, "c").unwrap();
    let (s, _) = l.begin_submit(0.0).unwrap();
    l.submitted(s, "1", 0.0).unwrap();
    assert!(l.workers_seen("1", 4.0).unwrap());
    assert!(!l.workers_seen("1", 9.0).unwrap());
    assert!(!l.workers_seen("foreign", 9.0).unwrap());
    let l = Ledger::open(&path, "c").unwrap();
    assert_eq!(l.job("1").unwrap().workers_seen_at, Some(4.0));
}

#[test]
fn a_detail_is_persisted_for_the_latest_job_with_that_id() {
    let (_dir, path) = fresh();
    let mut l = Ledger::open(&path, "c").unwrap();
    let (s, _) = l.begin_submit(0.0).unwrap();
    l.submitted(s, "1", 0.0).unwrap();
    l.set_detail("1", "ended (failed) before any of its workers connected")
        .unwrap();
    l.set_detail("foreign", "ignored").unwrap();
    let l = Ledger::open(&path, "c").unwrap();
    assert_eq!(
        l.job("1").unwrap().detail.as_deref(),
        Some("ended (failed) before any of its workers connected")
    );
}

#[test]
fn close_is_persisted_idempotent_and_stops_submissions() {
    let (_dir, path) = fresh();
    let mut l = Ledger::open(&path, "c").unwrap();
    let (s, _) = l.begin_submit(0.0).unwrap();
    l.submitted(s, "1", 0.0).unwrap();
    l.close(50.0).unwrap();
    l.close(60.0).unwrap();
    let mut l = Ledger::open(&path, "c").unwrap();
    assert!(l.is_closed());
    assert_eq!(l.closed_at(), Some(50.0));
    let err = l.begin_submit(70.0).unwrap_err().to_string();
    assert!(err.contains("closed"), "{err}");
    // `down --force` may still record what it cancelled after closing.
    l.set_end_reason("1", EndReason::Shutdown).unwrap();
    l.set_state("1", JobState::Cancelled, 71.0).unwrap();
}

#[test]
fn corrupt_file_is_refused_naming_the_file() {
    let (_dir, path) = fresh();
    for text in ["", "{not json", "[1, 2]", "{\"version\": 1}"] {
        std::fs::write(&path, text).unwrap();
        let err = Ledger::open(&path, "c").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("corrupt"), "{msg}");
        assert!(msg.contains("rdask-c-*"), "{msg}");
        assert_eq!(err.exit_code(), 1);
    }
}

#[test]
fn inconsistent_sequence_numbers_are_corrupt() {
    let (_dir, path) = fresh();
    let mut l = Ledger::open(&path, "c").unwrap();
    l.begin_submit(0.0).unwrap();
    l.begin_submit(0.0).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let bad = text.replace("\"next_seq\":2", "\"next_seq\":1");
    assert_ne!(bad, text);
    std::fs::write(&path, bad).unwrap();
    let msg = Ledger::open(&path, "c").unwrap_err().to_string();
    assert!(msg.contains("corrupt"), "{msg}");
}

#[test]
fn newer_versions_and_other_clusters_are_refused() {
    let (_dir, path) = fresh();
    let mut l = Ledger::open(&path, "c").unwrap();
    l.begin_submit(0.0).unwrap();
    let err = Ledger::open(&path, "other").unwrap_err().to_string();
    assert!(err.contains("belongs to cluster `c`"), "{err}");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"version\":2", "\"version\":99")).unwrap();
    let err = Ledger::open(&path, "c").unwrap_err().to_string();
    assert!(err.contains("version 99"), "{err}");
}

#[test]
fn unreadable_path_is_an_io_error_naming_the_file() {
    let (dir, _) = fresh();
    // A directory where the file should be.
    let err = Ledger::open(dir.path(), "c").unwrap_err().to_string();
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
}

#[test]
fn writes_leave_no_temporary_files_and_json_lines() {
    let (dir, path) = fresh();
    let mut l = Ledger::open(&path, "c").unwrap();
    for i in 0..5 {
        let (s, _) = l.begin_submit(f64::from(i)).unwrap();
        l.submitted(s, &format!("j{i}"), 0.0).unwrap();
    }
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["ledger.json"]);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.ends_with('\n'));
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The first change wrote the snapshot, every later one appended a line.
    assert_eq!(lines.len(), 10);
    assert_eq!(lines[0]["version"], LEDGER_VERSION);
    assert_eq!(lines[0]["cluster"], "c");
    assert_eq!(lines[0]["closed"], false);
    assert_eq!(lines[9]["jobs"][0]["job_id"], "j4");
    assert_eq!(lines[9]["jobs"][0]["state"], "pending");
    assert_eq!(lines[9]["jobs"][0]["name"], "rdask-c-4");
    assert_eq!(lines[9].get("head"), None, "the head did not change");
    assert_eq!(lines[8]["head"]["next_seq"], 5);
}

#[test]
fn a_failed_write_changes_nothing_in_memory() {
    let (dir, _) = fresh();
    let path = dir.path().join("missing-dir").join("ledger.json");
    let mut l = Ledger::open(&path, "c").unwrap();
    let err = l.begin_submit(0.0).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(l.jobs().is_empty());
    // Once the directory exists the same ledger works, and the sequence was not consumed.
    std::fs::create_dir(path.parent().unwrap()).unwrap();
    assert_eq!(l.begin_submit(0.0).unwrap().0, 0);
}

#[test]
fn reload_gives_back_exactly_what_was_written() {
    let (_dir, path) = fresh();
    let mut l = Ledger::open(&path, "c").unwrap();
    let (a, _) = l.begin_submit(1.5).unwrap();
    l.submitted(a, "1.server", 2.5).unwrap();
    l.set_state("1.server", JobState::Running, 3.5).unwrap();
    l.workers_seen("1.server", 4.5).unwrap();
    let (b, _) = l.begin_submit(5.5).unwrap();
    l.submit_failed(b, "no \"quota\"\nleft", 6.5).unwrap();
    l.begin_submit(7.5).unwrap();
    let back = Ledger::open(&path, "c").unwrap();
    assert_eq!(back.jobs(), l.jobs());
    assert_eq!(back.is_closed(), l.is_closed());
}

#[test]
fn non_finite_times_are_refused_and_change_nothing() {
    let (_dir, path) = fresh();
    let mut l = Ledger::open(&path, "c").unwrap();
    let (s, _) = l.begin_submit(0.0).unwrap();
    let err = l.submitted(s, "1", f64::NAN).unwrap_err().to_string();
    assert!(err.contains("finite"), "{err}");
    assert!(l.begin_submit(f64::INFINITY).is_err());
    assert_eq!(l.jobs().len(), 1);
    assert_eq!(l.jobs()[0].state, LedgerState::Submitting);
    // The file is still readable and agrees.
    assert_eq!(Ledger::open(&path, "c").unwrap().jobs(), l.jobs());
}

#[derive(Clone, Debug)]
enum Op {
    Begin,
    Submitted(usize, u8),
    SubmitFailed(usize),
    States(Vec<(u8, u8)>),
    WorkersSeen(u8),
    EndReason(u8, u8),
    Close,
    /// The daemon restarts: the ledger is read back from its file and used from there.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Begin),
        3 => (0usize..16, 0u8..12).prop_map(|(s, i)| Op::Submitted(s, i)),
        1 => (0usize..16).prop_map(Op::SubmitFailed),
        3 => proptest::collection::vec((0u8..12, 0u8..6), 0..5).prop_map(Op::States),
        1 => (0u8..12).prop_map(Op::WorkersSeen),
        1 => (0u8..12, 0u8..10).prop_map(|(i, r)| Op::EndReason(i, r)),
        1 => Just(Op::Close),
        1 => Just(Op::Reopen),
    ]
}

const REASONS: [EndReason; 10] = [
    EndReason::ScaledDown,
    EndReason::StartupTimeout,
    EndReason::WorkersLost,
    EndReason::Shutdown,
    EndReason::Completed,
    EndReason::Failed,
    EndReason::Walltime,
    EndReason::CancelledOutside,
    EndReason::Vanished,
    EndReason::SubmitFailed,
];

const STATES: [JobState; 6] = [
    JobState::Pending,
    JobState::Running,
    JobState::Completed,
    JobState::Failed,
    JobState::Cancelled,
    JobState::Gone,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the daemon does, the file always reads back as the ledger in memory, and
    /// the ledger's own rules hold.
    #[test]
    fn random_operations_persist_exactly_and_keep_the_rules(
        ops in proptest::collection::vec(op(), 1..40)
    ) {
        let (_dir, path) = fresh();
        let mut l = Ledger::open(&path, "c\"ø").unwrap();
        let mut now = 0.0;
        for op in ops {
            now += 0.125;
            let before = l.jobs().to_vec();
            let file_before = std::fs::read(&path).unwrap_or_default();
            // Odd ids: quotes, unicode, server suffixes.
            let id = |i: u8| format!("{i}.srv\"é");
            let _ = match op {
                Op::Begin => l.begin_submit(now).map(|_| ()),
                Op::Submitted(s, i) => l.submitted(s as u64, &id(i), now),
                Op::SubmitFailed(s) => l.submit_failed(s as u64, "no", now),
                Op::States(v) => l
                    .update_states(
                        &v.iter().map(|&(i, s)| (id(i), STATES[s as usize])).collect(),
                        now,
                    )
                    .map(|_| ()),
                Op::WorkersSeen(i) => l.workers_seen(&id(i), now).map(|_| ()),
                Op::EndReason(i, r) => l.set_end_reason(&id(i), REASONS[r as usize]),
                Op::Close => l.close(now),
                Op::Reopen => {
                    if path.exists() {
                        l = Ledger::open(&path, "c\"ø").unwrap();
                    }
                    Ok(())
                }
            };
            let disk = Ledger::open(&path, "c\"ø");
            if path.exists() {
                let disk = disk.unwrap();
                prop_assert_eq!(disk.jobs(), l.jobs());
                prop_assert_eq!(disk.is_closed(), l.is_closed());
                prop_assert_eq!(&disk.data, &l.data);
                // A crash part way through this change's append leaves the ledger as it was.
                let file = std::fs::read(&path).unwrap();
                if file.len() > file_before.len() && file.starts_with(&file_before)
                    && !file_before.is_empty()
                {
                    for cut in [file_before.len() + 1, (file_before.len() + file.len()) / 2,
                                file.len() - 1] {
                        std::fs::write(&path, &file[..cut]).unwrap();
                        let torn = Ledger::open(&path, "c\"ø").unwrap();
                        prop_assert_eq!(torn.jobs(), &before[..]);
                    }
                    std::fs::write(&path, &file).unwrap();
                }
            }
            // Records are never lost, and finished ones stay finished except `gone`.
            prop_assert!(l.jobs().len() >= before.len());
            for (old, new) in before.iter().zip(l.jobs()) {
                prop_assert_eq!(old.seq, new.seq);
                prop_assert!(old.job_id.is_none() || old.job_id == new.job_id);
                if old.is_finished() && old.state != LedgerState::Gone {
                    prop_assert_eq!(old.state, new.state);
                }
            }
            let mut ids = std::collections::BTreeSet::new();
            for (k, j) in l.jobs().iter().enumerate() {
                prop_assert_eq!(j.seq, k as u64);
                prop_assert_eq!(&j.name, &job_name("c\"ø", j.seq));
                prop_assert_eq!(j.job_id.is_none(), matches!(
                    j.state, LedgerState::Submitting | LedgerState::NotSubmitted));
                // An id may come back, but only one job with it may be alive.
                if let (Some(id), false) = (&j.job_id, j.is_finished()) {
                    prop_assert!(ids.insert(id.clone()), "id {} alive twice", id);
                }
                prop_assert_eq!(j.ended_at.is_some(), j.is_finished());
                if j.state == LedgerState::Running {
                    prop_assert!(j.started_at.is_some());
                }
            }
        }
    }
}

#[test]
fn state_names_and_batch_states_agree() {
    for s in [
        JobState::Pending,
        JobState::Running,
        JobState::Completed,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Gone,
    ] {
        let l = LedgerState::from(s);
        assert_eq!(l.batch_state(), Some(s));
        assert_eq!(l.is_finished(), s.is_finished());
        assert_eq!(l.name(), s.name());
    }
    assert!(!LedgerState::Submitting.is_finished());
    assert!(LedgerState::NotSubmitted.is_finished());
    assert_eq!(LedgerState::Submitting.batch_state(), None);
}

/// A ledger as rdask-jobqueue wrote it before the log (format version 1): one pretty JSON
/// object, the whole file. Clusters on users' disks still have these.
const VERSION_1: &str = r#"{
  "version": 1,
  "cluster": "c",
  "next_seq": 2,
  "closed": false,
  "closed_at": null,
  "jobs": [
    {
      "seq": 0,
      "name": "rdask-c-0",
      "job_id": "41",
      "state": "running",
      "recorded_at": 1.0,
      "submitted_at": 2.0,
      "started_at": 3.0,
      "workers_seen_at": null,
      "ended_at": null,
      "end_reason": null,
      "detail": null
    },
    {
      "seq": 1,
      "name": "rdask-c-1",
      "job_id": null,
      "state": "submitting",
      "recorded_at": 4.0,
      "submitted_at": null,
      "started_at": null,
      "workers_seen_at": null,
      "ended_at": null,
      "end_reason": null,
      "detail": null
    }
  ]
}
"#;

#[test]
fn the_old_whole_file_format_is_read_and_rewritten_as_a_log_by_the_first_change() {
    let (_dir, path) = fresh();
    std::fs::write(&path, VERSION_1).unwrap();
    let mut l = Ledger::open(&path, "c").unwrap();
    assert_eq!(l.jobs().len(), 2);
    assert_eq!(l.job("41").unwrap().state, LedgerState::Running);
    assert_eq!(l.submitting_names(), vec!["rdask-c-1".to_string()]);
    // Reading alone changes nothing on disk.
    assert_eq!(std::fs::read_to_string(&path).unwrap(), VERSION_1);
    l.submitted(1, "42", 5.0).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with(&format!("{{\"version\":{LEDGER_VERSION},")),
        "{text}"
    );
    let back = Ledger::open(&path, "c").unwrap();
    assert_eq!(back.jobs(), l.jobs());
    assert_eq!(back.job("42").unwrap().seq, 1);
    // And the next change is appended to the new log.
    l.set_state("42", JobState::Running, 6.0).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
    assert_eq!(Ledger::open(&path, "c").unwrap().jobs(), l.jobs());
}

/// Three changes on disk, the last still in memory: what a test can tear.
fn three_changes(path: &std::path::Path) -> (Ledger, Vec<JobRecord>, usize) {
    let mut l = Ledger::open(path, "c").unwrap();
    let (s, _) = l.begin_submit(0.0).unwrap();
    l.submitted(s, "1", 1.0).unwrap();
    let before = l.jobs().to_vec();
    let len = std::fs::metadata(path).unwrap().len() as usize;
    l.set_state("1", JobState::Running, 2.0).unwrap();
    (l, before, len)
}

#[test]
fn a_torn_last_line_is_dropped_and_the_next_change_rewrites_the_file() {
    let (_dir, path) = fresh();
    let (_, before, len) = three_changes(&path);
    let full = std::fs::read(&path).unwrap();
    // A crash part way through the last append: every cut short of its newline.
    for cut in len..full.len() {
        std::fs::write(&path, &full[..cut]).unwrap();
        let l = Ledger::open(&path, "c").unwrap();
        assert_eq!(l.jobs(), &before[..], "cut at {cut} of {}", full.len());
    }
    // The torn bytes are never appended after: the next change rewrites the file whole.
    std::fs::write(&path, &full[..full.len() - 1]).unwrap();
    let mut l = Ledger::open(&path, "c").unwrap();
    l.workers_seen("1", 3.0).unwrap();
    let back = Ledger::open(&path, "c").unwrap();
    assert_eq!(back.jobs(), l.jobs());
    assert_eq!(back.job("1").unwrap().workers_seen_at, Some(3.0));
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
}

#[test]
fn a_damaged_complete_line_is_corrupt_naming_the_line() {
    let (_dir, path) = fresh();
    three_changes(&path);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    for (damaged, line_no) in [
        (format!("{}\n{{\"jobs\": [\n{}\n", lines[0], lines[2]), 2),
        (format!("{}\n{}\n\n", lines[0], lines[1]), 3),
        (
            format!("{}\n{}\n{{\"unknown\": 1}}\n", lines[0], lines[1]),
            3,
        ),
        (format!("{}\n{}\n[1]\n{}", lines[0], lines[1], lines[2]), 3),
    ] {
        std::fs::write(&path, &damaged).unwrap();
        let err = Ledger::open(&path, "c").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("corrupt"), "{msg}");
        assert!(msg.contains(&format!("line {line_no}")), "{msg}");
        assert!(msg.contains("rdask-c-*"), "{msg}");
        assert_eq!(err.exit_code(), 1);
    }
    // What `down --force` of a daemon killed mid-write would find if the snapshot itself
    // were damaged: refused too, never read as an empty ledger.
    std::fs::write(&path, "{\"version\": 1, \"jobs\": [").unwrap();
    assert!(Ledger::open(&path, "c")
        .unwrap_err()
        .to_string()
        .contains("corrupt"));
}

#[test]
fn compaction_bounds_the_log_and_keeps_every_record() {
    let (_dir, path) = fresh();
    let mut l = Ledger::open(&path, "c").unwrap();
    let mut most_lines = 0;
    for i in 0..40u32 {
        let (s, _) = l.begin_submit(f64::from(i)).unwrap();
        let id = format!("j{i}");
        l.submitted(s, &id, 0.5).unwrap();
        for state in [JobState::Running, JobState::Pending, JobState::Running] {
            l.set_state(&id, state, 1.0).unwrap();
        }
        l.workers_seen(&id, 2.0).unwrap();
        if i % 3 == 0 {
            l.set_state(&id, JobState::Completed, 3.0).unwrap();
        }
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        let records = l.jobs().len() + 1;
        assert!(
            !should_compact(lines, records),
            "{lines} lines, {records} records"
        );
        most_lines = most_lines.max(lines);
        assert_eq!(Ledger::open(&path, "c").unwrap().jobs(), l.jobs());
    }
    // Far fewer lines than the ~250 changes made: it was compacted, and lost nothing.
    assert!(most_lines <= COMPACT_RATIO * 41, "{most_lines}");
    let back = Ledger::open(&path, "c").unwrap();
    assert_eq!(back.jobs().len(), 40);
    assert_eq!(back.jobs(), l.jobs());
    assert_eq!(back.job("j39").unwrap().workers_seen_at, Some(2.0));
    assert_eq!(back.job("j38").unwrap().state, LedgerState::Running);
    assert_eq!(back.job("j39").unwrap().state, LedgerState::Completed);
}

#[test]
fn compaction_starts_past_a_multiple_of_the_live_records() {
    assert!(!should_compact(COMPACT_RATIO * COMPACT_MIN_RECORDS, 1));
    assert!(should_compact(COMPACT_RATIO * COMPACT_MIN_RECORDS + 1, 1));
    assert!(!should_compact(COMPACT_RATIO * 100, 100));
    assert!(should_compact(COMPACT_RATIO * 100 + 1, 100));
}

#[test]
fn a_missing_file_mid_life_is_recreated_whole() {
    let (_dir, path) = fresh();
    let (mut l, _, _) = three_changes(&path);
    std::fs::remove_file(&path).unwrap();
    // Appending needs the file: the change is refused and not adopted...
    let err = l.workers_seen("1", 3.0).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert_eq!(l.job("1").unwrap().workers_seen_at, None);
    // ...and the next one writes the whole ledger again.
    l.workers_seen("1", 4.0).unwrap();
    assert_eq!(Ledger::open(&path, "c").unwrap().jobs(), l.jobs());
}

/// An array's elements are recorded in one write under one name, get their element ids in
/// one write, and are then jobs like any other: polled, cancelled and ended one by one.
#[test]
fn an_arrays_elements_are_jobs_of_their_own_under_one_name() {
    let (_dir, path) = fresh();
    let mut l = Ledger::open(&path, "c").unwrap();
    l.begin_submit(1.0).unwrap();
    let (name, seqs) = l.begin_array(3, 2.0).unwrap();
    assert_eq!(name, "rdask-c-1");
    assert_eq!(seqs, [1, 2, 3]);
    let disk = Ledger::open(&path, "c").unwrap();
    assert!(disk.jobs()[1..].iter().all(|j| j.name == "rdask-c-1"));
    // Found by name once, if the array's submit command came back without an id.
    assert_eq!(disk.submitting_names(), ["rdask-c-0", "rdask-c-1"]);
    // The next job is named after its own number.
    assert_eq!(l.begin_submit(3.0).unwrap(), (4, "rdask-c-4".to_string()));

    let ids: Vec<(u64, String)> = seqs
        .iter()
        .zip(["77_0", "77_1", "77_2"])
        .map(|(s, id)| (*s, id.to_string()))
        .collect();
    l.submitted_all(&ids, 4.0).unwrap();
    let disk = Ledger::open(&path, "c").unwrap();
    assert_eq!(disk.unfinished_ids(), ["77_0", "77_1", "77_2"]);
    assert_eq!(disk.job("77_1").unwrap().seq, 2);
    // One element ends, the others run on.
    l.update_states(
        &states(&[("77_1", JobState::Cancelled), ("77_0", JobState::Running)]),
        5.0,
    )
    .unwrap();
    assert_eq!(l.unfinished_ids(), ["77_0", "77_2"]);
    // All or nothing: an id still alive cannot be given again, and nothing of the batch is kept.
    let (_, more) = l.begin_array(2, 6.0).unwrap();
    let err = l
        .submitted_all(&[(more[0], "78_0".into()), (more[1], "77_0".into())], 7.0)
        .unwrap_err();
    assert!(err.to_string().contains("77_0"), "{err}");
    assert!(l.job("78_0").is_none());
    assert!(Ledger::open(&path, "c").unwrap().job("78_0").is_none());
}
