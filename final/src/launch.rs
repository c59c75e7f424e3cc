//! The one way berth starts a container's first process. `berth run` (its
//! monitor), a build's `RUN` and `berth-runtime create` all come through
//! here, by way of the runtime's `create`, and differ only in what they do
//! next: plug a network in and `start` (`run`), `start` and wait (`RUN`),
//! or leave it to a later `start` (`berth-runtime`).

use std::path::PathBuf;
use std::sync::Mutex;
use std::thread::JoinHandle;

use nix::unistd::Pid;
use stage01_chroot::Error;
use stage02_namespaces::{Container, Started, namespaces, supervise};
use stage03_cgroups::{Cgroup, layout};

use crate::harden;

// ANCHOR: launch
/// Clone the container's init into its namespaces (stage 02) and put it in
/// `cgroup` (stage 03) before it needs it. Signals are blocked first, so
/// that init inherits the mask it takes them with; and we make ourselves
/// undumpable first, so that init, a copy of us until it execs, can't be
/// read through /proc.
///
/// Init builds its root while we move it into its cgroup, and waits for
/// the move only before its first step that needs the cgroup (a cgroup
/// namespace, a cgroup mount, hooks, the command): a first move can wait
/// longer than all of init's set-up (see [`warm_up_cgroup_moves`]), and so
/// a start waits for the slower of the two instead of both. `then` runs
/// after the move, before init may go on: to write down init's PID where
/// what init runs next (hooks) reads it.
pub fn start(
    container: &Container,
    cgroup: &dyn Cgroup,
    then: impl FnOnce(Pid) -> Result<(), Error>,
) -> Result<Started, Error> {
    finish_warm_up();
    supervise::block_signals().map_err(|e| Error::Other(format!("block signals: {e}")))?;
    harden::protect_our_binary()?;
    let mut started = namespaces::start(container)?;
    // On error, dropping `started` kills init.
    started.go_ahead_while(|pid| {
        cgroup.add_process(pid)?;
        then(pid)
    })?;
    Ok(started)
}
// ANCHOR_END: launch

/// The thread [`warm_up_cgroup_moves`] started, if any.
static WARMING_UP: Mutex<Option<JoinHandle<()>>> = Mutex::new(None);

// ANCHOR: warm_up
/// Start, in a thread, the wait the kernel makes before the first move of a
/// process between cgroups, while the caller goes on preparing a container.
///
/// Moving a process takes a lock that every fork and exit also takes
/// (`cgroup_threadgroup_rwsem`). To take it for writing, the first mover
/// waits an RCU grace period, until every CPU has passed a quiet point:
/// about 10 ms on this book's machine, the largest single cost of a
/// container start. Movers that follow within another grace period wait
/// no more. Moving ourselves into the cgroup we are already in changes
/// nothing, but pays that wait now, in parallel with our other work; the
/// real move in [`start`] then finds the lock ready. Any failure only
/// means no head start.
///
/// It pays only with enough work to hide the wait behind: the kernel holds
/// its cgroup lock while it waits, so making a cgroup waits too, and the
/// thread itself costs a little. `berth run`, with its record, image and
/// bundle to write first, gains by it; `berth-runtime`, which makes its
/// cgroup soon after it starts, lets init build its root during the move
/// instead (see [`start`]). (On cgroup v2 the kernel can also clone a
/// process straight into its cgroup, with no move at all:
/// `clone3(CLONE_INTO_CGROUP)`.)
pub fn warm_up_cgroup_moves() {
    // Even finding our cgroup happens in the thread: off the start path.
    let thread = std::thread::Builder::new()
        .name("berth-warm-up".into())
        .spawn(|| {
            if let Some(procs) = own_cgroup_procs() {
                let _ = std::fs::write(&procs, std::process::id().to_string());
            }
        });
    if let (Ok(thread), Ok(mut slot)) = (thread, WARMING_UP.lock()) {
        *slot = Some(thread);
    }
}

/// Wait for the warm-up to end, if one runs. `clone` must copy a process
/// with one thread: a lock another thread held would stay locked forever
/// in the copy.
fn finish_warm_up() {
    let thread = WARMING_UP.lock().ok().and_then(|mut slot| slot.take());
    if let Some(thread) = thread {
        let _ = thread.join();
    }
}

/// `cgroup.procs` of our own cgroup, in any hierarchy: the lock is one for
/// all of them.
fn own_cgroup_procs() -> Option<PathBuf> {
    let memberships = layout::own_memberships().ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let dir = match layout::parse_v2_mounts(&mountinfo).first() {
        Some(mount) => layout::v2_own_dir(mount, &memberships)?,
        None => {
            let mounts = layout::parse_v1_mounts(&mountinfo);
            layout::v1_own_dir("pids", &memberships, &mounts)?
        }
    };
    Some(dir.join("cgroup.procs"))
}
// ANCHOR_END: warm_up
