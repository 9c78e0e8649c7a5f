//! Task graphs: keys, task specs, and the ordering that decides which ready task runs first.
//!
//! A task names a kernel and carries its arguments as bytes: tasks are data, not code, so a
//! graph can cross the wire and any worker with the kernel registered can run it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

pub use crate::ids::TaskId;

/// One task: which kernel, with which arguments, on the results of which tasks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub id: TaskId,
    /// A name in the workers' kernel registry ("noop", "command", "array.sum", ...).
    pub kernel: String,
    /// Kernel-specific arguments, encoded by whoever built the task.
    pub args: Vec<u8>,
    /// The tasks whose results this task takes as inputs, in order.
    pub deps: Vec<TaskId>,
}

impl TaskSpec {
    pub fn new(id: TaskId, kernel: impl Into<String>, args: Vec<u8>, deps: Vec<TaskId>) -> Self {
        TaskSpec {
            id,
            kernel: kernel.into(),
            args,
            deps,
        }
    }
}

/// The inner levels of a tree reduction over `inputs`: each group of `fan_in` results feeds
/// one `kernel` task, level after level, until one remains. Bounding the fan-in bounds the
/// data one task reads. Returns the new tasks and the root (an input itself when there is one).
pub fn reduction_tree(
    inputs: Vec<TaskId>,
    fan_in: usize,
    kernel: &str,
    mut key: impl FnMut() -> TaskId,
) -> (Vec<TaskSpec>, TaskId) {
    assert!(!inputs.is_empty(), "a reduction needs at least one input");
    let fan_in = fan_in.max(2);
    let mut tasks = Vec::with_capacity(inputs.len() / (fan_in - 1) + 1);
    let mut level = inputs;
    while level.len() > 1 {
        level = level
            .chunks(fan_in)
            .map(|group| {
                let id = key();
                tasks.push(TaskSpec::new(id, kernel, vec![], group.to_vec()));
                id
            })
            .collect();
    }
    (tasks, level[0])
}

/// Orders a graph so that branches finish before new ones start.
///
/// A depth-first walk from each output, taking dependencies in their listed order, numbers
/// every task after its dependencies (post-order). Running ready tasks lowest number first
/// then completes one partial reduction before reading the inputs of the next, so the data
/// alive at once stays small — the property out-of-core graphs need. Dependencies outside
/// `tasks` (already known to the scheduler) are skipped. Returns task -> rank, 0 first.
pub fn order(tasks: &[TaskSpec]) -> IdMap<TaskId, u64> {
    let index: IdMap<TaskId, usize> = tasks.iter().enumerate().map(|(i, t)| (t.id, i)).collect();
    let mut has_dependents = vec![false; tasks.len()];
    for t in tasks {
        for d in &t.deps {
            if let Some(&i) = index.get(d) {
                has_dependents[i] = true;
            }
        }
    }
    let mut rank: IdMap<TaskId, u64> =
        IdMap::with_capacity_and_hasher(tasks.len(), IdBuild::default());
    let mut visited = vec![false; tasks.len()];
    // Stack of (task index, next dependency to visit).
    let mut stack: Vec<(usize, usize)> = Vec::new();
    let outputs = (0..tasks.len()).filter(|&i| !has_dependents[i]);
    for root in outputs {
        stack.push((root, 0));
        visited[root] = true;
        while let Some((node, next)) = stack.last_mut() {
            let deps = &tasks[*node].deps;
            if *next < deps.len() {
                let dep = deps[*next];
                *next += 1;
                if let Some(&i) = index.get(&dep) {
                    if !visited[i] {
                        visited[i] = true;
                        stack.push((i, 0));
                    }
                }
            } else {
                let n = rank.len() as u64;
                rank.insert(tasks[*node].id, n);
                stack.pop();
            }
        }
    }
    rank
}

/// Checks a graph before the scheduler takes it: unique ids and no cycles. Dependencies on
/// tasks outside the graph are allowed only if `known` says the scheduler has them.
pub fn validate(tasks: &[TaskSpec], known: impl Fn(TaskId) -> bool) -> Result<(), String> {
    let mut index: IdMap<TaskId, usize> =
        IdMap::with_capacity_and_hasher(tasks.len(), IdBuild::default());
    for (i, t) in tasks.iter().enumerate() {
        if index.insert(t.id, i).is_some() {
            return Err(format!("task {} appears twice in the graph", t.id));
        }
    }
    for t in tasks {
        for d in &t.deps {
            if !index.contains_key(d) && !known(*d) {
                return Err(format!(
                    "task {} depends on {}, which is neither in the graph nor known",
                    t.id, d
                ));
            }
        }
    }
    // Kahn's algorithm within the graph: anything left over is on a cycle.
    let mut indegree: Vec<usize> = tasks
        .iter()
        .map(|t| t.deps.iter().filter(|d| index.contains_key(d)).count())
        .collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); tasks.len()];
    for (i, t) in tasks.iter().enumerate() {
        for d in &t.deps {
            if let Some(&j) = index.get(d) {
                dependents[j].push(i);
            }
        }
    }
    let mut ready: Vec<usize> = (0..tasks.len()).filter(|&i| indegree[i] == 0).collect();
    let mut seen = 0;
    while let Some(i) = ready.pop() {
        seen += 1;
        for &j in &dependents[i] {
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.push(j);
            }
        }
    }
    if seen != tasks.len() {
        let on_cycle = (0..tasks.len())
            .find(|&i| indegree[i] > 0)
            .map(|i| tasks[i].id);
        return Err(format!(
            "the graph has a cycle (through task {})",
            on_cycle.expect("a task on the cycle")
        ));
    }
    Ok(())
}

/// Why a graph over a scheduler's task limit is refused: the count, the limit, and the two
/// ways out. The one wording of the client's own check and the scheduler's.
pub fn too_many_tasks(tasks: usize, limit: usize) -> String {
    format!(
        "the graph has {tasks} tasks, more than this scheduler's limit of {limit} tasks per \
         submission; submit it in parts, or raise the limit with --max-graph-tasks when \
         starting the scheduler (or the cluster, `up --max-graph-tasks`)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: u64, deps: &[u64]) -> TaskSpec {
        TaskSpec::new(
            TaskId(id),
            "noop",
            vec![],
            deps.iter().map(|d| TaskId(*d)).collect(),
        )
    }

    #[test]
    fn a_reduction_finishes_each_branch_before_the_next() {
        // sum(s1(a,b), s2(c,d)): a, b, s1 must come before c, d.
        let g = vec![
            t(1, &[]),
            t(2, &[]),
            t(3, &[]),
            t(4, &[]),
            t(10, &[1, 2]),
            t(11, &[3, 4]),
            t(20, &[10, 11]),
        ];
        let r = order(&g);
        assert_eq!(r.len(), 7);
        assert!(r[&TaskId(10)] < r[&TaskId(3)] && r[&TaskId(10)] < r[&TaskId(4)]);
        assert!(r[&TaskId(20)] == 6);
        for task in &g {
            for d in &task.deps {
                assert!(r[d] < r[&task.id], "dependency ranked after its dependent");
            }
        }
    }

    #[test]
    fn reduction_trees_bound_their_fan_in() {
        let mut next = 100;
        let inputs: Vec<TaskId> = (0..10).map(TaskId).collect();
        let (tasks, root) = reduction_tree(inputs, 3, "sum", || {
            next += 1;
            TaskId(next)
        });
        // 10 -> 4 -> 2 -> 1
        assert_eq!(tasks.len(), 7);
        assert_eq!(root, tasks.last().unwrap().id);
        assert!(tasks.iter().all(|t| t.deps.len() <= 3 && t.kernel == "sum"));
        assert_eq!(
            reduction_tree(vec![TaskId(5)], 2, "sum", || TaskId(0)),
            (vec![], TaskId(5))
        );
    }

    #[test]
    fn shared_dependencies_are_ranked_once() {
        let g = vec![t(1, &[]), t(2, &[1]), t(3, &[1]), t(4, &[2, 3])];
        let r = order(&g);
        let mut ranks: Vec<u64> = r.values().copied().collect();
        ranks.sort();
        assert_eq!(ranks, [0, 1, 2, 3]);
    }

    #[test]
    fn validation_finds_duplicates_cycles_and_unknown_deps() {
        assert!(validate(&[t(1, &[]), t(1, &[])], |_| false)
            .unwrap_err()
            .contains("twice"));
        assert!(validate(&[t(1, &[2]), t(2, &[1])], |_| false)
            .unwrap_err()
            .contains("cycle"));
        assert!(validate(&[t(1, &[9])], |_| false)
            .unwrap_err()
            .contains("neither"));
        assert!(validate(&[t(1, &[9])], |id| id == TaskId(9)).is_ok());
    }
}

/// A hasher for task and worker ids: ids are already well spread integers, so one multiply
/// mixes them. The scheduler's per-task maps use it on the hot path, where SipHash (the
/// std default, built to resist hostile keys) costs more than the rest of the bookkeeping.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 =
                (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

pub type IdBuild = std::hash::BuildHasherDefault<IdHasher>;
pub type IdMap<K, V> = HashMap<K, V, IdBuild>;
pub type IdSet<K> = std::collections::HashSet<K, IdBuild>;
