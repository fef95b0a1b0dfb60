//! Generates the example's models from `models/*.yaml`.

fn main() {
    streampod_codegen::compile_or_exit("models");
}
