//! Task-stream lanes: which of a worker's threads ran a task, reconstructed from when its
//! report arrived and how long it ran (workers report durations, not threads).
//!
//! A task ended at about `at` (reports leave a worker within its flush window) and started
//! `duration` before. It goes to the thread that became free latest but no later than that
//! start, so one thread's back-to-back tasks stay in one lane; when every thread is still
//! busy then (several tasks of one report ended together), it goes after the thread that
//! frees first, shifted by at most that flush window.

/// One worker's threads: when each became free (ms on the dashboard's clock).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lanes {
    free_at: Vec<f64>,
}

impl Lanes {
    pub fn new(threads: u32) -> Lanes {
        Lanes {
            free_at: vec![f64::NEG_INFINITY; threads.max(1) as usize],
        }
    }

    pub fn threads(&self) -> usize {
        self.free_at.len()
    }

    /// A worker's thread count may become known after its first tasks: lanes only grow.
    pub fn resize(&mut self, threads: u32) {
        let n = threads.max(1) as usize;
        if n > self.free_at.len() {
            self.free_at.resize(n, f64::NEG_INFINITY);
        }
    }

    /// Places a task that ran `duration_ms` and was reported at `end_ms`: (lane, start, end).
    pub fn place(&mut self, end_ms: f64, duration_ms: f64) -> (usize, f64, f64) {
        let start = end_ms - duration_ms.max(0.0);
        let fits = self
            .free_at
            .iter()
            .enumerate()
            .rev() // among equals, max_by keeps the last: the lowest lane
            .filter(|(_, f)| **f <= start)
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i);
        let (lane, start) = match fits {
            Some(i) => (i, start),
            None => {
                let (i, f) = self
                    .free_at
                    .iter()
                    .enumerate()
                    .min_by(|a, b| a.1.total_cmp(b.1))
                    .expect("at least one lane");
                (i, *f)
            }
        };
        let end = start + duration_ms.max(0.0);
        self.free_at[lane] = end;
        (lane, start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn back_to_back_tasks_stay_in_one_lane_and_overlapping_ones_take_another() {
        let mut l = Lanes::new(2);
        assert_eq!(l.place(10.0, 10.0), (0, 0.0, 10.0));
        // Started when the first ended: the same thread.
        assert_eq!(l.place(20.0, 10.0).0, 0);
        // Overlaps the second: the other thread.
        assert_eq!(l.place(25.0, 10.0), (1, 15.0, 25.0));
    }

    #[test]
    fn tasks_reported_together_follow_each_other_on_a_busy_worker() {
        let mut l = Lanes::new(1);
        assert_eq!(l.place(100.0, 10.0), (0, 90.0, 100.0));
        assert_eq!(l.place(100.0, 10.0), (0, 100.0, 110.0));
    }

    #[test]
    fn lanes_only_grow() {
        let mut l = Lanes::new(0);
        assert_eq!(l.threads(), 1);
        l.resize(4);
        assert_eq!(l.threads(), 4);
        l.resize(2);
        assert_eq!(l.threads(), 4);
    }

    proptest! {
        /// However tasks arrive, no two in one lane overlap and each keeps its duration.
        #[test]
        fn tasks_in_one_lane_never_overlap(
            threads in 1u32..5,
            tasks in proptest::collection::vec((0.0f64..1000.0, 0.0f64..50.0), 1..60),
        ) {
            let mut sorted = tasks.clone();
            sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut l = Lanes::new(threads);
            let mut placed: Vec<Vec<(f64, f64)>> = vec![Vec::new(); threads as usize];
            for (end, dur) in sorted {
                let (lane, s, e) = l.place(end, dur);
                prop_assert!(lane < threads as usize);
                prop_assert!((e - s - dur).abs() < 1e-9);
                for (s2, e2) in &placed[lane] {
                    prop_assert!(e <= *s2 + 1e-9 || s >= *e2 - 1e-9, "overlap in lane {lane}");
                }
                placed[lane].push((s, e));
            }
        }
    }
}
