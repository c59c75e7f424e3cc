//! What runs in the container: the program and its arguments, its
//! environment, its working directory and the user it runs as.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use stage01_chroot::Error;
use stage01_chroot::cli::{ContainerArgs, default_env};

#[derive(Debug, Clone)]
pub struct Process {
    /// The program, then its arguments.
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    /// Inside the container; made if it is missing, as Docker does.
    pub cwd: PathBuf,
    /// `uid[:gid]` or `name[:group]`, looked up in the container's own
    /// /etc/passwd and /etc/group. `None` runs as root.
    pub user: Option<String>,
    /// Where its stdin, stdout and stderr go.
    pub stdio: ProcessStdio,
}

/// The command's standard streams. The stages pass on their own; the
/// engine can close stdin, or give the command a terminal of its own.
#[derive(Debug, Clone, Default)]
pub enum ProcessStdio {
    /// Init's, which are the stage binary's.
    #[default]
    Inherit,
    /// No input (`/dev/null`), output as `Inherit`.
    NoInput,
    /// All three on this terminal (the inner side of a pseudo-terminal),
    /// which also becomes the controlling terminal of a new session, so
    /// that Ctrl-C and job control work inside.
    Terminal(Arc<OwnedFd>),
    /// As `Terminal`, on a pseudo-terminal made inside the container (its
    /// own /dev/pts, so that `tty` can name it), whose outer side is sent
    /// over this connected Unix socket: an OCI runtime's `--console-socket`,
    /// where the caller (conmon, a containerd shim) relays the terminal.
    ConsoleSocket {
        socket: Arc<OwnedFd>,
        /// Rows and columns, if the caller says.
        size: Option<(u16, u16)>,
    },
}

impl Process {
    /// `CMD [ARGS...]` from the command line, with a container's defaults.
    pub fn from_args(args: &ContainerArgs) -> Process {
        Process {
            args: args.command.clone(),
            env: default_env(),
            cwd: "/".into(),
            user: None,
            stdio: ProcessStdio::Inherit,
        }
    }

    pub fn program(&self) -> &OsStr {
        self.args.first().map_or(OsStr::new(""), |p| p.as_os_str())
    }

    /// The user to run as, looked up in the root we stand in (the
    /// container's, once inside): `None` for root.
    pub fn user_ids(&self) -> Result<Option<UserIds>, Error> {
        self.user
            .as_deref()
            .map(|user| user_ids(user).map(|(uid, gid)| UserIds { uid, gid }))
            .transpose()
    }

    /// The `Command` init starts, once it stands in the container's root;
    /// it switches to `user` just before exec (pass `None` to leave that
    /// to a step of one's own).
    pub fn to_command(&self, hostname: &str, user: Option<UserIds>) -> Result<Command, Error> {
        std::fs::create_dir_all(&self.cwd)
            .map_err(|e| Error::io("create working directory", &self.cwd, e))?;
        let mut command = Command::new(self.program());
        command
            .args(self.args.iter().skip(1))
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("HOSTNAME", hostname)
            .current_dir(&self.cwd);
        if let Some(UserIds { uid, gid }) = user {
            command.uid(uid).gid(gid);
        }
        self.connect_stdio(&mut command)?;
        // SAFETY: one system call between fork and exec.
        unsafe { command.pre_exec(close_other_files_at_exec) };
        Ok(command)
    }

    fn connect_stdio(&self, command: &mut Command) -> Result<(), Error> {
        let console;
        let terminal = match &self.stdio {
            ProcessStdio::Inherit => return Ok(()),
            ProcessStdio::NoInput => {
                command.stdin(Stdio::null());
                return Ok(());
            }
            ProcessStdio::Terminal(terminal) => terminal,
            ProcessStdio::ConsoleSocket { socket, size } => {
                console = Arc::new(terminal_for_console(socket, *size)?);
                &console
            }
        };
        let stream = || {
            terminal
                .try_clone()
                .map(Stdio::from)
                .map_err(|e| Error::Other(format!("duplicate the terminal: {e}")))
        };
        command.stdin(stream()?).stdout(stream()?).stderr(stream()?);
        // SAFETY: two system calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                nix::unistd::setsid()?;
                if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(())
    }
}

/// A user and its group, as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserIds {
    pub uid: u32,
    pub gid: u32,
}

// ANCHOR: console_socket
/// A new pseudo-terminal from the /dev/ptmx of the root we stand in (the
/// container's), its outer side sent over `socket` as an attached file
/// descriptor (SCM_RIGHTS); the inner side, for the command.
fn terminal_for_console(socket: &OwnedFd, size: Option<(u16, u16)>) -> Result<OwnedFd, Error> {
    use nix::fcntl::OFlag;
    use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    use std::os::fd::AsRawFd;
    let fail = |step: &str, e: &dyn std::fmt::Display| {
        Error::Other(format!("console socket: {step}: {e}"))
    };
    let outer = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| fail("open /dev/ptmx in the container", &e))?;
    grantpt(&outer)
        .and_then(|()| unlockpt(&outer))
        .map_err(|e| fail("unlock the terminal", &e))?;
    let name = ptsname_r(&outer).map_err(|e| fail("name the terminal", &e))?;
    let inner: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(&name)
        .map_err(|e| fail(&format!("open {name}"), &e))?
        .into();
    if let Some((rows, columns)) = size {
        let size = libc::winsize {
            ws_row: rows,
            ws_col: columns,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer.
        unsafe { libc::ioctl(outer.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    }
    let fds = [outer.as_raw_fd()];
    let data = [std::io::IoSlice::new(name.as_bytes())];
    sendmsg::<()>(
        socket.as_raw_fd(),
        &data,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| fail("send the terminal", &e))?;
    Ok(inner)
}
// ANCHOR_END: console_socket

// ANCHOR: close_files
/// Only the three standard streams may cross into the container: any other
/// open file we hold, or that whoever started us left open (a directory of
/// the host's, say, as fd 7), would be a way out through `/proc/self/fd/7`.
/// Marks every descriptor from 3 up close-on-exec, in one system call (so
/// it is safe between fork and exec).
pub fn close_other_files_at_exec() -> std::io::Result<()> {
    // SAFETY: close_range only changes flags of our own descriptors.
    let marked = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    match marked {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}
// ANCHOR_END: close_files

/// `USER[:GROUP]` to IDs, from the /etc/passwd and /etc/group of the root
/// we stand in (the container's, once inside).
pub fn user_ids(spec: &str) -> Result<(u32, u32), Error> {
    resolve_user(
        spec,
        &read_or_empty("/etc/passwd"),
        &read_or_empty("/etc/group"),
    )
}

fn read_or_empty(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// `USER[:GROUP]` to IDs, the way Docker reads an image's `User`: names are
/// looked up in the given passwd and group files, numbers taken as they are;
/// without a group, a named user gets its passwd group and a number gets 0.
pub fn resolve_user(spec: &str, passwd: &str, group: &str) -> Result<(u32, u32), Error> {
    let (user, group_spec) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    let entry = |file: &str, name: &str| -> Option<Vec<String>> {
        file.lines()
            .map(|line| line.split(':').map(String::from).collect::<Vec<_>>())
            .find(|fields| fields.len() > 3 && fields[0] == name)
    };
    let (uid, passwd_gid) = match user.parse::<u32>() {
        Ok(uid) => (uid, 0),
        Err(_) => {
            let fields = entry(passwd, user).ok_or_else(|| {
                Error::Other(format!(
                    "user {user:?} is not in the container's /etc/passwd"
                ))
            })?;
            let id = |i: usize| fields[i].parse::<u32>().ok();
            id(2).zip(id(3)).ok_or_else(|| {
                Error::Other(format!(
                    "the container's /etc/passwd entry for {user:?} is malformed"
                ))
            })?
        }
    };
    let gid = match group_spec {
        None => passwd_gid,
        Some(group_name) => match group_name.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => entry(group, group_name)
                .and_then(|fields| fields[2].parse().ok())
                .ok_or_else(|| {
                    Error::Other(format!(
                        "group {group_name:?} is not in the container's /etc/group"
                    ))
                })?,
        },
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\nweb:x:1000:1001::/home/web:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:\nweb:x:1001:\n";

    #[test]
    fn users_by_name_and_number() {
        assert_eq!(resolve_user("web", PASSWD, GROUP).unwrap(), (1000, 1001));
        assert_eq!(resolve_user("1234", PASSWD, GROUP).unwrap(), (1234, 0));
        assert_eq!(
            resolve_user("web:staff", PASSWD, GROUP).unwrap(),
            (1000, 50)
        );
        assert_eq!(resolve_user("5:6", PASSWD, GROUP).unwrap(), (5, 6));
        assert_eq!(
            resolve_user("nobody", PASSWD, GROUP).unwrap(),
            (65534, 65534)
        );
    }

    #[test]
    fn unknown_names_are_errors_that_say_where_we_looked() {
        let err = resolve_user("ghost", PASSWD, GROUP)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not in the container's /etc/passwd"), "{err}");
        assert!(resolve_user("web:ghosts", PASSWD, GROUP).is_err());
    }
}
