//! A private PostgreSQL per test: a fresh cluster (`initdb`) in a scratch directory,
//! on a free loopback port, with trust authentication; stopped by its PID on drop.
//! As root it runs as the `postgres` user (PostgreSQL refuses to run as root).

// Test support: a failed expectation panics with a message, like an assertion.
#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A running PostgreSQL this test started.
#[derive(Debug)]
pub struct PostgresServer {
    pid: u32,
    port: u16,
    _dir: tempfile::TempDir,
}

/// The directory holding `initdb` and `pg_ctl`: on `PATH`, or Debian's
/// `/usr/lib/postgresql/<version>/bin` (the newest).
fn bin_dir() -> PathBuf {
    if let Some(found) = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
    }) {
        return found;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path().join("bin"))
                .filter(|bin| bin.join("initdb").is_file())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .expect("PostgreSQL is installed (apt-get install postgresql; tests/run-all.sh does)")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// `program` with `args`, as the `postgres` user when this process is root.
fn run_as_owner(program: &Path, args: &[&str]) -> std::process::Output {
    let mut command = if is_root() {
        let mut runuser = Command::new("runuser");
        runuser.args(["-u", "postgres", "--"]).arg(program);
        runuser
    } else {
        Command::new(program)
    };
    command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", program.display()))
}

impl PostgresServer {
    /// Initializes and starts a server on a free loopback port.
    ///
    /// # Panics
    ///
    /// When PostgreSQL is not installed, or does not start within 30 s.
    pub fn start() -> Self {
        let port = crate::redis_server::free_port();
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("a scratch directory");
        if is_root() {
            let owned = Command::new("chown")
                .arg("postgres:")
                .arg(dir.path())
                .status()
                .expect("chown runs");
            assert!(
                owned.success(),
                "the postgres user exists (it comes with PostgreSQL's packages)"
            );
        }
        let data = dir.path().join("data");
        let data = data.to_str().expect("a UTF-8 scratch path");
        let socket_dir = dir.path().to_str().expect("a UTF-8 scratch path");
        let init = run_as_owner(
            &bin.join("initdb"),
            &[
                "-D",
                data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        assert!(
            init.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let options = format!(
            "-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
        );
        let log = dir.path().join("server.log");
        let log = log.to_str().expect("a UTF-8 scratch path");
        let started = run_as_owner(
            &bin.join("pg_ctl"),
            &[
                "-D", data, "-o", &options, "-l", log, "-w", "-t", "30", "start",
            ],
        );
        assert!(
            started.status.success(),
            "PostgreSQL did not start on {port}: {}{}",
            String::from_utf8_lossy(&started.stderr),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        let pid = std::fs::read_to_string(Path::new(data).join("postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next()?.trim().parse().ok())
            .expect("postmaster.pid names the server");
        Self {
            pid,
            port,
            _dir: dir,
        }
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // SIGINT: PostgreSQL's fast shutdown (ends sessions, no waiting for clients).
        let pid = self.pid.to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && Command::new("kill")
                .args(["-0", &pid])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
