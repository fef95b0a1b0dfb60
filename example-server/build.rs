//! Generates the example's models from `models/*.yaml`, with typed Rust calls of its
//! methods from `web/methods.json` (kept current by the `web_client` test).

fn main() {
    streampod_codegen::configure()
        .methods_file("web/methods.json")
        .rust_calls()
        .compile_or_exit("models");
}
