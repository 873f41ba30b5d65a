//! A throw-away CA and SPIFFE leaf certificates, written as PEM files (rcgen, no openssl).
//!
//! Workload certificates carry the URI SAN `spiffe://<trust domain>/ns/<ns>/sa/<sa>`, as Istio
//! issues them; server certificates also carry `localhost` and `127.0.0.1` so clients can verify
//! the listener's name.

use anyhow::{Context as _, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

/// The trust domain of every identity the harness issues.
pub const TRUST_DOMAIN: &str = "cluster.local";

/// The SPIFFE id of service account `sa` in namespace `default`.
pub fn spiffe_id(sa: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/ns/default/sa/{sa}")
}

/// PEM files of one key pair and its certificate.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A certificate authority whose key stays in memory; its certificate is written to `ca.pem`.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub cert_file: PathBuf,
    dir: PathBuf,
}

impl Ca {
    /// Creates a CA and writes `DIR/ca.pem`.
    pub fn create(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let key = KeyPair::generate().context("generating the CA key")?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "alp-e2e test CA");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "calico-alp local harness");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).context("self-signing the CA")?;
        let cert_file = dir.join("ca.pem");
        fs::write(&cert_file, cert.pem())?;
        Ok(Ca {
            issuer: Issuer::new(params, key),
            cert_file,
            dir: dir.to_path_buf(),
        })
    }

    /// Issues a certificate for service account `sa` (namespace `default`), usable as a client
    /// and, with `server`, as a server certificate. Files: `DIR/<file_stem>.pem` and `.key`.
    pub fn issue(&self, file_stem: &str, sa: &str, server: bool) -> Result<CertFiles> {
        self.issue_with_uri(file_stem, &spiffe_id(sa), server)
    }

    /// Issues a certificate whose only URI SAN is `uri` (any text, for malformed identities).
    pub fn issue_with_uri(&self, file_stem: &str, uri: &str, server: bool) -> Result<CertFiles> {
        self.issue_with_uris(file_stem, &[uri], server)
    }

    /// Issues a certificate with these URI SANs, in this order (a certificate naming several
    /// identities, as a misissuing or federated CA might).
    pub fn issue_with_uris(
        &self,
        file_stem: &str,
        uris: &[&str],
        server: bool,
    ) -> Result<CertFiles> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, file_stem);
        for uri in uris {
            params
                .subject_alt_names
                .push(SanType::URI((*uri).try_into().context("URI SAN")?));
        }
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
        if server {
            params
                .subject_alt_names
                .push(SanType::DnsName("localhost".try_into()?));
            params
                .subject_alt_names
                .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let cert = params
            .signed_by(&key, &self.issuer)
            .with_context(|| format!("signing {file_stem}"))?;
        let files = CertFiles {
            cert: self.dir.join(format!("{file_stem}.pem")),
            key: self.dir.join(format!("{file_stem}.key")),
        };
        fs::write(&files.cert, cert.pem())?;
        fs::write(&files.key, key.serialize_pem())?;
        Ok(files)
    }
}
