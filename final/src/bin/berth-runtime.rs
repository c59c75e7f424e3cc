//! `berth-runtime`: berth as an OCI runtime, with runc's command line, for
//! tools that drive a runtime (Podman, containerd) or for a bundle made by
//! hand or by `umoci unpack`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use berth::runtime;
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
    /// The log's format: `text`, or `json` (one object per line, as runc
    /// writes it for Podman, containerd and Docker to read).
    #[arg(long, global = true, value_name = "FORMAT", default_value = "text")]
    log_format: LogFormat,
    /// Accepted for runc's callers; refused if set (berth writes cgroupfs).
    #[arg(long, global = true)]
    systemd_cgroup: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a container from a bundle: set it up and leave its first
    /// process waiting for `start`. Set-up errors are reported here.
    Create {
        #[command(flatten)]
        create: CreateArgs,
    },
    /// Let a created container run its command.
    Start { id: String },
    /// Create and start a container, wait for it to end and delete it
    /// (with --detach, return once it runs). Exits with its exit code.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return once the container runs; it is left to whoever adopts it.
        #[arg(short, long)]
        detach: bool,
    },
    /// Print the container's state as JSON (the runtime spec's document).
    State { id: String },
    /// Send a signal (default TERM) to the container's first process.
    Kill {
        /// Send it to every process in the container.
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "TERM", value_parser = berth::control::parse_signal)]
        signal: Signal,
    },
    /// Remove a stopped container (with --force, one in any state).
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Run one more process in a running container.
    Exec {
        /// A JSON file with the process, as `process` in config.json.
        #[arg(short, long, value_name = "FILE")]
        process: Option<PathBuf>,
        /// Don't wait for it; it is left to whoever adopts it.
        #[arg(short, long)]
        detach: bool,
        /// Write its PID here.
        #[arg(long, value_name = "FILE")]
        pid_file: Option<PathBuf>,
        /// Give it a terminal (sent to --console-socket).
        #[arg(short, long)]
        tty: bool,
        /// A Unix socket to send the terminal's outer side to.
        #[arg(long, value_name = "PATH")]
        console_socket: Option<PathBuf>,
        /// Its working directory, inside.
        #[arg(long, value_name = "DIR")]
        cwd: Option<String>,
        /// More environment, KEY=VALUE.
        #[arg(short, long, value_name = "KEY=VALUE")]
        env: Vec<String>,
        id: String,
        /// The command and its arguments (without --process).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// List the container's processes.
    Ps {
        /// `table`, or `json`: a list of PIDs.
        #[arg(short, long, default_value = "table", value_name = "FORMAT")]
        format: ListFormat,
        id: String,
    },
    /// Freeze every process of the container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Change the limits of a live container.
    Update {
        /// A JSON file with `linux.resources` settings (`-` for stdin).
        #[arg(short, long, value_name = "FILE")]
        resources: Option<PathBuf>,
        #[command(flatten)]
        flags: runtime::UpdateFlags,
        id: String,
    },
    /// Write a starting config.json into the bundle (the spec's defaults).
    Spec {
        #[arg(short, long, default_value = ".", value_name = "DIR")]
        bundle: PathBuf,
    },
    /// List the containers under --root.
    List {
        /// `table` or `json`.
        #[arg(short, long, default_value = "table", value_name = "FORMAT")]
        format: ListFormat,
    },
    /// Print what this runtime supports, as the runtime spec's features JSON.
    Features,
}

#[derive(clap::Args)]
struct CreateArgs {
    /// The bundle: a directory with config.json and the root file system.
    #[arg(short, long, default_value = ".", value_name = "DIR")]
    bundle: PathBuf,
    /// Write the container's PID (its first process, as the host sees it) here.
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// A Unix socket to send the terminal's outer side to, when config.json
    /// asks for a terminal (the caller relays it).
    #[arg(long, value_name = "PATH")]
    console_socket: Option<PathBuf>,
    id: String,
}

impl CreateArgs {
    fn options(&self) -> runtime::CreateOptions<'_> {
        runtime::CreateOptions {
            bundle: &self.bundle,
            id: &self.id,
            pid_file: self.pid_file.as_deref(),
            console_socket: self.console_socket.as_deref(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = cli.log_format;
    let mut log = None;
    let result = check_flags(&cli)
        .and_then(|()| guard(&cli.command))
        .and_then(|()| {
            // Opened now, as runc does: callers read it after any failure,
            // and `exec` later stands in the container's root, where this
            // path would lead elsewhere.
            log = cli.log.as_deref().map(open_log).transpose()?;
            dispatch(cli)
        });
    if let (Err(err), Some(log)) = (&result, log.as_mut()) {
        append_log(log, log_format, &err.to_string());
    }
    exit::finish("berth-runtime", result)
}

fn open_log(path: &Path) -> Result<std::fs::File, Error> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io("open the log", path, e))
}

/// runc's global flags that berth does not implement, refused by name.
fn check_flags(cli: &Cli) -> Result<(), Error> {
    match cli.systemd_cgroup {
        true => Err(Error::Other(
            "--systemd-cgroup: berth-runtime manages cgroups through the cgroup file system \
             only; configure the caller for cgroupfs (Podman: --cgroup-manager cgroupfs)"
                .into(),
        )),
        false => Ok(()),
    }
}

fn dispatch(cli: Cli) -> Result<u8, Error> {
    // Writing a config.json or describing ourselves needs no privilege.
    if !matches!(cli.command, Command::Spec { .. } | Command::Features) {
        checks::require_root("containers need root")?;
    }
    let root = &cli.root;
    let done = |()| 0;
    match cli.command {
        Command::Create { create } => {
            berth::launch::warm_up_cgroup_moves();
            runtime::create(root, &create.options()).map(|_| 0)
        }
        Command::Start { id } => runtime::start(root, &id).map(done),
        Command::Run { create, detach } => {
            berth::launch::warm_up_cgroup_moves();
            runtime::run(root, &create.options(), detach)
        }
        Command::State { id } => runtime::state(root, &id).map(done),
        Command::Kill { all, id, signal } => {
            runtime::kill_container(root, &id, signal, all).map(done)
        }
        Command::Delete { force, id } => runtime::delete(root, &id, force).map(done),
        Command::Exec {
            process,
            detach,
            pid_file,
            tty,
            console_socket,
            cwd,
            env,
            id,
            command,
        } => runtime::exec(
            root,
            runtime::ExecOptions {
                id: &id,
                process_file: process.as_deref(),
                args: command,
                cwd,
                env,
                tty,
                console_socket: console_socket.as_deref(),
                detach,
                pid_file: pid_file.as_deref(),
            },
        ),
        Command::Ps { format, id } => {
            runtime::ps(root, &id, matches!(format, ListFormat::Json)).map(done)
        }
        Command::Pause { id } => runtime::pause(root, &id, true).map(done),
        Command::Resume { id } => runtime::pause(root, &id, false).map(done),
        Command::Update {
            resources,
            flags,
            id,
        } => runtime::update(root, &id, resources.as_deref(), &flags).map(done),
        Command::Spec { bundle } => runtime::spec(&bundle).map(done),
        Command::List { format } => {
            runtime::list(root, matches!(format, ListFormat::Json)).map(done)
        }
        Command::Features => runtime::features().map(done),
    }
}

/// As `berth` does: no inherited file reaches the container, and the
/// commands that start something in one run from a read-only view of this
/// binary.
fn guard(command: &Command) -> Result<(), Error> {
    berth::guard::close_inherited_files()?;
    match command {
        Command::Create { .. } | Command::Run { .. } | Command::Exec { .. } => {
            berth::guard::run_from_read_only_binary()
        }
        _ => Ok(()),
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ListFormat {
    Table,
    Json,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn append_log(file: &mut std::fs::File, format: LogFormat, message: &str) {
    let line = match format {
        LogFormat::Text => format!("berth-runtime: {message}"),
        LogFormat::Json => serde_json::json!({
            "level": "error",
            "msg": message,
            "time": runtime::rfc3339(berth::record::now()),
        })
        .to_string(),
    };
    let _ = writeln!(file, "{line}");
}
