//! Runs the generator over a directory of model files and reports, per file, whether it
//! generates: the tool behind the figure in the crate docs for Serverpod's own models.
//!
//! ```text
//! cargo run -p streampod-codegen --example check_models -- <models dir> [--out file.rs]
//! ```
//!
//! Every error is printed; the summary counts files with no error, files with errors and
//! the distinct messages (without positions), most frequent first. `--out` writes the
//! generated code when every file generates, to compile it elsewhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    let mut out = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = args.next().map(PathBuf::from),
            _ if dir.is_none() => dir = Some(PathBuf::from(arg)),
            _ => return usage("one models directory"),
        }
    }
    let Some(dir) = dir else {
        return usage("a models directory is required");
    };
    let builder = streampod_codegen::configure();
    let files = match streampod_codegen::model_files(&dir) {
        Ok(files) => files,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let (failed, messages) = match builder.generate(&dir) {
        Ok(generated) => {
            if let Some(out) = out {
                if let Err(error) = std::fs::write(&out, generated.code) {
                    eprintln!("cannot write {}: {error}", out.display());
                    return ExitCode::FAILURE;
                }
            }
            (BTreeSet::new(), BTreeMap::new())
        }
        Err(streampod_codegen::Error::Models(diagnostics)) => {
            let mut failed = BTreeSet::new();
            let mut messages: BTreeMap<String, usize> = BTreeMap::new();
            for diagnostic in diagnostics
                .iter()
                .filter(|d| d.severity == streampod_codegen::Severity::Error)
            {
                println!("{}", diagnostic.headline());
                failed.insert(diagnostic.file.clone());
                *messages.entry(diagnostic.message.clone()).or_default() += 1;
            }
            (failed, messages)
        }
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let mut by_count: Vec<_> = messages.into_iter().collect();
    by_count.sort_by_key(|entry| std::cmp::Reverse(entry.1));
    println!();
    for (message, count) in by_count {
        println!("{count:>4}  {message}");
    }
    println!(
        "\n{} model files: {} generate, {} rejected",
        files.len(),
        files.len() - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("{problem}\nusage: check_models <models dir> [--out file.rs]");
    ExitCode::from(2)
}
