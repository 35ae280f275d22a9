//! Turns a node's files into a `#cloud-config` document that fits OpenStack's limit.

use super::files::File;
use super::templates::Templates;
use anyhow::{bail, Result};
use base64::Engine;
use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;

/// Nova refuses user_data longer than this once base64 encoded.
pub const NOVA_USER_DATA_LIMIT: usize = 65_535;

/// Length of `n` bytes after base64 encoding.
pub fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// A write_files entry as the role template lays it out.
#[derive(Debug, Serialize)]
struct Entry<'a> {
    path: &'a str,
    permissions: String,
    encoding: Option<&'static str>,
    /// A YAML scalar, ready to follow `content: `.
    content: String,
}

/// Compressed file contents, shared across the nodes of one render thread (most files
/// are the same on every node of a role).
#[derive(Default)]
pub struct GzCache {
    by_digest: HashMap<[u8; 32], String>,
}

impl GzCache {
    fn gz_base64(&mut self, content: &[u8]) -> String {
        let digest: [u8; 32] = Sha256::digest(content).into();
        self.by_digest
            .entry(digest)
            .or_insert_with(|| {
                // mtime 0 and no file name: the same input gives the same bytes.
                let mut gz: GzEncoder<Vec<u8>> = GzBuilder::new()
                    .mtime(0)
                    .write(Vec::new(), Compression::best());
                gz.write_all(content).expect("writing to memory");
                let bytes = gz.finish().expect("writing to memory");
                base64::engine::general_purpose::STANDARD.encode(bytes)
            })
            .clone()
    }
}

/// Indentation of file content lines under `  - path:` / `    content: |`.
const CONTENT_INDENT: &str = "      ";

/// `content` as a YAML literal block, when it can be written as one faithfully.
fn literal_block(content: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(content).ok()?;
    let plain = |c: char| c == '\n' || c == '\t' || (!c.is_control() && c != '\u{feff}');
    // Printable ASCII (the usual case) is plain without looking at characters.
    let ascii = |b: &u8| matches!(b, b' '..=b'~' | b'\n' | b'\t');
    if text.is_empty()
        || !(content.iter().all(ascii) || text.chars().all(plain))
        || text.starts_with([' ', '\n'])
    {
        return None;
    }
    let body = text.trim_end_matches('\n');
    let trailing = text.len() - body.len();
    let chomp = match trailing {
        0 => "|-",
        1 => "|",
        _ => "|+",
    };
    let lines = content.iter().filter(|&&b| b == b'\n').count() + 1;
    let mut out = String::with_capacity(text.len() + lines * CONTENT_INDENT.len() + 4);
    out.push_str(chomp);
    let mut rest = text;
    while !rest.is_empty() {
        let (line, next) = match rest.find('\n') {
            Some(end) => (&rest[..end], &rest[end + 1..]),
            None => (rest, ""),
        };
        out.push('\n');
        if !line.is_empty() {
            out.push_str(CONTENT_INDENT);
            out.push_str(line);
        }
        rest = next;
    }
    Some(out)
}

fn entry<'a>(file: &'a File, compress: bool, gz: &mut GzCache) -> Entry<'a> {
    let permissions = format!("{:04o}", file.mode);
    if !compress {
        if let Some(block) = literal_block(&file.content) {
            return Entry {
                path: &file.path,
                permissions,
                encoding: None,
                content: block,
            };
        }
        let b64 = base64::engine::general_purpose::STANDARD.encode(&file.content);
        return Entry {
            path: &file.path,
            permissions,
            encoding: Some("b64"),
            content: format!("\"{b64}\""),
        };
    }
    Entry {
        path: &file.path,
        permissions,
        encoding: Some("gz+b64"),
        content: format!("\"{}\"", gz.gz_base64(&file.content)),
    }
}

/// Renders `role_template` with `files`; when the document is over Nova's limit, the
/// largest files are sent compressed (gz+b64) one by one until it fits.
pub fn assemble(
    t: &Templates,
    role_template: &str,
    ctx: &mut tera::Context,
    node: &str,
    files: &[File],
    gz: &mut GzCache,
) -> Result<String> {
    let mut by_size: Vec<usize> = (0..files.len()).collect();
    by_size.sort_by_key(|&i| std::cmp::Reverse(files[i].content.len()));
    let mut compressed = 0;
    loop {
        let entries: Vec<Entry> = files
            .iter()
            .enumerate()
            .map(|(i, f)| entry(f, by_size[..compressed].contains(&i), gz))
            .collect();
        // The template sees a placeholder for each content, put in its place afterwards:
        // contents are most of a document, and need not go through the template engine.
        let placeholders: Vec<Entry> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| Entry {
                path: e.path,
                permissions: e.permissions.clone(),
                encoding: e.encoding,
                content: format!("{MARK}{i}{MARK}"),
            })
            .collect();
        ctx.insert("files", &placeholders);
        let doc = fill_in(&t.render(role_template, ctx)?, &entries)?;
        if base64_len(doc.len()) <= NOVA_USER_DATA_LIMIT {
            return Ok(doc);
        }
        if compressed == files.len() {
            let mut parts: Vec<(String, usize)> = entries
                .iter()
                .map(|e| (e.path.to_string(), e.content.len()))
                .collect();
            let in_files: usize = parts.iter().map(|(_, n)| n).sum();
            parts.push((
                "the cloud-config around the files".into(),
                doc.len() - in_files,
            ));
            parts.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
            parts.truncate(3);
            return Err(TooLarge {
                node: node.to_string(),
                bytes: doc.len(),
                parts,
            }
            .into());
        }
        compressed += 1;
    }
}

/// A node's document that does not fit in Nova's user-data even with every file
/// compressed, and its biggest parts (what the spec should make smaller).
#[derive(Debug, thiserror::Error)]
#[error(
    "the user-data of node {node} is {bytes} bytes ({} base64), over OpenStack's limit of {NOVA_USER_DATA_LIMIT} even with every file compressed; its biggest parts: {}",
    base64_len(*bytes),
    parts.iter().map(|(what, n)| format!("{what} ({n} bytes)")).collect::<Vec<_>>().join(", ")
)]
pub struct TooLarge {
    pub node: String,
    pub bytes: usize,
    /// (file path, or the cloud-config itself; bytes as sent), biggest first.
    pub parts: Vec<(String, usize)>,
}

/// Delimits a content placeholder: a control character, which no spec value that reaches
/// a document holds (validation refuses them) and no template writes.
const MARK: char = '\u{1}';

/// `rendered` with each placeholder `<MARK>i<MARK>` replaced by the content of entry i.
fn fill_in(rendered: &str, entries: &[Entry]) -> Result<String> {
    let size = rendered.len() + entries.iter().map(|e| e.content.len()).sum::<usize>();
    let mut doc = String::with_capacity(size);
    let mut rest = rendered;
    let mut filled = 0;
    while let Some(start) = rest.find(MARK) {
        doc.push_str(&rest[..start]);
        let after = &rest[start + MARK.len_utf8()..];
        let entry = after.find(MARK).and_then(|end| {
            let i: usize = after[..end].parse().ok()?;
            Some((entries.get(i)?, end))
        });
        let Some((entry, end)) = entry else {
            bail!("the rendered document holds a stray control character U+0001");
        };
        doc.push_str(&entry.content);
        filled += 1;
        rest = &after[end + MARK.len_utf8()..];
    }
    doc.push_str(rest);
    if filled != entries.len() {
        bail!(
            "the role template wrote {filled} file contents, not {}",
            entries.len()
        );
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_blocks_keep_trailing_newlines_exactly() {
        assert_eq!(literal_block(b"a\nb\n").unwrap(), "|\n      a\n      b");
        assert_eq!(literal_block(b"a\nb").unwrap(), "|-\n      a\n      b");
        assert_eq!(literal_block(b"a\n\n").unwrap(), "|+\n      a\n");
        assert_eq!(literal_block(b"a\n\nb\n").unwrap(), "|\n      a\n\n      b");
    }

    #[test]
    fn odd_content_is_not_a_literal_block() {
        assert!(literal_block(b" leading space").is_none());
        assert!(literal_block(b"nul\0").is_none());
        assert!(literal_block(&[0xff, 0xfe]).is_none());
        assert!(literal_block(b"").is_none());
    }

    #[test]
    fn base64_length() {
        assert_eq!(base64_len(0), 0);
        assert_eq!(base64_len(1), 4);
        assert_eq!(base64_len(3), 4);
        assert_eq!(base64_len(49_149), 65_532);
    }
}
