//! Serverpod's JSON encoding of field values.
//!
//! Generated models keep `#[derive(Serialize, Deserialize)]` and mark every field with
//! `#[serde(with = "…::wire::field")]`, so one recursive trait, [`WireValue`], decides
//! how each value kind and each container nesting of it is written:
//!
//! | YAML type | Rust type | JSON | also decoded from |
//! |---|---|---|---|
//! | `bool` | `bool` | `true` | `0`, `1` |
//! | `int` | `i64` | number | |
//! | `double` | `f64` | number | |
//! | `String` | `String` | string | |
//! | `DateTime` | [`DateTime`] | `"2026-01-01T12:00:00.000Z"` | other ISO-8601 forms, integer ms |
//! | `Duration` | [`Duration`] | integer milliseconds | |
//! | `UuidValue` | [`Uuid`] | `"a0b1…"` | |
//! | `Uri` | [`Uri`] | `"https://…"`, `"/relative?x=1"`: the text as it came | |
//! | `BigInt` | [`BigInt`] | `"123"` | integer |
//! | `ByteData` | [`Bytes`] | `"decode('AQI=', 'base64')"` | bare base64 |
//! | `List<T>` | `Vec<T>` | array | |
//! | `Set<T>` | `HashSet<T>`; [`EntrySet<T>`] for elements Rust cannot hash (at most 4,096 decoded) | array | |
//! | `Map<String,V>` | `HashMap<String,V>` | object | |
//! | `Map<K,V>` | `HashMap<K,V>`; [`EntryMap<K,V>`] for keys Rust cannot hash (at most 4,096 entries decoded) | `[{"k":…,"v":…}]` | |
//! | `Vector(n)`, `HalfVector(n)` | `Vec<f64>` | array of numbers | |
//! | `SparseVector(n)` | [`SparseVector`] | `"{1:1.0,3:2.5}/5"` | dense array |
//! | `Bit(n)` | [`Bits`] | `"1010"` | array of bools or 0/1 |
//! | `dynamic` | `Option<`[`Dynamic`]`>` | `{"className":…,"data":…}` or null | |
//! | enum | generated | name or index | fallback value |
//! | model | generated | object | |

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;

use base64::Engine as _;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

use crate::model::{EnumSerialization, ModelEnum};
use crate::types::{
    BigInt, Bits, Bytes, DateTime, Duration, Dynamic, EntryMap, EntrySet, SparseVector, Uri, Uuid,
};

/// A value with a Serverpod JSON form. Implemented for every type a YAML field can have.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no Serverpod JSON form",
    label = "not a model, enum or Serverpod value type",
    note = "use bool, i64, f64, String, DateTime, Duration, Uuid, Uri, BigInt, Bytes, a generated model or enum, or Option/Vec/HashSet/HashMap/EntrySet/EntryMap of them"
)]
pub trait WireValue: Sized {
    /// Writes the value in Serverpod's JSON form.
    ///
    /// # Errors
    ///
    /// Whatever the serializer reports.
    fn encode<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error>;

    /// Reads the value from its Serverpod JSON form (and the lenient forms listed above).
    ///
    /// # Errors
    ///
    /// A serde error naming the expected form.
    fn decode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error>;

    /// The value a missing field or argument stands for: `None` for `Option`, nothing
    /// (the value is required) for everything else.
    fn when_absent() -> Option<Self> {
        None
    }

    /// The type in Serverpod's model-file syntax (`List<ChatMessage>?`, `Map<int,String>`,
    /// `void` for `()`): what a method schema says the value is, so a client generator
    /// (the TypeScript one) types it; see `MethodSchema` in the `schema` module.
    fn model_type() -> String;
}

/// A value that can key a `Map` or be an element of a `Set`.
pub trait WireKey: WireValue + Eq + Hash {
    /// `true` when maps with this key are JSON objects (only `String`); other keys make
    /// the map an array of `{"k": key, "v": value}` entries, as Serverpod does.
    const OBJECT_KEY: bool = false;
}

/// Borrows a value as its Serverpod JSON form for serde.
#[derive(Debug)]
pub struct Wire<'a, T>(pub &'a T);

impl<T: WireValue> Serialize for Wire<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.encode(serializer)
    }
}

/// Decodes a value from its Serverpod JSON form through serde.
#[derive(Debug)]
pub struct FromWire<T>(pub T);

impl<'de, T: WireValue> Deserialize<'de> for FromWire<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::decode(deserializer).map(FromWire)
    }
}

/// The `#[serde(with = …)]` module generated fields use.
pub mod field {
    use super::WireValue;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes a field in its Serverpod JSON form.
    ///
    /// # Errors
    ///
    /// Whatever the serializer reports.
    pub fn serialize<T: WireValue, S: Serializer>(
        value: &T,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        value.encode(serializer)
    }

    /// Deserializes a field from its Serverpod JSON form.
    ///
    /// # Errors
    ///
    /// A serde error naming the expected form.
    pub fn deserialize<'de, T: WireValue, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<T, D::Error> {
        T::decode(deserializer)
    }

    /// Deserializes a field that has a default: an explicit `null` stands for the
    /// default, as Dart's `json['x'] ?? default` reads it (a missing field is serde's
    /// `default =`).
    ///
    /// # Errors
    ///
    /// A serde error naming the expected form.
    pub fn deserialize_or<'de, T: WireValue, D: Deserializer<'de>>(
        deserializer: D,
        default: fn() -> T,
    ) -> Result<T, D::Error> {
        let value = Option::<super::FromWire<T>>::deserialize(deserializer)?;
        Ok(value.map_or_else(default, |v| v.0))
    }
}

/// Implements [`WireValue`] (and optionally [`WireKey`]) by plain serde.
macro_rules! wire_via_serde {
    ($($ty:ty => $name:literal),* $(,)?) => {$(
        impl WireValue for $ty {
            fn model_type() -> String {
                $name.into()
            }
            fn encode<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                Serialize::serialize(self, serializer)
            }
            fn decode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                Deserialize::deserialize(deserializer)
            }
        }
    )*};
}

wire_via_serde!(i64 => "int", f64 => "double", String => "String");

impl WireKey for i64 {}
impl WireKey for String {
    const OBJECT_KEY: bool = true;
}

/// Implements [`WireValue`] for a type whose JSON form is a string.
macro_rules! wire_via_string {
    ($ty:ty, $name:literal, $expecting:literal, $to_string:expr, $from_str:expr) => {
        impl WireValue for $ty {
            fn model_type() -> String {
                $name.into()
            }
            fn encode<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let to_string: fn(&$ty) -> String = $to_string;
                serializer.serialize_str(&to_string(self))
            }
            fn decode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_any(StrVisitor::<$ty>::new($expecting, $from_str))
            }
        }
        impl WireKey for $ty {}
    };
}

/// Visits a string (and, where `from_int` allows, an integer) through a parse function.
struct StrVisitor<T> {
    expecting: &'static str,
    from_str: fn(&str) -> Result<T, String>,
    from_int: Option<fn(i128) -> Result<T, String>>,
}

impl<T> StrVisitor<T> {
    fn new(expecting: &'static str, from_str: fn(&str) -> Result<T, String>) -> Self {
        Self {
            expecting,
            from_str,
            from_int: None,
        }
    }

    fn with_int(mut self, from_int: fn(i128) -> Result<T, String>) -> Self {
        self.from_int = Some(from_int);
        self
    }

    fn int<E: de::Error>(self, value: i128, unexpected: de::Unexpected<'_>) -> Result<T, E> {
        match self.from_int {
            Some(from_int) => from_int(value).map_err(E::custom),
            None => Err(E::invalid_type(unexpected, &self)),
        }
    }
}

impl<T> Visitor<'_> for StrVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<T, E> {
        (self.from_str)(value).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<T, E> {
        self.int(value.into(), de::Unexpected::Signed(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<T, E> {
        self.int(value.into(), de::Unexpected::Unsigned(value))
    }
}

wire_via_string!(
    Uuid,
    "UuidValue",
    "a UUID string",
    |value| value.hyphenated().to_string(),
    |text| Uuid::parse_str(text).map_err(|e| format!("invalid UUID '{text}': {e}"))
);
wire_via_string!(
    Uri,
    "Uri",
    "a URI string",
    |value| value.as_str().to_owned(),
    |text| Uri::parse(text).map_err(|e| e.to_string())
);

/// The most decimal digits a `BigInt` read from the wire may have (a sign aside):
/// 10,000, about 33,000 bits, far beyond any id or amount, while parsing stays in
/// microseconds.
pub const MAX_BIGINT_DIGITS: usize = 10_000;

/// `text` cut to 64 characters for an error message.
fn cut(text: &str) -> &str {
    match text.char_indices().nth(64) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

impl WireValue for BigInt {
    fn encode<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }

    fn decode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let visitor = StrVisitor::new("a BigInt as a decimal string", |text| {
            // Decimal parsing costs the square of the length: a peer's megabyte of
            // digits would take seconds.
            let digits = text.trim_start_matches(['-', '+']).len();
            if digits > MAX_BIGINT_DIGITS {
                return Err(format!(
                    "a BigInt of {digits} digits exceeds the limit of {MAX_BIGINT_DIGITS}"
                ));
            }
            text.parse::<BigInt>()
                .map_err(|e| format!("invalid BigInt '{}': {e}", cut(text)))
        })
        .with_int(|value| Ok(BigInt::from(value)));
        deserializer.deserialize_any(visitor)
    }

    fn model_type() -> String {
        "BigInt".into()
    }
}
impl WireKey for BigInt {}

impl WireValue for DateTime {
    fn encode<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&crate::datetime::format(self))
    }

    fn decode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let visitor = StrVisitor::new(
            "a DateTime as an ISO-8601 string or integer milliseconds",
            |text| crate::datetime::parse(text).map_err(|e| e.to_string()),
        )
        .with_int(|millis| {
            i64::try_from(millis)
                .ok()
                .and_then(crate::datetime::from_millis)
                .ok_or_else(|| format!("DateTime milliseconds {millis} out of range"))
        });
        deserializer.deserialize_any(visitor)
    }

    fn model_type() -> String {
        "DateTime".into()
    }
}
impl WireKey for DateTime {}

impl WireValue for Duration {
    fn encode<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(self.num_milliseconds())
    }

    fn decode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let millis = i64::deserialize(deserializer)?;
        Duration::try_milliseconds(millis)
            .ok_or_else(|| de::Error::custom(format!("Duration of {millis} ms is out of range")))
    }

    fn model_type() -> String {
        "Duration".into()
    }
}
impl WireKey for Duration {}

/// The prefix and suffix Serverpod wraps base64 `ByteData` in.
const BYTES_PREFIX: &str = "decode('";
const BYTES_SUFFIX: &str = "', 'base64')";

impl WireValue for Bytes {
    fn encode<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let engine = base64::engine::general_purpose::STANDARD;
        let mut text =
            String::with_capacity(BYTES_PREFIX.len() + BYTES_SUFFIX.len() + self.len() * 4 / 3 + 4);
        text.push_str(BYTES_PREFIX);
        engine.encode_string(self, &mut text);
        text.push_str(BYTES_SUFFIX);
        serializer.serialize_str(&text)
    }

    fn decode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let visitor = StrVisitor::new("ByteData as \"decode('<base64>', 'base64')\"", |text| {
            let inner = text
                .strip_prefix(BYTES_PREFIX)
                .and_then(|rest| rest.strip_suffix(BYTES_SUFFIX))
                .unwrap_or(text);
            base64::engine::general_purpose::STANDARD
                .decode(inner)
                .map(Bytes::from)
                .map_err(|e| format!("invalid base64 in ByteData: {e}"))
        });
        deserializer.deserialize_str(visitor)
    }

    fn model_type() -> String {
        "ByteData".into()
    }
}
impl WireKey for Bytes {}

/// Decodes a pgvector value from its text form or from an array of `T`.
struct TextOrSeq<V, T> {
    expecting: &'static str,
    from_str: fn(&str) -> Result<V, String>,
    from_seq: fn(Vec<T>) -> V,
}

impl<'de, V, T: Deserialize<'de>> Visitor<'de> for TextOrSeq<V, T> {
    type Value = V;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<V, E> {
        (self.from_str)(value).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<V, A::Error> {
        let mut items = Vec::with_capacity(access.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = access.next_element()? {
            items.push(item);
        }
        Ok((self.from_seq)(items))
    }
}

impl WireValue for SparseVector {
    fn encode<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }

    fn decode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TextOrSeq::<Self, f64> {
            expecting: "a SparseVector as \"{index:value,...}/dimensions\" or an array of numbers",
            from_str: |text| {
                text.parse()
                    .map_err(|e: crate::InvalidVector| e.to_string())
            },
            from_seq: |dense| SparseVector::from_dense(&dense),
        })
    }

    fn model_type() -> String {
        "SparseVector".into()
    }
}

impl WireValue for Bits {
    fn encode<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }

    fn decode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TextOrSeq::<Self, FromWire<bool>> {
            expecting: "a Bit string like \"1010\" or an array of booleans",
            from_str: |text| {
                text.parse()
                    .map_err(|e: crate::InvalidVector| e.to_string())
            },
            from_seq: |bits| Bits(bits.into_iter().map(|b| b.0).collect()),
        })
    }

    fn model_type() -> String {
        "Bit".into()
    }
}
impl WireKey for Bits {}

impl WireValue for Dynamic {
    fn encode<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("className", self.class_name())?;
        map.serialize_entry("data", self.data())?;
        map.end()
    }

    fn decode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Wrapped {
            class_name: String,
            #[serde(default)]
            data: serde_json::Value,
        }
        let wrapped = Wrapped::deserialize(deserializer).map_err(|e| {
            de::Error::custom(format_args!(
                "a dynamic value is {{\"className\": …, \"data\": …}}: {e}"
            ))
        })?;
        Ok(Dynamic::new(wrapped.class_name, wrapped.data))
    }

    fn model_type() -> String {
        "dynamic".into()
    }
}

impl WireValue for bool {
    fn encode<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bool(*self)
    }

    fn decode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BoolVisitor;
        impl Visitor<'_> for BoolVisitor {
            type Value = bool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a bool (or 0/1)")
            }
            fn visit_bool<E: de::Error>(self, value: bool) -> Result<bool, E> {
                Ok(value)
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<bool, E> {
                match value {
                    0 => Ok(false),
                    1 => Ok(true),
                    _ => Err(E::invalid_value(de::Unexpected::Unsigned(value), &self)),
                }
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<bool, E> {
                match u64::try_from(value) {
                    Ok(value) => self.visit_u64(value),
                    Err(_) => Err(E::invalid_value(de::Unexpected::Signed(value), &self)),
                }
            }
        }
        deserializer.deserialize_any(BoolVisitor)
    }

    fn model_type() -> String {
        "bool".into()
    }
}
impl WireKey for bool {}

impl<T: WireValue> WireValue for Option<T> {
    fn encode<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Some(value) => serializer.serialize_some(&Wire(value)),
            None => serializer.serialize_none(),
        }
    }

    fn decode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Option::<FromWire<T>>::deserialize(deserializer)?.map(|v| v.0))
    }

    fn when_absent() -> Option<Self> {
        Some(None)
    }

    fn model_type() -> String {
        format!("{}?", T::model_type())
    }
}

/// `()`: JSON `null`, for methods that return nothing.
impl WireValue for () {
    fn encode<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_unit()
    }

    fn decode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <()>::deserialize(deserializer)
    }

    fn when_absent() -> Option<Self> {
        Some(())
    }

    fn model_type() -> String {
        "void".into()
    }
}

impl<T: WireValue> WireValue for Box<T> {
    fn encode<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).encode(serializer)
    }

    fn decode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::decode(deserializer).map(Box::new)
    }

    fn model_type() -> String {
        T::model_type()
    }
}

impl<T: WireValue> WireValue for Vec<T> {
    fn encode<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter().map(Wire))
    }

    fn decode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let items = Vec::<FromWire<T>>::deserialize(deserializer)?;
        Ok(items.into_iter().map(|v| v.0).collect())
    }

    fn model_type() -> String {
        format!("List<{}>", T::model_type())
    }
}

impl<T: WireKey> WireValue for HashSet<T> {
    fn encode<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for item in self {
            seq.serialize_element(&Wire(item))?;
        }
        seq.end()
    }

    fn decode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let items = Vec::<FromWire<T>>::deserialize(deserializer)?;
        Ok(items.into_iter().map(|v| v.0).collect())
    }

    fn model_type() -> String {
        format!("Set<{}>", T::model_type())
    }
}

impl<K: WireKey, V: WireValue> WireValue for HashMap<K, V> {
    fn encode<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if K::OBJECT_KEY {
            let mut map = serializer.serialize_map(Some(self.len()))?;
            for (key, value) in self {
                map.serialize_entry(&Wire(key), &Wire(value))?;
            }
            map.end()
        } else {
            serializer.collect_seq(self.iter().map(|(key, value)| Entry { key, value }))
        }
    }

    fn decode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(MapVisitor(PhantomData))
    }

    fn model_type() -> String {
        format!("Map<{},{}>", K::model_type(), V::model_type())
    }
}

impl<T: WireValue + PartialEq> WireValue for EntrySet<T> {
    fn encode<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter().map(Wire))
    }

    fn decode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let items = Vec::<FromWire<T>>::deserialize(deserializer)?;
        check_entry_count::<D::Error>(items.len(), "an EntrySet")?;
        Ok(items.into_iter().map(|v| v.0).collect())
    }

    fn model_type() -> String {
        format!("Set<{}>", T::model_type())
    }
}

/// Refuses more than [`MAX_DECODED_ENTRIES`](crate::types::MAX_DECODED_ENTRIES) entries:
/// collecting them compares each with all before it, so a peer's long list would cost
/// quadratic time.
fn check_entry_count<E: de::Error>(count: usize, what: &str) -> Result<(), E> {
    let limit = crate::types::MAX_DECODED_ENTRIES;
    if count > limit {
        return Err(E::custom(format_args!(
            "{what} decodes at most {limit} entries, got {count} (its keys cannot be hashed, so each is compared with all others); use a key type Rust can hash, or a List"
        )));
    }
    Ok(())
}

impl<K: WireValue + PartialEq, V: WireValue> WireValue for EntryMap<K, V> {
    fn encode<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter().map(|(key, value)| Entry { key, value }))
    }

    fn decode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = Vec::<OwnedEntry<K, V>>::deserialize(deserializer)?;
        check_entry_count::<D::Error>(entries.len(), "an EntryMap")?;
        Ok(entries.into_iter().map(|e| (e.k.0, e.v.0)).collect())
    }

    fn model_type() -> String {
        format!("Map<{},{}>", K::model_type(), V::model_type())
    }
}

/// One `{"k": key, "v": value}` entry of a map whose keys are not strings.
struct Entry<'a, K, V> {
    key: &'a K,
    value: &'a V,
}

impl<K: WireValue, V: WireValue> Serialize for Entry<'_, K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut entry = serializer.serialize_struct("MapEntry", 2)?;
        entry.serialize_field("k", &Wire(self.key))?;
        entry.serialize_field("v", &Wire(self.value))?;
        entry.end()
    }
}

/// Decodes one `{"k": key, "v": value}` entry.
#[derive(Deserialize)]
#[serde(bound = "K: WireValue, V: WireValue")]
struct OwnedEntry<K, V> {
    k: FromWire<K>,
    v: FromWire<V>,
}

/// Decodes a map from an object (string keys) or an array of `{"k","v"}` entries.
struct MapVisitor<K, V>(PhantomData<fn() -> (K, V)>);

impl<'de, K: WireKey, V: WireValue> Visitor<'de> for MapVisitor<K, V> {
    type Value = HashMap<K, V>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if K::OBJECT_KEY {
            f.write_str("a JSON object")
        } else {
            f.write_str("an array of {\"k\": key, \"v\": value} entries")
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        if !K::OBJECT_KEY {
            return Err(de::Error::invalid_type(de::Unexpected::Map, &self));
        }
        let mut map = HashMap::with_capacity(access.size_hint().unwrap_or(0).min(1024));
        while let Some((FromWire(key), FromWire(value))) =
            access.next_entry::<FromWire<K>, FromWire<V>>()?
        {
            map.insert(key, value);
        }
        Ok(map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        if K::OBJECT_KEY {
            return Err(de::Error::invalid_type(de::Unexpected::Seq, &self));
        }
        let mut map = HashMap::with_capacity(access.size_hint().unwrap_or(0).min(1024));
        while let Some(entry) = access.next_element::<OwnedEntry<K, V>>()? {
            map.insert(entry.k.0, entry.v.0);
        }
        Ok(map)
    }
}

/// Serializes a generated enum by name or index.
///
/// # Errors
///
/// Whatever the serializer reports.
pub fn serialize_enum<E: ModelEnum, S: Serializer>(
    value: &E,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match E::SERIALIZATION {
        EnumSerialization::ByName => serializer.serialize_str(value.name()),
        EnumSerialization::ByIndex => serializer.serialize_u64(value.index() as u64),
    }
}

/// Deserializes a generated enum by name or index, falling back to its `default:` value
/// for unknown ones.
///
/// # Errors
///
/// An unknown value when the enum has no fallback, or a value of the wrong JSON type.
pub fn deserialize_enum<'de, E: ModelEnum, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<E, D::Error> {
    deserializer.deserialize_any(EnumVisitor(PhantomData))
}

/// Decodes a generated enum.
struct EnumVisitor<E>(PhantomData<E>);

impl<E: ModelEnum> EnumVisitor<E> {
    fn unknown<Err: de::Error>(unexpected: de::Unexpected<'_>) -> Result<E, Err> {
        E::FALLBACK.ok_or_else(|| {
            Err::custom(format_args!(
                "unknown {} value {unexpected}; expected one of: {}",
                E::ENUM_NAME,
                E::NAMES.join(", ")
            ))
        })
    }
}

impl<E: ModelEnum> Visitor<'_> for EnumVisitor<E> {
    type Value = E;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match E::SERIALIZATION {
            EnumSerialization::ByName => write!(f, "a {} value name", E::ENUM_NAME),
            EnumSerialization::ByIndex => write!(f, "a {} value index", E::ENUM_NAME),
        }
    }

    fn visit_str<Err: de::Error>(self, value: &str) -> Result<E, Err> {
        if E::SERIALIZATION != EnumSerialization::ByName {
            return Err(Err::invalid_type(de::Unexpected::Str(value), &self));
        }
        match E::NAMES.iter().position(|name| *name == value) {
            Some(index) => E::VALUES
                .get(index)
                .copied()
                .ok_or_else(|| Err::custom("enum tables disagree")),
            None => Self::unknown(de::Unexpected::Str(value)),
        }
    }

    fn visit_u64<Err: de::Error>(self, value: u64) -> Result<E, Err> {
        if E::SERIALIZATION != EnumSerialization::ByIndex {
            return Err(Err::invalid_type(de::Unexpected::Unsigned(value), &self));
        }
        match usize::try_from(value)
            .ok()
            .and_then(|index| E::VALUES.get(index))
        {
            Some(found) => Ok(*found),
            None => Self::unknown(de::Unexpected::Unsigned(value)),
        }
    }

    fn visit_i64<Err: de::Error>(self, value: i64) -> Result<E, Err> {
        match u64::try_from(value) {
            Ok(value) => self.visit_u64(value),
            Err(_) if E::SERIALIZATION == EnumSerialization::ByIndex => {
                Self::unknown(de::Unexpected::Signed(value))
            }
            Err(_) => Err(Err::invalid_type(de::Unexpected::Signed(value), &self)),
        }
    }
}

/// Decodes a value of a class hierarchy (a parent with `extends:` descendants): reads
/// the object, picks the member its `__className__` names (`own` when absent: the parent
/// itself, or `None` for a sealed parent) and hands the object to `decode`.
///
/// # Errors
///
/// A missing or unknown `__className__`, naming the members, or what `decode` reports.
pub fn decode_family<'de, D: Deserializer<'de>, T>(
    deserializer: D,
    family: &str,
    members: &[&str],
    own: Option<&str>,
    decode: impl FnOnce(&str, serde_json::Value) -> Result<T, serde_json::Error>,
) -> Result<T, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    let named = match value.get("__className__") {
        Some(serde_json::Value::String(name)) => Some(name.clone()),
        Some(_) => return Err(de::Error::custom("__className__ must be a string")),
        None => None,
    };
    // Serverpod names a module's class `module.Class`: the member is the class.
    let named = named.map(|name| match name.rsplit_once('.') {
        Some((_, class)) => class.to_owned(),
        None => name,
    });
    let Some(class_name) = named.or_else(|| own.map(str::to_owned)) else {
        return Err(de::Error::custom(format_args!(
            "a {family} needs \"__className__\", one of: {}",
            members.join(", ")
        )));
    };
    if !members.contains(&class_name.as_str()) {
        return Err(de::Error::custom(not_a_member(family, &class_name)));
    }
    decode(&class_name, value).map_err(de::Error::custom)
}

/// Decodes one member of a hierarchy from the object [`decode_family`] read.
///
/// # Errors
///
/// What the member's own decoding reports.
pub fn from_json_value<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
) -> Result<T, serde_json::Error> {
    serde_json::from_value(value)
}

/// The error for a `__className__` that is no member of `family`.
pub fn not_a_member(family: &str, class_name: &str) -> serde_json::Error {
    de::Error::custom(format_args!(
        "'{class_name}' is not a {family} (neither the class nor one that extends it)"
    ))
}

/// Writes a Dart record as Serverpod does: `{"p": [positional…], "n": {named…}}`, each
/// part only when the record has such fields.
///
/// # Errors
///
/// Whatever the serializer reports.
pub fn encode_record<S: Serializer, P: Serialize, N: Serialize>(
    serializer: S,
    positional: Option<P>,
    named: Option<N>,
) -> Result<S::Ok, S::Error> {
    let parts = usize::from(positional.is_some()) + usize::from(named.is_some());
    let mut map = serializer.serialize_map(Some(parts))?;
    if let Some(positional) = positional {
        map.serialize_entry("p", &positional)?;
    }
    if let Some(named) = named {
        map.serialize_entry("n", &named)?;
    }
    map.end()
}

/// Reads a Dart record's `{"p": […], "n": {…}}`: the positional part (a tuple of
/// [`FromWire`]s) when present, and the named part (a missing `"n"` reads as `{}`).
///
/// # Errors
///
/// A part of the wrong shape, naming what was expected.
pub fn decode_record<'de, D, P, N>(deserializer: D) -> Result<(Option<P>, N), D::Error>
where
    D: Deserializer<'de>,
    P: serde::de::DeserializeOwned,
    N: serde::de::DeserializeOwned,
{
    #[derive(Deserialize)]
    struct Parts {
        #[serde(default)]
        p: Option<serde_json::Value>,
        #[serde(default)]
        n: Option<serde_json::Value>,
    }
    let parts = Parts::deserialize(deserializer)?;
    let positional = parts
        .p
        .map(serde_json::from_value::<P>)
        .transpose()
        .map_err(|e| de::Error::custom(format_args!("record positional fields \"p\": {e}")))?;
    let named = parts
        .n
        .unwrap_or_else(|| serde_json::Value::Object(serde_json::Map::new()));
    let named = serde_json::from_value::<N>(named)
        .map_err(|e| de::Error::custom(format_args!("record named fields \"n\": {e}")))?;
    Ok((positional, named))
}

/// A record's type in model-file syntax from its fields' types (named ones as `Type name`):
/// `(int, String)`, `(int,)`, `(int, {String name})`.
#[doc(hidden)]
pub fn record_type(positional: &[String], named: &[String]) -> String {
    let mut parts: Vec<String> = positional.to_vec();
    if !named.is_empty() {
        parts.push(format!("{{{}}}", named.join(", ")));
    }
    match (positional.len(), named.is_empty()) {
        // Dart's one-field record keeps its comma.
        (1, true) => format!("({},)", parts.join(", ")),
        _ => format!("({})", parts.join(", ")),
    }
}

/// Records with only positional fields are Rust tuples: `(int, String)` is `(i64, String)`.
macro_rules! wire_tuple {
    ($(($($name:ident . $index:tt),+)),+ $(,)?) => {$(
        // Kept out of "the following types implement WireValue" hints: eight tuples
        // would crowd out the value types a user is looking for.
        #[diagnostic::do_not_recommend]
        impl<$($name: WireValue),+> WireValue for ($($name,)+) {
            fn model_type() -> String {
                record_type(&[$($name::model_type()),+], &[])
            }

            fn encode<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                encode_record(serializer, Some(($(Wire(&self.$index),)+)), None::<()>)
            }

            fn decode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let (positional, _) =
                    decode_record::<D, ($(FromWire<$name>,)+), de::IgnoredAny>(deserializer)?;
                let positional =
                    positional.ok_or_else(|| de::Error::missing_field("p"))?;
                Ok(($(positional.$index.0,)+))
            }
        }
    )+};
}

wire_tuple!(
    (A.0),
    (A.0, B.1),
    (A.0, B.1, C.2),
    (A.0, B.1, C.2, E.3),
    (A.0, B.1, C.2, E.3, F.4),
    (A.0, B.1, C.2, E.3, F.4, G.5),
    (A.0, B.1, C.2, E.3, F.4, G.5, H.6),
    (A.0, B.1, C.2, E.3, F.4, G.5, H.6, I.7),
);
