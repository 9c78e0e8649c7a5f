//! Graceful retirement: a worker leaves only once every result only it holds has been copied
//! to a worker that stays; the sweep moves those copies along as workers come and go.
//!
//! Why a file of its own: retirement is a small protocol of its own (start, copy away, sweep,
//! finish), used by scale-downs, and its bookkeeping is separate from task transitions.

use super::*;

impl State {
    pub(super) fn start_retirement(&mut self, worker: WorkerId, requester: Option<ClientId>) {
        let Some(w) = self.workers.get_mut(&worker) else {
            // Unknown or already gone: nothing to hand over, and the requester must not wait.
            if let Some(requester) = requester {
                self.out.push(Command::WorkerRetired { requester, worker });
            }
            return;
        };
        w.status = WorkerStatus::Retiring;
        w.retire_requester = requester;
        // Its queued and running tasks go back to the scheduler's queue for the others.
        let mut processing: Vec<TaskId> = w.processing.drain().collect();
        processing.sort();
        for id in &processing {
            self.release.entry(worker).or_default().push(*id);
        }
        for id in processing {
            self.requeue(id);
        }
        let mut unique: Vec<TaskId> = self.workers[&worker]
            .has
            .iter()
            .filter(|id| self.only_retiring_workers_hold(**id))
            .copied()
            .collect();
        unique.sort();
        for id in unique {
            self.replicate_away(worker, id);
        }
        self.finish_retirement_if_done(worker);
    }

    /// True when every worker holding `id` is retiring: the result must be copied before they go.
    pub(super) fn only_retiring_workers_hold(&self, id: TaskId) -> bool {
        self.tasks[&id].holders.iter().all(|h| {
            self.workers
                .get(h)
                .is_none_or(|w| w.status == WorkerStatus::Retiring)
        })
    }

    /// Keeps retirements moving whatever happened meanwhile: copies of results that were
    /// released or lost are forgotten, copies headed to a worker that is itself retiring or
    /// gone are sent elsewhere, and retirements with nothing left to do finish.
    pub(super) fn sweep_retirements(&mut self) {
        let retiring: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.status == WorkerStatus::Retiring)
            .map(|(id, _)| *id)
            .collect();
        for r in retiring {
            let Some(w) = self.workers.get(&r) else {
                continue;
            };
            let copies: Vec<(TaskId, WorkerId)> =
                w.replicating.iter().map(|(k, t)| (*k, *t)).collect();
            for (key, target) in copies {
                let held_here = self
                    .tasks
                    .get(&key)
                    .is_some_and(|t| t.state == TaskState::Memory && t.holders.contains(&r));
                let target_ok = self
                    .workers
                    .get(&target)
                    .is_some_and(|t| t.status != WorkerStatus::Retiring);
                if !held_here || !self.only_retiring_workers_hold(key) {
                    self.workers
                        .get_mut(&r)
                        .expect("present")
                        .replicating
                        .remove(&key);
                } else if !target_ok {
                    self.workers
                        .get_mut(&r)
                        .expect("present")
                        .replicating
                        .remove(&key);
                    self.replicate_away(r, key);
                }
            }
            self.finish_retirement_if_done(r);
        }
    }

    /// Asks the running worker with the least data to copy `id` from the retiring `from`.
    pub(super) fn replicate_away(&mut self, from: WorkerId, id: TaskId) {
        let target = self
            .workers
            .iter()
            .filter(|(wid, w)| **wid != from && w.status != WorkerStatus::Retiring)
            .min_by_key(|(wid, w)| (w.held_bytes, **wid))
            .map(|(wid, _)| *wid);
        // With no other worker left, the result stays recomputable from its lineage.
        let Some(target) = target else { return };
        let task = &self.tasks[&id];
        let loc = DepLocation {
            task: id,
            nbytes: task.nbytes,
            holders: vec![from],
        };
        self.replicate.entry(target).or_default().push(loc);
        self.workers
            .get_mut(&from)
            .expect("present")
            .replicating
            .insert(id, target);
    }

    pub(super) fn finish_retirement_if_done(&mut self, worker: WorkerId) {
        let Some(w) = self.workers.get(&worker) else {
            return;
        };
        if w.status != WorkerStatus::Retiring
            || !w.replicating.is_empty()
            || !w.processing.is_empty()
            || self.runs_programs(worker)
        {
            return;
        }
        let requester = w.retire_requester;
        self.out.push(Command::Close { worker });
        if let Some(requester) = requester {
            self.out.push(Command::WorkerRetired { requester, worker });
        }
        self.remove_worker(worker);
    }
}
