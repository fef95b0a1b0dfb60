//! `methods.json` is what the server's methods are: `build.rs` generates the typed Rust
//! and TypeScript calls from it. A changed method fails this test once, which rewrites
//! the file; build again and the calls follow.

#[test]
fn methods_json_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/methods.json");
    let wrote = streampod_walkthrough::server()
        .write_method_schema(path)
        .expect("methods.json is writable");
    assert!(
        !wrote,
        "methods.json was stale and is now rewritten: build again"
    );
}
