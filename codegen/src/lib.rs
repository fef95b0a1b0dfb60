//! Generates Rust model types from Serverpod-style YAML model files, from a build script.
//!
//! ```yaml
//! # models/chat_message.yaml
//! ### A message in a chat room.
//! class: ChatMessage
//! fields:
//!   senderName: String
//!   content: String
//!   timestamp: DateTime?
//!   channelId: String
//! ```
//!
//! ```no_run
//! // build.rs
//! streampod_codegen::compile_or_exit("models");
//! ```
//!
//! ```text
//! // src/main.rs
//! streampod::include_models!();
//! // or: include!(concat!(env!("OUT_DIR"), "/protocol.rs"));
//! ```
//!
//! Each `class:`/`exception:` becomes a serde struct implementing `SerializableModel`,
//! each `enum:` a Rust enum, and one `Protocol` enum collects every class that can travel
//! in a frame. Errors point into the YAML like rustc does:
//!
//! ```text
//! models/chat_message.yaml:4:15: unknown type 'Strin' (did you mean 'String'?)
//!   |
//! 4 |   senderName: Strin
//!   |               ^^^^^
//! ```
//!
//! # The model grammar
//!
//! | YAML | Rust |
//! |---|---|
//! | `class: Name`, `exception: Name` | `pub struct Name` (exceptions also implement `std::error::Error`) |
//! | `enum: Name`, `values:`, `serialized: byName\|byIndex`, `default: value` | `pub enum Name`; unknown values decode to `default` |
//! | enum `properties:`, values `- one:` with their properties | an accessor per property (`Planet::Earth.moons()`); the wire still sends the name or index |
//! | `extends: Parent` | the parent's fields (and its parent's…) flattened in first; `tail` fields last |
//! | `sealed: true` | no struct of its own: `pub enum Parent` of every concrete descendant |
//! | a field typed as a class with descendants | `Any{Parent}` (the parent or any descendant), decoded by `__className__` |
//! | `fields:` `name: Type, options` | `pub name: Type` (camelCase names become snake_case) |
//! | `bool int double String` | `bool i64 f64 String` |
//! | `DateTime Duration UuidValue Uri BigInt ByteData` | `DateTime<Utc>`, `TimeDelta`, `Uuid`, [`Uri`](streampod_protocol::types::Uri) (keeps its text), `BigInt`, `Bytes` |
//! | `List<T> Set<T> Map<K,V>`, nested to any depth | `Vec<T>`, `HashSet<T>`, `HashMap<K,V>`; `EntrySet`/`EntryMap` for elements and keys Rust cannot hash (models, collections, `double`, nullable; at most 4,096 entries decoded, as lookups are linear) |
//! | `(int, String name)`, `(int, {String? note})` (records) | a tuple, or `{Model}{Field}Record` with named fields; JSON `{"p":[…],"n":{…}}` |
//! | `dynamic` | `Option<Dynamic>`: `{"className":…,"data":…}` |
//! | `Vector(n) HalfVector(n) SparseVector(n) Bit(n)` (pgvector) | `Vec<f64>`, `Vec<f64>`, `SparseVector`, `Bits` |
//! | `module:nickname:Type`, `package:Type` | another crate's type: see [`Builder::module`] and [`Builder::shared`] |
//! | `Type?` | `Option<Type>`; omitted from JSON when `None` |
//! | `default=…`, `defaultModel=…` | used when the field is missing from JSON or `null`; `defaultModel` wins over `default` |
//! | `scope=serverOnly`, `scope=none` | never encoded (`#[serde(skip)]`); must be nullable |
//! | `jsonKey=key` | the JSON key |
//! | `required` | accepted (nullable fields only); no effect in Rust |
//! | `serverOnly: true` | generated, but not in `Protocol` |
//! | `immutable: true` | accepted; Rust values are immutable unless bound `mut` |
//! | `### doc` above a model, field or enum value | `///` doc comments |
//! | `table`, `indexes`, `relation`, `persist`, `unique`, `serializationDataType`, … | ignored with a warning (no database) |
//!
//! Field names that are Rust keywords become raw identifiers (`type` → `r#type`), and
//! the few that cannot be raw get a `_` suffix (`self` → `self_`, `super` → `super_`);
//! the JSON key stays the YAML name.
//!
//! Rejected with an error: PostGIS types (`GeographyPoint`, …: they need Serverpod's
//! database layer), custom Dart classes (`extraClasses`), unknown keys, options and
//! types (with the name meant: `integer` → `int`), duplicate fields and names, and
//! cycles of non-nullable model fields. Nullable cycles are boxed automatically. A tab
//! in the indentation or keys that do not line up are named as such.
//!
//! # Serverpod's own models
//!
//! Over Serverpod's test-server models (4.0.0-beta.4, commit `79cf56001d`), with its
//! test module, legacy auth module and shared test package given as modules, 228 of 235
//! files generate; the 7 rejected use PostGIS types or custom Dart classes. The 223 that
//! remain once the files using those 7 are dropped compile, with the modules' code:
//!
//! ```text
//! bash codegen/check-serverpod.sh <serverpod checkout>
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod calls;
mod defaults;
mod diagnostic;
mod expand;
mod external;
mod ir;
mod method_types;
pub mod scaffold;
mod types;
mod typescript;
mod validate;
mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};

pub use builder::{model_files, write_typescript, Builder, Generated};
pub use diagnostic::{Diagnostic, Severity};
pub use streampod_protocol::schema::MethodSchema;

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The model files have errors; every one found is listed.
    #[error("{}", Report(.0))]
    Models(Vec<Diagnostic>),
    /// A file or directory could not be read or written.
    #[error("cannot access {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// `OUT_DIR` is not set.
    #[error("OUT_DIR is not set: call compile() from a build script, or choose a directory with configure().out_dir(..)")]
    NoOutDir,
    /// A module's or shared package's Rust path is not a Rust path.
    #[error("'{0}' given to module() or shared() is not a Rust path like ::auth_models")]
    ExternalPath(String),
    /// The configured runtime path is not a Rust path.
    #[error("runtime path '{0}' is not a Rust path like ::streampod::__codegen")]
    RuntimePath(String),
    /// TypeScript was asked for ([`Builder::typescript_out`]) and the models use types
    /// the TypeScript emitter does not cover yet; each line names a field.
    #[error("no TypeScript for these models yet:\n  {}", .0.join("\n  "))]
    TypeScriptUnsupported(Vec<String>),
    /// A methods file ([`Builder::methods_file`]) holds no method schema.
    #[error("{} is no method schema (the JSON ServerBuilder::write_method_schema writes): {problem}", path.display())]
    MethodsFile {
        /// The file.
        path: PathBuf,
        /// What does not fit.
        problem: String,
    },
    /// Rust method calls were asked for ([`Builder::rust_calls`]) and some methods name
    /// types a Rust call cannot: each line names the method.
    #[error("no Rust calls for these methods:\n  {}", .0.join("\n  "))]
    RustCallsUnsupported(Vec<String>),
    /// The generator produced code that does not parse: a bug in streampod-codegen.
    #[error("streampod-codegen generated invalid Rust ({0}); this is a bug, please report it with your model files")]
    Internal(String),
}

/// Renders all diagnostics, then a summary line.
struct Report<'a>(&'a [Diagnostic]);

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors = self
            .0
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        for diagnostic in self.0 {
            writeln!(f, "{diagnostic}\n")?;
        }
        write!(
            f,
            "streampod-codegen: {errors} error{} in model files",
            if errors == 1 { "" } else { "s" }
        )
    }
}

/// A [`Builder`] with the defaults: output `$OUT_DIR/protocol.rs`, runtime path
/// `::streampod::__codegen`, cargo directives printed.
pub fn configure() -> Builder {
    Builder::default()
}

/// Generates `$OUT_DIR/protocol.rs` from the models under `dir` with the defaults.
///
/// # Errors
///
/// See [`Builder::compile`].
pub fn compile(dir: impl AsRef<Path>) -> Result<Generated, Error> {
    configure().compile(dir)
}

/// [`compile`], printing every error and exiting with status 1 on failure: the one-liner
/// for build scripts.
pub fn compile_or_exit(dir: impl AsRef<Path>) -> Generated {
    configure().compile_or_exit(dir)
}
