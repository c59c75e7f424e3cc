//! Stage 01 of Berth: a new root directory, and nothing else.
//!
//! The mechanism is [`chroot::enter_root`]: `chroot(2)` plus `chdir("/")`.
//! Around it sit the pieces every later stage reuses: the command-line shape
//! of a container ([`cli::ContainerArgs`]), the checks before starting one
//! ([`checks`]), turning a child's end into an exit code ([`exit`]), and a
//! busybox root filesystem for learners and tests ([`rootfs`]).

pub mod checks;
pub mod chroot;
pub mod cli;
pub mod error;
pub mod exit;
pub mod rootfs;

pub use error::Error;
