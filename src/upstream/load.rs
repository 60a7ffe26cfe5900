//! Live load of one pod, for the balancers that look at it (least connections, EWMA).
//!
//! Kept on the pod's upstream, which outlives route-table reloads, and updated with relaxed
//! atomics only for backends that use such a balancer: round robin never touches it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::upstream::Upstream;

/// How fast the latency average forgets (ingress-nginx's ewma balancer uses 10 s).
const DECAY_MS: f64 = 10_000.0;

#[derive(Debug, Default)]
pub struct Load {
    in_flight: AtomicU32,
    /// Exponentially weighted moving average of response latency, in µs (`f64` bits).
    ewma_us: AtomicU64,
    /// When the average was last updated (ms since the process's clock epoch).
    touched_ms: AtomicU64,
}

fn clock_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    // Never 0: a zero `touched_ms` means "not measured yet".
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

impl Load {
    /// Requests sent to the pod whose response has not ended.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Latency average decayed to now, times the requests in flight (plus one): a pod that
    /// was slow long ago, or that nobody asked lately, gets tried again.
    pub fn ewma_score(&self) -> f64 {
        let ewma = f64::from_bits(self.ewma_us.load(Ordering::Relaxed));
        let idle = clock_ms().saturating_sub(self.touched_ms.load(Ordering::Relaxed)) as f64;
        ewma * (-idle / DECAY_MS).exp() * f64::from(self.in_flight() + 1)
    }

    /// Folds one response latency into the average. Concurrent updates may lose one sample
    /// to another; the average does not need to be exact.
    pub fn record(&self, latency_us: f64) {
        let now = clock_ms();
        let touched = self.touched_ms.swap(now, Ordering::Relaxed);
        let keep = if touched == 0 { 0.0 } else { (-(now.saturating_sub(touched) as f64) / DECAY_MS).exp() };
        let old = f64::from_bits(self.ewma_us.load(Ordering::Relaxed));
        self.ewma_us.store((old * keep + latency_us * (1.0 - keep)).to_bits(), Ordering::Relaxed);
    }
}

/// One request in flight to a pod; dropping it (when the response ends or fails) counts it out.
#[derive(Debug)]
pub struct InFlight {
    upstream: Arc<Upstream>,
    started: Instant,
}

impl InFlight {
    pub fn start(upstream: &Arc<Upstream>) -> Self {
        upstream.load.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight { upstream: upstream.clone(), started: Instant::now() }
    }

    /// The response headers arrived: the latency sample for EWMA.
    pub fn responded(&self) {
        self.upstream.load.record(self.started.elapsed().as_micros() as f64);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.upstream.load.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_average_moves_toward_samples_and_load_multiplies_it() {
        let load = Load::default();
        assert_eq!(load.ewma_score(), 0.0, "an unmeasured pod looks idle");
        load.record(1000.0);
        let first = load.ewma_score();
        assert!(first > 990.0 && first <= 1000.0, "the first sample is the average: {first}");
        load.record(3000.0);
        let second = load.ewma_score();
        assert!(second >= first && second < 1500.0, "one quick sample moves it a little: {second}");
        load.in_flight.fetch_add(2, Ordering::Relaxed);
        let loaded = load.ewma_score();
        assert!((loaded / second - 3.0).abs() < 0.01, "three times the score with two in flight: {loaded}");
    }
}
