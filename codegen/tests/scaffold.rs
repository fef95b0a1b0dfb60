//! `streampod-codegen new` from the outside: the crate it writes into a directory outside
//! this workspace builds on its own, its test passes (its `methods.json` is the server's),
//! and its server answers the typed Rust client and the generated TypeScript client.
//!
//! The new crate builds into `target/scaffold` (a target directory of its own: the
//! workspace's is locked by the `cargo test` running this), offline, with the checkout's
//! `Cargo.lock` the scaffold copies, so its dependencies are the ones already fetched.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn succeeded(what: &str, output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The server, stopped (by its PID) when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_new_crate_builds_outside_the_workspace_and_both_clients_talk_to_it() {
    let tsc = checkout().join("codegen/typescript/node_modules/.bin/tsc");
    assert!(
        tsc.exists(),
        "run `npm ci` in codegen/typescript (tests/run-all.sh does)"
    );
    let outside = tempfile::tempdir().unwrap();
    assert!(!outside.path().starts_with(checkout()));
    let dir = outside.path().join("my-game");

    let output = Command::new(env!("CARGO_BIN_EXE_streampod-codegen"))
        .arg("new")
        .arg(&dir)
        .output()
        .unwrap();
    succeeded("streampod-codegen new", &output);
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("name = \"my-game\""), "{manifest}");
    assert!(dir.join("Cargo.lock").is_file());
    // Nothing is overwritten.
    let again = Command::new(env!("CARGO_BIN_EXE_streampod-codegen"))
        .arg("new")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    // Its own test (methods.json is current) and every binary, offline.
    let target = checkout().join("target/scaffold");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(&cargo)
        .args(["test", "--offline", "--quiet"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    succeeded("cargo test in the new crate", &output);
    assert!(
        dir.join("web/src/generated/protocol.ts").is_file(),
        "build.rs writes the TypeScript client"
    );

    let mut server = Command::new(target.join("debug/my-game"))
        .arg("127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let server = Running(server);
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("the server said {line:?}"))
        .to_owned();
    let url = format!("http://{addr}/");

    // The typed Rust client: joins, calls `announce`, hears the announcement.
    let output = Command::new(target.join("debug/client"))
        .arg(&url)
        .output()
        .unwrap();
    let heard = succeeded("the Rust client", &output);
    assert!(heard.contains("server: welcome to lobby"), "{heard}");
    assert!(heard.contains("announced to 1 member(s)"), "{heard}");
    assert!(heard.contains("announcer: hello from Rust"), "{heard}");

    // The TypeScript client: compiled with the pinned tsc (the packages its
    // package.json names, from codegen/typescript), run under Node.
    let web = dir.join("web");
    std::os::unix::fs::symlink(
        checkout().join("codegen/typescript/node_modules"),
        web.join("node_modules"),
    )
    .unwrap();
    let output = Command::new(&tsc).arg("-p").arg(&web).output().unwrap();
    succeeded("tsc", &output);
    let output = Command::new("node")
        .arg(web.join("dist/client.js"))
        .arg(&url)
        .current_dir(&web)
        .output()
        .unwrap();
    let heard = succeeded("the Node client", &output);
    assert!(heard.contains("announced to 1 member(s)"), "{heard}");
    assert!(
        heard.contains("announcer: hello from TypeScript"),
        "{heard}"
    );
    drop(server);
}

#[test]
fn the_new_crates_node_packages_are_the_ones_the_tests_pin() {
    let read = |path: PathBuf| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let scaffold = read(checkout().join("example-server/walkthrough/web/package.json"));
    let tested = read(checkout().join("codegen/typescript/package.json"));
    assert_eq!(scaffold["devDependencies"], tested["devDependencies"]);
}
