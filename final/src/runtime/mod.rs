//! `berth-runtime`: berth as an OCI runtime, in runc's shape, on a
//! *bundle* (a directory with a `config.json` and a root file system, as
//! `umoci unpack`, Podman or containerd make).
//!
//! This is the interface Podman (through conmon) and containerd (through
//! its shim) use to drive runc, and runc's process model with it. `create`
//! clones the container's init, which sets the container up (mounts,
//! root, hostname) and tells `create` it is ready or why it failed; then
//! `create` exits and init waits, adopted by whoever adopts orphans for
//! the caller (its *subreaper*: conmon, the shim), on a FIFO in the
//! container's state directory. `start` opens that FIFO: init execs the
//! command, which is then the container's PID 1, a child of the caller's
//! side with no berth process in between, so the caller sees it exit.
//!
//! Everything in config.json that berth cannot honour is refused at
//! `create`, by name (see `config`).

mod config;
mod hooks;
mod resources;
pub mod seccomp;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::{OFlag, openat};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::stat::Mode;
use nix::unistd::{Pid, mkfifo};
use serde::{Deserialize, Serialize};
use stage01_chroot::Error;
use stage02_namespaces::{AfterGate, Gate, ProcessStdio, supervise};
use stage03_cgroups::cgroup;
use stage04_images::store::replace_atomic;

use crate::exec::{Entry, Step};
use crate::harden::{self, Hardening};
use crate::record::{Proc, now};
use crate::status::Status;

/// The runtime spec version we report.
const OCI_VERSION: &str = "1.0.2";

/// The FIFO init waits on until `start`, in the container's state directory.
const EXEC_FIFO: &str = "exec.fifo";

// ---- the state berth keeps per container ----

/// `<root>/runtime/<id>/state.json`, written before each step that makes
/// something (so that `delete` knows what to remove if `create` is killed).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RuntimeState {
    id: String,
    bundle: PathBuf,
    status: Status,
    /// The container's first process: init, then the command it became.
    init: Option<Proc>,
    /// The `create` that is making it, while it is `creating`.
    creator: Option<Proc>,
    /// Its cgroup directories, written down before they are made.
    cgroups: Vec<PathBuf>,
    created: u64,
    annotations: BTreeMap<String, String>,
}

/// The runtime containers of one root (`--root`).
pub struct Runtime {
    dir: PathBuf,
}

impl Runtime {
    pub fn open(root: &Path) -> Runtime {
        Runtime {
            dir: root.join("runtime"),
        }
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Whether anything of container `id` is here.
    pub fn has(&self, id: &str) -> bool {
        self.container_dir(id).exists()
    }

    fn load(&self, id: &str) -> Result<RuntimeState, Error> {
        let path = self.container_dir(id).join("state.json");
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            // A `create` killed before it wrote anything left only its
            // directory: a stopped container with nothing else to remove.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound && self.container_dir(id).is_dir() =>
            {
                return Ok(RuntimeState {
                    id: id.to_string(),
                    bundle: PathBuf::new(),
                    status: Status::Stopped,
                    init: None,
                    creator: None,
                    cgroups: Vec::new(),
                    created: 0,
                    annotations: BTreeMap::new(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Other(format!("container {id} does not exist")));
            }
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| Error::Other(format!("{}: {e}", path.display())))
    }

    fn save(&self, state: &RuntimeState) -> Result<(), Error> {
        let bytes = serde_json::to_vec_pretty(state)
            .map_err(|e| Error::Other(format!("encode the state of {}: {e}", state.id)))?;
        // Not synced: what it describes dies with the machine.
        replace_atomic(&self.container_dir(&state.id).join("state.json"), &bytes)
    }

    /// The state with its status as it is now.
    fn current(&self, id: &str) -> Result<RuntimeState, Error> {
        let mut state = self.load(id)?;
        let init_alive = state.init.is_some_and(|p| p.alive());
        state.status = match state.status {
            Status::Creating if state.creator.is_some_and(|p| p.alive()) => Status::Creating,
            Status::Creating => Status::Stopped, // its `create` was killed
            _ if !init_alive => Status::Stopped,
            _ if self.container_dir(id).join(EXEC_FIFO).exists() => Status::Created,
            Status::Paused => Status::Paused,
            _ => Status::Running,
        };
        Ok(state)
    }
}

/// What the runtime knows of a container's processes: its init and its
/// cgroups. Berth's engine keeps no copy of these in its records (one
/// store: each fact is written in one place), it asks here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processes {
    pub status: Status,
    /// `None` while `create` has not cloned it yet.
    pub init: Option<Proc>,
    pub cgroups: Vec<PathBuf>,
}

/// A bundle's config.json as `create` reads it, taken as far as the
/// container it describes (namespaces, mounts, capabilities, seccomp
/// filters, devices, limits), without making anything: for the fuzz target
/// `runtime_config` and its regression tests. `bundle` must hold a
/// `rootfs` directory.
#[doc(hidden)]
pub fn check_config(bytes: &[u8], bundle: &Path) -> Result<(), Error> {
    let config = config::parse_config(bytes, &bundle.join("config.json"))?;
    let _ = resources::resources_of(config.linux.resources.as_ref());
    config::container_of(&config, bundle, ProcessStdio::Inherit, None).map(drop)
}

/// Whether container `id` was paused (and not resumed since), as its state
/// says: for a caller that knows it runs (`ps`, at every container), without
/// asking /proc again whether its init lives.
pub fn is_paused(root: &Path, id: &str) -> bool {
    Runtime::open(root)
        .load(id)
        .is_ok_and(|state| state.status == Status::Paused)
}

/// The processes of container `id`, if the runtime has it (`None` once it
/// was deleted, or before it was created).
pub fn processes_of(root: &Path, id: &str) -> Result<Option<Processes>, Error> {
    let runtime = Runtime::open(root);
    let state = match runtime.current(id) {
        Ok(state) => state,
        Err(_) if !runtime.has(id) => return Ok(None), // deleted, or never made
        Err(err) => return Err(err),
    };
    Ok(Some(Processes {
        status: state.status,
        init: state.init,
        cgroups: state.cgroups,
    }))
}

// ---- the lifecycle ----

/// What `create` (and `run`) is given.
pub struct CreateOptions<'a> {
    pub bundle: &'a Path,
    pub id: &'a str,
    pub pid_file: Option<&'a Path>,
    pub console_socket: Option<&'a Path>,
}

/// Who creates the container, and so how its init behaves.
enum Caller {
    /// `create`: it exits, and the container is adopted by its subreaper.
    Leaves,
    /// `run` in the foreground, a build's `RUN`: it waits for the
    /// container, which dies with it, even if it is killed.
    Stays,
    /// berth's engine, for a container of its own: it stays too, gives the
    /// process its stdio, and init stays the command's init.
    Engine(EngineParts),
}

/// What berth's engine adds to a container of its own (`create_for_engine`).
pub struct EngineParts {
    /// The process's stdio: the engine's pseudo-terminal, or no input.
    pub stdio: ProcessStdio,
    /// The tiny program init becomes once the command runs.
    pub init_program: Option<Arc<OwnedFd>>,
}

// ANCHOR: create
/// `berth-runtime create --bundle DIR ID`: make the container, its init set
/// up and waiting for `start`; init's PID.
pub fn create(root: &Path, options: &CreateOptions) -> Result<Pid, Error> {
    create_for(root, options, Caller::Leaves).map_err(in_runcs_words)
}

/// `create` for a build's `RUN`: its init waits at the gate as our child
/// (so the engine can plug it into a network first), dies with us, and
/// becomes the command, PID 1, as under runc.
pub fn create_staying(root: &Path, options: &CreateOptions) -> Result<Pid, Error> {
    create_for(root, options, Caller::Stays).map_err(in_runcs_words)
}

/// `create` for a container of berth's own engine: its init waits at the
/// gate as our child (for `start`), and dies with us.
pub fn create_for_engine(
    root: &Path,
    options: &CreateOptions,
    parts: EngineParts,
) -> Result<Pid, Error> {
    create_for(root, options, Caller::Engine(parts))
}

fn create_for(root: &Path, options: &CreateOptions, caller: Caller) -> Result<Pid, Error> {
    let id = options.id;
    check_id(id)?;
    let bundle = std::fs::canonicalize(options.bundle)
        .map_err(|e| Error::io("open bundle", options.bundle, e))?;
    let config = config::read_config(&bundle)?; // refuse what we can't run before making anything
    if config.process.terminal != options.console_socket.is_some() {
        return Err(Error::Other(match config.process.terminal {
            true => "config.json asks for a terminal (process.terminal): give --console-socket, \
                     where the caller will receive it"
                .into(),
            false => "--console-socket is given but config.json's process.terminal is false".into(),
        }));
    }
    let runtime = Runtime::open(root);
    let dir = runtime.container_dir(id);
    std::fs::create_dir_all(&runtime.dir).map_err(|e| Error::io("create", &runtime.dir, e))?;
    std::fs::create_dir(&dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => Error::Other(format!("container {id} already exists")),
        _ => Error::io("create", &dir, e),
    })?;
    let mut state = RuntimeState {
        id: id.to_string(),
        bundle: bundle.clone(),
        status: Status::Creating,
        init: None,
        creator: Proc::of(std::process::id() as i32),
        cgroups: Vec::new(),
        created: now(),
        annotations: config.annotations.clone(),
    };
    match make(
        &runtime,
        &mut state,
        &config,
        options.console_socket,
        caller,
    ) {
        Ok(pid) => {
            if let Some(pid_file) = options.pid_file {
                replace_atomic(pid_file, pid.to_string().as_bytes())?;
            }
            Ok(pid)
        }
        Err(err) => {
            let _ = cgroup::remove_leftovers(&mut state.cgroups);
            let _ = std::fs::remove_dir_all(&dir);
            Err(err)
        }
    }
}

/// The steps of `create`, each written down before it is taken.
fn make(
    runtime: &Runtime,
    state: &mut RuntimeState,
    config: &config::Config,
    console_socket: Option<&Path>,
    caller: Caller,
) -> Result<Pid, Error> {
    let dir = runtime.container_dir(&state.id);
    let fifo = dir.join(EXEC_FIFO);
    mkfifo(&fifo, Mode::S_IRUSR | Mode::S_IWUSR)
        .map_err(|e| Error::io("mkfifo", &fifo, e.into()))?;
    // Init opens it as the container's root, which with a user namespace
    // is another user of the host's: it must be able to pass through the
    // directory and own the FIFO.
    if let Some(maps) = config::user_map_of(config)? {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| Error::io("chmod", &dir, e))?;
        let (uid, gid) = (maps.uid.to_host(0), maps.gid.to_host(0));
        std::os::unix::fs::chown(&fifo, Some(uid), Some(gid))
            .map_err(|e| Error::io("chown", &fifo, e))?;
    }
    // The cgroup: where config.json says (runc's default, "berth-ID", if it
    // says nothing: below our own cgroup on v1, beside it on v2, see
    // stage03's layout::v2_containers_dir), written down before it is made.
    let path = match &config.linux.cgroups_path {
        Some(path) => path.clone(),
        None => PathBuf::from(format!("berth-{}", state.id)),
    };
    let target = cgroup::target(&path)?;
    let resources = resources::with_default_devices(
        resources::resources_of(config.linux.resources.as_ref()),
        &config.linux.devices,
    );
    target.check(&resources)?;

    let stdio = match &caller {
        Caller::Engine(parts) => parts.stdio.clone(),
        _ => stdio_of(console_socket, config.process.console_size)?,
    };
    let gate = exec_gate(&dir, &caller, &config.hooks)?;
    let mut container = config::container_of(config, &state.bundle, stdio, Some(gate))?;
    if let (Caller::Engine(parts), Some(before_exec)) = (&caller, &mut container.before_exec) {
        before_exec.init_program = parts.init_program.clone();
    }
    // Device rules last, as runc does: init makes the spec's device nodes
    // while it sets up, which the rules could forbid.
    let without_devices = stage03_cgroups::Resources {
        devices: Vec::new(),
        ..resources.clone()
    };
    // The cgroup's directories are written down before they are made, so
    // that whoever finds us killed halfway knows what to remove. On a
    // cgroup v2 host the cgroup is made first, and init cloned straight
    // into it; elsewhere it is made while init builds its root, and init
    // moved there (see launch::start).
    state.cgroups = target.dirs();
    let mut made = None;
    let born_in = match target.v2_only_dir() {
        Some(dir) => {
            runtime.save(state)?;
            made = Some(target.create(&without_devices)?);
            Some(open_cgroup_dir(&dir)?)
        }
        None => None,
    };
    let started = crate::launch::start(&container, born_in.as_ref(), |pid, in_cgroup| {
        // Init's PID, for `delete` (init dies with us until it is ready)
        // and for the hooks init runs.
        state.init = Proc::of(pid.as_raw());
        runtime.save(state)?;
        if made.is_none() {
            made = Some(target.create(&without_devices)?);
        }
        match &made {
            Some(cgroup) if !in_cgroup => cgroup.add_process(pid),
            _ => Ok(()),
        }
    })?;
    let pid = started.ready()?; // init is set up, and waits at the gate
    let mut cgroup = made.ok_or_else(|| Error::Other("the cgroup was not made".into()))?;
    if !resources.devices.is_empty() {
        cgroup.update(&resources)?;
    }
    cgroup.keep(); // the container's now: `delete` removes it
    state.init = Proc::of(pid.as_raw());
    state.status = Status::Created; // what the hooks are to be told
    if !config.hooks.prestart.is_empty() || !config.hooks.create_runtime.is_empty() {
        let document = state_document(state, Some(config));
        hooks::run("prestart", &config.hooks.prestart, &document)?;
        hooks::run("createRuntime", &config.hooks.create_runtime, &document)?;
    }
    state.status = Status::Created;
    state.creator = None;
    runtime.save(state)?;
    Ok(pid)
}

/// A cgroup v2 directory, opened for `clone3` to clone into.
fn open_cgroup_dir(dir: &Path) -> Result<OwnedFd, Error> {
    std::fs::File::open(dir)
        .map(OwnedFd::from)
        .map_err(|e| Error::io("open cgroup", dir, e))
}

// ANCHOR: console
/// The process's stdio: the caller's (inherited), or with
/// `--console-socket` a terminal made inside the container whose outer
/// side goes to the caller, who relays it (see stage 02's
/// `ProcessStdio::ConsoleSocket`). We connect now, from the host.
fn stdio_of(
    console_socket: Option<&Path>,
    size: Option<config::ConsoleSize>,
) -> Result<ProcessStdio, Error> {
    let Some(path) = console_socket else {
        return Ok(ProcessStdio::Inherit);
    };
    let stream = std::os::unix::net::UnixStream::connect(path).map_err(|e| {
        Error::Other(format!(
            "console socket {}: {e} (the caller must listen there)",
            path.display()
        ))
    })?;
    Ok(ProcessStdio::ConsoleSocket {
        socket: Arc::new(stream.into()),
        size: size.map(|s| (s.height, s.width)),
    })
}
// ANCHOR_END: console

/// Init's gate: open the FIFO for writing, which blocks until `start`
/// opens it for reading, and write one byte. The FIFO is reached through
/// the state directory, opened now: by then init stands in the container's
/// root, where no path leads to it.
fn exec_gate(dir: &Path, caller: &Caller, hooks: &hooks::Hooks) -> Result<Gate, Error> {
    let dir_fd: Arc<OwnedFd> = Arc::new(
        std::fs::File::open(dir)
            .map_err(|e| Error::io("open", dir, e))?
            .into(),
    );
    let gate_dir = dir_fd.clone();
    Ok(Gate {
        open: Arc::new(move || {
            let fifo = openat(
                gate_dir.as_fd(),
                EXEC_FIFO,
                OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            nix::unistd::write(&fifo, b"0")?;
            Ok(())
        }),
        outlives_parent: matches!(caller, Caller::Leaves),
        after: match caller {
            Caller::Engine(_) => AfterGate::StayInit,
            _ => AfterGate::BecomeCommand,
        },
        before_pivot: hooks_in_init("createContainer", &hooks.create_container, &dir_fd),
        after_open: hooks_in_init("startContainer", &hooks.start_container, &dir_fd),
    })
}

/// Hooks that run inside the container's namespaces, from init: with the
/// state, read through the state directory (init can't name it by path),
/// on their stdin.
fn hooks_in_init(
    point: &'static str,
    list: &[hooks::Hook],
    dir: &Arc<OwnedFd>,
) -> Option<Arc<dyn Fn() -> std::io::Result<()> + Send + Sync>> {
    if list.is_empty() {
        return None;
    }
    let (list, dir) = (list.to_vec(), dir.clone());
    Some(Arc::new(move || {
        let file = openat(
            dir.as_fd(),
            "state.json",
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let mut state: RuntimeState =
            serde_json::from_reader(std::fs::File::from(file)).map_err(std::io::Error::other)?;
        state.status = Status::Created;
        hooks::run(point, &list, &state_document(&state, None)).map_err(std::io::Error::other)
    }))
}
// ANCHOR_END: create

fn check_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !id.starts_with('.');
    match ok {
        true => Ok(()),
        false => Err(Error::Other(format!(
            "{id:?} is not a container ID: use letters, digits, '-', '_' and '.'"
        ))),
    }
}

// ANCHOR: start
/// `berth-runtime start ID`: open the FIFO init waits on; it execs the
/// command as soon as it has written its byte.
pub fn start(root: &Path, id: &str) -> Result<(), Error> {
    let runtime = Runtime::open(root);
    let mut state = runtime.current(id)?;
    if state.status != Status::Created {
        return Err(Error::Other(format!(
            "container {id} is {}, not created: only a created container can be started",
            state.status.name()
        )));
    }
    let path = runtime.container_dir(id).join(EXEC_FIFO);
    // Not blocking, so that we notice if init dies instead of writing.
    let mut fifo = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| Error::io("open", &path, e))?;
    loop {
        let mut ready = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut ready, PollTimeout::from(100u16));
        let mut byte = [0u8; 1];
        match fifo.read(&mut byte) {
            Ok(1) => break,
            Ok(_) | Err(_) if !state.init.is_some_and(|p| p.alive()) => {
                return Err(Error::Other(format!(
                    "container {id} ended before it could start"
                )));
            }
            _ => {}
        }
    }
    std::fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
    state.status = state
        .status
        .become_(Status::Running, &format!("container {id}"))?;
    runtime.save(&state)?;
    // The spec: a failing poststart hook is only worth a warning.
    if let Ok(config) = config::read_config(&state.bundle)
        && !config.hooks.poststart.is_empty()
        && let Err(err) = hooks::run(
            "poststart",
            &config.hooks.poststart,
            &state_document(&state, Some(&config)),
        )
    {
        eprintln!("berth-runtime: warning: {err}");
    }
    Ok(())
}
// ANCHOR_END: start

/// `berth-runtime run`: create, start, and wait for the container as its
/// parent (forwarding signals), then delete it; its exit code. With
/// `detach`, return after `start`, as runc does.
pub fn run(root: &Path, options: &CreateOptions, detach: bool) -> Result<u8, Error> {
    let caller = match detach {
        true => Caller::Leaves,
        false => Caller::Stays,
    };
    let pid = create_for(root, options, caller).map_err(in_runcs_words)?;
    if let Err(err) = start(root, options.id) {
        let _ = delete(root, options.id, true);
        return Err(err);
    }
    if detach {
        return Ok(0);
    }
    let status = supervise::supervise(pid)
        .map_err(|e| Error::Other(format!("wait for the container: {e}")))?;
    delete(root, options.id, true)?;
    Ok(stage01_chroot::exit::exit_code(status))
}

/// `berth-runtime state ID`: the state document, as runc prints it.
pub fn state(root: &Path, id: &str) -> Result<(), Error> {
    let state = Runtime::open(root).current(id)?;
    print_json(&state_document(&state, None))
}

/// The runtime spec's state document, its fields in runc's order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StateDocument<'a> {
    oci_version: &'a str,
    id: &'a str,
    status: &'a str,
    pid: i32,
    bundle: &'a Path,
    rootfs: PathBuf,
    created: String,
    owner: &'a str,
    annotations: &'a BTreeMap<String, String>,
}

/// `config`: the bundle's, if already read (else it is read for the root's
/// path).
fn state_document<'a>(
    state: &'a RuntimeState,
    config: Option<&config::Config>,
) -> StateDocument<'a> {
    let rootfs = match config {
        Some(config) => state.bundle.join(&config.root.path),
        None => config::read_config(&state.bundle)
            .map(|c| state.bundle.join(&c.root.path))
            .unwrap_or_default(),
    };
    StateDocument {
        oci_version: OCI_VERSION,
        id: &state.id,
        status: state.status.name(),
        pid: pid_of(state),
        bundle: &state.bundle,
        rootfs,
        created: rfc3339(state.created),
        owner: "",
        annotations: &state.annotations,
    }
}

fn pid_of(state: &RuntimeState) -> i32 {
    match state.status {
        Status::Stopped => 0,
        _ => state.init.map_or(0, |p| p.pid),
    }
}

fn print_json(value: &impl Serialize) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Other(format!("encode JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

/// `berth-runtime kill [--all] ID SIGNAL`: to the container's first
/// process, or to every process in its cgroup.
pub fn kill_container(root: &Path, id: &str, signal: Signal, all: bool) -> Result<(), Error> {
    let state = Runtime::open(root).current(id)?;
    if all {
        for pid in pids_in(&state)? {
            let _ = kill(Pid::from_raw(pid), signal);
        }
        if state.status == Status::Paused && signal == Signal::SIGKILL {
            // Frozen processes die only once thawed (cgroup v1).
            cgroup::open(&state.cgroups)?.thaw()?;
        }
        return Ok(());
    }
    match (state.status, state.init) {
        (Status::Created | Status::Running | Status::Paused, Some(init)) => {
            kill(Pid::from_raw(init.pid), signal)
                .map_err(|e| Error::Other(format!("kill {id} with {signal}: {e}")))
        }
        _ => Err(Error::Other(format!("container {id} is not running"))),
    }
}

/// The processes in the container's cgroups, each once.
fn pids_in(state: &RuntimeState) -> Result<Vec<i32>, Error> {
    let pids = cgroup::open(&state.cgroups)?.pids()?;
    Ok(pids.into_iter().map(|pid| pid.as_raw()).collect())
}

/// `berth-runtime ps ID`: the container's processes (`--format json`: their
/// PIDs as a JSON list, which containerd reads).
pub fn ps(root: &Path, id: &str, json: bool) -> Result<(), Error> {
    let state = Runtime::open(root).current(id)?;
    let pids = pids_in(&state)?;
    if json {
        return print_json(&serde_json::json!(pids));
    }
    println!("{:<8} CMD", "PID");
    for pid in pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let words: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|w| !w.is_empty())
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        println!("{pid:<8} {}", words.join(" "));
    }
    Ok(())
}

/// `berth-runtime delete [--force] ID`: remove a stopped container (with
/// force, one in any state): its processes, cgroups and state.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<(), Error> {
    let runtime = Runtime::open(root);
    let mut state = runtime.current(id)?;
    match state.status {
        Status::Created | Status::Running | Status::Paused | Status::Creating if !force => {
            return Err(Error::Other(format!(
                "container {id} is {}: stop it first, or use delete --force",
                state.status.name()
            )));
        }
        Status::Stopped => {}
        _ => {
            if let Some(init) = state.init.filter(|p| p.alive()) {
                let _ = kill(Pid::from_raw(init.pid), Signal::SIGKILL);
            }
            if state.status == Status::Paused {
                cgroup::open(&state.cgroups)?.thaw()?; // frozen, they can't die
            }
        }
    }
    cgroup::remove_leftovers(&mut state.cgroups)?; // kills what is left, then removes
    if let Some(init) = state.init
        && !init.wait_gone(Duration::from_secs(10))
    {
        return Err(Error::Other(format!("container {id}'s init does not end")));
    }
    let dir = runtime.container_dir(id);
    std::fs::remove_dir_all(&dir).map_err(|e| Error::io("remove", &dir, e))?;
    if let Ok(config) = config::read_config(&state.bundle)
        && let Err(err) = hooks::run(
            "poststop",
            &config.hooks.poststop,
            &state_document(&state, Some(&config)),
        )
    {
        eprintln!("berth-runtime: warning: {err}");
    }
    Ok(())
}

// ---- exec: one more process in a container ----

/// What `exec` is given.
pub struct ExecOptions<'a> {
    pub id: &'a str,
    /// A `process` object as in config.json (runc's `--process`).
    pub process_file: Option<&'a Path>,
    /// Or the command line, with `--cwd`, `--env` and `--tty`.
    pub args: Vec<String>,
    pub cwd: Option<String>,
    pub env: Vec<String>,
    pub tty: bool,
    pub console_socket: Option<&'a Path>,
    pub detach: bool,
    pub pid_file: Option<&'a Path>,
}

// ANCHOR: exec
/// `berth-runtime exec ID CMD...` (or `--process FILE`): run one more
/// process in the container, through the same [`Entry`] as `berth exec`;
/// wait for it and return its exit code, or with `--detach` leave it to
/// whoever adopts it.
pub fn exec(root: &Path, options: ExecOptions) -> Result<u8, Error> {
    let runtime = Runtime::open(root);
    let state = runtime.current(options.id)?;
    let init = match (state.status, state.init) {
        (Status::Running, Some(init)) => init,
        _ => {
            return Err(Error::Other(format!(
                "container {} is {}: exec needs a running container",
                options.id,
                state.status.name()
            )));
        }
    };
    let config = config::read_config(&state.bundle)?;
    let spec = exec_process(&config, &options)?;
    if spec.terminal != options.console_socket.is_some() {
        return Err(Error::Other(
            "a terminal (--tty, or terminal in --process) needs --console-socket, and the \
             other way round"
                .into(),
        ));
    }
    let stdio = stdio_of(options.console_socket, spec.console_size)?;
    let parts = config::process_of(&spec, stdio)?;
    let hardening = Hardening::custom(
        Vec::new(), // the container's masks are in place already
        Vec::new(),
        config::capability_sets(spec.capabilities.as_ref())?,
        spec.no_new_privileges,
    )?
    .with_additional_gids(config::additional_gids(&spec.user)?)
    .with_filters(seccomp::filters_of(config.linux.seccomp.as_ref())?);
    let step: Step = config::before_exec(parts.settings, parts.rlimits, hardening);
    // Opened before we enter the container: after, paths lead into it.
    let mut pid_file = options
        .pid_file
        .map(|path| std::fs::File::create(path).map_err(|e| Error::io("create", path, e)))
        .transpose()?;
    let entry = Entry::open(init.pid, &state.cgroups)?;
    harden::protect_our_binary()?;
    let hostname = config.hostname.clone().unwrap_or_default();
    let child = entry
        .spawn(&parts.process, &hostname, Some(step), options.id)
        .map_err(in_runcs_words)?;
    let pid = Pid::from_raw(child.id() as i32);
    drop(parts.process); // its copy of the terminal, if any
    if let Some(file) = pid_file.as_mut() {
        std::io::Write::write_all(file, pid.to_string().as_bytes())
            .map_err(|e| Error::Other(format!("write the pid file: {e}")))?;
    }
    if options.detach {
        return Ok(0);
    }
    let status = supervise::supervise(pid)
        .map_err(|e| Error::Other(format!("wait for the exec'd process: {e}")))?;
    Ok(stage01_chroot::exit::exit_code(status))
}
// ANCHOR_END: exec

/// A command that isn't there, in the words runc uses, which Podman,
/// Docker and containerd look for to answer 127 ("not found").
fn in_runcs_words(err: Error) -> Error {
    let not_found = |command: &str| {
        Error::Other(format!(
            "exec: {command:?}: executable file not found in $PATH: no such file or directory"
        ))
    };
    match err {
        Error::CommandNotFound { command, .. } => not_found(&command.to_string_lossy()),
        // init's report of the same, from `create`: "CMD: command not found..."
        Error::FromContainer { code: 127, message } => not_found(
            message
                .split(": command not found")
                .next()
                .unwrap_or(&message),
        ),
        other => other,
    }
}

/// The process to exec: `--process`'s, or config.json's with the command
/// line's args, cwd, env and tty.
fn exec_process(
    config: &config::Config,
    options: &ExecOptions,
) -> Result<config::ProcessSpec, Error> {
    if let Some(path) = options.process_file {
        let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
        let process: oci_spec::runtime::Process = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Other(format!("{}: not a process: {e}", path.display())))?;
        return config::ProcessSpec::from_spec(&process);
    }
    if options.args.is_empty() {
        return Err(Error::Other(
            "exec needs a command, or --process FILE".into(),
        ));
    }
    let mut spec = config.process.clone();
    spec.args = options.args.clone();
    spec.terminal = options.tty;
    if let Some(cwd) = &options.cwd {
        spec.cwd = cwd.clone();
    }
    spec.env.extend(options.env.iter().cloned());
    Ok(spec)
}

// ---- pause and resume: the freezer ----

/// `berth-runtime pause ID` / `resume ID`: freeze or thaw every process of
/// the container, through its cgroup's freezer.
pub fn pause(root: &Path, id: &str, frozen: bool) -> Result<(), Error> {
    let runtime = Runtime::open(root);
    let mut state = runtime.current(id)?;
    let (from, to) = match frozen {
        true => (Status::Running, Status::Paused),
        false => (Status::Paused, Status::Running),
    };
    if state.status != from {
        return Err(Error::Other(format!(
            "container {id} is {}, not {}",
            state.status.name(),
            from.name()
        )));
    }
    let cgroup = cgroup::open(&state.cgroups)?;
    match frozen {
        true => cgroup.freeze()?,
        false => cgroup.thaw()?,
    }
    state.status = state.status.become_(to, &format!("container {id}"))?;
    runtime.save(&state)
}

/// `berth-runtime update ID`: change the limits of a live container, from
/// a `linux.resources` JSON object (runc's `--resources FILE`, `-` for
/// stdin) and/or the common flags.
pub fn update(
    root: &Path,
    id: &str,
    file: Option<&Path>,
    flags: &UpdateFlags,
) -> Result<(), Error> {
    let state = Runtime::open(root).current(id)?;
    if !matches!(
        state.status,
        Status::Created | Status::Running | Status::Paused
    ) {
        return Err(Error::Other(format!(
            "container {id} is {}: only a live container can be updated",
            state.status.name()
        )));
    }
    let spec: Option<oci_spec::runtime::LinuxResources> = match file {
        None => None,
        Some(path) => {
            let bytes = match path == Path::new("-") {
                true => {
                    let mut bytes = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut bytes)
                        .map_err(|e| Error::io("read", "stdin", e))?;
                    bytes
                }
                false => std::fs::read(path).map_err(|e| Error::io("read", path, e))?,
            };
            Some(serde_json::from_slice(&bytes).map_err(|e| {
                Error::Other(format!("{}: not linux.resources: {e}", path.display()))
            })?)
        }
    };
    let mut resources = resources::resources_of(spec.as_ref());
    resources.memory.limit = flags.memory.or(resources.memory.limit);
    resources.cpu.quota = flags.cpu_quota.or(resources.cpu.quota);
    resources.cpu.period = flags.cpu_period.or(resources.cpu.period);
    resources.cpu.shares = flags.cpu_shares.or(resources.cpu.shares);
    resources.pids = flags.pids_limit.or(resources.pids);
    if resources.is_empty() {
        return Err(Error::Other(
            "nothing to update: give --resources FILE or a limit such as --memory".into(),
        ));
    }
    let config = config::read_config(&state.bundle)?;
    let resources = resources::with_default_devices(resources, &config.linux.devices);
    cgroup::open(&state.cgroups)?.update(&resources)
}

/// `update`'s flags, as runc names them.
#[derive(Debug, Default, clap::Args)]
pub struct UpdateFlags {
    /// Memory limit in bytes.
    #[arg(long, value_name = "BYTES")]
    pub memory: Option<i64>,
    /// CPU time in microseconds per period.
    #[arg(long, value_name = "US")]
    pub cpu_quota: Option<i64>,
    /// The CPU period in microseconds.
    #[arg(long, value_name = "US")]
    pub cpu_period: Option<u64>,
    /// Relative CPU weight (1024 is the default).
    #[arg(long, value_name = "N")]
    pub cpu_shares: Option<u64>,
    /// Most processes at once.
    #[arg(long, value_name = "N")]
    pub pids_limit: Option<i64>,
}

// ---- spec, list, features ----

// ANCHOR: spec
/// `berth-runtime spec`: write a starting `config.json` into `bundle`, the
/// runtime spec's defaults (a shell, on a terminal, in `rootfs`), as `runc
/// spec` does. An existing one is left alone.
pub fn spec(bundle: &Path) -> Result<(), Error> {
    let path = bundle.join("config.json");
    if path.exists() {
        return Err(Error::Other(format!(
            "{} exists already: remove it first, or edit it",
            path.display()
        )));
    }
    let mut default = oci_spec::runtime::Spec::default();
    default.set_hostname(Some("berth".into()));
    let text = serde_json::to_vec_pretty(&default)
        .map_err(|e| Error::Other(format!("encode the default spec: {e}")))?;
    std::fs::write(&path, text).map_err(|e| Error::io("write", &path, e))
}
// ANCHOR_END: spec

/// Seconds since 1970 as RFC 3339 in UTC, `YYYY-MM-DDTHH:MM:SSZ`, as runc
/// writes times for its callers to parse.
pub fn rfc3339(seconds: u64) -> String {
    let (days, rest) = ((seconds / 86_400) as i64, seconds % 86_400);
    let (year, month, day) = crate::calendar::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// `berth-runtime list`: the containers under the root, as runc lists them
/// (a table, or with `json` the state of each).
pub fn list(root: &Path, json: bool) -> Result<(), Error> {
    let runtime = Runtime::open(root);
    let mut states = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&runtime.dir) {
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if let Ok(state) = runtime.current(&id) {
                states.push(state);
            }
        }
    }
    states.sort_by(|a, b| a.id.cmp(&b.id));
    let pid = pid_of;
    if json {
        let listed: Vec<serde_json::Value> = states
            .iter()
            .map(|state| {
                serde_json::json!({
                    "ociVersion": OCI_VERSION,
                    "id": state.id,
                    "pid": pid(state),
                    "status": state.status.name(),
                    "bundle": state.bundle,
                    "created": rfc3339(state.created),
                    "owner": "root",
                    "annotations": state.annotations,
                })
            })
            .collect();
        println!("{}", serde_json::Value::from(listed));
        return Ok(());
    }
    println!(
        "{:<20} {:<8} {:<10} {:<40} {:<12} OWNER",
        "ID", "PID", "STATUS", "BUNDLE", "CREATED"
    );
    for state in &states {
        println!(
            "{:<20} {:<8} {:<10} {:<40} {:<12} root",
            state.id,
            pid(state),
            state.status.name(),
            state.bundle.display(),
            state.created
        );
    }
    Ok(())
}
pub fn features() -> Result<(), Error> {
    let mut capabilities: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    capabilities.sort();
    let document = serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": MOUNT_OPTIONS,
        "linux": {
            "namespaces": ["pid", "network", "ipc", "uts", "mount", "cgroup", "user"],
            "capabilities": capabilities,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": seccomp::features(),
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
        },
        "annotations": {"org.berth.version": env!("CARGO_PKG_VERSION")},
    });
    let text = serde_json::to_string_pretty(&document)
        .map_err(|e| Error::Other(format!("encode the features: {e}")))?;
    println!("{text}");
    Ok(())
}

/// The mount options `mounts` may use (stage 02's `ListedMount` reads
/// them; any other option goes to the file system as its data).
const MOUNT_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "private",
    "rbind",
    "relatime",
    "ro",
    "rprivate",
    "rshared",
    "rslave",
    "runbindable",
    "rw",
    "shared",
    "slave",
    "strictatime",
    "suid",
    "sync",
    "unbindable",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(check_id("web-1.a_b").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "with space"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_212_800), "2026-12-02T12:00:00Z");
    }
}
