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
    /// The log's format: `text`, or `json` (one object per line, as runc
    /// writes it for Podman, containerd and Docker to read).
    #[arg(long, global = true, value_name = "FORMAT", default_value = "text")]
    log_format: LogFormat,

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
    let (log, log_format) = (cli.log.clone(), cli.log_format);
    let result = guard(&cli.command).and_then(|()| dispatch(cli));
    if let (Err(err), Some(log)) = (&result, log) {
        append_log(&log, log_format, &err.to_string());
    }
    exit::finish("berth-runtime", result)
}

fn dispatch(cli: Cli) -> Result<u8, Error> {
    // Writing a config.json or describing ourselves needs no privilege.
    if !matches!(cli.command, Command::Spec { .. } | Command::Features) {
        checks::require_root("containers need root")?;
    }
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
        Command::Spec { bundle } => oci::spec(&bundle).map(|()| 0),
        Command::List { format } => oci::list(root, matches!(format, ListFormat::Json)).map(|()| 0),
        Command::Features => oci::features().map(|()| 0),
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

fn append_log(path: &Path, format: LogFormat, message: &str) {
    let line = match format {
        LogFormat::Text => format!("berth-runtime: {message}"),
        LogFormat::Json => serde_json::json!({
            "level": "error",
            "msg": message,
            "time": rfc3339(berth::record::now()),
        })
        .to_string(),
    };
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(file, "{line}");
    }
}

/// Seconds since 1970 as RFC 3339 in UTC, `YYYY-MM-DDTHH:MM:SSZ`: the
/// `time` of runc's JSON log lines, which its callers parse as a date (the
/// civil calendar from a day count, after Howard Hinnant's `civil_from_days`).
fn rfc3339(seconds: u64) -> String {
    let (days, rest) = ((seconds / 86_400) as i64, seconds % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_796_212_800), "2026-12-02T12:00:00Z");
    }
}
