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
//! | `fields:` `name: Type, options` | `pub name: Type` (camelCase names become snake_case) |
//! | `bool int double String` | `bool i64 f64 String` |
//! | `DateTime Duration UuidValue Uri BigInt ByteData` | `DateTime<Utc>`, `TimeDelta`, `Uuid`, `Url`, `BigInt`, `Bytes` |
//! | `List<T> Set<T> Map<K,V>`, nested to any depth | `Vec<T>`, `HashSet<T>`, `HashMap<K,V>` |
//! | `Type?` | `Option<Type>`; omitted from JSON when `None` |
//! | `default=…`, `defaultModel=…` | used when the field is missing from JSON |
//! | `scope=serverOnly`, `scope=none` | never encoded (`#[serde(skip)]`); must be nullable |
//! | `jsonKey=key` | the JSON key |
//! | `required` | accepted (nullable fields only); no effect in Rust |
//! | `serverOnly: true` | generated, but not in `Protocol` |
//! | `immutable: true` | accepted; Rust values are immutable unless bound `mut` |
//! | `### doc` above a model, field or enum value | `///` doc comments |
//! | `table`, `indexes`, `relation`, `persist`, … | ignored with a warning (no database) |
//!
//! Rejected with an error: `extends`/`sealed` (inheritance), enum `properties`, record
//! types, `dynamic`, module types, unknown keys, options and types, duplicate fields and
//! names, and cycles of non-nullable model fields. Nullable cycles are boxed
//! automatically.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod defaults;
mod diagnostic;
mod expand;
mod external;
mod ir;
mod types;
mod validate;
mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};

pub use builder::{model_files, Builder, Generated};
pub use diagnostic::{Diagnostic, Severity};

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
