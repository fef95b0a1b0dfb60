//! Auth keys as Serverpod clients send them.

use std::borrow::Cow;

use base64::Engine as _;

/// Unwraps an auth key from the header form Serverpod clients send: `Bearer <key>` gives
/// `<key>`, `Basic <base64>` gives the decoded key, anything else is the key itself.
/// (Serverpod 2.x unwraps only `Basic`, passing `Bearer <key>` to its handler as is;
/// 3.x unwraps both, as here.)
///
/// ```
/// use streampod_protocol::auth::unwrap_key;
/// assert_eq!(unwrap_key("Bearer abc"), "abc");
/// assert_eq!(unwrap_key("Basic YWJj"), "abc");
/// assert_eq!(unwrap_key("abc"), "abc");
/// ```
pub fn unwrap_key(value: &str) -> Cow<'_, str> {
    let value = value.trim();
    let Some((scheme, rest)) = value.split_once(' ') else {
        return Cow::Borrowed(value);
    };
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        Cow::Borrowed(rest)
    } else if scheme.eq_ignore_ascii_case("basic") {
        base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .map_or(Cow::Borrowed(rest), Cow::Owned)
    } else {
        Cow::Borrowed(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwraps_both_schemes_case_insensitively() {
        assert_eq!(unwrap_key("  bearer  tok-1 "), "tok-1");
        assert_eq!(unwrap_key("BASIC dG9rLTE="), "tok-1");
        // Not base64: keep what was sent rather than inventing a key.
        assert_eq!(unwrap_key("Basic !!!"), "!!!");
        assert_eq!(unwrap_key("Token xyz"), "Token xyz");
    }
}
