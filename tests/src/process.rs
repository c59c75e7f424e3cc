//! Background containers that can't outlive a failing test.
//!
//! A test that panics while a container runs would otherwise leave it
//! running, still holding the test harness's output pipe, and the whole
//! suite would wait for it forever. [`Running`] stops it on drop.

use std::io::Read;
use std::ops::{Deref, DerefMut};
use std::process::{Child, ExitStatus, Output};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long a container gets to end after SIGTERM before it gets SIGKILL.
pub const GRACE: Duration = Duration::from_secs(10);

/// A spawned stage binary, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Running(Option<Child>);

impl Running {
    pub fn new(child: Child) -> Running {
        Running(Some(child))
    }

    /// SIGTERM, wait up to [`GRACE`], then SIGKILL; returns what it printed.
    pub fn stop(mut self) -> Output {
        stop(self.0.take().expect("a running child"))
    }

    /// Waits for it to exit by itself, up to `limit`; then kills it and panics.
    pub fn wait_at_most(mut self, limit: Duration) -> Output {
        let mut child = self.0.take().expect("a running child");
        let readers = Readers::take(&mut child);
        let status = match wait_until(&mut child, Instant::now() + limit) {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                let output = readers.finish(ExitStatus::default());
                panic!(
                    "still running after {limit:?}; it printed:\n{}\n{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        };
        readers.finish(status)
    }
}

impl Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.0.as_ref().expect("a running child")
    }
}

impl DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().expect("a running child")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.0.take() {
            stop(child);
        }
    }
}

fn stop(mut child: Child) -> Output {
    let readers = Readers::take(&mut child);
    // Already reaped (the test waited for it): its PID may belong to
    // somebody else by now, so send nothing.
    if let Ok(Some(status)) = child.try_wait() {
        return readers.finish(status);
    }
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let status = match wait_until(&mut child, Instant::now() + GRACE) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            child.wait().expect("reaping a killed child")
        }
    };
    readers.finish(status)
}

/// The child's status, once it has ended; `None` if it still runs at `deadline`.
pub(crate) fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Threads draining the child's piped stdout and stderr, so it never blocks
/// on a full pipe while we wait for it.
struct Readers {
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Readers {
    fn take(child: &mut Child) -> Readers {
        Readers {
            stdout: child.stdout.take().map(drain),
            stderr: child.stderr.take().map(drain),
        }
    }

    fn finish(self, status: ExitStatus) -> Output {
        let join = |h: Option<JoinHandle<Vec<u8>>>| {
            h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
        };
        Output {
            status,
            stdout: join(self.stdout),
            stderr: join(self.stderr),
        }
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}
