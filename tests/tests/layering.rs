//! The runtime's layering, checked from its source: every file of `framework/src` opens
//! with a `//!` comment saying what it holds; the folders (concepts) import only those
//! below them in [`ORDER`]; and no module imports one that imports it back (directly or
//! around a longer loop). Imports are `use crate::…`, `use super::…` and inline
//! `crate::…` paths; doc comments and `#[cfg(test)]` modules do not count.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`messages::central`) → its file.
fn modules(root: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let relative = path.strip_prefix(root).unwrap().with_extension("");
            let mut parts: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts
                .last()
                .is_some_and(|last| last == "mod" || last == "lib")
            {
                parts.pop();
            }
            found.insert(parts.join("::"), path);
        }
    }
    found
}

/// The code of a file without comments, string literals' contents and test modules.
fn code(source: &str) -> String {
    let mut kept = String::new();
    let mut skipping_tests = false;
    for line in source.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            // Everything after a test module's attribute is test code (it sits last).
            skipping_tests = true;
        }
        if !(skipping_tests || trimmed.starts_with("//")) {
            kept.push_str(line.split("//").next().unwrap_or(""));
        }
        kept.push('\n');
    }
    kept
}

/// The module paths one file names: `crate::a::b…` and `super::…`, expanded through
/// `use` groups (`crate::a::{b, c::d}`).
fn named_paths(module: &str, code: &str) -> Vec<Vec<String>> {
    named_paths_at(module, code)
        .into_iter()
        .map(|(path, _)| path)
        .collect()
}

/// [`named_paths`], each with the line (from 1) it is named on.
fn named_paths_at(module: &str, code: &str) -> Vec<(Vec<String>, usize)> {
    let parent: Vec<String> = {
        let mut parts: Vec<String> = module.split("::").map(str::to_owned).collect();
        parts.pop();
        parts
    };
    let mut paths = Vec::new();
    let bytes = code.as_bytes();
    for (start, _) in code
        .match_indices("crate::")
        .chain(code.match_indices("super::"))
    {
        if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            continue;
        }
        let is_super = code[start..].starts_with("super::");
        let rest = &code[start + "crate::".len()..];
        let base: Vec<String> = if is_super { parent.clone() } else { Vec::new() };
        let line = code[..start].matches('\n').count() + 1;
        let mut named = Vec::new();
        expand(rest, base, &mut named);
        paths.extend(named.into_iter().map(|path| (path, line)));
    }
    paths
}

/// Adds every path `text` (after `crate::` or `super::`) names to `out`.
fn expand(text: &str, base: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = base;
    let mut rest = text;
    if let Some(group) = rest.strip_prefix('{') {
        for item in split_group(group) {
            expand(item.trim(), path.clone(), out);
        }
        return;
    }
    loop {
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let segment = &rest[..end];
        if !segment.is_empty() {
            path.push(segment.to_owned());
        }
        rest = &rest[end..];
        if let Some(after) = rest.strip_prefix("::") {
            if let Some(group) = after.strip_prefix('{') {
                for item in split_group(group) {
                    expand(item.trim(), path.clone(), out);
                }
                return;
            }
            rest = after;
            continue;
        }
        out.push(path);
        return;
    }
}

/// The top-level items of a `{…}` use group.
fn split_group(group: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut from) = (0_usize, 0);
    for (at, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[from..at]);
                return items;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[from..at]);
                from = at + 1;
            }
            _ => {}
        }
    }
    items
}

/// Module → the modules it imports.
fn imports(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    imports_at(root)
        .into_iter()
        .map(|(module, targets)| {
            let targets = targets.into_keys().collect();
            (module, targets)
        })
        .collect()
}

/// Module → the modules it imports, each with the line of its first import.
fn imports_at(root: &Path) -> BTreeMap<String, BTreeMap<String, usize>> {
    let modules = modules(root);
    let mut graph = BTreeMap::new();
    for (module, file) in &modules {
        let source = std::fs::read_to_string(file).unwrap();
        let mut targets = BTreeMap::new();
        for (path, line) in named_paths_at(module, &code(&source)) {
            // The deepest module along the path is what the file depends on.
            let target = (1..=path.len())
                .rev()
                .map(|n| path[..n].join("::"))
                .find(|candidate| modules.contains_key(candidate));
            if let Some(target) = target {
                if &target != module && !target.is_empty() {
                    targets.entry(target).or_insert(line);
                }
            }
        }
        graph.insert(module.clone(), targets);
    }
    graph
}

/// A cycle through `graph`, if it has one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let from = stack.iter().position(|n| n == node).unwrap();
                let mut cycle = stack[from..].to_vec();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.to_owned(), Mark::Open);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, marks, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut marks, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

/// The folders (and leaf files) of `framework/src`, lowest first: each may import those
/// before it (and, within one entry, each other, cycles aside), never one after it.
/// Written, with a line per folder, in the crate docs' architecture section.
const ORDER: &[&[&str]] = &[
    &["util"],
    &["ws"],
    &["config", "auth", "metrics", "rate_limit"],
    &["session"],
    &["cluster"],
    &["messages"],
    &["endpoint"],
    &["methods"],
    &["transport"],
    &["service"],
    &["server"],
];

/// The typed client stands apart: it may import only these (and the protocol crate).
const CLIENT_MAY_IMPORT: &[&str] = &["client", "util", "ws"];

/// The rank of a module's folder in [`ORDER`]; `None` for the client and the root.
fn rank(module: &str) -> Option<usize> {
    let folder = module.split("::").next().unwrap_or(module);
    ORDER.iter().position(|layer| layer.contains(&folder))
}

/// Every import that goes up the order (or out of the client's reach), as
/// `file:line: module imports target (folder order: …)`.
fn layer_violations(
    files: &BTreeMap<String, PathBuf>,
    graph: &BTreeMap<String, BTreeMap<String, usize>>,
) -> Vec<String> {
    let mut found = Vec::new();
    for (module, targets) in graph {
        let folder = module.split("::").next().unwrap_or(module);
        for (target, line) in targets {
            let target_folder = target.split("::").next().unwrap_or(target);
            let allowed = if folder == "client" {
                CLIENT_MAY_IMPORT.contains(&target_folder)
            } else {
                match (rank(module), rank(target)) {
                    (Some(from), Some(to)) => to <= from,
                    // The root declares everything; the client is checked from its side.
                    (None, _) => true,
                    (Some(_), None) => false,
                }
            };
            if !allowed {
                let file = files
                    .get(module)
                    .map_or_else(|| module.clone(), |f| f.display().to_string());
                found.push(format!(
                    "{file}:{line}: `{module}` imports `{target}`, which is not below it"
                ));
            }
        }
    }
    found
}

fn framework_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../framework/src")
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let mut graph = imports(&framework_src());
    // The crate root declares and re-exports everything: it is the top, not a layer.
    graph.remove("");
    for targets in graph.values_mut() {
        targets.remove("");
    }
    assert!(
        graph.len() > 20,
        "the walk found the runtime's modules: {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn every_folder_imports_only_folders_below_it() {
    let root = framework_src();
    let files = modules(&root)
        .into_iter()
        .map(|(module, file)| {
            let relative = Path::new("framework/src").join(file.strip_prefix(&root).unwrap());
            (module, relative)
        })
        .collect();
    let mut graph = imports_at(&root);
    graph.remove("");
    for module in graph.keys() {
        assert!(
            module.starts_with("client") || rank(module).is_some(),
            "`{module}` is in no folder of the order: add it to ORDER and to the crate docs"
        );
    }
    let violations = layer_violations(&files, &graph);
    assert!(
        violations.is_empty(),
        "imports against the folder order ({}):\n{}",
        ORDER
            .iter()
            .map(|layer| layer.join("|"))
            .collect::<Vec<_>>()
            .join(" < "),
        violations.join("\n")
    );
}

#[test]
fn the_checker_names_an_import_that_goes_up() {
    let files = BTreeMap::from([("ws::writer".to_owned(), PathBuf::from("ws/writer.rs"))]);
    let code =
        "use std::io;\nuse crate::util::backoff::Backoff;\nuse crate::session::outbound::Queued;\n";
    let mut targets = BTreeMap::new();
    for (path, line) in named_paths_at("ws::writer", code) {
        targets.entry(path[..2].join("::")).or_insert(line);
    }
    let graph = BTreeMap::from([("ws::writer".to_owned(), targets)]);
    assert_eq!(
        layer_violations(&files, &graph),
        ["ws/writer.rs:3: `ws::writer` imports `session::outbound`, which is not below it"]
    );
    let client = BTreeMap::from([(
        "client::calls".to_owned(),
        BTreeMap::from([
            ("server::builder".to_owned(), 7),
            ("util::backoff".to_owned(), 8),
        ]),
    )]);
    assert_eq!(layer_violations(&BTreeMap::new(), &client).len(), 1);
}

#[test]
fn the_checker_sees_a_cycle_when_there_is_one() {
    let paths = named_paths(
        "messages::central",
        "use super::{channel::Listener, delivery::{Delivery, Payload}};\nuse crate::session::SessionShared;\nlet x = crate::streaming::f();",
    );
    let names: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        names,
        [
            "session::SessionShared",
            "streaming::f",
            "messages::channel::Listener",
            "messages::delivery::Delivery",
            "messages::delivery::Payload",
        ]
    );
    let mut graph = BTreeMap::new();
    graph.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    graph.insert("b".to_owned(), BTreeSet::from(["c".to_owned()]));
    graph.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
    graph.get_mut("c").unwrap().clear();
    assert_eq!(find_cycle(&graph), None);
}

#[test]
fn every_file_says_what_it_holds() {
    for (module, file) in modules(&framework_src()) {
        let source = std::fs::read_to_string(&file).unwrap();
        assert!(
            source.starts_with("//!"),
            "{} ({module}) does not open with a //! comment saying which concept it holds",
            file.display()
        );
    }
}
