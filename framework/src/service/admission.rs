//! The server's open TCP connections: a cap on all of them, an optional cap per client
//! address, and, at the cap, eviction of the connections that are only waiting (they
//! have not sent a complete request, or sit idle between keep-alive requests), oldest
//! first, so idle sockets cannot lock real clients out.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio_util::sync::CancellationToken;

/// Why a new connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The server is at `max_connections` and every connection is busy.
    Full,
    /// The client's address is at `max_connections_per_ip`.
    PerAddress,
}

impl Refusal {
    /// The refusal as a complete HTTP/1.1 503 response, written before closing.
    pub(crate) fn response(self) -> Vec<u8> {
        let (retry_after, message) = match self {
            Refusal::Full => (1, "the server is at its connection limit"),
            Refusal::PerAddress => (5, "too many connections from this address"),
        };
        let body =
            format!(r#"{{"error":{{"code":"too_many_connections","message":"{message}"}}}}"#);
        format!(
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {retry_after}\r\n\
             Content-Type: application/json\r\nConnection: close\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    /// A short label for logs and metrics.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::Full => "full",
            Refusal::PerAddress => "per_address",
        }
    }
}

/// Open connections and their limits.
#[derive(Debug)]
pub(crate) struct Connections {
    max: usize,
    per_address: Option<usize>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Connections counted against `max` (evicted ones no longer are).
    open: usize,
    by_address: HashMap<IpAddr, usize>,
    /// Waiting connections by when they started waiting (a sequence number): the first
    /// entry is the one evicted next.
    waiting: BTreeMap<u64, CancellationToken>,
    next_wait: u64,
}

impl State {
    fn start_waiting(&mut self, evict: &CancellationToken) -> u64 {
        let key = self.next_wait;
        self.next_wait += 1;
        self.waiting.insert(key, evict.clone());
        key
    }
}

impl Connections {
    pub(crate) fn new(max: usize, per_address: Option<usize>) -> Self {
        Self {
            max: max.max(1),
            per_address,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.lock().open
    }

    /// Admits a connection from `address`, evicting the longest-waiting connection
    /// when the server is full, or says why it cannot.
    pub(crate) fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Ticket, Refusal> {
        let mut state = self.lock();
        let from_address = state.by_address.get(&address).copied().unwrap_or(0);
        if self.per_address.is_some_and(|max| from_address >= max) {
            return Err(Refusal::PerAddress);
        }
        if state.open >= self.max {
            let Some((_, oldest)) = state.waiting.pop_first() else {
                return Err(Refusal::Full);
            };
            // Counted as gone now, so a burst of accepts cannot overshoot the cap
            // while the evicted connections are still closing.
            oldest.cancel();
            state.open -= 1;
        }
        state.open += 1;
        *state.by_address.entry(address).or_insert(0) += 1;
        let evict = CancellationToken::new();
        let waiting = state.start_waiting(&evict);
        drop(state);
        Ok(Ticket {
            connections: self.clone(),
            address,
            evict,
            waiting: Mutex::new(Some(waiting)),
        })
    }
}

/// One admitted connection; dropping it (when the connection and any WebSocket on it
/// ended) frees its place.
#[derive(Debug)]
pub(crate) struct Ticket {
    connections: Arc<Connections>,
    address: IpAddr,
    /// Cancelled when the connection is evicted.
    evict: CancellationToken,
    /// Its key among the waiting connections, while it waits.
    waiting: Mutex<Option<u64>>,
}

impl Ticket {
    /// Cancelled when the connection is evicted to admit another: close it.
    pub(crate) fn evicted(&self) -> &CancellationToken {
        &self.evict
    }

    fn waiting(&self) -> MutexGuard<'_, Option<u64>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A request is being served (or the connection became a WebSocket): not evictable.
    pub(crate) fn busy(&self) {
        if let Some(key) = self.waiting().take() {
            self.connections.lock().waiting.remove(&key);
        }
    }

    /// The connection waits for its next request: evictable again, as the newest.
    pub(crate) fn idle(&self) {
        let mut waiting = self.waiting();
        if waiting.is_none() && !self.evict.is_cancelled() {
            *waiting = Some(self.connections.lock().start_waiting(&self.evict));
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let key = self.waiting().take();
        let mut state = self.connections.lock();
        if let Some(key) = key {
            state.waiting.remove(&key);
        }
        if !self.evict.is_cancelled() {
            state.open -= 1;
        }
        if let Some(count) = state.by_address.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                state.by_address.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn at_the_cap_the_longest_waiting_connection_is_evicted() {
        let connections = Arc::new(Connections::new(2, None));
        let first = connections.admit(ip(1)).unwrap();
        let second = connections.admit(ip(1)).unwrap();
        second.busy();
        let third = connections.admit(ip(1)).unwrap();
        assert!(first.evicted().is_cancelled(), "the waiting one goes");
        assert!(!second.evicted().is_cancelled());
        assert_eq!(connections.open(), 2);
        drop(first);
        assert_eq!(
            connections.open(),
            2,
            "an evicted connection was already uncounted"
        );
        third.busy();
        assert_eq!(
            connections.admit(ip(1)).unwrap_err(),
            Refusal::Full,
            "all busy"
        );
        // Idle again: the newest waiting connection, evictable.
        third.idle();
        let _fourth = connections.admit(ip(1)).unwrap();
        assert!(third.evicted().is_cancelled());
    }

    #[test]
    fn the_per_address_cap_counts_each_address_apart() {
        let connections = Arc::new(Connections::new(100, Some(2)));
        let a1 = connections.admit(ip(1)).unwrap();
        let _a2 = connections.admit(ip(1)).unwrap();
        assert_eq!(connections.admit(ip(1)).unwrap_err(), Refusal::PerAddress);
        let _b = connections.admit(ip(2)).unwrap();
        drop(a1);
        assert!(connections.admit(ip(1)).is_ok());
    }

    #[test]
    fn refusals_are_complete_responses() {
        for refusal in [Refusal::Full, Refusal::PerAddress] {
            let response = refusal.response();
            let text = std::str::from_utf8(&response).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("Content-Length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(length, body.len(), "{text}");
            serde_json::from_str::<serde_json::Value>(body).unwrap();
        }
    }
}
