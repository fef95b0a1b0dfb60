//! A one-way flag tasks wait on: raised once, never lowered. It is what a session's
//! `closing` and `abort` need from a cancellation token, without the token's separately
//! allocated tree node: both flags live inside the session's shared state.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// A flag that wakes its waiters when raised.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    raised: AtomicBool,
    notify: Notify,
}

impl Signal {
    /// Raises the flag and wakes every waiter; later calls do nothing.
    pub(crate) fn raise(&self) {
        if !self.raised.swap(true, Ordering::AcqRel) {
            self.notify.notify_waiters();
        }
    }

    /// Whether the flag is up.
    pub(crate) fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    /// Waits until the flag is up.
    pub(crate) async fn raised(&self) {
        let notified = std::pin::pin!(self.notify.notified());
        let mut notified = notified;
        // Registered before the check: a raise in between still wakes this waiter.
        notified.as_mut().enable();
        if self.is_raised() {
            return;
        }
        notified.await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::Signal;

    #[tokio::test]
    async fn waiters_wake_once_raised_and_later_ones_return_at_once() {
        let signal = Arc::new(Signal::default());
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let signal = signal.clone();
                tokio::spawn(async move { signal.raised().await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(!signal.is_raised());
        signal.raise();
        signal.raise();
        for waiter in waiters {
            tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("woken")
                .expect("no panic");
        }
        assert!(signal.is_raised());
        tokio::time::timeout(Duration::from_secs(5), signal.raised())
            .await
            .expect("an already raised signal does not wait");
    }
}
