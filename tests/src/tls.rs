//! rustls client configurations for the raw TCP clients (`tcp_client`): trust the harness's CA,
//! present a workload's SPIFFE certificate. (HTTP requests use curl instead, `client.rs`.)

use crate::certs::CertFiles;
use anyhow::{Context as _, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// A client configuration trusting `ca` (PEM) and presenting `client` (PEM certificate and key).
/// No ALPN: the TCP listener's TLS chain offers none, as a raw TCP client of Istio's does not.
pub fn client_config(ca: &Path, client: &CertFiles) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in
        CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))?
    {
        roots
            .add(c.context("CA certificate")?)
            .context("adding the CA")?;
    }
    let chain = CertificateDer::pem_file_iter(&client.cert)
        .with_context(|| format!("reading {}", client.cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .context("client certificate")?;
    let key = PrivateKeyDer::from_pem_file(&client.key)
        .with_context(|| format!("reading {}", client.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    Ok(Arc::new(config))
}
