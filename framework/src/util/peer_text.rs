//! Text a peer chose, made safe to log: control characters (a newline that would start a
//! forged log line, terminal escapes) are written escaped, and the text is cut to a
//! bounded length with the size of what was left out.

use std::fmt;

/// The most characters of a peer's text a log line shows.
pub(crate) const MAX_LOGGED_CHARS: usize = 128;

/// Displays text a peer chose (a room name, a frame's field) safe for a log line: control
/// characters escaped, so no newline can start a forged line, and cut to 128
/// characters with the size of the rest.
///
/// ```
/// use streampod::PeerText;
/// let room = "lobby\nINFO forged";
/// tracing::info!(room = %PeerText(room), "joined");
/// assert_eq!(PeerText(room).to_string(), "lobby\\u{a}INFO forged");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct PeerText<'a>(pub &'a str);

impl fmt::Display for PeerText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, self.0, MAX_LOGGED_CHARS)
    }
}

/// The most characters of an error's text a log line shows.
const MAX_LOGGED_ERROR_CHARS: usize = 2048;

/// An error's text (a method's failure, a panic's message), which may quote what a
/// peer sent: shown like [`PeerText`], with room for a longer explanation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ErrorText<'a>(pub(crate) &'a str);

impl fmt::Display for ErrorText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, self.0, MAX_LOGGED_ERROR_CHARS)
    }
}

/// Writes `text` with control characters escaped, cut after `max` characters.
fn write_escaped(f: &mut fmt::Formatter<'_>, text: &str, max: usize) -> fmt::Result {
    for (shown, (at, c)) in text.char_indices().enumerate() {
        if shown == max {
            return write!(f, "…(+{} bytes)", text.len() - at);
        }
        if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}') {
            write!(f, "{}", c.escape_unicode())?;
        } else {
            write!(f, "{c}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_so_no_line_can_be_forged() {
        let shown = PeerText("x\nINFO forged\r\u{1b}[31m\u{202e}").to_string();
        assert_eq!(shown, "x\\u{a}INFO forged\\u{d}\\u{1b}[31m\\u{202e}");
        assert!(!shown.contains('\n'));
    }

    #[test]
    fn long_text_is_cut_with_the_size_left_out() {
        let long = "é".repeat(1000);
        let shown = PeerText(&long).to_string();
        assert!(shown.starts_with(&"é".repeat(MAX_LOGGED_CHARS)));
        assert!(shown.ends_with(&format!("…(+{} bytes)", 2 * (1000 - MAX_LOGGED_CHARS))));
        assert_eq!(PeerText("short").to_string(), "short");
    }
}
