//! The container's root: its own mount table, the mounts a program expects,
//! and `pivot_root` so that the host's root is gone, not just out of sight.
//!
//! Everything here runs inside the new mount namespace, so none of it shows
//! on the host, and all of it disappears when the container's last process
//! exits and the namespace with it.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, chdir, pivot_root, unlinkat};
use stage01_chroot::Error;

use crate::namespaces::RootMount;

/// A kernel file system to mount inside the rootfs.
struct KernelMount {
    fstype: &'static str,
    target: &'static str,
    flags: MsFlags,
    data: Option<&'static str>,
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

// ANCHOR: kernel_mounts
/// What a program expects to find, in the order it must be mounted.
const KERNEL_MOUNTS: &[KernelMount] = &[
    // Processes of *this* PID namespace: we are its PID 1, so `ps` sees us.
    KernelMount {
        fstype: "proc",
        target: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    // Devices and kernel objects; read-only, since writes here reach the host.
    KernelMount {
        fstype: "sysfs",
        target: "sys",
        flags: NOSUID_NODEV_NOEXEC.union(MsFlags::MS_RDONLY),
        data: None,
    },
    // A small, empty /dev: we add only the devices a container needs.
    KernelMount {
        fstype: "tmpfs",
        target: "dev",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_STRICTATIME),
        data: Some("mode=755,size=65536k"),
    },
    // A private instance of pseudo-terminals, not the host's.
    KernelMount {
        fstype: "devpts",
        target: "dev/pts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    },
    // POSIX shared memory, and POSIX message queues of the IPC namespace.
    KernelMount {
        fstype: "tmpfs",
        target: "dev/shm",
        flags: NOSUID_NODEV_NOEXEC,
        data: Some("mode=1777,size=65536k"),
    },
    KernelMount {
        fstype: "mqueue",
        target: "dev/mqueue",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
];

/// Device nodes bind-mounted from the host's /dev. Binding (rather than
/// `mknod`) also works in a user namespace, where mknod is not allowed.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Links every Linux program may rely on.
const DEV_LINKS: &[(&str, &str)] = &[
    ("dev/ptmx", "pts/ptmx"),
    ("dev/fd", "/proc/self/fd"),
    ("dev/stdin", "/proc/self/fd/0"),
    ("dev/stdout", "/proc/self/fd/1"),
    ("dev/stderr", "/proc/self/fd/2"),
];
// ANCHOR_END: kernel_mounts

/// A step run just before `pivot_root` (see [`prepare_root`]).
pub type BeforePivot = dyn Fn() -> std::io::Result<()> + Send + Sync;

// ANCHOR: prepare_root
/// Turn `rootfs` into the calling process's `/`, with /proc, /sys and /dev.
/// `made_root` is a detached mount the parent made to be our root (with a
/// user namespace: an idmapped rootfs or overlay, or a shifted copy; see
/// [`crate::userns`]). `enter_cgroup` waits until we are in our cgroup and
/// enters a cgroup namespace: called once, before the first cgroup mount,
/// or else before `before_pivot`.
pub fn prepare_root(
    rootfs: &Path,
    root_mount: Option<&RootMount>,
    made_root: Option<OwnedFd>,
    binds: &[(PathBuf, PathBuf)],
    listed: Option<&[ListedMount]>,
    before_pivot: Option<&BeforePivot>,
    enter_cgroup: &mut dyn FnMut() -> Result<(), Error>,
) -> Result<(), Error> {
    // 1. Stop mount events from travelling between our table and the host's.
    remount("/", MsFlags::MS_REC | MsFlags::MS_PRIVATE)?;
    // 2. pivot_root needs the new root to be a mount point: attach the one
    //    the parent made there, or bind the rootfs onto itself, or mount
    //    the given file system (an image's overlay) there.
    match (made_root, root_mount) {
        (Some(made), _) => attach(&made, rootfs)?,
        (None, None) => bind(rootfs, rootfs)?,
        (None, Some(m)) => mount(
            Some(m.source.as_str()),
            rootfs,
            Some(m.fstype.as_str()),
            MsFlags::empty(),
            Some(m.options.as_str()),
        )
        .map_err(|err| {
            Error::Other(format!("mount {} on {}: {err}", m.fstype, rootfs.display()))
        })?,
    }
    // 3. Files from the host over files of the rootfs (e.g. /etc/hosts),
    //    read-only.
    for (source, target) in binds {
        bind_file(source, rootfs, target)?;
    }
    // 4. The kernel file systems and devices, below the new root: ours, or
    //    exactly those a runtime spec lists.
    match listed {
        None => {
            for m in KERNEL_MOUNTS {
                if m.target == "dev/pts" {
                    add_devices(rootfs)?; // /dev is mounted by now
                }
                mount_kernel_fs(rootfs, m)?;
            }
        }
        Some(listed) => mount_listed(rootfs, listed, enter_cgroup)?,
    }
    enter_cgroup()?;
    // 5. What an OCI runtime's caller asked to run here, in our mount
    //    namespace with everything mounted but the host's root still in
    //    reach (its `createContainer` hooks). Then swap roots and drop the
    //    old one.
    if let Some(step) = before_pivot {
        step().map_err(|e| Error::Other(format!("before pivot_root: {e}")))?;
    }
    pivot_into(rootfs)
}

/// `pivot_root(".", ".")`: make the current directory the root and stack the
/// old root on top of it, then detach that old root. Unlike chroot, nothing
/// of the host's file system is left above or below us to climb to.
fn pivot_into(rootfs: &Path) -> Result<(), Error> {
    // ANCHOR: exercise_pivot_root
    chdir(rootfs).map_err(|e| Error::io("chdir", rootfs, e.into()))?;
    pivot_root(".", ".").map_err(|e| Error::io("pivot_root into", rootfs, e.into()))?;
    umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| Error::io("unmount the old root at", "/", e.into()))?;
    chdir("/").map_err(|e| Error::io("chdir", "/", e.into()))
    // ANCHOR_END: exercise_pivot_root
}
// ANCHOR_END: prepare_root

// ANCHOR: listed_mounts
/// A mount of an OCI runtime spec's list: made below the new root exactly
/// as listed, in the list's order, instead of the stage's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedMount {
    /// Absolute, inside the container.
    pub destination: PathBuf,
    /// The file system type; `None` for a bind mount.
    pub fstype: Option<String>,
    /// A host path for a bind mount; a name for the others.
    pub source: PathBuf,
    pub flags: MsFlags,
    /// MS_PRIVATE, MS_SHARED, ... (with MS_REC), set once it is mounted.
    pub propagation: MsFlags,
    /// The options the file system reads itself (`mode=755,size=64k`).
    pub data: String,
}

impl ListedMount {
    /// From a spec's `type`, `source`, `destination` and `options`.
    pub fn parse(
        fstype: Option<&str>,
        source: Option<&Path>,
        destination: &Path,
        options: &[String],
    ) -> Result<ListedMount, Error> {
        if !destination.is_absolute() {
            return Err(Error::Other(format!(
                "mount destination {} is not an absolute path",
                destination.display()
            )));
        }
        let (mut flags, mut propagation, mut data) = (MsFlags::empty(), MsFlags::empty(), vec![]);
        for option in options {
            match mount_option(option) {
                Some(MountOption::Set(flag)) => flags |= flag,
                Some(MountOption::Clear(flag)) => flags &= !flag,
                Some(MountOption::Propagation(flag)) => propagation = flag,
                None => data.push(option.as_str()),
            }
        }
        let bind = fstype == Some("bind") || flags.contains(MsFlags::MS_BIND);
        let fstype = match bind {
            true => None,
            false => Some(fstype.unwrap_or("none").to_string()),
        };
        Ok(ListedMount {
            destination: destination.to_path_buf(),
            source: source
                .map(Path::to_path_buf)
                .or_else(|| fstype.clone().map(PathBuf::from))
                .unwrap_or_default(),
            fstype,
            flags: flags
                | if bind {
                    MsFlags::MS_BIND
                } else {
                    MsFlags::empty()
                },
            propagation,
            data: data.join(","),
        })
    }
}

enum MountOption {
    Set(MsFlags),
    Clear(MsFlags),
    Propagation(MsFlags),
}

/// What mount(8) makes of an option, if it is one of the flags.
fn mount_option(option: &str) -> Option<MountOption> {
    use MountOption::{Clear, Propagation, Set};
    let rec = MsFlags::MS_REC;
    Some(match option {
        "ro" => Set(MsFlags::MS_RDONLY),
        "rw" => Clear(MsFlags::MS_RDONLY),
        "nosuid" => Set(MsFlags::MS_NOSUID),
        "suid" => Clear(MsFlags::MS_NOSUID),
        "nodev" => Set(MsFlags::MS_NODEV),
        "dev" => Clear(MsFlags::MS_NODEV),
        "noexec" => Set(MsFlags::MS_NOEXEC),
        "exec" => Clear(MsFlags::MS_NOEXEC),
        "sync" => Set(MsFlags::MS_SYNCHRONOUS),
        "async" => Clear(MsFlags::MS_SYNCHRONOUS),
        "dirsync" => Set(MsFlags::MS_DIRSYNC),
        "noatime" => Set(MsFlags::MS_NOATIME),
        "atime" => Clear(MsFlags::MS_NOATIME),
        "nodiratime" => Set(MsFlags::MS_NODIRATIME),
        "diratime" => Clear(MsFlags::MS_NODIRATIME),
        "relatime" => Set(MsFlags::MS_RELATIME),
        "norelatime" => Clear(MsFlags::MS_RELATIME),
        "strictatime" => Set(MsFlags::MS_STRICTATIME),
        "nostrictatime" => Clear(MsFlags::MS_STRICTATIME),
        "bind" => Set(MsFlags::MS_BIND),
        "rbind" => Set(MsFlags::MS_BIND | rec),
        "private" => Propagation(MsFlags::MS_PRIVATE),
        "rprivate" => Propagation(MsFlags::MS_PRIVATE | rec),
        "shared" => Propagation(MsFlags::MS_SHARED),
        "rshared" => Propagation(MsFlags::MS_SHARED | rec),
        "slave" => Propagation(MsFlags::MS_SLAVE),
        "rslave" => Propagation(MsFlags::MS_SLAVE | rec),
        "unbindable" => Propagation(MsFlags::MS_UNBINDABLE),
        "runbindable" => Propagation(MsFlags::MS_UNBINDABLE | rec),
        _ => return None,
    })
}

/// Make each listed mount, in order; then, if /dev is among them, the
/// devices every container gets.
fn mount_listed(
    rootfs: &Path,
    listed: &[ListedMount],
    enter_cgroup: &mut dyn FnMut() -> Result<(), Error>,
) -> Result<(), Error> {
    let root = open_path(None, rootfs.as_os_str(), OFlag::O_DIRECTORY)
        .map_err(|e| Error::io("open the root", rootfs, e.into()))?;
    for m in listed {
        if matches!(m.fstype.as_deref(), Some("cgroup" | "cgroup2")) {
            enter_cgroup()?;
        }
        let fail = |err: Errno| {
            Error::Other(format!(
                "mount {} on {}: {err}",
                m.fstype.as_deref().unwrap_or("(bind)"),
                m.destination.display()
            ))
        };
        // A bind mount's source is the host's, named by whoever wrote the
        // spec (a symlink there is followed, as the host sees it): opened
        // once, and mounted from that descriptor.
        let source = match &m.fstype {
            None => Some(
                openat(
                    nix::fcntl::AT_FDCWD,
                    &m.source,
                    OFlag::O_PATH | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(fail)?,
            ),
            Some(_) => None,
        };
        let kind = match &source {
            Some(source) if !is(nix::sys::stat::fstat(source).map_err(fail)?, libc::S_IFDIR) => {
                Point::File
            }
            _ => Point::Dir,
        };
        let point = MountPoint::make(&root, &m.destination, kind, source.is_some())?;
        let mounted = match (&m.fstype, &source) {
            (Some(fstype), _) => {
                // The spec's "cgroup" is the unified hierarchy here, seen
                // through the container's cgroup namespace.
                let fstype = if fstype == "cgroup" {
                    "cgroup2"
                } else {
                    fstype.as_str()
                };
                let data = (!m.data.is_empty()).then_some(m.data.as_str());
                let target = fd_path(&point.fd);
                mount(Some(&m.source), &target, Some(fstype), m.flags, data).map_err(fail)?;
                point.mounted(None).map_err(fail)?
            }
            (None, Some(source)) => bind_listed(m, &point, source).map_err(fail)?,
            (None, None) => unreachable!("a bind mount has its source open"),
        };
        if !m.propagation.is_empty() {
            let target = fd_path(&mounted);
            mount(
                None::<&str>,
                &target,
                None::<&str>,
                m.propagation,
                None::<&str>,
            )
            .map_err(fail)?;
        }
    }
    if listed.iter().any(|m| m.destination == Path::new("/dev")) {
        add_devices(rootfs)?;
    }
    Ok(())
}

/// A bind mount, from the source's descriptor onto the mount point's;
/// then, since the kernel ignores them on the first call, its flags (`ro`,
/// `nosuid`...) by a remount of what was just mounted there.
fn bind_listed(m: &ListedMount, point: &MountPoint, source: &OwnedFd) -> Result<OwnedFd, Errno> {
    let recursive = m.flags & MsFlags::MS_REC;
    mount(
        Some(&fd_path(source)),
        &fd_path(&point.fd),
        None::<&str>,
        MsFlags::MS_BIND | recursive,
        None::<&str>,
    )?;
    let mounted = point.mounted(Some(source))?;
    let rest = m.flags - MsFlags::MS_BIND - MsFlags::MS_REC;
    if !rest.is_empty() {
        let remount = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | rest;
        mount(
            None::<&str>,
            &fd_path(&mounted),
            None::<&str>,
            remount,
            None::<&str>,
        )?;
    }
    Ok(mounted)
}

/// What a mount point must be: a directory, or a file (to bind a file on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Point {
    Dir,
    File,
}

/// A mount point below the new root, held by descriptors: the directory
/// it is in, and itself.
///
/// We haven't pivoted yet, so a symlink in the image would resolve against
/// the host's root; and a directory that another container shares (a
/// volume) can change under us while we look. So the destination is never
/// looked up as a path: we walk it from the root one name at a time with
/// `O_NOFOLLOW`, making what is missing, and mount onto the descriptor we
/// end with (through `/proc/self/fd`), as runc does since CVE-2021-30465.
/// A symlink on the way is refused; a bind mount may land on a symlink
/// itself (an image's /etc/resolv.conf often is one): the link is
/// replaced, never followed.
struct MountPoint {
    parent: OwnedFd,
    name: std::ffi::OsString,
    fd: OwnedFd,
}

impl MountPoint {
    fn make(
        root: &OwnedFd,
        destination: &Path,
        kind: Point,
        bind: bool,
    ) -> Result<MountPoint, Error> {
        let refuse = |why: String| {
            Error::Other(format!(
                "mount destination {} {why}; refusing it",
                destination.display()
            ))
        };
        let io = |what: &str, name: &std::ffi::OsStr, err: Errno| {
            Error::Other(format!(
                "mount destination {}: {what} {}: {err}",
                destination.display(),
                name.to_string_lossy()
            ))
        };
        let mut names = Vec::new();
        for part in destination.components().skip(1) {
            match part {
                std::path::Component::Normal(name) => names.push(name.to_os_string()),
                std::path::Component::ParentDir => {
                    return Err(refuse("climbs out with ..".into()));
                }
                _ => {}
            }
        }
        let Some(last) = names.pop() else {
            return Err(refuse("is the root itself".into()));
        };
        let mut dir = dup_fd(root).map_err(|e| io("open", "/".as_ref(), e))?;
        for name in &names {
            let is_link = fstatat(&dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                .is_ok_and(|st| is(st, libc::S_IFLNK));
            if is_link {
                return Err(refuse(format!(
                    "goes through a symlink in the image ({})",
                    name.to_string_lossy()
                )));
            }
            match mkdirat(&dir, name.as_os_str(), Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(io("create directory", name, e)),
            }
            // A symlink swapped in since we looked fails here (ENOTDIR).
            dir = open_path(Some(&dir), name, OFlag::O_DIRECTORY)
                .map_err(|e| io("open directory", name, e))?;
        }
        let existing = fstatat(&dir, last.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).ok();
        if existing.is_some_and(|st| is(st, libc::S_IFLNK)) {
            if !bind {
                return Err(refuse(format!(
                    "is a symlink in the image ({}): only a bind mount replaces one",
                    last.to_string_lossy()
                )));
            }
            unlinkat(&dir, last.as_os_str(), UnlinkatFlags::NoRemoveDir)
                .map_err(|e| io("replace the symlink", &last, e))?;
        }
        let made = match kind {
            Point::Dir => mkdirat(&dir, last.as_os_str(), Mode::from_bits_truncate(0o755)),
            Point::File => openat(
                &dir,
                last.as_os_str(),
                OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW,
                Mode::from_bits_truncate(0o644),
            )
            .map(drop),
        };
        match made {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(io("create", &last, e)),
        }
        let fd = open_path(Some(&dir), &last, OFlag::empty()).map_err(|e| io("open", &last, e))?;
        if is(
            nix::sys::stat::fstat(&fd).map_err(|e| io("stat", &last, e))?,
            libc::S_IFLNK,
        ) {
            return Err(refuse(format!(
                "became a symlink while it was being made ({})",
                last.to_string_lossy()
            )));
        }
        Ok(MountPoint {
            parent: dir,
            name: last,
            fd,
        })
    }

    /// What is now mounted on the point, looked up again by name from the
    /// directory it is in (the point's own descriptor still leads to what
    /// is underneath); checked to be the mount just made: the root of the
    /// bind mount of `source`, or a file system other than the one below.
    fn mounted(&self, source: Option<&OwnedFd>) -> Result<OwnedFd, Errno> {
        let fd = open_path(Some(&self.parent), &self.name, OFlag::empty())?;
        let now = nix::sys::stat::fstat(&fd)?;
        let same = |a: &libc::stat, b: &libc::stat| (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino);
        let ours = match source {
            Some(source) => same(&now, &nix::sys::stat::fstat(source)?),
            None => now.st_dev != nix::sys::stat::fstat(&self.fd)?.st_dev,
        };
        match ours {
            true => Ok(fd),
            false => Err(Errno::EXDEV), // swapped under us: refuse to go on
        }
    }
}

/// `O_PATH` (a handle on the name, nothing read or written), not
/// following a symlink; at `dir`, or from the current directory.
fn open_path(dir: Option<&OwnedFd>, name: &std::ffi::OsStr, flags: OFlag) -> nix::Result<OwnedFd> {
    let flags = flags | OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match dir {
        Some(dir) => openat(dir, name, flags, Mode::empty()),
        None => openat(nix::fcntl::AT_FDCWD, name, flags, Mode::empty()),
    }
}

fn dup_fd(fd: &OwnedFd) -> nix::Result<OwnedFd> {
    fd.try_clone()
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EBADF)))
}

/// Whether `stat` is of a file of `kind` (`S_IFDIR`, `S_IFLNK`...).
fn is(stat: libc::stat, kind: libc::mode_t) -> bool {
    stat.st_mode & libc::S_IFMT == kind
}

/// Where a descriptor can be found by path, by us: mount(2) takes paths.
fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}
// ANCHOR_END: listed_mounts

/// A device node an OCI runtime spec asks for (`linux.devices`), beyond
/// the few every container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    /// Inside the container, e.g. /dev/fuse.
    pub path: PathBuf,
    /// `c`, `u` (both character devices), `b` (block) or `p` (a FIFO).
    pub kind: char,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Make the device nodes, once we stand in the new root (so a symlink in
/// a path resolves inside it): `mknod`, then owner and mode.
pub fn make_device_nodes(nodes: &[DeviceNode]) -> Result<(), Error> {
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
    for node in nodes {
        let kind = match node.kind {
            'c' | 'u' => SFlag::S_IFCHR,
            'b' => SFlag::S_IFBLK,
            'p' => SFlag::S_IFIFO,
            other => {
                return Err(Error::Other(format!(
                    "device {}: unknown type {other:?} (c, u, b or p)",
                    node.path.display()
                )));
            }
        };
        if let Some(parent) = node.path.parent() {
            make_dir(parent)?;
        }
        let _ = std::fs::remove_file(&node.path); // the spec's node replaces the image's
        let mode = Mode::from_bits_truncate(node.mode & 0o7777);
        mknod(&node.path, kind, mode, makedev(node.major, node.minor))
            .map_err(|e| Error::io("mknod", &node.path, e.into()))?;
        std::os::unix::fs::chown(&node.path, Some(node.uid), Some(node.gid))
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(
                    &node.path,
                    std::fs::Permissions::from_mode(node.mode & 0o7777),
                )
            })
            .map_err(|e| Error::io("chown and chmod", &node.path, e))?;
    }
    Ok(())
}

/// Once we stand in the new root with everything mounted on it: make the
/// root mount itself read-only (what is mounted below it keeps its own
/// flags). A bind mount takes `ro` only by a remount.
pub fn make_root_read_only() -> Result<(), Error> {
    let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
    mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
        .map_err(|e| Error::io("make the root read-only", "/", e.into()))
}

fn mount_kernel_fs(rootfs: &Path, m: &KernelMount) -> Result<(), Error> {
    // ANCHOR: exercise_kernel_mounts
    let target = rootfs.join(m.target);
    make_dir(&target)?;
    mount(Some(m.fstype), &target, Some(m.fstype), m.flags, m.data)
        .map_err(|err| Error::Other(format!("mount {} on {}: {err}", m.fstype, target.display())))
    // ANCHOR_END: exercise_kernel_mounts
}

fn add_devices(rootfs: &Path) -> Result<(), Error> {
    for device in DEVICES {
        let target = rootfs.join("dev").join(device);
        std::fs::write(&target, b"").map_err(|e| Error::io("create", &target, e))?;
        bind(&Path::new("/dev").join(device), &target)?;
    }
    for (link, points_to) in DEV_LINKS {
        let link = rootfs.join(link);
        std::os::unix::fs::symlink(points_to, &link).map_err(|e| Error::io("symlink", &link, e))?;
    }
    Ok(())
}

/// Bind a host file over `target` inside `rootfs`, made (as a plain empty
/// file) first if the rootfs lacks it. We haven't pivoted yet, so a symlink
/// in the rootfs would resolve against the *host's* root: refuse parents
/// that lead out, and replace a symlink at the target itself.
fn bind_file(source: &Path, rootfs: &Path, target: &Path) -> Result<(), Error> {
    let target = rootfs.join(target.strip_prefix("/").unwrap_or(target));
    let parent = target.parent().unwrap_or(rootfs);
    make_dir(parent)?;
    let real_parent = std::fs::canonicalize(parent).map_err(|e| Error::io("resolve", parent, e))?;
    if !real_parent.starts_with(rootfs) {
        return Err(Error::Other(format!(
            "{} leads out of the container's root (a symlink in the image); can't bind {} there",
            parent.display(),
            source.display()
        )));
    }
    let is_file = std::fs::symlink_metadata(&target).is_ok_and(|m| m.file_type().is_file());
    if !is_file {
        let _ = std::fs::remove_file(&target);
        std::fs::write(&target, b"").map_err(|e| Error::io("create", &target, e))?;
    }
    bind(source, &target)?;
    // Read-only: the host owns these files (a network's names, say, which
    // other containers read too); the container only reads them.
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    mount(None::<&str>, &target, None::<&str>, flags, None::<&str>)
        .map_err(|err| Error::Other(format!("make {} read-only: {err}", target.display())))
}

fn bind(source: &Path, target: &Path) -> Result<(), Error> {
    let flags = MsFlags::MS_BIND | MsFlags::MS_REC;
    mount(Some(source), target, None::<&str>, flags, None::<&str>).map_err(|err| {
        Error::Other(format!(
            "bind-mount {} on {}: {err}",
            source.display(),
            target.display()
        ))
    })
}

/// `move_mount`: attach the detached mount `made` at `target`, in our own
/// mount namespace (a mount attached nowhere may go into any namespace its
/// holder may mount in). A symlink at `target` is not followed.
pub fn attach(made: &OwnedFd, target: &Path) -> Result<(), Error> {
    let fail = |err: Errno| {
        let hint = match err {
            Errno::EACCES => {
                " (container root is host user 100000 and must be able to reach the \
                 rootfs: check the permissions of the directories above it)"
            }
            _ => "",
        };
        Error::Other(format!(
            "attach a mount at {}: {err}{hint}",
            target.display()
        ))
    };
    let path =
        CString::new(target.as_os_str().as_encoded_bytes()).map_err(|_| fail(Errno::EINVAL))?;
    // SAFETY: a descriptor we own and a NUL-terminated path.
    let moved = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            made.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            path.as_ptr(),
            crate::userns::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    match moved {
        0 => Ok(()),
        _ => Err(fail(Errno::last())),
    }
}

fn remount(target: &str, flags: MsFlags) -> Result<(), Error> {
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
        .map_err(|e| Error::io("change propagation of mount", target, e.into()))
}

/// Mount points a rootfs lacks are made (an image need not ship /proc).
fn make_dir(path: &Path) -> Result<(), Error> {
    match std::fs::create_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) => Err(Error::io("create mount point", path, e)),
    }
}
