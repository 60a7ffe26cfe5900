//! The time a connection's task woke at, read at most once per wake-up. A proxied request
//! asks what time it is at seven places (its start, the pooled pod connection's age, the
//! response timeout's deadline, the pod's answer, the connection's return to the pool, the end
//! of the response, the client connection's idle mark), and each ask is a vDSO call of about
//! 25 ns here: seven of them were more than 1% of a sticky hit's CPU. HAProxy and nginx read the
//! clock once per turn of their event loop for the same reason.
//!
//! Within one wake-up the time stands still from its first ask: what a wake-up does takes
//! microseconds (tokio's budget makes a busy task yield), so a deadline set from it is early by
//! as much at most, and a duration measured across wake-ups is exact to as much. Outside a
//! wake-up [`now`] reads the clock.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

thread_local! {
    static WAKE_UP: Cell<WakeUp> = const { Cell::new(WakeUp::Outside) };
}

/// Where the current thread is: in no [`Woken`] poll, in one that has not asked the time yet
/// (a poll that only moves bytes never reads the clock), or in one that has.
#[derive(Clone, Copy)]
enum WakeUp {
    Outside,
    Unread,
    At(Instant),
}

/// The time the current wake-up of a [`Woken`] task first asked; the clock's time outside one.
pub fn now() -> Instant {
    WAKE_UP.with(|wake_up| match wake_up.get() {
        WakeUp::At(at) => at,
        WakeUp::Unread => {
            let at = Instant::now();
            wake_up.set(WakeUp::At(at));
            at
        }
        WakeUp::Outside => Instant::now(),
    })
}

pin_project_lite::pin_project! {
    /// A task whose every poll reads the clock at most once, for everything that poll runs to
    /// ask [`now`].
    pub struct Woken<F> {
        #[pin]
        task: F,
    }
}

impl<F> Woken<F> {
    pub fn new(task: F) -> Self {
        Woken { task }
    }
}

impl<F: Future> Future for Woken<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // A nested `Woken` (none today) gives its caller's time back when it returns.
        let outer = WAKE_UP.replace(WakeUp::Unread);
        let polled = self.project().task.poll(cx);
        WAKE_UP.set(outer);
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_wake_up_sees_one_time_and_the_next_a_later_one() {
        let mut polls = Vec::new();
        let mut task = Box::pin(Woken::new(std::future::poll_fn(|_| {
            let first = now();
            std::thread::sleep(Duration::from_millis(5));
            polls.push((first, now()));
            if polls.len() < 2 {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let before = Instant::now();
        assert!(task.as_mut().poll(&mut cx).is_pending());
        assert!(task.as_mut().poll(&mut cx).is_ready());
        drop(task);
        let [(a, a_again), (b, b_again)] = polls[..] else { panic!("two polls") };
        assert_eq!(a, a_again, "the time stands still within a wake-up");
        assert_eq!(b, b_again);
        assert!(before <= a && b >= a + Duration::from_millis(5), "each wake-up reads the clock");
        // Outside a wake-up the clock is read.
        let outside = now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(now() >= outside + Duration::from_millis(2));
    }

    #[test]
    fn a_wake_up_reads_the_clock_when_first_asked() {
        let before = Instant::now();
        let mut task = Box::pin(Woken::new(std::future::poll_fn(|_| {
            std::thread::sleep(Duration::from_millis(5));
            Poll::Ready(now())
        })));
        let Poll::Ready(first_ask) = task.as_mut().poll(&mut Context::from_waker(std::task::Waker::noop())) else {
            panic!("ready")
        };
        assert!(first_ask >= before + Duration::from_millis(5), "read at the ask, not at the wake-up");
    }
}
