//! The code generator from the command line, for builds that do not run cargo (a
//! frontend's, say):
//!
//! ```text
//! streampod-codegen typescript MODELS_DIR OUT.ts [--methods SCHEMA.json]
//!                                                  # TypeScript for browser and Node clients,
//!                                                  # and the runtime beside it (streampod.ts)
//! streampod-codegen rust MODELS_DIR OUT.rs [--methods SCHEMA.json]
//!                                                  # the Rust a build script would generate
//!                                                  # (with typed method calls)
//! streampod-codegen check MODELS_DIR               # only check the model files
//! ```
//!
//! `--methods` takes the JSON `ServerBuilder::write_method_schema` writes, so the client
//! gets a typed function per method.
//!
//! Exits with 1 and the problems on stderr when the models have errors, 2 on bad usage.

use std::path::Path;
use std::process::ExitCode;

const USAGE: &str = "usage: streampod-codegen typescript MODELS_DIR OUT.ts [--methods SCHEMA.json] | rust MODELS_DIR OUT.rs [--methods SCHEMA.json] | check MODELS_DIR";

/// What the command line asked for.
enum Command<'a> {
    TypeScript {
        dir: &'a str,
        out: &'a str,
        methods: Option<&'a str>,
    },
    Rust {
        dir: &'a str,
        out: &'a str,
        methods: Option<&'a str>,
    },
    Check {
        dir: &'a str,
    },
}

fn parse<'a>(args: &[&'a str]) -> Option<Command<'a>> {
    Some(match args {
        ["typescript", dir, out] => Command::TypeScript {
            dir,
            out,
            methods: None,
        },
        ["typescript", dir, out, "--methods", methods] => Command::TypeScript {
            dir,
            out,
            methods: Some(methods),
        },
        ["rust", dir, out] => Command::Rust {
            dir,
            out,
            methods: None,
        },
        ["rust", dir, out, "--methods", methods] => Command::Rust {
            dir,
            out,
            methods: Some(methods),
        },
        ["check", dir] => Command::Check { dir },
        _ => return None,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let Some(command) = parse(&args) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    match run(&command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: &Command<'_>) -> Result<(), String> {
    let mut builder = streampod_codegen::configure();
    let dir = match *command {
        Command::TypeScript { dir, out, methods } => {
            // Asks for the TypeScript; `generate` writes nothing.
            builder = builder.typescript_out(out);
            if let Some(path) = methods {
                builder = builder.methods_file(path);
            }
            dir
        }
        Command::Rust { dir, methods, .. } => {
            if let Some(path) = methods {
                builder = builder.methods_file(path).rust_calls();
            }
            dir
        }
        Command::Check { dir } => dir,
    };
    let generated = builder.generate(dir).map_err(|error| error.to_string())?;
    for warning in &generated.warnings {
        eprintln!("warning: {}", warning.headline());
    }
    match *command {
        Command::TypeScript { out, .. } => {
            let module = generated.typescript.unwrap_or_default();
            streampod_codegen::write_typescript(Path::new(out), &module)
                .map_err(|error| error.to_string())
        }
        Command::Rust { out, .. } => std::fs::write(out, generated.code)
            .map_err(|error| format!("cannot write {out}: {error}")),
        Command::Check { dir } => {
            eprintln!("{dir}: models are valid");
            Ok(())
        }
    }
}
