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
//!    changed on disk. An image's overlay can't be idmapped itself, but its
//!    layers can (Linux 5.19+): the overlay is then made of idmapped layers.
//! 2. **Chown-on-copy**, where idmapped mounts aren't available (an older
//!    kernel; a file system without support, such as ramfs):
//!    a copy of the rootfs on a fresh tmpfs, with every owner shifted into
//!    the container's range. It costs memory and time, and what the
//!    container writes is lost when it ends.
//!
//! Either way the result is a *detached* mount: an open file descriptor for
//! a mount that is attached nowhere yet. The parent sends it to the child,
//! which attaches it as its root ([`crate::mounts::prepare_root`]).

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fmt;
use std::fs::{self, File};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::stat::{Mode, SFlag, mknod};
use nix::unistd::Pid;
use stage01_chroot::Error;

use crate::namespaces::{IdMaps, RootMount};

// ANCHOR: user_ns_root
/// The container's root, for a child in a user namespace with `maps`, made
/// here, by the parent:
///
/// - for an image (`root_mount`, an overlay): an overlay of idmapped
///   layers (see [`overlay_root`]);
/// - for a rootfs whose owners are shifted already (its top directory is
///   the container root's host user, as an engine leaves a rootfs it
///   chowned for the container, like Podman's `--userns`): `None`, the
///   child binds it as it is, as runc does. Idmapping it would shift twice;
/// - for any other rootfs: an idmapped mount of it.
///
/// Where the kernel or the file system can't idmap, a copy with shifted
/// owners instead, and a note saying so.
///
/// Who does what: making an idmapped mount needs CAP_SYS_ADMIN over the
/// file system, in the user namespace that owns it (the host's, for a
/// rootfs on the host's disk). The child has capabilities only in its own
/// new user namespace, so the parent, host root, makes the mount, with the
/// child's ID map: from `/proc/PID/ns/user`, once the maps are written.
/// Attaching it is the child's part: `move_mount` attaches in the caller's
/// own mount namespace, and the child is in the container's.
pub fn user_ns_root(
    rootfs: &Path,
    root_mount: Option<&RootMount>,
    child: Pid,
    maps: IdMaps,
) -> Result<Option<OwnedFd>, Error> {
    let ns_path = PathBuf::from(format!("/proc/{child}/ns/user"));
    let user_ns = File::open(&ns_path).map_err(|e| Error::io("open", &ns_path, e))?;
    match root_mount {
        Some(mount) => overlay_root(&Overlay::of(mount)?, &user_ns, maps).map(Some),
        None if shifted_already(rootfs, maps)? => Ok(None),
        None => rootfs_root(rootfs, &user_ns, maps).map(Some),
    }
}

/// Whether the rootfs's owners are in the container's range already: its
/// top directory belongs to the host user that container root is.
fn shifted_already(rootfs: &Path, maps: IdMaps) -> Result<bool, Error> {
    let top = fs::metadata(rootfs).map_err(|e| Error::io("stat", rootfs, e))?;
    Ok(top.uid() == maps.uid.to_host(0))
}

/// An idmapped mount of `rootfs`, or a shifted copy of it.
fn rootfs_root(rootfs: &Path, user_ns: &File, maps: IdMaps) -> Result<OwnedFd, Error> {
    match idmapped_mount(rootfs, user_ns) {
        Ok(mount) => Ok(mount),
        Err(err) if cannot_idmap(err) => {
            let missing = format!("idmapped mount of {}", rootfs.display());
            note_shifted_copy(&missing, err, "a copy of it");
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

/// Say that the container gets a copy instead, and why.
fn note_shifted_copy(missing: &str, err: impl fmt::Display, copy: &str) {
    eprintln!(
        "{}: note: no {missing} ({err}: the file system or the kernel can't do it); the \
         container gets {copy} in memory with shifted owners, and what it writes there is \
         lost when it exits",
        crate::init::program_name(),
    );
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
    set_attributes(&mount, &attributes)?;
    Ok(mount)
}

/// `mount_setattr` on a mount we hold by its descriptor.
fn set_attributes(mount: &OwnedFd, attributes: &MountAttr) -> nix::Result<()> {
    // SAFETY: `attributes` is a valid mount_attr of the size we pass.
    let set = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mount.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            attributes as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    match set {
        0 => Ok(()),
        _ => Err(Errno::last()),
    }
}
// ANCHOR_END: idmapped_mount

/// An overlay mount's options, taken apart: the layers (which a user
/// namespace needs idmapped), the upper directory (whose owner it needs
/// changed), and every option but the layers, in order, to pass on as
/// given. Paths never hold ':' or ',' (stage 04 refuses those).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    source: String,
    /// `lowerdir`, topmost layer first.
    lower: Vec<PathBuf>,
    /// `upperdir`, if the overlay is writable.
    upper: Option<PathBuf>,
    /// The rest, `upperdir` and `workdir` included: `key=value`, or a bare
    /// `key` (a flag).
    options: Vec<(String, Option<String>)>,
}

impl Overlay {
    /// The overlay that `mount` describes. Only overlays are made for a
    /// user namespace: any other file system is refused, by name.
    pub fn of(mount: &RootMount) -> Result<Overlay, Error> {
        if mount.fstype != "overlay" {
            return Err(Error::Other(format!(
                "a user namespace with a root of type {:?} is not supported: only an overlay's \
                 layers can be idmapped here; run without the user namespace",
                mount.fstype
            )));
        }
        let mut overlay = Overlay {
            source: mount.source.clone(),
            lower: Vec::new(),
            upper: None,
            options: Vec::new(),
        };
        for option in mount.options.split(',').filter(|o| !o.is_empty()) {
            match option.split_once('=') {
                Some(("lowerdir", dirs)) => {
                    overlay.lower = dirs.split(':').map(PathBuf::from).collect()
                }
                Some((key, value)) => {
                    if key == "upperdir" {
                        overlay.upper = Some(PathBuf::from(value));
                    }
                    overlay.options.push((key.into(), Some(value.into())));
                }
                None => overlay.options.push((option.into(), None)),
            }
        }
        if overlay.lower.is_empty() {
            return Err(Error::Other(format!(
                "overlay options without lowerdir: {}",
                mount.options
            )));
        }
        Ok(overlay)
    }
}

// ANCHOR: idmapped_overlay
/// An image's overlay for a user namespace, made of idmapped layers, or
/// (where layers can't be idmapped) a shifted copy of the overlay.
fn overlay_root(overlay: &Overlay, user_ns: &File, maps: IdMaps) -> Result<OwnedFd, Error> {
    match idmapped_overlay(overlay, user_ns, maps) {
        Ok(root) => Ok(root),
        Err(err) if cannot_idmap(err.errno) => {
            note_shifted_copy("idmapped layers", &err, "a copy of the image's overlay");
            let plain = detached_overlay(overlay, &overlay.lower)
                .map_err(|e| Error::Other(format!("can't make {e}")))?;
            shifted_copy(&fd_path(&plain), maps)
        }
        Err(err) => Err(Error::Other(format!("can't make {err}"))),
    }
}

/// The overlay, attached nowhere, with each layer an idmapped mount, so
/// that the layers' files, host root's on disk, are root's inside. The
/// upper directory is *not* idmapped: overlayfs makes its scratch
/// directory in the work directory as the mounter, host root, whom the
/// map doesn't have, and would mount read-only (EOVERFLOW). Instead, the
/// upper directory itself becomes the container root's, so that `/` is
/// root's inside, and what the container makes lands in the upper with
/// host IDs from its range, as with Docker's `userns-remap`.
fn idmapped_overlay(
    overlay: &Overlay,
    user_ns: &File,
    maps: IdMaps,
) -> Result<OwnedFd, MountError> {
    let mut layers = Vec::new();
    for dir in &overlay.lower {
        let layer = idmapped_mount(dir, user_ns).map_err(|errno| MountError {
            what: format!("an idmapped mount of layer {}", dir.display()),
            errno,
            log: Vec::new(),
        })?;
        layers.push(layer);
    }
    // overlayfs takes layers by path: /proc/self/fd/N leads to each mount.
    let lower: Vec<PathBuf> = layers.iter().map(fd_path).collect();
    let Some(upper) = &overlay.upper else {
        return detached_overlay(overlay, &lower); // read-only: no upper to own
    };
    let before = owner_of(upper)?;
    set_owner(upper, (maps.uid.to_host(0), maps.gid.to_host(0)))?;
    // Our descriptors of the layers close when we return: the overlay
    // keeps private copies of their mounts.
    detached_overlay(overlay, &lower).inspect_err(|_| {
        let _ = set_owner(upper, before); // as it was, for a copy instead
    })
}

/// An image's layers (paths, topmost first) as one read-only file system,
/// attached nowhere: only the descriptor returned leads to it, and it goes
/// when that closes. (overlayfs wants two layers at least without an upper
/// directory; one layer is a read-only copy of its own mount.) The engine
/// reads what an image has at a volume's path from it.
pub fn read_only_layers(lower: &[PathBuf]) -> Result<OwnedFd, Error> {
    let made = match lower {
        [] => return Err(Error::Other("an image without layers".into())),
        [one] => detached_copy(
            one,
            MountAttr {
                attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                propagation: libc::MS_PRIVATE,
                ..MountAttr::default()
            },
        )
        .map_err(|errno| {
            format!(
                "a read-only copy of the mount of {}: {errno}",
                one.display()
            )
        }),
        _ => {
            let overlay = Overlay {
                source: "overlay".into(),
                lower: lower.to_vec(),
                upper: None,
                options: Vec::new(),
            };
            detached_overlay(&overlay, lower).map_err(|e| e.to_string())
        }
    };
    made.map_err(|e| Error::Other(format!("can't make {e}")))
}

/// A new overlay context with the layers given one `lowerdir+` each.
fn lower_one_by_one(overlay: &Overlay, lower: &[PathBuf]) -> Result<NewFs, MountError> {
    let fs = NewFs::open(c"overlay")?;
    fs.set("source", Some(&overlay.source))?;
    for layer in lower {
        fs.set("lowerdir+", Some(&layer.to_string_lossy()))?;
    }
    Ok(fs)
}

/// Where a mount we hold by descriptor can be found by path, by us.
fn fd_path(mount: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", mount.as_raw_fd()))
}

/// The user and group owning `dir` (on disk: the host's IDs).
fn owner_of(dir: &Path) -> Result<(u32, u32), MountError> {
    let meta = fs::metadata(dir)
        .map_err(|e| MountError::io("the upper directory root's inside (stat)", e))?;
    Ok((meta.uid(), meta.gid()))
}

/// `chown` the directory itself, not what is in it.
fn set_owner(dir: &Path, (uid, gid): (u32, u32)) -> Result<(), MountError> {
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))
        .map_err(|e| MountError::io("the upper directory root's inside (chown)", e))
}
// ANCHOR_END: idmapped_overlay

// ANCHOR: detached_overlay
/// `mount -t overlay`, with the new mount API and attached nowhere, over
/// the layers at `lower` (paths, topmost first) and the rest of
/// `overlay`'s options: `fsopen` makes a file system context, `fsconfig`
/// sets its options one by one and creates the file system, `fsmount`
/// gives a mount of it.
fn detached_overlay(overlay: &Overlay, lower: &[PathBuf]) -> Result<OwnedFd, MountError> {
    // Linux 6.8+ takes `lowerdir+` once per layer, and recent kernels
    // refuse a `lowerdir` list longer than 256 bytes through fsconfig (three
    // layers under a state root in /tmp are enough); older kernels know only
    // the colon-separated list (Linux 5.19+), in a context of its own.
    let fs = match lower_one_by_one(overlay, lower) {
        Ok(fs) => fs,
        Err(_) => {
            let fs = NewFs::open(c"overlay")?;
            fs.set("source", Some(&overlay.source))?;
            let lower: Vec<_> = lower.iter().map(|p| p.to_string_lossy()).collect();
            fs.set("lowerdir", Some(&lower.join(":")))?;
            fs
        }
    };
    for (key, value) in &overlay.options {
        fs.set(key, value.as_deref())?;
    }
    let mount = fs.create_and_mount()?;
    // Private, as the idmapped mounts are: the container's /proc, mounted
    // on it, must not show anywhere else.
    let private = MountAttr {
        propagation: libc::MS_PRIVATE,
        ..MountAttr::default()
    };
    set_attributes(&mount, &private).map_err(|errno| MountError {
        what: "a private overlay (mount_setattr)".into(),
        errno,
        log: Vec::new(),
    })?;
    Ok(mount)
}

/// A file system being made with the new mount API, by its descriptor
/// from `fsopen`. The file system writes why it refuses an option into a
/// log that `read` on the same descriptor returns, one message at a time
/// ("e overlay: Unknown parameter 'x'"; many of overlayfs' reasons go to
/// the kernel's own log, `dmesg`, instead).
struct NewFs {
    fd: OwnedFd,
    fstype: &'static CStr,
}

impl NewFs {
    fn open(fstype: &'static CStr) -> Result<NewFs, MountError> {
        // SAFETY: a NUL-terminated name; the kernel returns a new descriptor.
        let fd = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) };
        if fd < 0 {
            return Err(MountError::new(fstype, "fsopen", Errno::last(), Vec::new()));
        }
        // SAFETY: fsopen returned this descriptor to us alone.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Ok(NewFs { fd, fstype })
    }

    /// One option: `key=value`, or a flag `key`.
    fn set(&self, key: &str, value: Option<&str>) -> Result<(), MountError> {
        let step = format!("fsconfig {key}");
        let text = |s: &str| CString::new(s).map_err(|_| self.error(&step, Errno::EINVAL));
        let (command, value) = match value {
            Some(value) => (FSCONFIG_SET_STRING, Some(text(value)?)),
            None => (FSCONFIG_SET_FLAG, None),
        };
        self.config(command, Some(&text(key)?), value.as_deref())
            .map_err(|errno| self.error(&step, errno))
    }

    /// `FSCONFIG_CMD_CREATE`: the file system checks its options together
    /// and comes to be; then `fsmount` makes a mount of it.
    fn create_and_mount(self) -> Result<OwnedFd, MountError> {
        self.config(FSCONFIG_CMD_CREATE, None, None)
            .map_err(|errno| self.error("fsconfig create", errno))?;
        // SAFETY: plain integers; the kernel returns a new descriptor.
        let mount =
            unsafe { libc::syscall(libc::SYS_fsmount, self.fd.as_raw_fd(), FSMOUNT_CLOEXEC, 0) };
        if mount < 0 {
            return Err(self.error("fsmount", Errno::last()));
        }
        // SAFETY: fsmount returned this descriptor to us alone.
        Ok(unsafe { OwnedFd::from_raw_fd(mount as i32) })
    }

    fn config(&self, command: u32, key: Option<&CStr>, value: Option<&CStr>) -> nix::Result<()> {
        let key = key.map_or(std::ptr::null(), CStr::as_ptr);
        let value = value.map_or(std::ptr::null(), CStr::as_ptr);
        // SAFETY: NUL-terminated strings or null, as `command` wants them.
        let done = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.fd.as_raw_fd(),
                command,
                key,
                value,
                0,
            )
        };
        match done {
            0 => Ok(()),
            _ => Err(Errno::last()),
        }
    }

    /// The error of step `step`, with what the file system logged.
    fn error(&self, step: &str, errno: Errno) -> MountError {
        MountError::new(self.fstype, step, errno, self.log())
    }

    /// Every message in the log, without its level ("e ", "w ", "i ").
    fn log(&self) -> Vec<String> {
        let mut messages = Vec::new();
        let mut buffer = [0u8; 1024];
        while let Ok(length @ 1..) = nix::unistd::read(&self.fd, &mut buffer) {
            let message = String::from_utf8_lossy(&buffer[..length]);
            let message = message.get(2..).unwrap_or(&message).trim_end();
            messages.push(message.to_string());
        }
        messages
    }
}

/// A mount we could not make: what it was, the error, and the file
/// system's own words about it, if it logged any.
#[derive(Debug)]
struct MountError {
    what: String,
    errno: Errno,
    log: Vec<String>,
}

impl MountError {
    fn new(fstype: &CStr, step: &str, errno: Errno, log: Vec<String>) -> MountError {
        let fstype = fstype.to_string_lossy();
        MountError {
            what: format!("the {fstype} file system ({step})"),
            errno,
            log,
        }
    }

    fn io(what: &str, err: std::io::Error) -> MountError {
        MountError {
            what: what.into(),
            errno: Errno::from_raw(err.raw_os_error().unwrap_or(libc::EIO)),
            log: Vec::new(),
        }
    }
}

impl fmt::Display for MountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.errno)?;
        if !self.log.is_empty() {
            write!(f, " (the kernel said: {})", self.log.join("; "))?;
        }
        Ok(())
    }
}
// ANCHOR_END: detached_overlay

// ANCHOR: shifted_copy
/// The fallback: a new tmpfs, attached nowhere, holding a copy of `rootfs`
/// whose owners are shifted by hand into the container's range (container
/// ID `n` becomes host ID `map.host + n`), as Podman's chown-on-copy does.
/// The rootfs itself is left as it was.
pub fn shifted_copy(rootfs: &Path, maps: IdMaps) -> Result<OwnedFd, Error> {
    let tmpfs = detached_tmpfs().map_err(|e| {
        Error::Other(format!(
            "can't make {e}, for a copy of the rootfs (a user namespace needs Linux 5.2 \
             or newer here)"
        ))
    })?;
    // Its one path: through our descriptor, which /proc/self/fd leads to.
    let top = fd_path(&tmpfs);
    let mut links = HashMap::new();
    copy_dir(rootfs, &top, maps, &mut links)?;
    // The top itself: followed if it is a link (/proc/self/fd/N of an overlay).
    let meta = fs::metadata(rootfs).map_err(|e| Error::io("stat", rootfs, e))?;
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

/// A new tmpfs, as a descriptor for a mount attached nowhere (the new
/// mount API's way of `mount -t tmpfs`; see [`NewFs`]).
fn detached_tmpfs() -> Result<OwnedFd, MountError> {
    NewFs::open(c"tmpfs")?.create_and_mount()
}
// ANCHOR_END: shifted_copy

// From <linux/mount.h>; the libc crate has them for Android only.
const OPEN_TREE_CLONE: u32 = 1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const FSOPEN_CLOEXEC: u32 = 1;
const FSCONFIG_SET_FLAG: u32 = 0;
const FSCONFIG_SET_STRING: u32 = 1;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn overlay(fstype: &str, options: &str) -> RootMount {
        RootMount {
            fstype: fstype.into(),
            source: "overlay".into(),
            options: options.into(),
        }
    }

    #[test]
    fn overlay_options_are_taken_apart_in_order() {
        let mount = overlay(
            "overlay",
            "lowerdir=/l/top:/l/bottom,upperdir=/c/u,workdir=/c/w,ro",
        );
        let parsed = Overlay::of(&mount).unwrap();
        assert_eq!(parsed.lower, [Path::new("/l/top"), Path::new("/l/bottom")]);
        assert_eq!(parsed.upper.as_deref(), Some(Path::new("/c/u")));
        let option = |k: &str, v: Option<&str>| (k.to_string(), v.map(String::from));
        assert_eq!(
            parsed.options,
            [
                option("upperdir", Some("/c/u")),
                option("workdir", Some("/c/w")),
                option("ro", None)
            ]
        );
    }

    #[test]
    fn only_an_overlay_with_layers_is_made_for_a_user_namespace() {
        let tmpfs = Overlay::of(&overlay("tmpfs", "size=1m")).unwrap_err();
        assert!(tmpfs.to_string().contains("\"tmpfs\""), "{tmpfs}");
        let no_layers = Overlay::of(&overlay("overlay", "upperdir=/u,workdir=/w")).unwrap_err();
        assert!(
            no_layers.to_string().contains("without lowerdir"),
            "{no_layers}"
        );
    }

    #[test]
    fn a_refused_overlay_says_what_overlayfs_logged() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: making an overlay needs root");
            return;
        }
        let dir = std::env::temp_dir();
        let bogus = overlay("overlay", "lowerdir=/,berth-bogus=1");
        let err = detached_overlay(&Overlay::of(&bogus).unwrap(), &[dir]);
        let err = err
            .expect_err("an overlay with an unknown option")
            .to_string();
        assert!(err.contains("(fsconfig berth-bogus): EINVAL"), "{err}");
        assert!(
            err.contains("the kernel said: overlay: Unknown parameter 'berth-bogus'"),
            "{err}"
        );
    }
}
