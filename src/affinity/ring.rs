//! Consistent-hash ring (ketama style): built once per endpoint-set change, read per request.
//!
//! Points are placed by hashing the endpoint *identity*, never its index, so every replica
//! and every reload builds the same ring for the same endpoints. A lookup yields the first
//! choice and then the failover order (each endpoint once), like Pingora's
//! `BackendSelection::iter`.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Virtual nodes per endpoint: 320 keeps every endpoint within 1.15x of its fair share up to
/// 100 endpoints (nginx's `hash ... consistent` uses 160, which lets some reach 1.2x).
pub const POINTS_PER_ENDPOINT: u32 = 320;

/// A ring over a subset of a backend's endpoints (indices into the backend's list).
#[derive(Clone, Debug, Default)]
pub struct Ring {
    points: Box<[(u64, u32)]>,
    members: usize,
}

impl Ring {
    /// Builds a ring over `(endpoint index, identity)` pairs.
    pub fn build<'a>(members: impl IntoIterator<Item = (usize, &'a str)>) -> Ring {
        Self::build_weighted(members.into_iter().map(|(i, id)| (i, id, POINTS_PER_ENDPOINT)))
    }

    /// Builds a ring where each member has its own number of points (proportional to its
    /// weight); members with 0 points are left out.
    pub fn build_weighted<'a>(members: impl IntoIterator<Item = (usize, &'a str, u32)>) -> Ring {
        let mut points = Vec::new();
        let mut count = 0;
        for (index, identity, n) in members {
            if n == 0 {
                continue;
            }
            count += 1;
            for v in 0..n {
                let h = xxh3_64_with_seed(identity.as_bytes(), u64::from(v));
                points.push((h, index as u32));
            }
        }
        // Ties broken by index so the order is total and the same everywhere.
        points.sort_unstable();
        Ring { points: points.into_boxed_slice(), members: count }
    }

    pub fn is_empty(&self) -> bool {
        self.members == 0
    }

    /// The first choice for `key`.
    pub fn first(&self, key: u64) -> Option<usize> {
        let start = self.start(key)?;
        Some(self.points[start].1 as usize)
    }

    /// First choice, then each other member once, in ring order.
    pub fn iter(&self, key: u64) -> RingIter<'_> {
        RingIter { ring: self, pos: self.start(key).unwrap_or(0), walked: 0, seen: Vec::new() }
    }

    fn start(&self, key: u64) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let key = mix(key);
        let i = self.points.partition_point(|&(h, _)| h < key);
        Some(if i == self.points.len() { 0 } else { i })
    }
}

/// Session ids are random, but other keys (client addresses) are not: mix them first.
fn mix(key: u64) -> u64 {
    xxh3_64_with_seed(&key.to_le_bytes(), 0x7e7e)
}

/// Failover order over a ring.
pub struct RingIter<'a> {
    ring: &'a Ring,
    pos: usize,
    walked: usize,
    seen: Vec<u32>,
}

impl Iterator for RingIter<'_> {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        let points = &self.ring.points;
        while self.walked < points.len() && self.seen.len() < self.ring.members {
            let (_, index) = points[self.pos];
            self.pos = (self.pos + 1) % points.len();
            self.walked += 1;
            if !self.seen.contains(&index) {
                self.seen.push(index);
                return Some(index as usize);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_of(names: &[&str]) -> Ring {
        Ring::build(names.iter().enumerate().map(|(i, n)| (i, *n)))
    }

    #[test]
    fn iter_yields_each_member_once_starting_with_first() {
        let ring = ring_of(&["a", "b", "c", "d"]);
        for key in 0..100u64 {
            let order: Vec<_> = ring.iter(key).collect();
            assert_eq!(order.len(), 4);
            assert_eq!(Some(order[0]), ring.first(key));
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, vec![0, 1, 2, 3]);
        }
    }

    #[test]
    fn removing_a_member_moves_only_its_keys() {
        let names = ["pod-a", "pod-b", "pod-c"];
        let full = ring_of(&names);
        // Same identities, pod-b gone; indices kept as in the backend list.
        let reduced = Ring::build([(0, "pod-a"), (2, "pod-c")]);
        for key in 0..5000u64 {
            let before = full.first(key).unwrap();
            let after = reduced.first(key).unwrap();
            if before != 1 {
                assert_eq!(before, after, "key {key} moved although its pod stayed");
            } else {
                // Moved keys go where the full ring's failover order says.
                assert_eq!(Some(after), full.iter(key).nth(1));
            }
        }
    }

    #[test]
    fn balanced_scale_up_moves_about_the_new_share() {
        let three = ring_of(&["p0", "p1", "p2"]);
        let four = ring_of(&["p0", "p1", "p2", "p3"]);
        let n = 20_000u64;
        let moved = (0..n).filter(|&k| three.first(k) != four.first(k)).count() as f64 / n as f64;
        assert!((0.17..0.33).contains(&moved), "moved share {moved}, expected about 1/4");
        let to_new = (0..n).filter(|&k| three.first(k) != four.first(k) && four.first(k) != Some(3)).count();
        assert_eq!(to_new, 0, "keys only move to the new pod");
    }

    #[test]
    fn load_is_spread() {
        let ring = ring_of(&["p0", "p1", "p2"]);
        let mut counts = [0u32; 3];
        for k in 0..30_000u64 {
            counts[ring.first(k).unwrap()] += 1;
        }
        for c in counts {
            assert!((7_000..13_000).contains(&c), "uneven: {counts:?}");
        }
    }

    #[test]
    fn empty_ring_has_no_choice() {
        let ring = Ring::default();
        assert!(ring.first(1).is_none());
        assert_eq!(ring.iter(1).count(), 0);
    }
}

#[cfg(test)]
mod distribution {
    use super::*;

    /// Max share / fair share over 100k random sessions.
    fn worst_ratio(n: usize) -> f64 {
        let names: Vec<String> = (0..n).map(|i| format!("default/web-{i}:8080")).collect();
        let ring = Ring::build(names.iter().enumerate().map(|(i, s)| (i, s.as_str())));
        let mut counts = vec![0u32; n];
        let sessions = 100_000u64;
        for k in 0..sessions {
            counts[ring.first(xxhash_rust::xxh3::xxh3_64(&k.to_le_bytes())).unwrap()] += 1;
        }
        let fair = sessions as f64 / n as f64;
        counts.iter().map(|&c| c as f64 / fair).fold(0.0, f64::max)
    }

    #[test]
    fn no_endpoint_gets_more_than_115_percent_of_its_fair_share() {
        for n in [2, 3, 4, 5, 8, 10, 16, 32, 64, 100] {
            let worst = worst_ratio(n);
            eprintln!("{n} endpoints: worst share {worst:.3}x fair");
            assert!(worst <= 1.15, "{n} endpoints: {worst:.3}x");
        }
    }
}
