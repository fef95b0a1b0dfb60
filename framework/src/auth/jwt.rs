//! JSON Web Tokens as auth keys ([`Jwt`]): verified with `jsonwebtoken` (HS256, RS256,
//! ES256 or EdDSA), the user from `sub`, scopes from a configurable claim, the expiry
//! from `exp`; `aud` and `iss` checked when configured.

use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::{AuthInfo, AuthenticationHandler, Refusal, Scope};
use jsonwebtoken::errors::ErrorKind;
use crate::util::log_limit::RateLimitedLog;
use crate::util::peer_text::PeerText;

/// Why a [`Jwt`] could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// A key (PEM or JWK) did not parse; check its format and algorithm.
    #[error("the key does not parse as {what}: {source}")]
    Key {
        /// What the key was read as.
        what: &'static str,
        /// The parser's error.
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    /// The JWKS is not a JSON Web Key Set (`{"keys":[…]}`).
    #[error("the JWKS does not parse: {0}")]
    Jwks(#[source] serde_json::Error),
    /// The JWKS holds no key this handler can verify with.
    #[error("the JWKS holds no usable key (RSA, EC P-256 or Ed25519, with an algorithm)")]
    NoKeys,
}

/// An [`AuthenticationHandler`] that takes JSON Web Tokens: a token whose signature,
/// expiry (`exp`, required) and, when configured, audience and issuer check out signs
/// in the user in `sub`, with the scopes of the scope claim (`"scope"` by default: a
/// space-separated string or an array of strings) and the token's expiry as
/// [`AuthInfo::expires_at`]. Anything else is refused (the reason is logged at debug
/// level, never the token).
///
/// ```
/// use streampod::auth::Jwt;
///
/// let auth = Jwt::hs256(b"a secret of at least 32 bytes, from config")
///     .audience("chat")
///     .issuer("https://login.example.com");
/// # let _ = auth;
/// ```
#[derive(Clone)]
pub struct Jwt {
    /// Verification keys, with the key id (`kid`) each answers to, if any.
    keys: Vec<(Option<String>, DecodingKey, Algorithm)>,
    audience: Option<String>,
    issuer: Option<String>,
    scope_claim: String,
    leeway: Duration,
}

impl fmt::Debug for Jwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwt")
            .field("keys", &self.keys.len())
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("scope_claim", &self.scope_claim)
            .finish_non_exhaustive()
    }
}

impl Jwt {
    fn with_keys(keys: Vec<(Option<String>, DecodingKey, Algorithm)>) -> Self {
        Self {
            keys,
            audience: None,
            issuer: None,
            scope_claim: "scope".to_owned(),
            leeway: Duration::from_secs(30),
        }
    }

    /// Tokens signed with HS256 and `secret`.
    pub fn hs256(secret: &[u8]) -> Self {
        Self::with_keys(vec![(None, DecodingKey::from_secret(secret), Algorithm::HS256)])
    }

    /// Tokens signed with `algorithm`, verified with the public key `pem` as `parse`
    /// reads it (`what` names the key in an error).
    fn from_pem(
        pem: &[u8],
        what: &'static str,
        parse: fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>,
        algorithm: Algorithm,
    ) -> Result<Self, JwtError> {
        let key = parse(pem).map_err(|source| JwtError::Key { what, source })?;
        Ok(Self::with_keys(vec![(None, key, algorithm)]))
    }

    /// Tokens signed with RS256, verified with the RSA public key `pem`.
    ///
    /// # Errors
    ///
    /// [`JwtError::Key`] when `pem` is no RSA public key.
    pub fn rs256_pem(pem: &[u8]) -> Result<Self, JwtError> {
        Self::from_pem(pem, "an RSA public key (PEM)", DecodingKey::from_rsa_pem, Algorithm::RS256)
    }

    /// Tokens signed with ES256, verified with the P-256 public key `pem`.
    ///
    /// # Errors
    ///
    /// [`JwtError::Key`] when `pem` is no EC public key.
    pub fn es256_pem(pem: &[u8]) -> Result<Self, JwtError> {
        Self::from_pem(pem, "an EC public key (PEM)", DecodingKey::from_ec_pem, Algorithm::ES256)
    }

    /// Tokens signed with EdDSA, verified with the Ed25519 public key `pem`.
    ///
    /// # Errors
    ///
    /// [`JwtError::Key`] when `pem` is no Ed25519 public key.
    pub fn eddsa_pem(pem: &[u8]) -> Result<Self, JwtError> {
        Self::from_pem(pem, "an Ed25519 public key (PEM)", DecodingKey::from_ed_pem, Algorithm::EdDSA)
    }

    /// Tokens verified with the keys of a JSON Web Key Set (`{"keys":[…]}`, as an
    /// identity provider publishes it): a token's `kid` picks the key; without one,
    /// every key is tried.
    ///
    /// # Errors
    ///
    /// [`JwtError::Jwks`] when `json` is no key set, [`JwtError::NoKeys`] when none of
    /// its keys can verify.
    pub fn jwks(json: &str) -> Result<Self, JwtError> {
        let set: JwkSet = serde_json::from_str(json).map_err(JwtError::Jwks)?;
        let keys: Vec<_> = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let algorithm = jwk.common.key_algorithm?;
                let algorithm = format!("{algorithm:?}").parse::<Algorithm>().ok()?;
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some((jwk.common.key_id.clone(), key, algorithm))
            })
            .collect();
        if keys.is_empty() {
            return Err(JwtError::NoKeys);
        }
        Ok(Self::with_keys(keys))
    }

    /// Accepts only tokens whose `aud` names `audience`.
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Accepts only tokens whose `iss` is `issuer`.
    #[must_use]
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Reads scopes from the claim `name` (default `"scope"`).
    #[must_use]
    pub fn scope_claim(mut self, name: impl Into<String>) -> Self {
        self.scope_claim = name.into();
        self
    }

    /// How far clocks may disagree on `exp` (default 30 s).
    #[must_use]
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The identity `token` proves, or why not (for the client, and for the log).
    fn verify(&self, token: &str) -> Result<AuthInfo, (Refusal, String)> {
        let header =
            decode_header(token).map_err(|e| (Refusal::Malformed, format!("not a token: {e}")))?;
        let mut last = (
            Refusal::BadSignature,
            "no key for the token's algorithm or key id".to_owned(),
        );
        for (kid, key, algorithm) in &self.keys {
            if *algorithm != header.alg || (header.kid.is_some() && kid.is_some() && *kid != header.kid) {
                continue;
            }
            let mut validation = Validation::new(*algorithm);
            validation.leeway = self.leeway.as_secs();
            // `sub` is checked below: a number is taken too.
            validation.set_required_spec_claims(&["exp"]);
            match &self.audience {
                Some(audience) => validation.set_audience(&[audience]),
                None => validation.validate_aud = false,
            }
            if let Some(issuer) = &self.issuer {
                validation.set_issuer(&[issuer]);
            }
            match decode::<Value>(token, key, &validation) {
                Ok(data) => {
                    return self
                        .identity(&data.claims)
                        .map_err(|why| (Refusal::Malformed, why));
                }
                Err(error) => last = (refusal_of(error.kind()), error.to_string()),
            }
        }
        Err(last)
    }

    fn identity(&self, claims: &Value) -> Result<AuthInfo, String> {
        let user = match &claims["sub"] {
            Value::String(sub) if !sub.is_empty() => sub.clone(),
            Value::Number(sub) => sub.to_string(),
            _ => return Err("no subject ('sub')".into()),
        };
        let scopes: HashSet<Scope> = match &claims[self.scope_claim.as_str()] {
            Value::String(list) => list.split_whitespace().map(Scope::new).collect(),
            Value::Array(list) => list
                .iter()
                .filter_map(Value::as_str)
                .map(Scope::new)
                .collect(),
            _ => HashSet::new(),
        };
        let expires_at = claims["exp"]
            .as_u64()
            .map(|exp| UNIX_EPOCH + Duration::from_secs(exp));
        let mut auth = AuthInfo::new(user).with_scopes(scopes);
        auth.expires_at = expires_at;
        auth.issued_at = claims["iat"]
            .as_u64()
            .map(|iat| UNIX_EPOCH + Duration::from_secs(iat));
        Ok(auth)
    }
}

/// What a client is told of a token `jsonwebtoken` refused.
fn refusal_of(kind: &ErrorKind) -> Refusal {
    match kind {
        ErrorKind::ExpiredSignature => Refusal::Expired,
        ErrorKind::ImmatureSignature => Refusal::NotAccepted,
        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => Refusal::BadSignature,
        ErrorKind::InvalidAudience => Refusal::WrongAudience,
        ErrorKind::InvalidIssuer => Refusal::WrongIssuer,
        _ => Refusal::Malformed,
    }
}

impl AuthenticationHandler for Jwt {
    async fn authenticate(&self, key: &str) -> Option<AuthInfo> {
        self.check(key).await.ok()
    }

    async fn check(&self, key: &str) -> Result<AuthInfo, Refusal> {
        static REFUSED: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(10));
        self.verify(key).map_err(|(refusal, why)| {
            if let Some(left_out) = REFUSED.ready() {
                tracing::debug!(target: "streampod::auth", reason = refusal.as_str(), why = %PeerText(&why), left_out, "token refused");
            }
            refusal
        })
    }
}

/// Seconds since the Unix epoch, `offset` from now (negative: in the past).
#[cfg(test)]
fn unix_time(offset: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(now).unwrap_or(i64::MAX) + offset
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    use super::*;

    const SECRET: &[u8] = b"a test secret that is long enough for HS256";

    fn token(claims: &Value) -> String {
        encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(SECRET)).unwrap()
    }

    #[test]
    fn a_valid_token_signs_in_its_subject_with_scopes_and_expiry() {
        let exp = unix_time(600);
        let auth = Jwt::hs256(SECRET)
            .verify(&token(&json!({"sub": "42", "exp": exp, "scope": "chat admin"})))
            .unwrap();
        assert_eq!(auth.user_id, "42");
        assert!(auth.has_scope(&Scope::new("admin")) && auth.has_scope(&Scope::new("chat")));
        let exp = u64::try_from(exp).unwrap();
        assert_eq!(auth.expires_at, Some(UNIX_EPOCH + Duration::from_secs(exp)));
        // Scopes as an array, from another claim.
        let auth = Jwt::hs256(SECRET)
            .scope_claim("roles")
            .verify(&token(&json!({"sub": 7, "exp": unix_time(60), "roles": ["a", "b"]})))
            .unwrap();
        assert_eq!(auth.user_id, "7");
        assert_eq!(auth.scopes.len(), 2);
    }

    #[test]
    fn expired_forged_misaddressed_and_subjectless_tokens_are_refused() {
        let jwt = Jwt::hs256(SECRET).audience("chat").issuer("login");
        let good = json!({"sub": "1", "exp": unix_time(600), "aud": "chat", "iss": "login"});
        assert!(jwt.verify(&token(&good)).is_ok());
        let mut expired = good.clone();
        expired["exp"] = json!(unix_time(-600));
        assert_eq!(jwt.verify(&token(&expired)).unwrap_err().0, Refusal::Expired);
        let forged = encode(&Header::new(Algorithm::HS256), &good, &EncodingKey::from_secret(b"another secret, also long enough")).unwrap();
        assert_eq!(jwt.verify(&forged).unwrap_err().0, Refusal::BadSignature);
        let mut elsewhere = good.clone();
        elsewhere["aud"] = json!("billing");
        assert_eq!(jwt.verify(&token(&elsewhere)).unwrap_err().0, Refusal::WrongAudience);
        let mut other_issuer = good.clone();
        other_issuer["iss"] = json!("someone");
        assert_eq!(jwt.verify(&token(&other_issuer)).unwrap_err().0, Refusal::WrongIssuer);
        let mut nobody = good.clone();
        nobody.as_object_mut().unwrap().remove("sub");
        assert!(jwt.verify(&token(&nobody)).is_err());
        assert_eq!(jwt.verify("not.a.token").unwrap_err().0, Refusal::Malformed);
    }
}
