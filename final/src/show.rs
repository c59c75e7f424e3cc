//! `berth ps`, `logs` and `inspect`: what the records and logs say.

use std::fs::File;
use std::io::{Read, Write};
use std::time::Duration;

use stage01_chroot::Error;

use crate::Engine;
use crate::record::{Record, human_age};

/// `docker ps`'s table: running containers, or all with `all`.
pub fn ps(engine: &Engine, all: bool) -> Result<(), Error> {
    println!(
        "{:<12}  {:<24}  {:<20}  {:<16}  {:<28}  {:<20}  NAMES",
        "CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS"
    );
    for record in engine.containers.list()? {
        if !all && !record.is_running() {
            continue;
        }
        println!(
            "{:<12}  {:<24}  {:<20}  {:<16}  {:<28}  {:<20}  {}",
            record.id,
            shorten(&record.spec.image, 24),
            shorten(&format!("\"{}\"", command_text(&record)), 20),
            format!("{} ago", human_age(record.created)),
            record.status_text(),
            record.spec.publish.join(","),
            record.name.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

/// The command as given (empty: the image's own).
fn command_text(record: &Record) -> String {
    let mut words: Vec<&str> = record.spec.entrypoint.iter().map(String::as_str).collect();
    words.extend(record.spec.command.iter().map(String::as_str));
    words.join(" ")
}

fn shorten(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let kept: String = text.chars().take(width - 1).collect();
    format!("{kept}…")
}

// ANCHOR: logs
/// Print what a detached container wrote; with `follow`, keep printing
/// until it ends.
pub fn logs(engine: &Engine, record: &Record, follow: bool) -> Result<(), Error> {
    let path = engine.containers.log_path(&record.id);
    let mut log = match File::open(&path) {
        Ok(log) => log,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !record.spec.detached => {
            return Err(Error::Other(format!(
                "container {} ran in the foreground: its output went to the terminal, not to a log \
                 (run it with -d to keep a log)",
                record.display_name()
            )));
        }
        Err(e) => return Err(Error::io("open log", &path, e)),
    };
    let mut out = std::io::stdout().lock();
    loop {
        let running = record.is_running();
        copy_new(&mut log, &mut out).map_err(|e| Error::io("read log", &path, e))?;
        if !follow || !running {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
// ANCHOR_END: logs

/// Copy what was appended since the last call.
fn copy_new(log: &mut File, out: &mut impl Write) -> std::io::Result<()> {
    let mut fresh = Vec::new();
    log.read_to_end(&mut fresh)?; // and the file position moves past it
    out.write_all(&fresh)?;
    out.flush()
}

/// The record as JSON, like `docker inspect` (in berth's own shape), with
/// what the runtime knows of its processes while it has them: `state.init`
/// (PID 1 inside, as the host sees it) and `state.cgroups`; and its mounts
/// in Docker's shape (`Mounts`).
pub fn inspect(engine: &Engine, record: &Record) -> Result<(), Error> {
    let encode =
        |e: serde_json::Error| Error::Other(format!("encode the record of {}: {e}", record.id));
    let mut value = serde_json::to_value(record).map_err(encode)?;
    value["Mounts"] = crate::volume::inspect_mounts(engine, &record.spec.mounts);
    if let Some(processes) = crate::runtime::processes_of(engine.root.dir(), &record.id)? {
        value["state"]["init"] = serde_json::to_value(processes.init).map_err(encode)?;
        value["state"]["cgroups"] = serde_json::to_value(processes.cgroups).map_err(encode)?;
    }
    println!("{}", serde_json::to_string_pretty(&value).map_err(encode)?);
    Ok(())
}
