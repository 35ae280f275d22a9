use clap::{CommandFactory, Parser, Subcommand};
use paasgen::commands;
use paasgen::commands::cloud::Output;
use paasgen::day2;
use paasgen::day2::setup::Provider;
use std::path::PathBuf;
use std::process::ExitCode;

/// Builds an immutable, highly available Kubernetes platform on OpenStack from one spec.
#[derive(Parser)]
#[command(version, about, long_about = None, after_help = "\
Examples:
  paasgen init                      write a commented example cluster.yaml
  paasgen validate -f cluster.yaml  check a spec
  paasgen render -f cluster.yaml    write out/<node>.yaml and out/manifest.json
  paasgen pki show                  list the certificates in the state dir
  paasgen launch --cloud openstack --os-cloud mycloud
                                    create everything on OpenStack (again: no-op)
  paasgen diff                      what changed since launch, per node")]
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
        /// Number of workers (the example has 2; more widen the private network to a /16).
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Check a spec; prints "ok" or every problem with its field and line.
    Validate {
        #[arg(short, long, default_value = "cluster.yaml")]
        file: PathBuf,
    },
    /// Render one cloud-init document per node (creating missing keys and certs).
    Render {
        #[command(flatten)]
        paths: Paths,
        #[command(flatten)]
        lock: WaitLock,
        /// Replace the documents of another cluster found in the output dir.
        #[arg(long)]
        force: bool,
        /// Write nothing: show how the output dir differs from a render now and exit 1
        /// if it does (for CI and reviews).
        #[arg(long)]
        check: bool,
    },
    /// Show what `launch` would create, keep or find changed; changes nothing.
    Plan {
        #[command(flatten)]
        cloud: CloudOpts,
        /// `json`: the cloud's capabilities, the reasons it cannot build the spec (if
        /// any) and the plan, as one document.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
        /// Also print what the cloud offers (extensions, microversions, services).
        #[arg(short, long)]
        verbose: bool,
    },
    /// Build the platform on the cloud: idempotent, resumable.
    Launch {
        #[command(flatten)]
        cloud: CloudOpts,
        /// Print the plan and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// API calls in flight at once.
        #[arg(long, default_value_t = 10)]
        parallel: usize,
        /// Delete and recreate servers that go ERROR (once each).
        #[arg(long)]
        replace_failed: bool,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
        #[command(flatten)]
        lock: WaitLock,
    },
    /// Replace one node by a fresh server with fresh user-data (same port and address);
    /// an etcd node is swapped in etcd's membership first, a gateway hands the VIPs to
    /// the other (stopped cleanly) once that one is seen serving.
    Rebuild {
        /// The node to replace, as named in the spec.
        node: String,
        #[command(flatten)]
        cloud: CloudOpts,
        /// Replace an etcd member even if the others cannot keep the majority meanwhile,
        /// a gateway even if no other one serves.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        replace: ReplaceOpts,
    },
    /// etcd lost its majority: replace every etcd server and found the cluster again from
    /// a backup (the newest good one of `backup list` unless --from names one).
    Recover {
        /// The backup to restore: its file name in the state dir's backups/, or `swift:<object>`.
        #[arg(long)]
        from: Option<PathBuf>,
        #[command(flatten)]
        cloud: CloudOpts,
        /// Recover even though etcd still has its majority (every write since the backup
        /// is lost).
        #[arg(long)]
        force: bool,
        /// Do not wait for the Kubernetes API afterwards (its masters are down too).
        #[arg(long)]
        etcd_only: bool,
        #[command(flatten)]
        replace: ReplaceOpts,
    },
    /// Bring the running cluster to what the spec says by replacing, one at a time and
    /// in a safe order, every node whose user-data changed (`--to`, `--etcd` set versions).
    Upgrade {
        /// Kubernetes version to move to (written into the spec first).
        #[arg(long, value_name = "VERSION")]
        to: Option<String>,
        /// etcd version to move to (written into the spec first, as etcd.version).
        #[arg(long, value_name = "VERSION")]
        etcd: Option<String>,
        /// sha256 of that etcd release's tarball (etcd.sha256): needed for a version
        /// paasgen pins no checksum for, unless the image has it.
        #[arg(long, value_name = "HEX")]
        etcd_sha256: Option<String>,
        /// Renew certificates that expire within DAYS: paasgen's are re-issued and the
        /// nodes that carry them replaced, as are masters whose API server certificate
        /// (kubeadm's, one year) expires by then.
        #[arg(long, value_name = "DAYS", default_value_t = 60,
              value_parser = clap::value_parser!(u32).range(1..=3650))]
        renew_within: u32,
        #[command(flatten)]
        cloud: CloudOpts,
        #[command(flatten)]
        replace: ReplaceOpts,
    },
    /// Is the platform serving: etcd members (leader, size), the API, every node Ready,
    /// the addons' workloads, the newest backup. Writes nothing; exit 1 names what is not well.
    Status {
        #[arg(short, long, default_value = "cluster.yaml")]
        file: PathBuf,
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Where etcd's members are reached, by their names (SNI) [default: public VIP:2379].
        #[arg(long)]
        etcd_via: Option<std::net::SocketAddr>,
        /// Seconds to wait for a connection and for each answer.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
        /// `text`, or `json` for scripts.
        #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
        /// Cloud of clouds.yaml whose Swift holds the off-site copies, when
        /// `etcd.swift_backups` is set [default: $OS_CLOUD, else the OS_* environment].
        #[arg(long)]
        os_cloud: Option<String>,
    },
    /// etcd backups: `backup now` takes a snapshot through the etcd API into the state
    /// dir's backups/; `backup list` shows them, each checked against its sha256.
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// Delete every resource of the cluster from the cloud.
    Destroy {
        #[command(flatten)]
        cloud: CloudOpts,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        lock: WaitLock,
    },
    /// Unified diff, per node, of the user-data launched against what render gives now.
    Diff {
        #[command(flatten)]
        cloud: CloudOpts,
    },
    /// Boot a render as local systemd-nspawn nodes on a fabric of network namespaces
    /// (`up -d out/`, `status`, `exec NODE -- CMD`, `down`); see images/README.md.
    Lab {
        #[command(subcommand)]
        command: LabCommand,
    },
    /// Node image: `image build` bakes it with debootstrap (cached by recipe hash);
    /// `--format qcow2` makes a bootable disk of it.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Inspect the PKI.
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
    /// Print a shell completion script (e.g. `paasgen completions bash >
    /// /etc/bash_completion.d/paasgen`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) of paasgen or of one verb: `paasgen man rebuild | man -l -`.
    Man {
        /// A verb (its page is paasgen-VERB(1)); none: paasgen(1).
        verb: Option<String>,
    },
}

/// Where the spec, the rendered documents and the state live.
#[derive(clap::Args)]
struct Paths {
    #[arg(short, long, default_value = "cluster.yaml")]
    file: PathBuf,
    /// Where rendered documents are written.
    #[arg(short, long, default_value = "out")]
    out: PathBuf,
    /// State directory holding the PKI [default: .paasgen next to the spec].
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct CloudOpts {
    #[command(flatten)]
    paths: Paths,
    /// The cloud provider.
    #[arg(long, value_enum, default_value_t = CloudProvider::Openstack)]
    cloud: CloudProvider,
    #[command(flatten)]
    access: CloudAccess,
}

/// Which cloud of clouds.yaml, and how long to wait for its APIs.
#[derive(clap::Args)]
struct CloudAccess {
    /// Cloud of clouds.yaml to use [default: $OS_CLOUD, else the OS_* environment].
    #[arg(long)]
    os_cloud: Option<String>,
    /// Seconds to wait for a connection and for each answer (or stream message) of
    /// the cloud's APIs.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
}

impl CloudAccess {
    fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout)
    }
}

impl CloudOpts {
    fn args(&self, wait_lock: bool) -> day2::setup::CloudArgs<'_> {
        day2::setup::CloudArgs {
            provider: self.cloud.into(),
            file: &self.paths.file,
            out: &self.paths.out,
            state_dir: self.paths.state_dir.as_deref(),
            os_cloud: self.access.os_cloud.as_deref(),
            wait_lock,
            timeout: self.access.timeout(),
        }
    }
}

/// `--wait-lock`, taken by every verb that writes the state dir.
#[derive(clap::Args, Clone, Copy)]
struct WaitLock {
    /// Wait for another writer of the state dir instead of failing.
    #[arg(long)]
    wait_lock: bool,
}

/// How `rebuild` and `upgrade` replace a node.
#[derive(clap::Args)]
struct ReplaceOpts {
    /// Where etcd's members are reached, by their names (SNI) [default: public VIP:2379].
    #[arg(long)]
    etcd_via: Option<std::net::SocketAddr>,
    /// Seconds each replacement may take to be healthy.
    #[arg(long, default_value_t = 900)]
    wait: u64,
    #[command(flatten)]
    lock: WaitLock,
}

impl ReplaceOpts {
    fn with(&self, force: bool) -> day2::session::ReplaceWith {
        day2::session::ReplaceWith {
            force,
            etcd_via: self.etcd_via,
            wait: std::time::Duration::from_secs(self.wait),
        }
    }
}

/// What every backup verb is told: the spec, its state dir, and the cloud holding the
/// Swift copies.
#[derive(clap::Args)]
struct BackupOpts {
    #[arg(short, long, default_value = "cluster.yaml")]
    file: PathBuf,
    #[arg(long)]
    state_dir: Option<PathBuf>,
    // The cloud whose Swift holds the copies.
    #[command(flatten)]
    access: CloudAccess,
}

#[derive(Subcommand)]
enum BackupCommand {
    /// Take a snapshot now (from the first healthy member); copied to Swift too when
    /// etcd.swift_backups is set up.
    Now {
        #[command(flatten)]
        opts: BackupOpts,
        /// Where etcd's members are reached, by their names (SNI) [default: public VIP:2379].
        #[arg(long)]
        etcd_via: Option<std::net::SocketAddr>,
        #[command(flatten)]
        lock: WaitLock,
    },
    /// Prepare the Swift container of etcd.swift_backups (versioned, with a TempURL key
    /// only paasgen holds); etcd nodes rendered afterwards upload there.
    Setup {
        #[command(flatten)]
        opts: BackupOpts,
        #[command(flatten)]
        lock: WaitLock,
    },
    /// List the backups, oldest first, and the copies in Swift.
    List {
        #[command(flatten)]
        opts: BackupOpts,
    },
    /// Delete the copies in Swift beyond etcd.swift_backups.keep per member (`backup
    /// now` does it too); the nodes themselves cannot delete.
    Prune {
        #[command(flatten)]
        opts: BackupOpts,
    },
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Bake (or reuse) the node image; prints the tarball's (or qcow2's) path.
    Build {
        /// `tar`: the rootfs tarball (images/bake); `qcow2`: a bootable UEFI disk made
        /// from it (images/qcow2), with a manifest next to it.
        #[arg(long, value_enum, default_value_t = ImageFormat::Tar)]
        format: ImageFormat,
    },
    /// Upload the qcow2 (built or reused first) to Glance with its recipe hash and the
    /// properties Nova boots it by; an active image of the same recipe is reused.
    Upload {
        /// A qcow2 made by `image build --format qcow2` (its manifest beside it).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Image name [default: paasgen-node-<recipe sha12>].
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        access: CloudAccess,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ImageFormat {
    Tar,
    Qcow2,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OutputFormat {
    Text,
    Json,
}

impl From<OutputFormat> for Output {
    fn from(f: OutputFormat) -> Output {
        match f {
            OutputFormat::Text => Output::Text,
            OutputFormat::Json => Output::Json,
        }
    }
}

/// `--cloud`: where the verbs build (the library's `Provider`, named for clap here).
#[derive(Clone, Copy, clap::ValueEnum)]
enum CloudProvider {
    Openstack,
    Lab,
}

impl From<CloudProvider> for Provider {
    fn from(p: CloudProvider) -> Provider {
        match p {
            CloudProvider::Openstack => Provider::Openstack,
            CloudProvider::Lab => Provider::Lab,
        }
    }
}

#[derive(Subcommand)]
enum LabCommand {
    /// Boot the etcd and gateway nodes of a render (needs root; one lab per machine:
    /// PAASGEN_LAB_LOCK_WAIT=SECONDS waits for another to go).
    Up {
        /// The render output (manifest.json and one user-data per node).
        #[arg(short = 'd', long = "dir")]
        out: PathBuf,
        /// The baked image [default: $PAASGEN_IMAGE, else what images/bake prints].
        #[arg(long)]
        image: Option<PathBuf>,
        /// Boot the masters and workers too (else they are listeners standing in).
        #[arg(long)]
        kubernetes: bool,
        /// Serve this scripts/lab-mirror output on the remote host (http :80, registry :5000).
        #[arg(long)]
        mirror: Option<PathBuf>,
        /// Boot NODE from the image minus its Kubernetes software and runc (a stock image).
        #[arg(long, value_name = "NODE")]
        stock: Vec<String>,
    },
    /// Wait until cloud-init finished on every booted node.
    Wait {
        #[arg(default_value_t = 600)]
        timeout_seconds: u64,
    },
    /// Remove everything `up` made (idempotent).
    Down,
    /// Nodes, their state and addresses.
    Status,
    /// Run a command inside a node (or in `remote`, `internet`, `net`).
    Exec {
        node: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Power a node off at once (kill -9; its NICs go); a stand-in stops listening.
    Stop { node: String },
    /// Boot a powered-off node again from its disk.
    Start { node: String },
    /// Ask a node to power off cleanly and return, as a cloud's server stop does
    /// (destroyed after 60 s like Nova's shutdown_timeout).
    Shutdown { node: String },
    #[command(hide = true)]
    FinishShutdown { node: String, nspawn_pid: i32 },
    /// Print a node's container leader PID.
    Leader { node: String },
    /// Delete a node: power off, drop its disk.
    Remove { node: String },
    /// A new node in NODE's place (same NICs and addresses) from a fresh copy of the
    /// image, fed USER_DATA (what a cloud's server create does).
    Replace { node: String, user_data: PathBuf },
}

impl From<LabCommand> for commands::lab::LabStep {
    fn from(c: LabCommand) -> Self {
        use commands::lab::LabStep as S;
        match c {
            LabCommand::Up {
                out,
                image,
                kubernetes,
                mirror,
                stock,
            } => S::Up {
                out,
                image,
                kubernetes,
                mirror,
                stock,
            },
            LabCommand::Wait { timeout_seconds } => S::Wait {
                timeout: std::time::Duration::from_secs(timeout_seconds),
            },
            LabCommand::Down => S::Down,
            LabCommand::Status => S::Status,
            LabCommand::Exec { node, command } => S::Exec {
                node,
                argv: command,
            },
            LabCommand::Stop { node } => S::Stop(node),
            LabCommand::Start { node } => S::Start(node),
            LabCommand::Shutdown { node } => S::Shutdown(node),
            LabCommand::FinishShutdown { node, nspawn_pid } => S::FinishShutdown(node, nspawn_pid),
            LabCommand::Leader { node } => S::Leader(node),
            LabCommand::Remove { node } => S::Remove(node),
            LabCommand::Replace { node, user_data } => S::Replace(node, user_data),
        }
    }
}

#[derive(Subcommand)]
enum PkiCommand {
    /// List every certificate: subject, SANs, usages, expiry.
    Show {
        #[arg(short, long, default_value = "cluster.yaml")]
        file: PathBuf,
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Also read the API servers' serving certificates (kubeadm's) from the live
        /// cluster, through its public address.
        #[arg(long)]
        live: bool,
    },
}

/// paasgen(1), or paasgen-VERB(1) as the top page's SUBCOMMANDS section names it.
fn man_page(verb: Option<&str>) -> anyhow::Result<()> {
    let top = Cli::command();
    let page = match verb {
        None => top,
        Some(verb) => top
            .find_subcommand(verb)
            .ok_or_else(|| anyhow::anyhow!("man: no verb {verb:?} (see `paasgen --help`)"))?
            .clone()
            .name(format!("paasgen-{verb}")),
    };
    clap_mangen::Man::new(page).render(&mut std::io::stdout())?;
    Ok(())
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
        Command::Init {
            file,
            force,
            workers,
        } => commands::init(&file, force, workers),
        Command::Validate { file } => commands::validate(&file),
        Command::Render {
            paths,
            lock,
            force,
            check,
        } => commands::render(&commands::RenderArgs {
            file: &paths.file,
            out: &paths.out,
            state_dir: paths.state_dir.as_deref(),
            wait_lock: lock.wait_lock,
            force,
            check,
        }),
        Command::Plan {
            cloud,
            output,
            verbose,
        } => commands::cloud::plan(&cloud.args(false), output.into(), verbose),
        Command::Launch {
            cloud,
            dry_run,
            parallel,
            replace_failed,
            output,
            lock,
        } => {
            let opts = paasgen::cloud::apply::Options {
                parallel,
                replace_failed,
                ..Default::default()
            };
            commands::cloud::launch(&cloud.args(lock.wait_lock), &opts, dry_run, output.into())
        }
        Command::Rebuild {
            node,
            cloud,
            force,
            replace,
        } => commands::rebuild::rebuild(
            &commands::rebuild::RebuildArgs {
                cloud: cloud.args(replace.lock.wait_lock),
                node: &node,
                with: replace.with(force),
            },
            &paasgen::cloud::apply::Options::default(),
        ),
        Command::Recover {
            from,
            cloud,
            force,
            etcd_only,
            replace,
        } => commands::recover::recover(
            &commands::recover::RecoverArgs {
                cloud: cloud.args(replace.lock.wait_lock),
                from: from.as_deref(),
                with: replace.with(force),
                etcd_only,
            },
            &paasgen::cloud::apply::Options::default(),
        ),
        Command::Upgrade {
            to,
            etcd,
            etcd_sha256,
            renew_within,
            cloud,
            replace,
        } => commands::upgrade::upgrade(
            &commands::upgrade::UpgradeArgs {
                cloud: cloud.args(replace.lock.wait_lock),
                versions: day2::upgrade::NewVersions {
                    kubernetes: to.as_deref(),
                    etcd: etcd.as_deref(),
                    etcd_sha256: etcd_sha256.as_deref(),
                },
                // An upgrade never forces: it stops where a replacement is unsafe.
                with: replace.with(false),
                renew_within_days: renew_within,
            },
            &paasgen::cloud::apply::Options::default(),
        ),
        Command::Backup {
            command:
                BackupCommand::Now {
                    opts,
                    etcd_via,
                    lock,
                },
        } => commands::backup::backup_now(&commands::backup::BackupArgs {
            file: &opts.file,
            state_dir: opts.state_dir.as_deref(),
            os_cloud: opts.access.os_cloud.as_deref(),
            etcd_via,
            timeout: opts.access.timeout(),
            wait_lock: lock.wait_lock,
        }),
        Command::Backup {
            command: BackupCommand::Setup { opts, lock },
        } => commands::backup::setup(&commands::backup::SetupArgs {
            file: &opts.file,
            state_dir: opts.state_dir.as_deref(),
            os_cloud: opts.access.os_cloud.as_deref(),
            timeout: opts.access.timeout(),
            wait_lock: lock.wait_lock,
        }),
        Command::Backup {
            command: BackupCommand::Prune { opts },
        } => commands::backup::prune(
            &opts.file,
            opts.access.os_cloud.as_deref(),
            opts.access.timeout(),
        ),
        Command::Backup {
            command: BackupCommand::List { opts },
        } => commands::backup::backup_list(
            &opts.file,
            opts.state_dir.as_deref(),
            opts.access.os_cloud.as_deref(),
            opts.access.timeout(),
        ),
        Command::Destroy { cloud, yes, lock } => {
            commands::cloud::destroy(&cloud.args(lock.wait_lock), yes)
        }
        Command::Diff { cloud } => commands::cloud::diff(&cloud.args(false)),
        Command::Lab { command } => commands::lab::lab(command.into()),
        Command::Image {
            command: ImageCommand::Build { format },
        } => commands::run_script(
            match format {
                ImageFormat::Tar => "images/bake",
                ImageFormat::Qcow2 => "images/qcow2",
            },
            &[],
        ),
        Command::Image {
            command: ImageCommand::Upload { file, name, access },
        } => commands::image::upload(&commands::image::UploadArgs {
            file: file.as_deref(),
            name: name.as_deref(),
            os_cloud: access.os_cloud.as_deref(),
            timeout: access.timeout(),
        }),
        Command::Pki {
            command:
                PkiCommand::Show {
                    file,
                    state_dir,
                    live,
                },
        } => commands::pki_show(&file, state_dir.as_deref(), live),
        Command::Status {
            file,
            state_dir,
            etcd_via,
            timeout,
            output,
            os_cloud,
        } => commands::status::status(&commands::status::StatusArgs {
            file: &file,
            state_dir: state_dir.as_deref(),
            os_cloud: os_cloud.as_deref(),
            etcd_via,
            timeout: std::time::Duration::from_secs(timeout),
            json: matches!(output, OutputFormat::Json),
        }),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "paasgen",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Man { verb } => man_page(verb.as_deref()),
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

#[cfg(test)]
mod tests {
    /// clap's own check of the definitions (duplicate names, flattened options that
    /// clash, defaults its parser refuses), which otherwise shows only when a verb runs.
    #[test]
    fn the_command_line_definitions_are_consistent() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
