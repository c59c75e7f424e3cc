//! Stage 02 of Berth: namespaces, `pivot_root`, and a proper PID 1.
//!
//! A namespace gives a process its own copy of one kind of global resource:
//! the hostname (UTS), process IDs (PID), the mount table (mount), System V
//! IPC objects (IPC), network devices and addresses (net), user and group IDs
//! (user), and its view of the cgroup tree (cgroup). `clone(2)` with a
//! `CLONE_NEW*` flag per kind starts a child in fresh ones; `unshare(2)`
//! moves the caller itself into a fresh one, as init does for the cgroup
//! namespace.
//!
//! The order things happen in, and the module for each step:
//! 1. [`namespaces`]: the parent clones the container's first process into
//!    new namespaces and (with `--userns`) writes its ID maps and makes it
//!    a root it can write ([`userns`]: an idmapped mount of the rootfs or
//!    of an image's layers, or a copy);
//! 2. [`init`]: that process, PID 1 inside, makes its cgroup namespace, sets
//!    the hostname ([`hostname`]),
//!    brings up `lo` ([`network`]), builds the root ([`mounts`]), starts the
//!    command and stays on as its init;
//! 3. [`supervise`]: both the parent and init forward signals and reap
//!    children until the command ends.

pub mod cli;
pub mod hostname;
pub mod init;
pub mod mounts;
pub mod namespaces;
pub mod network;
pub mod process;
pub mod supervise;
pub mod userns;

pub use namespaces::{
    AfterGate, BeforeExec, Container, Gate, IdMap, IdMaps, RootMount, Running, SharedNamespaces,
    Started,
};
pub use process::{Process, ProcessStdio, UserIds};
