//! Models generated in another crate that this run's models refer to: Serverpod modules
//! (`module:auth:UserInfo`) and shared packages (`SharedModel`, `shared:SharedModel`).

use crate::diagnostic::SourceFile;

/// How this run's model files name another crate's types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Qualifier {
    /// A module, by its nickname: `module:{nickname}:Type`.
    Module(String),
    /// A shared package: `Type` or `{package}:Type`.
    Package(String),
}

/// Another crate's model files, read to learn its type names and kinds, never emitted.
#[derive(Debug)]
pub(crate) struct ExternalModels {
    pub(crate) qualifier: Qualifier,
    /// The Rust path its generated types live under (`::auth_models`).
    pub(crate) rust_path: String,
    pub(crate) files: Vec<SourceFile>,
}
