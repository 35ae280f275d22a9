//! The templates under templates/, embedded at build time.

use anyhow::{anyhow, Result};
use serde::Serialize;

include!(concat!(env!("OUT_DIR"), "/templates.rs"));

pub struct Templates {
    tera: tera::Tera,
}

impl Templates {
    pub fn load() -> Result<Templates> {
        let mut tera = tera::Tera::default();
        tera.autoescape_on(vec![]);
        tera.add_raw_templates(TEMPLATES.iter().copied())
            .map_err(|e| anyhow!("loading templates: {}", chain(&e)))?;
        tera.register_filter("yaml", string_filter("yaml", yaml_quote));
        tera.register_filter("shell", string_filter("shell", shell_quote));
        Ok(Templates { tera })
    }

    pub fn render(&self, name: &str, ctx: &tera::Context) -> Result<String> {
        self.tera
            .render(name, ctx)
            .map_err(|e| anyhow!("rendering {name}: {}", chain(&e)))
    }

    pub fn render_value(&self, name: &str, value: &impl Serialize) -> Result<String> {
        let ctx =
            tera::Context::from_serialize(value).map_err(|e| anyhow!("context for {name}: {e}"))?;
        self.render(name, &ctx)
    }
}

/// A tera filter applying `quote` to a string (and refusing anything else).
fn string_filter(name: &'static str, quote: fn(&str) -> String) -> impl tera::Filter {
    move |value: &tera::Value, _: &std::collections::HashMap<String, tera::Value>| {
        let s = value
            .as_str()
            .ok_or_else(|| tera::Error::msg(format!("the {name} filter takes a string")))?;
        Ok(tera::Value::String(quote(s)))
    }
}

/// `{{ x | yaml }}`: a string as a double-quoted YAML scalar, so names like `null`,
/// `yes` or `0123` stay strings. JSON's string syntax is a subset of YAML's, but JSON
/// leaves NEL, LS and PS raw, and YAML reads those as line breaks: they are escaped.
pub fn yaml_quote(s: &str) -> String {
    let json = serde_json::to_string(s).expect("a string serializes");
    if !json.contains(YAML_BREAKS) {
        return json;
    }
    json.chars()
        .map(|c| match c {
            c if YAML_BREAKS.contains(&c) => format!("\\u{:04x}", c as u32),
            c => c.to_string(),
        })
        .collect()
}

/// Characters YAML treats as line breaks (or a byte-order mark) that JSON leaves raw.
const YAML_BREAKS: [char; 4] = ['\u{85}', '\u{2028}', '\u{2029}', '\u{feff}'];

/// `{{ x | shell }}`: a string as one POSIX shell word, in single quotes.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Tera hides the useful part of an error in its sources.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_values_whole() {
        assert_eq!(yaml_quote("null"), "\"null\"");
        assert_eq!(yaml_quote("a\nb: c"), "\"a\\nb: c\"");
        assert_eq!(shell_quote("it's $(x)"), "'it'\\''s $(x)'");
    }

    #[test]
    fn yaml_line_breaks_json_leaves_raw_are_escaped() {
        let hostile = "a\u{2028}b\u{2029}c\u{85}d\u{feff}e";
        let quoted = yaml_quote(hostile);
        assert_eq!(quoted, "\"a\\u2028b\\u2029c\\u0085d\\ufeffe\"");
        let back: String = serde_saphyr::from_str(&format!("k: {quoted}"))
            .map(|m: std::collections::BTreeMap<String, String>| m["k"].clone())
            .unwrap();
        assert_eq!(back, hostile);
    }
}
