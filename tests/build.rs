//! Compiles the code generator's fixture models, so the generated code is built and
//! exercised here (the codegen crate snapshots the same fixtures).

fn main() {
    // The fixtures' database-key warnings are asserted by the codegen crate's tests.
    streampod_codegen::configure()
        .emit_warnings(false)
        .compile_or_exit("../codegen/tests/fixtures/models");
}
