//! TLS end to end: the convenience server serves `https://` and `wss://` with a PEM
//! certificate and key, the Rust client connects to it when it trusts the certificate
//! and refuses it otherwise, and plain HTTP on the TLS port gets no answer.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(missing_docs, missing_debug_implementations)]

use std::time::Duration;

use serde_json::json;
use streampod::client::{Backoff, Client, ClientError, Incoming};
use streampod::tls::{TlsError, TlsIdentity};
use streampod::{endpoint, Server};
use streampod_tests::fixtures::{ChatMessage, Priority, Protocol, RoomNotFound};
use streampod_tests::rooms::Rooms;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Echo;

#[endpoint]
impl Echo {
    pub async fn echo(&self, text: String) -> String {
        text
    }
}

/// A server on a free port with a fresh self-signed certificate for `localhost`.
async fn start() -> (Server<Protocol>, Vec<u8>) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let identity = TlsIdentity::from_pem(
        certified.cert.pem().as_bytes(),
        certified.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let server = Server::builder()
        .endpoint("rooms", Rooms::default())
        .methods("echo", Echo)
        .tls(identity)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    (server, certified.cert.der().to_vec())
}

fn chat(content: &str) -> ChatMessage {
    ChatMessage {
        sender_name: "t".into(),
        content: content.into(),
        timestamp: None,
        channel_id: "news".into(),
        priority: Priority::Normal,
    }
}

#[tokio::test]
async fn wss_and_https_with_a_trusted_certificate() {
    let (server, der) = start().await;
    let port = server.local_addr().port();
    let client = Client::<Protocol>::builder(format!("wss://localhost:{port}"))
        .add_root_certificate(der.clone())
        .connect()
        .await
        .unwrap();
    client.send("rooms", chat("join")).unwrap();
    match tokio::time::timeout(Duration::from_secs(10), client.recv())
        .await
        .unwrap()
    {
        Some(Incoming::Message {
            message: Protocol::ChatMessage(ack),
            ..
        }) => assert_eq!(ack.content, "ack:join"),
        other => panic!("expected the ack, got {other:?}"),
    }
    let echoed: String = client
        .call::<_, RoomNotFound>("echo", "echo", json!({"text": "over https"}))
        .await
        .unwrap();
    assert_eq!(echoed, "over https");
    client.close().await;

    let calls = Client::<Protocol>::builder(format!("https://localhost:{port}"))
        .add_root_certificate(der)
        .method_client()
        .unwrap();
    let echoed: String = calls
        .call::<_, RoomNotFound>("echo", "echo", json!({"text": "no socket"}))
        .await
        .unwrap();
    assert_eq!(echoed, "no socket");
    server.shutdown().await;
}

#[tokio::test]
async fn an_untrusted_certificate_and_plain_http_are_refused() {
    let (server, _) = start().await;
    let port = server.local_addr().port();
    let result = Client::<Protocol>::builder(format!("wss://localhost:{port}"))
        .backoff(Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(50),
        ))
        .max_attempts(Some(2))
        .connect()
        .await;
    match result {
        Err(ClientError::Connect {
            last: Some(last), ..
        }) => {
            let text = format!("{last:?}").to_lowercase();
            assert!(text.contains("certificate"), "{text}");
        }
        other => panic!("expected a certificate failure, got {other:?}"),
    }

    // Plain HTTP on the TLS port: no HTTP answer, the connection just ends.
    let mut stream = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server ends the connection");
    assert!(!answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    server.shutdown().await;
}

#[test]
fn bad_pem_says_which_part() {
    assert!(matches!(
        TlsIdentity::from_pem(b"", b""),
        Err(TlsError::NoCertificate)
    ));
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    assert!(matches!(
        TlsIdentity::from_pem(certified.cert.pem().as_bytes(), b"not a key"),
        Err(TlsError::PrivateKey(_))
    ));
    assert!(matches!(
        TlsIdentity::from_pem(
            certified.cert.pem().as_bytes(),
            other.signing_key.serialize_pem().as_bytes()
        ),
        Err(TlsError::Config(_))
    ));
    let debug = format!(
        "{:?}",
        TlsIdentity::from_pem(
            certified.cert.pem().as_bytes(),
            certified.signing_key.serialize_pem().as_bytes()
        )
        .unwrap()
    );
    assert!(!debug.contains("PRIVATE"), "{debug}");
}
