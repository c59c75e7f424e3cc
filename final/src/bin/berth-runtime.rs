//! `berth-runtime`: berth as an OCI runtime, with runc's command line, for
//! tools that drive a runtime (Podman, containerd) or for a bundle made by
//! hand or by `umoci unpack`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use berth::oci;
use clap::{Parser, Subcommand};
use nix::sys::signal::Signal;
use stage01_chroot::{Error, checks, exit};

/// Run OCI bundles: create, start, state, kill, delete (runc's commands).
/// Needs root.
#[derive(Parser)]
#[command(
    version,
    after_help = "Example:\n  umoci unpack --image layout:tag bundle   # makes bundle/config.json\n  \
                  berth-runtime create --bundle bundle web\n  berth-runtime start web\n  \
                  berth-runtime state web\n  berth-runtime kill web TERM\n  berth-runtime delete web"
)]
struct Cli {
    /// Directory for the runtime's state.
    #[arg(long, global = true, default_value = "/run/berth", value_name = "DIR")]
    root: PathBuf,
    /// Also append errors to this file (as runc does for its callers).
    #[arg(long, global = true, value_name = "FILE")]
    log: Option<PathBuf>,
    /// The log's format; `text` only (accepted for runc compatibility).
    #[arg(long, global = true, value_name = "FORMAT", default_value = "text")]
    log_format: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a container from a bundle; its process waits for `start`.
    Create {
        /// The bundle: a directory with config.json and the root file system.
        #[arg(short, long, default_value = ".", value_name = "DIR")]
        bundle: PathBuf,
        /// Write the container's PID (its init, as the host sees it) here.
        #[arg(long, value_name = "FILE")]
        pid_file: Option<PathBuf>,
        id: String,
    },
    /// Let a created container run its process.
    Start { id: String },
    /// Print the container's state as JSON.
    State { id: String },
    /// Send a signal (default TERM) to the container.
    Kill {
        id: String,
        #[arg(default_value = "TERM", value_parser = berth::control::parse_signal)]
        signal: Signal,
    },
    /// Remove a stopped container (with --force, a running one too).
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// (internal) Hold a created container; started by `create`.
    #[command(hide = true)]
    Monitor {
        #[arg(long)]
        ready_fd: i32,
        #[arg(long)]
        bundle: PathBuf,
        id: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = cli.log.clone();
    let result = guard(&cli.command).and_then(|()| dispatch(cli));
    if let (Err(err), Some(log)) = (&result, log) {
        append_log(&log, &err.to_string());
    }
    exit::finish("berth-runtime", result)
}

fn dispatch(cli: Cli) -> Result<u8, Error> {
    checks::require_root("containers need root")?;
    let root = &cli.root;
    match cli.command {
        Command::Create {
            bundle,
            pid_file,
            id,
        } => oci::create(root, &bundle, &id, pid_file.as_deref()).map(|()| 0),
        Command::Start { id } => oci::start(root, &id).map(|()| 0),
        Command::State { id } => oci::state(root, &id).map(|()| 0),
        Command::Kill { id, signal } => oci::kill_container(root, &id, signal).map(|()| 0),
        Command::Delete { force, id } => oci::delete(root, &id, force).map(|()| 0),
        Command::Monitor {
            ready_fd,
            bundle,
            id,
        } => oci::monitor(root, &bundle, &id, ready_fd),
    }
}

/// As `berth` does: no inherited file reaches the container, and the
/// commands that start one run from a read-only view of this binary.
fn guard(command: &Command) -> Result<(), Error> {
    berth::guard::close_inherited_files()?;
    match command {
        Command::Create { .. } | Command::Monitor { .. } => {
            berth::guard::run_from_read_only_binary()
        }
        _ => Ok(()),
    }
}

fn append_log(path: &Path, message: &str) {
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(file, "berth-runtime: {message}");
    }
}
