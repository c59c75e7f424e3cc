//! `berth run`: make the container (its directory and record), then run it
//! with the recipe of stage 05, keeping its record current as it goes.
//!
//! In the foreground, the `berth run` process itself waits for the
//! container. With `-d` it starts a *monitor* (`berth monitor ID`, a new
//! session, its output going to the container's log) that does the waiting,
//! and returns as soon as the monitor says the container runs.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use nix::fcntl::OFlag;
use nix::unistd::pipe2;
use stage01_chroot::Error;
use stage02_namespaces::{Container, hostname, namespaces, supervise};
use stage03_cgroups::{cgroup, report};
use stage04_images::image::{self, Image};
use stage04_images::overlay::{ContainerDirs, overlay_mount};
use stage05_networks::attach::{Plug, attach};
use stage05_networks::firewall::{self, Protocol};
use stage05_networks::hosts::NameFiles;
use stage05_networks::network::Network;

use crate::Engine;
use crate::harden::{self, Hardening};
use crate::record::{Proc, Record, Spec, Status, now};
use crate::terminal;

/// What `berth run` prints its warnings as.
const PROGRAM: &str = "berth";

// ANCHOR: create
/// Check everything that can be checked, then make the container: its
/// directory and its record, under the containers' lock (names are unique).
pub fn create(engine: &Engine, name: Option<String>, spec: Spec) -> Result<Record, Error> {
    check_stdio(&spec)?;
    let network = network_of(engine, &spec)?;
    publish_of(&spec, network.as_ref())?;
    Image::open(&engine.root.store()?, &spec.image)?;

    let _lock = engine.containers.lock()?;
    if let Some(name) = &name
        && let Some(owner) = engine
            .containers
            .list()?
            .into_iter()
            .find(|r| r.name.as_ref() == Some(name))
    {
        return Err(Error::Other(format!(
            "the name {name} is taken by container {}; remove it (berth rm {name}) or choose another --name",
            owner.id
        )));
    }
    let id = hostname::generate().map_err(|e| Error::io("read", "/dev/urandom", e))?;
    let dirs = ContainerDirs::create(engine.containers.dir(), &id)?;
    let record = Record::new(id, name, spec);
    if let Err(err) = engine.containers.save(&record) {
        let _ = dirs.remove();
        return Err(err);
    }
    Ok(record)
}
// ANCHOR_END: create

/// `-i` and `-t` need a caller to talk to: berth has no `attach`.
fn check_stdio(spec: &Spec) -> Result<(), Error> {
    if spec.detached && (spec.interactive || spec.tty) {
        return Err(Error::Other(
            "-i and -t need the container in the foreground (berth has no attach): drop -d".into(),
        ));
    }
    terminal::check(spec.interactive, spec.tty)
}

/// The network the spec asks for (`None` for `--network none`).
fn network_of(engine: &Engine, spec: &Spec) -> Result<Option<Network>, Error> {
    match spec.network.as_str() {
        "none" => Ok(None),
        name => Ok(Some(engine.networks.get(name)?)),
    }
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

    fn tell(&mut self, message: &str) {
        if let Ready::Pipe(pipe) = self {
            let _ = writeln!(pipe, "{message}");
        }
        *self = Ready::Nobody; // said once
    }
}

// ANCHOR: execute
/// Run a created container until it ends; its exit code. Afterwards the
/// record says how it ended, or, if it never ran, the container is gone.
pub fn execute(engine: &Engine, mut record: Record, mut ready: Ready) -> Result<u8, Error> {
    let result = run_container(engine, &mut record, &mut ready);
    let ran = record.state.status == Status::Running;
    if ran {
        record.state.status = Status::Exited;
        record.state.finished = Some(now());
        record.state.exit_code = Some(match &result {
            Ok(code) => *code,
            Err(err) => err.exit_code(),
        });
        if let Err(err) = engine.containers.save(&record) {
            eprintln!("{PROGRAM}: warning: {err}");
        }
    } else if let Err(err) = &result {
        ready.tell(&err.to_string());
    }
    // A new container that never ran goes; one `berth start` failed to
    // run again stays, as it was.
    if (!ran && record.state.runs == 0) || (ran && record.spec.auto_remove) {
        let _lock = engine.containers.lock();
        if let Err(err) = engine.containers.remove(&record.id) {
            eprintln!("{PROGRAM}: warning: {err}");
        }
    }
    result
}

/// Stage 05's recipe, recording the container as running once it is.
fn run_container(engine: &Engine, record: &mut Record, ready: &mut Ready) -> Result<u8, Error> {
    let spec = record.spec.clone();
    let (id, name) = (record.id.clone(), record.name.clone());
    let network = network_of(engine, &spec)?;
    let publish = publish_of(&spec, network.as_ref())?;

    // The image, as in stage 04.
    let store = engine.root.store()?;
    let image = Image::open(&store, &spec.image)?;
    let layers = image.unpacked_layers(&store, &engine.root.layers())?;
    let mut process = image::process(&image.config, &spec.overrides())?;
    let (terminal, stdio) = terminal::streams(spec.interactive, spec.tty)?;
    process.stdio = stdio;
    let hardening = match spec.privileged {
        true => None,
        false => Some(Hardening::for_process(&mut process, true)?.into_before_exec()),
    };

    // Its names and its root, as in stage 05.
    let dirs = engine.containers.dirs(&id);
    let hostname = spec.hostname.clone().or(name.clone()).unwrap_or(id.clone());
    let files = NameFiles::in_dir(&dirs.dir);
    files.write(&hostname)?;
    let container = Container {
        rootfs: dirs.merged.clone(),
        root_mount: Some(overlay_mount(&layers, &dirs)?),
        binds: files.binds(),
        process,
        hostname,
        user_map: None,
        before_exec: hardening,
    };

    // Limits, namespaces, network; then it may go.
    supervise::block_signals().map_err(|e| Error::Other(format!("block signals: {e}")))?;
    if !spec.privileged {
        harden::protect_our_binary()?; // init, our clone, inherits it
    }
    let limits = spec.limits();
    let cgroup_name = format!("berth-{id}");
    let mut cgroup = cgroup::create(&cgroup_name, &limits)?;
    let started = namespaces::start(&container)?;
    drop(container); // its copy of the terminal, if any, is init's now
    cgroup.add_process(started.pid())?;
    let plug = Plug {
        program: PROGRAM,
        networks: &engine.networks,
        network: network.as_ref(),
        id: &id,
        name: name.as_deref(),
        publish: &publish,
        containers: engine.containers.dir(),
    };
    let attachment = match &network {
        Some(network) => Some(attach(&plug, network, &started)?),
        None => None,
    };
    let mut running = record.clone();
    running.state.status = Status::Running;
    running.state.monitor = Proc::of(std::process::id() as i32);
    running.state.init = Proc::of(started.pid().as_raw());
    running.state.address = attachment.as_ref().map(|a| a.address());
    running.state.started = Some(now());
    running.state.cgroups = cgroup.dirs();
    running.state.runs += 1;
    engine.containers.save(&running)?;
    *record = running;
    let waiting = started.resume()?;
    let command_started = waiting.command_started();
    if command_started {
        ready.tell("running");
    }
    let relay = terminal.map(|t| t.relay(spec.interactive)).transpose()?;

    let code = waiting.wait()?;
    if let Some(relay) = relay {
        relay.finish();
    }
    drop(attachment); // unplug: veth, lease, ports, names
    let usage = cgroup.usage();
    if let Err(err) = cgroup.remove() {
        eprintln!("{PROGRAM}: warning: {err}");
    }
    match usage {
        Ok(usage) => {
            record.state.oom_killed = usage.oom_kills > 0;
            report(PROGRAM, &cgroup_name, &limits, &usage, code, spec.stats);
        }
        Err(err) => eprintln!("{PROGRAM}: warning: {err}"),
    }
    if !command_started {
        // `run -d` waits to hear "running": tell it why not instead, in
        // init's words (the last line of the log).
        let log = std::fs::read_to_string(engine.containers.log_path(&id)).unwrap_or_default();
        let why = log.lines().last().unwrap_or("the command did not start");
        let why = why.strip_prefix(&format!("{PROGRAM}: ")).unwrap_or(why);
        ready.tell(&format!("{why} (exit status {code})"));
    }
    Ok(code)
}
// ANCHOR_END: execute

// ANCHOR: detach
/// `berth run -d`: hand the container to a monitor process of its own, in
/// a new session, writing the container's output to its log; return once
/// the monitor says it runs (or why it could not start).
pub fn detach(engine: &Engine, record: &Record) -> Result<(), Error> {
    let result = start_monitor(engine, record);
    if result.is_err() && record.state.runs == 0 {
        // The monitor removes a new container that never ran; if the
        // monitor itself never ran, that is up to us.
        let _lock = engine.containers.lock();
        let _ = engine.containers.remove(&record.id);
    }
    result
}

fn start_monitor(engine: &Engine, record: &Record) -> Result<(), Error> {
    let log_path = engine.containers.log_path(&record.id);
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
    // Our own binary: the path /proc/self/exe points at, so that `ps`
    // shows the monitor by its name.
    let berth = std::env::current_exe().map_err(|e| Error::io("find", "/proc/self/exe", e))?;
    let mut command = Command::new(&berth);
    command
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
        .map_err(|e| Error::io("start the monitor", &berth, e))?;
    drop(write_end);
    let mut answer = String::new();
    let _ = BufReader::new(File::from(read_end)).read_line(&mut answer);
    Ok((monitor, answer))
}
// ANCHOR_END: detach

/// `berth start`: run a stopped container again, detached, on the files it
/// left (its upper directory is kept), like `docker start`.
pub fn restart(engine: &Engine, record: &Record) -> Result<(), Error> {
    if record.is_running() {
        return Ok(());
    }
    let mut again = record.clone();
    again.spec.detached = true;
    again.spec.interactive = false;
    again.spec.tty = false;
    again.state = Record::new(String::new(), None, Spec::default()).state;
    again.state.runs = record.state.runs;
    engine.containers.save(&again)?;
    detach(engine, &again)
}
