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
//! streampod-codegen new DIR [--name NAME] [--streampod CHECKOUT]
//!                                                  # a new server crate in DIR
//! ```
//!
//! `--methods` takes the JSON `ServerBuilder::write_method_schema` writes, so the client
//! gets a typed function per method.
//!
//! Exits with 1 and the problems on stderr when the models have errors, 2 on bad usage.

use std::path::Path;
use std::process::ExitCode;

const USAGE: &str = "usage: streampod-codegen typescript MODELS_DIR OUT.ts [--methods SCHEMA.json] | rust MODELS_DIR OUT.rs [--methods SCHEMA.json] | check MODELS_DIR | new DIR [--name NAME] [--streampod CHECKOUT]";

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
    New {
        dir: &'a str,
        name: Option<&'a str>,
        streampod: Option<&'a str>,
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
        ["new", dir, options @ ..] => {
            let (mut name, mut streampod) = (None, None);
            for pair in options.chunks(2) {
                match pair {
                    ["--name", value] => name = Some(*value),
                    ["--streampod", value] => streampod = Some(*value),
                    _ => return None,
                }
            }
            Command::New {
                dir,
                name,
                streampod,
            }
        }
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
    if let Command::New {
        dir,
        name,
        streampod,
    } = *command
    {
        return new(dir, name, streampod);
    }
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
        Command::Check { dir } | Command::New { dir, .. } => dir,
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
        Command::Check { dir } | Command::New { dir, .. } => {
            eprintln!("{dir}: models are valid");
            Ok(())
        }
    }
}

/// `new`: the crate, then what to run.
fn new(dir: &str, name: Option<&str>, streampod: Option<&str>) -> Result<(), String> {
    use streampod_codegen::scaffold::{self, Scaffold};
    let path = Path::new(dir);
    let name = match name {
        Some(name) => name.to_owned(),
        None => path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .ok_or_else(|| format!("{dir} names no directory: pass --name"))?,
    };
    let streampod = match streampod {
        Some(path) => Path::new(path).to_path_buf(),
        None => scaffold::own_checkout()
            .ok_or("this streampod-codegen was not built from a checkout: pass --streampod PATH")?,
    };
    let written =
        scaffold::create(path, &Scaffold { name, streampod }).map_err(|error| error.to_string())?;
    eprintln!("wrote {} files into {dir}; now:", written.len());
    eprintln!("  cd {dir} && cargo run                # the server, on 127.0.0.1:8080");
    eprintln!("  cargo run --bin client               # (another terminal) the typed Rust client");
    eprintln!("  cd web && npm install && npm run build && npm start   # the TypeScript client");
    Ok(())
}
