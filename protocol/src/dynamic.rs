//! `Dynamic`: the value of a `dynamic` field, as Serverpod sends it.

use crate::model::{DecodeError, EncodeError, ModelSet, SerializableModel};

/// A value of a `dynamic` model field: Serverpod's `{"className": …, "data": …}`, kept
/// as it came. `className` is a model's class name, or a Dart type (`int`, `String`,
/// `DateTime`, `List`, `Map`, `Set`, …) whose `data` holds values wrapped the same way.
/// Read it as a model with [`Dynamic::decode`] or through a protocol with
/// [`Dynamic::decode_in`]; a `dynamic` field is `Option<Dynamic>`, `None` being null.
///
/// ```
/// use streampod_protocol::types::Dynamic;
///
/// let value = Dynamic::new("int", serde_json::json!(42));
/// assert_eq!(value.class_name(), "int");
/// assert_eq!(value.data(), &serde_json::json!(42));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Dynamic {
    class_name: String,
    data: serde_json::Value,
}

impl Dynamic {
    /// A value of class `class_name` with its JSON `data`.
    pub fn new(class_name: impl Into<String>, data: serde_json::Value) -> Self {
        Self {
            class_name: class_name.into(),
            data,
        }
    }

    /// A model, wrapped with its class name.
    ///
    /// # Errors
    ///
    /// [`EncodeError`] when the model does not encode (a non-finite `f64`).
    pub fn from_model<M: SerializableModel>(model: &M) -> Result<Self, EncodeError> {
        let data = serde_json::to_value(model).map_err(EncodeError::from)?;
        Ok(Self::new(M::CLASS_NAME, data))
    }

    /// The class name sent.
    pub fn class_name(&self) -> &str {
        &self.class_name
    }

    /// The data sent.
    pub fn data(&self) -> &serde_json::Value {
        &self.data
    }

    /// The value as the model `M`.
    ///
    /// # Errors
    ///
    /// [`DecodeError::UnknownClass`] when the class name is not `M`'s, or
    /// [`DecodeError::InvalidData`] when the data does not fit.
    pub fn decode<M: SerializableModel>(&self) -> Result<M, DecodeError> {
        if self.class_name != M::CLASS_NAME {
            return Err(DecodeError::UnknownClass {
                class_name: self.class_name.clone(),
                known: const { &[M::CLASS_NAME] },
            });
        }
        serde_json::from_value(self.data.clone()).map_err(|source| DecodeError::InvalidData {
            class_name: M::CLASS_NAME,
            source,
        })
    }

    /// The value as whichever model of the protocol `P` its class name names.
    ///
    /// # Errors
    ///
    /// As [`ModelSet::decode`].
    pub fn decode_in<P: ModelSet>(&self) -> Result<P, DecodeError> {
        let text =
            serde_json::to_string(&self.data).map_err(|source| DecodeError::InvalidData {
                class_name: "dynamic",
                source,
            })?;
        let raw = serde_json::value::RawValue::from_string(text).map_err(|source| {
            DecodeError::InvalidData {
                class_name: "dynamic",
                source,
            }
        })?;
        P::decode(&self.class_name, &raw)
    }
}
