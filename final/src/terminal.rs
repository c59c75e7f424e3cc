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
    /// A new pseudo-terminal, as large as ours if we have one (else 24
    /// rows of 80 columns, until an attached client says its size).
    pub fn open() -> Result<Terminal, Error> {
        let size = window_size(&std::io::stdout()).or(Some(Winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        }));
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
        // A resized window resizes the container's terminal (and the
        // kernel sends its programs SIGWINCH).
        if let Ok(resized) = outer.try_clone() {
            watch_size(move |rows, columns| set_size(&resized, rows, columns));
        }
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

    /// `-dt`: the monitor keeps the outer side and serves it to `berth
    /// attach` (see `attach`), writing what it prints to `log`.
    pub fn serve(
        self,
        input: bool,
        log: StreamWriter,
        socket: &std::path::Path,
    ) -> Result<crate::attach::Served, Error> {
        drop(self.inner);
        crate::attach::serve(self.outer, input, log, socket)
    }
}

/// Set the window size of the terminal whose outer side `outer` is.
pub fn set_size(outer: &impl AsRawFd, rows: u16, columns: u16) {
    let size = Winsize {
        ws_row: rows,
        ws_col: columns,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one Winsize from the buffer we pass.
    unsafe { libc::ioctl(outer.as_raw_fd(), libc::TIOCSWINSZ, &size) };
}

/// Our terminal's size (rows, columns), if stdin or stdout is one.
pub fn our_size() -> Option<(u16, u16)> {
    window_size(&std::io::stdin())
        .or_else(|| window_size(&std::io::stdout()))
        .map(|s| (s.ws_row, s.ws_col))
}

/// Call `apply` with our terminal's size whenever it changes.
///
/// Why not on SIGWINCH: `berth run` and `exec` block that signal and take
/// it with `sigwait` to pass it on to the container (stage 02's
/// `supervise`); a handler of ours would race with that. So a thread looks
/// at the size ten times a second: one `ioctl`, and the change reaches the
/// container within 100 ms.
pub fn watch_size(apply: impl Fn(u16, u16) + Send + 'static) {
    let mut last = our_size();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let now = our_size();
            if let Some((rows, columns)) = now.filter(|_| now != last) {
                apply(rows, columns);
            }
            last = now;
        }
    });
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
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    pub fn enter() -> Result<Option<RawMode>, Error> {
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
