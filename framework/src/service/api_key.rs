//! The publish API's key, as the server keeps it: a digest, compared in constant time.

use sha2::{Digest, Sha256};

/// The API's configuration: the digest of its key (the key itself is not kept).
#[derive(Clone)]
pub(crate) struct PublishApi {
    key_digest: [u8; 32],
}

impl std::fmt::Debug for PublishApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PublishApi { key: <redacted> }")
    }
}

impl PublishApi {
    /// The API, open to requests that carry `key`.
    pub(crate) fn new(key: &str) -> Self {
        Self {
            key_digest: Sha256::digest(key.as_bytes()).into(),
        }
    }

    /// Whether `offered` is the key, compared in constant time (through digests).
    pub(crate) fn accepts(&self, offered: &str) -> bool {
        let offered: [u8; 32] = Sha256::digest(offered.as_bytes()).into();
        offered
            .iter()
            .zip(self.key_digest)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_checked_by_value_and_never_shown() {
        let api = PublishApi::new("s3cret");
        assert!(api.accepts("s3cret"));
        assert!(!api.accepts("s3cret "));
        assert!(!api.accepts(""));
        assert!(!format!("{api:?}").contains("s3cret"));
    }
}
