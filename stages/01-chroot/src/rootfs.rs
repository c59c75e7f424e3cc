//! A tiny root filesystem to run containers in: busybox and little else.
//!
//! Debian's `busybox-static` is one statically linked executable that acts as
//! `sh`, `ls`, `ps`, `ip`, ... depending on the name it is called by. Copy it
//! into a directory, add a link per command, a passwd and group file and the
//! empty directories the kernel's file systems get mounted on, and that
//! directory is enough of a Linux userland for every stage of this workshop.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

/// Where Debian's busybox-static installs busybox.
pub const DEFAULT_BUSYBOX: &str = "/bin/busybox";

/// The chroot escape demo (see `escape/chroot-escape.rs`), built statically
/// by `build.rs` so that it runs inside a rootfs without a C library.
pub const CHROOT_ESCAPE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/chroot-escape"));

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nnobody:x:65534:\n";

/// Empty directories and their modes: mount points, a sticky /tmp, root's home.
const DIRECTORIES: &[(&str, u32)] = &[
    ("bin", 0o755),
    ("sbin", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("etc", 0o755),
    ("root", 0o700),
    ("proc", 0o555),
    ("sys", 0o555),
    ("dev", 0o755),
    ("tmp", 0o1777),
];

// ANCHOR: make_rootfs
/// Make a busybox root filesystem at `target`, which must not exist yet or be
/// an empty directory. It is built beside `target` and renamed into place at
/// the end, so a failure never leaves a half-made rootfs behind.
pub fn make_busybox_rootfs(target: &Path, busybox: &Path) -> Result<(), Error> {
    make_rootfs(target, busybox, false)
}

/// [`make_busybox_rootfs`], and with `resolver` also [`add_name_service`].
pub fn make_rootfs(target: &Path, busybox: &Path, resolver: bool) -> Result<(), Error> {
    check_busybox(busybox)?;
    check_target(target)?;

    let staging = staging_dir(target)?;
    let built = fill_rootfs(&staging, busybox)
        .and_then(|()| {
            if resolver {
                add_name_service(&staging)
            } else {
                Ok(())
            }
        })
        .and_then(|()| fs::rename(&staging, target).map_err(|e| Error::io("rename", target, e)));
    if built.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    built
}

fn fill_rootfs(root: &Path, busybox: &Path) -> Result<(), Error> {
    for (dir, mode) in DIRECTORIES {
        make_dir(&root.join(dir), *mode)?;
    }
    install_file(&root.join("bin/busybox"), &read(busybox)?, 0o755)?;
    for applet in busybox_applets(busybox)? {
        let link = root.join(&applet);
        if !link.exists() {
            symlink("/bin/busybox", &link).map_err(|e| Error::io("symlink", &link, e))?;
        }
    }
    install_file(&root.join("bin/chroot-escape"), CHROOT_ESCAPE, 0o755)?;
    install_file(&root.join("etc/passwd"), PASSWD.as_bytes(), 0o644)?;
    install_file(&root.join("etc/group"), GROUP.as_bytes(), 0o644)?;
    Ok(())
}
// ANCHOR_END: make_rootfs

/// glibc's name-service libraries: a statically linked busybox still loads
/// these at run time to resolve names (`nc web 80`, `ping web`).
const NAME_SERVICE_LIBS: &[&str] = &[
    "libc.so.6",
    "libnss_files.so.2",
    "libnss_dns.so.2",
    "libresolv.so.2",
];

/// Let busybox resolve host names inside `root`: copy the host's glibc
/// name-service modules into the same directory inside, and say in
/// `/etc/nsswitch.conf` to look in `/etc/hosts`, then DNS. Real images carry
/// their own C library; our busybox-only rootfs needs this for names.
pub fn add_name_service(root: &Path) -> Result<(), Error> {
    let maps = std::fs::read_to_string("/proc/self/maps")
        .map_err(|e| Error::io("read", "/proc/self/maps", e))?;
    // Where this (dynamically linked) program's own libc came from.
    let libc = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| path.ends_with("/libc.so.6"))
        .map(PathBuf::from)
        .ok_or_else(|| {
            Error::Other("can't find the host's libc.so.6 to copy its name service".into())
        })?;
    let dir = libc.parent().unwrap_or(Path::new("/"));
    let inside = root.join(dir.strip_prefix("/").unwrap_or(dir));
    make_dir(&inside, 0o755)?;
    for lib in NAME_SERVICE_LIBS {
        let source = dir.join(lib);
        if source.exists() {
            install_file(&inside.join(lib), &read(&source)?, 0o755)?;
        }
    }
    install_file(
        &root.join("etc/nsswitch.conf"),
        b"hosts: files dns\n",
        0o644,
    )
}

/// The paths busybox wants its applets at, like `bin/ls` and `usr/bin/env`.
fn busybox_applets(busybox: &Path) -> Result<Vec<PathBuf>, Error> {
    let output = Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(|e| Error::io("run", busybox, e))?;
    if !output.status.success() {
        return Err(Error::Other(format!(
            "{} --list-full failed: {}",
            busybox.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.trim_start_matches('/'))
        // Skip busybox itself and top-level applets like `/linuxrc`.
        .filter(|applet| applet.contains('/') && *applet != "bin/busybox")
        .filter(|applet| !applet.split('/').any(|part| part == ".."))
        .map(PathBuf::from)
        .collect())
}

/// busybox must exist and be statically linked: a dynamic one would need the
/// host's C library inside the rootfs.
fn check_busybox(busybox: &Path) -> Result<(), Error> {
    const INSTALL: &str = "install Debian's busybox-static (apt-get install busybox-static) \
                           or pass the path of a static busybox with --busybox";
    let mut header = Vec::with_capacity(4096);
    let read = fs::File::open(busybox).and_then(|f| f.take(4096).read_to_end(&mut header));
    match read {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Err(Error::Other(format!(
            "busybox not found at {}: {INSTALL}",
            busybox.display()
        ))),
        Err(err) => Err(Error::io("read", busybox, err)),
        Ok(_) if has_elf_interpreter(&header) => Err(Error::Other(format!(
            "{} is dynamically linked, so it cannot run inside a rootfs without a C library: {INSTALL}",
            busybox.display()
        ))),
        Ok(_) => Ok(()),
    }
}

/// Does this 64-bit little-endian ELF header name a program interpreter
/// (PT_INTERP, i.e. `ld-linux.so`)? Static executables have none.
fn has_elf_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        elf.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if elf.get(..6) != Some(b"\x7fELF\x02\x01") {
        return false; // not an ELF64-LE file: let running it tell.
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u32_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..phnum as usize)
        .filter_map(|i| u32_at(phoff as usize + i * phentsize as usize))
        .any(|p_type| p_type == PT_INTERP)
}

/// `target` may be missing or an empty directory; anything else would be lost.
fn check_target(target: &Path) -> Result<(), Error> {
    match fs::read_dir(target).map(|mut entries| entries.next().is_none()) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(Error::io("read directory", target, err)),
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::Other(format!(
            "{} already exists and is not empty; choose a new directory or remove this one",
            target.display()
        ))),
    }
}

/// A fresh directory next to `target` (same file system, so rename works).
fn staging_dir(target: &Path) -> Result<PathBuf, Error> {
    let name = target
        .file_name()
        .ok_or_else(|| Error::Other(format!("{} has no directory name", target.display())))?;
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let staging = parent.join(format!(
        ".{}.berth-partial-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    make_dir(&staging, 0o755)?;
    Ok(staging)
}

fn make_dir(path: &Path, mode: u32) -> Result<(), Error> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(mode)))
        .map_err(|e| Error::io("create directory", path, e))
}

fn install_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    fs::write(path, contents)
        .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(mode)))
        .map_err(|e| Error::io("write", path, e))
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    fs::read(path).map_err(|e| Error::io("read", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_escape_demo_is_a_static_executable() {
        assert!(CHROOT_ESCAPE.starts_with(b"\x7fELF"));
        assert!(!has_elf_interpreter(CHROOT_ESCAPE));
    }

    #[test]
    fn a_dynamic_executable_is_recognised() {
        let ls = fs::read("/bin/ls").unwrap();
        assert!(has_elf_interpreter(&ls));
    }

    #[test]
    fn refuses_a_non_empty_target() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("keep-me"), "data").unwrap();
        let err = check_target(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not empty"));
        assert!(dir.path().join("keep-me").exists());
    }

    #[test]
    fn missing_busybox_says_what_to_install() {
        let err = check_busybox(Path::new("/nonexistent/busybox")).unwrap_err();
        assert!(err.to_string().contains("apt-get install busybox-static"));
    }

    #[test]
    fn dynamic_busybox_is_refused_and_nothing_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("rootfs");
        let err = make_busybox_rootfs(&target, Path::new("/bin/ls")).unwrap_err();
        assert!(err.to_string().contains("dynamically linked"));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
