//! A temporary directory holding a fresh busybox rootfs and marker files.

use std::path::{Path, PathBuf};

use stage01_chroot::rootfs::{DEFAULT_BUSYBOX, make_busybox_rootfs};
use tempfile::TempDir;

/// `dir/rootfs` is a busybox root filesystem with `/berth-rootfs-marker` in
/// it; `dir/host-marker` exists only on the host side, outside the rootfs.
/// Everything is removed when the fixture is dropped.
pub struct Fixture {
    dir: TempDir,
}

impl Fixture {
    pub const ROOTFS_MARKER: &str = "/berth-rootfs-marker";

    pub fn new() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("berth-test-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .tempdir()
            .expect("create a temp dir for the fixture");
        let busybox = std::env::var_os("BERTH_BUSYBOX").unwrap_or_else(|| DEFAULT_BUSYBOX.into());
        let rootfs = dir.path().join("rootfs");
        if let Err(err) = make_busybox_rootfs(&rootfs, Path::new(&busybox)) {
            panic!("cannot make the test rootfs: {err}");
        }
        std::fs::write(rootfs.join(&Self::ROOTFS_MARKER[1..]), "inside\n").expect("rootfs marker");
        std::fs::write(dir.path().join("host-marker"), "outside\n").expect("host marker");
        Fixture { dir }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Absolute host path of a file that exists only outside the rootfs.
    pub fn host_marker(&self) -> PathBuf {
        self.dir.path().join("host-marker")
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}
