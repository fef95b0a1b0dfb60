//! JSON Web Tokens as auth keys (`streampod::auth::Jwt`) over real HTTP calls, with
//! real keys of every algorithm it takes (`tests/fixtures/jwt`, made with openssl):
//! a valid token signs in its subject with its scopes; an expired, forged or
//! misaddressed one gets 401; a JWKS picks the key by `kid`.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{Method, StatusCode};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use streampod::auth::{Jwt, Scope};
use streampod::{endpoint, Server, Session};
use streampod_tests::fixtures::Protocol;
use streampod_tests::http::request;

/// Who the caller is.
#[derive(Debug)]
pub struct Who;

#[endpoint]
impl Who {
    /// The signed-in user and their scopes, sorted.
    #[method(require_login)]
    pub async fn me(&self, session: &Session<Protocol>) -> String {
        let mut scopes: Vec<&str> = ["admin", "chat"]
            .into_iter()
            .filter(|scope| session.has_scope(&Scope::from_static(scope)))
            .collect();
        scopes.sort_unstable();
        format!(
            "{} {}",
            session.authenticated_user_id().unwrap_or("-"),
            scopes.join(",")
        )
    }
}

async fn start(jwt: Jwt) -> Server<Protocol> {
    Server::builder()
        .methods("who", Who)
        .authentication(jwt.audience("chat"))
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

fn key(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../tests/fixtures/jwt/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(path).unwrap()
}

/// Seconds since the Unix epoch, `offset` from now.
fn at(offset: i64) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(now).unwrap() + offset
}

/// An Ed25519 key nobody configured.
fn ed_other() -> EncodingKey {
    EncodingKey::from_ed_pem(&key("ed-other-private.pem")).unwrap()
}

fn claims(exp: i64, audience: &str) -> Value {
    json!({"sub": "42", "exp": exp, "aud": audience, "scope": "chat admin"})
}

async fn me(addr: SocketAddr, token: &str) -> (StatusCode, Value) {
    let bearer = format!("Bearer {token}");
    let answer = request(
        addr,
        Method::POST,
        "/who/me",
        "{}",
        &[("authorization", &bearer)],
    )
    .await;
    (answer.status, answer.body)
}

/// A server for `jwt`, and tokens signed with `signing` as `algorithm` (and `kid`):
/// valid, expired and for another audience, then one signed with `other`.
async fn check(
    jwt: Jwt,
    algorithm: Algorithm,
    kid: Option<&str>,
    signing: &EncodingKey,
    other: &EncodingKey,
) {
    let server = start(jwt).await;
    let addr = server.local_addr();
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    let sign = |claims: &Value, key: &EncodingKey| encode(&header, claims, key).unwrap();
    assert_eq!(
        me(addr, &sign(&claims(at(600), "chat"), signing)).await,
        (StatusCode::OK, json!("42 admin,chat")),
        "{algorithm:?}"
    );
    for (token, what) in [
        (sign(&claims(at(-600), "chat"), signing), "expired"),
        (
            sign(&claims(at(600), "billing"), signing),
            "another audience",
        ),
        (sign(&claims(at(600), "chat"), other), "another key"),
    ] {
        let (status, body) = me(addr, &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{algorithm:?}, {what}");
        assert!(body["error"]["message"].is_string(), "a JSON error: {body}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn tokens_of_every_algorithm_sign_in_or_get_401() {
    let secret = b"a shared secret of at least thirty-two bytes";
    check(
        Jwt::hs256(secret),
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(secret),
        &EncodingKey::from_secret(b"a different secret, just as long as that"),
    )
    .await;
    let rsa = EncodingKey::from_rsa_pem(&key("rsa-private.pem")).unwrap();
    let ec = EncodingKey::from_ec_pem(&key("ec-private.pem")).unwrap();
    let ed = EncodingKey::from_ed_pem(&key("ed-private.pem")).unwrap();
    // The "other" key of each is a key of the same kind nobody configured.
    let rsa_other = EncodingKey::from_rsa_pem(&key("rsa-other-private.pem")).unwrap();
    let ec_other = EncodingKey::from_ec_pem(&key("ec-other-private.pem")).unwrap();
    let rs_verifier = Jwt::rs256_pem(&key("rsa-public.pem")).unwrap();
    check(rs_verifier, Algorithm::RS256, None, &rsa, &rsa_other).await;
    let es_verifier = Jwt::es256_pem(&key("ec-public.pem")).unwrap();
    check(es_verifier, Algorithm::ES256, None, &ec, &ec_other).await;
    let ed_verifier = Jwt::eddsa_pem(&key("ed-public.pem")).unwrap();
    check(ed_verifier, Algorithm::EdDSA, None, &ed, &ed_other()).await;
}

#[tokio::test]
async fn a_jwks_verifies_by_key_id_and_bad_key_material_is_a_clear_error() {
    let ed = EncodingKey::from_ed_pem(&key("ed-private.pem")).unwrap();
    let jwks = String::from_utf8(key("jwks.json")).unwrap();
    let jwt = Jwt::jwks(&jwks).unwrap();
    check(
        jwt.clone(),
        Algorithm::EdDSA,
        Some("ed-1"),
        &ed,
        &ed_other(),
    )
    .await;
    // A token naming a key the set does not have.
    let server = start(jwt).await;
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("retired-key".into());
    let token = encode(&header, &claims(at(600), "chat"), &ed).unwrap();
    assert_eq!(
        me(server.local_addr(), &token).await.0,
        StatusCode::UNAUTHORIZED
    );
    server.shutdown().await;

    let wrong =
        Jwt::rs256_pem(b"-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n");
    assert!(wrong.unwrap_err().to_string().contains("RSA public key"));
    assert!(Jwt::jwks("[]").is_err());
    assert!(Jwt::jwks(r#"{"keys":[]}"#)
        .unwrap_err()
        .to_string()
        .contains("no usable key"));
}

#[tokio::test]
async fn a_token_that_expires_is_announced_and_signs_the_session_out_unless_refreshed() {
    use std::time::Duration;
    use streampod_tests::client::TestClient;
    use streampod_tests::recorder::{whoami, Recorder};

    let secret = b"a shared secret of at least thirty-two bytes";
    let members = Recorder {
        login: true,
        ..Recorder::default()
    };
    let server = Server::builder()
        .endpoint("members", members.clone())
        .authentication(Jwt::hs256(secret).leeway(Duration::ZERO))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr();
    let token = |exp: i64| {
        let claims = json!({"sub": "42", "exp": exp});
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    let sign_in = |token: String| format!(r#"{{"command":"auth","args":{{"key":"{token}"}}}}"#);

    // Seconds to live, never refreshed: told at once (less than a minute is left),
    // then signed out: the login-only stream closes, the socket stays.
    let mut lapsing = TestClient::connect(addr, "").await;
    lapsing.send_text(&sign_in(token(at(3)))).await;
    let notice = lapsing.expect_error("auth_expiring").await;
    assert!(
        notice["message"].as_str().unwrap().contains("auth command"),
        "{notice}"
    );
    let (user, id) = whoami(&mut lapsing, "members").await;
    assert_eq!(user, "42");
    lapsing.expect_error("auth_expired").await;
    assert_eq!(
        members.closed_count(id),
        1,
        "what the identity opened closed"
    );
    lapsing.ping().await;
    lapsing.until_pong().await;

    // Refreshed in band with a token of the same user: every stream stays.
    let mut refreshed = TestClient::connect(addr, "").await;
    refreshed.send_text(&sign_in(token(at(3)))).await;
    refreshed.expect_error("auth_expiring").await;
    let (_, id) = whoami(&mut refreshed, "members").await;
    refreshed.send_text(&sign_in(token(at(600)))).await;
    assert!(
        refreshed.is_quiet(Duration::from_secs(4)).await,
        "no expiry after the refresh"
    );
    assert_eq!(members.closed_count(id), 0, "the stream stayed");
    assert_eq!(whoami(&mut refreshed, "members").await.0, "42");
    server.shutdown().await;
}
