//! The scheduler: a sans-IO state machine ([`state`]), its placement policy ([`placement`]).
//! The tokio server that feeds it events from sockets lives in `server`.

pub mod observe;
pub mod placement;
pub mod server;
pub mod state;

pub use state::{Command, Event, State};

#[cfg(test)]
mod task_array_tests;
#[cfg(test)]
mod tests;
