//! A private `redis-server` per test, on a free loopback port, stopped (by PID) on drop.

// Test support: a failed expectation panics with a message, like an assertion.
#![allow(clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server` this test started.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server on a free loopback port.
    ///
    /// # Panics
    ///
    /// When `redis-server` is not installed or does not answer within 10 s.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        Self::start_on(port)
    }

    /// Starts a server on `port` (to bring a stopped one back).
    ///
    /// # Panics
    ///
    /// As [`RedisServer::start`].
    pub fn start_on(port: u16) -> Self {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            // `DEBUG SLEEP` for the fault tests (refused by default since Redis 7).
            .args(["--enable-debug-command", "yes"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        let server = Self {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.connection().is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// `redis://127.0.0.1:<port>/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn connection(&self) -> redis::RedisResult<redis::Connection> {
        let mut connection = redis::Client::open(self.url())?.get_connection()?;
        redis::cmd("PING").query::<String>(&mut connection)?;
        Ok(connection)
    }

    /// Subscribers of each Redis channel (`PUBSUB NUMSUB`).
    ///
    /// # Panics
    ///
    /// When the server does not answer.
    pub fn numsub(&self, channel: &str) -> usize {
        let mut connection = self.connection().expect("redis answers");
        let (_, count): (String, usize) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query(&mut connection)
            .expect("PUBSUB NUMSUB");
        count
    }

    /// Closes every pub/sub client's connection (`CLIENT KILL TYPE pubsub`), as Redis
    /// does to a subscriber over its output-buffer limit; returns how many it closed.
    ///
    /// # Panics
    ///
    /// When the server does not answer.
    pub fn kill_pubsub_clients(&self) -> usize {
        let mut connection = self.connection().expect("redis answers");
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query(&mut connection)
            .expect("CLIENT KILL TYPE pubsub")
    }

    /// Blocks the server for `seconds` with `DEBUG SLEEP`, from another thread; returns
    /// at once.
    pub fn debug_sleep(&self, seconds: f64) -> std::thread::JoinHandle<()> {
        let url = self.url();
        std::thread::spawn(move || {
            let mut connection = redis::Client::open(url)
                .and_then(|client| client.get_connection())
                .expect("redis answers");
            let _: redis::RedisResult<()> = redis::cmd("DEBUG")
                .arg("SLEEP")
                .arg(seconds)
                .query(&mut connection);
        })
    }

    /// Freezes the server (SIGSTOP): its sockets stay open and nothing is answered, as
    /// a hung Redis behaves. [`RedisServer::resume`] thaws it.
    ///
    /// # Panics
    ///
    /// When `kill` cannot signal the process.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a [`RedisServer::pause`]d server (SIGCONT).
    ///
    /// # Panics
    ///
    /// As [`RedisServer::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Stops the server now (SIGKILL, as a crash would).
    pub fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        // A paused process would not die of SIGKILL any later, but thaw it anyway so
        // its exit is prompt and the port is freed.
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
