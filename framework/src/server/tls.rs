//! TLS for the convenience server: the certificate chain and private key it presents,
//! from PEM or from a ready rustls configuration.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a TLS identity could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate PEM could not be read.
    #[error("cannot read the certificate chain PEM")]
    Certificates(#[source] rustls::pki_types::pem::Error),
    /// The certificate PEM holds no `CERTIFICATE` block.
    #[error("the certificate chain PEM holds no certificate")]
    NoCertificate,
    /// The private key PEM could not be read (PKCS#8, PKCS#1 or SEC1 are accepted).
    #[error("cannot read the private key PEM")]
    PrivateKey(#[source] rustls::pki_types::pem::Error),
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("the certificate and key cannot be used")]
    Config(#[source] rustls::Error),
}

/// What the convenience server presents to TLS clients:
/// [`ServerBuilder::tls`](crate::ServerBuilder::tls).
///
/// ```no_run
/// # fn load() -> Result<streampod::tls::TlsIdentity, Box<dyn std::error::Error>> {
/// let identity = streampod::tls::TlsIdentity::from_pem(
///     &std::fs::read("cert.pem")?,
///     &std::fs::read("key.pem")?,
/// )?;
/// # Ok(identity)
/// # }
/// ```
#[derive(Clone)]
pub struct TlsIdentity {
    config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("TlsIdentity").finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// A certificate chain (leaf first) and its private key, both PEM; HTTP/1.1 only
    /// (WebSockets upgrade over HTTP/1.1), TLS 1.2 and 1.3, ring's cryptography.
    ///
    /// # Errors
    ///
    /// [`TlsError`] saying which part could not be used.
    pub fn from_pem(cert_chain: &[u8], private_key: &[u8]) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_slice_iter(cert_chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(TlsError::Certificates)?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        let key = PrivateKeyDer::from_pem_slice(private_key).map_err(TlsError::PrivateKey)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(TlsError::Config)?;
        // HTTP/2 first (WebSockets included, RFC 8441), HTTP/1.1 for everyone else.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// A rustls configuration built elsewhere (client certificates, certificate
    /// resolvers, another crypto provider). Its ALPN list should offer `http/1.1`, and
    /// `h2` for HTTP/2.
    pub fn from_config(config: Arc<rustls::ServerConfig>) -> Self {
        Self { config }
    }

    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }
}
