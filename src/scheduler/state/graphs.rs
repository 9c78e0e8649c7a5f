//! Graphs coming and going: a client's submission (checked whole before anything of it is
//! taken in: size, duplicates, missing inputs, cycles), activating what it wants, and the
//! client side of forgetting (releasing keys, a client's wants, tasks nothing can reach).
//!
//! Why a file of its own: this is where the task graph grows and shrinks; everything else
//! moves tasks between states inside a graph already accepted.

use super::*;

impl State {
    pub(super) fn submit(&mut self, client: ClientId, tasks: Vec<TaskSpec>, wanted: Vec<TaskId>) {
        if tasks.len() > self.config.max_graph_tasks {
            let reason = graph::too_many_tasks(tasks.len(), self.config.max_graph_tasks);
            self.out.push(Command::GraphRejected { client, reason });
            return;
        }
        let new: Vec<TaskSpec> = tasks
            .into_iter()
            .filter(|t| !self.tasks.contains_key(&t.id))
            .collect();
        if let Err(reason) = graph::validate(&new, |id| self.tasks.contains_key(&id)) {
            self.out.push(Command::GraphRejected { client, reason });
            return;
        }
        let new_ids: IdSet<TaskId> = new.iter().map(|t| t.id).collect();
        if let Some(k) = wanted
            .iter()
            .find(|k| !self.tasks.contains_key(k) && !new_ids.contains(k))
        {
            let reason = format!("wanted key {k} is not in the graph");
            self.out.push(Command::GraphRejected { client, reason });
            return;
        }
        self.generation += 1;
        let ranks = graph::order(&new);
        // Wired only once every task is in: a client may list a dependent before its input
        // (nothing asks for topological order), and validation guarantees each input is here
        // by then, either known before or part of this graph.
        let mut edges: Vec<(TaskId, TaskId)> = Vec::new();
        for spec in new {
            edges.extend(spec.deps.iter().map(|d| (*d, spec.id)));
            let priority = (self.generation, ranks[&spec.id]);
            self.tasks.insert(
                spec.id,
                Task {
                    kernel: spec.kernel,
                    args: spec.args,
                    deps: spec.deps,
                    dependents: Vec::new(),
                    state: TaskState::Released,
                    priority,
                    waiting_on: 0,
                    pending_dependents: 0,
                    wanted_by: Vec::new(),
                    holders: Vec::new(),
                    nbytes: 0,
                    suspicious: 0,
                },
            );
        }
        for (input, dependent) in edges {
            self.tasks
                .get_mut(&input)
                .expect("validated: every input is known or in the graph")
                .dependents
                .push(dependent);
        }
        for key in wanted {
            if !self.wanted.entry(client).or_default().insert(key) {
                continue;
            }
            let task = self.tasks.get_mut(&key).expect("checked");
            task.wanted_by.push(client);
            match &task.state {
                TaskState::Memory => {
                    let (nbytes, holders) = (task.nbytes, task.holders.clone());
                    self.out.push(Command::KeyReady {
                        client,
                        key,
                        nbytes,
                        holders,
                    });
                }
                TaskState::Erred(e) => {
                    let error = e.to_string();
                    self.out.push(Command::KeyErred { client, key, error });
                }
                TaskState::Released => self.activate(key),
                _ => {}
            }
        }
        // Tasks of this graph that nothing wanted or needs would otherwise stay forever.
        let unwanted: Vec<TaskId> = new_ids
            .into_iter()
            .filter(|id| {
                self.tasks
                    .get(id)
                    .is_some_and(|t| t.dependents.is_empty() && !t.needed())
            })
            .collect();
        self.forget_unreachable(unwanted);
    }

    /// Makes a released task compute: counts it as a pending reader of its inputs, activates
    /// inputs that are not in memory either, and queues it if all its inputs are there.
    /// Iterative, because chains can be far deeper than the stack.
    pub(super) fn activate(&mut self, root: TaskId) {
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            let task = &self.tasks[&id];
            if task.state != TaskState::Released {
                continue;
            }
            let deps = task.deps.clone();
            let mut waiting_on = 0;
            let mut failed: Option<Arc<str>> = None;
            for d in &deps {
                let dep = self.tasks.get_mut(d).expect("deps outlive dependents");
                dep.pending_dependents += 1;
                match &dep.state {
                    TaskState::Memory => {}
                    TaskState::Erred(e) => failed = Some(e.clone()),
                    TaskState::Released => {
                        waiting_on += 1;
                        stack.push(*d);
                    }
                    _ => waiting_on += 1,
                }
            }
            let task = self.tasks.get_mut(&id).expect("present");
            task.waiting_on = waiting_on;
            if let Some(e) = failed {
                task.state = TaskState::Waiting;
                self.fail(id, e);
            } else if waiting_on == 0 {
                self.enqueue(id);
            } else {
                task.state = TaskState::Waiting;
            }
        }
    }

    pub(super) fn enqueue(&mut self, id: TaskId) {
        let task = self.tasks.get_mut(&id).expect("present");
        task.state = TaskState::Queued;
        self.queue.push(Reverse((task.priority, id)));
    }

    pub(super) fn release_keys(&mut self, client: ClientId, keys: Vec<TaskId>) {
        let keys: Vec<TaskId> = keys
            .into_iter()
            .filter(|key| self.wanted.get_mut(&client).is_some_and(|w| w.remove(key)))
            .collect();
        self.unwant(client, keys);
    }

    /// `client` no longer wants `keys`: work nobody needs stops, and tasks nothing can need
    /// again are forgotten (all in one pass, see `forget_unreachable`).
    pub(super) fn unwant(&mut self, client: ClientId, keys: Vec<TaskId>) {
        for key in &keys {
            if let Some(task) = self.tasks.get_mut(key) {
                task.wanted_by.retain(|c| *c != client);
                self.settle(*key);
            }
        }
        self.forget_unreachable(keys);
    }

    /// Forgets tasks that no client wants and no known task depends on, cascading to inputs.
    ///
    /// In waves: a wave removes every task of it that can go, and only then prunes the
    /// dependents lists of their inputs, once per input; the inputs make the next wave. An
    /// input read by 100,000 tasks (`x - x.mean()`) is pruned in one pass, where pruning it
    /// per removed dependent was quadratic and held the core for minutes. A task kept in a
    /// wave because its list still named a dependent removed in that same wave is one of
    /// the pruned inputs, so the next wave looks at it again.
    pub(super) fn forget_unreachable(&mut self, roots: impl IntoIterator<Item = TaskId>) {
        let mut wave: Vec<TaskId> = roots.into_iter().collect();
        while !wave.is_empty() {
            let mut gone: IdSet<TaskId> = IdSet::default();
            let mut inputs: IdSet<TaskId> = IdSet::default();
            for id in wave.drain(..) {
                let Some(task) = self.tasks.get(&id) else {
                    continue;
                };
                if task.needed() || task.state.is_active() || !task.dependents.is_empty() {
                    continue;
                }
                if task.state == TaskState::Memory {
                    self.drop_data(id);
                }
                let task = self.tasks.remove(&id).expect("present");
                gone.insert(id);
                inputs.extend(task.deps);
            }
            for d in &inputs {
                if let Some(dep) = self.tasks.get_mut(d) {
                    dep.dependents.retain(|x| !gone.contains(x));
                }
            }
            wave.extend(inputs);
        }
    }
}
