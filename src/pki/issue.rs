//! Certificate profiles and issuance with rcgen. ECDSA P-256 keys throughout.

use super::{CertKey, KeyPairPem};
use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// CAs outlive several generations of nodes.
const CA_VALIDITY: Duration = Duration::days(3650);
/// Leaf certificates are re-issued on render when fewer than `RENEW_BEFORE` remain.
pub const LEAF_VALIDITY: Duration = Duration::days(825);
pub const RENEW_BEFORE: Duration = Duration::days(30);
/// Tolerates clocks of freshly booted nodes being a little behind.
const BACKDATE: Duration = Duration::hours(1);

/// What a leaf certificate is for; decides key usages and EKUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// etcd's client port. clientAuth too: etcd's HTTP gateway (`/v3/...`) dials its
    /// own member with this certificate, which client-cert-auth then checks.
    Server,
    /// Both ends of etcd peer connections.
    Peer,
    /// TLS client only.
    Client,
}

impl Usage {
    /// The EKU names `inspect::summarize` reports for this usage.
    pub fn extended_key_usage_names(self) -> Vec<&'static str> {
        self.extended_key_usages()
            .iter()
            .map(|u| match u {
                ExtendedKeyUsagePurpose::ServerAuth => "serverAuth",
                _ => "clientAuth",
            })
            .collect()
    }

    pub fn extended_key_usages(self) -> Vec<ExtendedKeyUsagePurpose> {
        match self {
            Usage::Server | Usage::Peer => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        }
    }
}

/// The identity and purpose of one leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub common_name: String,
    pub organization: Option<String>,
    pub usage: Usage,
    /// IP addresses and DNS names, in the order they are written into the cert.
    pub sans: Vec<String>,
}

impl Profile {
    pub fn new(common_name: &str, usage: Usage, sans: Vec<String>) -> Profile {
        Profile {
            common_name: common_name.to_string(),
            organization: None,
            usage,
            sans,
        }
    }

    pub fn organization(mut self, org: &str) -> Profile {
        self.organization = Some(org.to_string());
        self
    }
}

fn name(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(org) = organization {
        dn.push(DnType::OrganizationName, org);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

fn validity(params: &mut CertificateParams, length: Duration) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + length;
}

/// A new self-signed CA.
pub fn new_ca(common_name: &str) -> Result<CertKey> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name, None);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, CA_VALIDITY);
    let cert = params.self_signed(&key)?;
    Ok(CertKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A new leaf certificate and key for `profile`, signed by `ca`.
pub fn new_leaf(profile: &Profile, ca: &CertKey) -> Result<CertKey> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).context("reading the CA key")?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).context("reading the CA cert")?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(profile.sans.clone())
        .with_context(|| format!("SANs of {}", profile.common_name))?;
    params.distinguished_name = name(&profile.common_name, profile.organization.as_deref());
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = profile.usage.extended_key_usages();
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, LEAF_VALIDITY);
    let cert = params.signed_by(&key, &issuer)?;
    Ok(CertKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A new bare key pair (the service-account signing key).
pub fn new_key_pair() -> Result<KeyPairPem> {
    let key = KeyPair::generate()?;
    Ok(KeyPairPem {
        private_pem: key.serialize_pem(),
        public_pem: key.public_key_pem(),
    })
}
