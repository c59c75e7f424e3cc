//! The stage 01 mechanism: give a process a different root directory.

use std::path::Path;

use nix::unistd::{chdir, chroot};

// ANCHOR: enter_root
/// Make `rootfs` the calling process's `/`, and move into it.
///
/// `chroot(2)` only changes where path lookups for `/` start. The working
/// directory stays where it was, possibly outside the new root, so we `chdir`
/// to the new `/` at once. (Leaving it outside is exactly the door the
/// chroot escape uses.) Runs in the child between fork and exec, so it does
/// nothing but these two system calls.
pub fn enter_root(rootfs: &Path) -> std::io::Result<()> {
    // ANCHOR: exercise_enter_root
    chroot(rootfs)?;
    chdir("/")?;
    Ok(())
    // ANCHOR_END: exercise_enter_root
}
// ANCHOR_END: enter_root
