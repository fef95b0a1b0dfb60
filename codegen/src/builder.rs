//! The build.rs entry points: find model files, generate, write, tell cargo what to watch.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::diagnostic::{Diagnostic, Diagnostics, Severity, SourceFile};
use crate::external::{ExternalModels, Qualifier};
use crate::{calls, expand, typescript, validate, Error};
use streampod_protocol::schema::MethodSchema;

/// Options for a generator run. Start from [`configure`](crate::configure).
#[derive(Debug, Clone)]
#[must_use]
pub struct Builder {
    out_dir: Option<PathBuf>,
    file_name: String,
    runtime_path: String,
    emit_rerun_if_changed: bool,
    emit_warnings: bool,
    /// Other crates' model directories: (how types are named, directory, Rust path).
    externals: Vec<(Qualifier, PathBuf, String)>,
    /// Where [`Builder::compile`] also writes TypeScript, if anywhere.
    typescript_out: Option<PathBuf>,
    /// The server's methods, for typed calls in the TypeScript client.
    methods: Option<MethodSchema>,
    /// A file to read the server's methods from, instead of [`Builder::methods`].
    methods_file: Option<PathBuf>,
    /// Whether the Rust output also has typed calls of the methods.
    rust_calls: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            out_dir: None,
            file_name: "protocol.rs".into(),
            runtime_path: "::streampod::__codegen".into(),
            emit_rerun_if_changed: true,
            emit_warnings: true,
            externals: Vec::new(),
            typescript_out: None,
            methods: None,
            methods_file: None,
            rust_calls: false,
        }
    }
}

/// What a run produced.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Generated {
    /// The generated Rust source.
    pub code: String,
    /// Where it was written (`None` from [`Builder::generate`]).
    pub path: Option<PathBuf>,
    /// The model directory and every model file read: what cargo must watch.
    pub inputs: Vec<PathBuf>,
    /// Warnings (ignored database keys and the like).
    pub warnings: Vec<Diagnostic>,
    /// The TypeScript module, when [`Builder::typescript_out`] asked for one.
    pub typescript: Option<String>,
    /// The client runtime the TypeScript module imports (`./streampod.js`), to be written
    /// beside it as `streampod.ts`; with [`Generated::typescript`].
    pub typescript_runtime: Option<&'static str>,
}

impl Generated {
    /// The `cargo:` lines a build script prints for this run: `rerun-if-changed` for the
    /// directory and every file, and a `warning` per warning.
    pub fn cargo_directives(&self, rerun_if_changed: bool, warnings: bool) -> Vec<String> {
        let mut lines = Vec::new();
        if rerun_if_changed {
            lines.extend(
                self.inputs
                    .iter()
                    .map(|path| format!("cargo:rerun-if-changed={}", path.display())),
            );
        }
        if warnings {
            lines.extend(
                self.warnings
                    .iter()
                    .map(|w| format!("cargo:warning={}", w.headline())),
            );
        }
        lines
    }
}

impl Builder {
    /// Writes into this directory instead of `$OUT_DIR`.
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// The output file's name; default `protocol.rs`.
    pub fn file_name(mut self, name: impl Into<String>) -> Self {
        self.file_name = name.into();
        self
    }

    /// The path generated code reaches the runtime through; default
    /// `::streampod::__codegen`. Crates that depend only on `streampod-protocol` use
    /// `::streampod_protocol::__codegen`.
    pub fn runtime_path(mut self, path: impl Into<String>) -> Self {
        self.runtime_path = path.into();
        self
    }

    /// Lets the model files use a Serverpod module's models as `module:{nickname}:Type`.
    /// The module's model files (under `models_dir`) are read for their names and kinds,
    /// not generated again: another crate generated them, and its types are reached
    /// under `rust_path`.
    ///
    /// ```no_run
    /// // build.rs: `module:auth:UserInfo` becomes `::auth_models::UserInfo`.
    /// streampod_codegen::configure()
    ///     .module("auth", "../auth-models/models", "::auth_models")
    ///     .compile_or_exit("models");
    /// ```
    pub fn module(
        mut self,
        nickname: impl Into<String>,
        models_dir: impl Into<PathBuf>,
        rust_path: impl Into<String>,
    ) -> Self {
        self.externals.push((
            Qualifier::Module(nickname.into()),
            models_dir.into(),
            rust_path.into(),
        ));
        self
    }

    /// Lets the model files use a shared package's models (Serverpod's
    /// `shared_packages`) by their bare names or as `{package}:Type`; like
    /// [`Builder::module`], they are read, not generated again.
    pub fn shared(
        mut self,
        package: impl Into<String>,
        models_dir: impl Into<PathBuf>,
        rust_path: impl Into<String>,
    ) -> Self {
        self.externals.push((
            Qualifier::Package(package.into()),
            models_dir.into(),
            rust_path.into(),
        ));
        self
    }

    /// Also generates TypeScript for browser and Node clients: interfaces, codecs in
    /// Serverpod's JSON and a `Protocol` union (see [`Generated::typescript`]);
    /// [`Builder::compile`] writes it to `path` (only when it changed).
    ///
    /// ```
    /// let generated = streampod_codegen::configure()
    ///     .typescript_out("web/src/protocol.ts")
    ///     .generate_sources([("note.yaml", "class: Note\nfields:\n  text: String\n".to_owned())])
    ///     .expect("valid models");
    /// assert!(generated.typescript.unwrap().contains("export interface Note"));
    /// ```
    pub fn typescript_out(mut self, path: impl Into<PathBuf>) -> Self {
        self.typescript_out = Some(path.into());
        self
    }

    /// Whether [`Builder::compile`] prints `cargo:rerun-if-changed` lines; default on.
    pub fn emit_rerun_if_changed(mut self, emit: bool) -> Self {
        self.emit_rerun_if_changed = emit;
        self
    }

    /// Whether [`Builder::compile`] prints warnings as `cargo:warning` lines; default on.
    pub fn emit_warnings(mut self, emit: bool) -> Self {
        self.emit_warnings = emit;
        self
    }

    /// Generates code from every `*.yaml`/`*.yml` file under `dir` (recursively, in path
    /// order) without writing anything.
    ///
    /// # Errors
    ///
    /// [`Error::Models`] with every problem found, [`Error::Io`] when a file cannot be read.
    pub fn generate(&self, dir: impl AsRef<Path>) -> Result<Generated, Error> {
        let dir = dir.as_ref();
        let files = read_model_files(dir)?;
        let mut generated = self.generate_files(&files)?;
        generated.inputs.insert(0, dir.to_owned());
        Ok(generated)
    }

    /// Generates code from model files held in memory, `(path, text)` pairs in the
    /// order given; the paths only name the files in diagnostics. For tools that do
    /// not read a directory (editors, fuzzers, tests).
    ///
    /// ```
    /// let generated = streampod_codegen::configure()
    ///     .generate_sources([("note.yaml", "class: Note\nfields:\n  text: String\n".to_owned())])
    ///     .expect("valid models");
    /// assert!(generated.code.contains("pub struct Note"));
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Models`] with every problem found.
    pub fn generate_sources<P: AsRef<Path>>(
        &self,
        sources: impl IntoIterator<Item = (P, String)>,
    ) -> Result<Generated, Error> {
        let files: Vec<SourceFile> = sources
            .into_iter()
            .map(|(path, text)| SourceFile::new(path.as_ref(), text))
            .collect();
        self.generate_files(&files)
    }

    /// Checks model files held in memory as [`Builder::generate_sources`] would, without
    /// generating code: the warnings, or every problem found. For editors, linters and
    /// fuzzers, where expanding and formatting the code would be wasted work.
    ///
    /// # Errors
    ///
    /// [`Error::Models`] with every problem found.
    pub fn check_sources<P: AsRef<Path>>(
        &self,
        sources: impl IntoIterator<Item = (P, String)>,
    ) -> Result<Vec<Diagnostic>, Error> {
        let files: Vec<SourceFile> = sources
            .into_iter()
            .map(|(path, text)| SourceFile::new(path.as_ref(), text))
            .collect();
        let externals = self.read_externals()?;
        let mut diagnostics = Diagnostics::default();
        validate::validate(&files, &externals, &mut diagnostics);
        if diagnostics.has_errors() {
            return Err(Error::Models(diagnostics.items));
        }
        Ok(diagnostics.items)
    }

    fn generate_files(&self, files: &[SourceFile]) -> Result<Generated, Error> {
        let runtime: syn::Path = syn::parse_str(&self.runtime_path)
            .map_err(|_| Error::RuntimePath(self.runtime_path.clone()))?;

        let externals = self.read_externals()?;
        let mut diagnostics = Diagnostics::default();
        let set = validate::validate(files, &externals, &mut diagnostics);
        diagnostics
            .items
            .sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        if diagnostics.has_errors() {
            return Err(Error::Models(diagnostics.items));
        }
        let mut warnings: Vec<Diagnostic> = diagnostics
            .items
            .into_iter()
            .filter(|d| d.severity == Severity::Warning)
            .collect();
        let methods = self.method_schema(&mut warnings)?;
        let mut tokens = expand::file(&set, &runtime);
        if self.rust_calls {
            let mut problems = Vec::new();
            let schema = methods.clone().unwrap_or_default();
            tokens.extend(calls::calls(&set, &runtime, &schema, &mut problems));
            if !problems.is_empty() {
                return Err(Error::RustCallsUnsupported(problems));
            }
        }
        let code = expand::format(tokens).map_err(|e| Error::Internal(e.to_string()))?;
        let typescript = match &self.typescript_out {
            Some(_) => Some(
                typescript::file(&set, methods.as_ref())
                    .map_err(|unsupported| Error::TypeScriptUnsupported(unsupported.0))?,
            ),
            None => None,
        };
        let typescript_runtime = typescript.as_ref().map(|_| typescript::RUNTIME);
        let external_inputs = externals
            .iter()
            .flat_map(|external| external.files.iter().map(|file| file.path.clone()));
        Ok(Generated {
            code,
            path: None,
            inputs: files
                .iter()
                .map(|file| file.path.clone())
                .chain(external_inputs)
                .chain(self.methods_file.clone())
                .collect(),
            warnings,
            typescript,
            typescript_runtime,
        })
    }

    /// Generates code from the models under `dir`, writes it (only when it changed) to
    /// `$OUT_DIR/protocol.rs` and prints the cargo directives.
    ///
    /// # Errors
    ///
    /// As [`Builder::generate`], plus [`Error::NoOutDir`] outside a build script and
    /// [`Error::Io`] when the output cannot be written.
    pub fn compile(&self, dir: impl AsRef<Path>) -> Result<Generated, Error> {
        let dir = dir.as_ref();
        let out_dir = match &self.out_dir {
            Some(dir) => dir.clone(),
            None => std::env::var_os("OUT_DIR")
                .map(PathBuf::from)
                .ok_or(Error::NoOutDir)?,
        };
        let result = self.generate(dir);
        if result.is_err() && self.emit_rerun_if_changed {
            // A failed build must still rerun when the directory or any model file changes.
            println!("cargo:rerun-if-changed={}", dir.display());
            for path in model_files(dir).unwrap_or_default() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
            if let Some(path) = &self.methods_file {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
        let mut generated = result?;
        let path = out_dir.join(&self.file_name);
        write_if_changed(&path, generated.code.as_bytes()).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        for line in generated.cargo_directives(self.emit_rerun_if_changed, self.emit_warnings) {
            println!("{line}");
        }
        if let (Some(ts_path), Some(typescript)) = (&self.typescript_out, &generated.typescript) {
            write_typescript(ts_path, typescript)?;
        }
        generated.path = Some(path);
        Ok(generated)
    }

    /// Typed calls of a server's HTTP methods in the TypeScript client: the schema its
    /// `ServerBuilder::method_schema()` returns (as JSON: `streampod_protocol::schema`).
    /// Without it the client has streams and untyped `call` only.
    pub fn methods(mut self, schema: MethodSchema) -> Self {
        self.methods = Some(schema);
        self
    }

    /// Reads the server's methods from `path` when generating: the JSON
    /// `ServerBuilder::write_method_schema` writes (a test of the server crate keeps it
    /// current), watched like a model file. For typed calls in the TypeScript client and,
    /// with [`Builder::rust_calls`], in Rust.
    ///
    /// ```no_run
    /// // build.rs
    /// streampod_codegen::configure()
    ///     .methods_file("methods.json")
    ///     .rust_calls()
    ///     .typescript_out("web/src/protocol.ts")
    ///     .compile_or_exit("models");
    /// ```
    pub fn methods_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.methods_file = Some(path.into());
        self
    }

    /// Also generates typed Rust calls of the server's methods ([`Builder::methods`] or
    /// [`Builder::methods_file`]): a `MethodCalls` trait that gives any
    /// `streampod::client::Client` or `MethodClient` one accessor per endpoint, and per
    /// endpoint a struct with one `async fn` per method, so
    /// `client.chat().history("lobby", None, None).await?` answers a `ChatHistory` and a
    /// thrown exception arrives typed. The generated code uses `streampod::client`: the
    /// crate needs streampod's `client` feature.
    pub fn rust_calls(mut self) -> Self {
        self.rust_calls = true;
        self
    }

    /// The method schema given, or read from the methods file; a methods file not
    /// written yet is no schema, with a warning that says how to write it.
    fn method_schema(&self, warnings: &mut Vec<Diagnostic>) -> Result<Option<MethodSchema>, Error> {
        let Some(path) = &self.methods_file else {
            return Ok(self.methods.clone());
        };
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                warnings.push(Diagnostic {
                    severity: Severity::Warning,
                    file: path.clone(),
                    line: 1,
                    column: 1,
                    len: 1,
                    message: "not written yet, so no typed method calls: write it with \
                        ServerBuilder::write_method_schema (a test of the server does), \
                        then build again"
                        .to_owned(),
                    source_line: None,
                });
                return Ok(None);
            }
            Err(source) => {
                return Err(Error::Io {
                    path: path.clone(),
                    source,
                })
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|error| Error::MethodsFile {
                path: path.clone(),
                problem: error.to_string(),
            })
    }

    /// [`Builder::compile`], printing the errors (all of them, rustc style) to stderr and
    /// exiting with status 1 on failure. For build scripts.
    pub fn compile_or_exit(&self, dir: impl AsRef<Path>) -> Generated {
        match self.compile(dir) {
            Ok(generated) => generated,
            Err(error) => {
                eprintln!("{error}");
                std::process::exit(1);
            }
        }
    }
}

impl Builder {
    /// Reads every configured module's and shared package's model files.
    fn read_externals(&self) -> Result<Vec<ExternalModels>, Error> {
        self.externals
            .iter()
            .map(|(qualifier, dir, rust_path)| {
                if syn::parse_str::<syn::Path>(rust_path).is_err() {
                    return Err(Error::ExternalPath(rust_path.clone()));
                }
                Ok(ExternalModels {
                    qualifier: qualifier.clone(),
                    rust_path: rust_path.clone(),
                    files: read_model_files(dir)?,
                })
            })
            .collect()
    }
}

/// Reads every model file under `dir`.
fn read_model_files(dir: &Path) -> Result<Vec<SourceFile>, Error> {
    let paths = model_files(dir)?;
    let mut files = Vec::with_capacity(paths.len());
    for path in &paths {
        let text = fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        files.push(SourceFile::new(path, text));
    }
    Ok(files)
}

/// Every model file (`*.yaml`, `*.yml`) under `dir`, recursively, sorted by path: the
/// files [`Builder::generate`] reads.
///
/// # Errors
///
/// [`Error::Io`] when a directory cannot be read.
pub fn model_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let io_error = |source| Error::Io {
        path: dir.to_owned(),
        source,
    };
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current).map_err(io_error)? {
            let path = entry.map_err(io_error)?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
            {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

fn write_if_changed(path: &Path, contents: &[u8]) -> io::Result<()> {
    if fs::read(path).is_ok_and(|existing| existing == contents) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(path, contents)
}

/// Writes the TypeScript module to `path` and the client runtime it imports beside it
/// (each only when it changed).
///
/// # Errors
///
/// [`Error::Io`] naming the file that could not be written.
pub fn write_typescript(path: &Path, module: &str) -> Result<(), Error> {
    let runtime = path
        .parent()
        .unwrap_or_else(|| Path::new(""))
        .join(typescript::RUNTIME_FILE);
    for (path, text) in [(path.to_path_buf(), module), (runtime, typescript::RUNTIME)] {
        write_if_changed(&path, text.as_bytes()).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}
