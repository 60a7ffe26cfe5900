//! EXPERIMENT: a worker's idle connections to one pod, most recently used first.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

pub struct IdleStack<T> {
    cap: usize,
    items: Mutex<VecDeque<(T, Instant)>>,
}

impl<T> IdleStack<T> {
    pub fn new(cap: usize) -> Self {
        IdleStack { cap, items: Mutex::new(VecDeque::new()) }
    }

    pub fn push(&self, item: (T, Instant)) -> Result<(), (T, Instant)> {
        let evicted = {
            let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
            let evicted = if items.len() >= self.cap { items.pop_front() } else { None };
            items.push_back(item);
            evicted
        };
        match evicted {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    pub fn pop(&self) -> Option<(T, Instant)> {
        self.items.lock().unwrap_or_else(|e| e.into_inner()).pop_back()
    }
}
