//! `smpps`: SMPP over TLS from the first byte (`tls = "tls"`), as SMSCs that offer it
//! (usually on port 3550) expect. The SMSC's certificate must verify for `host` against the
//! system's CA roots plus the certificates of `tls_ca_file` (a carrier's private CA);
//! there is no switch that accepts any certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The certificates of a PEM file (at least one).
pub fn read_roots(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem =
        std::fs::read(path).map_err(|e| format!("tls_ca_file {}: {}", path.display(), e.kind()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|_| format!("tls_ca_file {} is not valid PEM", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "tls_ca_file {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(certs)
}

/// A TLS client trusting the system's roots and `extra_ca`.
pub fn connector(extra_ca: Option<&Path>) -> Result<TlsConnector, String> {
    let mut roots = RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = extra_ca {
        for cert in read_roots(path)? {
            roots
                .add(cert)
                .map_err(|e| format!("tls_ca_file {}: {e}", path.display()))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Opens TLS over `stream` to `host`, verifying its certificate.
pub async fn handshake(
    connector: &TlsConnector,
    host: &str,
    stream: TcpStream,
) -> Result<TlsStream<TcpStream>, String> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| format!("TLS: '{host}' is not a valid server name"))?;
    connector
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))
}
