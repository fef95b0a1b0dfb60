//! `Uri`: a URI reference that keeps the exact text it was made from.

use std::fmt;
use std::str::FromStr;

/// A URI reference (RFC 3986/3987): absolute (`https://serverpod.dev`) or relative
/// (`/foo/bar?x=1`), kept exactly as written, the way Dart's `Uri.toString()` gives back
/// what `Uri.parse` read. Equality and hashing compare the text.
///
/// ```
/// use streampod_protocol::types::Uri;
///
/// let uri: Uri = "https://serverpod.dev".parse()?;
/// assert_eq!(uri.as_str(), "https://serverpod.dev"); // no trailing '/' added
/// assert!(uri.is_absolute());
/// assert!(!"/foo/bar?x=1".parse::<Uri>()?.is_absolute());
/// assert!("not a uri".parse::<Uri>().is_err());
/// # Ok::<(), streampod_protocol::InvalidUri>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uri(String);

/// Text that is not a URI reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid URI '{text}': {reason}")]
pub struct InvalidUri {
    text: String,
    reason: String,
}

impl Uri {
    /// Parses `text` as a URI reference, keeping it as it is.
    ///
    /// # Errors
    ///
    /// [`InvalidUri`] when the text is not an RFC 3987 IRI reference (spaces, a bad
    /// percent escape, a stray `[`, …).
    pub fn parse(text: impl Into<String>) -> Result<Self, InvalidUri> {
        let text = text.into();
        match fluent_uri::IriRef::parse(text.as_str()) {
            Ok(_) => Ok(Self(text)),
            Err(error) => Err(InvalidUri {
                reason: error.to_string(),
                text,
            }),
        }
    }

    /// The text, exactly as parsed.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the reference has a scheme (`https:`, `mailto:`), rather than being
    /// relative to some base.
    pub fn is_absolute(&self) -> bool {
        fluent_uri::IriRef::parse(self.0.as_str()).is_ok_and(|iri| iri.has_scheme())
    }

    /// The reference as a [`url::Url`] (normalized, so the text may differ), or `None`
    /// for a relative reference or one `url` rejects.
    pub fn to_url(&self) -> Option<url::Url> {
        url::Url::parse(&self.0).ok()
    }
}

impl fmt::Debug for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Uri {
    type Err = InvalidUri;

    fn from_str(text: &str) -> Result<Self, InvalidUri> {
        Self::parse(text)
    }
}

impl TryFrom<String> for Uri {
    type Error = InvalidUri;

    fn try_from(text: String) -> Result<Self, InvalidUri> {
        Self::parse(text)
    }
}

impl From<url::Url> for Uri {
    fn from(url: url::Url) -> Self {
        Self(url.into())
    }
}

impl AsRef<str> for Uri {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_text_of_every_form() {
        for text in [
            "https://serverpod.dev",
            "https://serverpod.dev/",
            "HTTPS://Serverpod.dev/a/../b?q=1#top",
            "/foo/bar?x=1",
            "foo",
            "?x",
            "#frag",
            "mailto:user@example.com",
            "urn:isbn:0451450523",
            "https://例え.jp/パス",
            "",
        ] {
            assert_eq!(Uri::parse(text).map(|u| u.to_string()), Ok(text.to_owned()));
        }
    }

    #[test]
    fn rejects_what_is_no_reference() {
        for text in ["a b", "http://[::1", "%zz", "https://a.b/%"] {
            let error = Uri::parse(text).unwrap_err();
            assert!(error.to_string().contains(text), "{error}");
        }
    }
}
