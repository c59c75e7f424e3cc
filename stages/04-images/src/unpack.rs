//! Unpacking one layer, safely, into a directory overlayfs can stack.
//!
//! A layer is a tar stream written by someone we do not trust. A hostile
//! one names paths like `../x` or `/etc/x`, plants a symlink `a -> /` and
//! then writes `a/etc/passwd`, or hard-links `/etc/shadow`. So we do not use
//! `tar::Archive::unpack` (it skips `..` silently, refuses real images'
//! `lib -> usr/lib` links, and knows no whiteouts): we read entries with `tar` and
//! create each one ourselves, in three steps:
//!
//! 1. clean the entry's path lexically, refusing any `..` that climbs out;
//! 2. open its parent directory with `openat2(RESOLVE_IN_ROOT)`, so the
//!    kernel resolves every symlink on the way as if the layer were `/`;
//! 3. create the final name with `*at()` calls relative to that parent,
//!    never following a symlink in the final component.
//!
//! OCI whiteouts (`.wh.name`, `.wh..wh..opq`) become what overlayfs reads: a
//! 0:0 character device and the `trusted.overlay.opaque` xattr.
//!
//! We assume nobody else writes into `dest` while we unpack (it is a fresh
//! private directory); the defence is against the tar's contents.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2, readlinkat};
use nix::sys::stat::{
    FileStat, Mode, SFlag, UtimensatFlags, fchmod, fstatat, futimens, makedev, mkdirat, mknodat,
    utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{
    Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, mkfifoat, symlinkat, unlinkat,
};
use stage01_chroot::Error;

use crate::bounds::LayerBudget;

/// What happened to a layer's entries.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UnpackReport {
    /// Entries created or updated in the layer directory (whiteouts too).
    pub written: usize,
    /// Entries deliberately not created; `notes` says why.
    pub skipped: usize,
    /// Human-readable notes: skipped entries, refused xattrs, neutralised
    /// absolute paths.
    pub notes: Vec<String>,
}

/// An entry named `.wh.<name>` deletes `<name>` of the layers below.
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// An entry named `.wh..wh..opq` hides everything the layers below have in
/// its directory.
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// The xattr overlayfs reads to know a directory is opaque.
const OVERLAY_OPAQUE: &CStr = c"trusted.overlay.opaque";

/// Extracts one uncompressed layer tar into `dest`, an existing (normally
/// empty) directory, so that `dest` can be an overlayfs lower directory.
///
/// Fails, naming the entry, on an entry that would leave `dest`, and once
/// the files written exceed `budget` (see [`LayerBudget`]); the caller
/// should then throw `dest` away.
pub fn unpack_layer(
    tar: impl Read,
    dest: &Path,
    budget: &LayerBudget,
) -> Result<UnpackReport, Error> {
    let mut layer = Layer::open(dest, budget)?;
    let mut archive = tar::Archive::new(tar);
    // A zero block ends the archive. Reading on past it would unpack data
    // that Docker and containerd never see: keep to what they agree on.
    archive.set_ignore_zeros(false);
    let entries = archive
        .entries()
        .map_err(|e| Error::io("read layer tar", dest, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::io("read layer tar entry in", dest, e))?;
        layer.unpack_entry(&mut entry)?;
    }
    layer.finish()
}

/// The layer directory being filled, and what we still owe it at the end.
struct Layer<'a> {
    /// `dest`, opened once: every path below is resolved from this fd.
    root: OwnedFd,
    dest: PathBuf,
    /// The entry being unpacked, as the tar names it, for errors.
    entry: PathBuf,
    /// Bounds the bytes written into the layer's files.
    budget: &'a LayerBudget,
    report: UnpackReport,
    /// Directory mtimes, set last because creating children changes them.
    dir_times: Vec<(PathBuf, TimeSpec)>,
    /// How many entries had absolute paths (made relative to the root).
    absolute: usize,
}

/// An entry's metadata from its header and PAX records.
struct Meta {
    mode: Mode,
    uid: Uid,
    gid: Gid,
    mtime: TimeSpec,
    xattrs: Vec<(CString, Vec<u8>)>,
}

impl<'a> Layer<'a> {
    fn open(dest: &Path, budget: &'a LayerBudget) -> Result<Layer<'a>, Error> {
        // A real (not O_PATH) fd, so the root entry can fchmod/fchown it.
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let root = openat(nix::fcntl::AT_FDCWD, dest, flags, Mode::empty())
            .map_err(|e| Error::io("open layer directory", dest, e.into()))?;
        Ok(Layer {
            root,
            dest: dest.to_path_buf(),
            entry: PathBuf::new(),
            budget,
            report: UnpackReport::default(),
            dir_times: Vec::new(),
            absolute: 0,
        })
    }

    /// Dispatches one entry on its name (whiteouts, the root) and its type.
    fn unpack_entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), Error> {
        let raw = entry
            .path()
            .map_err(|e| Error::io("read entry name in layer", &self.dest, e))?
            .into_owned();
        self.entry.clone_from(&raw);
        let kind = entry_kind(entry.header(), &raw);
        if kind.is_pax_global_extensions() {
            return self.skip(&raw, "PAX global header: describes the archive, not a file");
        }
        let path = clean(&raw)?;
        if raw.has_root() && path.parent().is_some() {
            self.absolute += 1; // counted, but not umoci's `/` root entry
        }
        let meta = self.read_meta(entry, &raw)?;
        let Some((parent, name)) = split(&path) else {
            return self.root_entry(kind, &meta, &raw);
        };
        if name.as_bytes().starts_with(WHITEOUT_PREFIX) {
            return self.whiteout(parent, name, &raw);
        }
        match kind {
            tar::EntryType::Directory => self.directory(&path, &meta),
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.file(&path, &meta, entry)
            }
            tar::EntryType::Symlink => {
                let target = self.link_name(entry, &raw)?;
                self.symlink(&path, &target, &meta)
            }
            tar::EntryType::Link => {
                let target = self.link_name(entry, &raw)?;
                self.hard_link(&path, &target, &raw)
            }
            tar::EntryType::Fifo => self.fifo(&path, &meta),
            tar::EntryType::Char | tar::EntryType::Block => self.skip(
                &raw,
                "device node not created: images must not bring devices (the runtime makes /dev)",
            ),
            other => self.skip(&raw, &format!("unsupported tar entry type {other:?}")),
        }
    }

    /// Reads mode, owner, mtime and xattrs. Must run before the entry's data
    /// is read: PAX records are parsed from the entry.
    fn read_meta<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &Path,
    ) -> Result<Meta, Error> {
        let bad = |e: io::Error| Error::io("read tar header of", raw, e);
        let header = entry.header();
        let old = header.as_old();
        let mode = numeric(header.mode().map(u64::from), &old.mode).map_err(bad)?;
        let uid = id(numeric(header.uid(), &old.uid).map_err(bad)?, raw)?;
        let gid = id(numeric(header.gid(), &old.gid).map_err(bad)?, raw)?;
        let mtime = numeric(header.mtime(), &old.mtime).map_err(bad)?;
        let seconds = i64::try_from(mtime).unwrap_or(i64::MAX);
        let mut meta = Meta {
            mode: Mode::from_bits_truncate((mode & 0o7777) as libc::mode_t),
            uid: Uid::from_raw(uid),
            gid: Gid::from_raw(gid),
            mtime: TimeSpec::new(seconds, 0),
            xattrs: Vec::new(),
        };
        let Some(records) = entry.pax_extensions().map_err(bad)? else {
            return Ok(meta);
        };
        for record in records {
            let record = record.map_err(bad)?;
            let key = record.key_bytes();
            if key == b"mtime" {
                meta.mtime = parse_pax_time(record.value_bytes()).unwrap_or(meta.mtime);
            } else if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                self.keep_xattr(&mut meta, name, record.value_bytes(), raw);
            }
        }
        Ok(meta)
    }

    /// Keeps an xattr to set later, unless it is one that overlayfs itself
    /// reads: an image carrying `trusted.overlay.*` could fake whiteouts or
    /// redirects in the merged view.
    fn keep_xattr(&mut self, meta: &mut Meta, name: &[u8], value: &[u8], raw: &Path) {
        let shown = String::from_utf8_lossy(name);
        if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
            let note = format!(
                "{}: xattr {shown} ignored (reserved for overlayfs)",
                raw.display()
            );
            self.report.notes.push(note);
            return;
        }
        match CString::new(name) {
            Ok(name) => meta.xattrs.push((name, value.to_vec())),
            Err(_) => {
                let note = format!("{}: xattr {shown:?} ignored (NUL in name)", raw.display());
                self.report.notes.push(note);
            }
        }
    }

    fn link_name<R: Read>(&self, entry: &tar::Entry<'_, R>, raw: &Path) -> Result<PathBuf, Error> {
        match entry.link_name() {
            Ok(Some(target)) if !target.as_os_str().is_empty() => Ok(target.into_owned()),
            Ok(_) => Err(Error::Other(format!(
                "layer entry {raw:?} is a link without a target; the layer is malformed"
            ))),
            Err(e) => Err(Error::io("read link target of", raw, e)),
        }
    }

    /// Opens the directory `path` of the layer as an `O_PATH` fd (enough to
    /// be the `dirfd` of `*at()` calls), creating missing directories like
    /// `mkdir -p`: layers may list `usr/bin/x` without `usr/` before it.
    fn open_dir(&self, path: &Path) -> Result<OwnedFd, Error> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
        match open_in_root(&self.root, path, flags) {
            Err(Errno::ENOENT) => {
                let Some((parent, name)) = split(path) else {
                    return Err(self.error("open layer root", path, Errno::ENOENT));
                };
                let parent_fd = self.open_dir(parent)?;
                create_dir(&parent_fd, name).map_err(|e| self.error("mkdir", path, e))?;
                open_in_root(&self.root, path, flags).map_err(|e| self.dir_error(path, e))
            }
            result => result.map_err(|e| self.dir_error(path, e)),
        }
    }

    // ANCHOR: symlink_escape
    /// Why the directory `path` an entry needs cannot be opened. Usually a
    /// symlink on the way points where this layer has no directory: `lib
    /// -> /etc` when the layer has no `etc`, or `up -> ../../x`, whose `..`
    /// stops at the layer root. Following it would leave the layer (on the
    /// host, or into a lower layer), so the layer is refused, naming both.
    fn dir_error(&self, path: &Path, errno: Errno) -> Error {
        match self.symlink_on_the_way(path) {
            Some((link, target)) => Error::Other(format!(
                "layer entry {:?} would leave the layer through the symlink {link:?} -> \
                 {target:?}: its target is not a directory inside this layer; refusing to \
                 unpack this layer (it is malformed or hostile)",
                self.entry
            )),
            None => self.error("open directory", path, errno),
        }
    }

    /// The first component of `path` that cannot be opened as a directory
    /// inside the layer, if it is a symlink: its path and its target.
    fn symlink_on_the_way(&self, path: &Path) -> Option<(PathBuf, PathBuf)> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
        let mut parent = self.root.try_clone().ok()?;
        let mut prefix = PathBuf::new();
        for component in path.components() {
            let name = component.as_os_str();
            prefix.push(name);
            match open_in_root(&self.root, &prefix, flags) {
                Ok(fd) => parent = fd,
                Err(_) => {
                    let found = fstatat(&parent, name, AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
                    if found.st_mode & SFlag::S_IFMT.bits() != SFlag::S_IFLNK.bits() {
                        return None;
                    }
                    let target = readlinkat(&parent, name).ok()?;
                    return Some((prefix, PathBuf::from(target)));
                }
            }
        }
        None
    }
    // ANCHOR_END: symlink_escape

    /// A `/`, `.` or `./` entry describes the layer root itself.
    fn root_entry(&mut self, kind: tar::EntryType, meta: &Meta, raw: &Path) -> Result<(), Error> {
        if !kind.is_dir() {
            return self.skip(raw, "a non-directory cannot replace the layer root");
        }
        let root = self
            .root
            .try_clone()
            .map_err(|e| self.io("dup", Path::new(""), e))?;
        self.set_meta(root.as_fd(), meta, Path::new(""))?;
        self.dir_times.push((PathBuf::new(), meta.mtime));
        self.report.written += 1;
        Ok(())
    }

    /// A directory: create it, or keep the existing one and update its mode.
    fn directory(&mut self, path: &Path, meta: &Meta) -> Result<(), Error> {
        let (parent, name) = split_child(path);
        let parent_fd = self.open_dir(parent)?;
        let replaced = self.clear(&parent_fd, name, path, true)?;
        if replaced.is_none_or(|old| !is_dir(&old)) {
            create_dir(&parent_fd, name).map_err(|e| self.error("mkdir", path, e))?;
        }
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
        let fd = open_child(&parent_fd, name, flags).map_err(|e| self.error("open", path, e))?;
        if replaced.is_some_and(|old| is_whiteout(&old)) {
            // The layer deleted this name (below) and made a new directory:
            // the new one must not show the lower layers' old contents.
            set_xattr(fd.as_fd(), OVERLAY_OPAQUE, b"y")
                .map_err(|e| self.io("set opaque xattr on", path, e))?;
        }
        self.set_meta(fd.as_fd(), meta, path)?;
        self.dir_times.push((path.to_path_buf(), meta.mtime));
        self.report.written += 1;
        Ok(())
    }

    /// A regular file: always a new inode, so we never write through a
    /// symlink or into a hard-linked file an earlier entry left there.
    fn file(&mut self, path: &Path, meta: &Meta, data: &mut impl Read) -> Result<(), Error> {
        let (parent, name) = split_child(path);
        let parent_fd = self.open_dir(parent)?;
        self.clear(&parent_fd, name, path, false)?;
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW;
        let fd = openat(&parent_fd, name, flags | OFlag::O_CLOEXEC, Mode::S_IRUSR)
            .map_err(|e| self.error("create file", path, e))?;
        let mut file = File::from(fd);
        self.budget
            .copy_file_data(data, &mut file)
            .map_err(|e| self.io("write file", path, e))?;
        self.set_meta(file.as_fd(), meta, path)?;
        // Last: writing and setting xattrs would otherwise move the times.
        futimens(&file, &meta.mtime, &meta.mtime).map_err(|e| self.error("set mtime", path, e))?;
        self.report.written += 1;
        Ok(())
    }

    /// A symlink stores its target verbatim: `/usr/lib` is fine inside a
    /// layer, because we never follow it here, and in the container it
    /// resolves inside the container's root.
    fn symlink(&mut self, path: &Path, target: &Path, meta: &Meta) -> Result<(), Error> {
        let (parent, name) = split_child(path);
        let parent_fd = self.open_dir(parent)?;
        self.clear(&parent_fd, name, path, false)?;
        symlinkat(target, &parent_fd, name).map_err(|e| self.error("symlink", path, e))?;
        let nofollow = AtFlags::AT_SYMLINK_NOFOLLOW;
        fchownat(&parent_fd, name, Some(meta.uid), Some(meta.gid), nofollow)
            .map_err(|e| self.error("chown symlink", path, e))?;
        if !meta.xattrs.is_empty() {
            let note = format!("{}: xattrs on a symlink not restored", path.display());
            self.report.notes.push(note);
        }
        let no = UtimensatFlags::NoFollowSymlink;
        utimensat(&parent_fd, name, &meta.mtime, &meta.mtime, no)
            .map_err(|e| self.error("set mtime of symlink", path, e))?;
        self.report.written += 1;
        Ok(())
    }

    // ANCHOR: hard_link
    /// A hard link names an earlier entry of this layer. Its target is
    /// resolved inside the root like any path, and must be a file or a
    /// symlink there: linking `/etc/shadow` of the host is impossible.
    fn hard_link(&mut self, path: &Path, link: &Path, raw: &Path) -> Result<(), Error> {
        let target = clean(link).map_err(|_| escape_error(raw, "its hard link target"))?;
        let refuse = |why: String| {
            Error::Other(format!(
                "layer entry {raw:?} is a hard link to {link:?}, {why}; refusing to unpack \
                 this layer (it is malformed or hostile)"
            ))
        };
        let Some((target_parent, target_name)) = split(&target) else {
            return Err(refuse("the layer root".into()));
        };
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
        let target_dir = open_in_root(&self.root, target_parent, flags)
            .map_err(|e| refuse(format!("which is not in the layer ({e})")))?;
        let found = fstatat(&target_dir, target_name, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| refuse(format!("which is not in the layer ({e})")))?;
        let kind = SFlag::from_bits_truncate(found.st_mode & SFlag::S_IFMT.bits());
        if kind != SFlag::S_IFREG && kind != SFlag::S_IFLNK {
            return Err(refuse("which is not a regular file or a symlink".into()));
        }
        let (parent, name) = split_child(path);
        let parent_fd = self.open_dir(parent)?;
        if let Ok(old) = fstatat(&parent_fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)
            && (old.st_dev, old.st_ino) == (found.st_dev, found.st_ino)
        {
            // Already that file (e.g. a link to itself): clearing the name
            // first would delete the only copy.
            return self.skip(raw, "hard link already in place");
        }
        self.clear(&parent_fd, name, path, false)?;
        // No AT_SYMLINK_FOLLOW: a symlink target is linked itself, not followed.
        linkat(&target_dir, target_name, &parent_fd, name, AtFlags::empty())
            .map_err(|e| self.error("hard link", path, e))?;
        self.report.written += 1;
        Ok(())
    }
    // ANCHOR_END: hard_link

    fn fifo(&mut self, path: &Path, meta: &Meta) -> Result<(), Error> {
        let (parent, name) = split_child(path);
        let parent_fd = self.open_dir(parent)?;
        self.clear(&parent_fd, name, path, false)?;
        mkfifoat(&parent_fd, name, Mode::S_IRUSR).map_err(|e| self.error("mkfifo", path, e))?;
        // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
        // writer. We only need an fd to set metadata through.
        let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK;
        let fd = open_child(&parent_fd, name, flags).map_err(|e| self.error("open", path, e))?;
        self.set_meta(fd.as_fd(), meta, path)?;
        futimens(&fd, &meta.mtime, &meta.mtime).map_err(|e| self.error("set mtime", path, e))?;
        self.report.written += 1;
        Ok(())
    }

    // ANCHOR: whiteouts
    /// `dir/.wh.name` deletes `name` of the lower layers; overlayfs spells
    /// that as a character device 0:0 named `name`. `dir/.wh..wh..opq`
    /// hides all of `dir` below; overlayfs spells that as an xattr.
    fn whiteout(&mut self, dir: &Path, marker: &OsStr, raw: &Path) -> Result<(), Error> {
        let marker = marker.as_bytes();
        if marker == OPAQUE_MARKER {
            return self.opaque(dir);
        }
        let hidden = OsStr::from_bytes(&marker[WHITEOUT_PREFIX.len()..]);
        if hidden.as_bytes().starts_with(WHITEOUT_PREFIX) {
            return self.skip(raw, "aufs bookkeeping entry, meaningless to overlayfs");
        }
        if matches!(hidden.as_bytes(), b"" | b"." | b"..") {
            return Err(Error::Other(format!(
                "layer entry {raw:?} is a whiteout of {hidden:?}, which is no name; \
                 refusing to unpack this layer (it is malformed or hostile)"
            )));
        }
        let path = dir.join(hidden);
        let dir_fd = self.open_dir(dir)?;
        match fstatat(&dir_fd, hidden, AtFlags::AT_SYMLINK_NOFOLLOW) {
            // Whiteouts delete only what the layers *below* have. If this
            // layer made `name` itself it stays; a directory of ours must
            // still hide the lower one's contents, so it turns opaque.
            Ok(ours) if is_dir(&ours) => return self.opaque(&path),
            Ok(_) => return self.skip(raw, "whiteout of a name this layer itself creates"),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(self.error("stat", &path, e)),
        }
        mknodat(
            &dir_fd,
            hidden,
            SFlag::S_IFCHR,
            Mode::empty(),
            makedev(0, 0),
        )
        .map_err(|e| self.error("mknod whiteout", &path, e))?;
        self.report.written += 1;
        Ok(())
    }

    fn opaque(&mut self, dir: &Path) -> Result<(), Error> {
        self.open_dir(dir)?; // creates it if this layer did not list it
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW;
        let fd = open_in_root(&self.root, dir, flags).map_err(|e| self.error("open", dir, e))?;
        set_xattr(fd.as_fd(), OVERLAY_OPAQUE, b"y")
            .map_err(|e| self.io("set opaque xattr on", dir, e))?;
        self.report.written += 1;
        Ok(())
    }
    // ANCHOR_END: whiteouts

    /// Owner, then mode, then xattrs, in that order: chown clears setuid,
    /// setgid and file capabilities (`security.capability`), so they must
    /// come after it.
    fn set_meta(&mut self, fd: BorrowedFd<'_>, meta: &Meta, path: &Path) -> Result<(), Error> {
        fchown(fd, Some(meta.uid), Some(meta.gid)).map_err(|e| self.error("chown", path, e))?;
        // Explicit, so the umask does not strip bits (setuid, group write...).
        fchmod(fd, meta.mode).map_err(|e| self.error("chmod", path, e))?;
        for (name, value) in &meta.xattrs {
            if let Err(e) = set_xattr(fd, name, value) {
                // E.g. `security.*` names the kernel refuses without the LSM:
                // the file is still usable, so note it and go on.
                let note = format!("{}: xattr {name:?} not set: {e}", path.display());
                self.report.notes.push(note);
            }
        }
        Ok(())
    }

    /// Makes room for a new entry at `name`: removes a non-directory (later
    /// entries replace earlier ones), and a directory too unless
    /// `keep_dir`. Returns what was there.
    fn clear(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        path: &Path,
        keep_dir: bool,
    ) -> Result<Option<FileStat>, Error> {
        let old = match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(old) => old,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(self.error("stat", path, e)),
        };
        let removed = match (is_dir(&old), keep_dir) {
            (true, true) => Ok(()),
            (true, false) => remove_tree(parent.as_fd(), name),
            (false, _) => unlinkat(parent, name, UnlinkatFlags::NoRemoveDir).map_err(Into::into),
        };
        removed.map_err(|e| self.io("remove earlier entry", path, e))?;
        Ok(Some(old))
    }

    fn skip(&mut self, raw: &Path, why: &str) -> Result<(), Error> {
        self.report.skipped += 1;
        self.report.notes.push(format!("{}: {why}", raw.display()));
        Ok(())
    }

    /// Sets the directory mtimes recorded on the way, now that no more
    /// children will be created in them.
    fn finish(mut self) -> Result<UnpackReport, Error> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW;
        for (path, mtime) in std::mem::take(&mut self.dir_times) {
            let set =
                open_in_root(&self.root, &path, flags).and_then(|fd| futimens(&fd, &mtime, &mtime));
            if let Err(e) = set {
                // A later entry replaced the directory: nothing to date.
                let note = format!("{}: directory mtime not set: {e}", path.display());
                self.report.notes.push(note);
            }
        }
        if self.absolute > 0 {
            self.report.notes.push(format!(
                "{} entries had absolute paths; they were unpacked relative to the layer root",
                self.absolute
            ));
        }
        Ok(self.report)
    }

    fn error(&self, step: &'static str, path: &Path, errno: Errno) -> Error {
        self.io(step, path, errno.into())
    }

    fn io(&self, step: &'static str, path: &Path, err: io::Error) -> Error {
        Error::io(step, self.dest.join(path), err)
    }
}

/// Cleans an entry path lexically, as Docker and containerd do: drops `/`
/// and `.`, applies `..`, and refuses a `..` that climbs above the root.
/// So `/etc/x` becomes `etc/x`, and `a/../b` becomes `b`.
fn clean(raw: &Path) -> Result<PathBuf, Error> {
    let mut path = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::Normal(name) => path.push(name),
            Component::ParentDir if path.pop() => {}
            Component::ParentDir => return Err(escape_error(raw, "it")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(path)
}

fn escape_error(raw: &Path, what: &str) -> Error {
    Error::Other(format!(
        "layer entry {raw:?}: {what} climbs out of the layer root with `..`; \
         refusing to unpack this layer (it is malformed or hostile)"
    ))
}

/// A cleaned path's parent and final name, or `None` for the root.
fn split(path: &Path) -> Option<(&Path, &OsStr)> {
    Some((path.parent()?, path.file_name()?))
}

/// `split` for paths known not to be the root (the root is dispatched first).
fn split_child(path: &Path) -> (&Path, &OsStr) {
    split(path).unwrap_or((Path::new(""), OsStr::new(".")))
}

// ANCHOR: open_in_root
/// Opens `path` inside the layer the way a process chrooted into it would:
/// the kernel resolves `..` and every symlink, absolute ones too, relative
/// to `root` and never above it. So with `a -> /` in the layer, `a/etc`
/// is the layer's own `etc`. No magic links either (`/proc/self/root`...).
pub fn open_in_root(root: &OwnedFd, path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    // EAGAIN means a rename somewhere raced the lookup: the kernel asks us
    // to try again rather than risk a wrong answer.
    let mut result = openat2(root, path, how);
    for _ in 0..16 {
        if !matches!(result, Err(Errno::EAGAIN)) {
            break;
        }
        result = openat2(root, path, how);
    }
    result
}
// ANCHOR_END: open_in_root

/// Opens the final name under `parent`, refusing to follow it if it is a
/// symlink (ELOOP).
fn open_child(parent: &OwnedFd, name: &OsStr, flags: OFlag) -> nix::Result<OwnedFd> {
    let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    openat(parent, name, flags, Mode::empty())
}

/// `mkdir` with mode 0755 whatever the umask (a restrictive umask would
/// make the layer unreadable to the container's non-root users). An
/// existing name is left alone.
fn create_dir(parent: &OwnedFd, name: &OsStr) -> nix::Result<()> {
    match mkdirat(parent, name, Mode::S_IRWXU) {
        Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(e),
        Ok(()) => {
            let fd = open_child(parent, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
            fchmod(&fd, Mode::from_bits_truncate(0o755))
        }
    }
}

/// Removes the directory `name` and all below it, never following symlinks.
/// `/proc/self/fd/N` names the parent we already hold, so the path cannot
/// be re-resolved through a symlink; `remove_dir_all` itself does not
/// follow symlinks below it.
fn remove_tree(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let path = Path::new("/proc/self/fd")
        .join(parent.as_raw_fd().to_string())
        .join(name);
    std::fs::remove_dir_all(path)
}

fn set_xattr(fd: BorrowedFd<'_>, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated, `value` points to `value.len()`
    // readable bytes, and `fd` is open for the duration of the call.
    let rc = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn is_dir(stat: &FileStat) -> bool {
    stat.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits()
}

fn is_whiteout(stat: &FileStat) -> bool {
    stat.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFCHR.bits() && stat.st_rdev == 0
}

/// The entry's type. Pre-POSIX tars mark directories only by a trailing
/// `/` on a "regular" (`\0`) entry; Go's `archive/tar` reads those as
/// directories, and so do we.
fn entry_kind(header: &tar::Header, raw: &Path) -> tar::EntryType {
    let legacy_regular = header.as_old().linkflag[0] == 0;
    if legacy_regular && raw.as_os_str().as_bytes().ends_with(b"/") {
        tar::EntryType::Directory
    } else {
        header.entry_type()
    }
}

/// A numeric header field; an empty one (all NULs or spaces, as some
/// writers leave uid or mtime) reads as 0, like Go's `archive/tar` that
/// Docker and containerd use.
fn numeric(value: io::Result<u64>, field: &[u8]) -> io::Result<u64> {
    if field.iter().all(|&b| b == 0 || b == b' ') {
        Ok(0)
    } else {
        value
    }
}

fn id(value: u64, raw: &Path) -> Result<u32, Error> {
    u32::try_from(value).map_err(|_| {
        Error::Other(format!(
            "layer entry {raw:?}: owner id {value} is out of range"
        ))
    })
}

/// PAX times are decimal seconds with an optional fraction: `1700000000.5`.
fn parse_pax_time(value: &[u8]) -> Option<TimeSpec> {
    let text = std::str::from_utf8(value).ok()?;
    let (seconds, fraction) = text.split_once('.').unwrap_or((text, ""));
    let seconds: i64 = seconds.parse().ok()?;
    let digits: String = fraction.chars().take(9).collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) || seconds < 0 {
        return None; // unusual: fall back to the header's whole seconds
    }
    let nanos: i64 = format!("{digits:0<9}").parse().ok()?;
    Some(TimeSpec::new(seconds, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    use tar::{Builder, EntryType, Header};

    /// A tar built in memory, entry by entry, including hostile ones.
    struct Tar(Builder<Vec<u8>>);

    impl Tar {
        fn new() -> Tar {
            Tar(Builder::new(Vec::new()))
        }

        /// Appends an entry with `name` written raw into the header, so
        /// names `set_path` refuses (`..`, absolute) can be tested too.
        fn entry(&mut self, name: &str, kind: EntryType, link: &str, data: &[u8]) -> &mut Tar {
            let mut header = header(name, kind, data.len());
            header.set_link_name_literal(link).unwrap();
            header.set_cksum();
            self.0.append(&header, data).unwrap();
            self
        }

        fn dir(&mut self, name: &str) -> &mut Tar {
            self.entry(name, EntryType::Directory, "", b"")
        }

        fn file(&mut self, name: &str, data: &[u8]) -> &mut Tar {
            self.entry(name, EntryType::Regular, "", data)
        }

        fn symlink(&mut self, name: &str, target: &str) -> &mut Tar {
            self.entry(name, EntryType::Symlink, target, b"")
        }

        fn hard_link(&mut self, name: &str, target: &str) -> &mut Tar {
            self.entry(name, EntryType::Link, target, b"")
        }

        /// A PAX record set for the next entry.
        fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Tar {
            let mut data = Vec::new();
            for (key, value) in records {
                let body = [b" ", key.as_bytes(), b"=", value, b"\n"].concat();
                // The length counts its own digits: find the fixed point.
                let mut len = body.len() + 1;
                while format!("{len}").len() + body.len() != len {
                    len += 1;
                }
                data.extend(format!("{len}").as_bytes());
                data.extend(body);
            }
            self.entry("pax", EntryType::XHeader, "", &data)
        }

        fn bytes(&mut self) -> Vec<u8> {
            let builder = std::mem::replace(&mut self.0, Builder::new(Vec::new()));
            builder.into_inner().unwrap()
        }
    }

    fn header(name: &str, kind: EntryType, size: usize) -> Header {
        let mut header = Header::new_gnu();
        let slot = &mut header.as_old_mut().name;
        slot.fill(0);
        slot[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(kind);
        header.set_size(size as u64);
        header.set_mode(if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_600_000_000);
        header
    }

    /// A tempdir with `dest` inside it: after a hostile unpack, the tempdir
    /// must still hold `dest` alone.
    struct Sandbox {
        outer: tempfile::TempDir,
        dest: PathBuf,
    }

    impl Sandbox {
        fn new() -> Sandbox {
            let outer = tempfile::tempdir().unwrap();
            let dest = outer.path().join("dest");
            fs::create_dir(&dest).unwrap();
            Sandbox { outer, dest }
        }

        fn unpack(&self, tar: &mut Tar) -> Result<UnpackReport, Error> {
            let budget = LayerBudget::new(1 << 30);
            unpack_layer(&tar.bytes()[..], &self.dest, &budget)
        }

        fn assert_nothing_outside(&self) {
            let names: Vec<_> = fs::read_dir(self.outer.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, ["dest"], "something was created beside dest");
        }
    }

    /// Content and mtime of a host file, to prove an attack left it alone.
    fn fingerprint(path: &str) -> (Vec<u8>, i64, i64) {
        let meta = fs::symlink_metadata(path).unwrap();
        (fs::read(path).unwrap(), meta.mtime(), meta.mtime_nsec())
    }

    fn xattr(path: &Path, name: &CStr) -> Option<Vec<u8>> {
        let path = CString::new(path.as_os_str().as_bytes()).unwrap();
        let mut buf = [0u8; 256];
        // SAFETY: both strings are NUL-terminated; buf is writable for its length.
        let n = unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        usize::try_from(n).ok().map(|n| buf[..n].to_vec())
    }

    #[test]
    fn ordinary_entries_land_with_their_metadata() {
        let sandbox = Sandbox::new();
        let mut tar = Tar::new();
        tar.dir("d/").file("d/f", b"hello").symlink("d/l", "f");
        tar.hard_link("d/h", "d/f").file("deep/er/x", b"x");
        tar.entry("p", EntryType::Fifo, "", b"");
        // An owner, setuid and an odd mtime, and a dir with odd mode.
        let mut special = header("d/suid", EntryType::Regular, 2);
        special.set_mode(0o4750);
        special.set_uid(1234);
        special.set_gid(5678);
        special.set_mtime(1_234_567_890);
        special.set_cksum();
        tar.0.append(&special, &b"#!"[..]).unwrap();
        let mut sticky = header("d/tmp/", EntryType::Directory, 0);
        sticky.set_mode(0o1777);
        sticky.set_uid(42);
        sticky.set_mtime(1_111_111_111);
        sticky.set_cksum();
        tar.0.append(&sticky, &b""[..]).unwrap();
        tar.file("d/tmp/child", b"c");

        let report = sandbox.unpack(&mut tar).unwrap();
        assert_eq!((report.written, report.skipped), (9, 0), "{report:?}");

        let dest = &sandbox.dest;
        assert_eq!(fs::read(dest.join("d/f")).unwrap(), b"hello");
        assert_eq!(fs::read_link(dest.join("d/l")).unwrap(), Path::new("f"));
        let f = fs::metadata(dest.join("d/f")).unwrap();
        let h = fs::metadata(dest.join("d/h")).unwrap();
        assert_eq!((f.ino(), f.nlink()), (h.ino(), 2));
        assert_eq!(f.mode() & 0o7777, 0o644);
        assert_eq!(f.mtime(), 1_600_000_000);
        assert!(fs::metadata(dest.join("p")).unwrap().file_type().is_fifo());
        let created = fs::metadata(dest.join("deep/er")).unwrap();
        assert_eq!(created.mode() & 0o7777, 0o755, "implicit dirs are 0755");

        let suid = fs::metadata(dest.join("d/suid")).unwrap();
        assert_eq!(suid.mode() & 0o7777, 0o4750);
        assert_eq!((suid.uid(), suid.gid()), (1234, 5678));
        assert_eq!(suid.mtime(), 1_234_567_890);

        // The directory's mtime survives the child written after it.
        let tmp = fs::metadata(dest.join("d/tmp")).unwrap();
        assert_eq!(tmp.mode() & 0o7777, 0o1777);
        assert_eq!((tmp.uid(), tmp.mtime()), (42, 1_111_111_111));
        sandbox.assert_nothing_outside();
    }

    #[test]
    fn later_entries_replace_earlier_ones() {
        let sandbox = Sandbox::new();
        let mut tar = Tar::new();
        tar.file("x", b"old")
            .symlink("y", "/etc/passwd")
            .dir("z/")
            .file("z/in", b"");
        tar.file("x", b"new")
            .file("y", b"file")
            .file("z", b"no longer a dir");
        tar.symlink("w", "x").dir("w/");
        sandbox.unpack(&mut tar).unwrap();
        let dest = &sandbox.dest;
        assert_eq!(fs::read(dest.join("x")).unwrap(), b"new");
        assert_eq!(fs::read(dest.join("y")).unwrap(), b"file");
        assert_eq!(fs::read(dest.join("z")).unwrap(), b"no longer a dir");
        assert!(fs::symlink_metadata(dest.join("w")).unwrap().is_dir());
    }

    #[test]
    fn pax_xattrs_and_times_are_applied_but_not_overlay_ones() {
        let sandbox = Sandbox::new();
        let mut tar = Tar::new();
        tar.pax(&[
            ("SCHILY.xattr.user.berth", b"yes"),
            ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
            ("mtime", b"1700000000.25"),
        ]);
        tar.file("f", b"x");
        let report = sandbox.unpack(&mut tar).unwrap();
        let f = sandbox.dest.join("f");
        assert_eq!(xattr(&f, c"user.berth").as_deref(), Some(&b"yes"[..]));
        assert_eq!(xattr(&f, OVERLAY_OPAQUE), None);
        assert!(report.notes.iter().any(|n| n.contains("trusted.overlay")));
        let meta = fs::metadata(&f).unwrap();
        assert_eq!(
            (meta.mtime(), meta.mtime_nsec()),
            (1_700_000_000, 250_000_000)
        );
    }

    #[test]
    fn dotdot_entries_are_rejected() {
        for name in ["../evil", "a/../../evil", "./../evil", "/../../evil"] {
            let sandbox = Sandbox::new();
            let err = sandbox
                .unpack(Tar::new().dir("a/").file(name, b"pwned"))
                .unwrap_err();
            assert!(err.to_string().contains("evil"), "{name}: {err}");
            sandbox.assert_nothing_outside();
        }
    }

    #[test]
    fn inner_dotdot_that_stays_inside_is_cleaned() {
        let sandbox = Sandbox::new();
        sandbox.unpack(Tar::new().file("a/../b", b"ok")).unwrap();
        assert_eq!(fs::read(sandbox.dest.join("b")).unwrap(), b"ok");
        sandbox.assert_nothing_outside();
    }

    #[test]
    fn absolute_paths_land_inside() {
        let sandbox = Sandbox::new();
        let report = sandbox.unpack(Tar::new().file("/abs/file", b"in")).unwrap();
        assert_eq!(fs::read(sandbox.dest.join("abs/file")).unwrap(), b"in");
        assert!(report.notes.iter().any(|n| n.contains("absolute")));
        assert!(!Path::new("/abs/file").exists());
        sandbox.assert_nothing_outside();
    }

    #[test]
    fn symlinked_parents_resolve_inside_the_root() {
        let owned = format!("berth-unpack-test-{}", std::process::id());
        let sandbox = Sandbox::new();
        let mut tar = Tar::new();
        tar.symlink("escape", "/")
            .file(&format!("escape/tmp/{owned}"), b"x");
        tar.symlink("up", "../../../../..")
            .file(&format!("up/{owned}"), b"y");
        let result = sandbox.unpack(&mut tar);
        assert!(
            !Path::new("/tmp").join(&owned).exists(),
            "host /tmp was written"
        );
        assert!(!Path::new("/").join(&owned).exists(), "host / was written");
        sandbox.assert_nothing_outside();
        result.unwrap();
        assert_eq!(
            fs::read(sandbox.dest.join("tmp").join(&owned)).unwrap(),
            b"x"
        );
        assert_eq!(fs::read(sandbox.dest.join(&owned)).unwrap(), b"y");
    }

    #[test]
    fn a_dangling_symlinked_parent_fails_cleanly() {
        // `/proc/self/root` does not exist in the layer (and magic links
        // are refused anyway): the entry cannot be placed, so we stop.
        let sandbox = Sandbox::new();
        let mut tar = Tar::new();
        tar.symlink("proc", "/proc/self/root").file("proc/x", b"z");
        let err = sandbox.unpack(&mut tar).unwrap_err();
        assert!(err.to_string().contains("proc"), "{err}");
        assert!(!Path::new("/x").exists());
        sandbox.assert_nothing_outside();
    }

    #[test]
    fn an_entry_through_a_symlink_that_leaves_the_layer_names_it() {
        for (link, target) in [("lib", "/etc"), ("up", "../../../../etc"), ("f", "file")] {
            let sandbox = Sandbox::new();
            let mut tar = Tar::new();
            tar.file("file", b"").symlink(link, target);
            tar.file(&format!("{link}/passwd"), b"pwned");
            let err = sandbox.unpack(&mut tar).unwrap_err().to_string();
            let expected = format!(
                "layer entry \"{link}/passwd\" would leave the layer through the symlink \
                 \"{link}\" -> \"{target}\""
            );
            assert!(err.contains(&expected), "{err}");
            sandbox.assert_nothing_outside();
        }
    }

    #[test]
    fn symlinked_parents_into_the_layer_keep_working() {
        // Real images: `lib -> usr/lib`, then entries below `lib/`.
        let sandbox = Sandbox::new();
        let mut tar = Tar::new();
        tar.dir("usr/").dir("usr/lib/").symlink("lib", "usr/lib");
        tar.file("lib/libc.so", b"elf").symlink("lib64", "/usr/lib");
        tar.file("lib64/ld.so", b"ld");
        sandbox.unpack(&mut tar).unwrap();
        assert_eq!(
            fs::read(sandbox.dest.join("usr/lib/libc.so")).unwrap(),
            b"elf"
        );
        assert_eq!(fs::read(sandbox.dest.join("usr/lib/ld.so")).unwrap(), b"ld");
    }

    #[test]
    fn a_sparse_entry_cannot_write_past_the_budget() {
        // A GNU sparse entry: 512 bytes in the tar, 1 GiB once written (the
        // tar crate fills the hole with zeros).
        const REAL_SIZE: u64 = 1 << 30;
        let mut header = header("sparse", EntryType::GNUSparse, 512);
        let octal = |field: &mut [u8], value: u64| {
            let text = format!("{value:0width$o}\0", width = field.len() - 1);
            field.copy_from_slice(text.as_bytes());
        };
        let gnu = header.as_gnu_mut().unwrap();
        octal(&mut gnu.realsize, REAL_SIZE);
        octal(&mut gnu.sparse[0].offset, REAL_SIZE - 512);
        octal(&mut gnu.sparse[0].numbytes, 512);
        header.set_cksum();
        let mut tar = Tar::new();
        tar.0.append(&header, &[7u8; 512][..]).unwrap();
        let sandbox = Sandbox::new();
        let budget = LayerBudget::new(1 << 20);
        let err = unpack_layer(&tar.bytes()[..], &sandbox.dest, &budget).unwrap_err();
        assert!(budget.exceeded(), "{err}");
        assert!(
            err.to_string().contains("more than the limit of 1 MiB"),
            "{err}"
        );
        let written = fs::metadata(sandbox.dest.join("sparse")).unwrap().len();
        assert!(written <= (1 << 20) + 1, "{written} bytes written");
        sandbox.assert_nothing_outside();
    }

    #[test]
    fn a_symlink_as_final_name_is_replaced_not_followed() {
        let sandbox = Sandbox::new();
        let before = fingerprint("/etc/passwd");
        sandbox
            .unpack(Tar::new().symlink("p", "/etc/passwd").file("p", b"pwned"))
            .unwrap();
        assert_eq!(fingerprint("/etc/passwd"), before);
        assert_eq!(fs::read(sandbox.dest.join("p")).unwrap(), b"pwned");
        sandbox.assert_nothing_outside();
    }

    #[test]
    fn hard_links_out_of_the_layer_are_refused() {
        let before = fingerprint("/etc/passwd");
        for target in ["/etc/passwd", "../../etc/passwd", "etc/passwd"] {
            let sandbox = Sandbox::new();
            let mut tar = Tar::new();
            tar.dir("etc/")
                .hard_link("etc/x", target)
                .file("etc/x", b"pwned");
            let err = sandbox.unpack(&mut tar).unwrap_err();
            assert!(err.to_string().contains("etc/x"), "{target}: {err}");
            assert!(!sandbox.dest.join("etc/x").exists());
            sandbox.assert_nothing_outside();
        }
        // Through a symlinked parent, too.
        let sandbox = Sandbox::new();
        let mut tar = Tar::new();
        tar.symlink("root", "/").hard_link("x", "root/etc/passwd");
        assert!(sandbox.unpack(&mut tar).is_err());
        sandbox.assert_nothing_outside();
        assert_eq!(fingerprint("/etc/passwd"), before);
    }

    #[test]
    fn an_absolute_hard_link_names_the_layers_own_file() {
        let sandbox = Sandbox::new();
        let before = fingerprint("/etc/passwd");
        let mut tar = Tar::new();
        tar.file("etc/passwd", b"layer's")
            .hard_link("x", "/etc/passwd");
        sandbox.unpack(&mut tar).unwrap();
        let x = fs::metadata(sandbox.dest.join("x")).unwrap();
        let own = fs::metadata(sandbox.dest.join("etc/passwd")).unwrap();
        assert_eq!(x.ino(), own.ino());
        assert_eq!(fingerprint("/etc/passwd"), before);
        sandbox.assert_nothing_outside();
    }

    #[test]
    fn hostile_whiteouts_are_rejected() {
        for name in ["../.wh.x", "a/../../.wh.x", "d/.wh..", "d/.wh..."] {
            let sandbox = Sandbox::new();
            let err = sandbox.unpack(Tar::new().file(name, b"")).unwrap_err();
            assert!(err.to_string().contains(".wh."), "{name}: {err}");
            sandbox.assert_nothing_outside();
        }
    }

    #[test]
    fn device_nodes_are_skipped() {
        let sandbox = Sandbox::new();
        let mut dev = header("dev/null", EntryType::Char, 0);
        dev.set_device_major(1).unwrap();
        dev.set_device_minor(3).unwrap();
        dev.set_cksum();
        let mut tar = Tar::new();
        tar.0.append(&dev, &b""[..]).unwrap();
        let report = sandbox.unpack(&mut tar).unwrap();
        assert_eq!(report.skipped, 1);
        assert!(!sandbox.dest.join("dev/null").exists());
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        let sandbox = Sandbox::new();
        let mut tar = Tar::new();
        tar.file("etc/.wh.gone", b"").file("opq/.wh..wh..opq", b"");
        tar.file("opq/kept", b"").file(".wh.top", b"");
        // This layer's own `mine` stays; its own dir `ours` turns opaque.
        tar.file("mine", b"").file(".wh.mine", b"");
        tar.dir("ours/").file(".wh.ours", b"");
        // Deleted below, then made again as a directory here: opaque.
        tar.file(".wh.again", b"").dir("again/");
        let report = sandbox.unpack(&mut tar).unwrap();
        let dest = &sandbox.dest;
        for gone in ["etc/gone", "top"] {
            let meta = fs::symlink_metadata(dest.join(gone)).unwrap();
            assert!(meta.file_type().is_char_device(), "{gone}");
            assert_eq!(meta.rdev(), 0);
        }
        assert!(!dest.join("etc/.wh.gone").exists());
        for opaque in ["opq", "ours", "again"] {
            assert_eq!(
                xattr(&dest.join(opaque), OVERLAY_OPAQUE).as_deref(),
                Some(&b"y"[..]),
                "{opaque}"
            );
        }
        assert!(dest.join("opq/kept").exists());
        assert!(!dest.join("opq/.wh..wh..opq").exists());
        assert!(fs::symlink_metadata(dest.join("mine")).unwrap().is_file());
        assert_eq!(report.skipped, 1, "{report:?}");
    }

    #[test]
    fn root_entries_as_umoci_writes_them_are_accepted() {
        for root in ["./", ".", "/"] {
            let sandbox = Sandbox::new();
            let mut top = header(root, EntryType::Directory, 0);
            top.set_mode(0o750);
            top.set_mtime(1_000_000_000);
            top.set_cksum();
            let mut tar = Tar::new();
            tar.0.append(&top, &b""[..]).unwrap();
            tar.file("./bin/sh", b"sh");
            sandbox.unpack(&mut tar).unwrap();
            let meta = fs::metadata(&sandbox.dest).unwrap();
            assert_eq!(meta.permissions().mode() & 0o7777, 0o750, "{root}");
            assert_eq!(meta.mtime(), 1_000_000_000, "{root}");
            assert!(sandbox.dest.join("bin/sh").exists());
        }
    }

    #[test]
    fn legacy_directories_are_directories() {
        let sandbox = Sandbox::new();
        let mut old = header("old/", EntryType::Regular, 0);
        old.as_old_mut().linkflag = [0];
        old.set_cksum();
        let mut tar = Tar::new();
        tar.0.append(&old, &b""[..]).unwrap();
        tar.file("old/f", b"f");
        sandbox.unpack(&mut tar).unwrap();
        assert!(sandbox.dest.join("old/f").is_file());
    }

    #[test]
    fn pax_time_parsing() {
        let t = parse_pax_time(b"12.5").unwrap();
        assert_eq!((t.tv_sec(), t.tv_nsec()), (12, 500_000_000));
        assert!(parse_pax_time(b"x").is_none());
    }
}
