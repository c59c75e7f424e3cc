//! `stage01-chroot ROOTFS CMD [ARGS...]`: run CMD with ROOTFS as its `/`.
//!
//! The whole container recipe of stage 01. It gives the command a different
//! root directory and nothing else: same hostname, same processes, same
//! network, no limits, and root can walk out (try `/bin/chroot-escape`).

use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use clap::Parser;
use stage01_chroot::cli::ContainerArgs;
use stage01_chroot::{Error, checks, chroot, exit};

/// Run a command with a directory as its root (chroot). Needs root.
///
/// Exit status: the command's own, 128+N if signal N killed it, 125 if the
/// container could not be set up, 126 if CMD is not executable, 127 if CMD
/// was not found inside ROOTFS.
#[derive(Parser)]
#[command(
    version,
    after_help = "Example:\n  berth-mkrootfs ./rootfs\n  stage01-chroot ./rootfs /bin/ls /"
)]
struct Cli {
    #[command(flatten)]
    container: ContainerArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    exit::finish("stage01-chroot", run(&cli.container))
}

// ANCHOR: recipe
fn run(container: &ContainerArgs) -> Result<u8, Error> {
    checks::require_root("chroot(2) needs CAP_SYS_CHROOT")?;
    let rootfs = checks::check_rootfs(&container.rootfs)?;

    let mut command = container.to_command();
    let root = rootfs.clone();
    // SAFETY: runs in the forked child before exec; enter_root only makes the
    // chroot and chdir system calls, which are safe there.
    unsafe { command.pre_exec(move || chroot::enter_root(&root)) };

    let mut child = command
        .spawn()
        .map_err(|err| exit::spawn_error(err, container.program(), &rootfs))?;
    let status = child
        .wait()
        .map_err(|err| Error::io("wait for", &rootfs, err))?;
    Ok(exit::exit_code(status))
}
// ANCHOR_END: recipe
