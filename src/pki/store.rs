//! The on-disk PKI: loads what exists, stages what must be written.

use super::check;
use super::inspect::summarize;
use super::issue::{new_ca, new_key_pair, new_leaf, Profile, RENEW_BEFORE};
use super::{CertKey, Change, KeyPairPem};
use crate::fsutil::{txn, PRIVATE, PUBLIC};
use crate::lock::StateLock;
use anyhow::{bail, Context, Result};
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Store {
    state_dir: PathBuf,
    /// Files to write on `save`: path -> (content, mode).
    pending: BTreeMap<PathBuf, (Vec<u8>, u32)>,
    changes: Vec<Change>,
    /// Reads nothing from disk and can never save (for checks that need some PKI).
    throwaway: bool,
    /// A leaf with less life left than this is re-issued.
    renew_before: time::Duration,
}

fn read_pair(a: &Path, b: &Path) -> Result<Option<(String, String)>> {
    let read =
        |p: &Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    match (a.exists(), b.exists()) {
        (true, true) => Ok(Some((read(a)?, read(b)?))),
        (false, false) => Ok(None),
        (true, false) => bail!(
            "{} exists without {}: restore it from your backup; paasgen will not replace it",
            a.display(),
            b.display()
        ),
        (false, true) => bail!(
            "{} exists without {}: restore it from your backup; paasgen will not replace it",
            b.display(),
            a.display()
        ),
    }
}

/// Why an existing leaf certificate no longer fits its profile, if it does not: also
/// when fewer than `renew_before` of its life remain.
fn mismatch(
    existing: &CertKey,
    profile: &Profile,
    renew_before: time::Duration,
) -> Result<Option<String>> {
    let summary = summarize(&existing.cert_pem)?;
    let have: BTreeSet<&str> = summary.sans.iter().map(String::as_str).collect();
    let want: BTreeSet<&str> = profile.sans.iter().map(String::as_str).collect();
    if have != want {
        return Ok(Some(format!(
            "SANs changed from [{}] to [{}]",
            summary.sans.join(", "),
            profile.sans.join(", ")
        )));
    }
    if !summary
        .subject
        .contains(&format!("CN={}", profile.common_name))
    {
        return Ok(Some(format!("subject {} differs", summary.subject)));
    }
    let want_ekus = profile.usage.extended_key_usage_names();
    if summary.extended_key_usages != want_ekus {
        return Ok(Some(format!(
            "extended key usages changed from [{}] to [{}]",
            summary.extended_key_usages.join(", "),
            want_ekus.join(", ")
        )));
    }
    let renew_at = (time::OffsetDateTime::now_utc() + renew_before).unix_timestamp();
    if summary.not_after_unix < renew_at {
        return Ok(Some(format!("expires {}", summary.not_after)));
    }
    Ok(None)
}

impl Store {
    /// Reads nothing yet; refuses a state dir whose last write did not finish (only a
    /// writer, holding the lock, may finish it).
    pub fn open(state_dir: &Path) -> Result<Store> {
        if txn::pending(state_dir) {
            bail!(
                "{} holds a write that is in progress or was interrupted ({}): try again, or run `paasgen render` to finish it",
                state_dir.display(),
                txn::JOURNAL
            );
        }
        Ok(Store {
            state_dir: state_dir.to_path_buf(),
            pending: BTreeMap::new(),
            changes: Vec::new(),
            throwaway: false,
            renew_before: RENEW_BEFORE,
        })
    }

    /// A store that starts empty and can never be saved.
    pub fn throwaway() -> Store {
        Store {
            state_dir: PathBuf::new(),
            pending: BTreeMap::new(),
            changes: Vec::new(),
            throwaway: true,
            renew_before: RENEW_BEFORE,
        }
    }

    /// Leaves with less than `within` of life left are re-issued too (never less than
    /// the usual `RENEW_BEFORE`).
    pub fn renewing(mut self, within: time::Duration) -> Store {
        self.renew_before = within.max(RENEW_BEFORE);
        self
    }

    fn read_pair(&self, a: &Path, b: &Path) -> Result<Option<(String, String)>> {
        match self.throwaway {
            true => Ok(None),
            false => read_pair(a, b),
        }
    }

    fn pki_path(&self, rel: &str, ext: &str) -> PathBuf {
        self.state_dir.join("pki").join(format!("{rel}.{ext}"))
    }

    fn stage(&mut self, path: PathBuf, bytes: impl Into<Vec<u8>>, mode: u32) {
        self.pending.insert(path, (bytes.into(), mode));
    }

    fn stage_cert_key(&mut self, rel: &str, ck: &CertKey) {
        self.stage(self.pki_path(rel, "crt"), ck.cert_pem.clone(), PUBLIC);
        self.stage(self.pki_path(rel, "key"), ck.key_pem.clone(), PRIVATE);
    }

    /// The CA stored as `rel`.crt/.key, created only when neither file exists.
    pub fn ca(&mut self, rel: &str, common_name: &str) -> Result<CertKey> {
        let (crt, key) = (self.pki_path(rel, "crt"), self.pki_path(rel, "key"));
        if let Some((cert_pem, key_pem)) = self.read_pair(&crt, &key)? {
            let ca = CertKey { cert_pem, key_pem };
            check::ca(&ca, &crt, &key)?;
            return Ok(ca);
        }
        let ca = new_ca(common_name)?;
        self.stage_cert_key(rel, &ca);
        self.changes.push(Change::Created(format!("CA {rel}")));
        Ok(ca)
    }

    pub fn key_pair(&mut self, rel: &str) -> Result<KeyPairPem> {
        let (key, public) = (self.pki_path(rel, "key"), self.pki_path(rel, "pub"));
        if let Some((private_pem, public_pem)) = self.read_pair(&key, &public)? {
            let kp = KeyPairPem {
                private_pem,
                public_pem,
            };
            check::key_pair(&kp, &key, &public)?;
            return Ok(kp);
        }
        let kp = new_key_pair()?;
        self.stage(self.pki_path(rel, "key"), kp.private_pem.clone(), PRIVATE);
        self.stage(self.pki_path(rel, "pub"), kp.public_pem.clone(), PUBLIC);
        self.changes
            .push(Change::Created(format!("key pair {rel}")));
        Ok(kp)
    }

    /// The leaf stored as `rel`, re-issued from `ca` (stored as `ca_rel`) when it no
    /// longer fits `profile`. A leaf that is damaged or not signed by `ca` is an error:
    /// re-issuing would hide that the state was tampered with or mixed up.
    pub fn leaf(
        &mut self,
        rel: &str,
        profile: &Profile,
        ca: &CertKey,
        ca_rel: &str,
    ) -> Result<CertKey> {
        let (crt, key) = (self.pki_path(rel, "crt"), self.pki_path(rel, "key"));
        let existing = self
            .read_pair(&crt, &key)?
            .map(|(cert_pem, key_pem)| CertKey { cert_pem, key_pem });
        if let Some(leaf) = &existing {
            check::leaf(leaf, &crt, &key, ca, &self.pki_path(ca_rel, "crt"))?;
        }
        let change = match &existing {
            None => Change::Created(format!("certificate {rel}")),
            Some(cert) => match mismatch(cert, profile, self.renew_before)
                .with_context(|| format!("checking {}", crt.display()))?
            {
                None => return Ok(existing.expect("matched Some")),
                Some(why) => Change::Reissued {
                    name: format!("certificate {rel}"),
                    why,
                },
            },
        };
        let cert = new_leaf(profile, ca).with_context(|| format!("issuing {rel}"))?;
        self.stage_cert_key(rel, &cert);
        self.changes.push(change);
        Ok(cert)
    }

    /// The kubeadm bootstrap token, generated once.
    pub fn bootstrap_token(&mut self) -> Result<String> {
        self.secret(
            "bootstrap-token",
            "bootstrap token",
            ("a token like abcdef.0123456789abcdef", is_bootstrap_token),
            new_bootstrap_token,
        )
    }

    /// The key the API servers encrypt Secrets with (secretbox: 32 random bytes,
    /// base64), generated once.
    pub fn encryption_key(&mut self) -> Result<String> {
        use base64::Engine;
        let engine = base64::engine::general_purpose::STANDARD;
        self.secret(
            "encryption-key",
            "encryption key",
            ("32 bytes in base64", |k| {
                let engine = base64::engine::general_purpose::STANDARD;
                engine.decode(k).is_ok_and(|b| b.len() == 32)
            }),
            || {
                let mut bytes = [0u8; 32];
                rand::fill(&mut bytes);
                engine.encode(bytes)
            },
        )
    }

    /// A password of 32 letters and digits, generated once (what the MariaDB chart's
    /// node program accepts: it lands in SQL and shell unquoted-safe).
    pub fn password(&mut self, name: &str, what: &str) -> Result<String> {
        self.secret(
            name,
            what,
            ("16 to 128 of A-Z a-z 0-9 . _ ~ -", |p| {
                (16..=128).contains(&p.len())
                    && p.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-')
                    })
            }),
            || {
                const ALPHABET: &[u8] =
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
                (0..32)
                    .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
                    .collect()
            },
        )
    }

    /// `secrets/<name>`: read and checked (`valid`: what it must hold, and the test), or
    /// made once by `make` and staged.
    fn secret(
        &mut self,
        name: &str,
        what: &str,
        valid: (&str, fn(&str) -> bool),
        make: impl FnOnce() -> String,
    ) -> Result<String> {
        let path = self.state_dir.join("secrets").join(name);
        if !self.throwaway && path.exists() {
            let value = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?
                .trim()
                .to_string();
            if !(valid.1)(&value) {
                bail!("{} does not hold {}", path.display(), valid.0);
            }
            return Ok(value);
        }
        let value = make();
        self.stage(path, format!("{value}\n"), PRIVATE);
        self.changes.push(Change::Created(what.into()));
        Ok(value)
    }

    pub fn stage_file(&mut self, relative: &str, bytes: Vec<u8>, private: bool) -> Result<()> {
        let path = self.state_dir.join(relative);
        if std::fs::read(&path).ok().as_deref() != Some(bytes.as_slice()) {
            self.stage(path, bytes, if private { PRIVATE } else { PUBLIC });
        }
        Ok(())
    }

    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// Writes every staged file in one transaction: all of them or none.
    pub fn save(&self, lock: &StateLock) -> Result<()> {
        if self.throwaway {
            bail!("a throwaway PKI is never saved");
        }
        debug_assert_eq!(
            lock.dir(),
            self.state_dir,
            "saving under another dir's lock"
        );
        txn::commit(&self.state_dir, &self.pending)
    }
}

fn is_bootstrap_token(t: &str) -> bool {
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    matches!(t.split_once('.'), Some((id, secret)) if ok(id, 6) && ok(secret, 16))
}

/// A fresh kubeadm bootstrap token (`[a-z0-9]{6}.[a-z0-9]{16}`: id, then secret).
pub fn new_bootstrap_token() -> String {
    format!("{}.{}", random_token_part(6), random_token_part(16))
}

fn random_token_part(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_have_kubeadm_format() {
        let t = format!("{}.{}", random_token_part(6), random_token_part(16));
        assert!(is_bootstrap_token(&t), "{t}");
        assert!(!is_bootstrap_token("ABCDEF.0123456789abcdef"));
        assert!(!is_bootstrap_token("abcdef0123456789abcdef"));
    }
}
