//! The code generator's front end on any model file: YAML parse and every grammar
//! check. It must answer with diagnostics or accept, never panic. (Expansion of
//! accepted models is covered by the snapshot and build tests; formatting each accepted
//! input would slow this target tenfold.)
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = streampod_codegen::configure().check_sources([("fuzz.yaml", text.to_owned())]);
});
