//! The streampod wire format, shared by server and client. No I/O, no async runtime.
//!
//! - [`SerializableModel`], [`ModelSet`] and [`ModelEnum`]: the traits generated models
//!   implement (see `streampod-codegen`).
//! - [`frame`]: Serverpod's streaming-endpoint JSON frames and streampod's error frame.
//! - [`method_stream`]: the frames of Serverpod's streaming methods (`/v1/websocket`).
//! - [`schema`]: what a server's HTTP methods take and answer, for client generators.
//! - [`wire`]: Serverpod's JSON form of every field type (DateTime, Duration, UUID, …).
//! - [`ErrorCode`]: the closed set of error codes in error frames.
//!
//! Encoding goes straight into a byte buffer; decoding borrows from the frame text and
//! decodes the model only once its endpoint is known:
//!
//! ```
//! use streampod_protocol::frame::Frame;
//!
//! let text = r#"{"endpoint":"chat","object":{"className":"ChatMessage","data":{"content":"hi"}}}"#;
//! match Frame::parse(text)? {
//!     Frame::Message(message) => {
//!         assert_eq!((&*message.endpoint, &*message.class_name), ("chat", "ChatMessage"));
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! # Ok::<(), streampod_protocol::frame::FrameError>(())
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(no_crate_inject, attr(deny(rust_2018_idioms))))]

pub mod auth;
mod collections;
pub mod datetime;
mod dynamic;
mod error_code;
pub mod frame;
pub mod history;
pub mod method_stream;
mod model;
pub mod schema;
pub mod suggest;
mod uri;
mod vector;
pub mod wire;

pub use error_code::{ErrorCode, UnknownErrorCode};
pub use model::{
    decode_model, encode_model, unknown_class, DecodeError, EncodeError, EnumSerialization,
    ModelEnum, ModelSet, SerializableException, SerializableModel,
};
pub use uri::InvalidUri;
pub use vector::InvalidVector;

/// The Rust types of Serverpod's value kinds, as generated fields use them.
pub mod types {
    pub use bytes::Bytes;
    pub use num_bigint::BigInt;
    pub use uuid::Uuid;

    pub use crate::collections::{EntryMap, EntrySet, MAX_DECODED_ENTRIES};
    pub use crate::dynamic::Dynamic;
    pub use crate::uri::Uri;
    pub use crate::vector::{Bits, SparseVector};

    /// `DateTime`: a UTC time with microsecond precision on the wire.
    pub type DateTime = chrono::DateTime<chrono::Utc>;
    /// `Duration`: signed, millisecond precision on the wire.
    pub type Duration = chrono::TimeDelta;
}

/// The value crates behind [`types`], re-exported so users need not match versions.
pub mod reexports {
    pub use bytes;
    pub use chrono;
    pub use num_bigint;
    pub use serde;
    pub use serde_json;
    pub use url;
    pub use uuid;
}

/// Items generated code refers to. Not a public API: it changes with the code generator.
#[doc(hidden)]
pub mod __codegen {
    pub use crate::model::{
        decode_model, encode_model, unknown_class, DecodeError, EncodeError, EnumSerialization,
        ModelEnum, ModelSet, SerializableException, SerializableModel,
    };
    pub use crate::types::{
        BigInt, Bits, Bytes, DateTime, Duration, Dynamic, EntryMap, EntrySet, SparseVector, Uri,
        Uuid,
    };
    pub use crate::wire;
    pub use crate::{impl_model_enum, impl_model_wire};
    pub use serde;
    pub use serde_json::value::RawValue;
    pub use std::collections::{HashMap, HashSet};

    /// The current time, at the microsecond precision the wire keeps (`default=now`).
    pub fn now() -> DateTime {
        let now = DateTime::from(std::time::SystemTime::now());
        chrono::DurationRound::duration_trunc(now, chrono::TimeDelta::microseconds(1))
            .unwrap_or(now)
    }

    /// A `DateTime` default written in YAML, as microseconds since the epoch.
    pub fn datetime_from_micros(micros: i64) -> DateTime {
        DateTime::from_timestamp_micros(micros).unwrap_or_default()
    }

    /// A `Uri` default written in YAML; the code generator checked that it parses.
    pub fn uri_literal(text: &str) -> Uri {
        // Cannot fail: streampod-codegen parsed the same text with the same parser.
        Uri::parse(text).unwrap_or_else(|e| panic!("Uri default does not parse: {e}"))
    }

    /// A `BigInt` default written in YAML; the code generator checked that it parses.
    pub fn bigint_literal(text: &str) -> BigInt {
        // Cannot fail: streampod-codegen parsed the same text with the same parser.
        text.parse()
            .unwrap_or_else(|e| panic!("BigInt default '{text}' does not parse: {e}"))
    }
}

/// Implements `WireValue` for a generated model through its serde derive.
#[doc(hidden)]
#[macro_export]
macro_rules! impl_model_wire {
    ($ty:ty, $class_name:expr) => {
        impl $crate::wire::WireValue for $ty {
            fn model_type() -> ::std::string::String {
                ::std::string::String::from($class_name)
            }
            fn encode<S: $crate::__codegen::serde::Serializer>(
                &self,
                serializer: S,
            ) -> ::core::result::Result<S::Ok, S::Error> {
                $crate::__codegen::serde::Serialize::serialize(self, serializer)
            }
            fn decode<'de, D: $crate::__codegen::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> ::core::result::Result<Self, D::Error> {
                <Self as $crate::__codegen::serde::Deserialize<'de>>::deserialize(deserializer)
            }
        }
    };
}

/// Implements serde and `WireValue`/`WireKey` for a generated enum through its `ModelEnum` impl.
#[doc(hidden)]
#[macro_export]
macro_rules! impl_model_enum {
    ($ty:ty) => {
        impl $crate::__codegen::serde::Serialize for $ty {
            fn serialize<S: $crate::__codegen::serde::Serializer>(
                &self,
                serializer: S,
            ) -> ::core::result::Result<S::Ok, S::Error> {
                $crate::wire::serialize_enum(self, serializer)
            }
        }
        impl<'de> $crate::__codegen::serde::Deserialize<'de> for $ty {
            fn deserialize<D: $crate::__codegen::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> ::core::result::Result<Self, D::Error> {
                $crate::wire::deserialize_enum(deserializer)
            }
        }
        impl $crate::wire::WireValue for $ty {
            fn model_type() -> ::std::string::String {
                ::std::string::String::from(<$ty as $crate::ModelEnum>::ENUM_NAME)
            }
            fn encode<S: $crate::__codegen::serde::Serializer>(
                &self,
                serializer: S,
            ) -> ::core::result::Result<S::Ok, S::Error> {
                $crate::wire::serialize_enum(self, serializer)
            }
            fn decode<'de, D: $crate::__codegen::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> ::core::result::Result<Self, D::Error> {
                $crate::wire::deserialize_enum(deserializer)
            }
        }
        impl $crate::wire::WireKey for $ty {}
    };
}
