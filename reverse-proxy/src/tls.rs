//! TLS termination: an HTTPS listener whose connections, once decrypted, are served by the
//! same `http1` connection loop and the same request path as plain HTTP.
//!
//! ```text
//!  accept (a slot under proxy.max_connections, counted for this listener on its own)
//!    ─▶ TLS handshake within tls.handshake_timeout_ms (rustls, ring provider)
//!         SNI picks the certificate: the one whose server_names list the name, else the first
//!         ALPN: http/1.1 (the only protocol offered)
//!    ─▶ http1::server::serve_connection over the TLS stream ─▶ Proxy::handle (scheme https)
//! ```
//!
//! Certificates and keys are PEM files, read at start-up and again on every reload; a file
//! that is missing or does not parse is an error naming its config field. A certificate must
//! really be valid for each name it is listed under (rustls checks it when the certificate is
//! loaded), so a typo in `server_names` is caught at start-up rather than by clients.
//!
//! The handshake has its own deadline because `http1`'s header timeout only starts once the
//! connection is handed over: without it a client that opens a connection and never speaks
//! TLS would hold a connection slot forever (a slow-loris on the handshake).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http1::server::{Accepted, Handler, Member, ServerConfig as HttpConfig, serve_connection};
use rustls::server::{ClientHello, ResolvesServerCert, ResolvesServerCertUsingSni};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use service_kit::config::ConfigError;
use service_kit::shutdown::Shutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Most certificates on one listener.
pub const MAX_CERTIFICATES: usize = 256;

/// The HTTPS listener (`[tls]`; absent: no HTTPS).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Address of the HTTPS listener.
    pub listen: SocketAddr,
    /// Certificates, 1 to [`MAX_CERTIFICATES`]. The first one also answers clients that send
    /// no SNI or a name no certificate lists.
    pub certificates: Vec<CertificateConfig>,
    /// Longest a TLS handshake may take. Default 10,000 (as `http1`'s header timeout).
    #[serde(default = "default_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
}

/// One certificate chain and its key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM file with the certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// Host names (SNI) this certificate serves; each must be one the certificate is valid for.
    #[serde(default)]
    pub server_names: Vec<String>,
}

fn default_handshake_timeout_ms() -> u64 {
    10_000
}

impl TlsConfig {
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    /// Checks the fields that need no file; [`server_config`] checks the files.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.certificates.is_empty() || self.certificates.len() > MAX_CERTIFICATES {
            let reason = format!("a TLS listener needs 1 to {MAX_CERTIFICATES} certificates");
            return Err(ConfigError::invalid("tls.certificates", reason));
        }
        if !(1..=600_000).contains(&self.handshake_timeout_ms) {
            return Err(ConfigError::invalid(
                "tls.handshake_timeout_ms",
                "must be between 1 and 600000",
            ));
        }
        Ok(())
    }
}

/// Loads the certificates and keys and builds the rustls configuration: TLS 1.2 and 1.3 with
/// the ring provider's safe defaults, ALPN `http/1.1`, certificates chosen by SNI.
pub fn server_config(config: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut by_name = ResolvesServerCertUsingSni::new();
    let mut default = None;
    for (i, certificate) in config.certificates.iter().enumerate() {
        let field = format!("tls.certificates[{i}]");
        let key = load_certified_key(certificate, &field, &provider)?;
        for name in &certificate.server_names {
            by_name.add(name, (*key).clone()).map_err(|e| {
                ConfigError::invalid(
                    format!("{field}.server_names"),
                    format!("the certificate is not valid for `{name}`: {e}"),
                )
            })?;
        }
        default.get_or_insert(key);
    }
    let default = default.ok_or_else(|| ConfigError::invalid("tls.certificates", "empty"))?;
    let resolver = Arc::new(SniResolver { by_name, default });
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::invalid("tls", e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(server))
}

fn load_certified_key(
    certificate: &CertificateConfig,
    field: &str,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<CertifiedKey>, ConfigError> {
    let cert_field = format!("{field}.cert_file");
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&certificate.cert_file)
        .and_then(|iter| iter.collect())
        .map_err(|e| pem_error(&cert_field, &certificate.cert_file, e))?;
    if certs.is_empty() {
        return Err(ConfigError::invalid(
            cert_field,
            "no certificate in the file",
        ));
    }
    let key_field = format!("{field}.key_file");
    let key = PrivateKeyDer::from_pem_file(&certificate.key_file)
        .map_err(|e| pem_error(&key_field, &certificate.key_file, e))?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| ConfigError::invalid(key_field, e.to_string()))?;
    Ok(Arc::new(CertifiedKey::new(certs, signing_key)))
}

fn pem_error(
    field: &str,
    path: &std::path::Path,
    error: rustls_pki_types::pem::Error,
) -> ConfigError {
    ConfigError::invalid(field, format!("{}: {error}", path.display()))
}

/// The client configuration for TLS to a cluster's endpoints: only the CAs of `ca_file` are
/// trusted; ALPN offers http/1.1. `field` is the cluster's `upstream_tls` path, for errors.
pub fn client_config(
    config: &crate::config::UpstreamTlsConfig,
    field: &str,
) -> Result<Arc<rustls::ClientConfig>, ConfigError> {
    client_config_trusting(&config.ca_file, &format!("{field}.ca_file"))
}

/// A client configuration that trusts only the CAs of the PEM file `ca_file` (the setting
/// `ca_field` names it, for errors); ALPN offers http/1.1. For any HTTPS client of the
/// workspace: the proxy's upstream connections, the gateway's JWKS fetches.
pub fn client_config_trusting(
    ca_file: &std::path::Path,
    ca_field: &str,
) -> Result<Arc<rustls::ClientConfig>, ConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    let cas = CertificateDer::pem_file_iter(ca_file)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(ca_field, ca_file, e))?;
    for ca in cas {
        roots
            .add(ca)
            .map_err(|e| ConfigError::invalid(ca_field, e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ConfigError::invalid(ca_field, "no certificate in the file"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::invalid(ca_field, e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(client))
}

/// SNI first, then the default certificate.
#[derive(Debug)]
struct SniResolver {
    by_name: ResolvesServerCertUsingSni,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if hello.server_name().is_some()
            && let Some(key) = self.by_name.resolve(hello)
        {
            return Some(key);
        }
        Some(self.default.clone())
    }
}

/// The rustls configuration in use; a reload replaces it, and connections accepted after
/// that use the new certificates.
pub type CurrentTls = Arc<RwLock<Arc<rustls::ServerConfig>>>;

/// Accepts TLS connections on `listener` until `shutdown` is triggered, each served by
/// `handler` through `http1`. `member` is this loop's place among the listener's accept loops
/// (their connection limit, their counts kept level).
pub async fn serve<H: Handler>(
    listener: TcpListener,
    tls: CurrentTls,
    handshake_timeout: Duration,
    http: Arc<HttpConfig>,
    handler: Arc<H>,
    mut member: Member,
    shutdown: Shutdown,
) {
    loop {
        let Accepted {
            stream,
            peer,
            lease,
        } = tokio::select! {
            biased;
            () = shutdown.triggered() => return,
            accepted = member.next(&listener) => accepted,
        };
        let acceptor = TlsAcceptor::from(tls.read().unwrap_or_else(|e| e.into_inner()).clone());
        let (http, handler, stop) = (http.clone(), handler.clone(), shutdown.clone());
        shutdown.spawn("tls connection", async move {
            let _lease = lease;
            let stream =
                match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, %error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            serve_connection(stream, Some(peer), &http, &*handler, stop.triggered()).await;
        });
    }
}
