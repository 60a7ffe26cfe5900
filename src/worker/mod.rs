//! Which proxy worker thread this is. Per-worker state (connection pools, counters, windows)
//! is indexed by it, so a worker only ever touches its own shard and never takes a lock. And
//! the time its task woke at ([`clock`]), which hyper's tasks and timer share ([`hyper_rt`]).

use std::cell::Cell;

pub mod clock;
pub mod hyper_rt;

thread_local! {
    static WORKER_INDEX: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as proxy worker `index`.
pub fn set_index(index: usize) {
    WORKER_INDEX.with(|w| w.set(index));
}

/// The current proxy worker's index (0 outside the workers).
pub fn index() -> usize {
    WORKER_INDEX.with(Cell::get)
}
