//! Errors of stage 01, each naming what failed and what to do about it.

use std::ffi::OsString;
use std::path::PathBuf;

/// Exit codes follow `docker run`: 125 when the container could not be set up,
/// 126 when the command cannot be executed, 127 when it cannot be found.
pub const EXIT_SETUP_FAILED: u8 = 125;
pub const EXIT_NOT_EXECUTABLE: u8 = 126;
pub const EXIT_NOT_FOUND: u8 = 127;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("must run as root: {what}. Run it from a root shell (sudo -s) or with sudo.")]
    NotRoot { what: &'static str },

    #[error("rootfs {} does not exist; make one with: berth-mkrootfs {}", path.display(), path.display())]
    RootfsMissing { path: PathBuf },

    #[error("rootfs {} is not a directory; give the directory that holds the container's files", path.display())]
    RootfsNotDirectory { path: PathBuf },

    #[error(
        "{}: command not found in rootfs {} (is the path right, and are its \
         interpreter and libraries inside the rootfs too?)",
        command.to_string_lossy(), rootfs.display()
    )]
    CommandNotFound { command: OsString, rootfs: PathBuf },

    #[error(
        "{}: permission denied in rootfs {} (is it an executable file?)",
        command.to_string_lossy(), rootfs.display()
    )]
    CommandNotExecutable { command: OsString, rootfs: PathBuf },

    #[error(
        "{}: could not start: no more processes may be made (the container's \
         --pids-limit, or the host's limit on processes, was reached); raise --pids-limit",
        command.to_string_lossy()
    )]
    ProcessLimit { command: OsString },

    #[error("{step} {}: {source}", path.display())]
    Io {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// What a container's first process reported before its command ran
    /// (it ran in another process, so only its words and its exit code
    /// cross over).
    #[error("{message}")]
    FromContainer { code: u8, message: String },

    #[error("{0}")]
    Other(String),
}

impl Error {
    /// The exit code a container binary should end with for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::CommandNotFound { .. } => EXIT_NOT_FOUND,
            Error::CommandNotExecutable { .. } => EXIT_NOT_EXECUTABLE,
            Error::FromContainer { code, .. } => *code,
            _ => EXIT_SETUP_FAILED,
        }
    }

    /// An I/O error at `step` on `path`, e.g. `Error::io("chroot", path, err)`.
    pub fn io(step: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            step,
            path: path.into(),
            source,
        }
    }
}
