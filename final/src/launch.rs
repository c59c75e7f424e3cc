//! The one way berth starts a container's first process. `berth run` (its
//! monitor), a build's `RUN` and `berth-runtime create` all come through
//! here, by way of the runtime's `create`, and differ only in what they do
//! next: plug a network in and `start` (`run`), `start` and wait (`RUN`),
//! or leave it to a later `start` (`berth-runtime`).

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Mutex;

use nix::sched::CloneFlags;
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use stage01_chroot::Error;
use stage02_namespaces::{Container, Started, namespaces, supervise};
use stage03_cgroups::layout;

use crate::harden;

// ANCHOR: launch
/// Clone the container's init into its namespaces (stage 02), and let it
/// build its root while `outside(pid)` runs: the caller makes its cgroup
/// (stage 03) and moves it there. Init waits for that only before its
/// first step that needs the cgroup (a cgroup namespace, a cgroup mount,
/// hooks, the command). A first move between cgroups can wait longer than
/// all of init's set-up (see [`warm_up_cgroup_moves`]), so a start waits
/// for the slower of the two instead of both.
///
/// Signals are blocked first, so that init inherits the mask it takes them
/// with; and we make ourselves undumpable first, so that init, a copy of us
/// until it execs, can't be read through /proc.
///
/// With `cgroup`, a cgroup v2 directory made already, init is cloned
/// straight into it, with no move and no wait at all; `outside` is told
/// whether that happened (an older kernel can't).
pub fn start(
    container: &Container,
    cgroup: Option<&OwnedFd>,
    outside: impl FnOnce(Pid, bool) -> Result<(), Error>,
) -> Result<Started, Error> {
    supervise::block_signals().map_err(|e| Error::Other(format!("block signals: {e}")))?;
    harden::protect_our_binary()?;
    let mut started = namespaces::start_in(container, cgroup.map(|fd| fd.as_fd()))?;
    let born_in_cgroup = started.born_in_cgroup();
    // On error, dropping `started` kills init.
    started.go_ahead_while(|pid| outside(pid, born_in_cgroup))?;
    reap_warm_up();
    Ok(started)
}
// ANCHOR_END: launch

/// The process [`warm_up_cgroup_moves`] started, if any.
static WARMING_UP: Mutex<Option<Pid>> = Mutex::new(None);

// ANCHOR: warm_up
/// Start the wait the kernel makes before the first move of a process
/// between cgroups, in a process of its own, while we go on preparing a
/// container.
///
/// Moving a process takes a lock that every fork and exit also takes
/// (`cgroup_threadgroup_rwsem`). To take it for writing, the first mover
/// waits an RCU grace period, until every CPU has passed a quiet point:
/// about 10 ms on this book's machine, the largest single cost of a
/// container start. Movers that follow within another grace period wait
/// no more. A copy of us that moves itself into the cgroup it is already
/// in changes nothing, but pays that wait now, in parallel with our work;
/// the real move in [`start`] then finds the lock ready. Any failure only
/// means no head start.
///
/// The kernel holds its cgroup lock while it waits, so making a cgroup
/// waits too: that is why the engine makes the container's cgroup only
/// after the clone, while init builds its root. A process, not a thread:
/// `clone` may copy only a process with one thread (a lock another thread
/// held would stay locked forever in the copy), so a thread would have to
/// end before the clone, and the wait with it. (On cgroup v2 the kernel
/// can also clone a process straight into its cgroup, with no move at
/// all: `clone3(CLONE_INTO_CGROUP)`.)
pub fn warm_up_cgroup_moves() {
    let Some(procs) = own_cgroup_procs() else {
        return;
    };
    let Ok(procs) = std::fs::OpenOptions::new().write(true).open(&procs) else {
        return;
    };
    let procs = OwnedFd::from(procs);
    let mut stack = vec![0u8; 16 * 1024];
    // The copy only writes and exits: no allocation, no lock. It sends no
    // signal when it ends (no SIGCHLD), so that it disturbs no one who
    // waits for a container; `reap_warm_up` collects it.
    let copy = Box::new(|| {
        warm_up_alone(&procs);
        // "0": the process that writes.
        let _ = nix::unistd::write(&procs, b"0");
        0
    });
    // SAFETY: we are single-threaded here, and the copy runs only a write
    // and its exit on the stack it is given (a copy of ours, as without
    // CLONE_VM it has its own memory).
    if let Ok(pid) = unsafe { nix::sched::clone(copy, &mut stack, CloneFlags::empty(), None) }
        && let Ok(mut slot) = WARMING_UP.lock()
    {
        *slot = Some(pid);
    }
}

/// In the warm-up's process: a name of its own, and none of our
/// descriptors but `procs`. It may outlive us by a grace period (the
/// kernel's wait can't be interrupted, even by SIGKILL), and must hold
/// nothing of ours meanwhile: a pipe's end someone waits on, a lock.
fn warm_up_alone(procs: &OwnedFd) {
    use std::os::fd::AsRawFd;
    let _ = nix::sys::prctl::set_name(c"berth-warm-up");
    let fd = procs.as_raw_fd() as libc::c_uint;
    // SAFETY: plain system calls, on descriptors this process alone owns.
    unsafe {
        if fd > 0 {
            libc::syscall(libc::SYS_close_range, 0, fd - 1, 0);
        }
        libc::syscall(libc::SYS_close_range, fd + 1, libc::c_uint::MAX, 0);
    }
}

/// Collect the warm-up's process, which has ended by now or soon will (it
/// only waits for the kernel).
fn reap_warm_up() {
    let pid = WARMING_UP.lock().ok().and_then(|mut slot| slot.take());
    if let Some(pid) = pid {
        // __WCLONE: it is a child that sends no signal at its end.
        let _ = waitpid(pid, Some(WaitPidFlag::__WCLONE));
    }
}

/// `cgroup.procs` of our own cgroup, in any hierarchy: the lock is one for
/// all of them.
/// None on a cgroup v2 host, where init is cloned into its cgroup and
/// nothing moves (see [`start`]).
fn own_cgroup_procs() -> Option<PathBuf> {
    let memberships = layout::own_memberships().ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let v1_mounts = layout::parse_v1_mounts(&mountinfo);
    if v1_mounts.is_empty() {
        return None;
    }
    let dir = match layout::parse_v2_mounts(&mountinfo).first() {
        Some(mount) => layout::v2_own_dir(mount, &memberships)?,
        None => layout::v1_own_dir("pids", &memberships, &v1_mounts)?,
    };
    Some(dir.join("cgroup.procs"))
}
// ANCHOR_END: warm_up
