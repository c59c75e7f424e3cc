//! Checks made before anything is set up, so bad input fails early and cleanly.

use std::path::{Path, PathBuf};

use crate::Error;

/// Fail with a clear message unless we run as root. `what` names the
/// operation that needs it, for the message.
pub fn require_root(what: &'static str) -> Result<(), Error> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(Error::NotRoot { what })
    }
}

/// Check that `rootfs` is an existing directory; return its absolute path.
pub fn check_rootfs(rootfs: &Path) -> Result<PathBuf, Error> {
    match std::fs::metadata(rootfs) {
        Ok(meta) if meta.is_dir() => std::fs::canonicalize(rootfs)
            .map_err(|err| Error::io("resolve rootfs path", rootfs, err)),
        Ok(_) => Err(Error::RootfsNotDirectory {
            path: rootfs.into(),
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Err(Error::RootfsMissing {
            path: rootfs.into(),
        }),
        Err(err) => Err(Error::io("stat rootfs", rootfs, err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_rootfs_says_how_to_make_one() {
        let err = check_rootfs(Path::new("/nonexistent/berth-rootfs")).unwrap_err();
        assert!(matches!(err, Error::RootfsMissing { .. }));
        assert!(
            err.to_string()
                .contains("berth-mkrootfs /nonexistent/berth-rootfs")
        );
    }

    #[test]
    fn a_file_is_not_a_rootfs() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let err = check_rootfs(file.path()).unwrap_err();
        assert!(matches!(err, Error::RootfsNotDirectory { .. }));
    }

    #[test]
    fn rootfs_path_is_made_absolute() {
        let dir = tempfile::tempdir().unwrap();
        let relative = dir.path().join("a/..");
        std::fs::create_dir(dir.path().join("a")).unwrap();
        let resolved = check_rootfs(&relative).unwrap();
        assert_eq!(resolved, std::fs::canonicalize(dir.path()).unwrap());
    }
}
