//! The Rust side of the wire vectors the TypeScript client is held to as well
//! (`codegen/tests/fixtures/wire-vectors.json`; `codegen/tests/typescript.rs` runs the same
//! file under `node --test`): each input decodes with the generated models and encodes
//! exactly to its canonical JSON, or is refused when the vector says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::value::RawValue;
use serde_json::Value;
use streampod::ModelSet;
use streampod_tests::wire::Protocol;

/// Equal JSON, numbers compared by value (`2` and `2.0` are one double on both clients).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[test]
fn every_vector_decodes_and_encodes_as_written() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../codegen/tests/fixtures/wire-vectors.json"
    );
    let file: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let vectors = file["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 7, "the vectors are all there");
    for vector in vectors {
        let name = vector["name"].as_str().unwrap();
        let class = vector["className"].as_str().unwrap();
        let input = RawValue::from_string(vector["input"].to_string()).unwrap();
        let decoded = Protocol::decode(class, &input);
        if vector["rejects"] == Value::Bool(true) {
            assert!(decoded.is_err(), "{name}: decoded what must be refused");
            continue;
        }
        let decoded = decoded.unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut out = Vec::new();
        decoded.encode_data(&mut out).unwrap();
        let encoded: Value = serde_json::from_slice(&out).unwrap();
        assert!(
            same(&encoded, &vector["canonical"]),
            "{name}:\n encoded  {encoded}\n expected {}",
            vector["canonical"]
        );
    }
}
