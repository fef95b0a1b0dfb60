//! The presence changes a node has yet to write to its backplane (Redis or NATS):
//! joins, leaves and resyncs, bounded in number; past the bound they are dropped and
//! the node's members written again from scratch.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

/// Most presence changes queued for the backplane: a change is a member's id, channel and JSON
/// (about 200 bytes), so at most about 20 MB. Past it (the backplane slow or hanging) changes
/// are dropped and the node's members are written again from scratch once the
/// backplane answers, so the queue's memory stays bounded and nothing is lost for good. Well
/// above a storm: 10,000 clients joining at once queue 10,000 changes while a write is
/// out, and a resync then would double the work.
pub(crate) const MAX_QUEUED_CHANGES: usize = 100_000;

/// A presence write for the presence task.
pub(crate) enum Change {
    Join {
        channel: String,
        id: String,
        member: String,
    },
    Leave {
        channel: String,
        id: String,
    },
    /// Replaces everything this node wrote with these members (channel, id, JSON):
    /// the ones the backplane holds stay unannounced, new ones are announced as joins, the
    /// ones it no longer has as leaves.
    Resync(Vec<(String, String, String)>),
}

/// The presence changes waiting for the backplane: at most [`MAX_QUEUED_CHANGES`]; past it they
/// are dropped and the node's members written again from scratch once the backplane answers.
#[derive(Debug)]
pub(crate) struct Queue {
    changes: mpsc::UnboundedSender<Change>,
    queued: AtomicUsize,
    overflowed: AtomicBool,
}

impl Queue {
    pub(crate) fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<Change>) {
        let (changes, receiver) = mpsc::unbounded_channel();
        let queue = Arc::new(Self {
            changes,
            queued: AtomicUsize::new(0),
            overflowed: AtomicBool::new(false),
        });
        (queue, receiver)
    }

    /// Queues `change`, or drops it (and asks for a resync) when the queue is full; a
    /// resync is always queued: it replaces everything before it.
    pub(crate) fn push(&self, change: Change) {
        let resync = matches!(change, Change::Resync(_));
        if !resync && self.queued.load(Ordering::Relaxed) >= MAX_QUEUED_CHANGES {
            self.overflowed.store(true, Ordering::Relaxed);
            return;
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.changes.send(change).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The task took `count` changes off the queue.
    pub(crate) fn taken(&self, count: usize) {
        self.queued.fetch_sub(count, Ordering::Relaxed);
    }

    /// Whether changes were dropped since the last call.
    pub(crate) fn take_overflow(&self) -> bool {
        self.overflowed.swap(false, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(n: usize) -> Change {
        Change::Join {
            channel: "room".into(),
            id: format!("n-{n}"),
            member: "{}".into(),
        }
    }

    #[test]
    fn past_its_bound_the_queue_drops_changes_and_asks_for_a_resync() {
        let (queue, mut changes) = Queue::new();
        for n in 0..MAX_QUEUED_CHANGES + 5 {
            queue.push(join(n));
        }
        assert_eq!(queue.queued.load(Ordering::Relaxed), MAX_QUEUED_CHANGES);
        // A resync is queued even so: it replaces everything before it.
        queue.push(Change::Resync(Vec::new()));
        let mut taken = 0;
        while changes.try_recv().is_ok() {
            taken += 1;
        }
        assert_eq!(taken, MAX_QUEUED_CHANGES + 1);
        queue.taken(taken);
        assert!(queue.take_overflow());
        assert!(!queue.take_overflow(), "asked once");
        queue.push(join(0));
        assert_eq!(queue.queued.load(Ordering::Relaxed), 1);
    }
}
