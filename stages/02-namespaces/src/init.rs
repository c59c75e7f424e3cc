//! The container's first process: PID 1 of its PID namespace.
//!
//! It finishes the container from the inside (user IDs, hostname, loopback,
//! root file system), starts the command as PID 2, and stays on as a tiny
//! init: it forwards signals to the command and reaps orphaned processes, so
//! no zombie piles up whatever the command does. When the command exits,
//! init exits with its status, and the kernel kills anything left in the
//! namespace.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;

use nix::sched::{CloneFlags, unshare};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::unistd::{Gid, Uid, setgroups, sethostname, setresgid, setresuid};
use stage01_chroot::Error;

use crate::namespaces::{AfterGate, Container, GO, GO_AHEAD, Gate};
use crate::process::ProcessStdio;
use crate::{mounts, network, supervise};

/// The body of the cloned child; its return value is its exit code.
pub fn run(
    container: &Container,
    joined: &[(CloneFlags, OwnedFd)],
    go: &OwnedFd,
    started: &OwnedFd,
) -> isize {
    die_with_parent();
    if matches!(container.process.stdio, ProcessStdio::ConsoleSocket { .. }) {
        // The command's streams will be its own terminal: let go of the
        // caller's now, or a caller that reads them until EOF (as
        // containerd does `create`'s) waits for us, while we wait for it.
        stdio_to_dev_null();
    }
    let parent = nix::unistd::getppid();
    let program = program_name();
    if let Some(title) = container.before_exec.as_ref().and_then(|b| b.init_title) {
        set_title(title);
    }
    let Some(Go { root, ahead }) = wait_for_go(go) else {
        return stage01_chroot::error::EXIT_SETUP_FAILED as isize;
    };
    // Told "go ahead", the parent still moves us into our cgroup while we
    // set up, and says "go" when we are in it.
    let cgroup_pending = ahead.then_some(go);
    let set = enter(joined).and_then(|()| set_up(container, root, cgroup_pending));
    let Some(gate) = &container.gate else {
        return match set.and_then(|()| start_command(container, started)) {
            Ok(code) => code as isize,
            Err(err) => {
                eprintln!("{program}: {err}");
                err.exit_code() as isize
            }
        };
    };
    // The OCI runtime's way: a set-up error goes back to `create`, as its
    // exit code and its words ("E127 /bin/x: command not found..."; "1"
    // alone means ready).
    match set.and_then(|()| exec_command(container, gate, parent, started)) {
        Ok(code) => code as isize,
        Err(err) => {
            let said = format!("E{} {err}", err.exit_code());
            let _ = nix::unistd::write(started, said.as_bytes());
            err.exit_code() as isize
        }
    }
}

/// Enter the namespaces an OCI runtime spec names by path (all but the
/// PID namespace, which the parent entered for us: see `namespaces`).
fn enter(joined: &[(CloneFlags, OwnedFd)]) -> Result<(), Error> {
    for (kind, fd) in joined {
        nix::sched::setns(fd, *kind)
            .map_err(|e| Error::Other(format!("join a namespace ({kind:?}): {e}")))?;
    }
    Ok(())
}

// ANCHOR: set_up
/// Inside the new namespaces, in this order. `root` is the root the parent
/// made for a user namespace (see [`crate::userns`]). `cgroup_pending`: the
/// socket on which the parent says "go" once we are in our cgroup, when it
/// let us go ahead before.
fn set_up(
    container: &Container,
    root: Option<OwnedFd>,
    cgroup_pending: Option<&OwnedFd>,
) -> Result<(), Error> {
    if container.user_map.is_some() {
        become_root_of_user_namespace()?;
        die_with_parent(); // changing our user ID cleared it
    }
    // Once the parent has put us in our cgroup (stage 03), a new cgroup
    // namespace makes that cgroup the root of what we see in
    // /proc/self/cgroup. `prepare_root` calls this before anything that
    // needs the cgroup: a cgroup mount, or what runs before pivot_root.
    let mut in_cgroup = false;
    let mut enter_cgroup = || -> Result<(), Error> {
        if in_cgroup {
            return Ok(());
        }
        if let Some(go) = cgroup_pending {
            wait_for_cgroup(go)?;
        }
        if container.makes(CloneFlags::CLONE_NEWCGROUP) {
            unshare(CloneFlags::CLONE_NEWCGROUP)
                .map_err(|e| Error::Other(format!("unshare the cgroup namespace: {e}")))?;
        }
        in_cgroup = true;
        Ok(())
    };
    if container.makes(CloneFlags::CLONE_NEWUTS) && !container.hostname.is_empty() {
        sethostname(&container.hostname)
            .map_err(|e| Error::Other(format!("sethostname {}: {e}", container.hostname)))?;
    }
    if container.makes(CloneFlags::CLONE_NEWNET) {
        network::loopback_up().map_err(|e| Error::Other(format!("bring up lo: {e}")))?;
    }
    mounts::prepare_root(
        &container.rootfs,
        container.root_mount.as_ref(),
        root,
        &container.binds,
        container.mounts.as_deref(),
        container
            .gate
            .as_ref()
            .and_then(|g| g.before_pivot.as_deref()),
        &mut enter_cgroup,
    )?;
    mounts::make_device_nodes(&container.devices)?;
    if let Some(propagation) = container.root_propagation {
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            propagation | nix::mount::MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| Error::io("set the root's propagation", "/", e.into()))?;
    }
    if container.readonly_root {
        mounts::make_root_read_only()?;
    }
    Ok(())
}

/// Start the command as our child, tell the parent, then be its init until
/// it exits.
fn start_command(container: &Container, started: &OwnedFd) -> Result<u8, Error> {
    let command = prepared_command(container)?;
    be_init_of(container, command, Some(started))
}

/// Start `command` as our child (saying so on `started`, if given), then be
/// its init until it exits: ourselves, or the engine's tiny init program.
fn be_init_of(
    container: &Container,
    mut command: std::process::Command,
    started: Option<&OwnedFd>,
) -> Result<u8, Error> {
    let child = command.spawn().map_err(|err| {
        stage01_chroot::exit::spawn_error(err, container.process.program(), &container.rootfs)
    })?;
    if let Some(started) = started {
        let _ = nix::unistd::write(started, b"1"); // spawn returns once it exec'd
    }
    let program = container
        .before_exec
        .as_ref()
        .and_then(|b| b.init_program.as_ref());
    if let Some(program) = program {
        become_init_program(program, child.id()); // returns only if that failed
    }
    let status = supervise::supervise(nix::unistd::Pid::from_raw(child.id() as i32))
        .map_err(|e| Error::Other(format!("init: wait for the command: {e}")))?;
    Ok(stage01_chroot::exit::exit_code(status))
}
// ANCHOR_END: set_up

/// The command, ready to spawn or exec: its user looked up now, in the
/// container's root, so that an unknown user is an error that says so
/// before anything is forked.
fn prepared_command(container: &Container) -> Result<std::process::Command, Error> {
    let user = container.process.user_ids()?;
    let step = container.before_exec.as_ref().map(|b| b.step.clone());
    let std_switches_user = match step {
        Some(_) => None, // the engine's step switches, at its moment
        None => user,
    };
    let mut command = container
        .process
        .to_command(&container.hostname, std_switches_user)?;
    // SAFETY: runs between fork and exec. The command must not inherit the
    // signals init blocked for sigwait; the engine's step is its own.
    unsafe {
        command.pre_exec(move || {
            supervise::reset_signals_for_exec()?;
            match &step {
                Some(step) => step(user),
                None => Ok(()),
            }
        })
    };
    Ok(command)
}

/// The OCI runtime's way: say "ready", outlive `create`, wait at the gate,
/// then become the command. Errors before "ready" go back to `create`;
/// after it, to the container's stderr (and its exit code).
fn exec_command(
    container: &Container,
    gate: &Gate,
    parent: nix::unistd::Pid,
    started: &OwnedFd,
) -> Result<u8, Error> {
    let mut command = prepared_command(container)?;
    find_program(&container.process, &container.rootfs)?;
    // From here on we outlive `create`, by design: no death signal. If it
    // died before we got here, nobody will ever hear "ready": give up.
    if gate.outlives_parent {
        let _ = nix::sys::prctl::set_pdeathsig(None);
    }
    if nix::unistd::getppid() != parent {
        return Err(Error::Other(
            "create ended before the container was set up".into(),
        ));
    }
    nix::unistd::write(started, b"1").map_err(|e| Error::Other(format!("report ready: {e}")))?;
    let program = program_name();
    if let Err(err) = (gate.open)() {
        eprintln!("{program}: wait for start: {err}");
        return Ok(stage01_chroot::error::EXIT_SETUP_FAILED);
    }
    if let Some(step) = &gate.after_open
        && let Err(err) = step()
    {
        eprintln!("{program}: after start: {err}");
        return Ok(stage01_chroot::error::EXIT_SETUP_FAILED);
    }
    if gate.after == AfterGate::StayInit {
        return be_init_of(container, command, None).or_else(|err| {
            eprintln!("{program}: {err}");
            Ok(err.exit_code())
        });
    }
    let err = stage01_chroot::exit::spawn_error(
        command.exec(), // returns only if exec failed
        container.process.program(),
        &container.rootfs,
    );
    eprintln!("{program}: {err}");
    Ok(err.exit_code())
}

/// Check that the program exists and may be run, as `exec` will find it
/// (a name without a slash is looked for in the process's PATH), so that
/// a wrong command is an error of `create`, not an exit code after `start`.
fn find_program(process: &crate::Process, rootfs: &std::path::Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    // 0: runnable, 1: there but not runnable (as a shell says 126), 2: not there (127).
    let look = |path: &std::path::Path| match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => 0,
        Ok(_) => 1,
        Err(_) => 2,
    };
    let program = std::path::Path::new(process.program());
    let found = match program.as_os_str().as_encoded_bytes().contains(&b'/') {
        true => look(&process.cwd.join(program)),
        false => {
            let path = process
                .env
                .iter()
                .find(|(key, _)| key == "PATH")
                .map(|(_, value)| value.clone())
                .unwrap_or_else(|| {
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
                });
            std::env::split_paths(&path)
                .map(|dir| look(&dir.join(program)))
                .min()
                .unwrap_or(2)
        }
    };
    let (command, rootfs) = (process.program().to_owned(), rootfs.to_owned());
    match found {
        0 => Ok(()),
        1 => Err(Error::CommandNotExecutable { command, rootfs }),
        _ => Err(Error::CommandNotFound { command, rootfs }),
    }
}

/// Become `program`, named `berth-init`, the command's PID in its
/// environment (`BERTH_INIT_COMMAND`): it keeps our PID, our child, and the
/// signals we blocked, which is all it needs to be the container's init.
/// If that fails, we say so and stay init ourselves.
fn become_init_program(program: &OwnedFd, command: u32) {
    let args = [c"berth-init"];
    let command =
        std::ffi::CString::new(format!("BERTH_INIT_COMMAND={command}")).unwrap_or_default();
    let env = [command.as_c_str()];
    let flags = nix::fcntl::AtFlags::AT_EMPTY_PATH;
    let Err(err) = nix::unistd::execveat(program, c"", &args, &env, flags);
    eprintln!("{}: run the tiny init: {err}; staying init", program_name());
}

/// Our standard streams on /dev/null (the host's: we haven't moved yet).
fn stdio_to_dev_null() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: dup2 onto our own standard descriptors.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}

/// If the stage binary outside dies, even by SIGKILL, take the container
/// down with it: the kernel then kills init, and so the whole namespace.
/// The kernel forgets this whenever our user ID changes.
fn die_with_parent() {
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
}

/// The parent's go-ahead.
struct Go {
    /// With a user namespace, the root the parent made for us.
    root: Option<OwnedFd>,
    /// "Go ahead": our cgroup is not ready yet (see [`wait_for_cgroup`]).
    ahead: bool,
}

/// Block until the parent says go, and take the root it may send along
/// with it. `None` (EOF) means the parent gave up: then we exit quietly,
/// and the parent reports why.
fn wait_for_go(go: &OwnedFd) -> Option<Go> {
    let mut byte = [0u8; 1];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut buffer = [IoSliceMut::new(&mut byte)];
    let flags = MsgFlags::MSG_CMSG_CLOEXEC;
    let message = recvmsg::<()>(go.as_raw_fd(), &mut buffer, Some(&mut space), flags).ok()?;
    if message.bytes != 1 {
        return None;
    }
    let mut root = None;
    for attached in message.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(fds) = attached {
            for fd in fds {
                // SAFETY: the kernel just made this descriptor, for us alone.
                root.get_or_insert(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    let ahead = match byte[0] {
        GO => false,
        GO_AHEAD => true,
        _ => return None,
    };
    Some(Go { root, ahead })
}

/// After "go ahead": block until the parent says "go", which it does once
/// we are in our cgroup. EOF means it gave up (and kills us).
fn wait_for_cgroup(go: &OwnedFd) -> Result<(), Error> {
    let mut byte = [0u8; 1];
    match nix::unistd::read(go, &mut byte) {
        Ok(1) if byte[0] == GO => Ok(()),
        _ => Err(Error::Other(
            "the runtime gave up before the container was in its cgroup".into(),
        )),
    }
}

/// After the parent wrote our ID maps we are still the host's root, which
/// the new namespace doesn't map; switch to the IDs that are its root.
fn become_root_of_user_namespace() -> Result<(), Error> {
    let root = (Uid::from_raw(0), Gid::from_raw(0));
    setresgid(root.1, root.1, root.1)
        .and_then(|()| setgroups(&[]))
        .and_then(|()| setresuid(root.0, root.0, root.0))
        .map_err(|e| Error::Other(format!("become root of the user namespace: {e}")))
}

/// Show `title` as our command line (and name) in `ps`. We are a copy of
/// the process that cloned us, so until now we showed its command line,
/// host paths and all. Our arguments live in our own memory, between the
/// addresses /proc/self/stat gives as `arg_start` and `arg_end`; the
/// kernel reads /proc/PID/cmdline from there, so we overwrite them (as
/// `setproctitle` does): the title, then zeros.
fn set_title(title: &str) {
    let _ = nix::sys::prctl::set_name(&std::ffi::CString::new(title).unwrap_or_default());
    let Some((start, end)) = argument_area() else {
        return;
    };
    let length = end.saturating_sub(start);
    let bytes = title.as_bytes();
    if length <= bytes.len() {
        return; // no room: keep what is there rather than cut it short
    }
    // SAFETY: [start, end) is our own argument area, on our stack, which
    // nothing else writes to; we write within it.
    unsafe {
        std::ptr::write_bytes(start as *mut u8, 0, length);
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), start as *mut u8, bytes.len());
    }
}

/// `arg_start` and `arg_end`: fields 48 and 49 of /proc/self/stat, counted
/// from the first, the PID; field 3, the state, follows the `(name)`.
fn argument_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(48 - 3);
    let start = fields.next()?.parse().ok()?;
    let end = fields.next()?.parse().ok()?;
    Some((start, end))
}

pub(crate) fn program_name() -> String {
    std::env::args()
        .next()
        .and_then(|arg0| arg0.rsplit('/').next().map(String::from))
        .unwrap_or_else(|| "berth".into())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};

    use super::*;
    use crate::namespaces::send_go;

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap()
    }

    #[test]
    fn after_go_ahead_init_waits_for_go_before_its_cgroup_steps() {
        let (init_end, parent_end) = pair();
        send_go(&parent_end, None, GO_AHEAD).unwrap();
        let go = wait_for_go(&init_end).expect("a go-ahead");
        assert!(go.ahead && go.root.is_none());
        // The parent says "go" only once its move is done.
        let moved = Arc::new(AtomicBool::new(false));
        let parent = std::thread::spawn({
            let moved = moved.clone();
            move || {
                std::thread::sleep(std::time::Duration::from_millis(100));
                moved.store(true, Ordering::SeqCst);
                send_go(&parent_end, None, GO).unwrap();
                parent_end // kept open until init has read
            }
        });
        wait_for_cgroup(&init_end).unwrap();
        assert!(moved.load(Ordering::SeqCst), "init went on before the move");
        drop(parent.join());
    }

    #[test]
    fn a_plain_go_needs_no_second_word() {
        let (init_end, parent_end) = pair();
        send_go(&parent_end, None, GO).unwrap();
        assert!(!wait_for_go(&init_end).unwrap().ahead);
    }

    #[test]
    fn a_parent_that_gives_up_after_go_ahead_stops_init() {
        let (init_end, parent_end) = pair();
        send_go(&parent_end, None, GO_AHEAD).unwrap();
        assert!(wait_for_go(&init_end).unwrap().ahead);
        drop(parent_end); // its move failed
        assert!(wait_for_cgroup(&init_end).is_err());
    }

    #[test]
    fn a_word_init_does_not_know_stops_it() {
        let (init_end, parent_end) = pair();
        send_go(&parent_end, None, b'x').unwrap();
        assert!(wait_for_go(&init_end).is_none());
    }
}
