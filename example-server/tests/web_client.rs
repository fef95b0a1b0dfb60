//! The page's TypeScript client is what the models and the endpoints' methods generate,
//! and the committed scripts under `static/js` are what `tsc` makes of `web/src`: a model
//! field or a method signature changed without rebuilding the page fails here, naming
//! the stale files. `STREAMPOD_UPDATE_WEB=1` rewrites them instead (see `web/README.md`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn tsc() -> PathBuf {
    let tsc = root().join("../codegen/typescript/node_modules/.bin/tsc");
    assert!(
        tsc.exists(),
        "{} is missing: run `npm ci` in codegen/typescript (tests/run-all.sh does)",
        tsc.display()
    );
    tsc
}

/// Every file under `dir`, as paths relative to it.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    found.sort();
    found
}

#[test]
fn the_generated_client_and_the_page_scripts_are_current() {
    let web = root().join("web");
    let schema = example_server::server().method_schema();
    let schema_json = serde_json::to_string_pretty(&schema).unwrap() + "\n";
    let generated = streampod_codegen::configure()
        .typescript_out("unused.ts")
        .methods(schema)
        .generate(root().join("models"))
        .unwrap();
    let mut expected: Vec<(PathBuf, Vec<u8>)> = vec![
        (web.join("methods.json"), schema_json.into_bytes()),
        (
            web.join("src/generated/protocol.ts"),
            generated.typescript.unwrap().into_bytes(),
        ),
        (
            web.join("src/generated/streampod.ts"),
            generated.typescript_runtime.unwrap().as_bytes().to_vec(),
        ),
    ];

    // Compile the page's sources with the freshly generated client, in a copy.
    let build = tempfile::tempdir().unwrap();
    let src = build.path().join("src");
    for relative in files_under(&web.join("src")) {
        let to = src.join(&relative);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(web.join("src").join(&relative), &to).unwrap();
    }
    for (path, contents) in &expected[1..] {
        let to = src.join(path.strip_prefix(web.join("src")).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, contents).unwrap();
    }
    std::fs::copy(
        web.join("tsconfig.json"),
        build.path().join("tsconfig.json"),
    )
    .unwrap();
    let out = build.path().join("out");
    let output = Command::new(tsc())
        .arg("-p")
        .arg(build.path())
        .arg("--outDir")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "tsc on web/src: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let scripts = root().join("static/js");
    for relative in files_under(&out) {
        let contents = std::fs::read(out.join(&relative)).unwrap();
        expected.push((scripts.join(relative), contents));
    }

    if std::env::var_os("STREAMPOD_UPDATE_WEB").is_some() {
        // Scripts the sources no longer make go too.
        let _ = std::fs::remove_dir_all(&scripts);
        for (path, contents) in &expected {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, contents).unwrap();
        }
        return;
    }
    let stale: Vec<String> = expected
        .iter()
        .filter(|(path, contents)| std::fs::read(path).ok().as_ref() != Some(contents))
        .map(|(path, _)| path.strip_prefix(root()).unwrap().display().to_string())
        .collect();
    assert!(
        stale.is_empty(),
        "stale: {}; rebuild with `STREAMPOD_UPDATE_WEB=1 cargo test -p example-server --test web_client` and commit the result",
        stale.join(", ")
    );
    // Nothing served that the sources no longer make.
    let served: Vec<PathBuf> = files_under(&scripts);
    let made = files_under(&out);
    assert_eq!(served, made, "static/js holds files web/src does not build");
}
