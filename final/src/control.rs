//! `berth stop`, `kill` and `rm`: the signals a container gets, and what
//! is left of it afterwards.
//!
//! Signals go to the container's init (PID 1 inside), which passes them to
//! the command. Its monitor sees the container end, cleans up (network,
//! cgroup) and records the exit code; so "stopped" means "the monitor is
//! gone", and that is what these commands wait for.
//!
//! A monitor killed with SIGKILL cleans up nothing. Its container dies with
//! it (init has a parent-death signal), but its cgroup, veth pair, lease and
//! published ports stay. The runtime's state lists the cgroup and the
//! record lists the rest, each written before it was made, and
//! [`clean_up`] removes what they list: `rm` does, and so does `start`
//! before it runs the container again.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use stage01_chroot::Error;
use stage05_networks::attach::{Unplug, unplug};

use crate::Engine;
use crate::record::{Plugged, Proc, Record, Status};
use crate::runtime::{self, Processes};

/// How long a monitor may take to clean up after its container died.
const CLEANUP_GRACE: Duration = Duration::from_secs(10);

/// How long `stop` waits after the first signal, as Docker.
const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);

// ANCHOR: stop
/// SIGTERM (or the container's --stop-signal), then SIGKILL after
/// `timeout` (or its --stop-timeout, or 10 s), like `docker stop`. Stopping
/// a container that is not running is not an error. The user stopped it:
/// its monitor will not run it again (`--restart`), even if it is in its
/// back-off or starting again right now (then it is signalled once it runs).
pub fn stop(engine: &Engine, record: &Record, timeout: Option<Duration>) -> Result<(), Error> {
    if !record.monitor_alive() {
        return Ok(());
    }
    engine.containers.mark_stopped_by_user(&record.id)?;
    let extras = &record.spec.extras;
    let first = match &extras.stop_signal {
        Some(name) => parse_signal(name).map_err(Error::Other)?,
        None => Signal::SIGTERM,
    };
    let timeout = timeout
        .or(extras.stop_timeout.map(Duration::from_secs))
        .unwrap_or(DEFAULT_STOP_TIMEOUT);
    // Until its monitor is gone: the first signal once it runs, SIGKILL
    // `timeout` later, then a grace period for the monitor's cleanup.
    let mut sent: Option<(Signal, Instant)> = None;
    loop {
        let Some(current) = engine.containers.get(&record.id)? else {
            return Ok(()); // removed meanwhile (--rm)
        };
        if !current.monitor_alive() {
            return Ok(());
        }
        let now = Instant::now();
        let next = match sent {
            None => Some(first),
            Some((signal, at)) if signal != Signal::SIGKILL && now >= at + timeout => {
                Some(Signal::SIGKILL)
            }
            Some((Signal::SIGKILL, at)) if now >= at + CLEANUP_GRACE => {
                return Err(Error::Other(format!(
                    "container {} was killed, but its monitor (PID {}) has not finished cleaning up",
                    record.display_name(),
                    current.state.monitor.map_or(0, |m| m.pid)
                )));
            }
            _ => None,
        };
        // Only a running one can be signalled: one in its back-off ends by
        // itself (it sees the mark), one starting is signalled once it runs.
        if let Some(signal) = next
            && current.is_running()
            && self::signal(engine, &current, signal).is_ok()
        {
            sent = Some((signal, now));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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

/// The running container's init and cgroups, as its runtime knows them.
pub fn running(engine: &Engine, record: &Record) -> Result<(Proc, Vec<PathBuf>), Error> {
    running_processes(engine, record).map(|(init, processes)| (init, processes.cgroups))
}

/// The same, with the runtime's whole view of it (its status: paused?),
/// read once.
fn running_processes(engine: &Engine, record: &Record) -> Result<(Proc, Processes), Error> {
    let processes = match record.is_running() {
        true => runtime::processes_of(engine.root.dir(), &record.id)?,
        false => None,
    };
    match processes {
        Some(processes) => match processes.init {
            Some(init) if init.alive() => Ok((init, processes)),
            _ => Err(not_running(record)),
        },
        None => Err(not_running(record)),
    }
}

fn not_running(record: &Record) -> Error {
    Error::Other(format!(
        "container {} is not running (see: berth ps -a)",
        record.display_name()
    ))
}

/// `berth kill`: the user's signal. As Docker, it counts as the user
/// stopping the container: its monitor will not run it again
/// (`--restart`). One in its back-off is only told so.
pub fn kill_by_user(engine: &Engine, record: &Record, signal: Signal) -> Result<(), Error> {
    if record.is_restarting() {
        engine.containers.mark_stopped_by_user(&record.id)?;
        wait_for_monitor(record, CLEANUP_GRACE);
        return Ok(());
    }
    running(engine, record)?; // not running: an error, and no mark
    engine.containers.mark_stopped_by_user(&record.id)?;
    self::signal(engine, record, signal)
}

/// Send `signal` to the container's init, which passes it on. A paused
/// container is thawed first: frozen processes can't act on a signal.
pub fn signal(engine: &Engine, record: &Record, signal: Signal) -> Result<(), Error> {
    let (init, processes) = running_processes(engine, record)?;
    if processes.status == Status::Paused {
        runtime::pause(engine.root.dir(), &record.id, false)?;
    }
    match kill(Pid::from_raw(init.pid), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()), // it just ended
        Err(e) => Err(Error::Other(format!(
            "send {signal} to {}: {e}",
            record.display_name()
        ))),
    }
}

/// Remove a container: its record, log and writable layer, and whatever its
/// last run left on the host; with `volumes`, its anonymous volumes too
/// (`rm -v`). A running one (or one still starting) only with `force`,
/// which kills it first.
pub fn remove(engine: &Engine, record: &Record, force: bool, volumes: bool) -> Result<(), Error> {
    let mut seen = record.clone();
    loop {
        if seen.monitor_alive() {
            if !force {
                return Err(refuse_removal(&seen));
            }
            kill_now(engine, &seen)?;
        }
        let lock = engine.containers.lock()?;
        let Some(mut current) = engine.containers.get(&record.id)? else {
            return Ok(()); // its monitor removed it meanwhile (--rm)
        };
        if current.monitor_alive() {
            seen = current; // a monitor took it on meanwhile: kill it too
            continue;
        }
        clean_up(engine, &mut current)?;
        engine.containers.remove(&current)?;
        crate::events::emit(engine, &current, "destroy", &[]);
        return match volumes {
            true => crate::volume::remove_anonymous(engine, &current, &lock),
            false => Ok(()),
        };
    }
}

fn refuse_removal(record: &Record) -> Error {
    let name = record.display_name();
    if record.is_restarting() {
        return Error::Other(format!(
            "container {name} is restarting: stop it first (berth stop {name}), or use berth rm -f"
        ));
    }
    match record.state.status {
        Status::Running => Error::Other(format!(
            "container {name} is running: stop it first (berth stop {name}), or use berth rm -f"
        )),
        _ => Error::Other(format!(
            "container {name} is starting: remove it once it runs, or use berth rm -f"
        )),
    }
}

/// SIGKILL the container, and wait for its monitor to finish. One that is
/// still starting has no init to signal yet: kill its monitor instead, and
/// the kernel takes its init along (the parent-death signal).
fn kill_now(engine: &Engine, record: &Record) -> Result<(), Error> {
    let target = match running_processes(engine, record) {
        Ok((init, processes)) => {
            if processes.status == Status::Paused {
                let _ = runtime::pause(engine.root.dir(), &record.id, false); // v1 freezes kills too
            }
            Some(init)
        }
        Err(_) => record.state.monitor,
    };
    if let Some(target) = target.filter(|p| p.alive()) {
        let _ = kill(Pid::from_raw(target.pid), Signal::SIGKILL); // it may have just ended
    }
    match wait_for_monitor(record, CLEANUP_GRACE) {
        true => Ok(()),
        false => Err(Error::Other(format!(
            "container {} was killed, but its monitor has not finished; try again",
            record.display_name()
        ))),
    }
}

// ANCHOR: clean_up
/// Remove what the container's last run left on the host, as its record
/// lists it: only for a run whose monitor is gone, or by the monitor
/// itself as it finishes. Each thing is forgotten once it is gone. If
/// something can't be removed, the record is saved with what is left, so
/// that the next try knows it too, and the error says why.
pub fn clean_up(engine: &Engine, record: &mut Record) -> Result<(), Error> {
    let processes = runtime::processes_of(engine.root.dir(), &record.id)?;
    if !record.state.has_leftovers() && processes.is_none() {
        return Ok(());
    }
    let cgroups = processes.as_ref().map_or(&[][..], |p| &p.cgroups);
    check_names(record, cgroups)?;
    // Processes first: the runtime kills whatever still runs in its cgroup,
    // removes the cgroup and what it kept (its state, the FIFO init waited on).
    let mut first_error = None;
    if processes.is_some()
        && let Err(err) = runtime::delete(engine.root.dir(), &record.id, true)
    {
        first_error = Some(err);
    }
    for plugged in std::mem::take(&mut record.state.plugged) {
        if let Err(err) = unplug_network(engine, &record.id, &plugged) {
            record.state.plugged.push(plugged); // still there: try again later
            first_error.get_or_insert(err);
        }
    }
    match first_error {
        None => Ok(()),
        Some(err) => {
            let _ = engine.containers.save_state(record);
            Err(err)
        }
    }
}

/// Whatever a record says, touch only what berth names for this container:
/// cgroups called `berth-<id>`, a veth whose name starts with `bth`.
fn check_names(record: &Record, cgroups: &[PathBuf]) -> Result<(), Error> {
    let cgroup_name = format!("berth-{}", record.id);
    let strange_cgroup = cgroups
        .iter()
        .find(|dir| dir.file_name() != Some(cgroup_name.as_ref()));
    let strange_veth = (record.state.plugged.iter())
        .find(|plugged| !plugged.veth.starts_with("bth"))
        .map(|plugged| plugged.veth.as_str());
    let strange = match (strange_cgroup, strange_veth) {
        (Some(dir), _) => dir.display().to_string(),
        (None, Some(veth)) => veth.to_string(),
        (None, None) => return Ok(()),
    };
    Err(Error::Other(format!(
        "the record of container {} lists {strange}, which berth would not have made for it; \
         left alone (fix or remove the record by hand)",
        record.display_name()
    )))
}

/// Undo one network's attachment, whatever part of it was made: the host
/// end of its veth pair (the kernel deletes the end inside with it), its
/// ports, its lease and its names.
pub fn unplug_network(engine: &Engine, id: &str, plugged: &Plugged) -> Result<(), Error> {
    let network = engine.networks.existing(&plugged.network)?;
    unplug(&Unplug {
        networks: &engine.networks,
        network: network.as_ref(),
        id,
        veth: &plugged.veth,
        address: plugged.address,
        ports: plugged.ports,
        containers: engine.containers.dir(),
    })
}
// ANCHOR_END: clean_up

/// Wait until the container's monitor has exited; false on timeout.
fn wait_for_monitor(record: &Record, timeout: Duration) -> bool {
    record.state.monitor.is_none_or(|m| m.wait_gone(timeout))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Spec;

    #[test]
    fn only_what_berth_names_for_the_container_is_cleaned_up() {
        let mut record = Record::new("abc123000000".into(), None, Spec::default());
        let mut cgroups = vec![PathBuf::from("/sys/fs/cgroup/pids/own/berth-abc123000000")];
        record.state.plugged = vec![Plugged {
            network: "web".into(),
            veth: "bthabc12300".into(),
            ports: true,
            slot: 0,
            address: None,
        }];
        check_names(&record, &cgroups).unwrap();
        cgroups.push("/sys/fs/cgroup/pids".into());
        let err = check_names(&record, &cgroups).unwrap_err().to_string();
        assert!(err.contains("/sys/fs/cgroup/pids,"), "{err}");
        cgroups.pop();
        record.state.plugged[0].veth = "eth0".into();
        assert!(check_names(&record, &cgroups).is_err());
    }
}
