//! Waiting for a child while passing signals on: the job of the container's
//! init inside, and of the stage binary outside.
//!
//! Signals are blocked and taken one at a time with `sigwait`, so there is
//! no handler to race with: a termination signal is sent on to the child,
//! SIGCHLD means "reap". Inside, init reaps *every* child, since orphans of
//! the container are re-parented to it; outside there is only one child.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::unistd::Pid;

/// The signals passed on to the container: the ones that ask a program to
/// stop, reload or redraw.
pub const FORWARDED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

fn waited_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in FORWARDED {
        set.add(*signal);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// Block the forwarded signals and SIGCHLD, to take them with `sigwait`.
/// Children inherit the mask, so the command must undo it before `exec`.
pub fn block_signals() -> nix::Result<()> {
    waited_signals().thread_block()
}

/// For the command, in its child before `exec`: undo [`block_signals`], and
/// give the forwarded signals their default action, even if whoever started
/// us ignored them (as a shell does for `cmd &`): the command must be able
/// to die of, or handle, the signals we pass on.
pub fn reset_signals_for_exec() -> nix::Result<()> {
    for signal in FORWARDED {
        // SAFETY: SIG_DFL installs no handler of ours.
        unsafe { nix::sys::signal::signal(*signal, nix::sys::signal::SigHandler::SigDfl) }?;
    }
    waited_signals().thread_unblock()
}

// ANCHOR: supervise
/// Forward signals to `main` and reap children until `main` exits.
pub fn supervise(main: Pid) -> nix::Result<ExitStatus> {
    let waited = waited_signals();
    loop {
        if let Some(status) = reap_children(main)? {
            return Ok(status);
        }
        match waited.wait()? {
            Signal::SIGCHLD => continue,
            signal => {
                let _ = kill(main, signal); // it may have just exited
            }
        }
    }
}

/// Reap every child that has exited; `main`'s status once it is among them.
fn reap_children(main: Pid) -> nix::Result<Option<ExitStatus>> {
    loop {
        let mut raw_status = 0;
        // SAFETY: waitpid only writes the status integer we pass.
        let pid = unsafe { libc::waitpid(-1, &mut raw_status, libc::WNOHANG) };
        match pid {
            0 => return Ok(None), // children left, none exited
            -1 if Errno::last() == Errno::EINTR => continue,
            -1 => return Err(Errno::last()),
            pid if pid == main.as_raw() => return Ok(Some(ExitStatus::from_raw(raw_status))),
            _ => continue, // an orphan, now reaped: no zombie left
        }
    }
}
// ANCHOR_END: supervise
