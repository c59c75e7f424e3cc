//! `berth-mkrootfs DIR`: make a busybox root filesystem for the workshop.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use stage01_chroot::rootfs::{DEFAULT_BUSYBOX, make_rootfs};

/// Make a minimal root filesystem (busybox, /etc/passwd, /etc/group, empty
/// /proc /sys /dev /tmp, and the /bin/chroot-escape demo) in DIR.
///
/// DIR must not exist yet, or be empty. Busybox comes from Debian's
/// busybox-static package: apt-get install busybox-static.
#[derive(Parser)]
#[command(
    version,
    after_help = "Example:\n  berth-mkrootfs ./rootfs\n  stage01-chroot ./rootfs /bin/ls /"
)]
struct Cli {
    /// Directory to create the root filesystem in.
    #[arg(value_name = "DIR")]
    target: PathBuf,

    /// A statically linked busybox to copy in.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_BUSYBOX)]
    busybox: PathBuf,

    /// Also copy the host's glibc name-service modules in, so that busybox
    /// can resolve names from /etc/hosts and DNS (needed for networks).
    #[arg(long)]
    resolver: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match make_rootfs(&cli.target, &cli.busybox, cli.resolver) {
        Ok(()) => {
            println!("rootfs ready in {}", cli.target.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("berth-mkrootfs: {err}");
            ExitCode::FAILURE
        }
    }
}
