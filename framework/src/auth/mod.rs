//! Authentication: turning an auth key into a user and scopes.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::rate_limit::{PerAddress, RateLimit};
use crate::util::log_limit::RateLimitedLog;

#[cfg(feature = "jwt")]
mod jwt;
mod revocation;

#[cfg(feature = "jwt")]
pub use jwt::{Jwt, JwtError};
pub(crate) use revocation::{
    Fingerprint, KeyStamp, Revocations, Revoked, DEFAULT_MAX as DEFAULT_MAX_REVOCATIONS,
    DEFAULT_RETENTION as DEFAULT_REVOCATION_RETENTION,
};

/// A permission a signed-in user may hold, such as `"admin"`.
///
/// ```
/// use streampod::auth::Scope;
/// const ADMIN: Scope = Scope::from_static("admin");
/// assert_eq!(ADMIN.as_str(), "admin");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(Cow<'static, str>);

impl Scope {
    /// A scope from a string known at compile time, usable in `const`s.
    pub const fn from_static(name: &'static str) -> Self {
        Self(Cow::Borrowed(name))
    }

    /// A scope from any string.
    pub fn new(name: impl Into<String>) -> Self {
        Self(Cow::Owned(name.into()))
    }

    /// The scope's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who a session is: what an [`AuthenticationHandler`] returns for a valid key.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AuthInfo {
    /// The user's id (numeric ids are written as decimal strings).
    pub user_id: String,
    /// The scopes the user holds.
    pub scopes: HashSet<Scope>,
    /// When the key stops being valid (a token's `exp`), if it does.
    pub expires_at: Option<SystemTime>,
    /// When the key was issued (a token's `iat`), if the handler knows: a
    /// [`revoke_user`](crate::ServerHandle::revoke_user) refuses the user's keys issued
    /// before it from then on.
    pub issued_at: Option<SystemTime>,
    /// Which key signed the identity in, and when: what a revocation matches. Set by
    /// the server when it accepts a key; not part of the identity's equality.
    pub(crate) key: Option<KeyStamp>,
}

impl PartialEq for AuthInfo {
    fn eq(&self, other: &Self) -> bool {
        self.user_id == other.user_id
            && self.scopes == other.scopes
            && self.expires_at == other.expires_at
            && self.issued_at == other.issued_at
    }
}

impl Eq for AuthInfo {}

impl AuthInfo {
    /// A user with no scopes.
    pub fn new(user_id: impl Into<String>) -> Self {
        Self {
            user_id: user_id.into(),
            scopes: HashSet::new(),
            expires_at: None,
            issued_at: None,
            key: None,
        }
    }

    /// The same identity, valid until `at`.
    #[must_use]
    pub fn expiring_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// The same identity, from a key issued at `at`.
    #[must_use]
    pub fn issued(mut self, at: SystemTime) -> Self {
        self.issued_at = Some(at);
        self
    }

    /// Adds scopes.
    #[must_use]
    pub fn with_scopes(mut self, scopes: impl IntoIterator<Item = Scope>) -> Self {
        self.scopes.extend(scopes);
        self
    }

    /// Whether the user holds `scope`.
    pub fn has_scope(&self, scope: &Scope) -> bool {
        self.scopes.contains(scope)
    }
}

/// Checks auth keys. The key comes from the socket's `?auth=` query parameter, its
/// `Authorization` header (`Bearer`/`Basic` unwrapped), or the `auth` command; the
/// server never logs it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot authenticate sessions",
    note = "implement `AuthenticationHandler`, or wrap an async closure with `streampod::auth::from_fn`"
)]
pub trait AuthenticationHandler: Send + Sync + 'static {
    /// The user behind `key`, or `None` when the key is not valid. Write it as
    /// `async fn authenticate(&self, key: &str) -> Option<AuthInfo>`.
    fn authenticate(&self, key: &str) -> impl Future<Output = Option<AuthInfo>> + Send;

    /// The user behind `key`, or why the key is refused: what the server calls, and
    /// what clients are told (an error frame, a `401` body's `reason`). By default
    /// [`authenticate`](Self::authenticate)'s answer, a refusal being
    /// [`Refusal::NotAccepted`]; a handler that knows more ([`Jwt`] does) says so here.
    fn check(&self, key: &str) -> impl Future<Output = Result<AuthInfo, Refusal>> + Send {
        async move { self.authenticate(key).await.ok_or(Refusal::NotAccepted) }
    }
}

/// Why an auth key was refused, as clients are told. The wording never repeats the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The handler did not accept the key and said no more.
    NotAccepted,
    /// The key (a token) expired.
    Expired,
    /// The token is not signed by any of the configured keys.
    BadSignature,
    /// The token is for another audience (`aud`).
    WrongAudience,
    /// The token comes from another issuer (`iss`).
    WrongIssuer,
    /// The key is not a token the handler can read (or misses a required claim).
    Malformed,
    /// The key was revoked ([`ServerHandle::revoke_key`](crate::ServerHandle::revoke_key)).
    Revoked,
}

impl Refusal {
    /// A short snake_case name for programs: `not_accepted`, `expired`,
    /// `bad_signature`, `wrong_audience`, `wrong_issuer`, `malformed`, `revoked`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotAccepted => "not_accepted",
            Self::Expired => "expired",
            Self::BadSignature => "bad_signature",
            Self::WrongAudience => "wrong_audience",
            Self::WrongIssuer => "wrong_issuer",
            Self::Malformed => "malformed",
            Self::Revoked => "revoked",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotAccepted => "the auth key was not accepted",
            Self::Expired => "the auth key expired",
            Self::BadSignature => "the auth key's signature does not match",
            Self::WrongAudience => "the auth key is for another audience",
            Self::WrongIssuer => "the auth key is from another issuer",
            Self::Malformed => "the auth key is malformed",
            Self::Revoked => "the auth key was revoked",
        })
    }
}

/// [`AuthenticationHandler`] as an object, as the server stores it.
#[async_trait]
pub(crate) trait DynAuthenticationHandler: Send + Sync + 'static {
    async fn check(&self, key: &str) -> Result<AuthInfo, Refusal>;
}

#[async_trait]
impl<H: AuthenticationHandler> DynAuthenticationHandler for H {
    async fn check(&self, key: &str) -> Result<AuthInfo, Refusal> {
        AuthenticationHandler::check(self, key).await
    }
}

/// What checking a key found.
#[derive(Debug)]
pub(crate) enum KeyCheck {
    /// The key signs in this user.
    Accepted(AuthInfo),
    /// The handler did not accept the key (or the server has none), for this reason.
    Refused(Refusal),
    /// The client's address sent too many refused keys lately: the key was not even
    /// looked at. Try again after the seconds given.
    Throttled(u32),
}

/// The one place every transport checks an auth key: the app's handler behind a
/// per-address limit on refused keys, so guessing keys costs an attacker time
/// ([`ServerConfig::failed_auth_rate_limit`](crate::ServerConfig::failed_auth_rate_limit)).
#[derive(Clone, Default)]
pub(crate) struct Authenticator {
    handler: Option<Arc<dyn DynAuthenticationHandler>>,
    refused: Option<Arc<PerAddress>>,
    revocations: Arc<Revocations>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("handler", &self.handler.is_some())
            .field("throttled", &self.refused.is_some())
            .finish()
    }
}

impl Authenticator {
    /// `handler` (none: every key is refused) with refused keys limited per address to
    /// `limit` (none: unlimited).
    pub(crate) fn new(
        handler: Option<Arc<dyn DynAuthenticationHandler>>,
        limit: Option<RateLimit>,
        revocations: Arc<Revocations>,
    ) -> Self {
        Self {
            handler,
            refused: limit.map(|limit| Arc::new(PerAddress::new(limit))),
            revocations,
        }
    }

    /// What is revoked on this server (and its cluster).
    pub(crate) fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }

    /// Whether the server checks keys at all.
    pub(crate) fn has_handler(&self) -> bool {
        self.handler.is_some()
    }

    /// Whether `peer` sent too many refused keys lately: `Err` with the seconds to wait.
    pub(crate) fn throttled(&self, peer: IpAddr) -> Result<(), u32> {
        let Some(refused) = &self.refused else {
            return Ok(());
        };
        refused.check(&peer).inspect_err(|_| {
            static THROTTLED: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(10));
            if let Some(left_out) = THROTTLED.ready() {
                tracing::warn!(target: "streampod::auth", %peer, left_out, "refusing keys from an address that sent too many refused keys (guessing?); see ServerConfig::failed_auth_rate_limit");
            }
        })
    }

    /// Counts a key refused from `peer`.
    pub(crate) fn count_refused(&self, peer: IpAddr) {
        if let Some(refused) = &self.refused {
            let _ = refused.take(peer);
        }
    }

    /// Checks `key` (its `Bearer`/`Basic` wrapping already taken off) from `peer`.
    pub(crate) async fn check(&self, peer: IpAddr, key: &str) -> KeyCheck {
        let Some(handler) = &self.handler else {
            return KeyCheck::Refused(Refusal::NotAccepted);
        };
        if let Err(retry_after) = self.throttled(peer) {
            return KeyCheck::Throttled(retry_after);
        }
        let fingerprint = Fingerprint::of(key);
        let checked = handler.check(key).await.and_then(|auth| {
            if self.revocations.refuses(fingerprint, &auth) {
                Err(Refusal::Revoked)
            } else {
                Ok(auth)
            }
        });
        match checked {
            Ok(mut auth) => {
                auth.key = Some(KeyStamp {
                    fingerprint,
                    accepted: std::time::Instant::now(),
                });
                KeyCheck::Accepted(auth)
            }
            Err(refusal) => {
                self.count_refused(peer);
                KeyCheck::Refused(refusal)
            }
        }
    }
}

/// An [`AuthenticationHandler`] from an async function.
///
/// ```
/// use streampod::auth::{self, AuthInfo};
/// let handler = auth::from_fn(|key: String| async move {
///     (key == "secret").then(|| AuthInfo::new("42"))
/// });
/// # let _ = handler;
/// ```
pub fn from_fn<F, Fut>(f: F) -> FnAuthenticationHandler<F>
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<AuthInfo>> + Send + 'static,
{
    FnAuthenticationHandler(f)
}

/// The handler [`from_fn`] returns.
#[derive(Clone)]
pub struct FnAuthenticationHandler<F>(F);

impl<F> fmt::Debug for FnAuthenticationHandler<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnAuthenticationHandler")
    }
}

impl<F, Fut> AuthenticationHandler for FnAuthenticationHandler<F>
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<AuthInfo>> + Send + 'static,
{
    fn authenticate(&self, key: &str) -> impl Future<Output = Option<AuthInfo>> + Send {
        (self.0)(key.to_owned())
    }
}
