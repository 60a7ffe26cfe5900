//! The last minute of one endpoint: requests, and distinct sessions estimated by a
//! HyperLogLog sketch. Fixed size whatever the traffic (six 10-second slots of 256 one-byte
//! registers), so counting sessions never grows a table. Request counts are per worker (each
//! writes only its own cache line); the sketch is shared, since a register is only written when
//! it grows, which soon becomes rare, so workers mostly just read it.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};

use crossbeam_utils::CachePadded;

const SLOTS: usize = 6;
const SLOT_SECONDS: u32 = 10;
const REGISTERS: usize = 256;
const INDEX_BITS: u32 = 8;

/// One slot of the shared sketch.
struct SketchSlot {
    /// `unix seconds / SLOT_SECONDS` this slot counts; older contents are stale.
    epoch: AtomicU32,
    registers: [AtomicU8; REGISTERS],
}

impl Default for SketchSlot {
    fn default() -> Self {
        SketchSlot { epoch: AtomicU32::new(0), registers: std::array::from_fn(|_| AtomicU8::new(0)) }
    }
}

/// One worker's request counts, per slot: `(epoch, requests)`.
#[derive(Default)]
struct WorkerCounts {
    slots: [(AtomicU32, AtomicU64); SLOTS],
}

/// Requests and sessions of the last minute. Its 2 KiB are taken on the first request: most
/// endpoints of a big cluster never see one on a given replica.
pub struct EndpointWindow {
    workers: usize,
    counts: std::sync::OnceLock<Box<Counts>>,
}

struct Counts {
    sketch: [SketchSlot; SLOTS],
    workers: Box<[CachePadded<WorkerCounts>]>,
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
        EndpointWindow { workers: workers.max(1), counts: std::sync::OnceLock::new() }
    }

    /// Counts one request at `now` (unix seconds), of session `session` if it has one.
    pub fn record(&self, now: u32, session: Option<u64>) {
        let counts = self.counts.get_or_init(|| {
            Box::new(Counts {
                sketch: Default::default(),
                workers: (0..self.workers).map(|_| CachePadded::new(WorkerCounts::default())).collect(),
            })
        });
        let epoch = now / SLOT_SECONDS;
        let index = epoch as usize % SLOTS;
        let worker = &counts.workers[crate::worker::index() % counts.workers.len()];
        let (slot_epoch, requests) = &worker.slots[index];
        if slot_epoch.load(Relaxed) != epoch {
            // Only this worker writes its counts: resetting cannot lose another's.
            requests.store(0, Relaxed);
            slot_epoch.store(epoch, Relaxed);
        }
        requests.fetch_add(1, Relaxed);
        let Some(id) = session else { return };
        let slot = &counts.sketch[index];
        if slot.epoch.load(Relaxed) != epoch && slot.epoch.swap(epoch, Relaxed) != epoch {
            // The first to see a new slot period clears it (a register another worker sets in
            // the same instant may be lost: the sketch is an estimate anyway).
            for r in &slot.registers {
                r.store(0, Relaxed);
            }
        }
        // Session ids are random or keyed hashes already; mix anyway for client-ip keys.
        let h = xxhash_rust::xxh3::xxh3_64(&id.to_le_bytes());
        let register = &slot.registers[(h & (REGISTERS as u64 - 1)) as usize];
        let rank = ((h >> INDEX_BITS).trailing_zeros() + 1).min(64 - INDEX_BITS + 1) as u8;
        if register.load(Relaxed) < rank {
            register.fetch_max(rank, Relaxed);
        }
    }

    /// The minute before `now`: the slots of the last 60 seconds, merged.
    pub fn last_minute(&self, now: u32) -> Minute {
        let Some(counts) = self.counts.get() else { return Minute::default() };
        let current = now / SLOT_SECONDS;
        let fresh = |epoch: u32| epoch != 0 && current.saturating_sub(epoch) < SLOTS as u32;
        let requests = counts
            .workers
            .iter()
            .flat_map(|w| w.slots.iter())
            .filter(|(epoch, _)| fresh(epoch.load(Relaxed)))
            .map(|(_, n)| n.load(Relaxed))
            .sum();
        let mut merged = [0u8; REGISTERS];
        for slot in counts.sketch.iter().filter(|s| fresh(s.epoch.load(Relaxed))) {
            for (m, r) in merged.iter_mut().zip(&slot.registers) {
                *m = (*m).max(r.load(Relaxed));
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
