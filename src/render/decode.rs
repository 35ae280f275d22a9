//! Reading a rendered document back: the files cloud-init will write, decoded the way
//! cloud-init decodes them. Used by `diff` and by the tests that inspect user-data.

use anyhow::{bail, Context, Result};
use base64::Engine;
use serde::Deserialize;
use std::io::Read;

#[derive(Deserialize)]
struct Document {
    #[serde(default)]
    write_files: Vec<WriteFile>,
}

#[derive(Deserialize)]
struct WriteFile {
    path: String,
    #[serde(default)]
    content: String,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    permissions: Option<String>,
}

/// One file of a document, as it will be on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedFile {
    pub path: String,
    pub permissions: Option<String>,
    pub bytes: Vec<u8>,
}

pub fn decode_files(document: &str) -> Result<Vec<DecodedFile>> {
    let doc: Document = serde_saphyr::from_str(document).context("parsing the cloud-config")?;
    doc.write_files
        .into_iter()
        .map(|f| {
            let b64 = || base64::engine::general_purpose::STANDARD.decode(f.content.trim());
            let bytes = match f.encoding.as_deref() {
                None | Some("text/plain") => f.content.clone().into_bytes(),
                Some("b64" | "base64") => b64()?,
                Some("gz+b64" | "gzip+base64" | "gz+base64" | "gzip+b64") => {
                    let mut out = Vec::new();
                    flate2::read::GzDecoder::new(b64()?.as_slice()).read_to_end(&mut out)?;
                    out
                }
                Some(other) => bail!("{}: unknown encoding {other}", f.path),
            };
            Ok(DecodedFile {
                path: f.path,
                permissions: f.permissions,
                bytes,
            })
        })
        .collect()
}
