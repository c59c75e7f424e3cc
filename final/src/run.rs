//! `berth run`: make the container (its directory and record), then run it
//! with the recipe of stage 05, keeping its record current as it goes.
//!
//! In the foreground, the `berth run` process itself waits for the
//! container. With `-d` it starts a *monitor* (`berth monitor ID`, a new
//! session, its own messages going to `monitor.log`) that does the waiting,
//! and returns as soon as the monitor says the container runs.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, kill};
use nix::unistd::pipe2;
use stage01_chroot::Error;
use stage02_namespaces::{IdMap, IdMaps, hostname, supervise};
use stage03_cgroups::{cgroup, report};
use stage04_images::image::{self, Image};
use stage04_images::overlay::overlay_mount;
use stage05_networks::attach::{Attachment, Plug, attach, veth_name};
use stage05_networks::firewall::{self, Protocol};
use stage05_networks::hosts::NameFiles;
use stage05_networks::network::Network;

use crate::Engine;
use crate::bundle::{self, EngineContainer};
use crate::harden;
use crate::logfile::{self, Log, Stream};
use crate::record::{Plugged, Proc, Record, Spec, Status, now};
use crate::{control, events, runtime, terminal, tiny, volume};

/// What `berth run` prints its warnings as.
const PROGRAM: &str = "berth";

// ANCHOR: create
/// Check everything that can be checked, then make the container: its
/// directory and its record, under the containers' lock (names are unique).
pub fn create(engine: &Engine, name: Option<String>, mut spec: Spec) -> Result<Record, Error> {
    check_stdio(&spec)?;
    let networks = networks_of(engine, &spec)?;
    publish_of(&spec, networks.first())?;
    let store = engine.root.store()?;
    let image = Image::open(&store, &spec.image)?;
    // Its mounts, checked, and new volumes made aside (see `volume`).
    let image_volumes: Vec<String> = image
        .config
        .config
        .as_ref()
        .and_then(|c| c.volumes.as_ref())
        .map(|v| v.keys().cloned().collect())
        .unwrap_or_default();
    let layers = || image.unpacked_layers(&store, &engine.root.layers());
    let mounts = std::mem::take(&mut spec.mounts);
    let planned = volume::plan(engine, mounts, &image_volumes, layers, spec.userns)?;
    spec.mounts = planned.mounts.clone();

    let lock = engine.containers.lock()?;
    engine.containers.index_names()?;
    if let Some(name) = &name
        && let Some(owner) = engine.containers.named(name)?
    {
        return Err(Error::Other(format!(
            "the name {name} is taken by container {}; remove it (berth rm {name}) or choose another --name",
            owner.id
        )));
    }
    let id = hostname::generate().map_err(|e| Error::io("read", "/dev/urandom", e))?;
    if let Some(name) = &name {
        engine.containers.link_name(name, &id)?; // before the record: see `named`
    }
    let record = Record::new(id, name, spec);
    let made = planned.make(engine, &lock)?; // its volumes, in place
    if let Err(err) = engine.containers.add(&record) {
        return Err(made.undo(engine, err)); // its directory and record, at once
    }
    events::emit(engine, &record, "create", &[]);
    Ok(record)
}
// ANCHOR_END: create

/// `-i` needs a caller to talk to: in the foreground, or through `berth
/// attach`, which attaches to a terminal (`-dit`).
fn check_stdio(spec: &Spec) -> Result<(), Error> {
    if spec.detached {
        if spec.interactive && !spec.tty {
            return Err(Error::Other(
                "-di: berth attaches only to a container's terminal: use -dit (or drop -i)".into(),
            ));
        }
        return Ok(()); // no terminal of ours needed: its monitor makes one
    }
    terminal::check(spec.interactive, spec.tty)
}

/// The networks the spec asks for, its first first (none for `--network
/// none`).
fn networks_of(engine: &Engine, spec: &Spec) -> Result<Vec<Network>, Error> {
    let names = spec.networks();
    if spec.connected.iter().any(|n| n == "none") || spec.network == "none" && !names.is_empty() {
        return Err(Error::Other(
            "--network none means no network: don't name others with it".into(),
        ));
    }
    if let Some(twice) = (names.iter().enumerate()).find(|(i, n)| names[..*i].contains(n)) {
        return Err(Error::Other(format!(
            "network {} is named twice: a container joins a network once",
            twice.1
        )));
    }
    names.iter().map(|name| engine.networks.get(name)).collect()
}

fn publish_of(spec: &Spec, network: Option<&Network>) -> Result<Vec<(Protocol, u16, u16)>, Error> {
    if network.is_none() && !spec.publish.is_empty() {
        return Err(Error::Other(
            "-p needs a network: drop --network none".into(),
        ));
    }
    spec.publish
        .iter()
        .map(|p| firewall::parse_publish(p))
        .collect()
}

/// Who is waiting to hear that the container runs: nobody (foreground), or
/// `berth run -d` at the other end of a pipe.
pub enum Ready {
    Nobody,
    Pipe(File),
}

impl Ready {
    /// The monitor's end of the pipe, passed as file descriptor `fd`.
    pub fn from_fd(fd: i32) -> Result<Ready, Error> {
        // Not to be inherited by the container's command.
        nix::fcntl::fcntl(
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .map_err(|e| Error::Other(format!("--ready-fd {fd}: {e}")))?;
        // SAFETY: the fd was given to us by `detach` for this and nothing else.
        Ok(Ready::Pipe(unsafe { File::from_raw_fd(fd) }))
    }

    /// Say `message`, once; false if the one waiting for it is gone (the
    /// pipe's reader was killed: EPIPE).
    fn tell(&mut self, message: &str) -> bool {
        let heard = match self {
            Ready::Pipe(pipe) => writeln!(pipe, "{message}").is_ok(),
            Ready::Nobody => true,
        };
        *self = Ready::Nobody; // said once
        heard
    }
}

// ANCHOR: execute
/// Run a created container until it ends; its exit code. Afterwards the
/// record says how it ended. A new container whose command never started
/// is gone again (the exit code is init's: 125, 126 or 127), and so is one
/// whose `run -d` died before it heard that the container runs: nobody
/// would ever learn its ID.
pub fn execute(engine: &Engine, mut record: Record, mut ready: Ready) -> Result<u8, Error> {
    let first_run = record.state.runs == 0;
    // Take it on: from here, what the record lists is ours to clean up.
    let plan = match plan(engine, &record).and_then(|plan| claim(engine, &mut record, plan)) {
        Ok(plan) => plan,
        Err(err) => {
            ready.tell(&err.to_string());
            if first_run {
                // Unless another monitor runs it (then this fails). Its
                // anonymous volumes go with it: nobody can name them.
                let _ = control::remove(engine, &record, false, true);
            }
            return Err(err);
        }
    };
    let result = run_container(engine, &mut record, plan, &mut ready);
    let code = match &result {
        Ok(ended) => ended.code,
        Err(err) => err.exit_code(),
    };
    if let Err(err) = &result {
        ready.tell(&err.to_string());
    }
    if record.state.status == Status::Running {
        record.state.status = Status::Stopped;
        record.state.finished = Some(now());
        record.state.exit_code = Some(code);
    }
    // One that `berth start` ran again stays, whatever happened.
    let keep = match &result {
        Ok(ended) if !ended.abandoned => !record.spec.auto_remove,
        _ => !first_run,
    };
    if let Err(err) = finish(engine, &mut record, keep) {
        eprintln!("{PROGRAM}: warning: {err}");
    }
    result.map(|ended| ended.code)
}

/// How a run ended.
struct Ended {
    code: u8,
    /// `run -d` was gone before it heard "running", so the container was
    /// taken down.
    abandoned: bool,
}

/// What a run will make on the host, known before any of it is made.
struct Plan {
    /// Its networks, in the order of its interfaces (eth0 first).
    networks: Vec<Network>,
    publish: Vec<(Protocol, u16, u16)>,
    cgroup_name: String,
}

fn plan(engine: &Engine, record: &Record) -> Result<Plan, Error> {
    let networks = networks_of(engine, &record.spec)?;
    let publish = publish_of(&record.spec, networks.first())?;
    Ok(Plan {
        networks,
        publish,
        cgroup_name: format!("berth-{}", record.id),
    })
}

// ANCHOR: claim
/// Take the container on as its monitor, and write down what this run
/// will make on the host before any of it exists (write-ahead): if we are
/// killed halfway, whoever finds us dead removes what the record lists
/// (`control::clean_up`). What an earlier run left goes first.
fn claim(engine: &Engine, record: &mut Record, plan: Plan) -> Result<Plan, Error> {
    let _lock = engine.containers.lock()?;
    // `rm -f` may have removed it since it was made.
    let mut current = engine.containers.get(&record.id)?.ok_or_else(|| {
        Error::Other(format!(
            "container {} was removed before it could start",
            record.display_name()
        ))
    })?;
    let me = std::process::id() as i32;
    // (A monitor running its container again, `--restart`, is that monitor.)
    let ours = current.state.monitor.is_some_and(|m| m.pid == me);
    if current.monitor_alive() && !ours {
        return Err(Error::Other(format!(
            "container {} is already running or starting",
            record.display_name()
        )));
    }
    control::clean_up(engine, &mut current)?;
    let monitor = Proc::of(me)
        .ok_or_else(|| Error::Other(format!("read the start time of our own process {me}")))?;
    current.state.monitor = Some(monitor);
    current.state.plugged = (plan.networks.iter().enumerate())
        .map(|(slot, network)| Plugged {
            network: network.name.clone(),
            veth: veth_name(&current.id, slot),
            ports: slot == 0 && !plan.publish.is_empty(),
            slot,
            address: None,
        })
        .collect();
    engine.containers.save_state(&current)?;
    *record = current;
    Ok(plan)
}
// ANCHOR_END: claim

/// Stage 05's recipe, keeping the record current as it goes: what it made
/// is forgotten once it is removed again.
fn run_container(
    engine: &Engine,
    record: &mut Record,
    plan: Plan,
    ready: &mut Ready,
) -> Result<Ended, Error> {
    let spec = record.spec.clone();
    let (id, name) = (record.id.clone(), record.name.clone());
    let Plan {
        networks,
        publish,
        cgroup_name,
        ..
    } = plan;

    // The image, as in stage 04.
    let store = engine.root.store()?;
    let image = Image::open(&store, &spec.image)?;
    let layers = image.unpacked_layers(&store, &engine.root.layers())?;
    let process = image::process(&image.config, &spec.overrides())?;
    let (terminal, stdio) = terminal::streams(spec.interactive, spec.tty)?;
    // Its log, and (without a terminal) pipes for its output to pass
    // through a relay that writes the log's entries.
    let log_file = logfile::open(&engine.containers.log_path(&id))?;
    let log = Log::new(
        log_file
            .try_clone()
            .map_err(|e| Error::Other(format!("duplicate the log: {e}")))?,
    );
    let pipes = match terminal {
        Some(_) => None,
        // (A detached one's monitor has stdout and stderr in one file, its
        // own log, but nobody watches their order there.)
        None => Some(logfile::Pipes::new(
            !spec.detached && logfile::stdout_is_stderr(),
        )?),
    };
    // A detached container's init becomes the tiny program once the
    // command runs, and so does its monitor (see `become_waiter`).
    // (One with a terminal keeps its monitor as berth, which serves the
    // terminal to `berth attach`: see `attach`.)
    let tiny = match spec.detached && !spec.tty {
        true => Some(std::sync::Arc::new(tiny::program()?)),
        false => None,
    };

    // Its names and its root, as in stage 05, and all the rest: written
    // down as the container's bundle, which the runtime makes.
    let dirs = engine.containers.dirs(&id);
    let user_map = spec.userns.then_some(IdMaps::same(IdMap::DEFAULT));
    if let Some(maps) = user_map {
        // Its init, host user 100000, attaches its root in there (stage 04).
        dirs.open_to(engine.root.dir(), maps.gid.to_host(0))?;
    }
    // The name, where it can be a hostname (Docker's names may hold '_').
    let hostname = spec
        .hostname
        .clone()
        .or(name.clone().filter(|n| hostname::parse(n).is_ok()))
        .unwrap_or(id.clone());
    let files = NameFiles::in_dir(&dirs.dir);
    files.write(&hostname)?;
    files.add(&spec.extras.add_hosts, &spec.extras.dns)?;
    // On one network with no lines of its own, its /etc/hosts is the
    // network's file (see stage 05's hosts.rs); else a file of its own.
    if let [network] = &networks[..]
        && spec.extras.add_hosts.is_empty()
    {
        files.share(&engine.networks.hosts(network).file()?)?;
    }
    let limits = spec.limits();
    let mounts = volume::oci_mounts(engine, &spec.mounts, user_map)?;
    let config = bundle::spec_of(&EngineContainer {
        id: &id,
        process: &process,
        hostname: &hostname,
        layers: &layers,
        rootfs: &dirs.merged,
        root_mount: &overlay_mount(&layers, &dirs)?,
        binds: &files.binds(),
        mounts: &mounts,
        keep: harden::capabilities(&spec.cap_add, &spec.cap_drop)?,
        limits,
        privileged: spec.privileged,
        user_map,
        extras: &spec.extras,
    })?;
    bundle::write(&dirs.dir, &config)?;

    // The runtime makes it (namespaces, cgroup, root) and leaves its init
    // waiting at the gate; we plug it into its network; then it may go.
    let runtime_root = engine.root.dir();
    let options = runtime::CreateOptions {
        bundle: &dirs.dir,
        id: &id,
        pid_file: None,
        console_socket: None,
    };
    let parts = runtime::EngineParts {
        stdio,
        init_program: tiny.clone(),
    };
    let lent = pipes.as_ref().map(logfile::Pipes::lend).transpose()?;
    let created = runtime::create_for_engine(runtime_root, &options, parts);
    drop(lent); // our stdout and stderr are ours again
    let init = created.map_err(|err| {
        match err {
            // `run -d` reports it with the code, as Docker does.
            Error::FromContainer { code, message } => Error::FromContainer {
                code,
                message: format!("{message} (exit status {code})"),
            },
            other => other,
        }
    })?;
    let readers = pipes.map(logfile::Pipes::readers);
    let plug = Plug {
        program: PROGRAM,
        networks: &engine.networks,
        network: networks.first(),
        id: &id,
        name: name.as_deref(),
        publish: &publish,
        containers: engine.containers.dir(),
        lease_owner: std::process::id() as i32, // we wait for it
    };
    let mut attachments = Vec::new();
    for (slot, network) in networks.iter().enumerate() {
        attachments.push(attach(&plug, network, slot, init)?);
    }
    mark_running(engine, record, &attachments)?;
    runtime::start(runtime_root, &id)?;
    let abandoned = !ready.tell("running");
    if abandoned {
        // `run -d` was killed before it heard: take the container down.
        let _ = kill(init, Signal::SIGKILL);
    }
    let (relay, served) = match (terminal, spec.detached) {
        (Some(t), false) => {
            let writer = log.writer(Stream::Stdout);
            (Some(t.relay(spec.interactive, Some(writer))?), None)
        }
        (Some(t), true) => {
            let socket = dirs.dir.join(crate::attach::SOCKET);
            let writer = log.writer(Stream::Stdout);
            (None, Some(t.serve(spec.interactive, writer, &socket)?))
        }
        (None, _) => (None, None),
    };
    if let Some(tiny) = tiny.filter(|_| !abandoned) {
        let err = become_waiter(engine, &id, init, &tiny, &log_file, readers.as_ref());
        eprintln!("{PROGRAM}: warning: {err}; waiting as berth instead");
    }
    // In the foreground (or if the monitor could not become the tiny
    // program), berth relays: to the log, and in the foreground also to
    // our own stdout and stderr.
    let output = readers.map(|(out, err)| {
        let mut pipes = vec![(Stream::Stdout, out.into())];
        pipes.extend(err.map(|err| (Stream::Stderr, err.into())));
        logfile::Relay::start(pipes, &log, !spec.detached)
    });

    let status = supervise::supervise(init)
        .map_err(|e| Error::Other(format!("wait for the container: {e}")))?;
    let code = stage01_chroot::exit::exit_code(status);
    if let Some(relay) = relay {
        relay.finish();
    }
    if let Some(served) = served {
        served.finish();
    }
    if let Some(output) = output {
        output.finish();
    }
    // Read what the kernel counted, and have the runtime remove the rest.
    // Its networks are unplugged (veth, lease, ports, names) as the record
    // lists them (`finish`): it may have been connected to more, or
    // disconnected, while it ran.
    attachments.into_iter().for_each(Attachment::keep);
    let usage = usage_of(runtime_root, &id);
    if let Err(err) = runtime::delete(runtime_root, &id, true) {
        eprintln!("{PROGRAM}: warning: {err}"); // its state stays, for `berth rm`
    }
    match usage {
        Ok(usage) => {
            record.state.oom_killed = usage.oom_kills > 0;
            report(PROGRAM, &cgroup_name, &limits, &usage, code, spec.stats);
        }
        Err(err) => eprintln!("{PROGRAM}: warning: {err}"),
    }
    Ok(Ended { code, abandoned })
}

// ANCHOR: become_waiter
/// A detached container runs: all that is left for its monitor is to wait
/// for it (conmon's job), and a copy of berth costs megabytes for that. So
/// the monitor becomes the tiny program: same process (init stays our
/// child), a few pages of memory. It relays the container's output pipes
/// (`readers`) into its log until they close, then waits for init. When
/// init ends, the tiny program execs berth again as `berth monitor-finish
/// ID CODE`, which records the exit code and cleans up from the record
/// ([`conclude`]). Returns only why that could not happen.
fn become_waiter(
    engine: &Engine,
    id: &str,
    init: nix::unistd::Pid,
    tiny: &OwnedFd,
    log: &File,
    readers: Option<&(OwnedFd, Option<OwnedFd>)>,
) -> Error {
    // Ourselves, to come back to: the read-only view we run from.
    let berth = match nix::fcntl::open(
        crate::guard::OUR_BINARY,
        nix::fcntl::OFlag::O_PATH,
        nix::sys::stat::Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(e) => return Error::io("open", crate::guard::OUR_BINARY, e.into()),
    };
    // The files the tiny program relays: kept open across exec.
    let mut relay: Vec<std::ffi::OsString> = Vec::new();
    if let Some((out, Some(err))) = readers {
        for fd in [log.as_raw_fd(), out.as_raw_fd(), err.as_raw_fd()] {
            // SAFETY: our own open descriptors, only their close-on-exec flag changes.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            let inherit = nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty());
            if let Err(e) = nix::fcntl::fcntl(fd, inherit) {
                return Error::Other(format!("keep the log open for the tiny program: {e}"));
            }
            relay.push(fd.as_raw_fd().to_string().into());
        }
    }
    let mode = match relay.is_empty() {
        true => "wait",
        false => "log",
    };
    let args = [
        vec![mode.into(), init.to_string().into()],
        relay,
        vec![
            berth.as_raw_fd().to_string().into(),
            std::env::args_os().next().unwrap_or("berth".into()),
            "--root".into(),
            engine.root.dir().as_os_str().to_owned(),
            "monitor-finish".into(),
            id.into(),
        ],
    ]
    .concat();
    tiny::become_program(tiny, "berth-monitor", args)
}

/// `berth monitor-finish ID CODE`: what the monitor of a detached container
/// does once the tiny program saw it end: what the kernel counted, the exit
/// code in the record, then the cleanup (`control::clean_up` removes what
/// the record lists) and `--rm`; then, if its `--restart` policy says so,
/// it runs the container again (`restart::keep_restarting`).
pub fn conclude(engine: &Engine, id: &str, code: u8) -> Result<u8, Error> {
    let mut record = engine.containers.load(id)?;
    match usage_of(engine.root.dir(), id) {
        Ok(usage) => {
            record.state.oom_killed = usage.oom_kills > 0;
            let name = format!("berth-{id}");
            report(
                PROGRAM,
                &name,
                &record.spec.limits(),
                &usage,
                code,
                record.spec.stats,
            );
        }
        Err(err) => eprintln!("{PROGRAM}: warning: {err}"),
    }
    record.state.status = record
        .state
        .status
        .become_(Status::Stopped, &format!("container {id}"))?;
    record.state.finished = Some(now());
    record.state.exit_code = Some(code);
    let keep = !record.spec.auto_remove;
    finish(engine, &mut record, keep)?;
    crate::restart::keep_restarting(engine, id, code)
}

/// `berth monitor ID`: run the container (`run -d`, `start`); if the run
/// ends here rather than in the tiny waiter, the restart policy too.
pub fn monitor(engine: &Engine, id: &str, ready: Ready) -> Result<u8, Error> {
    let code = execute(engine, engine.containers.load(id)?, ready)?;
    crate::restart::keep_restarting(engine, id, code)
}
// ANCHOR_END: become_waiter

/// What the kernel counted in the container's cgroup (its runtime knows
/// where that is), before the runtime removes it.
fn usage_of(runtime_root: &std::path::Path, id: &str) -> Result<cgroup::Usage, Error> {
    let cgroups = runtime::processes_of(runtime_root, id)?.map(|p| p.cgroups);
    cgroup::open(&cgroups.unwrap_or_default())?.usage()
}

/// Everything is in place and the command may start: say so in the record.
fn mark_running(
    engine: &Engine,
    record: &mut Record,
    attachments: &[Attachment],
) -> Result<(), Error> {
    let mut running = record.clone();
    running.state.status = (record.state.status).become_(
        Status::Running,
        &format!("container {}", record.display_name()),
    )?;
    running.state.address = attachments.first().map(|a| a.address());
    for plugged in &mut running.state.plugged {
        let attached = attachments.iter().find(|a| a.slot() == plugged.slot);
        plugged.address = attached.map(|a| a.address());
    }
    running.state.started = Some(now());
    running.state.runs += 1;
    engine.containers.save_state(&running)?;
    *record = running;
    events::emit(engine, record, "start", &[]);
    Ok(())
}

/// The run is over: remove what it left (usually nothing: it cleaned up
/// as it went), then keep the record or remove the container. If something
/// can't be removed, the record stays and lists it, for `berth rm`.
fn finish(engine: &Engine, record: &mut Record, keep: bool) -> Result<(), Error> {
    let code = record.state.exit_code.unwrap_or(0).to_string();
    events::emit(engine, record, "die", &[("exitCode", code)]);
    let lock = engine.containers.lock()?;
    take_changes_made_meanwhile(engine, record)?;
    control::clean_up(engine, record)?;
    match keep {
        true => engine.containers.save_state(record),
        // `--rm` takes its anonymous volumes along, as Docker's does.
        false => {
            engine.containers.remove(record)?;
            events::emit(engine, record, "destroy", &[]);
            volume::remove_anonymous(engine, record, &lock)
        }
    }
}
// ANCHOR_END: execute

/// While it ran, other berth commands may have changed its record: a new
/// name (`rename`), networks connected or disconnected. Take theirs, with
/// how this run ended. The caller holds the containers' lock.
fn take_changes_made_meanwhile(engine: &Engine, record: &mut Record) -> Result<(), Error> {
    let Some(mut current) = engine.containers.get(&record.id)? else {
        return Ok(()); // removed meanwhile (`rm -f`): ours is all there is
    };
    current.state.status = record.state.status;
    current.state.finished = record.state.finished;
    current.state.exit_code = record.state.exit_code;
    current.state.oom_killed = record.state.oom_killed;
    *record = current;
    Ok(())
}

// ANCHOR: detach
/// `berth run -d`: hand the container to a monitor process of its own, in
/// a new session, writing the container's output to its log; return once
/// the monitor says it runs (or why it could not start).
pub fn detach(engine: &Engine, record: &Record) -> Result<(), Error> {
    let result = start_monitor(engine, record);
    if result.is_err() && record.state.runs == 0 {
        // The monitor removes a new container that never ran; if the
        // monitor never ran, or was killed, that is up to us (it has exited
        // by now).
        if let Err(err) = control::remove(engine, record, false, true) {
            eprintln!("{PROGRAM}: warning: {err}");
        }
    }
    result
}

fn start_monitor(engine: &Engine, record: &Record) -> Result<(), Error> {
    // The monitor's own messages go to a file of their own: the container's
    // log holds only what the container wrote (the relay writes it).
    let log_path = engine.containers.monitor_log_path(&record.id);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::io("create log", &log_path, e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| Error::io("open log", &log_path, e))?;
    let (mut monitor, answer) = spawn_monitor(
        &[
            "--root".as_ref(),
            engine.root.dir().as_os_str(),
            "monitor".as_ref(),
            "--ready-fd".as_ref(),
            "3".as_ref(),
            record.id.as_ref(),
        ],
        Stdio::null(),
        (log.into(), log_err.into()),
    )?;
    if answer == "running\n" {
        return Ok(()); // the monitor stays behind, in its own session
    }
    let _ = monitor.wait();
    Err(Error::Other(match answer.trim() {
        "" => format!(
            "the container's monitor ended before the container ran; its output was in {}",
            log_path.display()
        ),
        said => said.to_string(),
    }))
}

/// Start berth again with `args`, as a monitor: in a session of its own
/// (no terminal, no signals from ours), with the write end of a pipe as
/// its fd 3. Returns it and the first line it writes there.
pub fn spawn_monitor(
    args: &[&std::ffi::OsStr],
    stdin: Stdio,
    (stdout, stderr): (Stdio, Stdio),
) -> Result<(Child, String), Error> {
    let (read_end, write_end) =
        pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::Other(format!("pipe: {e}")))?;
    let write_fd = write_end.as_raw_fd();
    // Our own binary, through /proc/self/exe: the read-only view of it we
    // run from (see `guard`), named as we were, so that `ps` shows "berth".
    let berth = crate::guard::OUR_BINARY;
    let mut command = Command::new(berth);
    command
        .arg0(std::env::args_os().next().unwrap_or("berth".into()))
        .args(args)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The pipe's write end as fd 3, kept open across exec.
            let moved = match write_fd {
                3 => libc::fcntl(3, libc::F_SETFD, 0),
                _ => libc::dup2(write_fd, 3),
            };
            match moved < 0 {
                true => Err(std::io::Error::last_os_error()),
                false => Ok(()),
            }
        });
    }
    let monitor = command
        .spawn()
        .map_err(|e| Error::io("start the monitor", berth, e))?;
    drop(write_end);
    let mut answer = String::new();
    let _ = BufReader::new(File::from(read_end)).read_line(&mut answer);
    Ok((monitor, answer))
}
// ANCHOR_END: detach

/// `berth start`: run a stopped container again, detached, on the files it
/// left (its upper directory is kept), like `docker start`. If its last
/// monitor was killed, what that run left on the host goes first.
pub fn restart(engine: &Engine, record: &Record) -> Result<(), Error> {
    let again = {
        let _lock = engine.containers.lock()?;
        let mut again = engine.containers.load(&record.id)?;
        if again.monitor_alive() {
            return Ok(()); // running already, or starting
        }
        control::clean_up(engine, &mut again)?;
        // The user starts it: its restart policy applies again, counted
        // from zero (as Docker).
        engine.containers.clear_stopped_by_user(&again.id)?;
        // In the background; with its terminal, if it had one, for `attach`.
        again.spec.detached = true;
        let runs = again.state.runs;
        again.state = Record::new(String::new(), None, Spec::default()).state;
        again.state.runs = runs;
        engine.containers.save(&again)?;
        again
    };
    detach(engine, &again)
}
