//! Rendezvous (highest random weight) hashing: the consistent hash behind balanced sessions,
//! re-pinned persistent sessions, client-address affinity and every failover order.
//!
//! Each member scores every key with a hash of (key, member identity); the highest score wins,
//! and the failover order is the members by descending score. Why this and not a ring:
//! - nothing to build and 16 bytes per member (a 320-point ring costs 5 KiB per endpoint and a
//!   sort, twice per backend: ~0.5 GB and seconds at 50,000 endpoints);
//! - the share of each member is exactly its weight's in expectation (a ring's virtual nodes
//!   leave some members 15% over), and removing or re-weighting a member moves only keys to or
//!   from that member;
//! - a lookup costs a couple of nanoseconds per member, which at the tens of pods a Service has
//!   is no more than a ring's binary search over thousands of points.
//!
//! Scores depend only on identities, never on indices, so every replica and every reload agree.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// The members one choice is made among (indices into a backend's endpoint list).
#[derive(Clone, Debug, Default)]
pub struct Rendezvous {
    members: Box<[Member]>,
    /// Members' weights differ: scores go through the logarithmic method.
    weighted: bool,
}

#[derive(Clone, Copy, Debug)]
struct Member {
    seed: u64,
    weight: u32,
    index: u32,
}

/// A member's score for a key, then its seed: ties are broken by seed, so the order is total.
/// Weighted scores are positive floats, whose bit patterns order as the floats do.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Score(u64, u64);

impl Rendezvous {
    /// Members `(endpoint index, identity, weight)`; weight 0 leaves a member out.
    pub fn build<'a>(members: impl IntoIterator<Item = (usize, &'a str, u32)>) -> Rendezvous {
        let members: Box<[Member]> = members
            .into_iter()
            .filter(|&(_, _, weight)| weight > 0)
            .map(|(index, identity, weight)| Member { seed: identity_seed(identity), weight, index: index as u32 })
            .collect();
        let weighted = members.windows(2).any(|w| w[0].weight != w[1].weight);
        Rendezvous { members, weighted }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// The first choice for `key`.
    pub fn first(&self, key: u64) -> Option<usize> {
        let key = mix(key);
        if self.weighted {
            return self.best_below(key, None).map(|(_, m)| m.index as usize);
        }
        // The hot case (every balanced hit, client-address and hash-by request): a tight loop
        // over equal-weight members, the same order as `best_below` gives.
        let (first, rest) = self.members.split_first()?;
        let mut best = (score_bits(key, first.seed), first.seed, first.index);
        for m in rest {
            let score = score_bits(key, m.seed);
            if (score, m.seed) > (best.0, best.1) {
                best = (score, m.seed, m.index);
            }
        }
        Some(best.2 as usize)
    }

    /// First choice, then every other member once, by descending score. Allocates nothing: each
    /// step is a pass over the members (failover walks rarely go past two steps).
    pub fn iter(&self, key: u64) -> Order<'_> {
        Order { set: self, key: mix(key), below: None, left: self.members.len() }
    }

    fn score(&self, key: u64, m: &Member) -> Score {
        let bits = score_bits(key, m.seed);
        if !self.weighted {
            // Equal weights: the raw hash orders members as the weighted score would.
            return Score(bits, m.seed);
        }
        // The logarithmic method: with u uniform in (0, 1), w / -ln(u) is highest for member i
        // with probability w_i / sum(w).
        let u = ((bits >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64);
        Score((f64::from(m.weight) / -u.ln()).to_bits(), m.seed)
    }

    /// The best-scoring member strictly below `bound` (any member without a bound).
    fn best_below(&self, key: u64, bound: Option<Score>) -> Option<(Score, &Member)> {
        let mut best: Option<(Score, &Member)> = None;
        for m in self.members.iter() {
            let s = self.score(key, m);
            if bound.is_some_and(|b| s >= b) {
                continue;
            }
            if best.is_none_or(|(b, _)| s > b) {
                best = Some((s, m));
            }
        }
        best
    }
}

/// Failover order over a [`Rendezvous`] set.
pub struct Order<'a> {
    set: &'a Rendezvous,
    key: u64,
    below: Option<Score>,
    left: usize,
}

impl Iterator for Order<'_> {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        let (score, member) = self.set.best_below(self.key, self.below)?;
        self.below = Some(score);
        self.left -= 1;
        Some(member.index as usize)
    }
}

/// A member's seed: a hash of its identity (`namespace/pod:port`).
fn identity_seed(identity: &str) -> u64 {
    xxh3_64(identity.as_bytes())
}

/// Session ids are random, but other keys (client addresses, `upstream-hash-by` values) are
/// not: mix them first.
fn mix(key: u64) -> u64 {
    xxh3_64_with_seed(&key.to_le_bytes(), 0x7e7e)
}

/// One member's hash of a mixed key: murmur3's 64-bit finalizer over key ^ seed, a bijection with
/// full avalanche, so members' scores for one key are unrelated.
fn score_bits(key: u64, seed: u64) -> u64 {
    let mut h = key ^ seed;
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests;
