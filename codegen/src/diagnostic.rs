//! Errors and warnings about model files, printed like rustc's.

use std::fmt;
use std::path::{Path, PathBuf};

/// How bad a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The models cannot be generated.
    Error,
    /// Generated anyway; something in the YAML is ignored.
    Warning,
}

/// A problem in a model file, at a line and column.
///
/// Displays as `models/chat_message.yaml:7:12: unknown type 'Strin' (did you mean 'String'?)`
/// followed by the offending line with the span underlined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file, as the path given to the generator plus the file's name.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// How many characters to underline (at least 1).
    pub len: usize,
    /// What is wrong, including any "did you mean" suggestion.
    pub message: String,
    /// The text of the offending line, when known.
    pub source_line: Option<String>,
}

impl Diagnostic {
    /// The one-line form, `file:line:col: message`.
    pub fn headline(&self) -> String {
        format!(
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// The headline (after `warning: ` for warnings), then the line with the span underlined.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        f.write_str(&self.headline())?;
        if let Some(source_line) = &self.source_line {
            let number = self.line.to_string();
            let gutter = " ".repeat(number.len());
            let pad: String = source_line
                .chars()
                .take(self.column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(
                f,
                "\n{gutter} |\n{number} | {source_line}\n{gutter} | {pad}{}",
                "^".repeat(self.len.max(1))
            )?;
        }
        Ok(())
    }
}

/// The diagnostics of one run, errors and warnings, in the order found.
#[derive(Debug, Default)]
pub(crate) struct Diagnostics {
    pub(crate) items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub(crate) fn push(&mut self, diagnostic: Diagnostic) {
        self.items.push(diagnostic);
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }
}

/// A place in a file, for building diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub(crate) line: usize,
    pub(crate) column: usize,
    pub(crate) len: usize,
}

impl Pos {
    pub(crate) fn new(line: usize, column: usize, len: usize) -> Self {
        Self { line, column, len }
    }

    /// The same line, `offset` characters to the right, `len` long.
    pub(crate) fn shifted(self, offset: usize, len: usize) -> Self {
        Self {
            line: self.line,
            column: self.column + offset,
            len,
        }
    }
}

/// A model file's text and name, for building diagnostics that show the offending line.
#[derive(Debug)]
pub(crate) struct SourceFile {
    pub(crate) path: PathBuf,
    pub(crate) text: String,
}

impl SourceFile {
    pub(crate) fn new(path: &Path, text: String) -> Self {
        Self {
            path: path.to_owned(),
            text,
        }
    }

    pub(crate) fn diagnostic(
        &self,
        severity: Severity,
        pos: Pos,
        message: impl Into<String>,
    ) -> Diagnostic {
        let line = pos.line.max(1);
        Diagnostic {
            severity,
            file: self.path.clone(),
            line,
            column: pos.column.max(1),
            len: pos.len.max(1),
            message: message.into(),
            source_line: self.text.lines().nth(line - 1).map(str::to_owned),
        }
    }

    pub(crate) fn error(&self, pos: Pos, message: impl Into<String>) -> Diagnostic {
        self.diagnostic(Severity::Error, pos, message)
    }

    pub(crate) fn warning(&self, pos: Pos, message: impl Into<String>) -> Diagnostic {
        self.diagnostic(Severity::Warning, pos, message)
    }
}

/// `" (did you mean 'x'?)"` when a candidate is close to `name`, else `""`.
pub(crate) fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    let limit = (name.chars().count() / 3).max(1);
    streampod_protocol::suggest::closest(name, candidates, limit)
        .map(|candidate| format!(" (did you mean '{candidate}'?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            did_you_mean("Strin", ["String", "int"]),
            " (did you mean 'String'?)"
        );
        assert_eq!(
            did_you_mean("strng", ["String", "bool"]),
            " (did you mean 'String'?)"
        );
        assert_eq!(did_you_mean("Banana", ["String", "int"]), "");
    }

    #[test]
    fn renders_like_rustc() {
        let file = SourceFile::new(
            Path::new("models/chat.yaml"),
            "class: Chat\nfields:\n  name: Strin\n".into(),
        );
        let diagnostic = file.error(
            Pos::new(3, 9, 5),
            "unknown type 'Strin' (did you mean 'String'?)",
        );
        assert_eq!(
            diagnostic.to_string(),
            "models/chat.yaml:3:9: unknown type 'Strin' (did you mean 'String'?)\n  |\n3 |   name: Strin\n  |         ^^^^^"
        );
    }
}
