//! Runs kernels on a pool of plain threads, off the async runtime, so a long kernel never
//! stalls the worker's networking. The event loop keeps the ready queue itself, in priority
//! order, and hands the pool one task per thread (up to 16 per thread when tasks are shorter
//! than a thread wake-up), so pausing under memory pressure and cancelling are decisions the
//! loop makes, not the pool.
//!
//! Spilled inputs are read back here, on the executor thread, not by the loop: the loop only
//! opens their files (under the store lock), so a large unspill delays this one task and
//! nothing else.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc::UnboundedSender;

use super::store::Located;
use crate::ids::TaskId;
use crate::kernels::Kernel;

pub struct Job {
    pub task: TaskId,
    pub kernel: Kernel,
    pub args: Vec<u8>,
    /// Each input's key and where it is: in memory, or an opened spill file.
    pub inputs: Vec<(TaskId, Located)>,
}

pub struct Done {
    pub task: TaskId,
    pub outcome: Outcome,
    /// The kernel's run time, without reading spilled inputs back (the scheduler's estimate
    /// of the task's cost must not depend on where its inputs happened to be).
    pub duration_us: u64,
}

#[derive(Debug)]
pub enum Outcome {
    Computed(Bytes),
    /// The kernel returned an error or panicked.
    Failed(String),
    /// A spilled input could not be read back: not the task's fault, so the loop reports
    /// the input missing (the scheduler recomputes or refetches it) rather than the task
    /// failed.
    InputUnreadable {
        input: TaskId,
        error: String,
    },
}

/// Reads the spilled inputs; the first unreadable one ends it.
fn load(inputs: Vec<(TaskId, Located)>) -> Result<Vec<Bytes>, Outcome> {
    inputs
        .into_iter()
        .map(|(input, located)| {
            located.into_bytes().map_err(|e| Outcome::InputUnreadable {
                input,
                error: e.to_string(),
            })
        })
        .collect()
}

/// Runs one job on the calling thread; returns the outcome and the kernel's run time (µs).
fn run(job: Job) -> (Outcome, u64) {
    let inputs = match load(job.inputs) {
        Ok(inputs) => inputs,
        Err(unreadable) => return (unreadable, 0),
    };
    let started = Instant::now();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| (job.kernel)(&job.args, &inputs)))
        .unwrap_or_else(|panic| {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!("kernel panicked: {msg}"))
        });
    let duration_us = started.elapsed().as_micros() as u64;
    let outcome = match result {
        Ok(data) => Outcome::Computed(data),
        Err(error) => Outcome::Failed(error),
    };
    (outcome, duration_us)
}

pub struct Executor {
    jobs: mpsc::Sender<Job>,
}

impl Executor {
    /// Starts `nthreads` threads that send each finished job to `done`.
    pub fn start<T: From<Done> + Send + 'static>(nthreads: u32, done: UnboundedSender<T>) -> Self {
        let (jobs, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..nthreads.max(1) {
            let rx = rx.clone();
            let done = done.clone();
            std::thread::Builder::new()
                .name(format!("rdask-exec-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock().expect("executor queue").recv() {
                        Ok(job) => job,
                        Err(_) => return, // the worker is shutting down
                    };
                    let task = job.task;
                    let (outcome, duration_us) = run(job);
                    if done
                        .send(T::from(Done {
                            task,
                            outcome,
                            duration_us,
                        }))
                        .is_err()
                    {
                        return;
                    }
                })
                .expect("spawning an executor thread");
        }
        Executor { jobs }
    }

    pub fn submit(&self, job: Job) {
        // Fails only when every thread has exited, i.e. during shutdown.
        let _ = self.jobs.send(job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::store::Store;

    /// A store holding `id` spilled to disk with `data`.
    fn spilled(dir: &std::path::Path, id: TaskId, data: &[u8]) -> Store {
        let mut store = Store::new(dir.join("spill"));
        let _ = store.put(id, Bytes::copy_from_slice(data));
        let batch = store.start_spill(0).expect("something to spill");
        let report = store.finish_spill(batch.write());
        assert_eq!(report.spilled, data.len() as u64);
        store
    }

    fn concat() -> Kernel {
        Arc::new(|_args: &[u8], inputs: &[Bytes]| Ok(Bytes::from(inputs.concat())))
    }

    #[test]
    fn spilled_inputs_are_read_on_the_executor_thread() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = spilled(dir.path(), TaskId(1), b"from disk");
        let _ = store.put(TaskId(2), Bytes::from_static(b" and memory"));
        let inputs = vec![
            (TaskId(1), store.locate(TaskId(1)).unwrap().unwrap()),
            (TaskId(2), store.locate(TaskId(2)).unwrap().unwrap()),
        ];
        // Released before the job runs: the open file still reads.
        store.clear().delete();
        let job = Job {
            task: TaskId(3),
            kernel: concat(),
            args: vec![],
            inputs,
        };
        match run(job).0 {
            Outcome::Computed(data) => assert_eq!(&data[..], b"from disk and memory"),
            other => panic!("expected a result, got {other:?}"),
        }
    }

    #[test]
    fn an_unreadable_spilled_input_is_reported_as_that_input_not_a_task_failure() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = spilled(dir.path(), TaskId(1), b"0123456789");
        for f in std::fs::read_dir(dir.path().join("spill")).unwrap() {
            std::fs::write(f.unwrap().path(), b"0123").unwrap();
        }
        let job = Job {
            task: TaskId(3),
            kernel: concat(),
            args: vec![],
            inputs: vec![(TaskId(1), store.locate(TaskId(1)).unwrap().unwrap())],
        };
        match run(job).0 {
            Outcome::InputUnreadable { input, error } => {
                assert_eq!(input, TaskId(1));
                assert!(error.contains("4 bytes, 10 were written"), "{error}");
            }
            other => panic!("expected an unreadable input, got {other:?}"),
        }
    }

    #[test]
    fn a_panicking_kernel_fails_its_task() {
        let job = Job {
            task: TaskId(3),
            kernel: Arc::new(|_: &[u8], _: &[Bytes]| panic!("boom")),
            args: vec![],
            inputs: vec![],
        };
        match run(job).0 {
            Outcome::Failed(error) => assert_eq!(error, "kernel panicked: boom"),
            other => panic!("expected a failure, got {other:?}"),
        }
    }
}
