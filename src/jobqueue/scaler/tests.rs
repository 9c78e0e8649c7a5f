use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;

fn config(processes: usize) -> ScalerConfig {
    ScalerConfig {
        processes,
        ..ScalerConfig::default()
    }
}

fn scaler(processes: usize) -> Scaler {
    Scaler::new(config(processes)).unwrap()
}

fn fixed(workers: usize) -> Target {
    Target::Fixed { workers }
}

fn adaptive(minimum: usize, maximum: usize, wait_count: u32) -> Target {
    Target::Adaptive {
        minimum,
        maximum,
        target_duration: 5.0,
        wait_count,
    }
}

fn obs(now: f64, target: Target, jobs: Vec<JobObservation>) -> Observation {
    Observation {
        now,
        target,
        jobs,
        submitting: 0,
        load: Load::default(),
        submit_failures: 0,
        submit_successes: 0,
    }
}

fn pending(id: &str, submitted_at: f64) -> JobObservation {
    JobObservation {
        job_id: id.to_string(),
        state: JobState::Pending,
        submitted_at,
        started_at: None,
        workers_seen_at: None,
        workers: Vec::new(),
    }
}

/// A running job whose `processes` workers hold `bytes` each.
fn running(id: &str, started: f64, processes: usize, bytes: u64) -> JobObservation {
    JobObservation {
        job_id: id.to_string(),
        state: JobState::Running,
        submitted_at: started - 1.0,
        started_at: Some(started),
        workers_seen_at: (processes > 0).then_some(started),
        workers: (0..processes)
            .map(|k| WorkerObservation {
                name: format!("{id}-{k}"),
                held_bytes: bytes,
                retiring: false,
            })
            .collect(),
    }
}

fn with_state(mut j: JobObservation, state: JobState) -> JobObservation {
    j.state = state;
    j
}

fn submits(t: &Tick) -> usize {
    t.decisions
        .iter()
        .map(|d| match d {
            Decision::Submit { jobs } => *jobs,
            _ => 0,
        })
        .sum()
}

/// The ids cancelled or retired, in order.
fn ended(t: &Tick) -> Vec<String> {
    t.decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Submit { .. } => None,
            Decision::Cancel { job_id, .. } | Decision::Retire { job_id, .. } => {
                Some(job_id.clone())
            }
        })
        .collect()
}

// ---- targets and formulas ----

#[test]
fn workers_become_whole_jobs() {
    for (k, p, jobs) in [
        (0, 4, 0),
        (1, 4, 1),
        (4, 4, 1),
        (5, 4, 2),
        (10, 3, 4),
        (7, 1, 7),
    ] {
        let mut s = scaler(p);
        let t = s.tick(&obs(0.0, fixed(k), vec![]));
        assert_eq!(t.wanted_jobs, jobs, "{k} workers, P={p}");
        assert_eq!(submits(&t), jobs, "{k} workers, P={p}");
    }
}

#[test]
fn jobs_targets_convert_to_workers() {
    assert_eq!(Target::fixed_jobs(3, 4), fixed(12));
    assert_eq!(
        Target::adaptive_jobs(1, 5, 2, 5.0, 3),
        Target::Adaptive {
            minimum: 2,
            maximum: 10,
            target_duration: 5.0,
            wait_count: 3
        }
    );
}

#[test]
fn bad_targets_and_configs_are_invalid_input() {
    let bad = [
        adaptive(5, 2, 3),
        adaptive(0, 2, 0),
        Target::Adaptive {
            minimum: 0,
            maximum: 1,
            target_duration: 0.0,
            wait_count: 1,
        },
        Target::Adaptive {
            minimum: 0,
            maximum: 1,
            target_duration: f64::NAN,
            wait_count: 1,
        },
    ];
    for t in bad {
        let e = t.validate().unwrap_err();
        assert_eq!(e.exit_code(), 2, "{t:?}");
    }
    let e = adaptive(5, 2, 3).validate().unwrap_err().to_string();
    assert!(
        e.contains("minimum (5)") && e.contains("maximum (2)"),
        "{e}"
    );
    assert!(fixed(0).validate().is_ok());
    assert!(adaptive(0, 0, 1).validate().is_ok());

    for cfg in [
        ScalerConfig {
            processes: 0,
            ..ScalerConfig::default()
        },
        ScalerConfig {
            max_pending_jobs: 0,
            ..ScalerConfig::default()
        },
        ScalerConfig {
            backoff_initial: 0.0,
            ..ScalerConfig::default()
        },
        ScalerConfig {
            backoff_max: 0.5,
            ..ScalerConfig::default()
        },
        ScalerConfig {
            startup_timeout: -1.0,
            ..ScalerConfig::default()
        },
    ] {
        assert_eq!(Scaler::new(cfg).unwrap_err().exit_code(), 2);
    }
}

#[test]
fn adaptive_formula() {
    let load = |q, p, s| Load {
        queued_tasks: q,
        processing_tasks: p,
        work_seconds: s,
        program_cpus: 0,
    };
    // No work: nothing wanted.
    assert_eq!(adaptive_workers(&load(0, 0, 100.0), 5.0, 1), 0);
    // Some work, however short: one core.
    assert_eq!(adaptive_workers(&load(3, 0, 0.001), 5.0, 1), 1);
    assert_eq!(adaptive_workers(&load(3, 0, f64::NAN), 5.0, 1), 1);
    // 100 s of work, 5 s target: 20 cores.
    assert_eq!(adaptive_workers(&load(100, 0, 100.0), 5.0, 1), 20);
    assert_eq!(adaptive_workers(&load(100, 0, 101.0), 5.0, 1), 21);
    // Never more cores than tasks (a few long tasks).
    assert_eq!(adaptive_workers(&load(2, 1, 1000.0), 5.0, 1), 3);
    assert_eq!(adaptive_workers(&load(2, 1, f64::INFINITY), 5.0, 1), 3);
    // Cores to workers by threads per worker.
    assert_eq!(adaptive_workers(&load(100, 0, 100.0), 5.0, 4), 5);
    assert_eq!(adaptive_workers(&load(100, 0, 105.0), 5.0, 4), 6);
    // Bounds, then whole jobs.
    let t = adaptive(2, 9, 3);
    assert_eq!(wanted_jobs(&t, &load(0, 0, 0.0), 4, 1), 1); // min 2 workers -> 1 job
    assert_eq!(wanted_jobs(&t, &load(100, 0, 100.0), 4, 1), 3); // 9 workers -> 3 jobs
    assert_eq!(wanted_jobs(&t, &load(5, 0, 25.0), 4, 1), 2); // 5 workers -> 2 jobs
    assert_eq!(wanted_jobs(&adaptive(0, 4, 3), &load(0, 0, 0.0), 4, 1), 0);
}

// ---- scale up, caps, back-off ----

#[test]
fn submitting_jobs_are_counted_as_pending() {
    let mut s = scaler(1);
    let mut o = obs(0.0, fixed(5), vec![pending("1", 0.0)]);
    o.submitting = 3;
    let t = s.tick(&o);
    assert_eq!(t.counted_jobs, 4);
    assert_eq!(t.pending_jobs, 4);
    assert_eq!(t.decisions, vec![Decision::Submit { jobs: 1 }]);
}

#[test]
fn never_more_pending_than_the_cap() {
    let mut s = Scaler::new(ScalerConfig {
        max_pending_jobs: 3,
        ..config(1)
    })
    .unwrap();
    let t = s.tick(&obs(0.0, fixed(10), vec![]));
    assert_eq!(t.decisions, vec![Decision::Submit { jobs: 3 }]);
    assert_eq!(t.blocked, Some(Blocked::PendingCap { pending: 0, cap: 3 }));
    // Three pending: nothing more until some start.
    let jobs = vec![pending("1", 0.0), pending("2", 0.0), pending("3", 0.0)];
    let t = s.tick(&obs(1.0, fixed(10), jobs));
    assert!(t.decisions.is_empty());
    assert_eq!(t.blocked, Some(Blocked::PendingCap { pending: 3, cap: 3 }));
    // Two started: two more.
    let jobs = vec![
        running("1", 1.0, 1, 0),
        running("2", 1.0, 1, 0),
        pending("3", 0.0),
    ];
    let t = s.tick(&obs(2.0, fixed(10), jobs));
    assert_eq!(t.decisions, vec![Decision::Submit { jobs: 2 }]);
}

#[test]
fn backoff_after_failed_submissions_doubles_and_is_capped() {
    let mut s = Scaler::new(ScalerConfig {
        backoff_max: 4.0,
        ..config(1)
    })
    .unwrap();
    let mut now = 0.0;
    let t = s.tick(&obs(now, fixed(1), vec![]));
    assert_eq!(submits(&t), 1);
    // Fails: wait 1, then 2, then 4, then 4 (cap).
    for (k, delay) in [1.0, 2.0, 4.0, 4.0].into_iter().enumerate() {
        now += 0.25;
        let mut o = obs(now, fixed(1), vec![]);
        o.submit_failures = 1;
        let t = s.tick(&o);
        let f = s.failures().clone();
        assert_eq!(f.consecutive, k as u32 + 1);
        assert_eq!(f.total, k as u64 + 1);
        assert_eq!(f.retry_at, Some(now + delay));
        assert!(t.decisions.is_empty());
        assert_eq!(
            t.blocked,
            Some(Blocked::Backoff {
                retry_at: now + delay
            })
        );
        // Still waiting just before the retry time ...
        let t = s.tick(&obs(now + delay - 0.01, fixed(1), vec![]));
        assert!(t.decisions.is_empty());
        // ... and retrying at it.
        now += delay;
        let t = s.tick(&obs(now, fixed(1), vec![]));
        assert_eq!(t.decisions, vec![Decision::Submit { jobs: 1 }]);
    }
    // A success resets the back-off, but the total stays for `status`.
    let mut o = obs(now + 1.0, fixed(1), vec![pending("1", now)]);
    o.submit_successes = 1;
    let t = s.tick(&o);
    assert!(t.decisions.is_empty());
    let f = s.failures().clone();
    assert_eq!((f.consecutive, f.total, f.retry_at), (0, 4, None));
    // The next failure starts again from the initial delay.
    let mut o = obs(now + 2.0, fixed(2), vec![pending("1", now)]);
    o.submit_failures = 1;
    s.tick(&o);
    assert_eq!(s.failures().clone().retry_at, Some(now + 3.0));
}

#[test]
fn backoff_does_not_stop_scaling_down() {
    let mut s = scaler(1);
    let mut o = obs(0.0, fixed(0), vec![pending("1", 0.0)]);
    o.submit_failures = 2;
    let t = s.tick(&o);
    assert_eq!(ended(&t), vec!["1"]);
}

// ---- replacement and health ----

#[test]
fn finished_jobs_are_replaced_while_wanted() {
    for state in [
        JobState::Completed,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Gone,
    ] {
        let mut s = scaler(2);
        // Job 2's workers had connected: it ended after serving, not at its start (that
        // is a failure and backs off: `jobs_dying_at_start_back_off_then_pause...`).
        let jobs = vec![
            running("1", 0.0, 2, 10),
            with_state(running("2", 0.0, 2, 0), state),
        ];
        let t = s.tick(&obs(10.0, fixed(4), jobs));
        assert_eq!(t.counted_jobs, 1, "{state}");
        assert_eq!(t.decisions, vec![Decision::Submit { jobs: 1 }], "{state}");
    }
    // Left out of the observation altogether: the same.
    let mut s = scaler(2);
    let t = s.tick(&obs(10.0, fixed(4), vec![running("1", 0.0, 2, 10)]));
    assert_eq!(t.decisions, vec![Decision::Submit { jobs: 1 }]);
}

#[test]
fn finished_jobs_are_not_replaced_when_no_longer_wanted() {
    let mut s = scaler(1);
    let jobs = vec![
        running("1", 0.0, 1, 10),
        with_state(running("2", 0.0, 1, 0), JobState::Failed),
    ];
    let t = s.tick(&obs(10.0, fixed(1), jobs));
    assert!(t.decisions.is_empty());
}

#[test]
fn startup_timeout_counts_from_the_start_not_the_queue_wait() {
    let cfg = ScalerConfig {
        startup_timeout: 60.0,
        ..config(2)
    };
    let mut s = Scaler::new(cfg).unwrap();
    // Pending for ages: not a startup problem.
    let t = s.tick(&obs(1000.0, fixed(2), vec![pending("1", 0.0)]));
    assert!(t.decisions.is_empty());
    // Started at 1000, no worker by 1059: still waiting.
    let mut j = with_state(pending("1", 0.0), JobState::Running);
    j.started_at = Some(1000.0);
    let t = s.tick(&obs(1059.0, fixed(2), vec![j.clone()]));
    assert!(t.decisions.is_empty());
    // At 1060: cancelled with the reason, and replaced on the same tick.
    let t = s.tick(&obs(1060.0, fixed(2), vec![j.clone()]));
    assert_eq!(
        t.decisions,
        vec![
            Decision::Cancel {
                job_id: "1".into(),
                reason: CancelReason::StartupTimeout
            },
            Decision::Submit { jobs: 1 }
        ]
    );
    assert_eq!(
        s.ending("1"),
        Some(Ending::Cancelled(CancelReason::StartupTimeout))
    );
    // Still shown running on the next poll: not cancelled again, not counted.
    let t = s.tick(&obs(1061.0, fixed(2), vec![j, pending("2", 1060.0)]));
    assert!(t.decisions.is_empty());
    assert_eq!(t.counted_jobs, 1);
}

#[test]
fn startup_timeout_without_a_start_time_counts_from_first_seen_running() {
    let mut s = Scaler::new(ScalerConfig {
        startup_timeout: 60.0,
        ..config(1)
    })
    .unwrap();
    let j = with_state(pending("1", 0.0), JobState::Running); // started_at: None
    assert!(s
        .tick(&obs(500.0, fixed(1), vec![j.clone()]))
        .decisions
        .is_empty());
    assert!(s
        .tick(&obs(559.0, fixed(1), vec![j.clone()]))
        .decisions
        .is_empty());
    assert_eq!(ended(&s.tick(&obs(560.0, fixed(1), vec![j]))), vec!["1"]);
}

#[test]
fn a_job_with_connected_workers_never_times_out() {
    let mut s = Scaler::new(ScalerConfig {
        startup_timeout: 10.0,
        ..config(4)
    })
    .unwrap();
    // One of its four workers connected: it started.
    let mut j = running("1", 0.0, 1, 0);
    j.workers_seen_at = None;
    let t = s.tick(&obs(1000.0, fixed(4), vec![j]));
    assert!(t.decisions.is_empty());
}

#[test]
fn running_jobs_that_lost_all_workers_are_cancelled_after_the_grace() {
    let mut s = Scaler::new(ScalerConfig {
        workers_lost_grace: 5.0,
        ..config(2)
    })
    .unwrap();
    let healthy = running("1", 0.0, 2, 0);
    let mut lost = running("2", 0.0, 2, 0);
    lost.workers.clear();
    let t = s.tick(&obs(100.0, fixed(4), vec![healthy.clone(), lost.clone()]));
    assert!(t.decisions.is_empty());
    assert_eq!(t.counted_jobs, 2, "counted during the grace");
    // Its workers come back: the clock restarts.
    let t = s.tick(&obs(
        103.0,
        fixed(4),
        vec![healthy.clone(), running("2", 0.0, 2, 0)],
    ));
    assert!(t.decisions.is_empty());
    let t = s.tick(&obs(104.0, fixed(4), vec![healthy.clone(), lost.clone()]));
    assert!(t.decisions.is_empty());
    let t = s.tick(&obs(108.9, fixed(4), vec![healthy.clone(), lost.clone()]));
    assert!(t.decisions.is_empty());
    let t = s.tick(&obs(109.0, fixed(4), vec![healthy.clone(), lost.clone()]));
    assert_eq!(
        t.decisions,
        vec![
            Decision::Cancel {
                job_id: "2".into(),
                reason: CancelReason::WorkersLost
            },
            Decision::Submit { jobs: 1 }
        ]
    );
}

#[test]
fn health_is_checked_whatever_the_target() {
    let mut s = Scaler::new(ScalerConfig {
        workers_lost_grace: 0.0,
        ..config(1)
    })
    .unwrap();
    let mut lost = running("1", 0.0, 1, 0);
    lost.workers.clear();
    let t = s.tick(&obs(10.0, adaptive(1, 1, 3), vec![lost]));
    assert_eq!(
        t.decisions,
        vec![
            Decision::Cancel {
                job_id: "1".into(),
                reason: CancelReason::WorkersLost
            },
            Decision::Submit { jobs: 1 }
        ]
    );
}

#[test]
fn jobs_whose_workers_all_retire_are_not_counted_nor_chosen() {
    let mut s = scaler(2);
    let mut draining = running("1", 0.0, 2, 1);
    for w in &mut draining.workers {
        w.retiring = true;
    }
    let mut half = running("2", 0.0, 2, 1000);
    half.workers[0].retiring = true;
    // Walltime drain of job 1: it is replaced; job 2 still counts.
    let t = s.tick(&obs(10.0, fixed(4), vec![draining.clone(), half.clone()]));
    assert_eq!(t.counted_jobs, 1);
    assert_eq!(t.decisions, vec![Decision::Submit { jobs: 1 }]);
    // Scaling to 0 retires only job 2; job 1 is already on its way out.
    let t = s.tick(&obs(11.0, fixed(0), vec![draining, half]));
    assert_eq!(ended(&t), vec!["2"]);
}

// ---- scale down ----

#[test]
fn scale_down_cancels_pending_newest_first_then_running_with_least_data() {
    let mut s = scaler(2);
    let jobs = vec![
        running("r-big", 1.0, 2, 1_000_000),
        running("r-small", 2.0, 2, 10),
        running("r-mid", 3.0, 2, 5_000),
        pending("p-old", 5.0),
        pending("p-new", 7.0),
        pending("p-mid", 6.0),
    ];
    // 6 jobs -> 2 jobs (4 workers): the three pending, then the job with least data.
    let t = s.tick(&obs(10.0, fixed(4), jobs.clone()));
    assert_eq!(
        t.decisions,
        vec![
            Decision::Cancel {
                job_id: "p-new".into(),
                reason: CancelReason::ScaleDown
            },
            Decision::Cancel {
                job_id: "p-mid".into(),
                reason: CancelReason::ScaleDown
            },
            Decision::Cancel {
                job_id: "p-old".into(),
                reason: CancelReason::ScaleDown
            },
            Decision::Retire {
                job_id: "r-small".into(),
                workers: vec!["r-small-0".into(), "r-small-1".into()]
            },
        ]
    );
    assert_eq!(s.ending("r-small"), Some(Ending::Retiring));
    // The same poll again (nothing changed yet): nothing is chosen twice, nothing counted.
    let t = s.tick(&obs(11.0, fixed(4), jobs.clone()));
    assert!(t.decisions.is_empty());
    assert_eq!(t.counted_jobs, 2);
    // Down to one job: the next least data.
    let t = s.tick(&obs(12.0, fixed(2), jobs));
    assert_eq!(ended(&t), vec!["r-mid"]);
}

#[test]
fn only_some_pending_are_cancelled_when_that_is_enough() {
    let mut s = scaler(1);
    let jobs = vec![
        running("r", 1.0, 1, 0),
        pending("a", 5.0),
        pending("b", 6.0),
    ];
    let t = s.tick(&obs(10.0, fixed(2), jobs));
    assert_eq!(ended(&t), vec!["b"]);
}

#[test]
fn equal_data_retires_the_oldest_job() {
    let mut s = scaler(1);
    let jobs = vec![
        running("young", 50.0, 1, 100),
        running("old", 10.0, 1, 100),
        running("mid", 30.0, 1, 100),
    ];
    let t = s.tick(&obs(100.0, fixed(1), jobs));
    assert_eq!(ended(&t), vec!["old", "mid"]);
}

#[test]
fn running_jobs_without_workers_are_cancelled_not_retired() {
    let mut s = scaler(2);
    let mut starting = running("s", 5.0, 0, 0);
    starting.workers_seen_at = None;
    let jobs = vec![running("r", 1.0, 2, 10), starting];
    let t = s.tick(&obs(10.0, fixed(2), jobs));
    assert_eq!(
        t.decisions,
        vec![Decision::Cancel {
            job_id: "s".into(),
            reason: CancelReason::ScaleDown
        }]
    );
}

#[test]
fn jobs_being_submitted_are_removed_once_they_have_an_id() {
    let mut s = scaler(1);
    let mut o = obs(0.0, fixed(0), vec![]);
    o.submitting = 2;
    let t = s.tick(&o);
    assert!(t.decisions.is_empty());
    assert_eq!(t.counted_jobs, 2);
    let t = s.tick(&obs(
        1.0,
        fixed(0),
        vec![pending("1", 0.5), pending("2", 0.6)],
    ));
    assert_eq!(ended(&t), vec!["2", "1"]);
}

#[test]
fn fixed_scale_down_is_immediate() {
    let mut s = scaler(1);
    let jobs = vec![running("1", 0.0, 1, 0), running("2", 0.0, 1, 0)];
    let t = s.tick(&obs(1.0, fixed(1), jobs));
    assert_eq!(ended(&t).len(), 1);
}

// ---- adaptive ----

fn load_for_workers(workers: usize) -> Load {
    if workers == 0 {
        return Load::default();
    }
    // With 1 thread per worker and a 5 s target: 5 s of work per worker wanted.
    Load {
        queued_tasks: 1000,
        processing_tasks: 0,
        work_seconds: 5.0 * workers as f64,
        program_cpus: 0,
    }
}

#[test]
fn adaptive_scales_up_at_once_within_bounds() {
    let mut s = scaler(2);
    let mut o = obs(0.0, adaptive(1, 7, 3), vec![]);
    o.load = load_for_workers(100);
    let t = s.tick(&o);
    // 7 workers at most -> 4 jobs (rounded up to whole jobs).
    assert_eq!((t.wanted_jobs, submits(&t)), (4, 4));
    // Idle: the minimum (1 worker -> 1 job) is kept.
    let mut s = scaler(2);
    let t = s.tick(&obs(0.0, adaptive(1, 7, 3), vec![]));
    assert_eq!((t.wanted_jobs, submits(&t)), (1, 1));
}

#[test]
fn adaptive_scales_down_after_wait_count_agreeing_ticks_to_their_largest_wish() {
    let mut s = scaler(1);
    let jobs: Vec<_> = (0..6)
        .map(|k| running(&format!("{k}"), 0.0, 1, k as u64))
        .collect();
    let target = adaptive(0, 10, 3);
    let tick = |s: &mut Scaler, now: f64, want: usize| {
        let mut o = obs(now, target.clone(), jobs.clone());
        o.load = load_for_workers(want);
        s.tick(&o)
    };
    // Wishes of 2, 4, then 6 again: the streak is broken.
    assert!(tick(&mut s, 1.0, 2).decisions.is_empty());
    assert!(tick(&mut s, 2.0, 4).decisions.is_empty());
    let t = tick(&mut s, 3.0, 6);
    assert!(t.decisions.is_empty());
    assert_eq!(t.target_jobs, 6);
    // Now 2, 4, 3: three ticks agree on fewer; scale to the largest wish, 4.
    let t = tick(&mut s, 4.0, 2);
    assert!(t.decisions.is_empty());
    assert_eq!((t.wanted_jobs, t.target_jobs), (2, 6));
    assert!(tick(&mut s, 5.0, 4).decisions.is_empty());
    let t = tick(&mut s, 6.0, 3);
    assert_eq!(t.target_jobs, 4);
    assert_eq!(ended(&t), vec!["0", "1"], "least data first");
}

#[test]
fn queued_programs_grow_the_cluster_by_their_cpus_and_it_shrinks_after() {
    // Two threads per worker, one process per job, adapt 0..4 workers.
    let mut s = Scaler::new(ScalerConfig {
        threads_per_worker: 2,
        max_pending_jobs: 10,
        ..ScalerConfig::default()
    })
    .unwrap();
    let target = adaptive(0, 4, 2);
    // 5 queued programs of 1 cpu, durations unknown (no work estimate): 5 cores -> 3 workers.
    let programs = |cpus: u64, processing: usize| Load {
        queued_tasks: 0,
        processing_tasks: processing,
        work_seconds: 0.0,
        program_cpus: cpus,
    };
    let mut o = obs(0.0, target.clone(), vec![]);
    o.load = programs(5, 0);
    let t = s.tick(&o);
    assert_eq!((t.wanted_jobs, submits(&t)), (3, 3));
    // 200 of them with --cpus 2: bounded by the maximum, 4 workers.
    let mut s2 = Scaler::new(ScalerConfig {
        threads_per_worker: 2,
        ..ScalerConfig::default()
    })
    .unwrap();
    let mut o = obs(0.0, target.clone(), vec![]);
    o.load = programs(400, 0);
    assert_eq!(s2.tick(&o).wanted_jobs, 4);
    // Running: 3 jobs, all busy; the queue drained but 6 tasks still run: all kept.
    let jobs: Vec<_> = (0..3)
        .map(|k| running(&format!("{k}"), 0.0, 1, 0))
        .collect();
    for now in 1..4 {
        let mut o = obs(f64::from(now), target.clone(), jobs.clone());
        o.load = programs(6, 6);
        let t = s.tick(&o);
        assert!(ended(&t).is_empty(), "busy workers are not retired");
        assert_eq!(t.target_jobs, 3);
    }
    // Done: nothing queued or processing. After wait_count (2) agreeing ticks, all go.
    let idle = |s: &mut Scaler, now: f64| s.tick(&obs(now, target.clone(), jobs.clone()));
    assert!(ended(&idle(&mut s, 4.0)).is_empty());
    assert_eq!(ended(&idle(&mut s, 5.0)).len(), 3);
}

#[test]
fn adaptive_wait_count_one_scales_down_at_once() {
    let mut s = scaler(1);
    let jobs = vec![running("a", 0.0, 1, 0), running("b", 0.0, 1, 0)];
    let t = s.tick(&obs(1.0, adaptive(0, 4, 1), jobs));
    assert_eq!(ended(&t).len(), 2);
}

#[test]
fn a_new_target_restarts_the_agreement() {
    let mut s = scaler(1);
    let jobs = vec![running("a", 0.0, 1, 0), running("b", 0.0, 1, 0)];
    assert!(s
        .tick(&obs(1.0, adaptive(0, 4, 2), jobs.clone()))
        .decisions
        .is_empty());
    // Different bounds: the earlier wish no longer counts.
    assert!(s
        .tick(&obs(2.0, adaptive(0, 5, 2), jobs.clone()))
        .decisions
        .is_empty());
    assert_eq!(ended(&s.tick(&obs(3.0, adaptive(0, 5, 2), jobs))).len(), 2);
}

#[test]
fn adaptive_never_goes_below_the_minimum_when_idle() {
    let mut s = scaler(4);
    let jobs: Vec<_> = (0..3)
        .map(|k| running(&format!("{k}"), 0.0, 4, 0))
        .collect();
    let mut last = None;
    for i in 0..3 {
        last = Some(s.tick(&obs(f64::from(i), adaptive(5, 20, 3), jobs.clone())));
    }
    let t = last.unwrap();
    // Minimum 5 workers = 2 jobs of 4: one of three goes.
    assert_eq!(t.target_jobs, 2);
    assert_eq!(ended(&t).len(), 1);
}

/// A small world: jobs start the tick after submission, workers connect the tick after
/// that, cancels take effect on the next tick, retirements take one tick.
#[derive(Default)]
struct Sim {
    now: f64,
    next_id: u64,
    jobs: Vec<SimJob>,
    failures: u32,
    successes: u32,
    processes: usize,
    // When set, jobs start only when told to.
    manual_start: bool,
    // Workers connect this many ticks after the job starts (None: never).
    connect_delay: Option<u32>,
}

struct SimJob {
    obs: JobObservation,
    running_ticks: u32,
    /// Ticks left before our cancel takes effect.
    cancel_in: Option<u32>,
    finished_ticks: u32,
}

impl Sim {
    fn new(processes: usize) -> Sim {
        Sim {
            processes,
            connect_delay: Some(1),
            ..Sim::default()
        }
    }

    fn observe(&mut self, target: &Target, load: Load) -> Observation {
        Observation {
            now: self.now,
            target: target.clone(),
            // Finished jobs are shown for one tick, then left out.
            jobs: self
                .jobs
                .iter()
                .filter(|j| j.finished_ticks <= 1)
                .map(|j| j.obs.clone())
                .collect(),
            submitting: 0,
            load,
            submit_failures: std::mem::take(&mut self.failures),
            submit_successes: std::mem::take(&mut self.successes),
        }
    }

    fn apply(&mut self, decisions: &[Decision], fail_submits: bool) {
        for d in decisions {
            match d {
                Decision::Submit { jobs } => {
                    for _ in 0..*jobs {
                        if fail_submits {
                            self.failures += 1;
                            break;
                        }
                        self.successes += 1;
                        self.next_id += 1;
                        self.jobs.push(SimJob {
                            obs: pending(&format!("j{}", self.next_id), self.now),
                            running_ticks: 0,
                            cancel_in: None,
                            finished_ticks: 0,
                        });
                    }
                }
                Decision::Cancel { job_id, .. } => {
                    self.job(job_id).cancel_in = Some(1);
                }
                Decision::Retire { job_id, .. } => {
                    let j = self.job(job_id);
                    for w in &mut j.obs.workers {
                        w.retiring = true;
                    }
                    j.cancel_in = Some(2);
                }
            }
        }
    }

    fn job(&mut self, id: &str) -> &mut SimJob {
        self.jobs.iter_mut().find(|j| j.obs.job_id == id).unwrap()
    }

    fn start(&mut self, k: usize) {
        let now = self.now;
        if let Some(j) = self
            .jobs
            .iter_mut()
            .filter(|j| j.obs.state == JobState::Pending && j.cancel_in.is_none())
            .nth(k)
        {
            j.obs.state = JobState::Running;
            j.obs.started_at = Some(now);
        }
    }

    fn live(&self) -> Vec<usize> {
        (0..self.jobs.len())
            .filter(|&i| !self.jobs[i].obs.state.is_finished())
            .collect()
    }

    fn finish(&mut self, i: usize, state: JobState) {
        let j = &mut self.jobs[i];
        if !j.obs.state.is_finished() {
            j.obs.state = state;
            j.obs.workers.clear();
        }
    }

    /// Time passes: one tick.
    fn advance(&mut self) {
        self.now += 1.0;
        let p = self.processes;
        let manual = self.manual_start;
        let now = self.now;
        for j in &mut self.jobs {
            if j.obs.state.is_finished() {
                j.finished_ticks += 1;
                continue;
            }
            if let Some(n) = j.cancel_in.as_mut() {
                if *n <= 1 {
                    j.obs.state = JobState::Cancelled;
                    j.obs.workers.clear();
                    continue;
                }
                *n -= 1;
                // Retiring workers leave before the job is cancelled.
                j.obs.workers.retain(|w| !w.retiring);
                continue;
            }
            match j.obs.state {
                JobState::Pending if !manual => {
                    j.obs.state = JobState::Running;
                    j.obs.started_at = Some(now);
                }
                JobState::Running => {
                    j.running_ticks += 1;
                    if Some(j.running_ticks) == self.connect_delay {
                        j.obs.workers_seen_at = Some(now);
                        j.obs.workers = (0..p)
                            .map(|k| WorkerObservation {
                                name: format!("{}-{k}", j.obs.job_id),
                                held_bytes: (j.obs.job_id.len() * 7 + k) as u64,
                                retiring: false,
                            })
                            .collect();
                    }
                }
                _ => {}
            }
        }
    }

    /// Jobs the world has that we did not decide to end: pending, running.
    fn alive_not_ended(&self) -> (usize, usize) {
        let mut p = 0;
        let mut r = 0;
        for j in &self.jobs {
            if j.cancel_in.is_some() {
                continue;
            }
            match j.obs.state {
                JobState::Pending => p += 1,
                JobState::Running => r += 1,
                _ => {}
            }
        }
        (p, r)
    }
}

#[test]
fn no_start_kill_loop_with_four_processes_per_job() {
    // dask-jobqueue #498: P = 4, the work wants 5 workers. We settle at 2 jobs (8 workers)
    // and stay there.
    let mut s = scaler(4);
    let mut sim = Sim::new(4);
    let target = adaptive(0, 20, 3);
    let mut history = Vec::new();
    for _ in 0..200 {
        let o = sim.observe(&target, load_for_workers(5));
        let t = s.tick(&o);
        sim.apply(&t.decisions, false);
        history.push(t);
        sim.advance();
    }
    let all: Vec<&Decision> = history.iter().flat_map(|t| &t.decisions).collect();
    assert_eq!(
        all,
        vec![&Decision::Submit { jobs: 2 }],
        "one submission, nothing else"
    );
    assert_eq!(sim.alive_not_ended(), (0, 2));
    assert!(history.iter().all(|t| t.wanted_jobs == 2));
}

#[test]
fn adaptive_follows_a_workload_up_and_back_down_to_the_minimum() {
    let mut s = scaler(2);
    let mut sim = Sim::new(2);
    let target = adaptive(2, 10, 3);
    let run = |s: &mut Scaler, sim: &mut Sim, workers: usize, ticks: usize| {
        for _ in 0..ticks {
            let o = sim.observe(&target, load_for_workers(workers));
            let t = s.tick(&o);
            sim.apply(&t.decisions, false);
            sim.advance();
        }
    };
    run(&mut s, &mut sim, 0, 5);
    assert_eq!(sim.alive_not_ended(), (0, 1));
    run(&mut s, &mut sim, 9, 5);
    assert_eq!(sim.alive_not_ended(), (0, 5));
    run(&mut s, &mut sim, 0, 10);
    assert_eq!(sim.alive_not_ended(), (0, 1));
}

#[test]
fn jobs_cancelled_from_outside_are_replaced() {
    let mut s = scaler(1);
    let mut sim = Sim::new(1);
    let target = fixed(3);
    for i in 0..30 {
        if i == 10 || i == 20 {
            let live = sim.live();
            sim.finish(live[0], JobState::Cancelled);
        }
        let o = sim.observe(&target, Load::default());
        let t = s.tick(&o);
        sim.apply(&t.decisions, false);
        sim.advance();
    }
    assert_eq!(sim.alive_not_ended(), (0, 3));
    assert_eq!(sim.next_id, 5);
}

/// A job that ran and ended (state) without any worker connecting.
fn died(id: &str, at: f64, state: JobState) -> JobObservation {
    JobObservation {
        state,
        ..running(id, at, 0, 0)
    }
}

#[test]
fn jobs_dying_at_start_back_off_then_pause_until_resumed() {
    let mut s = scaler(1);
    let mut now = 0.0;
    assert_eq!(submits(&s.tick(&obs(now, fixed(1), vec![]))), 1);
    // Each job runs and dies before its worker connects: wait 1 s, then 2 s, then pause.
    for (k, delay) in [(1, 1.0), (2, 2.0)] {
        now += 1.0;
        let id = k.to_string();
        let mut o = obs(now, fixed(1), vec![running(&id, now - 0.5, 0, 0)]);
        o.submit_successes = 1;
        assert!(s.tick(&o).decisions.is_empty());
        now += 1.0;
        let t = s.tick(&obs(
            now,
            fixed(1),
            vec![died(&id, now - 1.0, JobState::Failed)],
        ));
        assert!(t.decisions.is_empty(), "{t:?}");
        assert_eq!(
            t.blocked,
            Some(Blocked::Backoff {
                retry_at: now + delay
            })
        );
        let f = s.failures();
        assert_eq!((f.start_consecutive, f.consecutive), (k, 0));
        assert_eq!(f.last_start_failure.as_deref(), Some(id.as_str()));
        // The finished job observed again (or left out) is not counted twice.
        s.tick(&obs(now + delay - 0.01, fixed(1), vec![]));
        assert_eq!(s.failures().start_consecutive, k);
        now += delay;
        assert_eq!(submits(&s.tick(&obs(now, fixed(1), vec![]))), 1);
    }
    now += 1.0;
    let mut o = obs(
        now,
        fixed(1),
        vec![died("3", now - 0.5, JobState::Completed)],
    );
    o.submit_successes = 1;
    let t = s.tick(&o);
    assert_eq!(t.blocked, Some(Blocked::Paused));
    let pause = s.failures().paused.clone().expect("paused");
    assert_eq!(
        pause.reason,
        PauseReason::StartFailures {
            jobs: 3,
            last_job: "3".into()
        }
    );
    assert!(pause.reason.to_string().contains("job 3"));
    // Paused: nothing is submitted, however long we wait ...
    for i in 1..100 {
        let t = s.tick(&obs(now + f64::from(i) * 60.0, fixed(1), vec![]));
        assert!(t.decisions.is_empty());
        assert_eq!(t.blocked, Some(Blocked::Paused));
    }
    // ... until `scale`/`adapt` resumes: then at once, from a fresh back-off.
    s.resume();
    now += 10_000.0;
    assert_eq!(submits(&s.tick(&obs(now, fixed(1), vec![]))), 1);
    let f = s.failures();
    assert_eq!(
        (f.start_consecutive, f.start_total, f.paused.clone()),
        (0, 3, None)
    );
    // A job whose workers connect breaks the streak and ends the back-off.
    now += 1.0;
    s.tick(&obs(
        now,
        fixed(2),
        vec![died("4", now - 0.5, JobState::Failed)],
    ));
    assert_eq!(s.failures().start_consecutive, 1);
    let t = s.tick(&obs(now + 0.1, fixed(2), vec![running("5", now, 1, 0)]));
    assert_eq!(s.failures().start_consecutive, 0);
    assert_eq!(s.failures().retry_at, None);
    assert_eq!(submits(&t), 1);
}

#[test]
fn jobs_ended_by_scale_down_or_cancelled_while_pending_are_not_start_failures() {
    let mut s = scaler(1);
    // Scaled down while pending, then seen cancelled.
    let t = s.tick(&obs(0.0, fixed(0), vec![pending("1", 0.0)]));
    assert_eq!(ended(&t), vec!["1"]);
    s.tick(&obs(
        1.0,
        fixed(0),
        vec![with_state(pending("1", 0.0), JobState::Cancelled)],
    ));
    // Cancelled from outside while pending: it never tried to start.
    s.tick(&obs(2.0, fixed(0), vec![pending("2", 2.0)]));
    s.tick(&obs(3.0, fixed(0), vec![]));
    s.tick(&obs(4.0, fixed(1), vec![pending("3", 4.0)]));
    s.tick(&obs(
        5.0,
        fixed(1),
        vec![with_state(pending("3", 4.0), JobState::Cancelled)],
    ));
    // Ended after its workers connected: a success, not a failure.
    s.tick(&obs(6.0, fixed(1), vec![running("4", 6.0, 1, 0)]));
    s.tick(&obs(7.0, fixed(1), vec![died("4", 6.0, JobState::Failed)]));
    let f = s.failures();
    assert_eq!((f.start_consecutive, f.start_total), (0, 0), "{f:?}");
    // A startup timeout is one: the job ran and no worker came.
    let mut s = Scaler::new(ScalerConfig {
        startup_timeout: 10.0,
        ..config(1)
    })
    .unwrap();
    s.tick(&obs(0.0, fixed(1), vec![running("9", 0.0, 0, 0)]));
    let t = s.tick(&obs(11.0, fixed(1), vec![running("9", 0.0, 0, 0)]));
    assert_eq!(ended(&t), vec!["9"]);
    s.tick(&obs(
        12.0,
        fixed(1),
        vec![died("9", 0.0, JobState::Cancelled)],
    ));
    assert_eq!(s.failures().start_consecutive, 1);
}

#[test]
fn submit_failures_in_a_row_pause_too() {
    let mut s = Scaler::new(ScalerConfig {
        pause_after_submit_failures: 2,
        ..config(1)
    })
    .unwrap();
    s.tick(&obs(0.0, fixed(1), vec![]));
    let mut o = obs(1.0, fixed(1), vec![]);
    o.submit_failures = 1;
    assert_eq!(s.tick(&o).blocked, Some(Blocked::Backoff { retry_at: 2.0 }));
    assert_eq!(submits(&s.tick(&obs(2.0, fixed(1), vec![]))), 1);
    let mut o = obs(3.0, fixed(1), vec![]);
    o.submit_failures = 1;
    assert_eq!(s.tick(&o).blocked, Some(Blocked::Paused));
    assert_eq!(
        s.failures().paused.as_ref().map(|p| p.reason.clone()),
        Some(PauseReason::SubmitFailures { count: 2 })
    );
}

// ---- property tests ----

#[derive(Clone, Debug)]
struct Step {
    /// Which pending job starts (by position), if any.
    start: Option<u8>,
    /// A live job killed from outside (by position), with its final state.
    kill: Option<(u8, u8)>,
    /// Workers of a running job lost (by position).
    lose: Option<u8>,
    fail_submits: bool,
    load: Load,
    retarget: Option<Target>,
}

fn target_strategy() -> impl Strategy<Value = Target> {
    prop_oneof![
        (0usize..25).prop_map(|workers| Target::Fixed { workers }),
        (0usize..12, 0usize..25, 1u32..5).prop_map(|(a, b, wait_count)| Target::Adaptive {
            minimum: a.min(b),
            maximum: a.max(b),
            target_duration: 5.0,
            wait_count,
        }),
    ]
}

fn load_strategy() -> impl Strategy<Value = Load> {
    (0usize..50, 0usize..20, 0.0f64..200.0, 0u64..40).prop_map(|(q, p, s, c)| Load {
        queued_tasks: q,
        processing_tasks: p,
        work_seconds: s,
        program_cpus: c,
    })
}

fn step_strategy() -> impl Strategy<Value = Step> {
    (
        proptest::option::weighted(0.6, 0u8..8),
        proptest::option::weighted(0.1, (0u8..16, 0u8..4)),
        proptest::option::weighted(0.05, 0u8..16),
        proptest::bool::weighted(0.1),
        load_strategy(),
        proptest::option::weighted(0.05, target_strategy()),
    )
        .prop_map(|(start, kill, lose, fail_submits, load, retarget)| Step {
            start,
            kill,
            lose,
            fail_submits,
            load,
            retarget,
        })
}

fn bounds(target: &Target, p: usize) -> (usize, usize) {
    match *target {
        Target::Fixed { workers } => (workers.div_ceil(p), workers.div_ceil(p)),
        Target::Adaptive {
            minimum, maximum, ..
        } => (minimum.div_ceil(p), maximum.div_ceil(p)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_histories_keep_the_invariants(
        processes in 1usize..5,
        threads in 1usize..3,
        cap in 1usize..6,
        connect in proptest::option::weighted(0.8, 1u32..7),
        first in target_strategy(),
        steps in proptest::collection::vec(step_strategy(), 1..120),
    ) {
        let cfg = ScalerConfig {
            processes,
            threads_per_worker: threads,
            max_pending_jobs: cap,
            startup_timeout: 4.0,
            workers_lost_grace: 2.0,
            backoff_initial: 1.0,
            backoff_max: 8.0,
            ..ScalerConfig::default()
        };
        let mut s = Scaler::new(cfg).unwrap();
        let mut sim = Sim::new(processes);
        sim.manual_start = true;
        sim.connect_delay = connect;
        let mut target = first;
        let mut ended_ids: BTreeSet<String> = BTreeSet::new();
        for step in steps {
            if let Some(t) = step.retarget.clone() {
                target = t;
            }
            if let Some(k) = step.start {
                sim.start(k as usize);
            }
            if let Some((k, how)) = step.kill {
                let live = sim.live();
                if !live.is_empty() {
                    let state = [JobState::Completed, JobState::Failed,
                                 JobState::Cancelled, JobState::Gone][how as usize];
                    sim.finish(live[k as usize % live.len()], state);
                }
            }
            if let Some(k) = step.lose {
                let running: Vec<usize> = sim.live().into_iter()
                    .filter(|&i| sim.jobs[i].obs.state == JobState::Running).collect();
                if !running.is_empty() {
                    sim.jobs[running[k as usize % running.len()]].obs.workers.clear();
                }
            }
            let o = sim.observe(&target, step.load);
            let t = s.tick(&o);
            let (lo, hi) = bounds(&target, processes);

            // Jobs wanted stay within the bounds.
            prop_assert!(lo <= t.wanted_jobs && t.wanted_jobs <= hi, "{t:?} {target:?}");
            let submitted = submits(&t);
            let scaled_down = t.decisions.iter().filter(|d| matches!(d,
                Decision::Retire { .. }
                | Decision::Cancel { reason: CancelReason::ScaleDown, .. })).count();
            prop_assert!(submitted == 0 || scaled_down == 0, "{t:?}");
            // Never more pending than the cap.
            if submitted > 0 {
                prop_assert!(t.pending_jobs + submitted <= cap, "{t:?}");
                prop_assert!(t.counted_jobs + submitted <= hi, "{t:?}");
            }
            // Never scaled below the minimum.
            if scaled_down > 0 {
                prop_assert!(t.counted_jobs - scaled_down >= lo, "{t:?}");
                prop_assert!(t.counted_jobs - scaled_down == t.target_jobs, "{t:?}");
            }
            // Never a job ended twice.
            for id in ended(&t) {
                prop_assert!(ended_ids.insert(id.clone()), "{id} ended twice: {t:?}");
                let j = sim.jobs.iter().find(|j| j.obs.job_id == id).unwrap();
                prop_assert!(!j.obs.state.is_finished(), "ended a finished job {id}");
            }
            sim.apply(&t.decisions, step.fail_submits);
            // The world never holds more pending jobs of ours than the cap.
            prop_assert!(sim.alive_not_ended().0 <= cap);
            sim.advance();
        }
    }

    #[test]
    fn constant_demand_settles_without_oscillation(
        processes in 1usize..6,
        threads in 1usize..3,
        cap in 1usize..6,
        target in target_strategy(),
        load in load_strategy(),
        starts in proptest::collection::vec(proptest::option::of(0u8..8), 60),
    ) {
        let cfg = ScalerConfig {
            processes,
            threads_per_worker: threads,
            max_pending_jobs: cap,
            ..ScalerConfig::default()
        };
        let mut s = Scaler::new(cfg).unwrap();
        let mut sim = Sim::new(processes);
        sim.manual_start = true;
        let mut history = Vec::new();
        for i in 0..200 {
            // Jobs start at random for a while, then all start promptly.
            match starts.get(i) {
                Some(Some(k)) => sim.start(*k as usize),
                Some(None) => {}
                None => sim.start(0),
            }
            let o = sim.observe(&target, load);
            let t = s.tick(&o);
            sim.apply(&t.decisions, false);
            history.push(t);
            sim.advance();
        }
        let (lo, hi) = bounds(&target, processes);
        let wanted = history.last().unwrap().wanted_jobs;
        prop_assert!(lo <= wanted && wanted <= hi);
        // Settled: exactly the wanted jobs, running.
        prop_assert_eq!(sim.alive_not_ended(), (0, wanted));
        // Every run of 20 ticks once settled: no submit together with a scale-down.
        for window in history[120..].windows(20) {
            let up = window.iter().any(|t| submits(t) > 0);
            let down = window.iter().any(|t| !ended(t).is_empty());
            prop_assert!(!(up && down), "oscillation: {window:?}");
        }
        // And in fact nothing at all happens any more.
        prop_assert!(history[120..].iter().all(|t| t.decisions.is_empty()));
        // Whatever happened before, no start/kill cycle: never a job submitted after one
        // was scaled down, or the reverse then again.
        let mut phases = Vec::new();
        for t in &history {
            let up = submits(t) > 0;
            let down = !ended(t).is_empty();
            for (flag, name) in [(up, 'u'), (down, 'd')] {
                if flag && phases.last() != Some(&name) {
                    phases.push(name);
                }
            }
        }
        prop_assert!(phases.len() <= 2, "phases {phases:?}");
    }
    /// Every job dies at start: however the jobs fail and whatever the target, no
    /// more than the first wave and `pause_after_start_failures - 1` replacements are
    /// submitted, the delay between replacements grows, and nothing is submitted while
    /// paused, until resumed.
    #[test]
    fn jobs_that_always_die_at_start_cause_no_storm(
        processes in 1usize..4,
        cap in 1usize..6,
        workers in 1usize..20,
        pause_after in 1u32..5,
        lifetimes in proptest::collection::vec(0u32..4, 64),
        states in proptest::collection::vec(0u8..3, 64),
    ) {
        let cfg = ScalerConfig {
            processes,
            max_pending_jobs: cap,
            pause_after_start_failures: pause_after,
            ..ScalerConfig::default()
        };
        let mut s = Scaler::new(cfg).unwrap();
        let mut sim = Sim::new(processes);
        sim.connect_delay = None;
        let target = fixed(workers);
        // The target's jobs (the cap limits pending jobs, not running ones).
        let first_wave = workers.div_ceil(processes);
        let mut submitted = 0;
        let mut delays = Vec::new();
        for _ in 0..600 {
            // Running jobs die after their lifetime, in a random final state.
            for i in sim.live() {
                let j = &sim.jobs[i];
                let k = i % lifetimes.len();
                if j.obs.state == JobState::Running && j.running_ticks >= lifetimes[k] {
                    let state = [JobState::Failed, JobState::Completed, JobState::Gone]
                        [states[k] as usize];
                    sim.finish(i, state);
                }
            }
            let before = s.failures().start_total;
            let o = sim.observe(&target, Load::default());
            let now = o.now;
            let retry_before = s.failures().retry_at;
            let t = s.tick(&o);
            let n = submits(&t);
            if n > 0 {
                prop_assert!(s.failures().paused.is_none(), "submitted while paused");
                prop_assert!(retry_before.is_none_or(|r| r <= now), "submitted in a back-off");
                submitted += n;
            }
            if s.failures().start_total > before {
                delays.push(s.failures().retry_at.unwrap() - now);
            }
            sim.apply(&t.decisions, false);
            sim.advance();
        }
        prop_assert!(s.failures().paused.is_some());
        prop_assert!(submitted < first_wave + pause_after as usize, "{submitted} jobs");
        // The back-off grows with each tick that saw jobs die.
        prop_assert!(delays.windows(2).all(|d| d[1] > d[0]), "{delays:?}");
        // Resumed: it submits again.
        s.resume();
        let o = sim.observe(&target, Load::default());
        prop_assert!(submits(&s.tick(&o)) > 0);
    }
}
