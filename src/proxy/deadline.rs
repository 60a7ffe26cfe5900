//! One timer per connection, re-armed lazily (as HAProxy keeps one per stream): each wait
//! names when it is over, and the timer is moved only when it would fire too late, or when it
//! fires before the wait is over. A keep-alive connection's waits start a little later each
//! request, so its timer is registered about once per timeout, not once per request.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use tokio::time::{Instant, Sleep};

/// A connection's timer; not armed until a wait polls it.
pub fn timer() -> Sleep {
    tokio::time::sleep_until(Instant::now() + std::time::Duration::from_secs(86_400))
}

/// Ready once `due` has passed, moving `timer` only when it must. (A `poll_fn`, not an `async
/// fn`: a waiting connection's future holds it, and this is a third of the size.)
pub fn reached(mut timer: Pin<&mut Sleep>, due: Instant) -> impl Future<Output = ()> + '_ {
    if timer.deadline() > due {
        timer.as_mut().reset(due);
    }
    std::future::poll_fn(move |cx| loop {
        std::task::ready!(timer.as_mut().poll(cx));
        if Instant::now() >= due {
            return Poll::Ready(());
        }
        timer.as_mut().reset(due);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_at_its_due_time_whatever_the_timer_held() {
        let start = Instant::now();
        let mut timer = std::pin::pin!(timer());
        // The timer fires at a day: moved earlier.
        reached(timer.as_mut(), start + Duration::from_secs(5)).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(5));
        // Later waits: the old time passed, it is moved on when it fires.
        let due = Instant::now() + Duration::from_secs(7);
        reached(timer.as_mut(), due).await;
        assert_eq!(Instant::now(), due);
        // A timer set later than the wait is moved earlier.
        timer.as_mut().reset(Instant::now() + Duration::from_secs(60));
        let due = Instant::now() + Duration::from_secs(2);
        reached(timer.as_mut(), due).await;
        assert_eq!(Instant::now(), due);
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_armed_early_waits_past_its_first_firing() {
        let start = Instant::now();
        let mut timer = std::pin::pin!(timer());
        timer.as_mut().reset(start + Duration::from_secs(1));
        let due = start + Duration::from_secs(10);
        let waited = tokio::time::timeout(Duration::from_secs(9), reached(timer.as_mut(), due)).await;
        assert!(waited.is_err(), "not over before its due time");
        reached(timer.as_mut(), due).await;
        assert_eq!(Instant::now(), due);
    }
}
