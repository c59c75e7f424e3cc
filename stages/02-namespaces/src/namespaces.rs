//! Starting the container's first process in new namespaces.
//!
//! The parent clones the child with one `CLONE_NEW*` flag per namespace. The
//! child then waits on a socket until the parent has done what only the
//! parent can do from outside: write the user namespace's ID maps and make
//! a root that the namespace's root can write (and, in later stages, put the
//! child in a cgroup or give it a network device). Only then does the child
//! build its root and start the command.

use std::fs;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use nix::errno::Errno;
use nix::sched::{CloneCb, CloneFlags, clone};
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, sendmsg, socketpair,
};
use nix::sys::wait::waitpid;
use nix::unistd::{Pid, pipe2};
use stage01_chroot::cli::ContainerArgs;
use stage01_chroot::{Error, checks};

use crate::cli::NamespaceArgs;
use crate::mounts::ListedMount;
use crate::process::{Process, UserIds};
use crate::{hostname, init, supervise, userns};

/// A range of user (and group) IDs: `count` IDs from `container` inside
/// are `host` and up outside, as in `/proc/PID/uid_map`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub container: u32,
    pub host: u32,
    pub count: u32,
}

impl IdMap {
    /// Container root is host user 100000, as with Podman's and Docker's
    /// usual subordinate ID ranges.
    pub const DEFAULT: IdMap = IdMap {
        container: 0,
        host: 100_000,
        count: 65_536,
    };

    /// The line the kernel expects in uid_map and gid_map.
    pub fn map_line(&self) -> String {
        format!("{} {} {}\n", self.container, self.host, self.count)
    }

    /// The host ID that container ID `id` is. An ID the map leaves out is
    /// the host's overflow ID, 65534, which shows as `nobody` inside too.
    pub fn to_host(&self, id: u32) -> u32 {
        match id.checked_sub(self.container) {
            Some(offset) if offset < self.count => {
                self.host.checked_add(offset).unwrap_or(OVERFLOW_ID)
            }
            _ => OVERFLOW_ID,
        }
    }
}

/// A user namespace's two maps: one for user IDs, one for group IDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMaps {
    pub uid: IdMap,
    pub gid: IdMap,
}

impl IdMaps {
    /// Users and groups mapped alike, as the stages do.
    pub fn same(map: IdMap) -> IdMaps {
        IdMaps { uid: map, gid: map }
    }
}

/// What the kernel shows for an ID that a user namespace does not map.
pub const OVERFLOW_ID: u32 = 65_534;

/// Everything needed to start one container.
#[derive(Debug, Clone)]
pub struct Container {
    /// Absolute path of the root filesystem (with `root_mount`, the empty
    /// directory that file system is mounted on).
    pub rootfs: PathBuf,
    /// A file system to mount as the root inside the container's mount
    /// namespace, instead of bind-mounting `rootfs` (stage 04: an overlay).
    pub root_mount: Option<RootMount>,
    /// Host files to bind-mount over files inside, `(host path, path
    /// inside)`, like the `/etc/hosts` a network gives each container.
    pub binds: Vec<(PathBuf, PathBuf)>,
    /// `Some`: exactly these mounts, in this order, instead of the kernel
    /// file systems stage 02 mounts itself (an OCI runtime spec's list).
    pub mounts: Option<Vec<ListedMount>>,
    /// Make the root itself read-only once everything is mounted on it.
    pub readonly_root: bool,
    /// Device nodes to make in it (an OCI runtime spec's `linux.devices`).
    pub devices: Vec<crate::mounts::DeviceNode>,
    /// How mount events travel to and from the root once it is in place
    /// (`MS_SHARED`, `MS_SLAVE`, `MS_UNBINDABLE`...; an OCI runtime spec's
    /// `linux.rootfsPropagation`). `None`: private, as stage 02 makes it.
    pub root_propagation: Option<nix::mount::MsFlags>,
    pub process: Process,
    pub hostname: String,
    /// `Some` to give the container a user namespace with these mappings.
    pub user_map: Option<IdMaps>,
    /// Run in the command's process just before it execs; the engine
    /// hardens its containers there. The stages leave it `None`.
    pub before_exec: Option<BeforeExec>,
    /// Namespaces not made new: shared with the host, or joined. The
    /// stages make them all; an OCI runtime spec may say otherwise.
    pub namespaces: SharedNamespaces,
    /// `Some`: the OCI runtime's process model (see [`Gate`]). `None`: init
    /// stays PID 1 below the command, as in the stages and the engine.
    pub gate: Option<Gate>,
}

/// The namespaces a container does not get new ones of.
#[derive(Debug, Clone)]
pub struct SharedNamespaces {
    /// Kinds taken as they are (the host's, or those joined below).
    pub kept: CloneFlags,
    /// Existing namespaces to enter, each by a path like /proc/PID/ns/net.
    pub join: Vec<(CloneFlags, PathBuf)>,
}

/// How an OCI runtime starts a container in two steps. Init sets the
/// container up, reports back, and outlives the process that cloned it
/// (`create` exits); it then waits in `open`, which returns when
/// `start` says go, and *becomes* the command (exec, no fork), so that the
/// command is PID 1 and its parent is whoever adopted init.
#[derive(Clone)]
pub struct Gate {
    pub open: Arc<dyn Fn() -> std::io::Result<()> + Send + Sync>,
    /// False when whoever cloned init stays to wait for it (`runtime run`,
    /// a build's `RUN`): then init keeps dying with it, even by SIGKILL.
    pub outlives_parent: bool,
    /// What init does once through the gate.
    pub after: AfterGate,
    /// Run in init's mount namespace just before `pivot_root` (an OCI
    /// runtime's `createContainer` hooks).
    pub before_pivot: Option<Arc<crate::mounts::BeforePivot>>,
    /// Run in init once through the gate, before the command
    /// (`startContainer` hooks).
    pub after_open: Option<Arc<dyn Fn() -> std::io::Result<()> + Send + Sync>>,
}

/// What init does once through the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterGate {
    /// Become the command (exec): it is the container's PID 1, as under runc.
    BecomeCommand,
    /// Start the command as PID 2 and stay its init, passing signals on and
    /// reaping orphans, as `berth run` has it (Docker's `--init`).
    StayInit,
}

impl Default for SharedNamespaces {
    /// None: every namespace is new.
    fn default() -> Self {
        SharedNamespaces {
            kept: CloneFlags::empty(),
            join: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gate(..)")
    }
}

/// The engine's part in the container's first process: a step for the
/// command between fork and exec, and the name init shows in `ps`.
#[derive(Clone)]
pub struct BeforeExec {
    /// Runs in the command's process, just before exec. It is handed the
    /// user to become (looked up by init beforehand, in the container's
    /// root) and must switch to it itself, at the moment it chooses.
    pub step: Arc<dyn Fn(Option<UserIds>) -> std::io::Result<()> + Send + Sync>,
    /// Init's command line inside, instead of the copy of its parent's that
    /// `clone` gave it (which names host paths).
    pub init_title: Option<&'static str>,
    /// A program for init to become once the command runs, run as
    /// `berth-init` with the command's PID in `BERTH_INIT_COMMAND`, instead
    /// of staying a copy of its parent to supervise it: the engine's tiny
    /// init, which does the same in a few pages of memory.
    pub init_program: Option<Arc<OwnedFd>>,
}

impl std::fmt::Debug for BeforeExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BeforeExec(..)")
    }
}

/// `mount -t FSTYPE -o OPTIONS SOURCE <rootfs>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootMount {
    pub fstype: String,
    pub source: String,
    pub options: String,
}

// ANCHOR: clone_flags
impl Container {
    /// The container of `stage02-namespaces [OPTIONS] ROOTFS CMD...`, with a
    /// random hostname unless one was given. Checks the rootfs first.
    pub fn from_args(namespaces: NamespaceArgs, command: ContainerArgs) -> Result<Self, Error> {
        Ok(Container {
            rootfs: checks::check_rootfs(&command.rootfs)?,
            hostname: match namespaces.hostname {
                Some(name) => name,
                None => hostname::generate().map_err(|e| Error::io("read", "/dev/urandom", e))?,
            },
            user_map: namespaces.userns.then_some(IdMaps::same(IdMap::DEFAULT)),
            before_exec: None,
            process: Process::from_args(&command),
            root_mount: None,
            binds: Vec::new(),
            mounts: None,
            readonly_root: false,
            devices: Vec::new(),
            root_propagation: None,
            namespaces: SharedNamespaces::default(),
            gate: None,
        })
    }

    /// One flag per namespace the child is cloned into. The cgroup namespace
    /// is missing on purpose: init makes it after the parent has moved it
    /// into its cgroup (stage 03), so that this cgroup becomes its root.
    pub fn clone_flags(&self) -> CloneFlags {
        // ANCHOR: exercise_clone_flags
        let mut flags = CloneFlags::CLONE_NEWUTS    // hostname
            | CloneFlags::CLONE_NEWPID             // process IDs: we are PID 1
            | CloneFlags::CLONE_NEWNS              // mount table
            | CloneFlags::CLONE_NEWIPC             // System V IPC, POSIX queues
            | CloneFlags::CLONE_NEWNET; // network devices, addresses
        if self.user_map.is_some() {
            flags |= CloneFlags::CLONE_NEWUSER; // user and group IDs
        }
        flags - self.namespaces.kept
        // ANCHOR_END: exercise_clone_flags
    }

    /// Whether the container gets a new namespace of this kind.
    pub fn makes(&self, kind: CloneFlags) -> bool {
        !self.namespaces.kept.contains(kind)
    }
}
// ANCHOR_END: clone_flags

/// A container whose first process exists, in its namespaces, but waits
/// for [`Started::resume`]. Dropping it kills that process.
pub struct Started {
    pid: Pid,
    /// Cloned straight into its cgroup (see [`start_in`]).
    born_in_cgroup: bool,
    go: Option<OwnedFd>,
    /// Set once [`Started::go_ahead_while`] has said both its words.
    went_ahead: bool,
    /// With a user namespace: the root we made for the child.
    root: Option<OwnedFd>,
    /// Init writes a byte here once the command runs (EOF if it gave up).
    command_started: Option<OwnedFd>,
}

/// A container whose command runs; [`Running::wait`] until it ends.
pub struct Running {
    pid: Pid,
    command_started: bool,
}

/// Stack for the cloned child. Without CLONE_VM the child gets a copy of our
/// memory, this buffer included, so an ordinary heap buffer will do.
const CHILD_STACK_SIZE: usize = 1024 * 1024;

// ANCHOR: start
/// Clone the container's first process into new namespaces and write its
/// ID maps. It then waits for [`Started::resume`].
pub fn start(container: &Container) -> Result<Started, Error> {
    start_in(container, None)
}

/// [`start`], and with `cgroup`, a cgroup v2 directory, clone the process
/// straight into that cgroup (`clone3` with `CLONE_INTO_CGROUP`, Linux
/// 5.7), so that nobody has to move it there (see stage 03's
/// `add_process`). An older kernel clones it where we are:
/// [`Started::born_in_cgroup`] says which.
pub fn start_in(container: &Container, cgroup: Option<BorrowedFd>) -> Result<Started, Error> {
    // With a user namespace, a root mount must be an overlay we can make
    // of idmapped layers (see userns): refused now if not, before any clone.
    if container.user_map.is_some()
        && let Some(mount) = &container.root_mount
    {
        userns::Overlay::of(mount)?;
    }
    // Signals are blocked before the clone so that the child inherits the
    // mask too: both of us take them with sigwait and forward them.
    supervise::block_signals().map_err(|e| Error::Other(format!("block signals: {e}")))?;

    // "Go" travels on a socket, not a pipe: a socket can carry a file
    // descriptor along, the root we make for a user namespace.
    let (go_read, go_write) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::Other(format!("socketpair: {e}")))?;
    let (started_read, started_write) =
        pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Other(format!("pipe: {e}")))?;
    let (go_write_fd, started_read_fd) = (go_write.as_raw_fd(), started_read.as_raw_fd());
    let joined = open_joined(container)?;
    let mut stack = vec![0u8; CHILD_STACK_SIZE];

    let mut child: CloneCb = Box::new(|| {
        // The child's copies of our ends must go, or EOF never comes.
        let _ = nix::unistd::close(go_write_fd);
        let _ = nix::unistd::close(started_read_fd);
        init::run(container, &joined, &go_read, &started_write)
    });
    let flags = container.clone_flags();
    let born = match cgroup.map(|dir| clone_into_cgroup(&mut child, flags, dir)) {
        Some(Ok(pid)) => Some(pid),
        // A kernel without clone3, or without CLONE_INTO_CGROUP.
        Some(Err(Errno::ENOSYS | Errno::E2BIG | Errno::EINVAL)) | None => None,
        Some(Err(err)) => return Err(clone_error(err, container)),
    };
    let pid = match born {
        Some(pid) => {
            drop(child);
            pid
        }
        // SAFETY: we are single-threaded, so the child's copy of our memory
        // is consistent; the stack outlives the call (the child has its own
        // copy).
        None => unsafe { clone(child, &mut stack, flags, Some(libc::SIGCHLD)) }
            .map_err(|err| clone_error(err, container))?,
    };
    drop((go_read, started_write));

    let mut started = Started {
        pid,
        born_in_cgroup: born.is_some(),
        go: Some(go_write),
        went_ahead: false,
        root: None,
        command_started: Some(started_read),
    };
    if let Some(maps) = container.user_map {
        write_id_maps(pid, maps)?; // on error, dropping `started` kills the child
        // A root its root can write, made with its user namespace: sent
        // along with "go" (see userns). None: the rootfs will do as it is.
        let root_mount = container.root_mount.as_ref();
        started.root = userns::user_ns_root(&container.rootfs, root_mount, pid, maps)?;
    }
    Ok(started)
}
// ANCHOR_END: start

impl Started {
    /// The container's first process, as the host sees it.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Whether it was cloned straight into the cgroup given to
    /// [`start_in`] (else it is in ours, and must be moved).
    pub fn born_in_cgroup(&self) -> bool {
        self.born_in_cgroup
    }

    /// Everything outside is ready: let the container's init go on, and
    /// wait until its command has started.
    pub fn resume(mut self) -> Result<Running, Error> {
        self.go_on()?;
        // Return once init has built the root and started the command (or
        // given up): from then on, the container is all there for anyone
        // who looks at it, `exec` included.
        let command_started = match self.command_started.take() {
            Some(started) => matches!(nix::unistd::read(&started, &mut [0u8; 1]), Ok(1)),
            None => false,
        };
        let running = Running {
            pid: self.pid,
            command_started,
        };
        std::mem::forget(self); // the process now belongs to `running`
        Ok(running)
    }
}

impl Started {
    /// For a container with a [`Gate`]: let init go on, and wait until it
    /// has set the container up and waits at the gate. From then on the
    /// process is on its own: we no longer kill it when we go. A set-up
    /// error comes back here, in init's words.
    pub fn ready(mut self) -> Result<Pid, Error> {
        self.go_on()?;
        // "1" when it is ready (it keeps its end open until it execs), or
        // why it gave up, followed by EOF as it exits.
        let mut said = Vec::new();
        if let Some(started) = self.command_started.take() {
            let mut pipe = fs::File::from(started);
            let mut first = [0u8; 1];
            if let Ok(1) = std::io::Read::read(&mut pipe, &mut first) {
                said.push(first[0]);
                if first[0] != b'1' {
                    let _ = std::io::Read::read_to_end(&mut pipe, &mut said);
                }
            }
        }
        match said.as_slice() {
            b"1" => {
                let pid = self.pid;
                std::mem::forget(self); // init lives on without us
                Ok(pid)
            }
            b"" => Err(Error::Other(
                "the container's init ended before it was set up".into(),
            )),
            words => {
                let words = String::from_utf8_lossy(words);
                let words = words.strip_prefix('E').unwrap_or(&words);
                let (code, message) = words.trim().split_once(' ').unwrap_or(("", words));
                Err(match code.parse() {
                    Ok(code) => Error::FromContainer {
                        code,
                        message: message.to_string(),
                    },
                    Err(_) => Error::Other(words.trim().into()),
                })
            }
        }
    }
}

// ANCHOR: go_ahead
impl Started {
    /// Let init set itself up while we do `outside` (put it in its
    /// cgroup), instead of after. Init goes as far as it can without its
    /// cgroup (its root, the kernel file systems) and waits there until
    /// `outside` is done; then [`Started::resume`] or [`Started::ready`] as
    /// usual. A start then waits for the slower of the two, not for both:
    /// a first move between cgroups can take longer than all of init's
    /// set-up (see stage 03's `add_process`).
    pub fn go_ahead_while(
        &mut self,
        outside: impl FnOnce(Pid) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let go = self
            .go
            .take()
            .ok_or_else(|| Error::Other("resumed twice".into()))?;
        // Init may give up on its own meanwhile (a mount it can't make):
        // then what it says is the error, not what that did to us (a closed
        // socket, a move of a process that is gone). `ready` reads it.
        self.went_ahead = true;
        if send_go(&go, self.root.take(), GO_AHEAD).is_err() && self.init_gave_up() {
            return Ok(());
        }
        // On error `go` closes: init, waiting for its cgroup, reads EOF and
        // gives up (and dropping `self` kills it anyway).
        match outside(self.pid) {
            Err(_) if self.init_gave_up() => return Ok(()),
            result => result?,
        }
        match send_go(&go, None, GO) {
            Err(_) if self.init_gave_up() => Ok(()),
            result => result.map_err(wake_error),
        }
    }

    /// Whether init has said something already (why it gave up) or ended:
    /// either way its report pipe reads.
    fn init_gave_up(&self) -> bool {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let Some(report) = &self.command_started else {
            return false;
        };
        let mut watch = [PollFd::new(report.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut watch, PollTimeout::ZERO), Ok(n) if n > 0)
    }
}
// ANCHOR_END: go_ahead

impl Started {
    /// Say "go", with the root we made, if any (unless
    /// [`Started::go_ahead_while`] said it already).
    fn go_on(&mut self) -> Result<(), Error> {
        if self.went_ahead {
            return Ok(());
        }
        let go = self
            .go
            .take()
            .ok_or_else(|| Error::Other("resumed twice".into()))?;
        send_go(&go, self.root.take(), GO).map_err(wake_error)
    }
}

fn wake_error(err: Errno) -> Error {
    Error::Other(format!("wake the container: {err}"))
}

impl Drop for Started {
    /// Never leave a half-made container behind.
    fn drop(&mut self) {
        let _ = kill(self.pid, Signal::SIGKILL);
        let _ = waitpid(self.pid, None);
    }
}

impl Running {
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// False when init could not start the command (it said why on its
    /// stderr, and `wait` gives the shell's code for it, 126 or 127).
    pub fn command_started(&self) -> bool {
        self.command_started
    }

    /// Forward signals to the container until it ends; its exit code.
    pub fn wait(self) -> Result<u8, Error> {
        let status = supervise::supervise(self.pid)
            .map_err(|e| Error::Other(format!("wait for the container: {e}")))?;
        Ok(stage01_chroot::exit::exit_code(status))
    }
}

/// "Go": everything outside is ready.
pub(crate) const GO: u8 = b'1';
/// "Go ahead": set up, but wait for [`GO`] before anything that needs the
/// cgroup (see [`Started::go_ahead_while`]).
pub(crate) const GO_AHEAD: u8 = b'2';

/// One byte, [`GO`] or [`GO_AHEAD`], with the root we made for the child,
/// if any, attached (SCM_RIGHTS: the kernel puts a copy of the descriptor
/// in the child).
pub(crate) fn send_go(go: &OwnedFd, root: Option<OwnedFd>, word: u8) -> nix::Result<()> {
    let fds: Vec<i32> = root.iter().map(|fd| fd.as_raw_fd()).collect();
    let with_root = [ControlMessage::ScmRights(&fds)];
    let attached: &[ControlMessage] = if fds.is_empty() { &[] } else { &with_root };
    let word = [word];
    let go_byte = [IoSlice::new(&word)];
    sendmsg::<()>(
        go.as_raw_fd(),
        &go_byte,
        attached,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map(drop)
}

// ANCHOR: id_maps
/// Write the child's uid_map and gid_map. The kernel accepts one write per
/// file, from a process with the right capabilities in the parent namespace:
/// that is us, outside, which is why the child has to wait for it.
fn write_id_maps(pid: Pid, maps: IdMaps) -> Result<(), Error> {
    for (file, map) in [("uid_map", maps.uid), ("gid_map", maps.gid)] {
        let path = PathBuf::from(format!("/proc/{pid}/{file}"));
        fs::write(&path, map.map_line()).map_err(|e| Error::io("write", &path, e))?;
    }
    Ok(())
}
// ANCHOR_END: id_maps

/// Open the namespaces to join, here, where a wrong path is an error of
/// ours. A PID namespace is entered by us: it decides where our *next*
/// child is born. The others the child enters (see [`init`]).
fn open_joined(container: &Container) -> Result<Vec<(CloneFlags, OwnedFd)>, Error> {
    let mut joined = Vec::new();
    for (kind, path) in &container.namespaces.join {
        let file = fs::File::open(path).map_err(|e| Error::io("open namespace", path, e))?;
        let fd = OwnedFd::from(file);
        if *kind == CloneFlags::CLONE_NEWPID {
            nix::sched::setns(&fd, *kind)
                .map_err(|e| Error::io("join the PID namespace", path, e.into()))?;
        } else {
            joined.push((*kind, fd));
        }
    }
    Ok(joined)
}

/// `clone3` with `CLONE_INTO_CGROUP`: like `fork`, the child goes on from
/// here, on a copy of our stack, into `child` and out through `_exit`.
/// Only the kernel's `clone3` can name a cgroup; glibc has no wrapper.
fn clone_into_cgroup(
    child: &mut CloneCb,
    flags: CloneFlags,
    cgroup: BorrowedFd,
) -> nix::Result<Pid> {
    /// `CLONE_INTO_CGROUP` (libc's constant is an `int`, too narrow for it).
    const INTO_CGROUP: u64 = 0x2_0000_0000;
    // SAFETY: all zeros is a valid clone_args (no stack: the child runs on
    // a copy of ours, as after fork).
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = flags.bits() as u64 | INTO_CGROUP;
    args.exit_signal = libc::SIGCHLD as u64;
    args.cgroup = cgroup.as_raw_fd() as u64;
    // SAFETY: as with fork: we are single-threaded, so the child's copy of
    // our memory is consistent, and the child never returns from here.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    match pid {
        -1 => Err(Errno::last()),
        0 => {
            let code = child();
            // SAFETY: ending the child without running our exit handlers,
            // which belong to the parent.
            unsafe { libc::_exit(code as i32) }
        }
        pid => Ok(Pid::from_raw(pid as i32)),
    }
}

fn clone_error(err: Errno, container: &Container) -> Error {
    let hint = match (err, container.user_map.is_some()) {
        (Errno::EPERM, _) => " (run as root; inside another container, it may forbid namespaces)",
        (Errno::EINVAL | Errno::ENOSPC, true) => {
            " (are user namespaces enabled? see sysctl user.max_user_namespaces)"
        }
        _ => "",
    };
    Error::Other(format!("clone into new namespaces: {err}{hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Started` whose init has already given up: it said why on its
    /// report pipe and closed its end of "go". `pid` is a real process
    /// (dropping a `Started` kills and collects it).
    #[allow(clippy::zombie_processes, reason = "Started's drop waits for it")]
    fn init_that_gave_up(words: &[u8]) -> Started {
        let (init_go, go) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let (report, init_report) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        nix::unistd::write(&init_report, words).unwrap();
        drop((init_go, init_report));
        let child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        Started {
            pid: Pid::from_raw(child.id() as i32),
            born_in_cgroup: false,
            go: Some(go),
            went_ahead: false,
            root: None,
            command_started: Some(report),
        }
    }

    #[test]
    fn an_init_that_gave_up_during_the_go_ahead_is_heard_not_the_move() {
        let mut started = init_that_gave_up(b"E125 mount /bin: Not a directory");
        // The move fails (init is gone), and so would "go": neither is the
        // error; what init said is.
        started
            .go_ahead_while(|_| Err(Error::Other("move: No such process".into())))
            .unwrap();
        let err = started.ready().unwrap_err();
        assert!(err.to_string().contains("mount /bin"), "{err}");
    }

    #[test]
    fn a_move_that_fails_while_init_waits_is_the_error() {
        let mut started = init_that_gave_up(b"");
        // Nothing said, but the report pipe is at EOF, as when init ends:
        // that counts as giving up. A live init has said nothing: then
        // the move's error is the error.
        let (live_report, _init_keeps) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        started.command_started = Some(live_report);
        let err = started
            .go_ahead_while(|_| Err(Error::Other("cgroup: invalid limit".into())))
            .unwrap_err();
        assert!(err.to_string().contains("invalid limit"), "{err}");
    }

    #[test]
    fn container_ids_become_host_ids_of_the_range_and_the_rest_nobody() {
        let map = IdMap::DEFAULT;
        assert_eq!(map.map_line(), "0 100000 65536\n");
        assert_eq!(map.to_host(0), 100_000);
        assert_eq!(map.to_host(1000), 101_000);
        assert_eq!(map.to_host(65_535), 165_535);
        assert_eq!(map.to_host(65_536), OVERFLOW_ID);
        let shifted = IdMap {
            container: 1000,
            host: 5000,
            count: 10,
        };
        assert_eq!(shifted.to_host(999), OVERFLOW_ID);
        assert_eq!(shifted.to_host(1009), 5009);
        assert_eq!(shifted.to_host(1010), OVERFLOW_ID);
    }
}
