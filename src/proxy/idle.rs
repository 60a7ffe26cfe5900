//! Idle client connections: one deadline per connection (not a timer per request). Each
//! request holds an [`ActivityGuard`] until its response body ends; when none is open for
//! `--client-idle-timeout`, the connection is asked to finish (HTTP/2: GOAWAY; HTTP/1: close
//! between requests).

use crate::worker::clock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Requests open on one connection, and since when it has had none.
pub struct ConnActivity {
    started: Instant,
    open: AtomicUsize,
    /// Milliseconds after `started` at which the last request ended (or the connection began).
    idle_since_ms: AtomicU64,
}

impl ConnActivity {
    pub fn new() -> Arc<ConnActivity> {
        Arc::new(ConnActivity { started: Instant::now(), open: AtomicUsize::new(0), idle_since_ms: AtomicU64::new(0) })
    }

    /// A request begins; the guard ends it (keep it with the response body).
    pub fn begin(self: &Arc<Self>) -> ActivityGuard {
        self.open.fetch_add(1, Relaxed);
        ActivityGuard(Some(self.clone()))
    }

    /// When the connection will have been idle for `limit`, if nothing happens before:
    /// `None` while a request is open.
    pub fn idle_deadline(&self, limit: Duration) -> Option<Instant> {
        if self.open.load(Relaxed) > 0 {
            return None;
        }
        Some(self.started + Duration::from_millis(self.idle_since_ms.load(Relaxed)) + limit)
    }
}

/// Held while a request (and its response body) is open.
pub struct ActivityGuard(Option<Arc<ConnActivity>>);

impl ActivityGuard {
    /// For a request on a connection that keeps its own idle time: tether's HTTP/1.1 server
    /// serves one request at a time and counts the idle time from the end of each response, so
    /// it needs no shared count (nor its atomics and clock read per request).
    pub fn untracked() -> ActivityGuard {
        ActivityGuard(None)
    }
}

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        let Some(activity) = &self.0 else { return };
        // Stamped before the count drops, so a deadline read in between is never too early (but
        // for the microseconds of this wake-up: `clock::now` is when it began).
        let idle_since = clock::now().saturating_duration_since(activity.started);
        activity.idle_since_ms.store(idle_since.as_millis() as u64, Relaxed);
        activity.open.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_counts_from_the_last_request_and_waits_for_open_ones() {
        let a = ConnActivity::new();
        let limit = Duration::from_secs(5);
        let first = a.idle_deadline(limit).unwrap();
        assert!(first <= Instant::now() + limit);
        let g1 = a.begin();
        let g2 = a.begin();
        assert!(a.idle_deadline(limit).is_none(), "a request is open");
        drop(g1);
        assert!(a.idle_deadline(limit).is_none(), "another is still open");
        std::thread::sleep(Duration::from_millis(20));
        drop(g2);
        assert!(a.idle_deadline(limit).unwrap() > first, "idle from the end of the last request");
    }
}
