//! A private `nats-server` per test, on a free loopback port, with JetStream storing in
//! a temporary directory; stopped (by PID) on drop.

// Test support: a failed expectation panics with a message, like an assertion.
#![allow(clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis_server::free_port;

/// A running `nats-server` this test started.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
}

/// Where Debian's package puts the server (`/usr/sbin`, not on every user's `PATH`).
fn program() -> &'static str {
    if std::path::Path::new("/usr/sbin/nats-server").exists() {
        "/usr/sbin/nats-server"
    } else {
        "nats-server"
    }
}

impl NatsServer {
    /// Starts a server on a free loopback port.
    ///
    /// # Panics
    ///
    /// When `nats-server` is not installed or does not listen within 10 s.
    pub fn start() -> Self {
        let mut server = Self {
            child: None,
            port: free_port(),
            store: tempfile::tempdir().expect("a temporary directory for JetStream"),
        };
        // A port found free may be taken before the server binds it (by another test's
        // connection): then it exits, and another port is tried.
        for _ in 0..5 {
            if server.try_spawn() {
                return server;
            }
            server.port = free_port();
        }
        panic!("nats-server could not bind a free port five times");
    }

    fn spawn(&mut self) {
        assert!(
            self.try_spawn(),
            "nats-server exited on {} (the port is taken?)",
            self.port
        );
    }

    /// Starts the server on its port; `false` when it exits at once.
    fn try_spawn(&mut self) -> bool {
        let child = Command::new(program())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed (apt-get install nats-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let exited = self
                .child
                .as_mut()
                .is_some_and(|child| matches!(child.try_wait(), Ok(Some(_))));
            if exited {
                self.child = None;
                return false;
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not start on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `nats://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL, as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(child.id().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a [`kill`](Self::kill)ed server again on its port, with what JetStream
    /// stored.
    ///
    /// # Panics
    ///
    /// As [`NatsServer::start`].
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Starts a [`kill`](Self::kill)ed server again on its port, with nothing stored.
    ///
    /// # Panics
    ///
    /// As [`NatsServer::start`].
    pub fn restart_empty(&mut self) {
        self.kill();
        self.store = tempfile::tempdir().expect("a temporary directory for JetStream");
        self.spawn();
    }

    /// Freezes the server (SIGSTOP): its sockets stay open and nothing is answered.
    ///
    /// # Panics
    ///
    /// When it is not running.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a [`pause`](Self::pause)d server (SIGCONT).
    ///
    /// # Panics
    ///
    /// When it is not running.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("a running nats-server");
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} failed");
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
