//! `stage02-namespaces [--hostname NAME] [--userns] ROOTFS CMD [ARGS...]`
//!
//! The container recipe of stage 02: stage 01's checks and command, now run
//! in new UTS, PID, mount, IPC, network and cgroup namespaces (and a user
//! namespace with --userns), on a pivot_root-ed root with /proc, /sys and
//! /dev, under a tiny init that forwards signals and reaps zombies.

use std::process::ExitCode;

use clap::Parser;
use stage01_chroot::cli::ContainerArgs;
use stage01_chroot::{Error, checks, exit};
use stage02_namespaces::cli::NamespaceArgs;
use stage02_namespaces::{Container, namespaces};

/// Run a command in its own namespaces, with its own root. Needs root.
///
/// Exit status: the command's own, 128+N if signal N killed it, 125 if the
/// container could not be set up, 126 if CMD is not executable, 127 if CMD
/// was not found inside ROOTFS. SIGINT and SIGTERM are passed on to CMD.
#[derive(Parser)]
#[command(
    version,
    after_help = "Example:\n  berth-mkrootfs ./rootfs\n  stage02-namespaces --hostname box ./rootfs /bin/sh"
)]
struct Cli {
    #[command(flatten)]
    namespaces: NamespaceArgs,
    #[command(flatten)]
    container: ContainerArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    exit::finish("stage02-namespaces", run(cli))
}

// ANCHOR: recipe
fn run(cli: Cli) -> Result<u8, Error> {
    checks::require_root("creating namespaces needs CAP_SYS_ADMIN")?;
    let container = Container::from_args(cli.namespaces, cli.container)?;

    let started = namespaces::start(&container)?;
    let running = started.resume()?;
    running.wait()
}
// ANCHOR_END: recipe
