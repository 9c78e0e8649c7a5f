//! Task transitions and results: a worker reports a task finished or failed, results are
//! placed on holders and dropped when no longer needed, lost results are recomputed from
//! their lineage, failures propagate to dependents, replicas are noted.
//!
//! Why a file of its own: these are the transitions of Dask's task states (waiting, queued,
//! processing, memory, erred) driven by what workers say; keeping them together keeps the
//! rules about *needed* data in one place.

use super::*;

impl State {
    pub(super) fn task_finished(&mut self, worker: WorkerId, f: Finished) {
        let Some(task) = self.tasks.get_mut(&f.task) else {
            // Forgotten while it ran: the worker can drop it.
            self.release.entry(worker).or_default().push(f.task);
            return;
        };
        if !self.workers.contains_key(&worker) {
            return;
        }
        let o = &mut self.observed;
        let weight = if o.count < 10 {
            1.0 / (o.count + 1) as f64
        } else {
            0.1
        };
        o.duration_us += (f.duration_us as f64 - o.duration_us) * weight;
        o.nbytes += (f.nbytes as f64 - o.nbytes) * weight;
        o.count += 1;
        match task.state.clone() {
            TaskState::Memory => {
                self.add_holder(f.task, worker);
                return;
            }
            TaskState::Released | TaskState::Erred(_) => {
                self.release.entry(worker).or_default().push(f.task);
                return;
            }
            TaskState::Processing(w) => {
                if let Some(w) = self.workers.get_mut(&w) {
                    w.processing.remove(&f.task);
                }
            }
            // Re-queued after a loss, but this copy finished anyway: take it (tasks are pure).
            TaskState::Queued | TaskState::Waiting => {}
        }
        let task = self.tasks.get_mut(&f.task).expect("present");
        task.state = TaskState::Memory;
        task.nbytes = f.nbytes;
        task.holders.clear();
        self.add_holder(f.task, worker);
        let task = &self.tasks[&f.task];
        for client in task.wanted_by.clone() {
            let holders = vec![worker];
            self.out.push(Command::KeyReady {
                client,
                key: f.task,
                nbytes: f.nbytes,
                holders,
            });
        }
        for dependent in self.tasks[&f.task].dependents.clone() {
            let t = self.tasks.get_mut(&dependent).expect("present");
            if t.state == TaskState::Waiting {
                t.waiting_on -= 1;
                if t.waiting_on == 0 {
                    self.enqueue(dependent);
                }
            }
        }
        self.inputs_done(f.task);
        self.settle(f.task);
    }

    /// Counts `worker` as a holder. A worker's bytes are counted at the task's recorded size
    /// (set when it first finished), never at what a later report claims: what is added here
    /// is exactly what `drop_data` and `remove_holder` subtract.
    pub(super) fn add_holder(&mut self, task: TaskId, worker: WorkerId) {
        let t = self.tasks.get_mut(&task).expect("present");
        if !t.holders.contains(&worker) {
            t.holders.push(worker);
            let nbytes = t.nbytes;
            let w = self.workers.get_mut(&worker).expect("present");
            w.has.insert(task);
            w.held_bytes = w.held_bytes.saturating_add(nbytes);
        }
    }

    /// `task` no longer reads its inputs: they may be released.
    pub(super) fn inputs_done(&mut self, task: TaskId) {
        for d in self.tasks[&task].deps.clone() {
            let dep = self.tasks.get_mut(&d).expect("present");
            dep.pending_dependents -= 1;
            self.settle(d);
        }
    }

    /// Releases a result no one needs and cancels work no one needs, cascading to inputs.
    pub(super) fn settle(&mut self, root: TaskId) {
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            let Some(task) = self.tasks.get(&id) else {
                continue;
            };
            if task.needed() {
                continue;
            }
            match task.state.clone() {
                TaskState::Memory => self.drop_data(id),
                TaskState::Waiting | TaskState::Queued | TaskState::Processing(_) => {
                    if let TaskState::Processing(w) = task.state {
                        if let Some(w) = self.workers.get_mut(&w) {
                            w.processing.remove(&id);
                        }
                        self.release.entry(w).or_default().push(id);
                    }
                    self.tasks.get_mut(&id).expect("present").state = TaskState::Released;
                    for d in self.tasks[&id].deps.clone() {
                        self.tasks.get_mut(&d).expect("present").pending_dependents -= 1;
                        stack.push(d);
                    }
                }
                TaskState::Released | TaskState::Erred(_) => {}
            }
        }
    }

    /// Drops a result from every holder; the task stays known (released) for lineage.
    pub(super) fn drop_data(&mut self, id: TaskId) {
        let task = self.tasks.get_mut(&id).expect("present");
        task.state = TaskState::Released;
        let nbytes = task.nbytes;
        for h in std::mem::take(&mut task.holders) {
            if let Some(w) = self.workers.get_mut(&h) {
                w.has.remove(&id);
                w.held_bytes = w.held_bytes.saturating_sub(nbytes);
            }
            self.release.entry(h).or_default().push(id);
        }
    }

    pub(super) fn task_failed(&mut self, worker: WorkerId, id: TaskId, error: String) {
        let Some(task) = self.tasks.get(&id) else {
            return;
        };
        if task.state != TaskState::Processing(worker) {
            return;
        }
        if let Some(w) = self.workers.get_mut(&worker) {
            w.processing.remove(&id);
        }
        self.fail(id, Arc::from(error.as_str()));
    }

    /// Marks an active task erred, and with it every active task downstream; tells the
    /// clients that wanted any of them.
    pub(super) fn fail(&mut self, root: TaskId, error: Arc<str>) {
        let mut stack = vec![(root, error)];
        while let Some((id, error)) = stack.pop() {
            let task = self.tasks.get_mut(&id).expect("present");
            if !task.state.is_active() {
                continue;
            }
            if let TaskState::Processing(w) = task.state {
                if let Some(w) = self.workers.get_mut(&w) {
                    w.processing.remove(&id);
                }
                self.release.entry(w).or_default().push(id);
            }
            let task = self.tasks.get_mut(&id).expect("present");
            task.state = TaskState::Erred(error.clone());
            for &client in &task.wanted_by {
                self.out.push(Command::KeyErred {
                    client,
                    key: id,
                    error: error.to_string(),
                });
            }
            let downstream: Arc<str> = if id == root {
                Arc::from(format!("task {id} failed: {error}").as_str())
            } else {
                error.clone()
            };
            for dependent in task.dependents.clone() {
                stack.push((dependent, downstream.clone()));
            }
            self.inputs_done(id);
        }
    }

    pub(super) fn missing_data(
        &mut self,
        worker: WorkerId,
        id: TaskId,
        missing: Vec<(TaskId, Vec<WorkerId>)>,
    ) {
        // Holders the worker could not reach no longer count as holders of those results.
        for (dep, unreachable) in missing {
            let Some(t) = self.tasks.get(&dep) else {
                continue;
            };
            if t.state != TaskState::Memory {
                continue;
            }
            for h in unreachable {
                self.remove_holder(dep, h);
            }
        }
        let Some(task) = self.tasks.get(&id) else {
            return;
        };
        if task.state == TaskState::Processing(worker) {
            self.workers
                .get_mut(&worker)
                .expect("present")
                .processing
                .remove(&id);
            self.requeue(id);
        }
    }

    pub(super) fn remove_holder(&mut self, id: TaskId, worker: WorkerId) {
        let task = self.tasks.get_mut(&id).expect("present");
        let Some(pos) = task.holders.iter().position(|h| *h == worker) else {
            return;
        };
        task.holders.swap_remove(pos);
        let nbytes = task.nbytes;
        let lost = task.holders.is_empty();
        if let Some(w) = self.workers.get_mut(&worker) {
            w.has.remove(&id);
            w.held_bytes = w.held_bytes.saturating_sub(nbytes);
            // It may still hold the data (a peer merely failed to reach it): let it go.
            self.release.entry(worker).or_default().push(id);
        }
        if lost {
            self.result_lost(id);
        }
    }

    /// The last copy of a result is gone. Dependents that counted on it wait again; if the
    /// result is still needed, it is recomputed from its inputs (which may need recomputing).
    pub(super) fn result_lost(&mut self, id: TaskId) {
        self.tasks.get_mut(&id).expect("present").state = TaskState::Released;
        for dependent in self.tasks[&id].dependents.clone() {
            let t = self.tasks.get_mut(&dependent).expect("present");
            match t.state {
                TaskState::Waiting => t.waiting_on += 1,
                TaskState::Queued => {
                    t.state = TaskState::Waiting;
                    t.waiting_on = 1;
                }
                _ => {}
            }
        }
        if self.tasks[&id].needed() {
            // Activation counts it as a reader of its inputs again: undo the count its
            // completion removed.
            self.activate(id);
        }
    }

    /// Puts an assigned task back to waiting or queued, re-activating inputs it lost.
    pub(super) fn requeue(&mut self, id: TaskId) {
        let deps = self.tasks[&id].deps.clone();
        let mut waiting_on = 0;
        for d in deps {
            match self.tasks[&d].state {
                TaskState::Memory => {}
                TaskState::Released => {
                    waiting_on += 1;
                    self.activate(d);
                }
                _ => waiting_on += 1,
            }
        }
        let task = self.tasks.get_mut(&id).expect("present");
        task.waiting_on = waiting_on;
        if waiting_on == 0 {
            self.enqueue(id);
        } else {
            task.state = TaskState::Waiting;
        }
    }

    pub(super) fn replica_added(&mut self, worker: WorkerId, id: TaskId) {
        let in_memory = self
            .tasks
            .get(&id)
            .is_some_and(|t| t.state == TaskState::Memory);
        if !in_memory || !self.workers.contains_key(&worker) {
            self.release.entry(worker).or_default().push(id);
            return;
        }
        // The retirement that asked for this copy is finished by the sweep.
        self.add_holder(id, worker);
    }
}
