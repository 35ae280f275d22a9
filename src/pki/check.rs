//! Every load of stored key material is checked before anything is built on it: the PEM
//! parses, the key belongs to its certificate, a CA signs itself, a leaf verifies against
//! its CA. A failure names the file and what is wrong; it is never a reason to re-issue.

use super::{CertKey, KeyPairPem};
use anyhow::{anyhow, bail, Result};
use rcgen::KeyPair;
use std::path::Path;
use x509_parser::pem::parse_x509_pem;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::SubjectPublicKeyInfo;

const RESTORE: &str = "restore the pair from your backup; paasgen will not replace it";

/// The raw public key of a PEM private key.
fn key_public(pem: &str, path: &Path) -> Result<Vec<u8>> {
    let why = if pem.trim().is_empty() {
        "the file is empty"
    } else if !pem.contains("-----BEGIN") {
        "no -----BEGIN line"
    } else {
        "damaged or of an unknown kind"
    };
    let key = KeyPair::from_pem(pem)
        .map_err(|_| anyhow!("{}: not a usable PEM private key ({why})", path.display()))?;
    Ok(key.public_key_raw().to_vec())
}

/// Parses a PEM certificate and hands it to `f`.
fn with_cert<T>(
    pem: &str,
    path: &Path,
    f: impl FnOnce(&X509Certificate) -> Result<T>,
) -> Result<T> {
    let (rest, block) = parse_x509_pem(pem.as_bytes()).map_err(|_| {
        let why = match pem.contains("-----BEGIN CERTIFICATE-----") {
            true => "damaged: it does not decode",
            false => "no -----BEGIN CERTIFICATE----- line",
        };
        anyhow!("{}: not a PEM certificate ({why})", path.display())
    })?;
    if !String::from_utf8_lossy(rest).trim().is_empty() {
        bail!("{}: unexpected text after the certificate", path.display());
    }
    let cert = block.parse_x509().map_err(|_| {
        anyhow!(
            "{}: not a readable X.509 certificate (damaged)",
            path.display()
        )
    })?;
    f(&cert)
}

fn key_matches(cert: &X509Certificate, key: &[u8], crt: &Path, key_path: &Path) -> Result<()> {
    if cert.public_key().subject_public_key.data.as_ref() != key {
        bail!(
            "{} does not belong to {} (the key and the certificate are from different issues): {RESTORE}",
            key_path.display(),
            crt.display()
        );
    }
    Ok(())
}

/// A stored CA: parses, signs itself, is a CA, and its key is its own.
pub fn ca(ca: &CertKey, crt: &Path, key: &Path) -> Result<()> {
    let public = key_public(&ca.key_pem, key)?;
    with_cert(&ca.cert_pem, crt, |cert| {
        if !cert.is_ca() {
            bail!("{}: not a CA certificate", crt.display());
        }
        if cert.verify_signature(None).is_err() {
            bail!(
                "{}: its self-signature does not verify (the file is damaged): {RESTORE}",
                crt.display()
            );
        }
        key_matches(cert, &public, crt, key)
    })
}

/// A stored leaf: parses, its key is its own, and it verifies against `ca`.
pub fn leaf(leaf: &CertKey, crt: &Path, key: &Path, ca: &CertKey, ca_crt: &Path) -> Result<()> {
    let public = key_public(&leaf.key_pem, key)?;
    with_cert(&ca.cert_pem, ca_crt, |ca_cert| {
        with_cert(&leaf.cert_pem, crt, |cert| {
            key_matches(cert, &public, crt, key)?;
            if cert.verify_signature(Some(ca_cert.public_key())).is_err() {
                bail!(
                    "{} does not verify against {} (damaged, or issued by another CA)",
                    crt.display(),
                    ca_crt.display()
                );
            }
            Ok(())
        })
    })
}

/// The service-account key pair: both halves parse and belong together.
pub fn key_pair(kp: &KeyPairPem, key: &Path, public_path: &Path) -> Result<()> {
    let public = key_public(&kp.private_pem, key)?;
    let (block, _) = x509_parser::pem::Pem::read(std::io::Cursor::new(kp.public_pem.as_bytes()))
        .map_err(|_| anyhow!("{}: not a PEM public key", public_path.display()))?;
    let (_, spki) = SubjectPublicKeyInfo::from_der(&block.contents).map_err(|_| {
        anyhow!(
            "{}: not a readable public key (damaged)",
            public_path.display()
        )
    })?;
    if spki.subject_public_key.data.as_ref() != public.as_slice() {
        bail!(
            "{} does not belong to {}: {RESTORE}",
            public_path.display(),
            key.display()
        );
    }
    Ok(())
}
