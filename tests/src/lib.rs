//! End-to-end tests of streampod. The tests live in `tests/`; this library holds what
//! they share.

/// The code generator's fixture models (`codegen/tests/fixtures/models`), compiled.
pub mod fixtures {
    streampod::include_models!();
}
