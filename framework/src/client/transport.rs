//! Reaching the server: its address (plain or TLS), the WebSocket handshake, and the
//! HTTP client for method calls.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use http::HeaderValue;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::error::{BoxError, ClientError};
use crate::protocol::frame::EXTENDED_SUBPROTOCOL;

/// An open WebSocket to the server.
pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[cfg(feature = "tls")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "tls"))]
type Connector = HttpConnector;

/// The HTTP client method calls go through (TLS with the `tls` feature).
pub(crate) type HttpClient = hyper_util::client::legacy::Client<Connector, Full<Bytes>>;

/// Certificates to trust besides the public roots (e.g. a self-signed development
/// certificate), DER-encoded.
#[derive(Debug, Clone, Default)]
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(crate) struct ExtraRoots(pub(crate) Vec<Vec<u8>>);

/// One address of the service.
#[derive(Debug)]
struct ServerAddress {
    /// `http(s)://host:port`, for method calls.
    http_base: String,
    /// `ws(s)://host:port`, for the socket.
    ws_base: String,
    /// Reached over TLS.
    secure: bool,
}

impl ServerAddress {
    /// Parses `base` (`http(s)://` or `ws(s)://host[:port]`).
    fn parse(base: &str) -> Result<Self, ClientError> {
        let trimmed = base.trim_end_matches('/');
        let (secure, rest) = if let Some(rest) = trimmed
            .strip_prefix("http://")
            .or_else(|| trimmed.strip_prefix("ws://"))
        {
            (false, rest)
        } else if let Some(rest) = trimmed
            .strip_prefix("https://")
            .or_else(|| trimmed.strip_prefix("wss://"))
        {
            (true, rest)
        } else {
            return Err(ClientError::InvalidUrl(base.to_owned()));
        };
        if rest.is_empty() || rest.contains(char::is_whitespace) {
            return Err(ClientError::InvalidUrl(base.to_owned()));
        }
        let (http_base, ws_base) = if secure {
            (format!("https://{rest}"), format!("wss://{rest}"))
        } else {
            (format!("http://{rest}"), format!("ws://{rest}"))
        };
        Ok(Self {
            http_base,
            ws_base,
            secure,
        })
    }
}

/// Where the service is (one address, or several taken in turn), and how to reach it.
pub(crate) struct Transport {
    /// The service's addresses: the first given, then the alternates.
    servers: Vec<ServerAddress>,
    /// The address in use (an index into `servers`).
    current: AtomicUsize,
    /// `Authorization: Bearer <key>`, checked when set; a refreshed key replaces it.
    authorization: std::sync::RwLock<Option<HeaderValue>>,
    pub(crate) http: HttpClient,
    /// The server answered without streampod's subprotocol once: ask no more.
    legacy_server: AtomicBool,
    /// The TLS configuration of a `wss://`/`https://` server (always `None` without the
    /// `tls` feature).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    tls: Option<TlsConfig>,
}

/// What a TLS connection is opened with (nothing can be, without the `tls` feature).
#[cfg(feature = "tls")]
type TlsConfig = std::sync::Arc<rustls::ClientConfig>;
/// What a TLS connection is opened with (nothing can be, without the `tls` feature).
#[cfg(not(feature = "tls"))]
enum TlsConfig {}

/// `Bearer <key>` as a header value.
fn bearer(key: &str) -> Result<HeaderValue, ClientError> {
    HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| ClientError::InvalidAuthKey)
}

/// The HTTP connector, and the TLS configuration when the server is `secure`.
#[cfg(feature = "tls")]
fn connector(
    _base: &str,
    secure: bool,
    roots: &ExtraRoots,
) -> Result<(Connector, Option<TlsConfig>), ClientError> {
    let tls = std::sync::Arc::new(tls_config(roots)?);
    let mut plain = HttpConnector::new();
    plain.enforce_http(false);
    plain.set_nodelay(true);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*tls).clone())
        .https_or_http()
        .enable_http1()
        .wrap_connector(plain);
    Ok((connector, secure.then_some(tls)))
}

/// The HTTP connector; a `secure` server needs the `tls` feature.
#[cfg(not(feature = "tls"))]
fn connector(
    base: &str,
    secure: bool,
    _roots: &ExtraRoots,
) -> Result<(Connector, Option<TlsConfig>), ClientError> {
    if secure {
        return Err(ClientError::TlsNotEnabled(base.to_owned()));
    }
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Ok((connector, None))
}

impl Transport {
    /// Parses `bases` (each `http(s)://` or `ws(s)://host[:port]`; the first is used
    /// first) and builds the clients.
    pub(crate) fn new(
        bases: &[String],
        auth_key: Option<&str>,
        roots: &ExtraRoots,
    ) -> Result<Self, ClientError> {
        let servers = bases
            .iter()
            .map(|base| ServerAddress::parse(base))
            .collect::<Result<Vec<_>, _>>()?;
        let Some(secure) = servers.iter().find(|server| server.secure) else {
            let first = bases.first().map_or("", String::as_str);
            let (connector, tls) = connector(first, false, roots)?;
            return Self::with(servers, auth_key, connector, tls);
        };
        let (connector, tls) = connector(&secure.http_base, true, roots)?;
        Self::with(servers, auth_key, connector, tls)
    }

    fn with(
        servers: Vec<ServerAddress>,
        auth_key: Option<&str>,
        connector: Connector,
        tls: Option<TlsConfig>,
    ) -> Result<Self, ClientError> {
        let authorization = auth_key.map(bearer).transpose()?;
        Ok(Self {
            servers,
            current: AtomicUsize::new(0),
            authorization: std::sync::RwLock::new(authorization),
            http: hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .build(connector),
            legacy_server: AtomicBool::new(false),
            tls,
        })
    }

    /// The address in use.
    fn server(&self) -> &ServerAddress {
        let current = self.current.load(Ordering::Relaxed);
        &self.servers[current % self.servers.len()]
    }

    /// `http(s)://host:port` of the address in use, for method calls.
    pub(crate) fn http_base(&self) -> &str {
        &self.server().http_base
    }

    /// `ws(s)://host:port` of the address in use, for the sockets.
    pub(crate) fn ws_base(&self) -> &str {
        &self.server().ws_base
    }

    /// Moves to the next address, when there are several; whether it moved.
    pub(crate) fn rotate(&self) -> bool {
        if self.servers.len() < 2 {
            return false;
        }
        let next = (self.current.load(Ordering::Relaxed) + 1) % self.servers.len();
        self.current.store(next, Ordering::Relaxed);
        tracing::info!(target: "streampod::client", server = %self.servers[next].ws_base, "moving to another server");
        true
    }

    /// `Authorization: Bearer <key>` for the key in use, if any.
    pub(crate) fn authorization(&self) -> Option<HeaderValue> {
        self.authorization
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Uses `key` from now on (method calls, reconnects, streaming opens).
    pub(crate) fn set_auth_key(&self, key: &str) -> Result<(), ClientError> {
        let value = bearer(key)?;
        *self
            .authorization
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(value);
        Ok(())
    }

    /// Opens the WebSocket at `/websocket`, signed in with the auth key if there is one,
    /// asking for streampod's extended frames; a server that does not offer them (a
    /// Serverpod server) is then asked without, and remembered.
    pub(crate) async fn open_websocket(&self) -> Result<Socket, BoxError> {
        let extended = !self.legacy_server.load(Ordering::Relaxed);
        match self.handshake(extended).await {
            Err(error) if extended && is_no_subprotocol(&error) => {
                tracing::info!(target: "streampod::client", "the server offers no streampod.v1 frames; using Serverpod's");
                self.legacy_server.store(true, Ordering::Relaxed);
                self.handshake(false).await.map_err(Into::into)
            }
            result => result.map_err(Into::into),
        }
    }

    /// Opens the streaming-method socket at `/v1/websocket` (Serverpod's protocol, no
    /// subprotocol). Calls carry the auth key in their open command.
    pub(crate) async fn open_method_socket(&self) -> Result<Socket, BoxError> {
        self.handshake_at("/v1/websocket", false)
            .await
            .map_err(Into::into)
    }

    async fn handshake(
        &self,
        extended: bool,
    ) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
        self.handshake_at("/websocket", extended).await
    }

    async fn handshake_at(
        &self,
        path: &str,
        extended: bool,
    ) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
        let url = format!("{}{path}", self.ws_base());
        let mut request = url.into_client_request()?;
        if let Some(value) = self.authorization() {
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, value);
        }
        if extended {
            request.headers_mut().insert(
                http::header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(EXTENDED_SUBPROTOCOL),
            );
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_ref().filter(|_| self.server().secure) {
            let connector = tokio_tungstenite::Connector::Rustls(tls.clone());
            let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(
                request,
                None,
                true,
                Some(connector),
            )
            .await?;
            return Ok(socket);
        }
        let (socket, _) = tokio_tungstenite::connect_async_with_config(request, None, true).await?;
        Ok(socket)
    }
}

/// Whether a handshake failed only because the server did not accept the subprotocol.
fn is_no_subprotocol(error: &tokio_tungstenite::tungstenite::Error) -> bool {
    use tokio_tungstenite::tungstenite::error::{Error, ProtocolError, SubProtocolError};
    matches!(
        error,
        Error::Protocol(ProtocolError::SecWebSocketSubProtocolError(
            SubProtocolError::NoSubProtocol
        ))
    )
}

/// The public web roots (webpki-roots) plus `roots`, with ring's cryptography.
#[cfg(feature = "tls")]
fn tls_config(roots: &ExtraRoots) -> Result<rustls::ClientConfig, ClientError> {
    let mut store = rustls::RootCertStore::empty();
    store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for der in &roots.0 {
        store
            .add(rustls::pki_types::CertificateDer::from(der.clone()))
            .map_err(|error| ClientError::InvalidCertificate(Box::new(error)))?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| ClientError::InvalidCertificate(Box::new(error)))?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_addresses_are_taken_in_turn() {
        let bases = ["http://a:1".to_owned(), "ws://b:2/".to_owned()];
        let transport = Transport::new(&bases, None, &ExtraRoots::default()).unwrap();
        assert_eq!(
            (transport.http_base(), transport.ws_base()),
            ("http://a:1", "ws://a:1")
        );
        assert!(transport.rotate());
        assert_eq!(
            (transport.http_base(), transport.ws_base()),
            ("http://b:2", "ws://b:2")
        );
        assert!(transport.rotate());
        assert_eq!(transport.ws_base(), "ws://a:1");
        let one = Transport::new(&bases[..1], None, &ExtraRoots::default()).unwrap();
        assert!(!one.rotate());
        assert!(matches!(
            Transport::new(&["http://a:1".to_owned(), "ftp://b".to_owned()], None, &ExtraRoots::default()),
            Err(ClientError::InvalidUrl(url)) if url == "ftp://b"
        ));
    }
}
