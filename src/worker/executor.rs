//! Runs kernels on a pool of plain threads, off the async runtime, so a long kernel never
//! stalls the worker's networking. The event loop keeps the ready queue itself, in priority
//! order, and hands the pool one task per thread (up to 16 per thread when tasks are shorter
//! than a thread wake-up), so pausing under memory pressure and cancelling are decisions the
//! loop makes, not the pool.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc::UnboundedSender;

use crate::ids::TaskId;
use crate::kernels::Kernel;

pub struct Job {
    pub task: TaskId,
    pub kernel: Kernel,
    pub args: Vec<u8>,
    pub inputs: Vec<Bytes>,
}

pub struct Done {
    pub task: TaskId,
    pub result: Result<Bytes, String>,
    pub duration_us: u64,
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
                    let started = Instant::now();
                    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        (job.kernel)(&job.args, &job.inputs)
                    }))
                    .unwrap_or_else(|panic| {
                        let msg = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "unknown panic".into());
                        Err(format!("kernel panicked: {msg}"))
                    });
                    let duration_us = started.elapsed().as_micros() as u64;
                    drop(job.inputs);
                    if done
                        .send(T::from(Done {
                            task: job.task,
                            result,
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
