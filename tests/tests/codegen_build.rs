//! The build.rs workflow as a user meets it, with real `cargo` runs on a scratch crate:
//! a YAML file added to `models/` becomes a type on the next build, and a typo fails the
//! build with the file, line and column.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Runs cargo in `dir`, offline, with a target directory kept between test runs.
fn cargo(dir: &Path, args: &[&str]) -> Output {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    Command::new(cargo)
        .args(args)
        .arg("--offline")
        .current_dir(dir)
        .env(
            "CARGO_TARGET_DIR",
            workspace().join("target/codegen-build-test"),
        )
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo runs")
}

fn text(output: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn models_directory_drives_the_build() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let workspace = workspace();
    fs::write(
        root.join("Cargo.toml"),
        format!(
            r#"[package]
name = "user-app"
version = "0.1.0"
edition = "2021"

[dependencies]
streampod = {{ path = "{framework}" }}

[build-dependencies]
streampod-codegen = {{ path = "{codegen}" }}

[workspace]
"#,
            framework = workspace.join("framework").display(),
            codegen = workspace.join("codegen").display(),
        ),
    )
    .unwrap();
    // The workspace's lock file pins the same versions, all already downloaded.
    fs::copy(workspace.join("Cargo.lock"), root.join("Cargo.lock")).unwrap();
    fs::write(
        root.join("build.rs"),
        "fn main() { streampod_codegen::compile_or_exit(\"models\"); }\n",
    )
    .unwrap();
    fs::create_dir_all(root.join("src")).unwrap();
    fs::write(
        root.join("src/main.rs"),
        "streampod::include_models!();\nfn main() {\n    use streampod::ModelSet as _;\n    println!(\"{}\", Protocol::class_names().join(\",\"));\n}\n",
    )
    .unwrap();
    let models = root.join("models");
    fs::create_dir_all(&models).unwrap();
    fs::write(
        models.join("greeting.yaml"),
        "class: Greeting\nfields:\n  text: String\n",
    )
    .unwrap();

    let first = cargo(root, &["run", "--quiet"]);
    assert!(first.status.success(), "{}", text(&first));
    assert_eq!(String::from_utf8_lossy(&first.stdout).trim(), "Greeting");

    // Only a new model file: build.rs must rerun and the new type must appear.
    fs::write(
        models.join("reply.yaml"),
        "class: Reply\nfields:\n  to: Greeting?\n",
    )
    .unwrap();
    let second = cargo(root, &["run", "--quiet"]);
    assert!(second.status.success(), "{}", text(&second));
    assert_eq!(
        String::from_utf8_lossy(&second.stdout).trim(),
        "Greeting,Reply"
    );

    // A typo fails the build and says where.
    fs::write(
        models.join("typo.yaml"),
        "class: Typo\nfields:\n  id: int\n  name: Strin\n",
    )
    .unwrap();
    let third = cargo(root, &["build"]);
    assert!(!third.status.success(), "{}", text(&third));
    let stderr = String::from_utf8_lossy(&third.stderr);
    assert!(
        stderr.contains("models/typo.yaml:4:9: unknown type 'Strin' (did you mean 'String'?)"),
        "{}",
        text(&third)
    );
    assert!(stderr.contains("4 |   name: Strin"), "{}", text(&third));

    // Fixing the file makes the build pass again without touching anything else.
    fs::write(
        models.join("typo.yaml"),
        "class: Typo\nfields:\n  id: int\n  name: String\n",
    )
    .unwrap();
    let fourth = cargo(root, &["run", "--quiet"]);
    assert!(fourth.status.success(), "{}", text(&fourth));
    assert_eq!(
        String::from_utf8_lossy(&fourth.stdout).trim(),
        "Greeting,Reply,Typo"
    );
}
