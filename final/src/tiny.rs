//! The tiny program (`final/tiny/berth-tiny.rs`, built by final/build.rs)
//! that a detached container's monitor and init become once the container
//! runs, so that what stays behind per container is a few pages of memory,
//! not a copy of berth.
//!
//! It runs from a *sealed* in-memory file (see `guard::sealed_memfd`):
//! nothing on disk to install or to tamper with, and nobody, not even
//! root, can change its bytes once sealed. A process runs it with
//! `execveat` on the file's descriptor, which needs no path: that works
//! inside the container too.

use std::ffi::OsString;
use std::os::fd::OwnedFd;

use stage01_chroot::Error;

/// The program's bytes, embedded at build time.
const PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/berth-tiny"));

/// The program in a sealed in-memory file.
pub fn program() -> Result<OwnedFd, Error> {
    crate::guard::sealed_memfd(c"berth-tiny", &mut &PROGRAM[..], "the tiny program")
}

/// Replace this process by the program, named `name`, with `args`.
/// Returns only why that failed.
pub fn become_program(program: &OwnedFd, name: &str, args: Vec<OsString>) -> Error {
    let args = std::iter::once(OsString::from(name)).chain(args).collect();
    crate::guard::exec_with(program, c"", args)
}
