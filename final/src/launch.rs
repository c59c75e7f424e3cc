//! The one way berth starts a container's first process. `berth run` (its
//! monitor), a build's `RUN` and `berth-runtime create` all come through
//! here, by way of the runtime's `create`, and differ only in what they do
//! next: plug a network in and `start` (`run`), `start` and wait (`RUN`),
//! or leave it to a later `start` (`berth-runtime`).

use stage01_chroot::Error;
use stage02_namespaces::{Container, Started, namespaces, supervise};
use stage03_cgroups::Cgroup;

use crate::harden;

// ANCHOR: launch
/// Clone the container's init into its namespaces (stage 02) and put it in
/// `cgroup` (stage 03) before it may go on. Signals are blocked first, so
/// that init inherits the mask it takes them with; and we make ourselves
/// undumpable first, so that init, a copy of us until it execs, can't be
/// read through /proc.
pub fn start(container: &Container, cgroup: &dyn Cgroup) -> Result<Started, Error> {
    supervise::block_signals().map_err(|e| Error::Other(format!("block signals: {e}")))?;
    harden::protect_our_binary()?;
    let started = namespaces::start(container)?;
    cgroup.add_process(started.pid())?; // on error, dropping `started` kills init
    Ok(started)
}
// ANCHOR_END: launch
