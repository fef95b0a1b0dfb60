//! On every build: `models/*.yaml` become Rust types in `$OUT_DIR/protocol.rs`, with
//! typed calls of the methods in `methods.json`, and TypeScript in `web/src/generated/`.

fn main() {
    streampod_codegen::configure()
        .methods_file("methods.json")
        .rust_calls()
        .typescript_out("web/src/generated/protocol.ts")
        .compile_or_exit("models");
}
