//! The code generator from the command line, for builds that do not run cargo (a
//! frontend's, say):
//!
//! ```text
//! streampod-codegen typescript MODELS_DIR OUT.ts   # TypeScript for browser and Node clients
//! streampod-codegen rust MODELS_DIR OUT.rs         # the Rust a build script would generate
//! streampod-codegen check MODELS_DIR               # only check the model files
//! ```
//!
//! Exits with 1 and the problems on stderr when the models have errors, 2 on bad usage.

use std::path::Path;
use std::process::ExitCode;

const USAGE: &str = "usage: streampod-codegen typescript MODELS_DIR OUT.ts | rust MODELS_DIR OUT.rs | check MODELS_DIR";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (dir, out, typescript_only) = match args.as_slice() {
        ["typescript", dir, out] => (*dir, Some(*out), true),
        ["rust", dir, out] => (*dir, Some(*out), false),
        ["check", dir] => (*dir, None, false),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut builder = streampod_codegen::configure();
    if typescript_only {
        // Asks for the TypeScript; `generate` writes nothing.
        builder = builder.typescript_out(out.unwrap_or_default());
    }
    let generated = match builder.generate(dir) {
        Ok(generated) => generated,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    for warning in &generated.warnings {
        eprintln!("warning: {}", warning.headline());
    }
    let Some(out) = out else {
        eprintln!("{dir}: models are valid");
        return ExitCode::SUCCESS;
    };
    let text = match generated.typescript {
        Some(typescript) if typescript_only => typescript,
        _ => generated.code,
    };
    if let Err(error) = std::fs::write(Path::new(out), text) {
        eprintln!("cannot write {out}: {error}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
