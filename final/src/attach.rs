//! `berth run -dit` and `berth attach`: a detached container with a
//! terminal, and coming back to it.
//!
//! The container's monitor keeps the outer side of its pseudo-terminal
//! (conmon's job under Podman), so the command's terminal stays open while
//! nobody is attached. It serves a Unix socket, `attach.sock` in the
//! container's directory (root's alone, like the rest of it): what the
//! terminal prints goes to the container's log and to every attached
//! client, and what a client sends goes to the terminal as typed. A client
//! sends frames, so that it can say its window's size too:
//!
//!   [0][length: u16 big-endian][bytes typed]
//!   [1][4][rows: u16][columns: u16]            (the monitor sets the size)
//!
//! and gets the terminal's output as it comes, unframed. When the
//! container ends, the monitor closes the connections.
//!
//! Detaching is the client's: it watches what you type for the detach
//! keys (Ctrl-P Ctrl-Q unless `--detach-keys` says otherwise), and on
//! seeing them it leaves, the container running on. Keys that start the
//! sequence and then differ are passed on, as Docker does.
//!
//! Such a monitor stays berth, with its threads (megabytes, not the tiny
//! program's pages): relaying a terminal to clients that come and go is
//! more than a few system calls. Containers without `-t` keep the tiny one.
//!
//! To a container without a terminal, `attach` is a window on its output,
//! as Docker's is: what it writes from now on, read from its log, and the
//! signals we get passed on to it (`--sig-proxy`), until it ends.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use stage01_chroot::Error;

use nix::sys::signal::{SigSet, Signal, kill};
use nix::unistd::Pid;

use crate::Engine;
use crate::logfile::{Show, StreamWriter};
use crate::record::Record;
use crate::terminal;

/// The socket's name in the container's directory.
pub const SOCKET: &str = "attach.sock";

const FRAME_INPUT: u8 = 0;
const FRAME_SIZE: u8 = 1;

/// Docker's default detach keys: Ctrl-P Ctrl-Q.
pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// `--detach-keys`: keys separated by commas, each a letter or sign, or
/// `ctrl-` and one of a-z, @, [, \, ], ^, _ (as Docker writes them).
pub fn parse_detach_keys(text: &str) -> Result<Vec<u8>, String> {
    let bad = || {
        format!(
            "--detach-keys {text:?}: give keys separated by commas, each a character or \
             ctrl-<a-z, @, [, \\, ], ^ or _>, e.g. ctrl-p,ctrl-q"
        )
    };
    text.split(',')
        .map(|key| match key.strip_prefix("ctrl-") {
            Some(c) if c.len() == 1 => {
                let c = c.as_bytes()[0].to_ascii_lowercase();
                match c {
                    b'a'..=b'z' => Ok(c - b'a' + 1),
                    b'@' => Ok(0),
                    b'[' | b'\\' | b']' | b'^' | b'_' => Ok(c - b'@'),
                    _ => Err(bad()),
                }
            }
            None if key.len() == 1 => Ok(key.as_bytes()[0]),
            _ => Err(bad()),
        })
        .collect()
}

/// Watches typed bytes for the detach keys.
pub struct DetachKeys {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachKeys {
    pub fn new(keys: Vec<u8>) -> DetachKeys {
        DetachKeys { keys, matched: 0 }
    }

    /// The bytes to pass on for `typed`, and whether the keys were typed
    /// (then what followed them is dropped).
    pub fn scan(&mut self, typed: &[u8]) -> (Vec<u8>, bool) {
        let mut pass = Vec::new();
        for &byte in typed {
            if !self.keys.is_empty() && byte == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return (pass, true);
                }
                continue;
            }
            // Not the sequence after all: what was held back goes on.
            pass.extend(&self.keys[..self.matched]);
            self.matched = 0;
            if !self.keys.is_empty() && byte == self.keys[0] {
                self.matched = 1;
            } else {
                pass.push(byte);
            }
        }
        (pass, false)
    }
}

// ANCHOR: serve
/// The monitor's side, for a detached container with a terminal: relay
/// the terminal (`outer`) to the log and to attached clients, and (with
/// `input`) clients' keys to it. Ends once the terminal is closed (the
/// container is gone).
pub struct Served {
    output: JoinHandle<()>,
    clients: Clients,
    socket: PathBuf,
}

type Clients = Arc<Mutex<Vec<UnixStream>>>;

pub fn serve(
    outer: OwnedFd,
    input: bool,
    mut log: StreamWriter,
    socket: &Path,
) -> Result<Served, Error> {
    let _ = std::fs::remove_file(socket); // a run killed before left it
    let listener = UnixListener::bind(socket).map_err(|e| Error::io("listen on", socket, e))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("chmod", socket, e))?;
    let outer = File::from(outer);
    let clients: Clients = Arc::default();

    let (terminal_in, for_sizes) = match (outer.try_clone(), outer.try_clone()) {
        (Ok(a), Ok(b)) => (Arc::new(Mutex::new(a)), Arc::new(b)),
        (Err(e), _) | (_, Err(e)) => return Err(Error::io("duplicate", socket, e)),
    };
    // Clients come and go; each has a thread reading its frames. These
    // threads end with the monitor.
    let accepting = clients.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(reader) = client.try_clone() else {
                continue;
            };
            if let Ok(mut list) = accepting.lock() {
                list.push(client);
            }
            let (terminal_in, for_sizes) = (terminal_in.clone(), for_sizes.clone());
            std::thread::spawn(move || read_frames(reader, input, &terminal_in, &for_sizes));
        }
    });
    let sending = clients.clone();
    let output = std::thread::spawn(move || {
        let mut outer = outer;
        let mut buffer = [0u8; 4096];
        // EIO, not EOF, is how the outer side says all inner copies closed.
        while let Ok(n @ 1..) = outer.read(&mut buffer) {
            log.write(&buffer[..n]);
            if let Ok(mut list) = sending.lock() {
                list.retain_mut(|client| client.write_all(&buffer[..n]).is_ok());
            }
        }
    });
    Ok(Served {
        output,
        clients,
        socket: socket.to_path_buf(),
    })
}

/// A client's frames: keys for the terminal, or its window's size.
fn read_frames(mut client: UnixStream, input: bool, terminal: &Mutex<File>, outer: &File) {
    let mut head = [0u8; 3];
    let mut body = vec![0u8; u16::MAX as usize];
    while client.read_exact(&mut head).is_ok() {
        let length = u16::from_be_bytes([head[1], head[2]]) as usize;
        if client.read_exact(&mut body[..length]).is_err() {
            return;
        }
        match head[0] {
            FRAME_INPUT if input => {
                if let Ok(mut terminal) = terminal.lock() {
                    let _ = terminal.write_all(&body[..length]);
                }
            }
            FRAME_SIZE if length == 4 => {
                let rows = u16::from_be_bytes([body[0], body[1]]);
                let columns = u16::from_be_bytes([body[2], body[3]]);
                terminal::set_size(outer, rows, columns);
            }
            _ => {} // keys without -i, or a frame we don't know: dropped
        }
    }
}

impl Served {
    /// The container is gone: the rest of its output out, the clients told
    /// (their connections end), the socket removed.
    pub fn finish(self) {
        let _ = self.output.join();
        let _ = std::fs::remove_file(&self.socket);
        if let Ok(list) = self.clients.lock() {
            for client in list.iter() {
                let _ = client.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}
// ANCHOR_END: serve

// ANCHOR: attach
/// `berth attach`: your terminal to the container's, until it ends (its
/// exit code is ours) or you type the detach keys (0).
pub fn attach(
    engine: &Engine,
    record: &Record,
    detach_keys: Option<&str>,
    no_stdin: bool,
    sig_proxy: bool,
) -> Result<u8, Error> {
    let name = record.display_name();
    if !record.is_running() {
        return Err(Error::Other(format!(
            "container {name} is not running (see: berth ps -a)"
        )));
    }
    if !record.spec.tty || !record.spec.detached {
        return attach_output(engine, record, sig_proxy);
    }
    let keys = detach_keys
        .or(record.spec.detach_keys.as_deref())
        .unwrap_or(DEFAULT_DETACH_KEYS);
    let mut keys = DetachKeys::new(parse_detach_keys(keys).map_err(Error::Other)?);
    let socket = engine.containers.dirs(&record.id).dir.join(SOCKET);
    let connection =
        UnixStream::connect(&socket).map_err(|e| Error::io("connect to", &socket, e))?;
    let raw = terminal::RawMode::enter()?;

    // Our window's size now, and whenever it changes.
    let sizes = Arc::new(Mutex::new(
        connection
            .try_clone()
            .map_err(|e| Error::io("duplicate", &socket, e))?,
    ));
    let send_size = {
        let sizes = sizes.clone();
        move |rows: u16, columns: u16| {
            let mut frame = vec![FRAME_SIZE, 0, 4];
            frame.extend(rows.to_be_bytes());
            frame.extend(columns.to_be_bytes());
            if let Ok(mut connection) = sizes.lock() {
                let _ = connection.write_all(&frame);
            }
        }
    };
    if let Some((rows, columns)) = terminal::our_size() {
        send_size(rows, columns);
    }
    terminal::watch_size(send_size);

    // What we type, through the detach keys' watch.
    let typing = sizes.clone();
    let detached = Arc::new(AtomicBool::new(false));
    let detaching = detached.clone();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buffer = [0u8; 1024];
        while let Ok(n @ 1..) = stdin.read(&mut buffer) {
            let (pass, detach) = keys.scan(&buffer[..n]);
            if !pass.is_empty() && !no_stdin {
                let mut frame = vec![FRAME_INPUT];
                frame.extend((pass.len() as u16).to_be_bytes());
                frame.extend(&pass);
                if let Ok(mut connection) = typing.lock()
                    && connection.write_all(&frame).is_err()
                {
                    return;
                }
            }
            if detach {
                detaching.store(true, Ordering::SeqCst);
                if let Ok(connection) = typing.lock() {
                    let _ = connection.shutdown(std::net::Shutdown::Both);
                }
                return;
            }
        }
    });

    // Its output, until the connection ends: detached, or the container ended.
    let mut reader = connection;
    let mut stdout = std::io::stdout();
    let mut buffer = [0u8; 4096];
    while let Ok(n @ 1..) = reader.read(&mut buffer) {
        if stdout
            .write_all(&buffer[..n])
            .and_then(|()| stdout.flush())
            .is_err()
        {
            break;
        }
    }
    drop(raw); // our terminal as it was
    if detached.load(Ordering::SeqCst) {
        eprintln!("read escape sequence");
        return Ok(0);
    }
    // The container ended: its monitor records how, just after.
    for _ in 0..500 {
        let now = engine.containers.load(&record.id)?;
        if !now.is_running() || now.state.restarting {
            return Ok(now.state.exit_code.unwrap_or(0));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(Error::Other(format!(
        "the connection to {name} ended, but it still runs"
    )))
}
// ANCHOR_END: attach

/// `berth attach` to a container without a terminal, as Docker's: its
/// output as it comes (its stdout to ours, its stderr to ours, read from
/// its log, which every container has), our signals passed on to it
/// (unless `sig_proxy` is false: then Ctrl-C leaves), until it ends. Its
/// exit code is ours.
fn attach_output(engine: &Engine, record: &Record, sig_proxy: bool) -> Result<u8, Error> {
    let (init, _) = crate::control::running(engine, record)?;
    if sig_proxy {
        // Blocked here, before any thread starts, so every thread inherits
        // the mask and one thread takes them all, in order.
        let mut proxied = SigSet::empty();
        // Those a foreground run passes on (Ctrl-C is SIGINT to the
        // container, not to us), but a resize: our window is not its.
        let passed_on = stage02_namespaces::supervise::FORWARDED.iter();
        passed_on
            .filter(|signal| **signal != Signal::SIGWINCH)
            .for_each(|signal| proxied.add(*signal));
        proxied
            .thread_block()
            .map_err(|e| Error::Other(format!("block signals: {e}")))?;
        std::thread::spawn(move || {
            while let Ok(signal) = proxied.wait() {
                // (Its init, checked by start time: a PID may be reused.)
                if init.alive() {
                    let _ = kill(Pid::from_raw(init.pid), signal);
                }
            }
        });
    }
    let new_output_only = Show {
        tail: Some(0),
        since: None,
        until: None,
        timestamps: false,
    };
    crate::show::logs(engine, record, true, &new_output_only)?;
    // It ended: its monitor has recorded how (it records, then exits).
    let now = engine.containers.load(&record.id)?;
    Ok(now.state.exit_code.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_as_docker_writes_them() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), [16, 17]);
        assert_eq!(parse_detach_keys("ctrl-a,d").unwrap(), [1, b'd']);
        assert_eq!(parse_detach_keys("ctrl-@,ctrl-[").unwrap(), [0, 27]);
        for bad in ["", "ctrl-", "ctrl-1", "ab", "ctrl-p,,"] {
            assert!(parse_detach_keys(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_keys_detach_and_a_sequence_that_differs_goes_through() {
        let mut keys = DetachKeys::new(vec![16, 17]);
        assert_eq!(keys.scan(b"ls\r"), (b"ls\r".to_vec(), false));
        // Ctrl-P then x: both go on, late.
        assert_eq!(keys.scan(&[16]), (vec![], false));
        assert_eq!(keys.scan(b"x"), (vec![16, b'x'], false));
        // Ctrl-P Ctrl-P Ctrl-Q: the first goes on, then we leave.
        assert_eq!(keys.scan(&[b'a', 16, 16, 17, b'z']), (vec![b'a', 16], true));
    }
}
