//! The README's walkthrough is the walkthrough crate: every README code block whose first
//! line names a file of `example-server/` (`// path` or `# path`; the walkthrough crate,
//! the axum app) must appear in that file verbatim, so the README shows code that
//! compiles and fits together.

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

#[test]
fn every_walkthrough_excerpt_is_in_its_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut checked = 0;
    for block in code_blocks(&readme) {
        let Some((first, rest)) = block.split_once('\n') else {
            continue;
        };
        let Some(path) = first
            .strip_prefix("// ")
            .or_else(|| first.strip_prefix("# "))
            .filter(|path| path.starts_with("example-server/"))
        else {
            continue;
        };
        let file = std::fs::read_to_string(root.join(path))
            .unwrap_or_else(|error| panic!("the README names {path}: {error}"));
        assert!(
            file.contains(rest),
            "this README block is not in {path} verbatim; update one or the other:\n{rest}"
        );
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} excerpts found");
}
