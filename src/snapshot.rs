//! Whether bytes are a whole etcd snapshot, checked the way `etcdutl snapshot restore`
//! checks one before it is restored: a bbolt database (its first meta page carries
//! bbolt's magic) followed by the sha256 of that database, which etcd appends to the
//! snapshot stream and `etcdctl snapshot save` keeps. A truncated or altered copy fails.

use anyhow::{bail, Result};
use sha2::{Digest, Sha256};

/// bbolt's magic number, in each meta page.
const BOLT_MAGIC: u32 = 0xED0C_DAED;
/// The page header before a meta page's fields (id u64, flags u16, count u16, overflow u32).
const PAGE_HEADER: usize = 16;

pub fn check(bytes: &[u8]) -> Result<()> {
    // etcdutl's own test: a database is whole pages, the hash makes it 32 past a
    // multiple of 512.
    if bytes.len() < 2 * 512 || bytes.len() % 512 != Sha256::output_size() {
        bail!(
            "{} bytes: not an etcd snapshot with its hash (a database of whole pages and 32 bytes of sha256)",
            bytes.len()
        );
    }
    let (db, hash) = bytes.split_at(bytes.len() - Sha256::output_size());
    let magic = u32::from_le_bytes(
        db[PAGE_HEADER..PAGE_HEADER + 4]
            .try_into()
            .expect("4 bytes"),
    );
    if magic != BOLT_MAGIC {
        bail!("not a bbolt database (magic {magic:#x})");
    }
    if Sha256::digest(db).as_slice() != hash {
        bail!("the database does not match the sha256 etcd appended to it (damaged or truncated)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in database of two 4 KiB pages with bbolt's magic, and its hash.
    fn snapshot() -> Vec<u8> {
        let mut db = vec![0u8; 8192];
        db[PAGE_HEADER..PAGE_HEADER + 4].copy_from_slice(&BOLT_MAGIC.to_le_bytes());
        db[5000] = 7;
        let hash = Sha256::digest(&db);
        db.extend_from_slice(&hash);
        db
    }

    #[test]
    fn a_whole_snapshot_passes_and_any_damage_fails() {
        let good = snapshot();
        check(&good).unwrap();
        let mut flipped = good.clone();
        flipped[5000] ^= 1;
        assert!(check(&flipped)
            .unwrap_err()
            .to_string()
            .contains("does not match"));
        let truncated = &good[..4096 + 32];
        assert!(check(truncated)
            .unwrap_err()
            .to_string()
            .contains("does not match"));
        assert!(check(&good[..4096]).is_err());
        let mut other = good.clone();
        other[PAGE_HEADER] = 0;
        assert!(check(&other).unwrap_err().to_string().contains("bbolt"));
        assert!(check(b"x").is_err());
    }
}
