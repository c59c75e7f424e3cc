//! `berth exec`: run one more process in a running container.
//!
//! A container is nothing but a set of namespaces and a cgroup, so joining
//! one means joining those: `setns` into each namespace of its init, its
//! root as ours, its cgroup, and then a fork, because a process never moves
//! into a PID namespace itself; only its children are born there. The
//! child is hardened as the container's first process was (see `harden`).

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns, unshare};
use nix::unistd::{Pid, chroot, fchdir};
use stage01_chroot::{Error, exit};
use stage02_namespaces::{Process, UserIds, supervise};
use stage04_images::image::{self, Image, Overrides};

use crate::Engine;
use crate::harden::{self, Hardening};
use crate::record::Record;
use crate::terminal;

/// What `berth exec` runs, and how.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub command: Vec<OsString>,
    /// `KEY=VALUE`, added to the container's environment.
    pub env: Vec<String>,
    pub workdir: Option<PathBuf>,
    pub user: Option<String>,
    /// `-i`: the process reads our stdin (otherwise /dev/null).
    pub interactive: bool,
    /// `-t`: it gets a terminal of its own.
    pub tty: bool,
}

/// The namespaces we join: the user namespace first (it owns the others,
/// and without it we would be the host's root in there), the mount
/// namespace last (after it, paths under /proc would be the container's).
const NAMESPACES: &[(&str, CloneFlags)] = &[
    ("user", CloneFlags::CLONE_NEWUSER),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

// ANCHOR: exec
/// Run `options.command` inside the running container `record`; its exit code.
pub fn exec(engine: &Engine, record: &Record, options: ExecOptions) -> Result<u8, Error> {
    let (init, cgroups) = crate::control::running(engine, record)?;
    let Some(program) = options.command.first().cloned() else {
        return Err(Error::Other("exec needs a command to run".into()));
    };

    // The process, as `run` would make it: the image's and the container's
    // environment, working directory and user, with ours on top.
    let spec = &record.spec;
    let image = Image::open(&engine.root.store()?, &spec.image)?;
    let overrides = Overrides {
        entrypoint: Some(program.to_string_lossy().into_owned()),
        command: options.command[1..].to_vec(),
        env: [spec.env.clone(), options.env].concat(),
        workdir: options.workdir.or(spec.workdir.clone()),
        user: options.user.or(spec.user.clone()),
    };
    let mut process = image::process(&image.config, &overrides)?;
    terminal::check(options.interactive, options.tty)?;
    let (terminal, stdio) = terminal::streams(options.interactive, options.tty)?;
    process.stdio = stdio;
    let hostname = spec
        .hostname
        .clone()
        .or(record.name.clone())
        .unwrap_or(record.id.clone());

    // Everything we join is opened first, from the host's point of view.
    let entry = Entry::open(init.pid, &cgroups)?;
    let hardening = match spec.privileged {
        true => None,
        false => {
            harden::protect_our_binary()?; // the child is a copy of us until it execs
            // The container's capabilities, as its first process has them.
            let keep = harden::capabilities(&spec.cap_add, &spec.cap_drop)?;
            Some(Hardening::keeping(false, keep)?)
        }
    };

    // The terminal's relay threads start now: once we are in the container's
    // PID namespace, the kernel refuses us new threads.
    let relay = terminal
        .map(|t| t.relay(options.interactive, None))
        .transpose()?;
    let step = hardening
        .map(|hardening| -> Step { std::sync::Arc::new(move |user| hardening.apply(user)) });
    let child = entry.spawn(&process, &hostname, step, record.display_name())?;
    drop(process); // its copy of the terminal, if any
    let status = supervise::supervise(Pid::from_raw(child.id() as i32))
        .map_err(|e| Error::Other(format!("wait for the exec'd process: {e}")))?;
    if let Some(relay) = relay {
        relay.finish();
    }
    Ok(exit::exit_code(status))
}
// ANCHOR_END: exec

/// The step between fork and exec, handed the user to become.
pub type Step = std::sync::Arc<dyn Fn(Option<UserIds>) -> std::io::Result<()> + Send + Sync>;

// ANCHOR: entry
/// What joining a running container takes, opened from the host's point
/// of view before we enter anything: the namespaces of its init (those
/// that differ from ours), its root, and its cgroups' `cgroup.procs`.
/// `berth exec` and `berth-runtime exec` both go in through here.
pub struct Entry {
    namespaces: Vec<(File, CloneFlags)>,
    root: File,
    cgroups: Vec<File>,
}

impl Entry {
    pub fn open(init: i32, cgroup_dirs: &[PathBuf]) -> Result<Entry, Error> {
        let mut namespaces = Vec::new();
        for (name, flag) in NAMESPACES {
            let theirs = format!("/proc/{init}/ns/{name}");
            let same = std::fs::metadata(&theirs)
                .ok()
                .zip(std::fs::metadata(format!("/proc/self/ns/{name}")).ok())
                .is_some_and(|(a, b)| a.ino() == b.ino() && a.dev() == b.dev());
            if !same {
                namespaces.push((open(&theirs)?, *flag));
            }
        }
        let cgroups = cgroup_dirs
            .iter()
            .map(|dir| {
                let procs = dir.join("cgroup.procs");
                OpenOptions::new()
                    .write(true)
                    .open(&procs)
                    .map_err(|e| Error::io("open", &procs, e))
            })
            .collect::<Result<_, _>>()?;
        Ok(Entry {
            namespaces,
            root: open(&format!("/proc/{init}/root"))?,
            cgroups,
        })
    }

    /// Enter the container's namespaces and root, then start `process`
    /// there: born in its PID namespace (a process never moves into one
    /// itself, only its children are born there), moved into its cgroups
    /// before exec, `step` run last. Call it with no threads but relays.
    pub fn spawn(
        self,
        process: &Process,
        hostname: &str,
        step: Option<Step>,
        container: &str,
    ) -> Result<std::process::Child, Error> {
        // Threads share the root and working directory, which entering a
        // mount namespace changes, so we take a private copy of those first.
        unshare(CloneFlags::CLONE_FS)
            .map_err(|e| Error::Other(format!("unshare(CLONE_FS): {e}")))?;
        for (file, flag) in &self.namespaces {
            setns(file.as_fd(), *flag)
                .map_err(|e| Error::Other(format!("setns into {container}'s {flag:?}: {e}")))?;
        }
        fchdir(&self.root).map_err(|e| Error::Other(format!("enter the container's root: {e}")))?;
        chroot(".").map_err(|e| Error::Other(format!("chroot into the container's root: {e}")))?;

        // In a user namespace we joined, our IDs (the host's root) mean
        // nothing: become its root at least, or we would be "nobody".
        let joined_user_ns = self
            .namespaces
            .iter()
            .any(|(_, flag)| *flag == CloneFlags::CLONE_NEWUSER);
        let root = UserIds { uid: 0, gid: 0 };
        let user = process.user_ids()?.or(joined_user_ns.then_some(root));
        let std_switches_user = match step {
            Some(_) => None, // the step switches, after its privileged work
            None => user,
        };
        let mut command = process.to_command(hostname, std_switches_user)?;
        let cgroup_fds: Vec<i32> = self.cgroups.iter().map(|f| f.as_raw_fd()).collect();
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(move || {
                for fd in &cgroup_fds {
                    // "0" means "the writing process" in cgroup.procs.
                    if libc::write(*fd, b"0".as_ptr().cast(), 1) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                supervise::reset_signals_for_exec()?;
                match &step {
                    Some(step) => step(user),
                    None => Ok(()),
                }
            });
        }
        supervise::block_signals().map_err(|e| Error::Other(format!("block signals: {e}")))?;
        command
            .spawn()
            .map_err(|e| exit::spawn_error(e, process.program(), Path::new(container)))
    }
}
// ANCHOR_END: entry

fn open(path: &str) -> Result<File, Error> {
    File::open(path).map_err(|e| Error::io("open", path, e))
}
