//! All YAML reading: serde_yaml parses the document, and a line scanner finds where each
//! key and list item sits (serde_yaml's values carry no positions) and which `###` doc
//! comments precede it. Swapping the YAML crate is a change to this file only.

use std::collections::HashMap;

use crate::diagnostic::{Diagnostic, Pos, SourceFile};

/// A YAML value with the position of its text.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) value: Value,
    /// Where the value's text starts (inside quotes for a quoted scalar), or its key's
    /// position when the value does not sit on the key's line.
    pub(crate) pos: Pos,
    /// The `###` comment lines directly above the value's key or list item.
    pub(crate) docs: Vec<String>,
}

/// The shapes a model file uses.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// A string, number or bool, as text.
    Scalar(String),
    /// `null` or an empty value.
    Null,
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// One `key: value` of a mapping.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) key_pos: Pos,
    /// The `###` comment lines directly above the key.
    pub(crate) docs: Vec<String>,
    pub(crate) value: Node,
}

impl Node {
    /// What the value is, for messages: "a string", "a list", …
    pub(crate) fn describe(&self) -> &'static str {
        match self.value {
            Value::Scalar(_) => "a scalar",
            Value::Null => "empty",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Parses a model file into a positioned tree.
///
/// # Errors
///
/// A diagnostic at the position serde_yaml reports for a syntax error.
pub(crate) fn parse(file: &SourceFile) -> Result<Node, Diagnostic> {
    let index = PositionIndex::scan(&file.text);
    let value: serde_yaml::Value = serde_yaml::from_str(&file.text).map_err(|e| {
        // serde_yaml places a duplicate key at its mapping; the scan knows the repeat.
        if let Some((path, pos, first_line)) = index.duplicates.first() {
            let key = path.last().map_or("", String::as_str);
            return file.error(
                *pos,
                format!("duplicate key '{key}' (first on line {first_line})"),
            );
        }
        if let Some((line, column)) = first_indenting_tab(&file.text) {
            return file.error(
                Pos::new(line, column, 1),
                "a tab in the indentation: YAML indents with spaces only",
            );
        }
        let pos = e
            .location()
            .map_or(Pos::new(1, 1, 1), |l| Pos::new(l.line(), l.column(), 1));
        let message = e.to_string();
        // serde_yaml appends " at line X column Y"; the headline has it already.
        let message = message.split(" at line ").next().unwrap_or(&message);
        let indentation = ["mapping values are not allowed", "did not find expected", "block"];
        if indentation.iter().any(|m| message.contains(m)) {
            return file.error(
                pos,
                format!("invalid YAML: the indentation does not line up here, or a value holds an unquoted ': ' (quote it); indent each level by the same number of spaces ({message})"),
            );
        }
        file.error(pos, format!("invalid YAML: {message}"))
    })?;
    let mut path = Vec::new();
    convert(&value, &index, &mut path, Pos::new(1, 1, 1), file)
}

/// The line and column of the first tab in a line's leading whitespace.
fn first_indenting_tab(text: &str) -> Option<(usize, usize)> {
    text.lines().enumerate().find_map(|(number, line)| {
        let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
        line[..indent]
            .find('\t')
            .map(|at| (number + 1, line[..at].chars().count() + 1))
    })
}

/// The name a file declares (`class: Name` at the start of a line), read from the text
/// alone: for a file that does not parse, so its name is not reported as unknown too.
pub(crate) fn declared_name(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let rest = ["class:", "exception:", "enum:"]
            .iter()
            .find_map(|key| line.strip_prefix(key))?;
        let name = rest.split('#').next().unwrap_or("").trim();
        (!name.is_empty()).then(|| name.to_owned())
    })
}

fn convert(
    value: &serde_yaml::Value,
    index: &PositionIndex,
    path: &mut Vec<String>,
    fallback: Pos,
    file: &SourceFile,
) -> Result<Node, Diagnostic> {
    let located = index.positions.get(path.as_slice());
    let pos = located
        .and_then(|l| l.value)
        .unwrap_or_else(|| located.map_or(fallback, |l| l.key));
    let value = match value {
        serde_yaml::Value::Null => Value::Null,
        serde_yaml::Value::Bool(b) => Value::Scalar(b.to_string()),
        serde_yaml::Value::Number(n) => Value::Scalar(n.to_string()),
        serde_yaml::Value::String(s) => Value::Scalar(s.clone()),
        serde_yaml::Value::Sequence(items) => {
            let mut nodes = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                nodes.push(convert(item, index, path, pos, file)?);
                path.pop();
            }
            Value::Seq(nodes)
        }
        serde_yaml::Value::Mapping(mapping) => {
            let mut entries = Vec::with_capacity(mapping.len());
            for (key, item) in mapping {
                let key = match key {
                    serde_yaml::Value::String(s) => s.clone(),
                    serde_yaml::Value::Bool(b) => b.to_string(),
                    serde_yaml::Value::Number(n) => n.to_string(),
                    _ => return Err(file.error(pos, "mapping keys must be plain names")),
                };
                path.push(key.clone());
                let located = index.positions.get(path.as_slice());
                let key_pos = located.map_or(pos, |l| l.key);
                let docs = index.docs.get(path.as_slice()).cloned().unwrap_or_default();
                let value = convert(item, index, path, key_pos, file)?;
                path.pop();
                entries.push(Entry {
                    key,
                    key_pos,
                    docs,
                    value,
                });
            }
            Value::Map(entries)
        }
        serde_yaml::Value::Tagged(tagged) => {
            return Err(file.error(
                pos,
                format!(
                    "YAML tags ('!{}') are not supported in model files",
                    tagged.tag
                ),
            ));
        }
    };
    let docs = index.docs.get(path.as_slice()).cloned().unwrap_or_default();
    Ok(Node { value, pos, docs })
}

/// Where a key (or list item) and its inline value sit.
#[derive(Debug, Clone, Copy)]
struct Located {
    key: Pos,
    value: Option<Pos>,
}

/// Positions and doc comments of block-style keys and list items, by path. Flow-style
/// (`{a: b}`) content is not indexed; its nodes fall back to the enclosing key's position.
#[derive(Debug, Default)]
struct PositionIndex {
    positions: HashMap<Vec<String>, Located>,
    docs: HashMap<Vec<String>, Vec<String>>,
    /// Keys seen twice in one mapping: path, position of the repeat, line of the first.
    duplicates: Vec<(Vec<String>, Pos, usize)>,
}

/// One open level of the block structure while scanning.
struct Level {
    indent: usize,
    segment: String,
    is_item: bool,
}

impl PositionIndex {
    fn scan(text: &str) -> Self {
        let mut index = Self::default();
        let mut stack: Vec<Level> = Vec::new();
        let mut item_counts: HashMap<Vec<String>, usize> = HashMap::new();
        let mut pending_docs: Vec<String> = Vec::new();

        for (line_index, line) in text.lines().enumerate() {
            let line_number = line_index + 1;
            let trimmed = line.trim_start_matches(' ');
            let indent = line.len() - trimmed.len();
            if trimmed.trim().is_empty() {
                pending_docs.clear();
                continue;
            }
            if let Some(doc) = trimmed.strip_prefix("###") {
                pending_docs.push(doc.strip_prefix(' ').unwrap_or(doc).trim_end().to_owned());
                continue;
            }
            if trimmed.starts_with('#') || trimmed.starts_with("---") || trimmed.starts_with("...")
            {
                continue;
            }

            let (mut content, mut content_indent) = (trimmed, indent);
            if let Some(rest) = trimmed
                .strip_prefix('-')
                .filter(|r| r.is_empty() || r.starts_with(' '))
            {
                while stack
                    .last()
                    .is_some_and(|top| top.indent > indent || (top.indent == indent && top.is_item))
                {
                    stack.pop();
                }
                let parent: Vec<String> = stack.iter().map(|l| l.segment.clone()).collect();
                let count = item_counts.entry(parent.clone()).or_insert(0);
                let mut path = parent;
                path.push(count.to_string());
                *count += 1;
                let item_text = rest.trim_start();
                let item_column = indent + 1 + (rest.len() - item_text.len()) + 1;
                let located = Located {
                    key: Pos::new(line_number, indent + 1, 1),
                    value: scalar_pos(line_number, item_column, item_text),
                };
                index.positions.insert(path.clone(), located);
                index.docs.insert(path, std::mem::take(&mut pending_docs));
                stack.push(Level {
                    indent,
                    segment: (*count - 1).to_string(),
                    is_item: true,
                });
                content_indent = indent + 1 + (rest.len() - item_text.len());
                content = item_text;
                if content.is_empty() {
                    continue;
                }
            }

            let Some((key, after)) = split_key(content) else {
                pending_docs.clear();
                continue;
            };
            while stack.last().is_some_and(|top| top.indent >= content_indent) {
                stack.pop();
            }
            let mut path: Vec<String> = stack.iter().map(|l| l.segment.clone()).collect();
            path.push(key.to_owned());
            let value_text = after.trim_start();
            let value_column = content_indent + (content.len() - value_text.len()) + 1;
            let key_pos = Pos::new(line_number, content_indent + 1, key.chars().count());
            let previous = index.positions.insert(
                path.clone(),
                Located {
                    key: key_pos,
                    value: scalar_pos(line_number, value_column, value_text),
                },
            );
            if let Some(previous) = previous {
                index
                    .duplicates
                    .push((path.clone(), key_pos, previous.key.line));
            }
            index.docs.insert(path, std::mem::take(&mut pending_docs));
            stack.push(Level {
                indent: content_indent,
                segment: key.to_owned(),
                is_item: false,
            });
        }
        index
    }
}

/// Splits `key: rest` (or `key:` at the end of the line); quoted keys lose their quotes.
fn split_key(content: &str) -> Option<(&str, &str)> {
    let colon = content
        .char_indices()
        .find(|&(i, c)| c == ':' && content[i + 1..].chars().next().is_none_or(|n| n == ' '))?
        .0;
    let key = content[..colon].trim_end();
    if key.is_empty() || key.starts_with(['{', '[', '"', '\'']) && !is_quoted(key) {
        return None;
    }
    let key = if is_quoted(key) {
        &key[1..key.len() - 1]
    } else {
        key
    };
    Some((key, &content[colon + 1..]))
}

fn is_quoted(text: &str) -> bool {
    text.len() >= 2
        && ((text.starts_with('"') && text.ends_with('"'))
            || (text.starts_with('\'') && text.ends_with('\'')))
}

/// The position of an inline scalar's content (inside quotes), without a trailing comment.
fn scalar_pos(line: usize, column: usize, text: &str) -> Option<Pos> {
    let text = text.split(" #").next().unwrap_or(text).trim_end();
    if text.is_empty() || text.starts_with(['|', '>', '{', '[', '&', '*']) {
        return None;
    }
    let quoted = text.starts_with(['"', '\'']);
    let len = text.chars().count() - if quoted { 2.min(text.len()) } else { 0 };
    Some(Pos::new(line, column + usize::from(quoted), len.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn tree(text: &str) -> Node {
        parse(&SourceFile::new(Path::new("t.yaml"), text.into())).unwrap()
    }

    fn entries(node: &Node) -> &[Entry] {
        match &node.value {
            Value::Map(entries) => entries,
            _ => panic!("not a map"),
        }
    }

    #[test]
    fn finds_keys_values_items_and_docs() {
        let root = tree(
            "### A chat message.\n### Second line.\nclass: Chat\nfields:\n  ### Who wrote it.\n  senderName: String  # comment\n  'quoted': \"int?\"\nvalues:\n- a\n  # plain comment\n  ### B doc\n- b\n",
        );
        let top = entries(&root);
        assert_eq!(top[0].key, "class");
        assert_eq!(top[0].docs, ["A chat message.", "Second line."]);
        assert_eq!(top[0].value.pos, Pos::new(3, 8, 4));
        let fields = entries(&top[1].value);
        assert_eq!(fields[0].key_pos, Pos::new(6, 3, 10));
        assert_eq!(fields[0].value.pos, Pos::new(6, 15, 6));
        assert_eq!(fields[0].docs, ["Who wrote it."]);
        assert_eq!(fields[1].key, "quoted");
        assert_eq!(fields[1].value.pos, Pos::new(7, 14, 4));
        let Value::Seq(items) = &top[2].value.value else {
            panic!()
        };
        assert_eq!(items[0].pos, Pos::new(9, 3, 1));
        assert_eq!(items[1].pos, Pos::new(12, 3, 1));
        let docs = PositionIndex::scan("values:\n- a\n  ### B doc\n- b\n").docs;
        assert_eq!(docs[&vec!["values".to_owned(), "1".to_owned()]], ["B doc"]);
    }

    #[test]
    fn indented_lists_and_nested_maps() {
        let index = PositionIndex::scan("values:\n  - a\n  - b:\n      x: 1\nnext: 2\n");
        let at =
            |p: &[&str]| index.positions[&p.iter().map(ToString::to_string).collect::<Vec<_>>()];
        assert_eq!(at(&["values", "1"]).key.line, 3);
        assert_eq!(at(&["values", "1", "b"]).key, Pos::new(3, 5, 1));
        assert_eq!(
            at(&["values", "1", "b", "x"]).value,
            Some(Pos::new(4, 10, 1))
        );
        assert_eq!(at(&["next"]).key.line, 5);
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = parse(&SourceFile::new(
            Path::new("t.yaml"),
            "class: A\nfields:\n  a: [\n".into(),
        ))
        .unwrap_err();
        assert!(err.line >= 3, "{err}");
        assert!(err.message.starts_with("invalid YAML"), "{err}");
    }
}
