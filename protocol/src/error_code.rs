//! The closed set of error codes a server sends in error frames.

use std::fmt;
use std::str::FromStr;

/// Why the server rejected a frame. The connection stays open after every one of these;
/// problems that make a stream unusable close it with an RFC 6455 code instead.
///
/// On the wire each code is its snake_case name: `{"error":{"code":"unknown_endpoint",…}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The text frame is not JSON.
    InvalidJson,
    /// The JSON is not a frame: neither `endpoint` + `object` nor `command`, or a field has
    /// the wrong type.
    InvalidFrame,
    /// `command` names no command the server knows (known: `ping`, `auth`).
    UnknownCommand,
    /// `endpoint` names no endpoint registered on the server.
    UnknownEndpoint,
    /// `object.className` names no model of the server's protocol.
    UnknownClass,
    /// `object.data` does not decode as the named class.
    InvalidData,
    /// The endpoint requires a signed-in session and this one has no valid auth key.
    Unauthenticated,
    /// The session is signed in but lacks a scope the endpoint requires.
    Forbidden,
    /// A binary frame arrived; the protocol is JSON text frames only.
    BinaryNotSupported,
    /// The endpoint's handler failed; details are in the server log, not on the wire.
    Internal,
    /// The session sent more frames per second than the server allows; the frame was
    /// not handled. Slow down (a client that keeps going is closed with 1008).
    RateLimited,
    /// The session's auth key (a token with an expiry) expires soon: send a fresh one
    /// with the `auth` command; the same user keeps every stream.
    AuthExpiring,
    /// The session's auth key expired without a fresh one: the session is signed out
    /// (what the identity opened or joined closed), and stays open.
    AuthExpired,
    /// The session's identity was revoked (its user or its key, on any node of the
    /// cluster): the session is signed out as for `auth_expired`; a revoked key is
    /// refused from then on.
    AuthRevoked,
}

impl ErrorCode {
    /// Every code, for documentation and exhaustive tests.
    pub const ALL: [ErrorCode; 14] = [
        Self::InvalidJson,
        Self::InvalidFrame,
        Self::UnknownCommand,
        Self::UnknownEndpoint,
        Self::UnknownClass,
        Self::InvalidData,
        Self::Unauthenticated,
        Self::Forbidden,
        Self::BinaryNotSupported,
        Self::Internal,
        Self::RateLimited,
        Self::AuthExpiring,
        Self::AuthExpired,
        Self::AuthRevoked,
    ];

    /// The code's wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::InvalidFrame => "invalid_frame",
            Self::UnknownCommand => "unknown_command",
            Self::UnknownEndpoint => "unknown_endpoint",
            Self::UnknownClass => "unknown_class",
            Self::InvalidData => "invalid_data",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::BinaryNotSupported => "binary_not_supported",
            Self::Internal => "internal",
            Self::RateLimited => "rate_limited",
            Self::AuthExpiring => "auth_expiring",
            Self::AuthExpired => "auth_expired",
            Self::AuthRevoked => "auth_revoked",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is no [`ErrorCode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown error code '{0}'")]
pub struct UnknownErrorCode(pub String);

impl FromStr for ErrorCode {
    type Err = UnknownErrorCode;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|code| code.as_str() == text)
            .ok_or_else(|| UnknownErrorCode(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_name() {
        for code in ErrorCode::ALL {
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(code));
        }
        assert!("nope".parse::<ErrorCode>().is_err());
    }
}
