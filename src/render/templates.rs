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
