//! How a burst of changes becomes one reload, for both sources: after the first change, wait
//! until the source has been quiet for a moment, but never longer than a bound after that
//! first change, so a storm that never goes quiet is still served within the bound (plus a
//! compile) of each write.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};

/// How long to wait for the rest of a burst.
#[derive(Clone, Copy, Debug)]
pub struct Gather {
    /// Reload once no change came for this long.
    pub quiet: Duration,
    /// Reload at the latest this long after the burst's first change.
    pub max: Duration,
}

/// Files: editors and tools write a file in several steps (and a directory in several files);
/// 100 ms of quiet covers them, 150 ms bounds a storm's lag.
pub const FILES: Gather = Gather { quiet: Duration::from_millis(100), max: Duration::from_millis(150) };

/// The API: each event is a whole object, so a short quiet only groups the objects one
/// `kubectl apply` or one rollout step writes together.
pub const API: Gather = Gather { quiet: Duration::from_millis(20), max: Duration::from_millis(100) };

impl Gather {
    /// Called after the first change of a burst: swallows the rest of it. `false` when the
    /// sender is gone.
    pub async fn rest_of_burst(self, changes: &mut mpsc::Receiver<()>) -> bool {
        let deadline = Instant::now() + self.max;
        loop {
            let quiet = Instant::now() + self.quiet;
            match timeout_at(quiet.min(deadline), changes.recv()).await {
                Ok(Some(())) if Instant::now() < deadline => continue,
                Ok(Some(())) => return true,
                Ok(None) => return false,
                Err(_) => return true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST: Gather = Gather { quiet: Duration::from_millis(40), max: Duration::from_millis(200) };

    #[tokio::test(start_paused = true)]
    async fn a_lone_change_waits_for_the_quiet_only() {
        let (_tx, mut rx) = mpsc::channel(1);
        let t0 = Instant::now();
        assert!(TEST.rest_of_burst(&mut rx).await);
        assert_eq!(t0.elapsed(), TEST.quiet);
    }

    #[tokio::test(start_paused = true)]
    async fn a_storm_is_cut_at_the_bound() {
        let (tx, mut rx) = mpsc::channel(1);
        tokio::spawn(async move {
            // A change every 10 ms, for ever: never quiet.
            while tx.send(()).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let t0 = Instant::now();
        assert!(TEST.rest_of_burst(&mut rx).await);
        let waited = t0.elapsed();
        assert!(waited >= TEST.max && waited < TEST.max + Duration::from_millis(20), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_ends_when_it_goes_quiet() {
        let (tx, mut rx) = mpsc::channel(1);
        tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(30)).await;
                tx.send(()).await.unwrap();
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let t0 = Instant::now();
        assert!(TEST.rest_of_burst(&mut rx).await);
        assert_eq!(t0.elapsed(), Duration::from_millis(90) + TEST.quiet, "the last change, then the quiet");
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_source_ends_the_wait() {
        let (tx, mut rx) = mpsc::channel::<()>(1);
        drop(tx);
        assert!(!TEST.rest_of_burst(&mut rx).await);
    }
}
