//! Per-client-address limits as ingress-nginx renders them: `limit-rps` / `limit-rpm` (`limit_req
//! ... burst=B nodelay`, here [`RequestRate`]) and `limit-connections` (`limit_conn`, [`Concurrency`]).
//!
//! Both are count-min sketches: two rows of atomic words, one word per row for each client (the low
//! and the high bits of its key). The key is a 64-bit hash of the client address computed by the
//! caller, keyed (e.g. `RandomState`) so that no one can pick the words they land on. A word carries
//! the combined state of every client that maps to it. That is always at least any one client's own
//! state, so the smaller of a client's two words is an upper bound on its usage. Both tables admit
//! only on that bound. With many clients, or a flood of distinct addresses, words fill with other
//! clients' usage and limits get stricter, never looser. Memory is fixed at construction. A call
//! does two atomic read-modify-writes and one load (plus two compare-exchanges when a rate refuses).
//! It never locks, blocks or allocates.
//!
//! Both tables stay exact under concurrency for one reason. A request updates *both* of its words
//! before it reads either one back (all SeqCst). Of any two requests from one client, the one that
//! updates the second word later sees the other's update in both words. Updating and checking one
//! word at a time would let two requests each miss the other, each in a different word.
//!
//! # Request rate: GCRA
//! `R` requests per period, burst `B`. The interval is `T = period / R` in whole microseconds,
//! rounded *up* (rounding down would admit a little more than asked) and at least 1 µs, so a client
//! can be allowed at most 1,000,000 requests/s. Tolerance is `tau = B·T`. Exact GCRA admits a
//! request at `now` iff `tat - now <= tau` (a `tat` in the past counts as `now`), and then sets
//! `tat = max(tat, now) + T`. A fresh client thus gets `B + 1` at once, then one every `T`. Each word
//! is a `tat` in µs since `epoch` (u64, which does not wrap). A request applies
//! `tat = max(tat, now) + T` to both of its words, and is admitted iff the smaller result is within
//! `now + tau + T`. A refused request then takes its charge back from each word where nothing came
//! after it. Alone on its words, a refused request therefore leaves no trace. Under contention, the
//! charge may stay, which is stricter. Taking a charge back only when nothing came after it is an
//! exact undo: the word is then as if the charge never happened.
//!
//! With [`DEFAULT_RATE_SLOTS`] (2 × 8,192 words, 128 KiB), a client is limited by other clients only
//! if both of its words also carry their debt, and then only by the smaller of those debts. When `n`
//! clients owe time at once, that happens with probability `(1 - e^(-n/8192))²`: 1.3% for n = 1,000,
//! 0.015% for n = 100. Against `k` abusive clients that keep their words at full debt, an innocent
//! client is blocked with probability about `(k/8192)²`. There is no "table full": when the table is
//! overloaded, every client is limited more strictly, down to the flood's combined allowance.
//!
//! # Concurrency
//! Each word counts requests in flight (`AtomicU32`). Entering adds 1 to both words and then reads
//! both. The request is admitted iff the smaller value is `<= N`; otherwise both words are decremented
//! again. The guard decrements them on drop. Of `k` overlapping requests from one client, the last one
//! to increment reads `>= k` in both words, so at most `N` are ever in flight.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Two rows of 8,192 words, 128 KiB per table (see the module doc for what it buys).
pub const DEFAULT_RATE_SLOTS: usize = 16_384;
/// Two rows of 8,192 counters, 64 KiB. A client loses allowance to others only when both of its
/// counters carry other clients' requests in flight: 1.3% of clients when 1,000 requests are in
/// flight. Even then it loses only the smaller of those two counts.
pub const DEFAULT_CONCURRENCY_COUNTERS: usize = 16_384;

/// Cap on `T`, `tau` and `now` (36,000 years in µs), so that sums of them cannot overflow.
const CAP: u64 = 1 << 60;

/// The word of `key` in each of two rows of `row` (a power of two) words.
fn words(row: usize, key: u64) -> [usize; 2] {
    let mask = row - 1;
    [key as usize & mask, row + ((key >> 32) as usize & mask)]
}

/// A `limit-rps` / `limit-rpm` table: GCRA per client address.
pub struct RequestRate {
    /// Two rows of `row` words, each a `tat` in µs since `epoch`.
    tats: Box<[AtomicU64]>,
    row: usize,
    /// `T` in µs; 0 when nothing may be admitted.
    interval: u64,
    /// `tau` in µs.
    tolerance: u64,
    epoch: Instant,
}

impl RequestRate {
    /// `requests` per `period` (0 admits none), `burst` extra requests allowed at once; `slots` words,
    /// rounded up to two power-of-two rows.
    pub fn new(requests: u32, period: Duration, burst: u32, slots: usize, epoch: Instant) -> Self {
        let row = slots.div_ceil(2).max(1).next_power_of_two();
        let interval = match requests {
            0 => 0,
            r => period.as_micros().div_ceil(u128::from(r)).clamp(1, u128::from(CAP)) as u64,
        };
        let tolerance = interval.saturating_mul(u64::from(burst)).min(CAP);
        RequestRate { tats: (0..2 * row).map(|_| AtomicU64::new(0)).collect(), row, interval, tolerance, epoch }
    }

    /// Admits or refuses one request of the client whose address hashes to `key`.
    pub fn allow(&self, key: u64, now: Instant) -> bool {
        if self.interval == 0 {
            return false;
        }
        let now = now.saturating_duration_since(self.epoch).as_micros().min(u128::from(CAP)) as u64;
        let charge = |tat: u64| tat.max(now).saturating_add(self.interval);
        let at = words(self.row, key);
        let charge_word = |i: usize| match self.tats[i].fetch_update(SeqCst, SeqCst, |t| Some(charge(t))) {
            Ok(t) | Err(t) => t,
        };
        // Charge the first word, then the second, then read the first back (module doc: why).
        let before = [charge_word(at[0]), charge_word(at[1])];
        let estimate = self.tats[at[0]].load(SeqCst).min(charge(before[1]));
        if estimate.saturating_sub(now) <= self.tolerance + self.interval {
            return true;
        }
        for (i, t) in at.into_iter().zip(before) {
            let _ = self.tats[i].compare_exchange(charge(t), t, SeqCst, SeqCst);
        }
        false
    }

    /// Bytes of the table (fixed at construction).
    #[cfg(test)]
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.tats)
    }
}

/// A `limit-connections` table: requests in flight per client address.
pub struct Concurrency {
    /// Two rows of `row` counters.
    counters: Box<[AtomicU32]>,
    row: usize,
    limit: u32,
}

impl Concurrency {
    /// At most `limit` requests in flight per client; `counters` rounded up to two power-of-two rows.
    pub fn new(limit: u32, counters: usize) -> Self {
        let row = counters.div_ceil(2).max(1).next_power_of_two();
        Concurrency { counters: (0..2 * row).map(|_| AtomicU32::new(0)).collect(), row, limit }
    }

    /// Takes a slot for the client whose address hashes to `key`, held until the guard drops, or
    /// `None` when it already has `limit` requests in flight.
    pub fn try_enter(self: &Arc<Self>, key: u64) -> Option<ConcurrencyGuard> {
        let at = words(self.row, key);
        // Both increments before both reads, as for the rate (module doc).
        self.counters[at[0]].fetch_add(1, SeqCst);
        let second = self.counters[at[1]].fetch_add(1, SeqCst).wrapping_add(1);
        let first = self.counters[at[0]].load(SeqCst);
        if first.min(second) <= self.limit {
            return Some(ConcurrencyGuard { table: Arc::clone(self), at });
        }
        for i in at {
            self.counters[i].fetch_sub(1, SeqCst);
        }
        None
    }

    /// Bytes of the table (fixed at construction).
    #[cfg(test)]
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.counters)
    }
}

/// One admitted request in flight; dropping it frees the slot.
pub struct ConcurrencyGuard {
    table: Arc<Concurrency>,
    at: [usize; 2],
}

impl Drop for ConcurrencyGuard {
    fn drop(&mut self) {
        for i in self.at {
            self.table.counters[i].fetch_sub(1, SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::thread;

    const SEC: Duration = Duration::from_secs(1);

    fn burst(rate: &RequestRate, key: u64, now: Instant) -> usize {
        (0..100_000).take_while(|_| rate.allow(key, now)).count()
    }

    fn mix(mut x: u64) -> u64 {
        // splitmix64: well-spread test keys
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }

    /// Exact GCRA per key (a map): every request the table admitted must also pass here.
    struct Reference(HashMap<u64, u64>, u64, u64);

    impl Reference {
        fn admits(&mut self, key: u64, now: u64) -> bool {
            let tat = self.0.entry(key).or_insert(0);
            let start = (*tat).max(now);
            (start - now <= self.2).then(|| *tat = start + self.1).is_some()
        }
    }

    #[test]
    fn burst_then_rate_then_fresh_after_idle() {
        let epoch = Instant::now();
        let rate = RequestRate::new(10, SEC, 50, 64, epoch); // limit-rps 10, multiplier 5
        let t0 = epoch + SEC;
        let interval = Duration::from_millis(100);
        assert_eq!(burst(&rate, 7, t0), 51);
        assert!(!rate.allow(7, t0 + interval / 2));
        assert_eq!(burst(&rate, 7, t0 + interval), 1);
        assert_eq!(burst(&rate, 7, t0 + interval * 11), 10);
        assert_eq!(burst(&rate, 7, t0 + Duration::from_secs(3600)), 51);
    }

    #[test]
    fn per_minute_one_per_second() {
        let epoch = Instant::now();
        let rate = RequestRate::new(60, Duration::from_secs(60), 60, 64, epoch); // limit-rpm 60, multiplier 1
        assert_eq!(burst(&rate, 1, epoch), 61);
        for s in 1..5 {
            assert!(!rate.allow(1, epoch + SEC * s - Duration::from_millis(1)));
            assert_eq!(burst(&rate, 1, epoch + SEC * s), 1);
        }
    }

    #[test]
    fn interval_rounds_up_and_clamps() {
        let epoch = Instant::now();
        assert_eq!(RequestRate::new(3, SEC, 0, 4, epoch).interval, 333_334);
        let fast = RequestRate::new(100_000, SEC, 5, 4, epoch);
        assert_eq!((fast.interval, burst(&fast, 1, epoch)), (10, 6));
        assert_eq!(burst(&fast, 1, epoch + Duration::from_micros(10)), 1);
        assert_eq!(RequestRate::new(u32::MAX, SEC, 0, 4, epoch).interval, 1);
        assert_eq!(burst(&RequestRate::new(0, SEC, 5, 4, epoch), 1, epoch), 0);
        let slow = RequestRate::new(1, SEC, 5, 4, epoch);
        assert_eq!(burst(&slow, 1, epoch + SEC * 1_000_000_000), 6, "no epoch wrap-around");
    }

    #[test]
    fn clients_are_independent_unless_they_share_both_words() {
        let epoch = Instant::now();
        let rate = RequestRate::new(1, SEC, 2, 64, epoch);
        // Rows of 32 words: b shares one word with a; c shares none; d shares both with a.
        let (a, b, c, d) = (5, 5 | 1 << 32, 6 | 2 << 32, 5 | 1 << 40);
        assert_eq!(words(32, a), words(32, d));
        assert_eq!([a, b, c].map(|k| burst(&rate, k, epoch)), [3, 3, 3]);
        assert_eq!(burst(&rate, d, epoch), 0, "d shares every word with a: limited together");
        assert_eq!([b, c, a, d].map(|k| burst(&rate, k, epoch + SEC)), [1, 1, 1, 0]);
        // A client whose two words both carry others' debt is limited by the smaller one.
        assert_eq!(burst(&rate, 6 | 1 << 32, epoch + SEC), 0);
        assert_eq!(rate.memory_bytes(), 64 * 8);
    }

    #[test]
    fn refusals_leave_no_trace() {
        let epoch = Instant::now();
        let rate = RequestRate::new(10, SEC, 0, 64, epoch);
        assert!(rate.allow(1, epoch));
        assert!((0..1000).all(|_| !rate.allow(1, epoch + Duration::from_millis(50))));
        assert!(rate.allow(1, epoch + Duration::from_millis(100)), "refused requests do not push it back");
        // A neighbour hammering on a shared word does not spend this client's allowance either.
        let neighbour = 1 | 1 << 32; // shares the first word
        assert_eq!(burst(&rate, neighbour, epoch + Duration::from_millis(100)), 1);
        assert!((0..1000).all(|_| !rate.allow(neighbour, epoch + Duration::from_millis(100))));
        assert!(rate.allow(1, epoch + Duration::from_millis(200)));
    }

    #[test]
    fn flood_of_distinct_clients_never_exceeds_any_limit() {
        let epoch = Instant::now();
        let rate = RequestRate::new(2, SEC, 4, 16, epoch); // 2 rows of 8 words
        let mut reference = Reference(HashMap::new(), rate.interval, rate.tolerance);
        let victim = mix(0);
        let admitted = std::cell::RefCell::new(HashMap::<u64, usize>::new());
        let mut send = |key: u64, step: u64| {
            let ok = rate.allow(key, epoch + Duration::from_millis(100 * step));
            assert!(!ok || reference.admits(key, 100_000 * step), "{key:x} over its limit at step {step}");
            *admitted.borrow_mut().entry(key).or_default() += usize::from(ok);
        };
        (0..3).for_each(|_| send(victim, 0));
        // 10,000 clients at one instant, 6 requests each, the victim in between.
        for round in 0..6 {
            for key in (1..=10_000).map(mix) {
                send(key, 0);
                if key % 1000 == round {
                    send(victim, 0);
                }
            }
        }
        assert!(admitted.borrow().values().all(|&n| n <= 5));
        assert!(admitted.borrow()[&victim] <= 5);
        // Then 4 s of each client sending twice every 0.8 s: still nobody over its own limit.
        for step in 1..40 {
            for key in (1..=10_000).map(mix).filter(|k| k % 8 == step % 8).chain([victim]) {
                (0..2).for_each(|_| send(key, step));
            }
        }
        // Once the flood is over and its debt has run out, clients are back to a full burst.
        let later = epoch + SEC * 3600;
        assert_eq!([victim, mix(1), mix(10_001)].map(|k| burst(&rate, k, later)), [5, 5, 5]);
    }

    #[test]
    fn threads_on_one_key_share_one_burst() {
        let epoch = Instant::now();
        let rate = Arc::new(RequestRate::new(10, SEC, 50, 64, epoch));
        let now = epoch + SEC;
        let admitted: usize = (0..4)
            .map(|_| {
                let rate = Arc::clone(&rate);
                thread::spawn(move || (0..1000).filter(|_| rate.allow(42, now)).count())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(admitted, 51);
    }

    #[test]
    fn threads_on_fully_shared_words_share_one_burst() {
        let epoch = Instant::now();
        let rate = Arc::new(RequestRate::new(1, SEC, 9, 2, epoch)); // one word per row: 6 clients share
        let counts: Vec<Vec<usize>> = (0..4)
            .map(|n| {
                let rate = Arc::clone(&rate);
                thread::spawn(move || {
                    let mut counts = vec![0; 6];
                    for i in 0..6000 {
                        let k = (i + n) % 6;
                        counts[k] += usize::from(rate.allow(mix(k as u64), epoch));
                    }
                    counts
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let per_key: Vec<usize> = (0..6).map(|k| counts.iter().map(|c| c[k]).sum()).collect();
        assert_eq!(per_key.iter().sum::<usize>(), 10, "{per_key:?}");
    }

    #[test]
    fn concurrency_limit_and_release() {
        let table = Arc::new(Concurrency::new(2, 64));
        let (a, b) = (table.try_enter(9), table.try_enter(9));
        assert!(a.is_some() && b.is_some() && table.try_enter(9).is_none());
        assert!(table.try_enter(10).is_some(), "another client is not affected");
        drop(a);
        let c = table.try_enter(9);
        assert!(c.is_some() && table.try_enter(9).is_none());
        drop((b, c));
        assert!(table.counters.iter().all(|c| c.load(SeqCst) == 0));
        assert_eq!(table.memory_bytes(), 64 * 4);
    }

    #[test]
    fn concurrency_tiny_table_never_admits_more_than_limit() {
        let table = Arc::new(Concurrency::new(3, 4)); // 2 x 2 counters for 1,000 clients
        let mut held = Vec::new();
        for key in (0..1000).map(mix) {
            let before = held.len();
            held.extend((0..5).filter_map(|_| table.try_enter(key)));
            assert!(held.len() - before <= 3);
        }
        drop(held);
        assert!(table.counters.iter().all(|c| c.load(SeqCst) == 0));
    }

    #[test]
    fn concurrency_threads_stay_within_limit_and_drain() {
        let table = Arc::new(Concurrency::new(2, 16));
        let inside = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..4u64)
            .map(|n| {
                let (table, inside) = (Arc::clone(&table), Arc::clone(&inside));
                thread::spawn(move || {
                    for i in 0..10_000u64 {
                        let key = if i % 2 == 0 { 7 } else { mix(i * 4 + n) };
                        if let Some(guard) = table.try_enter(key) {
                            if key == 7 {
                                assert!(inside.fetch_add(1, SeqCst) < 2, "more than 2 in flight");
                                inside.fetch_sub(1, SeqCst);
                            }
                            drop(guard);
                        }
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert!(table.counters.iter().all(|c| c.load(SeqCst) == 0));
    }

    #[test]
    fn tables_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<RequestRate>();
        check::<Concurrency>();
        check::<ConcurrencyGuard>();
    }
}
