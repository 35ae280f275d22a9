//! `paasgen lab`: the boot lab (systemd-nspawn nodes on a fabric of network namespaces)
//! that the lab tests, the benches and `--cloud lab` stand on.

use crate::cloud::lab::{Lab, UpOptions};
use crate::day2::setup::script_path;
use anyhow::{bail, Context, Result};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::Duration;

/// One lab step, as the command line names it.
pub enum LabStep {
    Up {
        out: PathBuf,
        image: Option<PathBuf>,
        kubernetes: bool,
        mirror: Option<PathBuf>,
        stock: Vec<String>,
    },
    Wait {
        timeout: Duration,
    },
    Down,
    Status,
    Exec {
        node: String,
        argv: Vec<String>,
    },
    Stop(String),
    Start(String),
    Shutdown(String),
    FinishShutdown(String, i32),
    Leader(String),
    Remove(String),
    Replace(String, PathBuf),
}

pub fn lab(step: LabStep) -> Result<()> {
    let lab = Lab::new(script_path("scripts/lab")?);
    match step {
        LabStep::Up {
            out,
            image,
            kubernetes,
            mirror,
            stock,
        } => {
            let image = match image.or_else(|| std::env::var_os("PAASGEN_IMAGE").map(PathBuf::from))
            {
                Some(image) => image,
                None => super::built_path("images/bake")?,
            };
            if !image.is_file() {
                bail!("image {} not found", image.display());
            }
            let lock_wait = std::env::var("PAASGEN_LAB_LOCK_WAIT")
                .ok()
                .map(|s| s.parse::<u64>())
                .transpose()
                .context("PAASGEN_LAB_LOCK_WAIT: seconds")?
                .unwrap_or(0);
            lab.up(&UpOptions {
                out,
                image,
                kubernetes,
                mirror,
                stock,
                lock_wait: Duration::from_secs(lock_wait),
            })
        }
        LabStep::Wait { timeout } => lab.wait(timeout),
        LabStep::Down => lab.down(),
        LabStep::Status => {
            print!("{}", lab.status()?);
            Ok(())
        }
        LabStep::Exec { node, argv } => {
            if argv.is_empty() {
                bail!("usage: paasgen lab exec NODE -- CMD...");
            }
            let err = lab.exec_command(&node, &argv)?.exec();
            Err(err).with_context(|| format!("running {} in {node}", argv[0]))
        }
        LabStep::Stop(node) => lab.stop(&node),
        LabStep::Start(node) => lab.start(&node),
        LabStep::Shutdown(node) => lab.shutdown(&node),
        LabStep::FinishShutdown(node, pid) => lab.finish_shutdown(&node, pid),
        LabStep::Leader(node) => {
            println!("{}", lab.leader(&node)?);
            Ok(())
        }
        LabStep::Remove(node) => lab.remove(&node),
        LabStep::Replace(node, user_data) => lab.replace(&node, &user_data),
    }
}
