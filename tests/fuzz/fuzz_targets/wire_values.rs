//! Serverpod's value encodings (DateTime, Duration, BigInt, ByteData, UuidValue, Uri,
//! enums by name and index, maps with non-string keys, nested collections) through
//! every model of the code generator's fixtures: decode, and re-encode what decodes.
//! Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use streampod::ModelSet;
use streampod_tests::fixtures::Protocol;

fuzz_target!(|text: &str| {
    let Ok(raw) = serde_json::from_str::<&RawValue>(text) else {
        return;
    };
    for class_name in Protocol::class_names() {
        if let Ok(decoded) = Protocol::decode(class_name, raw) {
            let mut out = Vec::new();
            let _ = decoded.encode_data(&mut out);
        }
    }
});
