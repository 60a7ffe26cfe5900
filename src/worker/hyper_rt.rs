//! hyper's runtime hooks for a worker, so hyper's HTTP/2 reads the time as the rest of the
//! request path does ([`clock`](super::clock)): its stream tasks are [`Woken`] like the
//! connection tasks `server` spawns, and its timer's `now` is the wake-up's time. hyper asks
//! the time on every poll of an HTTP/2 connection and every frame it reads (the keep-alive
//! ping's bookkeeping): four clock reads per request on an h2c sticky hit, none now.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use hyper::rt::{Executor, Sleep, Timer};
use hyper_util::rt::TokioTimer;

use super::clock::{self, Woken};

/// Spawns hyper's tasks (an HTTP/2 stream's, a pod connection's) on the worker, each
/// [`Woken`].
#[derive(Clone, Copy, Debug, Default)]
pub struct WorkerExecutor;

impl<F> Executor<F> for WorkerExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, task: F) {
        tokio::spawn(Woken::new(task));
    }
}

/// tokio's timer, telling the time of the current wake-up.
#[derive(Clone, Debug, Default)]
pub struct WorkerTimer(TokioTimer);

impl Timer for WorkerTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.0.sleep(duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        self.0.sleep_until(deadline)
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        self.0.reset(sleep, new_deadline)
    }

    fn now(&self) -> Instant {
        clock::now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn spawned_tasks_and_the_timer_see_their_wake_up_time() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        WorkerExecutor.execute(async move {
            let woke = clock::now();
            std::thread::sleep(Duration::from_millis(5));
            let _ = tx.send((woke, clock::now(), WorkerTimer::default().now()));
        });
        let (woke, later, timer) = rx.await.expect("the task ran");
        assert_eq!(woke, later, "a spawned task is Woken: its time stands still");
        assert_eq!(woke, timer, "the timer tells the wake-up's time");
        // And its sleeps are tokio's.
        let before = Instant::now();
        WorkerTimer::default().sleep(Duration::from_millis(20)).await;
        let slept = before.elapsed();
        assert!(slept >= Duration::from_millis(20) && slept < Duration::from_secs(5), "{slept:?}");
    }
}
