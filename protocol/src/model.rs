//! The traits every generated model, enum and model set implements.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;

/// A model class or exception generated from a `class:` or `exception:` YAML file.
///
/// Its serde form is Serverpod's JSON: camelCase keys, null fields omitted and a
/// `"__className__"` entry naming the class.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a streampod model",
    note = "models are generated from `models/*.yaml` by `streampod_codegen::compile` in build.rs"
)]
pub trait SerializableModel: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The class name on the wire (`"ChatMessage"`).
    const CLASS_NAME: &'static str;
}

/// A model class generated from an `exception:` YAML file: it can be returned as an
/// error from an endpoint method and decoded back into its type by clients.
pub trait SerializableException: SerializableModel + std::error::Error {}

/// The generated `Protocol` enum: one variant per model class, so a frame's `className`
/// can be decoded into a typed value.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a streampod model set",
    note = "the `Protocol` enum generated from your models implements `ModelSet`; include it with `streampod::include_models!()`"
)]
pub trait ModelSet: Sized + Send + Sync + 'static {
    /// The class name of this value's variant.
    fn class_name(&self) -> &'static str;

    /// Decodes `data` (the JSON object of a model) as the class named `class_name`.
    ///
    /// # Errors
    ///
    /// [`DecodeError::UnknownClass`] when no model has that class name and
    /// [`DecodeError::InvalidData`] when `data` is not a valid value of that class.
    fn decode(class_name: &str, data: &RawValue) -> Result<Self, DecodeError>;

    /// Appends this value's model JSON (the `data` part of a frame) to `out`.
    ///
    /// # Errors
    ///
    /// Only when a value cannot be represented in JSON (see [`EncodeError`]).
    fn encode_data(&self, out: &mut Vec<u8>) -> Result<(), EncodeError>;

    /// Every class name in this set, in declaration order.
    fn class_names() -> &'static [&'static str];

    /// The model this value holds, to be downcast to its type (a typed channel stream
    /// takes the values of one model type out of a channel's posts this way).
    fn model(&self) -> &(dyn std::any::Any + Send + Sync);
}

/// How a generated enum is written on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnumSerialization {
    /// By the value's name, `"hearts"` (Serverpod's default).
    ByName,
    /// By the value's zero-based index, `0`.
    ByIndex,
}

/// A generated enum (`enum:` YAML file).
pub trait ModelEnum: Copy + Eq + Send + Sync + 'static {
    /// The enum's name as written in YAML (`"Suit"`).
    const ENUM_NAME: &'static str;
    /// Every value, in declaration order (the order `byIndex` uses).
    const VALUES: &'static [Self];
    /// The wire name of every value, in the order of [`ModelEnum::VALUES`].
    const NAMES: &'static [&'static str];
    /// Name or index encoding.
    const SERIALIZATION: EnumSerialization;
    /// The value an unknown name or index decodes to (YAML `default:`); `None` rejects it.
    const FALLBACK: Option<Self>;

    /// This value's zero-based index.
    fn index(self) -> usize;

    /// This value's wire name.
    fn name(self) -> &'static str {
        Self::NAMES.get(self.index()).copied().unwrap_or_default()
    }
}

/// A model could not be decoded from a frame. Not fatal for a connection: the server
/// answers with an error frame and keeps reading.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// No model of this protocol has the class name.
    #[error(
        "unknown className '{class_name}'; known classes: {}",
        KnownClasses(known)
    )]
    UnknownClass {
        /// The class name the peer sent.
        class_name: String,
        /// Every class name the protocol knows.
        known: &'static [&'static str],
    },
    /// The data does not match the class's fields.
    #[error("invalid data for '{class_name}': {source}")]
    InvalidData {
        /// The class the data was decoded as.
        class_name: &'static str,
        /// What serde reported, with the JSON line and column.
        #[source]
        source: serde_json::Error,
    },
}

/// Lists at most a handful of class names for an error message.
struct KnownClasses(&'static [&'static str]);

impl fmt::Display for KnownClasses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 12;
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, name) in self.0.iter().take(SHOWN).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(name)?;
        }
        if self.0.len() > SHOWN {
            write!(f, " and {} more", self.0.len() - SHOWN)?;
        }
        Ok(())
    }
}

/// A value could not be written as JSON. This is a bug in the value (a map whose keys
/// serde_json rejects, a custom serializer that fails), never a peer's doing.
#[derive(Debug, thiserror::Error)]
#[error("could not encode model JSON: {0}")]
pub struct EncodeError(#[from] serde_json::Error);

/// Decodes `data` as the model `T`; the generated `ModelSet::decode` calls this per class.
///
/// # Errors
///
/// [`DecodeError::InvalidData`] when `data` does not match `T`.
pub fn decode_model<T: SerializableModel>(data: &RawValue) -> Result<T, DecodeError> {
    serde_json::from_str(data.get()).map_err(|source| DecodeError::InvalidData {
        class_name: T::CLASS_NAME,
        source,
    })
}

/// Appends the model JSON of `value` to `out`; the generated `ModelSet::encode_data` calls this.
///
/// # Errors
///
/// See [`EncodeError`].
pub fn encode_model<T: SerializableModel>(value: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    serde_json::to_writer(out, value).map_err(EncodeError)
}

/// The error for a class name no model has.
pub fn unknown_class<P: ModelSet>(class_name: &str) -> DecodeError {
    DecodeError::UnknownClass {
        class_name: class_name.to_owned(),
        known: P::class_names(),
    }
}
