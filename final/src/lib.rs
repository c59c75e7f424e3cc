//! Berth, the engine: the workshop's five stages put to work.
//!
//! The stages build one container and wait for it. An engine keeps them:
//! it remembers every container ([`record`]), runs them in the foreground or
//! in the background under a small monitor process ([`run`]), lets you step
//! into a running one ([`exec`]), see them and what they printed ([`show`]), and stop
//! and remove it ([`control`]). Like Podman, it has no daemon: every `berth`
//! command reads and writes the state under one root directory, with locks.

pub mod build;
pub mod control;
pub mod dockerfile;
pub mod exec;
pub mod harden;
pub mod layer;
pub mod oci;
pub mod record;
pub mod run;
pub mod show;
pub mod terminal;

use std::path::Path;

use stage01_chroot::Error;
use stage04_images::root::Root;
use stage05_networks::network::Networks;

use crate::record::Containers;

/// The engine's state, all under one root directory.
pub struct Engine {
    pub root: Root,
    pub containers: Containers,
    pub networks: Networks,
}

impl Engine {
    pub fn open(dir: &Path) -> Result<Engine, Error> {
        let root = Root::open(dir)?;
        let networks = Networks::open(root.dir())?;
        let containers = Containers::open(&root);
        Ok(Engine {
            root,
            containers,
            networks,
        })
    }
}
