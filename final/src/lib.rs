//! Berth, the engine: the workshop's five stages put to work.
//!
//! The stages build one container and wait for it. An engine keeps them.
//! Like Podman, it has no daemon: every `berth` command reads and writes the
//! state under one root directory, with locks. The modules, in the order a
//! container meets them:
//!
//! - [`guard`]: first of all, what berth is made of (its open files, its
//!   own binary) is kept out of the containers' reach;
//! - [`record`]: what berth remembers about each container;
//! - [`images`]: images named by reference or by ID; [`image_ops`] looks
//!   after them (`tag`, `history`, `image inspect`, `image prune`), and they
//!   leave the host by [`push`] (logins from [`login`]) or [`archive`]
//!   (`save`), all on the command line through [`image_cli`];
//! - [`run`]: make one and run it, in the foreground or under a monitor
//!   process (`-d`), with [`harden`]'s secure defaults and, with `-t`, a
//!   [`terminal`] of its own, which a detached one serves to `berth
//!   attach` ([`attach`]);
//! - [`exec`]: one more process inside a running container;
//! - [`logfile`]: the container's log, in Docker's json-file shape;
//! - [`show`]: `ps`, `logs`, `inspect`;
//! - [`restart`]: `--restart`, the monitor running a container again;
//! - [`control`]: `stop`, `kill`, `rm`;
//! - [`volume`]: bind mounts, volumes and tmpfs, data that outlives a
//!   container;
//! - [`build`]: images from a [`dockerfile`], each step a [`layer`];
//! - [`runtime`]: the OCI runtime commands of `berth-runtime`, for
//!   bundles, which `run` and `build` drive too.

pub mod archive;
pub mod attach;
pub mod build;
pub mod bundle;
pub mod calendar;
pub mod commands;
pub mod connect;
pub mod control;
pub mod copy;
pub mod dockerfile;
pub mod dockerignore;
pub mod events;
pub mod exec;
pub mod format;
pub mod fuzzing;
pub mod guard;
pub mod harden;
pub mod image_cli;
pub mod image_ops;
pub mod images;
pub mod launch;
pub mod layer;
pub mod logfile;
pub mod login;
pub mod push;
pub mod record;
pub mod restart;
pub mod run;
pub mod run_flags;
pub mod runtime;
pub mod show;
pub mod status;
pub mod terminal;
pub mod tiny;
pub mod volume;

use std::path::Path;

use stage01_chroot::Error;
use stage04_images::root::Root;
use stage05_networks::network::Networks;

use crate::record::Containers;
use crate::volume::Volumes;

/// The engine's state, all under one root directory.
pub struct Engine {
    pub root: Root,
    pub containers: Containers,
    pub networks: Networks,
    pub volumes: Volumes,
}

impl Engine {
    pub fn open(dir: &Path) -> Result<Engine, Error> {
        let root = Root::open(dir)?;
        let networks = Networks::open(root.dir())?;
        let containers = Containers::open(&root);
        let volumes = Volumes::open(root.dir());
        Ok(Engine {
            root,
            containers,
            networks,
            volumes,
        })
    }
}
