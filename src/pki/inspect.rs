//! Reading certificates back: what they say, who signed them, their key hash.

use anyhow::{anyhow, Context, Result};
use sha2::{Digest, Sha256};
use std::path::Path;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;
use x509_parser::prelude::X509Certificate;

/// The facts about a certificate a user (or a re-issue decision) looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    pub subject: String,
    pub issuer: String,
    pub sans: Vec<String>,
    pub key_usages: Vec<String>,
    pub extended_key_usages: Vec<String>,
    pub is_ca: bool,
    pub not_after: String,
    /// Seconds since the epoch, for expiry decisions.
    pub not_after_unix: i64,
}

fn with_cert<T>(pem: &str, f: impl FnOnce(&X509Certificate) -> Result<T>) -> Result<T> {
    let (_, pem) =
        parse_x509_pem(pem.as_bytes()).map_err(|e| anyhow!("not a PEM certificate: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| anyhow!("not an X.509 certificate: {e}"))?;
    f(&cert)
}

pub fn summarize(pem: &str) -> Result<CertSummary> {
    with_cert(pem, |cert| {
        let mut sans = Vec::new();
        if let Some(ext) = cert.subject_alternative_name()? {
            for n in &ext.value.general_names {
                match n {
                    GeneralName::DNSName(d) => sans.push(d.to_string()),
                    GeneralName::IPAddress(b) if b.len() == 4 => {
                        sans.push(std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string())
                    }
                    other => sans.push(format!("{other:?}")),
                }
            }
        }
        let key_usages = match cert.key_usage()? {
            Some(ku) => {
                let ku = ku.value;
                [
                    (ku.digital_signature(), "digitalSignature"),
                    (ku.key_encipherment(), "keyEncipherment"),
                    (ku.key_cert_sign(), "keyCertSign"),
                    (ku.crl_sign(), "cRLSign"),
                ]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, n)| n.to_string())
                .collect()
            }
            None => vec![],
        };
        let extended_key_usages = match cert.extended_key_usage()? {
            Some(eku) => {
                let eku = eku.value;
                [
                    (eku.server_auth, "serverAuth"),
                    (eku.client_auth, "clientAuth"),
                ]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, n)| n.to_string())
                .collect()
            }
            None => vec![],
        };
        Ok(CertSummary {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            sans,
            key_usages,
            extended_key_usages,
            is_ca: cert.is_ca(),
            not_after: cert.validity().not_after.to_string(),
            not_after_unix: cert.validity().not_after.timestamp(),
        })
    })
}

/// Whether `cert_pem`'s signature verifies with `ca_pem`'s public key.
pub fn signed_by(cert_pem: &str, ca_pem: &str) -> Result<bool> {
    with_cert(ca_pem, |ca| {
        with_cert(cert_pem, |cert| {
            Ok(cert.verify_signature(Some(ca.public_key())).is_ok())
        })
    })
}

/// Hex sha256 of the certificate's DER SubjectPublicKeyInfo (kubeadm's CA cert hash).
pub fn spki_sha256(pem: &str) -> Result<String> {
    with_cert(pem, |cert| Ok(hex(&Sha256::digest(cert.public_key().raw))))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every certificate under `pki_dir`, by path relative to it, sorted.
pub fn describe_all(pki_dir: &Path) -> Result<Vec<(String, CertSummary)>> {
    let mut out = Vec::new();
    let mut stack = vec![pki_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "crt") {
                let pem = std::fs::read_to_string(&path)?;
                let rel = path.strip_prefix(pki_dir)?.display().to_string();
                out.push((
                    rel,
                    summarize(&pem).with_context(|| format!("{}", path.display()))?,
                ));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}
