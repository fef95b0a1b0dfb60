//! The README and the guides show code that compiles: every code block whose first line
//! names a file of `example-server/` (`// path` or `# path`; the walkthrough crate, the
//! axum app) must appear in that file verbatim, and every other Rust block is compiled
//! as a doc test (`tests/src/lib.rs` includes them), so none may be `ignore`d.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

/// The README's fenced code blocks, without their fences.
fn code_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_start().starts_with("```")) {
            (None, true) => current = Some(Vec::new()),
            (Some(lines), true) => {
                blocks.push(lines.join("\n"));
                current = None;
            }
            (Some(lines), false) => lines.push(line),
            (None, false) => {}
        }
    }
    blocks
}

/// The README, the example's README and the guides, by path.
fn documents() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut paths = vec![
        "README.md".to_owned(),
        "example-server/README.md".to_owned(),
    ];
    let mut guides: Vec<String> = std::fs::read_dir(root.join("framework/docs"))
        .unwrap()
        .map(|entry| {
            format!(
                "framework/docs/{}",
                entry.unwrap().file_name().to_string_lossy()
            )
        })
        .collect();
    guides.sort();
    paths.extend(guides);
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(root.join(&path)).unwrap();
            (path, text)
        })
        .collect()
}

/// The file a block is an excerpt of, from its first line.
fn excerpt_of(block: &str) -> Option<(&str, &str)> {
    let (info_and_first, rest) = block.split_once('\n')?;
    let path = info_and_first
        .strip_prefix("// ")
        .or_else(|| info_and_first.strip_prefix("# "))
        .filter(|path| path.starts_with("example-server/"))?;
    Some((path, rest))
}

#[test]
fn every_excerpt_is_in_its_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut checked = 0;
    for (document, text) in documents() {
        for block in code_blocks(&text) {
            let Some((path, rest)) = excerpt_of(&block) else {
                continue;
            };
            let file = std::fs::read_to_string(root.join(path))
                .unwrap_or_else(|error| panic!("{document} names {path}: {error}"));
            assert!(
                file.contains(rest),
                "this {document} block is not in {path} verbatim; update one or the other:\n{rest}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} excerpts found");
}

#[test]
fn every_other_rust_block_is_compiled() {
    for (document, text) in documents() {
        let mut fence = None;
        for line in text.lines() {
            let trimmed = line.trim_start();
            if let Some(info) = trimmed.strip_prefix("```") {
                fence = match fence {
                    None => Some(info.to_owned()),
                    Some(_) => None,
                };
                continue;
            }
            let Some(info) = fence.take() else {
                continue;
            };
            // The block's first line: an excerpt names its file there.
            let excerpt = trimmed.starts_with("// example-server/");
            assert!(
                !info.contains("ignore") || excerpt,
                "{document}: a `{info}` block that is no excerpt: compile it (drop `ignore`) or name the file it comes from"
            );
            fence = Some(String::new());
        }
    }
}
