//! `berth stop`, `kill` and `rm`: the signals a container gets, and what
//! is left of it afterwards.
//!
//! Signals go to the container's init (PID 1 inside), which passes them to
//! the command. Its monitor sees the container end, cleans up (network,
//! cgroup) and records the exit code; so "stopped" means "the monitor is
//! gone", and that is what these commands wait for.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use stage01_chroot::Error;

use crate::Engine;
use crate::record::Record;

/// How long a monitor may take to clean up after its container died.
const CLEANUP_GRACE: Duration = Duration::from_secs(10);

// ANCHOR: stop
/// SIGTERM, then SIGKILL after `timeout`, like `docker stop`. Stopping a
/// container that is not running is not an error.
pub fn stop(record: &Record, timeout: Duration) -> Result<(), Error> {
    if !record.is_running() {
        return Ok(());
    }
    signal(record, Signal::SIGTERM)?;
    if wait_for_monitor(record, timeout) {
        return Ok(());
    }
    signal(record, Signal::SIGKILL)?;
    if wait_for_monitor(record, CLEANUP_GRACE) {
        return Ok(());
    }
    Err(Error::Other(format!(
        "container {} was killed, but its monitor (PID {}) has not finished cleaning up",
        record.display_name(),
        record.state.monitor.map_or(0, |m| m.pid)
    )))
}
// ANCHOR_END: stop

/// `TERM`, `SIGTERM` or `15`, as `docker kill -s` and `runc kill` take them.
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    if let Ok(number) = text.parse::<i32>() {
        return Signal::try_from(number).map_err(|_| format!("no signal number {number}"));
    }
    let upper = text.to_ascii_uppercase();
    let name = match upper.starts_with("SIG") {
        true => upper,
        false => format!("SIG{upper}"),
    };
    name.parse()
        .map_err(|_| format!("unknown signal {text} (try TERM, INT, HUP, KILL or a number)"))
}

/// Send `signal` to the container's init, which passes it on.
pub fn signal(record: &Record, signal: Signal) -> Result<(), Error> {
    let init = match record.state.init {
        Some(init) if record.is_running() && init.alive() => init,
        _ => {
            return Err(Error::Other(format!(
                "container {} is not running",
                record.display_name()
            )));
        }
    };
    match kill(Pid::from_raw(init.pid), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()), // it just ended
        Err(e) => Err(Error::Other(format!(
            "send {signal} to {}: {e}",
            record.display_name()
        ))),
    }
}

/// Remove a container: its record, log and writable layer. A running one
/// only with `force`, which kills it first.
pub fn remove(engine: &Engine, record: &Record, force: bool) -> Result<(), Error> {
    if record.is_running() {
        if !force {
            return Err(Error::Other(format!(
                "container {} is running: stop it first (berth stop {0}), or use berth rm -f",
                record.display_name()
            )));
        }
        signal(record, Signal::SIGKILL)?;
        if !wait_for_monitor(record, CLEANUP_GRACE) {
            return Err(Error::Other(format!(
                "container {} was killed, but its monitor has not finished; try again",
                record.display_name()
            )));
        }
    }
    remove_leftover_cgroups(record)?;
    let _lock = engine.containers.lock()?;
    engine.containers.remove(&record.id)
}

/// A monitor killed with SIGKILL could not remove the container's cgroup;
/// its processes died with it, so the directories are empty: remove them.
fn remove_leftover_cgroups(record: &Record) -> Result<(), Error> {
    for dir in &record.state.cgroups {
        match std::fs::remove_dir(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io("remove cgroup", dir, e));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Wait until the container's monitor has exited; false on timeout.
fn wait_for_monitor(record: &Record, timeout: Duration) -> bool {
    record.state.monitor.is_none_or(|m| m.wait_gone(timeout))
}
