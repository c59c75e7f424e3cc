//! A root file system that root in a user namespace can write.
//!
//! The rootfs belongs to host root (uid 0). The container's user namespace
//! maps its root to host uid 100000 and doesn't map host uid 0 at all, so
//! inside, every file shows as owned by `nobody` and root can change none
//! of them. Two ways out, both made by the parent, outside:
//!
//! 1. **An idmapped mount** (Linux 5.12+, on file systems that support it:
//!    ext4, xfs, btrfs, and tmpfs since 6.3). A copy of the rootfs's mount
//!    that shifts owners through the container's own ID map as files are
//!    looked at and made: host uid 0 on disk is root inside, and what root
//!    inside makes is owned by host uid 0 on disk. Nothing is copied or
//!    changed on disk.
//! 2. **Chown-on-copy**, where idmapped mounts aren't available (an older
//!    kernel; a file system without support, such as overlayfs or ramfs):
//!    a copy of the rootfs on a fresh tmpfs, with every owner shifted into
//!    the container's range. It costs memory and time, and what the
//!    container writes is lost when it ends.
//!
//! Either way the result is a *detached* mount: an open file descriptor for
//! a mount that is attached nowhere yet. The parent sends it to the child,
//! which attaches it as its root ([`crate::mounts::prepare_root`]).

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{self, File};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::stat::{Mode, SFlag, mknod};
use nix::unistd::Pid;
use stage01_chroot::Error;

use crate::namespaces::IdMaps;

// ANCHOR: user_ns_root
/// The container's root, for a child in a user namespace with `map`: an
/// idmapped mount of `rootfs` where the kernel and the file system allow
/// it, otherwise a copy with shifted owners (and a note saying so).
///
/// Who does what: making an idmapped mount needs CAP_SYS_ADMIN over the
/// file system, in the user namespace that owns it (the host's, for a
/// rootfs on the host's disk). The child has capabilities only in its own
/// new user namespace, so the parent, host root, makes the mount, with the
/// child's ID map: from `/proc/PID/ns/user`, once the maps are written.
/// Attaching it is the child's part: `move_mount` attaches in the caller's
/// own mount namespace, and the child is in the container's.
pub fn user_ns_root(rootfs: &Path, child: Pid, maps: IdMaps) -> Result<OwnedFd, Error> {
    let ns_path = PathBuf::from(format!("/proc/{child}/ns/user"));
    let user_ns = File::open(&ns_path).map_err(|e| Error::io("open", &ns_path, e))?;
    match idmapped_mount(rootfs, &user_ns) {
        Ok(mount) => Ok(mount),
        Err(err) if cannot_idmap(err) => {
            eprintln!(
                "{}: note: no idmapped mount of {} ({err}: the file system or the kernel \
                 can't do it); the container gets a copy of it in memory with shifted \
                 owners, and what it writes there is lost when it exits",
                crate::init::program_name(),
                rootfs.display()
            );
            shifted_copy(rootfs, maps)
        }
        Err(err) => Err(Error::Other(format!(
            "make an idmapped mount of {} (open_tree, mount_setattr): {err}",
            rootfs.display()
        ))),
    }
}

/// The errors that mean "not here" rather than "something broke": no such
/// system call (ENOSYS), a file system without idmapped mounts (EINVAL), or
/// one we don't control (EPERM, e.g. a FUSE mount of an ordinary user).
fn cannot_idmap(err: Errno) -> bool {
    [
        Errno::ENOSYS,
        Errno::EINVAL,
        Errno::EPERM,
        Errno::EOPNOTSUPP,
    ]
    .contains(&err)
}
// ANCHOR_END: user_ns_root

// ANCHOR: idmapped_mount
/// A detached copy of the mount at `dir` whose file owners are seen
/// through the ID map of `user_ns`: `open_tree(OPEN_TREE_CLONE)` copies
/// the mount (attached nowhere, so only our descriptor leads to it), and
/// `mount_setattr(MOUNT_ATTR_IDMAP)` gives it the map. The kernel allows
/// that only on a mount that is not attached yet.
pub fn idmapped_mount(dir: &Path, user_ns: &File) -> nix::Result<OwnedFd> {
    detached_copy(
        dir,
        MountAttr {
            attr_set: MOUNT_ATTR_IDMAP,
            // Private: the copy would otherwise be a peer of the host's mount,
            // and the container's /proc, mounted on it, would show on the host.
            propagation: libc::MS_PRIVATE,
            userns_fd: user_ns.as_raw_fd() as u64,
            ..MountAttr::default()
        },
    )
}

/// A copy of the mount at `dir`, attached nowhere (only the descriptor we
/// get leads to it), with `attributes` set on it by `mount_setattr`.
pub fn detached_copy(dir: &Path, attributes: MountAttr) -> nix::Result<OwnedFd> {
    let path = CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: a NUL-terminated path; the kernel returns a new descriptor.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as u32,
        )
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: open_tree returned this descriptor to us alone.
    let mount = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: `attributes` is a valid mount_attr of the size we pass.
    let set = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mount.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attributes as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if set < 0 {
        return Err(Errno::last());
    }
    Ok(mount)
}
// ANCHOR_END: idmapped_mount

// ANCHOR: shifted_copy
/// The fallback: a new tmpfs, attached nowhere, holding a copy of `rootfs`
/// whose owners are shifted by hand into the container's range (container
/// ID `n` becomes host ID `map.host + n`), as Podman's chown-on-copy does.
/// The rootfs itself is left as it was.
pub fn shifted_copy(rootfs: &Path, maps: IdMaps) -> Result<OwnedFd, Error> {
    let tmpfs = detached_tmpfs().map_err(|e| {
        Error::Other(format!(
            "make a tmpfs for a copy of the rootfs (fsopen, fsmount): {e} \
             (a user namespace needs Linux 5.2 or newer here)"
        ))
    })?;
    // Its one path: through our descriptor, which /proc/self/fd leads to.
    let top = PathBuf::from(format!("/proc/self/fd/{}", tmpfs.as_raw_fd()));
    let mut links = HashMap::new();
    copy_dir(rootfs, &top, maps, &mut links)?;
    let meta = fs::symlink_metadata(rootfs).map_err(|e| Error::io("stat", rootfs, e))?;
    take_owner_and_mode(&top, &meta, maps)?;
    Ok(tmpfs)
}

/// Copy what is in `from` into the existing directory `to`.
fn copy_dir(from: &Path, to: &Path, maps: IdMaps, links: &mut Links) -> Result<(), Error> {
    for entry in fs::read_dir(from).map_err(|e| Error::io("read directory", from, e))? {
        let entry = entry.map_err(|e| Error::io("read directory", from, e))?;
        copy_entry(&entry.path(), &to.join(entry.file_name()), maps, links)?;
    }
    Ok(())
}

/// Copy one file of any kind, never following a symbolic link, then give
/// the copy its shifted owner and its mode.
fn copy_entry(from: &Path, to: &Path, maps: IdMaps, links: &mut Links) -> Result<(), Error> {
    let meta = fs::symlink_metadata(from).map_err(|e| Error::io("stat", from, e))?;
    let kind = meta.file_type();
    if kind.is_file() && meta.nlink() > 1 {
        let inode = (meta.dev(), meta.ino());
        if let Some(first) = links.get(&inode) {
            // Another name of a file we copied: a link to that copy, as here.
            return fs::hard_link(first, to).map_err(|e| Error::io("link", to, e));
        }
        links.insert(inode, to.to_path_buf());
    }
    let fail = |e: std::io::Error| Error::io("copy", from, e);
    if kind.is_dir() {
        fs::create_dir(to).map_err(fail)?;
        copy_dir(from, to, maps, links)?;
    } else if kind.is_symlink() {
        let target = fs::read_link(from).map_err(fail)?;
        std::os::unix::fs::symlink(target, to).map_err(fail)?;
    } else if kind.is_file() {
        fs::copy(from, to).map_err(fail)?;
    } else {
        // Devices, pipes and sockets: made anew, the same kind and number.
        let kind = SFlag::from_bits_truncate(meta.mode() & libc::S_IFMT);
        mknod(to, kind, Mode::empty(), meta.rdev()).map_err(|e| fail(e.into()))?;
    }
    take_owner_and_mode(to, &meta, maps)
}

/// `chown` to the shifted owner, then `chmod`: in that order, because
/// chown clears the set-user-ID and set-group-ID bits. A symbolic link
/// itself (`lchown`) has an owner but no mode of its own.
fn take_owner_and_mode(to: &Path, meta: &fs::Metadata, maps: IdMaps) -> Result<(), Error> {
    let (uid, gid) = (
        Some(maps.uid.to_host(meta.uid())),
        Some(maps.gid.to_host(meta.gid())),
    );
    let chowned = match meta.file_type().is_symlink() {
        true => std::os::unix::fs::lchown(to, uid, gid),
        false => std::os::unix::fs::chown(to, uid, gid).and_then(|()| {
            fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))
        }),
    };
    chowned.map_err(|e| Error::io("chown and chmod", to, e))
}

/// Files copied so far, by (device, inode), to keep hard links linked.
type Links = HashMap<(u64, u64), PathBuf>;

/// `fsopen("tmpfs")`, `fsconfig(CREATE)`, `fsmount`: a new tmpfs, as a
/// descriptor for a mount attached nowhere (the new mount API's way of
/// `mount -t tmpfs`).
fn detached_tmpfs() -> nix::Result<OwnedFd> {
    // SAFETY: a NUL-terminated name; the kernel returns a new descriptor.
    let fs = unsafe { libc::syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), FSOPEN_CLOEXEC) };
    if fs < 0 {
        return Err(Errno::last());
    }
    // SAFETY: fsopen returned this descriptor to us alone.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as i32) };
    // SAFETY: CMD_CREATE takes no key, value or aux argument.
    let created = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if created < 0 {
        return Err(Errno::last());
    }
    // SAFETY: plain integers; the kernel returns a new descriptor.
    let mount = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0) };
    if mount < 0 {
        return Err(Errno::last());
    }
    // SAFETY: fsmount returned this descriptor to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(mount as i32) })
}
// ANCHOR_END: shifted_copy

// From <linux/mount.h>; the libc crate has them for Android only.
const OPEN_TREE_CLONE: u32 = 1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const FSOPEN_CLOEXEC: u32 = 1;
const FSCONFIG_CMD_CREATE: u32 = 6;
const FSMOUNT_CLOEXEC: u32 = 1;
pub(crate) const MOVE_MOUNT_F_EMPTY_PATH: u32 = 4;

/// Attributes `mount_setattr` can set: read-only, no setuid, no devices.
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
#[derive(Debug, Default)]
pub struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}
