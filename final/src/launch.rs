//! The one way berth starts a container's first process. `berth run` (and
//! its monitor), a build's `RUN` and `berth-runtime create` all come
//! through here, and differ only in what they do next: plug a network in
//! and let it go (`run`), let it go and wait (`RUN`), or let it set up and
//! wait at its gate for `start` (`berth-runtime`).

use stage01_chroot::Error;
use stage02_namespaces::{Container, Started, namespaces, supervise};
use stage03_cgroups::Cgroup;

use crate::harden;

// ANCHOR: launch
/// Clone the container's init into its namespaces (stage 02) and put it in
/// `cgroup` (stage 03) before it may go on. Signals are blocked first, so
/// that init inherits the mask it takes them with; and unless the
/// container is privileged, we make ourselves undumpable first, so that
/// init, a copy of us until it execs, can't be read through /proc.
pub fn start(
    container: &Container,
    cgroup: Option<&dyn Cgroup>,
    privileged: bool,
) -> Result<Started, Error> {
    supervise::block_signals().map_err(|e| Error::Other(format!("block signals: {e}")))?;
    if !privileged {
        harden::protect_our_binary()?;
    }
    let started = namespaces::start(container)?;
    if let Some(cgroup) = cgroup {
        cgroup.add_process(started.pid())?; // on error, dropping `started` kills init
    }
    Ok(started)
}
// ANCHOR_END: launch
