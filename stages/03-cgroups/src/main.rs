//! `stage03-cgroups [--memory SIZE] [--cpus N] [--pids-limit N] [--stats]
//!  [--hostname NAME] [--userns] ROOTFS CMD [ARGS...]`
//!
//! The container recipe of stage 03: stage 02's container, inside a cgroup
//! that limits its memory, CPU time and number of processes.

use std::process::ExitCode;

use clap::Parser;
use stage01_chroot::cli::ContainerArgs;
use stage01_chroot::{Error, checks, exit};
use stage02_namespaces::cli::NamespaceArgs;
use stage02_namespaces::{Container, hostname, namespaces, supervise};
use stage03_cgroups::limits::LimitArgs;
use stage03_cgroups::{Limits, cgroup, report};

/// Run a command in its own namespaces and cgroup, with limits. Needs root.
///
/// Exit status: the command's own, 128+N if signal N killed it (137 when the
/// OOM killer did), 125 if the container could not be set up, 126 if CMD is
/// not executable, 127 if CMD was not found inside ROOTFS.
#[derive(Parser)]
#[command(
    version,
    after_help = "Example:\n  berth-mkrootfs ./rootfs\n  stage03-cgroups --memory 64m --cpus 0.5 --pids-limit 100 ./rootfs /bin/sh"
)]
struct Cli {
    #[command(flatten)]
    limits: LimitArgs,
    /// When the container ends, print what its cgroup measured (CPU time,
    /// peak memory, OOM kills, refused forks) on stderr.
    #[arg(long)]
    stats: bool,
    #[command(flatten)]
    namespaces: NamespaceArgs,
    #[command(flatten)]
    container: ContainerArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    exit::finish("stage03-cgroups", run(cli))
}

fn run(cli: Cli) -> Result<u8, Error> {
    checks::require_root("creating cgroups and namespaces needs root")?;
    let limits = Limits::from(&cli.limits);
    let container = Container::from_args(cli.namespaces, cli.container)?;
    let name = format!(
        "berth-{}",
        hostname::generate().map_err(|e| Error::io("read", "/dev/urandom", e))?
    );
    // Ctrl-C from here on is passed to the container, never cutting our
    // cleanup short.
    supervise::block_signals().map_err(|e| Error::Other(format!("block signals: {e}")))?;

    // ANCHOR: recipe
    let mut cgroup = cgroup::create(&name, &limits)?;
    let started = namespaces::start(&container)?;
    cgroup.add_process(started.pid())?; // before it runs anything
    let code = started.resume()?.wait()?;

    // The container has exited: read what the kernel counted, then clean
    // up. A failure here is reported, but the command's status stands.
    let usage = cgroup.usage();
    if let Err(err) = cgroup.remove() {
        eprintln!("stage03-cgroups: warning: {err}");
    }
    // ANCHOR_END: recipe

    match usage {
        Ok(usage) => report("stage03-cgroups", &name, &limits, &usage, code, cli.stats),
        Err(err) => eprintln!("stage03-cgroups: warning: {err}"),
    }
    Ok(code)
}
