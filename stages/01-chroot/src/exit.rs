//! From "the child ended" or "the child never started" to an exit code.

use std::ffi::OsStr;
use std::io::ErrorKind;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;

use crate::Error;

// ANCHOR: exit_code
/// The exit code a shell would report for `status`: the child's own code, or
/// 128 + N when signal N killed it (so SIGKILL gives 137, SIGTERM 143).
pub fn exit_code(status: ExitStatus) -> u8 {
    // ANCHOR: exercise_exit_code
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.wrapping_add(signal as u8),
        (None, None) => crate::error::EXIT_SETUP_FAILED,
    }
    // ANCHOR_END: exercise_exit_code
}
// ANCHOR_END: exit_code

/// Explain why `command` could not be started inside `rootfs`, the way a
/// shell would: "not found" (127) or "not executable" (126).
pub fn spawn_error(err: std::io::Error, command: &OsStr, rootfs: &Path) -> Error {
    let (command, rootfs) = (command.to_owned(), rootfs.to_owned());
    match err.kind() {
        ErrorKind::NotFound => Error::CommandNotFound { command, rootfs },
        ErrorKind::PermissionDenied => Error::CommandNotExecutable { command, rootfs },
        // fork's EAGAIN: a limit on the number of processes, such as pids.max.
        ErrorKind::WouldBlock => Error::ProcessLimit { command },
        _ => Error::Other(format!(
            "could not start {} in rootfs {}: {err}",
            command.to_string_lossy(),
            rootfs.display()
        )),
    }
}

/// The name this binary was started as (`stage04-images`, `berth`), for
/// library messages that tell the user which command to type next.
pub fn program() -> String {
    std::env::args_os()
        .next()
        .and_then(|arg0| {
            Path::new(&arg0)
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "berth".into())
}

/// How a stage binary ends: with the container's exit code, or with the
/// error, prefixed by the program's name, and that error's exit code.
pub fn finish(program: &str, result: Result<u8, Error>) -> std::process::ExitCode {
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(err) => {
            eprintln!("{program}: {err}");
            std::process::ExitCode::from(err.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_pass_through() {
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
    }

    #[test]
    fn death_by_signal_is_128_plus_the_signal() {
        assert_eq!(exit_code(ExitStatus::from_raw(libc_sigkill())), 137);
    }

    fn libc_sigkill() -> i32 {
        nix::sys::signal::Signal::SIGKILL as i32
    }

    #[test]
    fn not_found_is_127_and_not_executable_is_126() {
        let rootfs = Path::new("/r");
        let nf = spawn_error(ErrorKind::NotFound.into(), OsStr::new("nope"), rootfs);
        assert_eq!(nf.exit_code(), 127);
        assert!(
            nf.to_string()
                .starts_with("nope: command not found in rootfs /r")
        );
        let pd = spawn_error(ErrorKind::PermissionDenied.into(), OsStr::new("f"), rootfs);
        assert_eq!(pd.exit_code(), 126);
    }
}
