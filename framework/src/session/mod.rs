//! One socket's state in the core: its bounded outbound queue with the slow-consumer
//! policy, what each of its streams owns (channels, listeners) and the limits on it, the
//! registry of live sessions, and the memory guard that sheds the largest queues.

pub(crate) mod memory_guard;
pub(crate) mod outbound;
pub(crate) mod owned;
pub(crate) mod registry;
pub(crate) mod state;
