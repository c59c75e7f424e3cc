//! Where berth keeps its state: one directory, `/var/lib/berth` by default,
//! `--root` or `BERTH_ROOT` to choose another (tests use temp dirs).
//!
//! ```text
//! <root>/images/         the image store: an OCI image layout
//! <root>/images.lock     its lock (outside the layout, to keep it clean)
//! <root>/layers/<hex>    each layer unpacked once, by diff ID
//! <root>/containers/<id> each running container's upper and work dirs
//! ```

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use stage01_chroot::Error;

use crate::store::Store;

pub const DEFAULT_ROOT: &str = "/var/lib/berth";

pub struct Root {
    dir: PathBuf,
}

impl Root {
    /// Open (and on first use make, readable by root only) the state root.
    pub fn open(dir: &Path) -> Result<Root, Error> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io("create the state directory", dir, e))?;
        let dir = std::fs::canonicalize(dir).map_err(|e| Error::io("resolve", dir, e))?;
        Ok(Root { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn store(&self) -> Result<Store, Error> {
        Store::open(&self.dir.join("images"))
    }

    pub fn layers(&self) -> PathBuf {
        self.dir.join("layers")
    }

    pub fn containers(&self) -> PathBuf {
        self.dir.join("containers")
    }
}
