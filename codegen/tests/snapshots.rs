//! Snapshot of the code generated for the fixture models (the same fixtures the
//! `streampod-tests` crate compiles and round-trips).

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

const FIXTURES: &str = "tests/fixtures/models";

fn generate() -> streampod_codegen::Generated {
    streampod_codegen::configure()
        .runtime_path("::streampod_protocol::__codegen")
        .generate(FIXTURES)
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn generated_code() {
    insta::assert_snapshot!(generate().code);
}

#[test]
fn database_keys_are_ignored_with_warnings() {
    let warnings: Vec<String> = generate()
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect();
    insta::assert_snapshot!(warnings.join("\n"));
}
