//! One writable root per container on top of shared, read-only layers.
//!
//! overlayfs merges directories: `lowerdir` is a colon-separated list of
//! read-only layers, topmost first; `upperdir` receives every change; and
//! `workdir` is scratch space the kernel needs on the same file system as
//! the upper one. A file changed in the container is copied up into the upper
//! directory first, so the layer cache is never written to, and any number of
//! containers can share the same layers.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use stage01_chroot::Error;
use stage02_namespaces::RootMount;

/// The kernel takes mount options up to one page long.
const MOUNT_OPTIONS_LIMIT: usize = 4095;

/// `<root>/containers/<id>/`: the container's own part of the file system.
#[derive(Debug)]
pub struct ContainerDirs {
    pub dir: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Where the overlay is mounted (inside the container's mount namespace).
    pub merged: PathBuf,
}

impl ContainerDirs {
    /// The directories of container `id`, made or not.
    pub fn open(containers: &Path, id: &str) -> ContainerDirs {
        let dir = containers.join(id);
        ContainerDirs {
            upper: dir.join("upper"),
            work: dir.join("work"),
            merged: dir.join("merged"),
            dir,
        }
    }

    /// Make the directories of a new container.
    pub fn create(containers: &Path, id: &str) -> Result<ContainerDirs, Error> {
        let dirs = ContainerDirs::open(containers, id);
        std::fs::create_dir_all(containers).map_err(|e| Error::io("create", containers, e))?;
        std::fs::create_dir(&dirs.dir)
            .map_err(|e| Error::io("create container directory", &dirs.dir, e))?;
        for sub in [&dirs.upper, &dirs.work, &dirs.merged] {
            std::fs::create_dir(sub).map_err(|e| Error::io("create", sub, e))?;
        }
        Ok(dirs)
    }

    // ANCHOR: open_to
    /// With a user namespace, the container's init, host user 100000 by
    /// then, attaches its root at `merged` and binds files from `dir`: it
    /// must be able to pass through every directory from the state `root`
    /// down. The state root is root's alone (mode 700). As `dockerd
    /// --userns-remap` does with its own, each directory on the way that
    /// others may not pass goes to the container root's group `gid`, with
    /// search permission only (mode 710): that group may pass, but not
    /// list or read; other host users still can't even pass.
    pub fn open_to(&self, root: &Path, gid: u32) -> Result<(), Error> {
        for dir in self.dir.ancestors().take_while(|dir| dir.starts_with(root)) {
            let mode = std::fs::metadata(dir)
                .map_err(|e| Error::io("stat", dir, e))?
                .permissions()
                .mode();
            if mode & 0o001 != 0 {
                continue; // everyone may pass already
            }
            std::os::unix::fs::chown(dir, None, Some(gid))
                .and_then(|()| {
                    let searchable = std::fs::Permissions::from_mode(mode & 0o7777 | 0o010);
                    std::fs::set_permissions(dir, searchable)
                })
                .map_err(|e| Error::io("let the container's root pass through", dir, e))?;
        }
        Ok(())
    }
    // ANCHOR_END: open_to

    /// Remove the container's directories, its writes with them.
    pub fn remove(&self) -> Result<(), Error> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("remove container directory", &self.dir, e))
            }
            _ => Ok(()),
        }
    }
}

// ANCHOR: overlay
/// The overlay mount for `layers` (bottom first, as in the manifest) under
/// the container's upper and work directories.
pub fn overlay_mount(layers: &[PathBuf], dirs: &ContainerDirs) -> Result<RootMount, Error> {
    for path in layers.iter().chain([&dirs.upper, &dirs.work]) {
        let text = path.to_string_lossy();
        if text.contains([':', ',']) {
            return Err(Error::Other(format!(
                "{text}: overlay mount options can't hold a path with ':' or ','; use a --root without them"
            )));
        }
    }
    // ANCHOR: exercise_overlay_options
    // The kernel wants the topmost layer first.
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        dirs.upper.display(),
        dirs.work.display()
    );
    if options.len() > MOUNT_OPTIONS_LIMIT {
        return Err(Error::Other(format!(
            "the image has too many layers ({}) for one overlay mount's options; use a shorter --root",
            layers.len()
        )));
    }
    Ok(RootMount {
        fstype: "overlay".into(),
        source: "overlay".into(),
        options,
    })
    // ANCHOR_END: exercise_overlay_options
}
// ANCHOR_END: overlay

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_layer_comes_first() {
        let root = tempfile::tempdir().unwrap();
        let dirs = ContainerDirs::create(root.path(), "c1").unwrap();
        let layers = vec![PathBuf::from("/l/bottom"), PathBuf::from("/l/top")];
        let mount = overlay_mount(&layers, &dirs).unwrap();
        let expected = format!(
            "lowerdir=/l/top:/l/bottom,upperdir={},workdir={}",
            dirs.upper.display(),
            dirs.work.display()
        );
        assert_eq!(mount.options, expected);
        dirs.remove().unwrap();
        assert!(!root.path().join("c1").exists());
    }

    #[test]
    fn paths_that_would_break_the_options_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let dirs = ContainerDirs::create(root.path(), "c2").unwrap();
        assert!(overlay_mount(&[PathBuf::from("/a:b")], &dirs).is_err());
        let many: Vec<PathBuf> = (0..200)
            .map(|i| PathBuf::from(format!("/var/lib/berth/layers/{i:064}")))
            .collect();
        assert!(
            overlay_mount(&many, &dirs)
                .unwrap_err()
                .to_string()
                .contains("too many layers")
        );
    }
}
