//! The code generator's front end on any model file: YAML parse, grammar checks,
//! expansion. It must answer with code or diagnostics, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = streampod_codegen::configure()
        .generate_sources([("fuzz.yaml", text.to_owned())]);
});
