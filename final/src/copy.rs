//! `berth cp`: files between the host and a running container, as
//! `docker cp SRC CONTAINER:DEST` and `docker cp CONTAINER:SRC DEST` do.
//!
//! The container is running and may be hostile: while we copy, it can swap
//! any directory for a symlink to `/`, hoping we follow it and read or
//! write the host's files. So inside the container we never use a path
//! twice. The first directory is opened through its root (`/proc/PID/root`)
//! with `openat2(RESOLVE_IN_ROOT)`, which resolves every symlink as if the
//! container's root were `/`; below it we only go by file descriptor, one
//! name at a time, with `O_NOFOLLOW`: a symlink is copied as a symlink,
//! never followed. The host's side is the user's own, trusted as `cp` is.
//!
//! `berth export` walks the whole root the same way, into a tar.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{Mode, fchmod, fstatat, mkdirat};
use nix::unistd::{fchown, symlinkat};
use stage01_chroot::Error;

use crate::Engine;
use crate::control;

/// One side of `berth cp`: a host path, or `CONTAINER:PATH`.
pub enum Side {
    Host(PathBuf),
    Container { key: String, path: PathBuf },
}

impl Side {
    /// `NAME:PATH` is a container's (Docker's rule: a host path with a colon
    /// must start with `/` or `./`).
    pub fn parse(text: &str) -> Side {
        match text.split_once(':') {
            Some((key, path))
                if !key.is_empty() && !key.contains('/') && !text.starts_with('.') =>
            {
                Side::Container {
                    key: key.into(),
                    path: path.into(),
                }
            }
            _ => Side::Host(text.into()),
        }
    }
}

/// `berth cp SRC DEST`; `archive` (-a) keeps owners too.
pub fn copy(engine: &Engine, source: Side, dest: Side, archive: bool) -> Result<(), Error> {
    match (source, dest) {
        (Side::Host(from), Side::Container { key, path }) => {
            let root = container_root(engine, &key)?;
            copy_in(&from, &root, &path, archive)
        }
        (Side::Container { key, path }, Side::Host(to)) => {
            let root = container_root(engine, &key)?;
            copy_out(&root, &path, &to, archive)
        }
        _ => Err(Error::Other(
            "berth cp copies between the host and a container: one side is CONTAINER:PATH, \
             the other a host path"
                .into(),
        )),
    }
}

/// The running container's root directory, as its init sees it.
fn container_root(engine: &Engine, key: &str) -> Result<OwnedFd, Error> {
    let record = engine.containers.find(key)?;
    let (init, _) = control::running(engine, &record).map_err(|_| {
        Error::Other(format!(
            "container {key} is not running: berth cp needs a running container (berth start {key})"
        ))
    })?;
    let root = format!("/proc/{}/root", init.pid);
    nix::fcntl::open(
        root.as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("open", &root, e.into()))
}

/// Open `path` inside the container as if chrooted there (see above):
/// stage 04's way of opening inside a layer, with `path` made relative.
fn open_in_root(root: &OwnedFd, path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let relative: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir))
        .collect();
    stage04_images::unpack::open_in_root(root, &relative, flags)
}

/// Open the directory `name` in `dir`, not following a symlink.
fn open_child_dir(dir: &OwnedFd, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// The directory `path` names and the last name in it (`/a/b` → `/a`, `b`).
fn parent_and_name(path: &Path) -> Result<(PathBuf, OsString), Error> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => Ok((parent.to_path_buf(), name.to_owned())),
        _ => Err(Error::Other(format!(
            "{}: name a file or directory, e.g. /etc/hosts or /srv/",
            path.display()
        ))),
    }
}

// ---- Into the container ----

fn copy_in(from: &Path, root: &OwnedFd, dest: &Path, archive: bool) -> Result<(), Error> {
    let meta = std::fs::symlink_metadata(from).map_err(|e| Error::io("stat", from, e))?;
    // Docker's rule: into DEST if it is a directory, else as DEST.
    let (dir, name) = match open_in_root(root, dest, OFlag::O_DIRECTORY | OFlag::O_RDONLY) {
        Ok(dir) => (dir, file_name(from)?),
        Err(_) => {
            let (parent, name) = parent_and_name(dest)?;
            let dir = open_in_root(root, &parent, OFlag::O_DIRECTORY | OFlag::O_RDONLY)
                .map_err(|e| inside_error("open", &parent, e))?;
            (dir, name)
        }
    };
    write_entry(from, &meta, &dir, &name, archive)
}

fn file_name(path: &Path) -> Result<OsString, Error> {
    let canonical = path
        .canonicalize()
        .map_err(|e| Error::io("resolve", path, e))?;
    Ok(canonical.file_name().unwrap_or(OsStr::new("/")).to_owned())
}

/// Make `name` in the container's directory `dir` a copy of host `from`.
fn write_entry(
    from: &Path,
    meta: &std::fs::Metadata,
    dir: &OwnedFd,
    name: &OsStr,
    archive: bool,
) -> Result<(), Error> {
    let fail = |step: &'static str| move |e: Errno| inside_error(step, Path::new(name), e);
    let mode = Mode::from_bits_truncate(meta.mode() & 0o7777);
    let created = if meta.file_type().is_symlink() {
        let target = std::fs::read_link(from).map_err(|e| Error::io("readlink", from, e))?;
        symlinkat(&target, dir, name).map_err(fail("make the symlink"))?;
        None
    } else if meta.is_dir() {
        match mkdirat(dir, name, Mode::from_bits_truncate(0o700)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(fail("make the directory")(e)),
        }
        let child = open_child_dir(dir, name).map_err(fail("open the directory"))?;
        for entry in std::fs::read_dir(from).map_err(|e| Error::io("read", from, e))? {
            let entry = entry.map_err(|e| Error::io("read", from, e))?;
            let meta = entry
                .metadata()
                .map_err(|e| Error::io("stat", entry.path(), e))?;
            write_entry(&entry.path(), &meta, &child, &entry.file_name(), archive)?;
        }
        Some(child)
    } else if meta.is_file() {
        let file = openat(
            dir,
            name,
            OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_TRUNC
                | OFlag::O_NOFOLLOW
                | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(fail("create the file"))?;
        let mut source = File::open(from).map_err(|e| Error::io("open", from, e))?;
        io::copy(
            &mut source,
            &mut File::from(
                file.try_clone()
                    .map_err(|e| Error::io("duplicate", from, e))?,
            ),
        )
        .map_err(|e| Error::io("copy", from, e))?;
        Some(file)
    } else {
        return Err(Error::Other(format!(
            "{}: berth cp copies files, directories and symlinks, not devices or sockets",
            from.display()
        )));
    };
    if let Some(fd) = created {
        fchmod(&fd, mode).map_err(fail("chmod"))?;
        if archive {
            let (uid, gid) = (meta.uid().into(), meta.gid().into());
            fchown(fd.as_fd(), Some(uid), Some(gid)).map_err(fail("chown"))?;
        }
    }
    Ok(())
}

fn inside_error(step: &str, path: &Path, e: Errno) -> Error {
    let hint = match e {
        Errno::ELOOP => ": it is a symlink in the container, which berth cp does not follow",
        Errno::ENOENT => ": no such file or directory in the container",
        _ => "",
    };
    Error::Other(format!(
        "cp: {step} {} in the container: {}{hint}",
        path.display(),
        e.desc()
    ))
}

// ---- Out of the container ----

fn copy_out(root: &OwnedFd, source: &Path, to: &Path, archive: bool) -> Result<(), Error> {
    let (parent, name) = match source.file_name() {
        Some(_) => parent_and_name(source)?,
        None => (source.to_path_buf(), OsString::from(".")), // "/" or "dir/."
    };
    let dir = open_in_root(root, &parent, OFlag::O_DIRECTORY | OFlag::O_RDONLY)
        .map_err(|e| inside_error("open", &parent, e))?;
    // Into TO if it is a directory, else as TO (Docker's rule).
    let target = match to.is_dir() {
        true if name != "." => to.join(&name),
        _ => to.to_path_buf(),
    };
    read_entry(&dir, &name, &target, archive)
}

/// Make host `to` a copy of `name` in the container's directory `dir`.
fn read_entry(dir: &OwnedFd, name: &OsStr, to: &Path, archive: bool) -> Result<(), Error> {
    let fail = |step: &'static str| move |e: Errno| inside_error(step, Path::new(name), e);
    let stat = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(fail("stat"))?;
    let kind = stat.st_mode & libc::S_IFMT;
    match kind {
        libc::S_IFLNK => {
            let target = readlinkat(dir, name).map_err(fail("read the symlink"))?;
            std::os::unix::fs::symlink(&target, to).map_err(|e| Error::io("symlink", to, e))?;
            return Ok(()); // a symlink's own mode and owner don't matter
        }
        libc::S_IFDIR => {
            let child = open_child_dir(dir, name).map_err(fail("open the directory"))?;
            match std::fs::create_dir(to) {
                Ok(()) => {}
                // Only a real directory: a symlink there may be one an
                // earlier copy brought out of this container, to make this
                // copy write wherever it points (CVE-2018-15664's trick).
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if !std::fs::symlink_metadata(to).is_ok_and(|m| m.is_dir()) {
                        return Err(not_followed(to));
                    }
                }
                Err(e) => return Err(Error::io("mkdir", to, e)),
            }
            for entry in list(&child)? {
                read_entry(&child, &entry, &to.join(&entry), archive)?;
            }
        }
        libc::S_IFREG => {
            let file = openat(
                dir,
                name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(fail("open"))?;
            let mut out = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(to)
                .map_err(|e| match e.raw_os_error() {
                    Some(libc::ELOOP) => not_followed(to),
                    _ => Error::io("create", to, e),
                })?;
            io::copy(&mut File::from(file), &mut out).map_err(|e| Error::io("copy to", to, e))?;
        }
        _ => {
            return Err(Error::Other(format!(
                "{}: berth cp copies files, directories and symlinks, not devices or sockets",
                Path::new(name).display()
            )));
        }
    }
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(stat.st_mode & 0o7777))
        .map_err(|e| Error::io("chmod", to, e))?;
    if archive {
        std::os::unix::fs::chown(to, Some(stat.st_uid), Some(stat.st_gid))
            .map_err(|e| Error::io("chown", to, e))?;
    }
    Ok(())
}

fn not_followed(path: &Path) -> Error {
    Error::Other(format!(
        "cp: {} is a symlink on the host: berth cp writes no file through one (remove it, or \
         copy somewhere else)",
        path.display()
    ))
}

/// The names in the directory `dir` (not `.` and `..`), read through the
/// descriptor we hold (`/proc/self/fd/N` is that very directory, whatever
/// its path is now).
fn list(dir: &OwnedFd) -> Result<Vec<OsString>, Error> {
    let path = format!("/proc/self/fd/{}", dir.as_raw_fd());
    std::fs::read_dir(&path)
        .and_then(|entries| entries.map(|e| e.map(|e| e.file_name())).collect())
        .map_err(|e| Error::io("list", &path, e))
}

// ---- export ----

/// `berth export`: the running container's file system as a tar on `out`,
/// without what is mounted on it (/proc, /sys, /dev, the files berth binds
/// over): only what is on the container's root file system itself.
pub fn export(engine: &Engine, key: &str, out: impl io::Write) -> Result<(), Error> {
    let root = container_root(engine, key)?;
    let top = open_in_root(&root, Path::new("/"), OFlag::O_DIRECTORY | OFlag::O_RDONLY)
        .map_err(|e| inside_error("open", Path::new("/"), e))?;
    let device = nix::sys::stat::fstat(&top)
        .map_err(|e| inside_error("stat", Path::new("/"), e))?
        .st_dev;
    let mut tar = tar::Builder::new(out);
    export_dir(&mut tar, &top, Path::new(""), device)?;
    // The end of the archive, then every buffered byte, or an error.
    tar.into_inner()
        .and_then(|mut out| out.flush())
        .map_err(|e| Error::io("write", "the tar", e))
}

fn export_dir(
    tar: &mut tar::Builder<impl io::Write>,
    dir: &OwnedFd,
    inside: &Path,
    device: u64,
) -> Result<(), Error> {
    let mut names = list(dir)?;
    names.sort();
    for name in names {
        let path = inside.join(&name);
        let fail = |step: &'static str| {
            let path = path.clone();
            move |e: Errno| inside_error(step, &path, e)
        };
        let stat =
            fstatat(dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(fail("stat"))?;
        if stat.st_dev != device {
            continue; // a mount point: not the container's own files
        }
        let mut header = tar::Header::new_gnu();
        header.set_mode(stat.st_mode & 0o7777);
        header.set_uid(stat.st_uid.into());
        header.set_gid(stat.st_gid.into());
        header.set_mtime(stat.st_mtime.max(0) as u64);
        let write = |e: io::Error| Error::io("write", "the tar", e);
        match stat.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                tar.append_data(&mut header, &path, io::empty())
                    .map_err(write)?;
                let child =
                    open_child_dir(dir, name.as_os_str()).map_err(fail("open the directory"))?;
                export_dir(tar, &child, &path, device)?;
            }
            libc::S_IFREG => {
                let file = openat(
                    dir,
                    name.as_os_str(),
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(fail("open"))?;
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(stat.st_size as u64);
                // The size as it was at stat: a file that grows meanwhile is cut.
                let content = File::from(file).take(stat.st_size as u64);
                tar.append_data(&mut header, &path, content)
                    .map_err(write)?;
            }
            libc::S_IFLNK => {
                let target = readlinkat(dir, name.as_os_str()).map_err(fail("read the symlink"))?;
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                tar.append_link(&mut header, &path, Path::new(&target))
                    .map_err(write)?;
            }
            kind => {
                // Devices, FIFOs, sockets: their numbers, no content.
                let entry_type = match kind {
                    libc::S_IFCHR => tar::EntryType::Char,
                    libc::S_IFBLK => tar::EntryType::Block,
                    libc::S_IFIFO => tar::EntryType::Fifo,
                    _ => continue, // a socket has no place in a tar
                };
                header.set_entry_type(entry_type);
                header.set_size(0);
                header
                    .set_device_major(nix::sys::stat::major(stat.st_rdev) as u32)
                    .map_err(write)?;
                header
                    .set_device_minor(nix::sys::stat::minor(stat.st_rdev) as u32)
                    .map_err(write)?;
                tar.append_data(&mut header, &path, io::empty())
                    .map_err(write)?;
            }
        }
    }
    Ok(())
}
