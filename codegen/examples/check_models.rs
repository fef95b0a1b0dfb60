//! Runs the generator over a directory of model files and reports, per file, whether it
//! generates: the tool behind the figure in the crate docs for Serverpod's own models.
//!
//! ```text
//! cargo run -p streampod-codegen --example check_models -- <models dir>
//!     [--module nickname=dir]... [--shared package=dir]... [--runtime path] [--out file.rs]
//! ```
//!
//! Every error is printed; the summary counts files with no error, files with errors and
//! the distinct messages (without positions), most frequent first. A module's or shared
//! package's types are reached as `crate::{nickname}` / `crate::{package}`. `--out`
//! writes the code of the files that generate (dropping rejected files, and files that
//! then fail for lack of them, until the rest generates), to compile it elsewhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;

use streampod_codegen::{Builder, Diagnostic, Error, Severity};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    let mut out = None;
    let mut builder = streampod_codegen::configure();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = args.next().map(PathBuf::from),
            "--runtime" => match args.next() {
                Some(path) => builder = builder.runtime_path(path),
                None => return usage("--runtime takes a Rust path"),
            },
            "--module" | "--shared" => {
                let Some((name, path)) = args.next().and_then(|v| {
                    v.split_once('=')
                        .map(|(n, p)| (n.to_owned(), PathBuf::from(p)))
                }) else {
                    return usage("--module and --shared take name=dir");
                };
                let rust_path = format!("crate::{name}");
                builder = if arg == "--module" {
                    builder.module(name, path, rust_path)
                } else {
                    builder.shared(name, path, rust_path)
                };
            }
            _ if dir.is_none() => dir = Some(PathBuf::from(arg)),
            _ => return usage("one models directory"),
        }
    }
    let Some(dir) = dir else {
        return usage("a models directory is required");
    };
    let sources = match read_sources(&dir) {
        Ok(sources) => sources,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let errors = match errors_of(&builder, &sources) {
        Ok(errors) => errors,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let mut rejected = BTreeSet::new();
    let mut messages: BTreeMap<&str, usize> = BTreeMap::new();
    for diagnostic in &errors {
        println!("{}", diagnostic.headline());
        rejected.insert(diagnostic.file.clone());
        *messages.entry(diagnostic.message.as_str()).or_default() += 1;
    }
    let mut by_count: Vec<_> = messages.into_iter().collect();
    by_count.sort_by_key(|entry| std::cmp::Reverse(entry.1));
    println!();
    for (message, count) in by_count {
        println!("{count:>4}  {message}");
    }
    println!(
        "\n{} model files: {} generate, {} rejected",
        sources.len(),
        sources.len() - rejected.len(),
        rejected.len()
    );
    if let Some(out) = out {
        if let Err(problem) = write_accepted(&builder, sources, rejected.clone(), &out) {
            eprintln!("{problem}");
            return ExitCode::FAILURE;
        }
    }
    if rejected.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn read_sources(dir: &std::path::Path) -> Result<Vec<(PathBuf, String)>, Error> {
    streampod_codegen::model_files(dir)?
        .into_iter()
        .map(|path| match std::fs::read_to_string(&path) {
            Ok(text) => Ok((path, text)),
            Err(source) => Err(Error::Io { path, source }),
        })
        .collect()
}

/// The errors of a run over `sources` (none when it generates).
fn errors_of(builder: &Builder, sources: &[(PathBuf, String)]) -> Result<Vec<Diagnostic>, Error> {
    match builder.check_sources(sources.iter().cloned()) {
        Ok(_) => Ok(Vec::new()),
        Err(Error::Models(diagnostics)) => Ok(diagnostics
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .collect()),
        Err(error) => Err(error),
    }
}

/// Drops rejected files until the rest generates, then writes its code to `out`.
fn write_accepted(
    builder: &Builder,
    mut sources: Vec<(PathBuf, String)>,
    mut rejected: BTreeSet<PathBuf>,
    out: &std::path::Path,
) -> Result<(), String> {
    loop {
        sources.retain(|(path, _)| !rejected.contains(path));
        let errors = errors_of(builder, &sources).map_err(|e| e.to_string())?;
        if errors.is_empty() {
            break;
        }
        rejected = errors.into_iter().map(|d| d.file).collect();
    }
    let count = sources.len();
    let generated = builder
        .generate_sources(sources)
        .map_err(|e| e.to_string())?;
    std::fs::write(out, generated.code)
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    println!("wrote the code of {count} model files to {}", out.display());
    Ok(())
}

fn usage(problem: &str) -> ExitCode {
    eprintln!(
        "{problem}\nusage: check_models <models dir> [--module nickname=dir]... [--shared package=dir]... [--runtime path] [--out file.rs]"
    );
    ExitCode::from(2)
}
