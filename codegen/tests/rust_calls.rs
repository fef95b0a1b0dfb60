//! Typed Rust calls generated from a method schema: a snapshot of the example server's
//! (its models and `web/methods.json`, which its own test keeps current), and the errors
//! a schema the models cannot back produces. The example server's tests call the
//! generated code against the running server.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../example-server")
}

/// The generated file from the `MethodCalls` trait on: the calls, without the models.
fn calls_of(code: &str) -> &str {
    let start = code
        .find("/// Typed calls of the server's methods")
        .expect("the calls were generated");
    &code[start..]
}

#[test]
fn the_example_servers_calls() {
    let generated = streampod_codegen::configure()
        .methods_file(example().join("web/methods.json"))
        .rust_calls()
        .generate(example().join("models"))
        .unwrap();
    insta::assert_snapshot!(calls_of(&generated.code));
    assert!(
        generated
            .inputs
            .iter()
            .any(|path| path.ends_with("web/methods.json")),
        "cargo must watch the methods file"
    );
}

const NOTE: &str = "class: Note\nfields:\n  text: String\n";

fn schema(json: serde_json::Value) -> streampod_codegen::MethodSchema {
    serde_json::from_value(json).unwrap()
}

fn method(name: &str, args: &serde_json::Value, returns: &str) -> serde_json::Value {
    serde_json::json!({"name": name, "args": args, "returns": returns, "exceptions": [],
        "requireLogin": false, "scopes": []})
}

#[test]
fn names_that_clash_with_the_clients_own_methods_get_a_suffix() {
    let methods = schema(serde_json::json!({"endpoints": [
        {"name": "close", "methods": [method("type", &serde_json::json!([
            {"name": "self", "type": "Note?"}, {"name": "count", "type": "int"}]), "void")]},
    ]}));
    let code = streampod_codegen::configure()
        .methods(methods)
        .rust_calls()
        .generate_sources([("note.yaml", NOTE.to_owned())])
        .unwrap()
        .code;
    let calls = calls_of(&code);
    assert!(
        calls.contains("fn close_endpoint(&self) -> CloseCalls<'_>"),
        "{calls}"
    );
    assert!(calls.contains("pub async fn r#type("), "{calls}");
    assert!(
        calls.contains("self_: ::core::option::Option<&Note>"),
        "{calls}"
    );
    assert!(calls.contains("count: i64"), "{calls}");
    // A `void` method answers `()`.
    assert!(
        calls.contains(
            "(),\n        ::streampod::client::CallError<::streampod::client::NoException>,"
        ),
        "{calls}"
    );
}

#[test]
fn types_the_models_do_not_define_are_named_with_the_method() {
    let methods = schema(serde_json::json!({"endpoints": [
        {"name": "notes", "methods": [method("find", &serde_json::json!([]), "Nope")]},
    ]}));
    let error = streampod_codegen::configure()
        .methods(methods)
        .rust_calls()
        .generate_sources([("note.yaml", NOTE.to_owned())])
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("no Rust calls for these methods"),
        "{message}"
    );
    assert!(message.contains("notes.find: answer"), "{message}");
    assert!(message.contains("'Nope'"), "{message}");
}

#[test]
fn a_missing_methods_file_is_a_warning_and_a_broken_one_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // Not written yet (a new server): no calls, and a warning that says how.
    let missing = dir.path().join("methods.json");
    let generated = streampod_codegen::configure()
        .methods_file(&missing)
        .rust_calls()
        .generate_sources([("note.yaml", NOTE.to_owned())])
        .unwrap();
    assert!(
        generated.code.contains("pub trait MethodCalls {}"),
        "{}",
        generated.code
    );
    let warning = generated.warnings[0].to_string();
    assert!(warning.contains("methods.json"), "{warning}");
    assert!(warning.contains("write_method_schema"), "{warning}");

    std::fs::write(&missing, "{\"endpoints\": 3}").unwrap();
    let error = streampod_codegen::configure()
        .methods_file(&missing)
        .generate_sources([("note.yaml", NOTE.to_owned())])
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("is no method schema"), "{message}");
    assert!(message.contains("write_method_schema"), "{message}");
}
