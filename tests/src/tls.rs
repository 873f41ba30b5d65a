//! rustls client configurations for the raw TCP clients (`tcp_client`) and the benchmark's load:
//! trust the harness's CA, present a workload's SPIFFE certificate. (The tests' HTTP requests use
//! curl instead, `client.rs`.)

use crate::certs::CertFiles;
use anyhow::{Context as _, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// A client configuration trusting `ca` (PEM) and presenting `client` (PEM certificate and key).
/// No ALPN: the TCP listener's TLS chain offers none, as a raw TCP client of Istio's does not.
pub fn client_config(ca: &Path, client: &CertFiles) -> Result<Arc<rustls::ClientConfig>> {
    Ok(Arc::new(client_config_from(ca, &client.cert, &client.key)?))
}

/// A client configuration trusting `ca` and presenting `cert` and `key` (PEM files), without
/// ALPN; callers that speak HTTP set `alpn_protocols` themselves (the benchmark's load).
pub fn client_config_from(ca: &Path, cert: &Path, key: &Path) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in
        CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))?
    {
        roots
            .add(c.context("CA certificate")?)
            .context("adding the CA")?;
    }
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .context("client certificate")?;
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?)
}
