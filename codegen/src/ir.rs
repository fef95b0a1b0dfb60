//! The validated model set the generator emits from. Front-end agnostic: nothing here
//! knows about YAML, so other emitters (TypeScript, docs) can reuse it.

use std::path::PathBuf;

use crate::defaults::DefaultValue;

/// Every model and enum of one generator run, in file order.
#[derive(Debug, Clone, Default)]
pub(crate) struct ModelSet {
    pub(crate) models: Vec<Model>,
    pub(crate) enums: Vec<Enum>,
    /// Classes with descendants: a field of such a type holds any of them.
    pub(crate) families: Vec<Family>,
}

/// A class with descendants (`extends:`), as a field type: one of its members, told
/// apart on the wire by `__className__`.
#[derive(Debug, Clone)]
pub(crate) struct Family {
    /// The parent's name.
    pub(crate) name: String,
    /// `sealed: true`: the parent has no instances of its own; the Rust enum takes its
    /// name. Otherwise the parent is a struct and the enum is `Any{name}`.
    pub(crate) sealed: bool,
    /// Every class a value can be: the parent unless sealed, then each concrete
    /// descendant, in file order.
    pub(crate) members: Vec<String>,
    pub(crate) docs: Vec<String>,
    pub(crate) file: PathBuf,
}

impl Family {
    /// The Rust type a field of the parent's type gets.
    pub(crate) fn rust_name(&self) -> String {
        if self.sealed {
            self.name.clone()
        } else {
            format!("Any{}", self.name)
        }
    }
}

/// A `class:` or `exception:`.
#[derive(Debug, Clone)]
pub(crate) struct Model {
    pub(crate) name: String,
    pub(crate) kind: ModelKind,
    pub(crate) docs: Vec<String>,
    pub(crate) fields: Vec<Field>,
    /// `serverOnly: true`: generated, but not part of the wire `Protocol`.
    pub(crate) server_only: bool,
    pub(crate) file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ModelKind {
    Class,
    Exception,
}

#[derive(Debug, Clone)]
pub(crate) struct Field {
    /// The name in YAML (`senderName`).
    pub(crate) name: String,
    /// The Rust field name (`sender_name`, `r#type`, `self_`).
    pub(crate) rust_name: String,
    /// The JSON key: the YAML name or `jsonKey=`.
    pub(crate) json_key: String,
    /// The type with nullability as `Type::Option` at the top and inside containers.
    pub(crate) ty: Type,
    pub(crate) default: Option<DefaultValue>,
    pub(crate) scope: Scope,
    pub(crate) docs: Vec<String>,
    /// The model type is boxed because the field closes a cycle of direct references.
    pub(crate) boxed: bool,
}

impl Field {
    pub(crate) fn nullable(&self) -> bool {
        matches!(self.ty, Type::Option(_))
    }
}

/// Who sees a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Sent over the wire.
    All,
    /// Kept on the server; never encoded (`scope=serverOnly`).
    ServerOnly,
    /// Never encoded at all (`scope=none`).
    None,
}

/// A resolved field type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Type {
    Scalar(Scalar),
    Model(String),
    /// A class with descendants, or a sealed class: any member of its [`Family`].
    Family(String),
    Enum(String),
    List(Box<Type>),
    Set(Box<Type>),
    Map(Box<Type>, Box<Type>),
    Option(Box<Type>),
    /// A Dart record: a Rust tuple, or a generated struct when it has named fields.
    Record(Box<Record>),
    /// A type another crate generated (a module's or shared package's): its full Rust
    /// path, and whether it is an enum (so it can key a `HashMap`).
    External {
        path: String,
        is_enum: bool,
    },
}

/// A record type, `(int, String name, {DateTime? at})`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    /// Positional fields, with the Rust field name a struct gives them (the YAML name or
    /// `p1`, `p2`, … like Dart's `$1`).
    pub(crate) positional: Vec<(String, Type)>,
    /// Named fields: (JSON name, Rust name, type).
    pub(crate) named: Vec<(String, String, Type)>,
    /// The generated struct for a record with named fields, with where it is used
    /// (`Types.aRecord`) for its docs; `None` for a tuple.
    pub(crate) struct_name: Option<(String, String)>,
}

impl Type {
    /// Whether the Rust type is `Hash + Eq`, so it can key a `HashMap` or fill a
    /// `HashSet`; other keys and elements get `EntryMap`/`EntrySet`.
    pub(crate) fn hashable(&self) -> bool {
        match self {
            Type::Scalar(scalar) => scalar.is_key(),
            Type::Enum(_) => true,
            Type::External { is_enum, .. } => *is_enum,
            Type::Model(_)
            | Type::Family(_)
            | Type::List(_)
            | Type::Set(_)
            | Type::Map(..)
            | Type::Option(_)
            | Type::Record(_) => false,
        }
    }

    /// The type under one level of `Option`.
    pub(crate) fn non_null(&self) -> &Type {
        match self {
            Type::Option(inner) => inner,
            other => other,
        }
    }
}

/// Serverpod's scalar types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scalar {
    Bool,
    Int,
    Double,
    String,
    DateTime,
    Duration,
    Uuid,
    Uri,
    BigInt,
    ByteData,
    /// pgvector's `Vector(n)`; the dimensions are the database's to check.
    Vector,
    HalfVector,
    SparseVector,
    Bit,
    /// `dynamic`: any value with its class name; always nullable.
    Dynamic,
}

impl Scalar {
    /// Every scalar with its YAML name.
    pub(crate) const ALL: [(&'static str, Scalar); 10] = [
        ("bool", Scalar::Bool),
        ("int", Scalar::Int),
        ("double", Scalar::Double),
        ("String", Scalar::String),
        ("DateTime", Scalar::DateTime),
        ("Duration", Scalar::Duration),
        ("UuidValue", Scalar::Uuid),
        ("Uri", Scalar::Uri),
        ("BigInt", Scalar::BigInt),
        ("ByteData", Scalar::ByteData),
    ];

    pub(crate) fn from_name(name: &str) -> Option<Scalar> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
    }

    /// Whether the scalar has total equality and a hash, so it can key a Map or fill a Set.
    pub(crate) fn is_key(self) -> bool {
        !matches!(
            self,
            Scalar::Double
                | Scalar::Vector
                | Scalar::HalfVector
                | Scalar::SparseVector
                | Scalar::Dynamic
        )
    }

    /// A pgvector type by its YAML name.
    pub(crate) fn vector(name: &str) -> Option<Scalar> {
        match name {
            "Vector" => Some(Scalar::Vector),
            "HalfVector" => Some(Scalar::HalfVector),
            "SparseVector" => Some(Scalar::SparseVector),
            "Bit" => Some(Scalar::Bit),
            _ => None,
        }
    }
}

/// An `enum:`.
#[derive(Debug, Clone)]
pub(crate) struct Enum {
    pub(crate) name: String,
    pub(crate) docs: Vec<String>,
    pub(crate) values: Vec<EnumValue>,
    pub(crate) by_index: bool,
    /// Index of the `default:` value unknown names decode to.
    pub(crate) fallback: Option<usize>,
    /// `properties:` of an enhanced enum: constants per value, not sent on the wire.
    pub(crate) properties: Vec<EnumProperty>,
    pub(crate) file: PathBuf,
}

#[derive(Debug, Clone)]
pub(crate) struct EnumValue {
    /// The wire name (`inProgress`).
    pub(crate) name: String,
    /// The Rust variant (`InProgress`).
    pub(crate) variant: String,
    pub(crate) docs: Vec<String>,
    /// The value of each of the enum's properties, in their order; `None` is null.
    pub(crate) properties: Vec<Option<DefaultValue>>,
}

/// One `properties:` entry of an enhanced enum: an accessor method per property.
#[derive(Debug, Clone)]
pub(crate) struct EnumProperty {
    pub(crate) name: String,
    pub(crate) rust_name: String,
    /// A scalar, `Option` when nullable.
    pub(crate) ty: Type,
    pub(crate) default: Option<DefaultValue>,
    pub(crate) docs: Vec<String>,
}
