//! Copy-up: a new, empty volume mounted where the image has files gets a
//! copy of them first, as with Docker (an image's `/var/lib/mysql`, say,
//! or its default config), unless the mount says `nocopy`.
//!
//! The image is untrusted, and so, while other containers use it, is the
//! volume. So nothing here follows a symlink or looks up a path of more
//! than one name: the image's directory is found with `openat2` and
//! `RESOLVE_NO_SYMLINKS` below its own read-only mount (a symlink on the way,
//! `/data -> /etc`, means there is nothing to copy, never the host's
//! `/etc`), and each file is read and written by name from the descriptors
//! of the directories it is in, the new ones made with `O_EXCL` and
//! `O_NOFOLLOW`. Directories, regular files (with their hard links) and
//! symlinks are copied, with owners, modes and times; an image brings no
//! devices (stage 04 refuses them), and FIFOs and sockets are left out.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2, readlinkat};
use nix::sys::stat::{FileStat, Mode, UtimensatFlags, fchmod, fstat, fstatat, futimens, mkdirat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, fchown, fchownat, linkat, symlinkat};
use stage01_chroot::Error;
use stage02_namespaces::IdMaps;

/// Directory entries, looked up by name in a directory's descriptor.
const NO_FOLLOW: OFlag = OFlag::O_NOFOLLOW.union(OFlag::O_CLOEXEC);

// ANCHOR: copy_up
/// Copy what the image has at `target` (absolute) into the empty
/// directory `data`. `image` is the image's layers as one read-only mount
/// (stage 02's `read_only_layers`). With a user namespace (`maps`), owners
/// move into the container's range, as its root sees the image. Whether
/// there was a directory to copy.
pub fn copy_up(
    image: &OwnedFd,
    target: &Path,
    data: &Path,
    maps: Option<IdMaps>,
) -> Result<bool, Error> {
    let inside = target.strip_prefix("/").unwrap_or(target);
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(
            ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
    let source = match openat2(image, inside, how) {
        Ok(fd) => fd,
        // Not there, not a directory, or only through a symlink: nothing.
        Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP | Errno::EXDEV) => return Ok(false),
        Err(e) => return Err(fail("open in the image", target, e)),
    };
    let dest = openat(
        nix::fcntl::AT_FDCWD,
        data,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | NO_FOLLOW,
        Mode::empty(),
    )
    .map_err(|e| fail("open", data, e))?;
    if !is_empty(&dest).map_err(|e| fail("read", data, e))? {
        return Ok(false); // someone's data is there already
    }
    let mut copy = Copy {
        maps,
        links: HashMap::new(),
        target,
    };
    let root = fstat(&source).map_err(|e| fail("stat", target, e))?;
    let dest = Rc::new(dest);
    copy.tree(&source, &dest, Path::new(""))?;
    // The volume's own directory takes the image directory's owner and
    // mode too (Docker's copyOwnership): `/var/lib/db` owned by `db`.
    copy.finish(&dest, &root, Path::new(""))?;
    Ok(true)
}
// ANCHOR_END: copy_up

/// One copy under way.
struct Copy<'a> {
    maps: Option<IdMaps>,
    /// Files with more than one name, by (device, inode): where the first
    /// name was copied to, to link the others to it.
    links: HashMap<(u64, u64), (Rc<OwnedFd>, OsString)>,
    /// For messages.
    target: &'a Path,
}

impl Copy<'_> {
    /// Everything in `source` into `dest`; `at` is where, below the target.
    fn tree(&mut self, source: &OwnedFd, dest: &Rc<OwnedFd>, at: &Path) -> Result<(), Error> {
        let mut names = Vec::new();
        let listing = source
            .try_clone()
            .map_err(|e| Error::io("read directory", self.target.join(at), e))?;
        let mut dir = Dir::from_fd(listing).map_err(|e| self.fail("read", at, e))?;
        for entry in dir.iter() {
            let entry = entry.map_err(|e| self.fail("read", at, e))?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name != "." && name != ".." {
                names.push(name.to_os_string());
            }
        }
        names.sort(); // the same copy every time
        for name in names {
            let path = at.join(&name);
            let stat = fstatat(source, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(|e| self.fail("stat", &path, e))?;
            match stat.st_mode & libc::S_IFMT {
                libc::S_IFDIR => {
                    mkdirat(&**dest, name.as_os_str(), Mode::S_IRWXU)
                        .map_err(|e| self.fail("create directory", &path, e))?;
                    let from = openat(
                        source,
                        name.as_os_str(),
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | NO_FOLLOW,
                        Mode::empty(),
                    )
                    .map_err(|e| self.fail("open", &path, e))?;
                    let to = Rc::new(
                        openat(
                            &**dest,
                            name.as_os_str(),
                            OFlag::O_RDONLY | OFlag::O_DIRECTORY | NO_FOLLOW,
                            Mode::empty(),
                        )
                        .map_err(|e| self.fail("open", &path, e))?,
                    );
                    self.tree(&from, &to, &path)?;
                    self.finish(&to, &stat, &path)?;
                }
                libc::S_IFREG => self.file(source, dest, &name, &stat, &path)?,
                libc::S_IFLNK => {
                    let points_to = readlinkat(source, name.as_os_str())
                        .map_err(|e| self.fail("read link", &path, e))?;
                    symlinkat(points_to.as_os_str(), &**dest, name.as_os_str())
                        .map_err(|e| self.fail("create symlink", &path, e))?;
                    let (uid, gid) = self.owner(&stat);
                    fchownat(
                        &**dest,
                        name.as_os_str(),
                        uid,
                        gid,
                        AtFlags::AT_SYMLINK_NOFOLLOW,
                    )
                    .map_err(|e| self.fail("chown", &path, e))?;
                    let (atime, mtime) = times(&stat);
                    nix::sys::stat::utimensat(
                        &**dest,
                        name.as_os_str(),
                        &atime,
                        &mtime,
                        UtimensatFlags::NoFollowSymlink,
                    )
                    .map_err(|e| self.fail("set the times of", &path, e))?;
                }
                _ => {} // FIFOs and sockets: nothing to keep
            }
        }
        Ok(())
    }

    /// A regular file: its bytes, or a link to an earlier name of it.
    fn file(
        &mut self,
        source: &OwnedFd,
        dest: &Rc<OwnedFd>,
        name: &OsStr,
        stat: &FileStat,
        path: &Path,
    ) -> Result<(), Error> {
        let key = (stat.st_dev, stat.st_ino);
        if stat.st_nlink > 1
            && let Some((dir, first)) = self.links.get(&key)
        {
            // One name in one directory each: linkat follows nothing here.
            return linkat(&**dir, first.as_os_str(), &**dest, name, AtFlags::empty())
                .map_err(|e| self.fail("link", path, e));
        }
        let from = openat(source, name, OFlag::O_RDONLY | NO_FOLLOW, Mode::empty())
            .map_err(|e| self.fail("open", path, e))?;
        let to = openat(
            &**dest,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | NO_FOLLOW,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )
        .map_err(|e| self.fail("create", path, e))?;
        let (mut reader, mut writer) = (File::from(from), File::from(to));
        std::io::copy(&mut reader, &mut writer)
            .map_err(|e| Error::io("copy", self.target.join(path), e))?;
        let to: OwnedFd = writer.into();
        self.finish(&to, stat, path)?;
        if stat.st_nlink > 1 {
            self.links.insert(key, (dest.clone(), name.to_os_string()));
        }
        Ok(())
    }

    /// Owner, then mode (a chown clears the setuid bit), then times.
    fn finish(&self, fd: &impl AsFd, stat: &FileStat, path: &Path) -> Result<(), Error> {
        let (uid, gid) = self.owner(stat);
        fchown(fd, uid, gid).map_err(|e| self.fail("chown", path, e))?;
        fchmod(fd, Mode::from_bits_truncate(stat.st_mode & 0o7777))
            .map_err(|e| self.fail("chmod", path, e))?;
        let (atime, mtime) = times(stat);
        futimens(fd, &atime, &mtime).map_err(|e| self.fail("set the times of", path, e))
    }

    /// The owner the copy gets: the image's, moved into the container's
    /// range with a user namespace.
    fn owner(&self, stat: &FileStat) -> (Option<Uid>, Option<Gid>) {
        let (uid, gid) = match self.maps {
            Some(maps) => (maps.uid.to_host(stat.st_uid), maps.gid.to_host(stat.st_gid)),
            None => (stat.st_uid, stat.st_gid),
        };
        (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
    }

    fn fail(&self, what: &str, path: &Path, errno: Errno) -> Error {
        fail(what, &self.target.join(path), errno)
    }
}

/// The access and modification times of `stat`.
fn times(stat: &FileStat) -> (TimeSpec, TimeSpec) {
    (
        TimeSpec::new(stat.st_atime, stat.st_atime_nsec),
        TimeSpec::new(stat.st_mtime, stat.st_mtime_nsec),
    )
}

/// Whether the directory has no entries but `.` and `..`.
pub fn is_empty(dir: &OwnedFd) -> nix::Result<bool> {
    let listing = dir
        .try_clone()
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EBADF)))?;
    let mut dir = Dir::from_fd(listing)?;
    for entry in dir.iter() {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            return Ok(false);
        }
    }
    Ok(true)
}

fn fail(what: &str, path: &Path, errno: Errno) -> Error {
    Error::Other(format!(
        "copy what the image has into the volume: {what} {}: {errno}",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn the_image_directory_is_copied_without_following_its_symlinks() {
        let image = tempfile::tempdir().unwrap();
        let seed = image.path().join("seed");
        std::fs::create_dir_all(seed.join("sub")).unwrap();
        std::fs::write(seed.join("sub/file"), "data").unwrap();
        std::fs::set_permissions(
            seed.join("sub/file"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::fs::hard_link(seed.join("sub/file"), seed.join("again")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", seed.join("passwd")).unwrap();
        std::os::unix::fs::symlink("/etc", image.path().join("evil")).unwrap();
        let view = openat(
            nix::fcntl::AT_FDCWD,
            image.path(),
            OFlag::O_PATH | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .unwrap();

        let volume = tempfile::tempdir().unwrap();
        assert!(copy_up(&view, Path::new("/seed"), volume.path(), None).unwrap());
        let copied = volume.path();
        assert_eq!(
            std::fs::read_to_string(copied.join("sub/file")).unwrap(),
            "data"
        );
        let meta = std::fs::metadata(copied.join("sub/file")).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o640);
        assert_eq!(meta.nlink(), 2, "hard links stay linked");
        assert_eq!(
            std::fs::read_link(copied.join("passwd")).unwrap(),
            Path::new("/etc/passwd"),
            "a symlink is copied as a symlink"
        );
        // Not empty any more: a second copy-up leaves it alone.
        assert!(!copy_up(&view, Path::new("/seed"), volume.path(), None).unwrap());

        // Through a symlink of the image, or where it has nothing: no copy.
        let other = tempfile::tempdir().unwrap();
        assert!(!copy_up(&view, Path::new("/evil"), other.path(), None).unwrap());
        assert!(!copy_up(&view, Path::new("/evil/ssh"), other.path(), None).unwrap());
        assert!(!copy_up(&view, Path::new("/nothing"), other.path(), None).unwrap());
        assert_eq!(std::fs::read_dir(other.path()).unwrap().count(), 0);
    }
}
