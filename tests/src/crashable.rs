//! A server that can crash: it runs on a Tokio runtime of its own, and
//! [`CrashableServer::crash`] drops that runtime, so every task ends and every socket
//! closes at once, with no leave written, no heartbeat after and no shutdown.

// Test support: a failed expectation panics with a message, like an assertion.
#![allow(clippy::expect_used)]

use std::future::Future;
use std::net::SocketAddr;

use streampod::protocol::ModelSet;
use streampod::Server;

/// A running server on a runtime of its own (one worker thread).
#[derive(Debug)]
pub struct CrashableServer {
    runtime: Option<tokio::runtime::Runtime>,
    addr: SocketAddr,
}

impl CrashableServer {
    /// Starts the server `start` makes on a runtime of its own.
    ///
    /// # Panics
    ///
    /// When the runtime cannot be built or the server does not start.
    pub async fn start<P, F, S>(start: F) -> Self
    where
        P: ModelSet,
        F: FnOnce() -> S + Send + 'static,
        S: Future<Output = Server<P>> + Send + 'static,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the server");
        let (started, addr) = tokio::sync::oneshot::channel();
        runtime.spawn(async move {
            let server = start().await;
            let _ = started.send(server.local_addr());
            // Kept until the runtime goes.
            std::future::pending::<()>().await;
            drop(server);
        });
        let addr = addr.await.expect("the server started");
        Self {
            runtime: Some(runtime),
            addr,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Ends it as a crash would.
    pub fn crash(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for CrashableServer {
    fn drop(&mut self) {
        self.stop();
    }
}
