//! The last minute of one endpoint: requests, and distinct sessions estimated by a
//! HyperLogLog sketch. Fixed size whatever the traffic (six 10-second slots of 256 one-byte
//! registers per worker), so counting sessions never grows a table; each worker writes only its
//! own slots.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};

use crossbeam_utils::CachePadded;

const SLOTS: usize = 6;
const SLOT_SECONDS: u32 = 10;
const REGISTERS: usize = 256;
const INDEX_BITS: u32 = 8;

struct Slot {
    /// `unix seconds / SLOT_SECONDS` this slot counts; older contents are stale.
    epoch: AtomicU32,
    requests: AtomicU64,
    registers: [AtomicU8; REGISTERS],
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            epoch: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            registers: std::array::from_fn(|_| AtomicU8::new(0)),
        }
    }
}

#[derive(Default)]
struct WorkerWindow {
    slots: [Slot; SLOTS],
}

/// Requests and sessions of the last minute.
pub struct EndpointWindow {
    workers: Box<[CachePadded<WorkerWindow>]>,
}

/// What the last minute saw.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Minute {
    pub requests: u64,
    /// Estimated distinct sessions (about 6.5% standard error).
    pub sessions: f64,
}

impl EndpointWindow {
    pub fn new(workers: usize) -> Self {
        EndpointWindow { workers: (0..workers.max(1)).map(|_| CachePadded::new(WorkerWindow::default())).collect() }
    }

    /// Counts one request at `now` (unix seconds), of session `session` if it has one.
    pub fn record(&self, now: u32, session: Option<u64>) {
        let worker = &self.workers[crate::proxy::upstream::worker_index() % self.workers.len()];
        let epoch = now / SLOT_SECONDS;
        let slot = &worker.slots[epoch as usize % SLOTS];
        if slot.epoch.load(Relaxed) != epoch {
            // Only this worker writes this slot: resetting it cannot lose another's counts.
            slot.requests.store(0, Relaxed);
            for r in &slot.registers {
                r.store(0, Relaxed);
            }
            slot.epoch.store(epoch, Relaxed);
        }
        slot.requests.fetch_add(1, Relaxed);
        if let Some(id) = session {
            // Session ids are random or keyed hashes already; mix anyway for client-ip keys.
            let h = xxhash_rust::xxh3::xxh3_64(&id.to_le_bytes());
            let index = (h & (REGISTERS as u64 - 1)) as usize;
            let rank = ((h >> INDEX_BITS).trailing_zeros() + 1).min(64 - INDEX_BITS + 1) as u8;
            slot.registers[index].fetch_max(rank, Relaxed);
        }
    }

    /// The minute before `now`: the slots of the last 60 seconds, merged.
    pub fn last_minute(&self, now: u32) -> Minute {
        let current = now / SLOT_SECONDS;
        let mut merged = [0u8; REGISTERS];
        let mut requests = 0;
        for worker in self.workers.iter() {
            for slot in &worker.slots {
                let epoch = slot.epoch.load(Relaxed);
                if epoch == 0 || current.saturating_sub(epoch) >= SLOTS as u32 {
                    continue;
                }
                requests += slot.requests.load(Relaxed);
                for (m, r) in merged.iter_mut().zip(&slot.registers) {
                    *m = (*m).max(r.load(Relaxed));
                }
            }
        }
        Minute { requests, sessions: estimate(&merged) }
    }
}

/// HyperLogLog's estimate, with linear counting for small cardinalities.
fn estimate(registers: &[u8; REGISTERS]) -> f64 {
    let m = REGISTERS as f64;
    let zeros = registers.iter().filter(|&&r| r == 0).count();
    if zeros == REGISTERS {
        return 0.0;
    }
    let alpha = 0.7213 / (1.0 + 1.079 / m);
    let raw = alpha * m * m / registers.iter().map(|&r| 2f64.powi(-i32::from(r))).sum::<f64>();
    if raw <= 2.5 * m && zeros > 0 {
        m * (m / zeros as f64).ln()
    } else {
        raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_sessions_are_estimated_within_a_few_percent_and_repeats_do_not_count() {
        let w = EndpointWindow::new(1);
        let now = 1_700_000_000;
        for n in [10u64, 100, 1000, 20_000] {
            let w = EndpointWindow::new(2);
            for id in 0..n {
                for _ in 0..3 {
                    w.record(now, Some(id.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
                }
            }
            let minute = w.last_minute(now);
            assert_eq!(minute.requests, 3 * n);
            let error = (minute.sessions - n as f64).abs() / n as f64;
            assert!(error < 0.2, "{n} sessions estimated as {}", minute.sessions);
        }
        w.record(now, None);
        assert_eq!(w.last_minute(now), Minute { requests: 1, sessions: 0.0 });
    }

    #[test]
    fn only_the_last_minute_counts() {
        let w = EndpointWindow::new(1);
        let start = 1_700_000_000;
        for id in 0..50 {
            w.record(start, Some(id));
        }
        assert_eq!(w.last_minute(start + 30).requests, 50);
        w.record(start + 61, Some(7));
        let later = w.last_minute(start + 61);
        assert_eq!(later.requests, 1, "the slot a minute old is gone");
        assert!((later.sessions - 1.0).abs() < 0.1);
        assert_eq!(w.last_minute(start + 200).requests, 0);
    }
}
