//! A shared count of bytes held somewhere (posts waiting for Redis) with a ceiling: what
//! wants to hold more than the ceiling allows is refused, and what is held is given back
//! when its guard drops.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes held, at most a ceiling.
#[derive(Debug)]
pub(crate) struct ByteBudget {
    held: AtomicUsize,
    ceiling: usize,
}

impl ByteBudget {
    pub(crate) fn new(ceiling: usize) -> Arc<Self> {
        Arc::new(Self {
            held: AtomicUsize::new(0),
            ceiling,
        })
    }

    /// The most this budget holds.
    pub(crate) fn ceiling(&self) -> usize {
        self.ceiling
    }

    /// Holds `bytes` more, unless that would pass the ceiling.
    pub(crate) fn hold(self: &Arc<Self>, bytes: usize) -> Option<HeldBytes> {
        let mut current = self.held.load(Ordering::Relaxed);
        loop {
            let next = current
                .checked_add(bytes)
                .filter(|next| *next <= self.ceiling)?;
            match self.held.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(HeldBytes {
                        budget: self.clone(),
                        bytes,
                    })
                }
                Err(actual) => current = actual,
            }
        }
    }
}

/// Bytes held in a [`ByteBudget`]; given back when dropped.
#[derive(Debug)]
pub(crate) struct HeldBytes {
    budget: Arc<ByteBudget>,
    bytes: usize,
}

impl Drop for HeldBytes {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_up_to_the_ceiling_and_gives_back_on_drop() {
        let budget = ByteBudget::new(10);
        let first = budget.hold(6).unwrap();
        assert!(budget.hold(5).is_none(), "11 > 10");
        let second = budget.hold(4).unwrap();
        drop(first);
        let third = budget.hold(6).unwrap();
        assert!(budget.hold(1).is_none());
        drop((second, third));
        assert!(budget.hold(10).is_some());
    }
}
