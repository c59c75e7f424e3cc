//! What berth does first, before it starts or enters any container: make
//! sure that what it is made of can't be turned against the host.
//!
//! 1. **Open files.** Whoever started berth may have left descriptors open
//!    without close-on-exec: a directory of the host's as fd 7, say. Passed
//!    on to a container, `cat /proc/self/fd/7/../../etc/shadow` would read
//!    the host's files. So every descriptor from 3 up is marked
//!    close-on-exec as soon as berth starts.
//! 2. **Its own binary** (CVE-2019-5736). Every process berth starts in a
//!    container runs berth's code until it execs, and `/proc/PID/exe` of a
//!    process is a handle on the file it runs. An image whose `/bin/sh` is
//!    `#!/proc/self/exe` makes the kernel run *berth* as that script's
//!    interpreter, inside the container: a process there can open it
//!    through `/proc/PID/exe`, hold it, and write to it once berth has
//!    exited, replacing the binary the host runs next as root. Making the
//!    process non-dumpable hides `/proc/PID/exe` only until that exec. So
//!    berth runs from a *read-only view* of its binary: before anything
//!    else, it execs itself again through a private read-only bind mount of
//!    its directory, a mount attached nowhere (`open_tree` +
//!    `mount_setattr`). Every `/proc/PID/exe` of berth then leads there,
//!    and opening it for writing fails with EROFS. It costs no copy. On
//!    kernels without those calls (before 5.12), berth runs from a sealed
//!    in-memory copy instead (`memfd_create` + seals), as runc long did.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use nix::fcntl::{AtFlags, FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::statvfs::{FsFlags, statvfs};
use stage01_chroot::Error;
use stage02_namespaces::userns::{
    self, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY, MountAttr,
};

/// Where the running binary is, for this process and for the ones it
/// starts again as itself (a monitor): `/proc/self/exe` execs whatever we
/// run from, the read-only view included.
pub const OUR_BINARY: &str = "/proc/self/exe";

// ANCHOR: close_inherited
/// Mark every descriptor from 3 up close-on-exec (see the module's point 1),
/// as the container's command does once more just before its exec.
pub fn close_inherited_files() -> Result<(), Error> {
    stage02_namespaces::process::close_other_files_at_exec().map_err(|e| {
        Error::Other(format!(
            "close_range(3.., CLOSE_RANGE_CLOEXEC): {e} (berth needs Linux 5.11 or newer)"
        ))
    })
}
// ANCHOR_END: close_inherited

// ANCHOR: read_only_binary
/// Exec ourselves again from a read-only view of our binary, unless we
/// already run from one (see the module's point 2). Returns only if we do.
pub fn run_from_read_only_binary() -> Result<(), Error> {
    if runs_read_only()? {
        return Ok(());
    }
    let exe = std::fs::read_link(OUR_BINARY).map_err(|e| Error::io("read", OUR_BINARY, e))?;
    let (Some(dir), Some(name)) = (exe.parent(), exe.file_name()) else {
        return Err(Error::Other(format!(
            "berth's binary {} has no directory",
            exe.display()
        )));
    };
    if !exe.exists() {
        return Err(Error::Other(format!(
            "berth's binary {} was replaced or removed while it ran: run berth again",
            exe.display()
        )));
    }
    let name = CString::new(name.as_encoded_bytes()).map_err(|e| Error::Other(e.to_string()))?;
    match read_only_view(dir) {
        Ok(view) => exec_at(&view, &name),
        // ENOSYS: a kernel before 5.12. Anything else is a real failure.
        Err(err) if err.raw_os_error() == Some(libc::ENOSYS) => exec_at(&sealed_copy()?, c""),
        Err(err) => Err(Error::Other(format!(
            "make a read-only view of {} (open_tree, mount_setattr): {err}",
            dir.display()
        ))),
    }
}

/// True when our binary can't be written through `/proc/self/exe`: it sits
/// on a read-only mount, or it is a sealed in-memory copy.
fn runs_read_only() -> Result<bool, Error> {
    let mount = statvfs(OUR_BINARY).map_err(|e| Error::io("statvfs", OUR_BINARY, e.into()))?;
    if mount.flags().contains(FsFlags::ST_RDONLY) {
        return Ok(true);
    }
    let exe = File::open(OUR_BINARY).map_err(|e| Error::io("open", OUR_BINARY, e))?;
    let seals = fcntl(&exe, FcntlArg::F_GET_SEALS).unwrap_or(0);
    Ok(SealFlag::from_bits_truncate(seals).contains(SEALS))
}

/// A bind mount of `dir`, read-only, attached to no place in any mount
/// tree: only the descriptor we get leads to it.
fn read_only_view(dir: &Path) -> std::io::Result<OwnedFd> {
    let attributes = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        ..MountAttr::default()
    };
    Ok(userns::detached_copy(dir, attributes)?)
}

/// The fallback: a copy of our binary in memory, sealed against any change.
fn sealed_copy() -> Result<OwnedFd, Error> {
    let mut source = File::open(OUR_BINARY)
        .map_err(|e| Error::Other(format!("copy berth's binary to a sealed memfd: {e}")))?;
    sealed_memfd(c"berth", &mut source, "berth's binary")
}

/// What `source` gives, in a new in-memory file sealed against any change
/// (closed on exec; `execveat` runs it all the same).
pub fn sealed_memfd(
    name: &std::ffi::CStr,
    source: &mut dyn std::io::Read,
    what: &str,
) -> Result<OwnedFd, Error> {
    let fail = |step: &str, e: &dyn std::fmt::Display| {
        Error::Other(format!("copy {what} to a sealed memfd ({step}): {e}"))
    };
    let copy = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
        .map_err(|e| fail("memfd_create", &e))?;
    let mut target = File::from(copy);
    std::io::copy(source, &mut target).map_err(|e| fail("copy", &e))?;
    fcntl(&target, FcntlArg::F_ADD_SEALS(SEALS)).map_err(|e| fail("seal", &e))?;
    Ok(OwnedFd::from(target))
}

/// Exec `name` in the directory `dir` (or, with an empty name, the file
/// `dir` itself), with our own arguments and environment.
fn exec_at(dir: &OwnedFd, name: &std::ffi::CStr) -> Result<(), Error> {
    Err(exec_with(dir, name, std::env::args_os().collect()))
}

/// Exec `dir`/`name` (see [`exec_at`]) with `args` and our environment;
/// returns only why it failed.
pub fn exec_with(dir: &OwnedFd, name: &std::ffi::CStr, args: Vec<OsString>) -> Error {
    let c_strings = |items: Vec<OsString>| -> Vec<CString> {
        items
            .into_iter()
            .filter_map(|item| CString::new(item.into_vec()).ok())
            .collect()
    };
    let env = c_strings(
        std::env::vars_os()
            .map(|(key, value)| {
                let mut pair = key;
                pair.push("=");
                pair.push(value);
                pair
            })
            .collect(),
    );
    let flags = match name.is_empty() {
        true => AtFlags::AT_EMPTY_PATH,
        false => AtFlags::empty(),
    };
    let Err(err) = nix::unistd::execveat(dir, name, &c_strings(args), &env, flags);
    Error::Other(format!("exec {}: {err}", name.to_string_lossy()))
}
// ANCHOR_END: read_only_binary

/// Seals that make a memfd unchangeable for good.
const SEALS: SealFlag = SealFlag::F_SEAL_SEAL
    .union(SealFlag::F_SEAL_SHRINK)
    .union(SealFlag::F_SEAL_GROW)
    .union(SealFlag::F_SEAL_WRITE);
