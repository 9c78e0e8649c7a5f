//! The state machine's invariants, checked after every event by the unit and property tests
//! (and available to any caller that wants to assert them).
//!
//! Why a file of its own: it is the single statement of what a consistent state is, read on
//! its own when a property test fails.

use super::*;

impl State {
    /// Checks every invariant; used by tests after each event. Returns what is broken.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.check_array_invariants()?;
        for (id, t) in &self.tasks {
            match &t.state {
                TaskState::Processing(w) => {
                    let ok = self
                        .workers
                        .get(w)
                        .is_some_and(|w| w.processing.contains(id));
                    if !ok {
                        return Err(format!("{id} processing on {w}, which does not list it"));
                    }
                }
                TaskState::Memory => {
                    if t.holders.is_empty() {
                        return Err(format!("{id} in memory with no holder"));
                    }
                    for h in &t.holders {
                        if !self.workers.get(h).is_some_and(|w| w.has.contains(id)) {
                            return Err(format!("{id} held by {h}, which does not list it"));
                        }
                    }
                }
                TaskState::Waiting => {
                    let missing = t
                        .deps
                        .iter()
                        .filter(|d| self.tasks[d].state != TaskState::Memory)
                        .count() as u32;
                    if missing != t.waiting_on || missing == 0 {
                        return Err(format!(
                            "{id} waiting on {} but {missing} inputs are missing",
                            t.waiting_on
                        ));
                    }
                    for d in &t.deps {
                        if self.tasks[d].state == TaskState::Released {
                            return Err(format!("{id} waits on {d}, which nobody computes"));
                        }
                    }
                }
                TaskState::Queued => {
                    if let Some(d) = t
                        .deps
                        .iter()
                        .find(|d| self.tasks[d].state != TaskState::Memory)
                    {
                        return Err(format!("{id} queued but input {d} is not in memory"));
                    }
                }
                TaskState::Released | TaskState::Erred(_) => {
                    if !t.holders.is_empty() {
                        return Err(format!("{id} is {} but has holders", t.state.name()));
                    }
                }
            }
            let readers = t
                .dependents
                .iter()
                .filter(|d| self.tasks[d].state.is_active())
                .count() as u32;
            if readers != t.pending_dependents {
                return Err(format!(
                    "{id} counts {} pending dependents, has {readers}",
                    t.pending_dependents
                ));
            }
            if t.state == TaskState::Memory && !t.needed() {
                return Err(format!("{id} kept in memory though nobody needs it"));
            }
            if t.needed() && t.state == TaskState::Released {
                return Err(format!("{id} is needed but nobody computes it"));
            }
        }
        let mut seen_processing: BTreeSet<TaskId> = BTreeSet::new();
        for (wid, w) in &self.workers {
            for id in &w.processing {
                if !seen_processing.insert(*id) {
                    return Err(format!("{id} runs on two workers at once"));
                }
                if self.tasks.get(id).map(|t| &t.state) != Some(&TaskState::Processing(*wid)) {
                    return Err(format!(
                        "{wid} lists {id} as processing but the task disagrees"
                    ));
                }
            }
            for id in &w.has {
                if !self.tasks.get(id).is_some_and(|t| t.holders.contains(wid)) {
                    return Err(format!("{wid} lists {id} as held but the task disagrees"));
                }
            }
        }
        Ok(())
    }
}
