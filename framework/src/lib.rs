//! streampod: typed real-time endpoints for Rust, ported from Serverpod's streaming
//! endpoints.
//!
//! Models are written in YAML and generated into serde types by `streampod-codegen`
//! from your `build.rs`; [`include_models!`] brings them into your crate:
//!
//! ```text
//! // build.rs:   fn main() { streampod_codegen::compile_or_exit("models"); }
//! // src/main.rs:
//! streampod::include_models!();
//! ```
//!
//! The server runtime, message central and client build on the types re-exported here.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(no_crate_inject, attr(deny(rust_2018_idioms))))]

pub use streampod_protocol as protocol;
pub use streampod_protocol::{ModelEnum, ModelSet, SerializableException, SerializableModel};

/// Items generated code refers to. Not a public API.
#[doc(hidden)]
pub use streampod_protocol::__codegen;

/// Includes the models `streampod-codegen` generated into `OUT_DIR` (`protocol.rs`, or
/// the file name given).
///
/// ```text
/// streampod::include_models!();            // $OUT_DIR/protocol.rs
/// streampod::include_models!("chat.rs");   // $OUT_DIR/chat.rs
/// ```
#[macro_export]
macro_rules! include_models {
    () => {
        include!(concat!(env!("OUT_DIR"), "/protocol.rs"));
    };
    ($file:literal) => {
        include!(concat!(env!("OUT_DIR"), "/", $file));
    };
}
