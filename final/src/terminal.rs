//! `-t`: a terminal of the container's own.
//!
//! A pseudo-terminal is a pair: the *inner* side behaves like a real
//! terminal (line editing, Ctrl-C turning into SIGINT, a window size) and
//! becomes the command's stdin, stdout and stderr and controlling terminal;
//! whatever the command writes comes out of the *outer* side, and whatever
//! is written into the outer side the command reads as typed. berth relays
//! between the outer side and your own terminal, which it puts in raw mode
//! meanwhile, so that every key goes to the container's terminal untouched.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::thread::JoinHandle;

use nix::pty::{Winsize, openpty};
use nix::sys::termios::{self, SetArg, Termios};
use stage01_chroot::Error;
use stage02_namespaces::ProcessStdio;

use crate::logfile::StreamWriter;

/// A pseudo-terminal: the outer side we keep, the inner side for the command.
pub struct Terminal {
    outer: OwnedFd,
    inner: Arc<OwnedFd>,
}

impl Terminal {
    /// A new pseudo-terminal, as large as ours if we have one.
    pub fn open() -> Result<Terminal, Error> {
        let size = window_size(&std::io::stdout());
        let pty = openpty(size.as_ref(), None)
            .map_err(|e| Error::Other(format!("open a pseudo-terminal: {e}")))?;
        Ok(Terminal {
            outer: pty.master,
            inner: Arc::new(pty.slave),
        })
    }

    /// How the command should be connected to it.
    pub fn for_command(&self) -> ProcessStdio {
        ProcessStdio::Terminal(self.inner.clone())
    }

    // ANCHOR: relay
    /// Once the command has its copy of the inner side: give up ours (so
    /// the outer side reports the end when the command's copies close),
    /// and relay between it and our stdin and stdout. `input`: also relay
    /// what we type (`-i`). What the command writes also goes to `log`
    /// (as stdout: a terminal has one output, as in Docker).
    pub fn relay(self, input: bool, log: Option<StreamWriter>) -> Result<Relay, Error> {
        drop(self.inner);
        let raw = RawMode::enter()?;
        let outer = File::from(self.outer);
        let mut reader = outer
            .try_clone()
            .map_err(|e| Error::Other(format!("duplicate the pseudo-terminal: {e}")))?;
        if input {
            let mut writer = outer;
            // Ends with our process; nothing to wait for.
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut std::io::stdin().lock(), &mut writer);
            });
        }
        let output = std::thread::spawn(move || {
            let mut log = log;
            let mut stdout = std::io::stdout();
            let mut buffer = [0u8; 4096];
            // EIO, not EOF, is how the outer side says all inner copies closed.
            while let Ok(n @ 1..) = reader.read(&mut buffer) {
                if let Some(log) = log.as_mut() {
                    log.write(&buffer[..n]);
                }
                if stdout
                    .write_all(&buffer[..n])
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    break;
                }
            }
        });
        Ok(Relay {
            output: Some(output),
            _raw: raw,
        })
    }
    // ANCHOR_END: relay
}

/// The relay's threads; `finish` once the command has ended.
pub struct Relay {
    output: Option<JoinHandle<()>>,
    _raw: Option<RawMode>,
}

impl Relay {
    /// Wait until everything the command wrote is out; restore our terminal.
    pub fn finish(mut self) {
        if let Some(output) = self.output.take() {
            let _ = output.join();
        }
    }
}

/// Our terminal in raw mode until dropped (if stdin is a terminal at all).
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter() -> Result<Option<RawMode>, Error> {
        let stdin = std::io::stdin();
        let Ok(saved) = termios::tcgetattr(stdin.as_fd()) else {
            return Ok(None); // not a terminal: nothing to change
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)
            .map_err(|e| Error::Other(format!("put the terminal in raw mode: {e}")))?;
        Ok(Some(RawMode { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// The window size of the terminal `fd` is, if it is one.
fn window_size(fd: &impl AsRawFd) -> Option<Winsize> {
    let mut size = Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one Winsize into the buffer we pass.
    let ok = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) } == 0;
    ok.then_some(size)
}

/// `-it` types into the container, so our input must be a terminal.
pub fn check(interactive: bool, tty: bool) -> Result<(), Error> {
    if interactive && tty && termios::tcgetattr(std::io::stdin().as_fd()).is_err() {
        return Err(Error::Other(
            "the input is not a terminal: drop -t, or run berth from a terminal".into(),
        ));
    }
    Ok(())
}

/// The command's streams for `-i` and `-t`, and with `-t` the terminal to
/// relay: no input without `-i` (as Docker), ours with it.
pub fn streams(interactive: bool, tty: bool) -> Result<(Option<Terminal>, ProcessStdio), Error> {
    let terminal = tty.then(Terminal::open).transpose()?;
    let stdio = match (&terminal, interactive) {
        (Some(terminal), _) => terminal.for_command(),
        (None, true) => ProcessStdio::Inherit,
        (None, false) => ProcessStdio::NoInput,
    };
    Ok((terminal, stdio))
}
