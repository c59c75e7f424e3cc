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
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns, unshare};
use nix::unistd::{Pid, chroot, fchdir};
use stage01_chroot::{Error, exit};
use stage02_namespaces::supervise;
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

/// The namespaces we join, the mount namespace last: after it, paths
/// under /proc would be the container's.
const NAMESPACES: &[(&str, CloneFlags)] = &[
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
    let init = match record.state.init {
        Some(init) if record.is_running() && init.alive() => init,
        _ => {
            return Err(Error::Other(format!(
                "container {} is not running (see: berth ps -a)",
                record.display_name()
            )));
        }
    };
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
    let pid = init.pid;
    let namespaces = NAMESPACES
        .iter()
        .map(|(name, flag)| Ok((open(&format!("/proc/{pid}/ns/{name}"))?, *flag)))
        .collect::<Result<Vec<_>, Error>>()?;
    let root = open(&format!("/proc/{pid}/root"))?;
    let cgroups = cgroup_procs_of(record)?;
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
    // PID namespace, the kernel refuses us new threads. Threads share the
    // root and working directory, which entering a mount namespace changes,
    // so we take a private copy of those first.
    let relay = terminal.map(|t| t.relay(options.interactive)).transpose()?;
    unshare(CloneFlags::CLONE_FS).map_err(|e| Error::Other(format!("unshare(CLONE_FS): {e}")))?;

    // Into its namespaces and its root.
    for (file, flag) in &namespaces {
        setns(file.as_fd(), *flag).map_err(|e| {
            Error::Other(format!(
                "setns into {}'s {flag:?}: {e}",
                record.display_name()
            ))
        })?;
    }
    fchdir(&root).map_err(|e| Error::Other(format!("enter the container's root: {e}")))?;
    chroot(".").map_err(|e| Error::Other(format!("chroot into the container's root: {e}")))?;

    // The child: born in its PID namespace, moved into its cgroup before
    // exec, as the user looked up in the container's /etc/passwd.
    let user = process.user_ids()?;
    let std_switches_user = match hardening {
        Some(_) => None, // the hardening switches, after its privileged steps
        None => user,
    };
    let mut command = process.to_command(&hostname, std_switches_user)?;
    let cgroup_fds: Vec<i32> = cgroups.iter().map(|f| f.as_raw_fd()).collect();
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
            match &hardening {
                Some(hardening) => hardening.apply(user),
                None => Ok(()),
            }
        });
    }
    supervise::block_signals().map_err(|e| Error::Other(format!("block signals: {e}")))?;
    let child = command
        .spawn()
        .map_err(|e| exit::spawn_error(e, &program, Path::new(record.display_name())))?;
    drop((command, process)); // their copies of the terminal, if any
    let status = supervise::supervise(Pid::from_raw(child.id() as i32))
        .map_err(|e| Error::Other(format!("wait for the exec'd process: {e}")))?;
    if let Some(relay) = relay {
        relay.finish();
    }
    Ok(exit::exit_code(status))
}
// ANCHOR_END: exec

fn open(path: &str) -> Result<File, Error> {
    File::open(path).map_err(|e| Error::io("open", path, e))
}

/// `cgroup.procs` of each of the container's cgroup directories, opened
/// for writing.
fn cgroup_procs_of(record: &Record) -> Result<Vec<File>, Error> {
    record
        .state
        .cgroups
        .iter()
        .map(|dir| {
            let procs = dir.join("cgroup.procs");
            OpenOptions::new()
                .write(true)
                .open(&procs)
                .map_err(|e| Error::io("open", &procs, e))
        })
        .collect()
}
