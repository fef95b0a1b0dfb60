//! Compiles the code generator's fixture models, so the generated code is built and
//! exercised here (the codegen crate snapshots the same fixtures): the main fixtures,
//! an app whose models use a module's (`kit`) and a shared package's (`shared`), and the
//! models behind the wire vectors both clients are tested with (`wire`).

fn main() {
    // The fixtures' database-key warnings are asserted by the codegen crate's tests.
    streampod_codegen::configure()
        .emit_warnings(false)
        .compile_or_exit("../codegen/tests/fixtures/models");
    for (dir, file) in [
        ("kit", "kit.rs"),
        ("shared", "shared.rs"),
        ("wire", "wire.rs"),
    ] {
        streampod_codegen::configure()
            .file_name(file)
            .compile_or_exit(format!("../codegen/tests/fixtures/{dir}"));
    }
    streampod_codegen::configure()
        .file_name("app.rs")
        .module("kit", "../codegen/tests/fixtures/kit", "crate::kit")
        .shared(
            "common",
            "../codegen/tests/fixtures/shared",
            "crate::common",
        )
        .compile_or_exit("../codegen/tests/fixtures/app");
}
