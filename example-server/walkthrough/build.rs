//! Turns `models/*.yaml` into Rust types in `$OUT_DIR/protocol.rs` on every build.

fn main() {
    streampod_codegen::compile_or_exit("models");
}
