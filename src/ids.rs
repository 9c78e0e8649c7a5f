//! The identifiers every layer shares: tasks, workers, clients.
//!
//! A leaf module (it imports nothing from the crate) so that the wire protocol, the
//! scheduler, the workers and the client can all name the same ids without depending on each
//! other: the protocol describes messages *about* tasks and workers, it must not need the
//! scheduler to do so.

use serde::{Deserialize, Serialize};

/// A task's key. Clients allocate keys in their own range (the scheduler hands each client a
/// prefix when it connects), so keys from different clients never collide and no string
/// hashing sits on the hot path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskId(pub u64);

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "t{:x}", self.0)
    }
}

/// A worker, numbered by the scheduler in the order they registered (never reused).
pub type WorkerId = u64;

/// A client connection, numbered by the scheduler (never reused); its keys start at
/// `ClientId << KEY_BITS`.
pub type ClientId = u64;
