//! Losing a worker: its results, its processing tasks and the tasks it was executing (blamed
//! once too often, they fail rather than kill worker after worker).
//!
//! Why a file of its own: a lost worker touches every other part of the state (results,
//! queues, retirements), and the recovery rules deserve to be read on their own.

use super::*;

impl State {
    pub(super) fn remove_worker(&mut self, worker: WorkerId) {
        let Some(w) = self.workers.remove(&worker) else {
            return;
        };
        // A retirement that ends by loss still ends: its requester must not wait forever.
        if let (WorkerStatus::Retiring, Some(requester)) = (w.status, w.retire_requester) {
            let answer = Command::WorkerRetired { requester, worker };
            if !self.out.contains(&answer) {
                self.out.push(answer);
            }
        }
        self.release.remove(&worker);
        self.compute.remove(&worker);
        self.programs_lost(worker, &w.info.name, &w.info.host);
        self.replicate.remove(&worker);
        // Lost data first, so tasks put back below see their inputs' true states.
        for id in w.has {
            let task = self.tasks.get_mut(&id).expect("present");
            task.holders.retain(|h| *h != worker);
            if task.holders.is_empty() && task.state == TaskState::Memory {
                self.result_lost(id);
            }
        }
        let blamed: IdSet<TaskId> = if w.executing.is_empty() {
            w.processing.clone()
        } else {
            w.executing.iter().copied().collect()
        };
        let mut processing: Vec<TaskId> = w.processing.into_iter().collect();
        processing.sort();
        for id in processing {
            let allowed = self.config.allowed_failures;
            let task = self.tasks.get_mut(&id).expect("present");
            if task.state != TaskState::Processing(worker) {
                continue;
            }
            if blamed.contains(&id) {
                task.suspicious += 1;
            }
            if task.suspicious >= allowed {
                let error = format!(
                    "{} workers died while running this task (the limit is {allowed})",
                    task.suspicious
                );
                self.fail(id, Arc::from(error.as_str()));
            } else {
                self.requeue(id);
            }
        }
        // Retirements that were copying onto this worker are redirected by the sweep.
    }
}
