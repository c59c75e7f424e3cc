//! `berth ps`, `logs` and `inspect`: what the records and logs say.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Read;

use serde_json::{Map, Value, json};
use stage01_chroot::Error;
use stage04_images::image::{self, Image};
use stage04_images::reference::Reference;
use stage04_images::spec::ImageConfig;

use crate::Engine;
use crate::format::{Filters, Format, label_matches};
use crate::logfile::{self, Show};
use crate::record::{Record, human_age};

/// The filters `ps` knows, as Docker's.
pub const PS_FILTERS: &[&str] = &["id", "name", "status", "label", "ancestor", "network"];

/// `docker ps`: running containers (all with `all`), as a table, or as
/// `format` says, those that pass `filters`.
pub fn ps(engine: &Engine, all: bool, format: &Format, filters: &Filters) -> Result<(), Error> {
    let mut commands = Commands::default();
    let mut shown = Vec::new();
    for record in engine.containers.list()? {
        let state = crate::commands::state_of(engine, &record);
        // A filter on status may show what `ps` alone would not (Docker's rule).
        if !all && !matches!(state, "running" | "paused") && !filters.has("status") {
            continue;
        }
        let command = commands.of(engine, &record);
        if filters.pass(|key, value| ps_filter(&record, state, key, value)) {
            shown.push((record, command, state));
        }
    }
    let rows: Vec<Map<String, Value>> = shown
        .iter()
        .map(|(record, command, state)| ps_row(record, command, state))
        .collect();
    format.print(&rows, "ID", || {
        // One write for the whole table, not one per line: with a thousand
        // containers, those calls are a good part of the time `ps` takes.
        let mut table = format!(
            "{:<12}  {:<24}  {:<20}  {:<16}  {:<28}  {:<20}  NAMES\n",
            "CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS"
        );
        for (record, command, state) in &shown {
            let _ = writeln!(
                table,
                "{:<12}  {:<24}  {:<20}  {:<16}  {:<28}  {:<20}  {}",
                record.id,
                shorten(&record.spec.image, 24),
                shorten(&format!("\"{command}\""), 20),
                format!("{} ago", human_age(record.created)),
                status_text(record, state),
                record.spec.publish.join(","),
                record.name.as_deref().unwrap_or("")
            );
        }
        print!("{table}");
    })
}

/// The filters `images` and `network ls` know.
pub const IMAGE_FILTERS: &[&str] = &["reference", "id"];
pub const NETWORK_FILTERS: &[&str] = &["name", "id"];

/// `berth images` with `-q`, `--format` or `--filter` (without them, stage
/// 04's table). Docker's fields: Repository, Tag, ID (the config's digest),
/// Digest (the manifest's), Size.
pub fn images(engine: &Engine, format: Format, filters: &Filters) -> Result<(), Error> {
    let format = match filters.is_empty() {
        true => format,
        false => format.or_table("{{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Size}}"),
    };
    let store = engine.root.store()?;
    let mut rows = Vec::new();
    for (name, manifest) in store.list()? {
        let Ok(image) = Image::open(&store, &name) else {
            continue;
        };
        let (repository, tag) = match name.rsplit_once(':') {
            Some((repository, tag)) if !tag.contains('/') => (repository, tag),
            _ => (name.as_str(), ""),
        };
        let id = image.manifest.config.digest.to_string();
        let passes = filters.pass(|key, value| match key {
            "reference" => name.contains(value),
            "id" => id
                .trim_start_matches("sha256:")
                .starts_with(value.trim_start_matches("sha256:")),
            _ => false,
        });
        if passes {
            let size: u64 = image.manifest.layers.iter().map(|layer| layer.size).sum();
            rows.push(object(json!({
                "Repository": repository, "Tag": tag, "ID": &id[7..19], "Digest": manifest.digest.to_string(),
                "Size": stage03_cgroups::limits::format_size(size),
            })));
        }
    }
    format.print(&rows, "ID", || {
        let _ = stage04_images::cli::list_images(&engine.root);
    })
}

/// `berth network ls` with `-q`, `--format` or `--filter`. Fields: Name,
/// ID (the name: berth's networks have no other), Driver, Subnet, Bridge.
pub fn networks(engine: &Engine, format: Format, filters: &Filters) -> Result<(), Error> {
    let format = match filters.is_empty() {
        true => format,
        false => format.or_table("{{.Name}}\t{{.Subnet}}\t{{.Bridge}}"),
    };
    let rows: Vec<Map<String, Value>> = engine
        .networks
        .list()?
        .into_iter()
        .filter(|network| {
            filters.pass(|key, value| match key {
                "name" => network.name.contains(value),
                "id" => network.name.starts_with(value),
                _ => false,
            })
        })
        .map(|network| {
            object(json!({
                "Name": network.name, "ID": network.name, "Driver": "bridge",
                "Subnet": network.subnet.to_string(), "Bridge": network.bridge,
            }))
        })
        .collect();
    format.print(&rows, "Name", || {
        let _ = stage05_networks::cli::network_command(
            &engine.networks,
            stage05_networks::cli::NetworkCommand::Ls,
        );
    })
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("an object literal is an object"),
    }
}

/// `Up 2 minutes`, and `(Paused)` after it when frozen, as Docker says it.
/// `Up 5 seconds`, `Exited (0) ...`: for `state`, from `state_of`
/// (which has asked whether its monitor lives: once is enough).
fn status_text(record: &Record, state: &str) -> String {
    match state {
        "running" => record.up_text(),
        "paused" => format!("{} (Paused)", record.up_text()),
        _ => record.status_text(),
    }
}

fn ps_filter(record: &Record, state: &str, key: &str, value: &str) -> bool {
    match key {
        "id" => record.id.starts_with(value),
        "name" => record.name.as_deref().is_some_and(|n| n.contains(value)),
        "status" => state == value,
        "label" => label_matches(&json!(record.spec.extras.labels), value),
        "ancestor" => {
            let canonical = |image: &str| image.parse::<Reference>().map(|r| r.to_string()).ok();
            record.spec.image == value || canonical(&record.spec.image) == canonical(value)
        }
        "network" => record.spec.networks().contains(&value),
        _ => false,
    }
}

/// A container as `--format` sees it, with Docker's field names.
fn ps_row(record: &Record, command: &str, state: &str) -> Map<String, Value> {
    let row = json!({
        "ID": record.id,
        "Image": record.spec.image,
        "Command": format!("\"{command}\""),
        "CreatedAt": record.created,
        "RunningFor": format!("{} ago", human_age(record.created)),
        "Ports": record.spec.publish.join(","),
        "State": state,
        "Status": status_text(record, state),
        "Names": record.name.as_deref().unwrap_or(""),
        "Labels": record.spec.extras.labels,
        "Networks": match record.spec.networks()[..] {
            [] => "none".to_string(),
            ref names => names.join(","),
        },
    });
    object(row)
}

/// The command each container runs: as given, or its image's Entrypoint
/// and Cmd, each image read once.
#[derive(Default)]
struct Commands {
    images: HashMap<String, Option<ImageConfig>>,
}

impl Commands {
    fn of(&mut self, engine: &Engine, record: &Record) -> String {
        let config = self
            .images
            .entry(record.spec.image.clone())
            .or_insert_with(|| {
                let store = engine.root.store().ok()?;
                Some(Image::open(&store, &record.spec.image).ok()?.config)
            });
        let overrides = record.spec.overrides();
        match config
            .as_ref()
            .map(|config| image::process(config, &overrides))
        {
            Some(Ok(process)) => process
                .args
                .iter()
                .map(|word| word.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            // The image is gone: what the command line said.
            _ => overrides
                .entrypoint
                .iter()
                .map(|word| word.as_str().into())
                .chain(overrides.command.iter().map(|word| word.to_string_lossy()))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

fn shorten(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let kept: String = text.chars().take(width - 1).collect();
    format!("{kept}…")
}

// ANCHOR: logs
/// Print what a container wrote (its log: see `logfile`), as `show`
/// says; with `follow`, keep printing until it ends (a container waiting
/// to restart has not ended).
pub fn logs(engine: &Engine, record: &Record, follow: bool, show: &Show) -> Result<(), Error> {
    let path = engine.containers.log_path(&record.id);
    let mut log = match File::open(&path) {
        Ok(log) => log,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !record.spec.detached => {
            return Err(Error::Other(format!(
                "container {} ran in the foreground before berth kept logs for those: \
                 its output went to the terminal only",
                record.display_name()
            )));
        }
        Err(e) => return Err(Error::io("open log", &path, e)),
    };
    let mut unread = Vec::new();
    let mut show = show.clone();
    loop {
        let alive = record.monitor_alive();
        log.read_to_end(&mut unread) // and the file position moves past it
            .map_err(|e| Error::io("read log", &path, e))?;
        let mut lines = logfile::whole_lines(&mut unread);
        if !alive && !unread.is_empty() {
            // Its relay is gone, so the last line will stay unfinished.
            lines.push(std::mem::take(&mut unread));
        }
        logfile::print(&lines, &show)?;
        show.tail = None; // --tail is of what was there at first
        let past_until = show
            .until
            .is_some_and(|until| logfile::now_nanos() >= until);
        if !follow || !alive || past_until {
            return Ok(());
        }
        std::thread::sleep(logfile::FOLLOW_EVERY);
    }
}
// ANCHOR_END: logs

/// The record as JSON, like `docker inspect` (in berth's own shape), with
/// what the runtime knows of its processes while it has them: `state.init`
/// (PID 1 inside, as the host sees it) and `state.cgroups`; and its mounts
/// in Docker's shape (`Mounts`).
pub fn inspect(engine: &Engine, record: &Record) -> Result<(), Error> {
    let encode =
        |e: serde_json::Error| Error::Other(format!("encode the record of {}: {e}", record.id));
    let mut value = serde_json::to_value(record).map_err(encode)?;
    value["Mounts"] = crate::volume::inspect_mounts(engine, &record.spec.mounts);
    // Docker's name for it, where scripts look for it.
    value["RestartCount"] = record.state.restart_count.into();
    if let Some(processes) = crate::runtime::processes_of(engine.root.dir(), &record.id)? {
        value["state"]["init"] = serde_json::to_value(processes.init).map_err(encode)?;
        value["state"]["cgroups"] = serde_json::to_value(processes.cgroups).map_err(encode)?;
    }
    println!("{}", serde_json::to_string_pretty(&value).map_err(encode)?);
    Ok(())
}
