//! Where volumes live: `<root>/volumes/<name>/_data`, the directory that
//! containers see, beside `volume.json`, what berth knows about it.
//!
//! A volume appears whole or not at all: it is made in a hidden directory
//! named after its creator (`.new-<pid>-<start time>-<name>`), record and
//! data (and what the image had there) in it, then renamed into place. It
//! goes the same way: renamed aside (`.gone-...`) first, then removed. So a
//! berth killed at any moment leaves no half-made volume that `volume ls`
//! would show; what it left aside is swept on the next look.

use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use stage01_chroot::Error;
use stage04_images::store::write_atomic;
use stage05_networks::ipam::{process_alive, process_start_time};

use super::DRIVER;

/// The directory containers see.
const DATA: &str = "_data";
/// What berth knows about the volume.
const RECORD: &str = "volume.json";
/// A volume being made, by a creator named after it.
const STAGING: &str = ".new-";
/// A volume being removed.
const DOOMED: &str = ".gone-";

/// What berth keeps about one volume (`volume.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    /// Always `local`: a directory on this host.
    pub driver: String,
    /// Seconds since the epoch.
    pub created: u64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Made for one container, without a name of the user's (`-v /path`,
    /// an image's VOLUME): `rm -v` and `volume prune` remove it.
    #[serde(default)]
    pub anonymous: bool,
}

impl Volume {
    pub fn new(name: &str, labels: BTreeMap<String, String>, anonymous: bool) -> Volume {
        Volume {
            name: name.to_string(),
            driver: DRIVER.to_string(),
            created: crate::record::now(),
            labels,
            anonymous,
        }
    }
}

/// The volumes of one berth root.
pub struct Volumes {
    dir: PathBuf,
}

/// A volume made aside, not yet in place: its `_data` may be filled first.
/// Dropped before it is placed, it is removed.
pub struct Staged {
    dir: PathBuf,
    name: String,
}

impl Staged {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn data(&self) -> PathBuf {
        self.dir.join(DATA)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = remove_if_present(&self.dir);
    }
}

impl Volumes {
    pub fn open(root: &Path) -> Volumes {
        Volumes {
            dir: root.join("volumes"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory a container mounts.
    pub fn data(&self, name: &str) -> PathBuf {
        self.dir.join(name).join(DATA)
    }

    pub fn get(&self, name: &str) -> Result<Option<Volume>, Error> {
        super::spec::check_volume_name(name).map_err(Error::Other)?;
        let path = self.dir.join(name).join(RECORD);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Other(format!("{}: not a volume record: {e}", path.display())))
    }

    /// Every volume, by name; what killed creators and removers left aside
    /// goes first.
    pub fn list(&self) -> Result<Vec<Volume>, Error> {
        self.sweep();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(Vec::new());
        };
        let mut volumes = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if super::spec::check_volume_name(&name).is_err() {
                continue; // hidden: being made or removed
            }
            if let Some(volume) = self.get(&name)? {
                volumes.push(volume);
            }
        }
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(volumes)
    }

    /// Make `volume` aside, its `_data` owned by `owner` (with `--userns`:
    /// the container's root, so that it can write there), for
    /// [`Volumes::place`].
    pub fn stage(&self, volume: &Volume, owner: Option<(u32, u32)>) -> Result<Staged, Error> {
        super::spec::check_volume_name(&volume.name).map_err(Error::Other)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| Error::io("create", &self.dir, e))?;
        let me = std::process::id() as i32;
        let started = process_start_time(me)
            .ok_or_else(|| Error::Other(format!("read the start time of our own process {me}")))?;
        let staged = Staged {
            dir: self
                .dir
                .join(format!("{STAGING}{me}-{started}-{}", volume.name)),
            name: volume.name.clone(),
        };
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&staged.dir)
            .map_err(|e| Error::io("create", &staged.dir, e))?;
        let data = staged.data();
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&data)
            .map_err(|e| Error::io("create", &data, e))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&data, Some(uid), Some(gid))
                .map_err(|e| Error::io("chown", &data, e))?;
        }
        let bytes = serde_json::to_vec_pretty(volume).map_err(|e| {
            Error::Other(format!("encode the record of volume {}: {e}", volume.name))
        })?;
        write_atomic(&staged.dir.join(RECORD), &bytes)?;
        Ok(staged)
    }

    /// Put a staged volume in place, at once. False if a volume of that
    /// name appeared meanwhile: that one stays, and the staged one goes.
    pub fn place(&self, staged: Staged) -> Result<bool, Error> {
        let target = self.dir.join(&staged.name);
        match std::fs::rename(&staged.dir, &target) {
            Ok(()) => Ok(true),
            // rename(2) replaces only an empty directory: a volume is not.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => Ok(false),
            Err(e) => Err(Error::io("rename into", &target, e)),
        }
    }

    /// Make `volume` unless one of its name exists; whether it was made.
    pub fn create(&self, volume: &Volume, owner: Option<(u32, u32)>) -> Result<bool, Error> {
        if self.get(&volume.name)?.is_some() {
            return Ok(false);
        }
        self.place(self.stage(volume, owner)?)
    }

    /// Remove a volume and its data: renamed aside first, so it is gone
    /// from every listing at once, then removed.
    pub fn remove(&self, name: &str) -> Result<(), Error> {
        super::spec::check_volume_name(name).map_err(Error::Other)?;
        let dir = self.dir.join(name);
        let me = std::process::id();
        let doomed = self.dir.join(format!("{DOOMED}{me}-{name}"));
        std::fs::rename(&dir, &doomed).map_err(|e| Error::io("remove volume", &dir, e))?;
        remove_if_present(&doomed)
    }

    /// Remove what creators killed in [`Volumes::stage`] made aside (those
    /// whose creator is gone), and what removers killed halfway left.
    fn sweep(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let dead_creator = name.strip_prefix(STAGING).is_some_and(|rest| {
                let mut parts = rest.splitn(3, '-');
                match (parts.next().map(str::parse), parts.next().map(str::parse)) {
                    (Some(Ok(pid)), Some(Ok(started))) => !process_alive(pid, started),
                    _ => false,
                }
            });
            if dead_creator || name.starts_with(DOOMED) {
                let _ = remove_if_present(&entry.path());
            }
        }
    }
}

fn remove_if_present(dir: &Path) -> Result<(), Error> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", dir, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_volume_appears_whole_and_goes_whole() {
        let root = tempfile::tempdir().unwrap();
        let volumes = Volumes::open(root.path());
        assert!(volumes.list().unwrap().is_empty());
        let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        assert!(
            volumes
                .create(&Volume::new("db", labels, false), None)
                .unwrap()
        );
        assert!(volumes.data("db").is_dir());
        // Made again: the first one stays, as Docker's `volume create` does.
        assert!(
            !volumes
                .create(&Volume::new("db", BTreeMap::new(), true), None)
                .unwrap()
        );
        let listed = volumes.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].labels["app"], "web");
        assert!(!listed[0].anonymous);

        // A staged volume that is dropped leaves nothing; one staged while
        // another of its name was placed is dropped too.
        let staged = volumes
            .stage(&Volume::new("tmp", BTreeMap::new(), true), None)
            .unwrap();
        std::fs::write(staged.data().join("x"), "x").unwrap();
        drop(staged);
        let late = volumes
            .stage(&Volume::new("db", BTreeMap::new(), true), None)
            .unwrap();
        assert!(!volumes.place(late).unwrap());
        // What a killed creator or remover left is swept at the next look.
        std::fs::create_dir_all(volumes.dir().join(".new-1-1-dead/_data")).unwrap();
        std::fs::create_dir_all(volumes.dir().join(".gone-1-old/_data")).unwrap();
        assert_eq!(volumes.list().unwrap().len(), 1);
        let left: Vec<_> = std::fs::read_dir(volumes.dir())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, ["db"]);

        volumes.remove("db").unwrap();
        assert!(volumes.get("db").unwrap().is_none());
        assert_eq!(std::fs::read_dir(volumes.dir()).unwrap().count(), 0);
        assert!(volumes.get("../x").is_err(), "a path is not a name");
    }
}
