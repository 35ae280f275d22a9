//! Swift TempURLs signed with HMAC-SHA256: pure functions, no clock and no network.
//!
//! Swift's `tempurl` middleware accepts a request without a token when its query holds
//! `temp_url_sig` = HMAC(key, "[ip=RANGE\n]METHOD\nEXPIRES\nPATH") for a key set on the
//! container (`X-Container-Meta-Temp-URL-Key[-2]`) or the account. PATH is the object's
//! `/v1/AUTH_<project>/<container>/<object>`, or, for a signature good for every object
//! under a prefix, `prefix:/v1/AUTH_<project>/<container>/<prefix>` with the prefix sent
//! again as `temp_url_prefix`. The signature names one method: an etcd node gets a PUT
//! signature for its own prefix, so it can add backups but neither read, list nor delete
//! them, nor write under another node's prefix.

use anyhow::{bail, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The HTTP methods Swift's tempurl middleware knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Put,
    Post,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// What a signature covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One object: `/v1/<account>/<container>/<object>`.
    Object(String),
    /// Every object of `/v1/<account>/<container>` whose name starts with `prefix`.
    Prefix { container: String, prefix: String },
}

/// A signed TempURL: the query parameters Swift checks, and the object path to put them on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TempUrl {
    pub method: Method,
    pub sig: String,
    pub expires: u64,
    pub prefix: Option<String>,
    pub ip_range: Option<String>,
}

fn split_v1(path: &str) -> Option<Vec<&str>> {
    let rest = path.strip_prefix("/v1/")?;
    Some(rest.splitn(3, '/').collect())
}

/// The string Swift signs for `scope`, or why `scope` is not a Swift path.
pub fn hmac_path(scope: &Scope) -> Result<String> {
    match scope {
        Scope::Object(path) => match split_v1(path).as_deref() {
            Some([a, c, o])
                if !a.is_empty() && !c.is_empty() && !o.trim_matches('/').is_empty() =>
            {
                Ok(path.clone())
            }
            _ => bail!("{path:?} is not an object path /v1/<account>/<container>/<object>"),
        },
        Scope::Prefix { container, prefix } => {
            let container = container.trim_end_matches('/');
            match split_v1(container).as_deref() {
                Some([a, c]) if !a.is_empty() && !c.is_empty() => {}
                _ => bail!("{container:?} is not a container path /v1/<account>/<container>"),
            }
            if prefix.starts_with('/') {
                bail!("prefix {prefix:?} starts with '/' (object names never do)");
            }
            Ok(format!("prefix:{container}/{prefix}"))
        }
    }
}

/// Signs `method` on `scope` until `expires` (unix seconds) with `key`, optionally only
/// from clients in `ip_range` (an address or CIDR, as Swift's `temp_url_ip_range`).
pub fn sign(
    key: &[u8],
    method: Method,
    scope: &Scope,
    expires: u64,
    ip_range: Option<&str>,
) -> Result<TempUrl> {
    if key.is_empty() {
        bail!("empty TempURL key");
    }
    let path = hmac_path(scope)?;
    if path.contains('\n') || ip_range.is_some_and(|r| r.contains('\n')) {
        bail!("a TempURL path or IP range cannot contain a newline");
    }
    let mut body = String::new();
    if let Some(range) = ip_range {
        body.push_str(&format!("ip={range}\n"));
    }
    body.push_str(&format!("{}\n{expires}\n{path}", method.as_str()));
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body.as_bytes());
    Ok(TempUrl {
        method,
        sig: crate::pki::hex(&mac.finalize().into_bytes()),
        expires,
        prefix: match scope {
            Scope::Prefix { prefix, .. } => Some(prefix.clone()),
            Scope::Object(_) => None,
        },
        ip_range: ip_range.map(str::to_string),
    })
}

/// A PUT signature for every object under `prefix` in `container` (`/v1/<account>/<container>`):
/// what an etcd node gets to upload its snapshots.
pub fn sign_put_prefix(key: &[u8], container: &str, prefix: &str, expires: u64) -> Result<TempUrl> {
    let scope = Scope::Prefix {
        container: container.to_string(),
        prefix: prefix.to_string(),
    };
    sign(key, Method::Put, &scope, expires, None)
}

/// Unix seconds `ttl_secs` after `now` (unix seconds): the `expires` to sign.
pub fn expires_after(now: u64, ttl_secs: u64) -> u64 {
    now.saturating_add(ttl_secs)
}

/// Percent-encodes everything but RFC 3986 unreserved characters and, when `keep_slash`,
/// '/'. ('+' is encoded: Swift reads it as a space in a query.)
pub fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl TempUrl {
    /// `temp_url_sig=...&temp_url_expires=...[&temp_url_prefix=...][&temp_url_ip_range=...]`
    pub fn query(&self) -> String {
        let mut q = format!(
            "temp_url_sig={}&temp_url_expires={}",
            self.sig, self.expires
        );
        if let Some(p) = &self.prefix {
            q.push_str("&temp_url_prefix=");
            q.push_str(&percent_encode(p, true));
        }
        if let Some(r) = &self.ip_range {
            q.push_str("&temp_url_ip_range=");
            q.push_str(&percent_encode(r, true));
        }
        q
    }

    /// The full URL of `object_path` (`/v1/<account>/<container>/<object>`, unencoded)
    /// on `base` (`http://host:port`, no path), with this signature. For a prefix
    /// signature the object must lie under the prefix, else Swift would refuse it.
    pub fn url(&self, base: &str, object_path: &str) -> Result<String> {
        hmac_path(&Scope::Object(object_path.to_string()))?;
        if let Some(prefix) = &self.prefix {
            let under = split_v1(object_path)
                .and_then(|p| p.get(2).map(|o| o.starts_with(prefix.as_str())))
                .unwrap_or(false);
            if !under {
                bail!("{object_path:?} is not under the signed prefix {prefix:?}");
            }
        }
        Ok(format!(
            "{}{}?{}",
            base.trim_end_matches('/'),
            percent_encode(object_path, true),
            self.query()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"mykey";
    const OBJ: &str = "/v1/AUTH_test/demo-etcd-backups/etcd-1/x.db";
    const CONTAINER: &str = "/v1/AUTH_test/demo-etcd-backups";

    // The expected signatures come from Swift's own code (Debian's python3-swift 2.30):
    //   from swift.common.digest import get_hmac
    //   get_hmac('PUT', '/v1/AUTH_test/demo-etcd-backups/etcd-1/x.db', 1700000000,
    //            'mykey', digest='sha256')
    //   get_hmac('PUT', 'prefix:/v1/AUTH_test/demo-etcd-backups/etcd-1/', 1700000000,
    //            'mykey', digest='sha256')                      (and ip_range='192.168.0.0/24')
    //   get_hmac('GET', '/v1/AUTH_test/demo-etcd-backups/etcd-1/x.db', 1700000000, ...)
    // and the first one again with python's hmac: hmac.new(b'mykey',
    //   b'PUT\n1700000000\n/v1/AUTH_test/demo-etcd-backups/etcd-1/x.db', hashlib.sha256)
    const PUT_OBJECT: &str = "87a566d3f83839cbd65ee767b3e2a9a1012e9665ed7ebe81f500fc1714479482";
    const PUT_PREFIX: &str = "e70cede4ae4c194e9f67cee77a0429166ee919fc2f425c428b79fd963892f291";
    const PUT_PREFIX_IP: &str = "474d17ba872ca4cbd339cbf2a444dbc6880f7eed7ca425b9e3a157d3dc9614f8";
    const GET_OBJECT: &str = "f01b4f80c28fda441dd5b684dbeb286a8ffdd38d102c63a90783cf5010eea9d9";

    #[test]
    fn object_signatures_match_swifts() {
        let obj = Scope::Object(OBJ.into());
        let put = sign(KEY, Method::Put, &obj, 1_700_000_000, None).unwrap();
        assert_eq!(put.sig, PUT_OBJECT);
        assert_eq!(put.prefix, None);
        let get = sign(KEY, Method::Get, &obj, 1_700_000_000, None).unwrap();
        assert_eq!(get.sig, GET_OBJECT);
    }

    #[test]
    fn prefix_signatures_match_swifts_and_differ_from_the_object_form() {
        let put = sign_put_prefix(KEY, CONTAINER, "etcd-1/", 1_700_000_000).unwrap();
        assert_eq!(put.sig, PUT_PREFIX);
        assert_ne!(put.sig, PUT_OBJECT);
        assert_eq!(
            put.query(),
            format!(
                "temp_url_sig={PUT_PREFIX}&temp_url_expires=1700000000&temp_url_prefix=etcd-1/"
            )
        );
        // a trailing '/' on the container changes nothing
        let same = sign_put_prefix(KEY, &format!("{CONTAINER}/"), "etcd-1/", 1_700_000_000);
        assert_eq!(same.unwrap().sig, PUT_PREFIX);
        let scope = Scope::Prefix {
            container: CONTAINER.into(),
            prefix: "etcd-1/".into(),
        };
        let ip = sign(
            KEY,
            Method::Put,
            &scope,
            1_700_000_000,
            Some("192.168.0.0/24"),
        )
        .unwrap();
        assert_eq!(ip.sig, PUT_PREFIX_IP);
        assert!(ip.query().ends_with("&temp_url_ip_range=192.168.0.0/24"));
    }

    #[test]
    fn every_input_is_in_the_signature() {
        let base = sign_put_prefix(KEY, CONTAINER, "etcd-1/", 1_700_000_000).unwrap();
        let others = [
            sign_put_prefix(b"otherkey", CONTAINER, "etcd-1/", 1_700_000_000),
            sign_put_prefix(KEY, CONTAINER, "etcd-2/", 1_700_000_000),
            sign_put_prefix(KEY, "/v1/AUTH_test/other", "etcd-1/", 1_700_000_000),
            sign_put_prefix(KEY, CONTAINER, "etcd-1/", 1_700_000_001),
        ];
        for o in others {
            assert_ne!(o.unwrap().sig, base.sig);
        }
        assert_eq!(base.sig.len(), 64);
    }

    #[test]
    fn urls() {
        let put = sign_put_prefix(KEY, CONTAINER, "etcd-1/", 1_700_000_000).unwrap();
        assert_eq!(
            put.url("http://127.0.0.1:8080/", OBJ).unwrap(),
            format!("http://127.0.0.1:8080{OBJ}?{}", put.query())
        );
        // names are percent-encoded in the URL, signed unencoded
        let odd = "/v1/AUTH_test/demo-etcd-backups/etcd-1/a b+c:d.db";
        assert_eq!(
            put.url("http://h", odd).unwrap().split('?').next().unwrap(),
            "http://h/v1/AUTH_test/demo-etcd-backups/etcd-1/a%20b%2Bc%3Ad.db"
        );
        let err = put.url("http://h", "/v1/AUTH_test/demo-etcd-backups/etcd-2/x.db");
        assert!(err
            .unwrap_err()
            .to_string()
            .contains("not under the signed prefix"));
    }

    #[test]
    fn bad_paths_are_refused() {
        for bad in [
            "/v1/AUTH_test/demo-etcd-backups",
            "/v1/AUTH_test/demo-etcd-backups/",
            "/v2/AUTH_test/c/o",
            "v1/AUTH_test/c/o",
            "/v1//c/o",
        ] {
            assert!(
                sign(KEY, Method::Put, &Scope::Object(bad.into()), 1, None).is_err(),
                "{bad}"
            );
        }
        assert!(sign_put_prefix(KEY, "/v1/AUTH_test", "etcd-1/", 1).is_err());
        assert!(sign_put_prefix(KEY, CONTAINER, "/etcd-1/", 1).is_err());
        assert!(sign_put_prefix(b"", CONTAINER, "etcd-1/", 1).is_err());
        assert!(sign_put_prefix(KEY, CONTAINER, "etcd-1/\nx", 1).is_err());
        assert_eq!(expires_after(1_700_000_000, 3600), 1_700_003_600);
        assert_eq!(expires_after(u64::MAX, 1), u64::MAX);
    }
}
