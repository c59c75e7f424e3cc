//! The OCI runtime commands of `berth-runtime`: `create`, `start`,
//! `state`, `kill` and `delete`, in runc's shape, on a *bundle* (a directory with a
//! `config.json` and a root file system, as `umoci unpack` makes).
//!
//! This is the interface Podman and containerd use to drive runc, and it
//! splits "run" in two: `create` builds the container and leaves its first
//! process waiting, `start` lets it exec the command. Between the two calls
//! (separate processes) the container is kept by a monitor, as with
//! `berth run -d`, which waits on a FIFO for `start`.
//!
//! berth runs the subset of the runtime spec its stages implement: the
//! pid, network, ipc, uts and mount namespaces (always all of them), the
//! process (args, env, cwd, numeric user and additionalGids, capabilities
//! in all five sets, noNewPrivileges, rlimits, oomScoreAdj), the hostname,
//! the mounts exactly as listed (stage 02's `ListedMount`), a read-only
//! root, masked and read-only paths, namespaced sysctls, and memory, CPU
//! and pids limits. Beside the lifecycle: `spec`, `list` and `features`.
//! What it can't honour it refuses, by name.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use caps::{Capability, CapsHashSet};
use nix::sys::signal::{Signal, kill};
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, mkfifo};
use serde::{Deserialize, Serialize};
use stage01_chroot::Error;
use stage02_namespaces::mounts::ListedMount;
use stage02_namespaces::{Container, Process, namespaces, supervise};
use stage03_cgroups::limits::{CPU_PERIOD_US, CpuQuota};
use stage03_cgroups::{Limits, cgroup};
use stage04_images::store::write_atomic;

use crate::harden::{self, CapabilitySets, Hardening};
use crate::record::{Proc, now};
use crate::run::spawn_monitor;

/// The runtime spec version we report.
const OCI_VERSION: &str = "1.0.2";

// ---- config.json, the part berth reads ----

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Config {
    process: ProcessSpec,
    root: RootSpec,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    mounts: Vec<MountSpec>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    linux: LinuxSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProcessSpec {
    #[serde(default)]
    terminal: bool,
    #[serde(default)]
    user: UserSpec,
    args: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    cwd: String,
    #[serde(default)]
    capabilities: Option<CapabilitiesSpec>,
    #[serde(default)]
    rlimits: Vec<RlimitSpec>,
    #[serde(default)]
    no_new_privileges: bool,
    #[serde(default)]
    oom_score_adj: Option<i32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserSpec {
    #[serde(default)]
    uid: u32,
    #[serde(default)]
    gid: u32,
    #[serde(default)]
    additional_gids: Vec<u32>,
}

#[derive(Debug, Deserialize)]
struct CapabilitiesSpec {
    #[serde(default)]
    bounding: Vec<String>,
    #[serde(default)]
    effective: Vec<String>,
    #[serde(default)]
    permitted: Vec<String>,
    #[serde(default)]
    inheritable: Vec<String>,
    #[serde(default)]
    ambient: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct RlimitSpec {
    r#type: String,
    hard: u64,
    soft: u64,
}

#[derive(Debug, Deserialize)]
struct RootSpec {
    path: PathBuf,
    #[serde(default)]
    readonly: bool,
}

#[derive(Debug, Deserialize)]
struct MountSpec {
    destination: PathBuf,
    #[serde(default)]
    r#type: Option<String>,
    #[serde(default)]
    source: Option<PathBuf>,
    #[serde(default)]
    options: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LinuxSpec {
    #[serde(default)]
    namespaces: Vec<NamespaceSpec>,
    #[serde(default)]
    resources: Option<ResourcesSpec>,
    #[serde(default)]
    masked_paths: Vec<String>,
    #[serde(default)]
    readonly_paths: Vec<String>,
    #[serde(default)]
    seccomp: Option<serde_json::Value>,
    #[serde(default)]
    uid_mappings: Vec<serde_json::Value>,
    #[serde(default)]
    sysctl: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct NamespaceSpec {
    r#type: String,
    #[serde(default)]
    path: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
struct ResourcesSpec {
    #[serde(default)]
    memory: Option<MemorySpec>,
    #[serde(default)]
    cpu: Option<CpuSpec>,
    #[serde(default)]
    pids: Option<PidsSpec>,
}

#[derive(Debug, Deserialize)]
struct MemorySpec {
    limit: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct CpuSpec {
    quota: Option<i64>,
    period: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct PidsSpec {
    limit: i64,
}

/// The namespaces berth always makes.
const NAMESPACES: &[&str] = &["pid", "network", "ipc", "uts", "mount"];

// ---- the state berth keeps per container ----

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Stopped,
}

/// `<root>/runtime/<id>/state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RuntimeState {
    id: String,
    bundle: PathBuf,
    status: Status,
    init: Option<Proc>,
    monitor: Option<Proc>,
    created: u64,
    exit_code: Option<u8>,
    annotations: BTreeMap<String, String>,
}

/// What `berth state` prints: the runtime spec's state document.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StateDocument<'a> {
    oci_version: &'a str,
    id: &'a str,
    status: Status,
    pid: i32,
    bundle: &'a Path,
    annotations: &'a BTreeMap<String, String>,
}

/// The runtime containers of one berth root.
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

    fn load(&self, id: &str) -> Result<RuntimeState, Error> {
        let path = self.container_dir(id).join("state.json");
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Other(format!("container {id} does not exist")),
            _ => Error::io("read", &path, e),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Other(format!("{}: {e}", path.display())))
    }

    fn save(&self, state: &RuntimeState) -> Result<(), Error> {
        let bytes = serde_json::to_vec_pretty(state)
            .map_err(|e| Error::Other(format!("encode the state of {}: {e}", state.id)))?;
        write_atomic(&self.container_dir(&state.id).join("state.json"), &bytes)
    }

    /// The status as it is now: a container whose monitor is gone has stopped.
    fn current(&self, id: &str) -> Result<RuntimeState, Error> {
        let mut state = self.load(id)?;
        if state.status != Status::Stopped && !state.monitor.is_some_and(|m| m.alive()) {
            state.status = Status::Stopped;
        }
        Ok(state)
    }
}

// ANCHOR: create
/// `berth-runtime create --bundle DIR ID`: check the bundle, then leave a monitor
/// holding the container, its first process waiting for `start`.
pub fn create(root: &Path, bundle: &Path, id: &str, pid_file: Option<&Path>) -> Result<(), Error> {
    check_id(id)?;
    let bundle = std::fs::canonicalize(bundle).map_err(|e| Error::io("open bundle", bundle, e))?;
    read_config(&bundle)?; // refuse what we can't run before making anything
    let runtime = Runtime::open(root);
    let dir = runtime.container_dir(id);
    std::fs::create_dir_all(&runtime.dir).map_err(|e| Error::io("create", &runtime.dir, e))?;
    std::fs::create_dir(&dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => Error::Other(format!("container {id} already exists")),
        _ => Error::io("create", &dir, e),
    })?;
    let result = start_monitor(root, &bundle, id, &dir);
    match result {
        Ok(pid) => {
            if let Some(pid_file) = pid_file {
                write_atomic(pid_file, pid.to_string().as_bytes())?;
            }
            Ok(())
        }
        Err(err) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(err)
        }
    }
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

/// Start `berth-runtime monitor ID` and wait until it says "created PID".
/// It keeps our stdin, stdout and stderr: the container's, as with runc.
fn start_monitor(root: &Path, bundle: &Path, id: &str, dir: &Path) -> Result<i32, Error> {
    let fifo = dir.join("start.fifo");
    mkfifo(&fifo, Mode::S_IRUSR | Mode::S_IWUSR)
        .map_err(|e| Error::Other(format!("mkfifo {}: {e}", fifo.display())))?;
    let args: [&OsStr; 8] = [
        "--root".as_ref(),
        root.as_os_str(),
        "monitor".as_ref(),
        "--ready-fd".as_ref(),
        "3".as_ref(),
        "--bundle".as_ref(),
        bundle.as_os_str(),
        id.as_ref(),
    ];
    let (mut monitor, answer) = spawn_monitor(
        &args,
        Stdio::inherit(),
        (Stdio::inherit(), Stdio::inherit()),
    )?;
    if let Some(pid) = answer.strip_prefix("created ") {
        return pid
            .trim()
            .parse()
            .map_err(|_| Error::Other(format!("the monitor said {answer:?}")));
    }
    let _ = monitor.wait();
    Err(Error::Other(match answer.trim() {
        "" => format!("the monitor of {id} ended before the container was created"),
        said => said.to_string(),
    }))
}

// ANCHOR: monitor
/// The monitor: make the container, say so, wait for `start` on the FIFO,
/// let it run, record how it ended.
pub fn monitor(root: &Path, bundle: &Path, id: &str, ready_fd: i32) -> Result<u8, Error> {
    // SAFETY: `create` passed us this fd for this and nothing else.
    let mut ready = unsafe { File::from_raw_fd(ready_fd) };
    let runtime = Runtime::open(root);
    let result = hold(&runtime, bundle, id, &mut ready);
    if let Err(err) = &result {
        let _ = writeln!(ready, "{err}");
    }
    result
}

fn hold(runtime: &Runtime, bundle: &Path, id: &str, ready: &mut File) -> Result<u8, Error> {
    let config = read_config(bundle)?;
    let container = container_of(&config, bundle)?;
    let limits = limits_of(&config);
    let mut state = RuntimeState {
        id: id.to_string(),
        bundle: bundle.to_path_buf(),
        status: Status::Creating,
        init: None,
        monitor: Proc::of(std::process::id() as i32),
        created: now(),
        exit_code: None,
        annotations: config.annotations.clone(),
    };
    supervise::block_signals().map_err(|e| Error::Other(format!("block signals: {e}")))?;
    harden::protect_our_binary()?;
    let mut cgroup = cgroup::create(&format!("berth-{id}"), &limits)?;
    let started = namespaces::start(&container)?;
    cgroup.add_process(started.pid())?;
    state.init = Proc::of(started.pid().as_raw());
    state.status = Status::Created;
    runtime.save(&state)?;
    let _ = writeln!(ready, "created {}", started.pid());

    // Wait for `start`, or for the waiting process to be killed.
    let fifo = runtime.container_dir(id).join("start.fifo");
    if !wait_for_start(&fifo, started.pid())? {
        drop(started); // kills and reaps it
        state.status = Status::Stopped;
        state.exit_code = Some(137);
        runtime.save(&state)?;
        return Ok(137);
    }
    let running = started.resume()?;
    state.status = Status::Running;
    runtime.save(&state)?;
    let code = running.wait()?;
    let _ = cgroup.remove();
    state.status = Status::Stopped;
    state.exit_code = Some(code);
    runtime.save(&state)?;
    Ok(code)
}
// ANCHOR_END: monitor

/// True once `start` wrote to the FIFO; false if `init` died first.
fn wait_for_start(fifo: &Path, init: Pid) -> Result<bool, Error> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(fifo)
        .map_err(|e| Error::io("open", fifo, e))?;
    // Our own write end keeps the FIFO from reporting EOF while nobody
    // has opened it yet.
    let _keep = OpenOptions::new()
        .write(true)
        .open(fifo)
        .map_err(|e| Error::io("open", fifo, e))?;
    loop {
        let mut byte = [0u8; 1];
        match file.read(&mut byte) {
            Ok(1) => return Ok(true),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(Error::io("read", fifo, e)),
        }
        match waitpid(init, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            _ => return Ok(false),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ANCHOR: start
/// `berth-runtime start ID`: tell the monitor to let the command run.
pub fn start(root: &Path, id: &str) -> Result<(), Error> {
    let runtime = Runtime::open(root);
    let state = runtime.current(id)?;
    if state.status != Status::Created {
        return Err(Error::Other(format!(
            "container {id} is {}, not created: only a created container can be started",
            status_name(state.status)
        )));
    }
    let fifo = runtime.container_dir(id).join("start.fifo");
    OpenOptions::new()
        .write(true)
        .open(&fifo)
        .and_then(|mut f| f.write_all(b"1"))
        .map_err(|e| Error::io("write", &fifo, e))?;
    // Return once it runs (or has already ended), as runc does.
    let deadline = Instant::now() + Duration::from_secs(10);
    while runtime.current(id)?.status == Status::Created {
        if Instant::now() > deadline {
            return Err(Error::Other(format!("container {id} did not start")));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
// ANCHOR_END: start

/// `berth-runtime state ID`: the state document, as JSON.
pub fn state(root: &Path, id: &str) -> Result<(), Error> {
    let state = Runtime::open(root).current(id)?;
    let document = StateDocument {
        oci_version: OCI_VERSION,
        id: &state.id,
        status: state.status,
        pid: match state.status {
            Status::Stopped => 0,
            _ => state.init.map_or(0, |p| p.pid),
        },
        bundle: &state.bundle,
        annotations: &state.annotations,
    };
    let text = serde_json::to_string_pretty(&document)
        .map_err(|e| Error::Other(format!("encode the state: {e}")))?;
    println!("{text}");
    Ok(())
}

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
    let text = serde_json::to_vec_pretty(&oci_spec::runtime::Spec::default())
        .map_err(|e| Error::Other(format!("encode the default spec: {e}")))?;
    std::fs::write(&path, text).map_err(|e| Error::io("write", &path, e))
}
// ANCHOR_END: spec

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
    let pid = |state: &RuntimeState| match state.status {
        Status::Stopped => 0,
        _ => state.init.map_or(0, |p| p.pid),
    };
    if json {
        let listed: Vec<serde_json::Value> = states
            .iter()
            .map(|state| {
                serde_json::json!({
                    "ociVersion": OCI_VERSION,
                    "id": state.id,
                    "pid": pid(state),
                    "status": status_name(state.status),
                    "bundle": state.bundle,
                    "created": state.created,
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
            status_name(state.status),
            state.bundle.display(),
            state.created
        );
    }
    Ok(())
}

/// `berth-runtime features`: what this runtime honours, in the runtime
/// spec's features document, for callers that check before they ask.
pub fn features() -> Result<(), Error> {
    let mut capabilities: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    capabilities.sort();
    let document = serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": [],
        "mountOptions": MOUNT_OPTIONS,
        "linux": {
            "namespaces": ["pid", "network", "ipc", "uts", "mount"],
            "capabilities": capabilities,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {"enabled": false},
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

/// `berth-runtime kill ID SIGNAL`: to the container's init, which passes it on.
pub fn kill_container(root: &Path, id: &str, signal: Signal) -> Result<(), Error> {
    let state = Runtime::open(root).current(id)?;
    match (state.status, state.init) {
        (Status::Created | Status::Running, Some(init)) if init.alive() => {
            kill(Pid::from_raw(init.pid), signal)
                .map_err(|e| Error::Other(format!("kill {id} with {signal}: {e}")))
        }
        _ => Err(Error::Other(format!("container {id} is not running"))),
    }
}

/// `berth-runtime delete [--force] ID`: remove a stopped container (or, with
/// force, kill it first).
pub fn delete(root: &Path, id: &str, force: bool) -> Result<(), Error> {
    let runtime = Runtime::open(root);
    let state = runtime.current(id)?;
    if state.status != Status::Stopped {
        if !force {
            return Err(Error::Other(format!(
                "container {id} is {}: stop it first, or use delete --force",
                status_name(state.status)
            )));
        }
        if let Some(init) = state.init.filter(|p| p.alive()) {
            let _ = kill(Pid::from_raw(init.pid), Signal::SIGKILL);
        }
        if !state
            .monitor
            .is_none_or(|m| m.wait_gone(Duration::from_secs(10)))
        {
            return Err(Error::Other(format!("the monitor of {id} does not end")));
        }
    }
    let dir = runtime.container_dir(id);
    std::fs::remove_dir_all(&dir).map_err(|e| Error::io("remove", &dir, e))
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Creating => "creating",
        Status::Created => "created",
        Status::Running => "running",
        Status::Stopped => "stopped",
    }
}

// ---- from config.json to a stage 02 container ----

fn read_config(bundle: &Path) -> Result<Config, Error> {
    let path = bundle.join("config.json");
    let bytes = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
    let config: Config = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Other(format!("{}: not a runtime config: {e}", path.display())))?;
    check_supported(&config)?;
    Ok(config)
}

/// Refuse, by name, what berth can't do as asked.
fn check_supported(config: &Config) -> Result<(), Error> {
    let refuse = |what: String| {
        Err(Error::Other(format!(
            "config.json: {what} is not supported by berth"
        )))
    };
    if config.process.terminal {
        return refuse("process.terminal: true (a console socket)".into());
    }
    if !config.linux.uid_mappings.is_empty() {
        return refuse("a user namespace (linux.uidMappings)".into());
    }
    for ns in &config.linux.namespaces {
        if let Some(path) = &ns.path {
            return refuse(format!(
                "joining the {} namespace at {}",
                ns.r#type,
                path.display()
            ));
        }
        if !NAMESPACES.contains(&ns.r#type.as_str()) && ns.r#type != "cgroup" {
            return refuse(format!("a {} namespace", ns.r#type));
        }
    }
    for wanted in NAMESPACES {
        if !config
            .linux
            .namespaces
            .iter()
            .any(|ns| ns.r#type == *wanted)
        {
            return refuse(format!("sharing the host's {wanted} namespace"));
        }
    }
    Ok(())
}

fn container_of(config: &Config, bundle: &Path) -> Result<Container, Error> {
    let rootfs = bundle.join(&config.root.path);
    let rootfs = stage01_chroot::checks::check_rootfs(&rootfs)?;
    let process = &config.process;
    let mounts = mounts_of(&config.mounts, bundle)?;
    let hardening = Hardening::custom(
        config.linux.masked_paths.clone(),
        config.linux.readonly_paths.clone(),
        capability_sets(process.capabilities.as_ref())?,
        process.no_new_privileges,
    )?
    .with_additional_gids(additional_gids(&process.user)?);
    let rlimits = rlimits_of(&process.rlimits)?;
    if config.linux.seccomp.is_some() {
        eprintln!(
            "berth: warning: config.json's linux.seccomp is not supported; no filter is applied"
        );
    }
    // Kernel settings as (file under /proc, value), written from inside.
    let mut settings = sysctls_of(&config.linux.sysctl)?;
    if let Some(adjustment) = process.oom_score_adj {
        settings.push((
            c"/proc/self/oom_score_adj".into(),
            adjustment.to_string().into(),
        ));
    }
    let before_exec = move |user| -> std::io::Result<()> {
        for (file, value) in &settings {
            harden::write_proc_file(file, value)?;
        }
        for (resource, soft, hard) in &rlimits {
            let limit = libc::rlimit {
                rlim_cur: *soft,
                rlim_max: *hard,
            };
            // SAFETY: a valid resource number and limit.
            if unsafe { libc::setrlimit(*resource, &limit) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        hardening.apply(user)
    };
    Ok(Container {
        rootfs,
        root_mount: None,
        binds: Vec::new(),
        mounts: Some(mounts),
        readonly_root: config.root.readonly,
        process: Process {
            args: process.args.iter().map(Into::into).collect(),
            env: process
                .env
                .iter()
                .map(|e| {
                    let (k, v) = e.split_once('=').unwrap_or((e, ""));
                    (k.into(), v.into())
                })
                .collect(),
            cwd: PathBuf::from(&process.cwd),
            // Numbers, so init needs no /etc/passwd; the hardening switches.
            user: Some(format!("{}:{}", process.user.uid, process.user.gid)),
            stdio: Default::default(),
        },
        hostname: config.hostname.clone().unwrap_or_else(|| "berth".into()),
        user_map: None,
        before_exec: Some(stage02_namespaces::BeforeExec {
            step: std::sync::Arc::new(before_exec),
            init_title: Some(crate::harden::INIT_TITLE),
        }),
    })
}

/// `process.capabilities`, all five sets, checked the way the kernel will
/// check them (none at all without the object).
fn capability_sets(spec: Option<&CapabilitiesSpec>) -> Result<CapabilitySets, Error> {
    let Some(spec) = spec else {
        return Ok(CapabilitySets::default());
    };
    let set = |field: &str, names: &[String]| -> Result<CapsHashSet, Error> {
        names
            .iter()
            .map(|name| {
                name.parse::<Capability>().map_err(|_| {
                    Error::Other(format!(
                        "config.json: process.capabilities.{field}: unknown capability {name}"
                    ))
                })
            })
            .collect()
    };
    let sets = CapabilitySets {
        bounding: set("bounding", &spec.bounding)?,
        effective: set("effective", &spec.effective)?,
        permitted: set("permitted", &spec.permitted)?,
        inheritable: set("inheritable", &spec.inheritable)?,
        ambient: set("ambient", &spec.ambient)?,
    };
    let outside = |inner: &CapsHashSet, outer: &CapsHashSet| {
        inner
            .difference(outer)
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
    };
    let permitted_and_inheritable = sets
        .permitted
        .intersection(&sets.inheritable)
        .copied()
        .collect();
    for (field, extra) in [
        ("effective", outside(&sets.effective, &sets.permitted)),
        (
            "ambient",
            outside(&sets.ambient, &permitted_and_inheritable),
        ),
    ] {
        if !extra.is_empty() {
            return Err(Error::Other(format!(
                "config.json: process.capabilities.{field} has {} beyond what the kernel allows \
                 (effective must be in permitted; ambient in both permitted and inheritable)",
                extra.join(", ")
            )));
        }
    }
    Ok(sets)
}

/// `mounts`, exactly as listed; a bind mount's relative source is the
/// bundle's.
fn mounts_of(mounts: &[MountSpec], bundle: &Path) -> Result<Vec<ListedMount>, Error> {
    mounts
        .iter()
        .map(|m| {
            let bind = m.r#type.as_deref() == Some("bind")
                || m.options.iter().any(|o| o == "bind" || o == "rbind");
            let source = match bind {
                true => m.source.as_ref().map(|source| bundle.join(source)),
                false => m.source.clone(),
            };
            ListedMount::parse(
                m.r#type.as_deref(),
                source.as_deref(),
                &m.destination,
                &m.options,
            )
            .map_err(|e| Error::Other(format!("config.json: mounts: {e}")))
        })
        .collect()
}

/// `linux.sysctl` as files under /proc/sys. Only settings that belong to
/// the container's own namespaces are taken (network, IPC, hostname):
/// the others would change the host's kernel for everyone.
fn sysctls_of(
    sysctl: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<(std::ffi::CString, Vec<u8>)>, Error> {
    const NAMESPACED: &[&str] = &[
        "net.",
        "kernel.msg",
        "kernel.sem",
        "kernel.shm",
        "fs.mqueue.",
        "kernel.hostname",
        "kernel.domainname",
    ];
    sysctl
        .iter()
        .map(|(key, value)| {
            let valid =
                key.split('.').all(|part| !part.is_empty() && part != "..") && !key.contains('/');
            if !valid || !NAMESPACED.iter().any(|prefix| key.starts_with(prefix)) {
                return Err(Error::Other(format!(
                    "config.json: linux.sysctl: {key} is not a setting of the container's own \
                     namespaces; berth-runtime refuses it, as it would change the host"
                )));
            }
            let path = format!("/proc/sys/{}", key.replace('.', "/"));
            let path = std::ffi::CString::new(path)
                .map_err(|_| Error::Other(format!("config.json: linux.sysctl: bad key {key}")))?;
            Ok((path, value.clone().into_bytes()))
        })
        .collect()
}

/// `process.user.additionalGids`, as many as the step before exec can set
/// without allocating.
fn additional_gids(user: &UserSpec) -> Result<Vec<u32>, Error> {
    const MOST: usize = 32;
    if user.additional_gids.len() > MOST {
        return Err(Error::Other(format!(
            "config.json: process.user.additionalGids has {} groups; berth-runtime supports {MOST}",
            user.additional_gids.len()
        )));
    }
    Ok(user.additional_gids.clone())
}

fn rlimits_of(specs: &[RlimitSpec]) -> Result<Vec<(libc::__rlimit_resource_t, u64, u64)>, Error> {
    specs
        .iter()
        .map(|spec| {
            let resource = match spec.r#type.as_str() {
                "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
                "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
                "RLIMIT_CORE" => libc::RLIMIT_CORE,
                "RLIMIT_STACK" => libc::RLIMIT_STACK,
                "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
                "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
                other => {
                    return Err(Error::Other(format!(
                        "config.json: rlimit {other} is not supported by berth"
                    )));
                }
            };
            Ok((resource, spec.soft, spec.hard))
        })
        .collect()
}

fn limits_of(config: &Config) -> Limits {
    let Some(resources) = &config.linux.resources else {
        return Limits::default();
    };
    Limits {
        memory: resources
            .memory
            .as_ref()
            .and_then(|m| m.limit)
            .filter(|l| *l > 0)
            .map(|l| l as u64),
        cpu: resources.cpu.as_ref().and_then(|cpu| {
            let quota = cpu.quota.filter(|q| *q > 0)?;
            Some(CpuQuota {
                quota_us: quota as u64,
                period_us: cpu.period.unwrap_or(CPU_PERIOD_US),
            })
        }),
        pids: resources
            .pids
            .as_ref()
            .map(|p| p.limit)
            .filter(|l| *l > 0)
            .map(|l| l as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> Result<Config, Error> {
        let config: Config = serde_json::from_str(json).unwrap();
        check_supported(&config).map(|()| config)
    }

    const BASE: &str = r#"{"process": {"args": ["sh"], "cwd": "/"}, "root": {"path": "rootfs"},
        "linux": {"namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"},
        {"type": "uts"}, {"type": "mount"}]}}"#;

    #[test]
    fn a_plain_config_is_accepted_and_odd_ones_refused_by_name() {
        assert!(config(BASE).is_ok());
        let refused =
            |from: &str, to: &str| config(&BASE.replace(from, to)).unwrap_err().to_string();
        assert!(
            refused(r#""cwd": "/""#, r#""cwd": "/", "terminal": true"#)
                .contains("process.terminal")
        );
        assert!(
            refused(r#"{"type": "network"}, "#, "")
                .contains("sharing the host's network namespace")
        );
        assert!(
            refused(
                r#"{"type": "uts"}"#,
                r#"{"type": "uts", "path": "/proc/1/ns/uts"}"#
            )
            .contains("joining the uts namespace")
        );
        assert!(
            refused(
                r#"{"type": "mount"}"#,
                r#"{"type": "mount"}, {"type": "user"}"#
            )
            .contains("a user namespace")
        );
    }

    #[test]
    fn resources_become_limits() {
        let json = BASE.replace(
            r#""linux": {"#,
            r#""linux": {"resources": {"memory": {"limit": 67108864}, "cpu": {"quota": 50000, "period": 100000}, "pids": {"limit": 20}}, "#,
        );
        let limits = limits_of(&config(&json).unwrap());
        assert_eq!(limits.memory, Some(64 << 20));
        assert_eq!(
            limits.cpu,
            Some(CpuQuota {
                quota_us: 50_000,
                period_us: 100_000
            })
        );
        assert_eq!(limits.pids, Some(20));
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_id("web-1.a_b").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "with space"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }
}
