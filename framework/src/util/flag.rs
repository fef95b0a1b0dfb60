//! A one-way flag one task waits on: raised once, never lowered. It is what a session's
//! `closing` (the reader waits on it) and `abort` (the writer waits on it) need from a
//! cancellation token, without the token's separately allocated tree node, and with a
//! waiting future of one pointer: it sits in the state of every idle socket's reader.

use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use futures_util::task::AtomicWaker;

/// A flag that wakes its waiter when raised.
#[derive(Debug, Default)]
pub(crate) struct Flag {
    raised: AtomicBool,
    waiter: AtomicWaker,
}

impl Flag {
    /// Raises the flag and wakes the waiter; later calls do nothing.
    pub(crate) fn raise(&self) {
        if !self.raised.swap(true, Ordering::AcqRel) {
            self.waiter.wake();
        }
    }

    /// Whether the flag is up.
    pub(crate) fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    /// Waits until the flag is up. One task waits at a time: a second waiter takes the
    /// first one's place.
    pub(crate) fn raised(&self) -> impl Future<Output = ()> + '_ {
        poll_fn(|cx| {
            if self.is_raised() {
                return Poll::Ready(());
            }
            // Registered before the second check: a raise in between still wakes it.
            self.waiter.register(cx.waker());
            if self.is_raised() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

/// A wake-up one task waits on, raised any number of times: each wait returns once it
/// was raised since the last one returned (raises in between count as one). What a
/// session's reader waits on to look at its identity again.
#[derive(Debug, Default)]
pub(crate) struct Nudge {
    raised: AtomicBool,
    waiter: AtomicWaker,
}

impl Nudge {
    /// Raises it and wakes the waiter.
    pub(crate) fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        self.waiter.wake();
    }

    /// Waits until raised, and lowers it. One task waits at a time.
    pub(crate) fn raised(&self) -> impl Future<Output = ()> + '_ {
        poll_fn(|cx| {
            if self.raised.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            self.waiter.register(cx.waker());
            if self.raised.swap(false, Ordering::AcqRel) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::Flag;

    #[tokio::test]
    async fn the_waiter_wakes_once_raised_and_later_waits_return_at_once() {
        let flag = Arc::new(Flag::default());
        let waiter = {
            let flag = flag.clone();
            tokio::spawn(async move { flag.raised().await })
        };
        tokio::task::yield_now().await;
        assert!(!flag.is_raised());
        assert!(!waiter.is_finished());
        flag.raise();
        flag.raise();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("no panic");
        assert!(flag.is_raised());
        tokio::time::timeout(Duration::from_secs(5), flag.raised())
            .await
            .expect("an already raised flag does not wait");
    }

    #[tokio::test]
    async fn a_nudge_wakes_once_per_raise_seen() {
        let nudge = Arc::new(super::Nudge::default());
        nudge.raise();
        nudge.raise();
        tokio::time::timeout(Duration::from_secs(5), nudge.raised())
            .await
            .expect("raised before the wait");
        let waiter = {
            let nudge = nudge.clone();
            tokio::spawn(async move { nudge.raised().await })
        };
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "both raises were taken by the first wait"
        );
        nudge.raise();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("no panic");
    }

    #[test]
    fn waiting_costs_one_pointer() {
        let flag = Flag::default();
        assert!(std::mem::size_of_val(&flag.raised()) <= 16);
    }
}
