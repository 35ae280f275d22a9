use clap::{Parser, Subcommand};
use paasgen::commands;
use std::path::PathBuf;
use std::process::ExitCode;

/// Builds an immutable, highly available Kubernetes platform on OpenStack from one spec.
#[derive(Parser)]
#[command(version, about, long_about = None, after_help = "\
Examples:
  paasgen init                      write a commented example cluster.yaml
  paasgen validate -f cluster.yaml  check a spec
  paasgen render -f cluster.yaml    write out/<node>.yaml and out/manifest.json
  paasgen pki show                  list the certificates in the state dir")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a commented example spec of the reference platform.
    Init {
        /// Where to write it.
        #[arg(short, long, default_value = "cluster.yaml")]
        file: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Check a spec; prints "ok" or every problem with its field and line.
    Validate {
        #[arg(short, long, default_value = "cluster.yaml")]
        file: PathBuf,
    },
    /// Render one cloud-init document per node (creating missing keys and certs).
    Render {
        #[arg(short, long, default_value = "cluster.yaml")]
        file: PathBuf,
        /// Output directory.
        #[arg(short, long, default_value = "out")]
        out: PathBuf,
        /// State directory holding the PKI [default: .paasgen next to the spec].
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Inspect the PKI.
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
}

#[derive(Subcommand)]
enum PkiCommand {
    /// List every certificate: subject, SANs, usages, expiry.
    Show {
        #[arg(short, long, default_value = "cluster.yaml")]
        file: PathBuf,
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PAASGEN_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init { file, force } => commands::init(&file, force),
        Command::Validate { file } => commands::validate(&file),
        Command::Render {
            file,
            out,
            state_dir,
        } => commands::render(&file, &out, state_dir.as_deref()),
        Command::Pki {
            command: PkiCommand::Show { file, state_dir },
        } => commands::pki_show(&file, state_dir.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(spec_error) = e.downcast_ref::<paasgen::spec::SpecError>() {
                eprint!("{spec_error}");
                return ExitCode::from(2);
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
