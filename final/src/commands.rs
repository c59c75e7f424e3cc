//! The smaller commands Docker users reach for, each over what the engine
//! already keeps: `restart`, `wait`, `port`, `rename`, `top`, `pause` and
//! `unpause`, `diff`, `stats`, `version`, `info`, `system df` and `system
//! prune`, `network inspect` and `network prune`.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use stage01_chroot::Error;
use stage03_cgroups::limits::format_size;
use stage03_cgroups::{cgroup, layout};
use stage04_images::image::{self, Image};
use stage05_networks::firewall;
use stage05_networks::hosts;
use stage05_networks::network::DEFAULT_NETWORK;

use crate::record::{Record, parse_name};
use crate::status::Status;
use crate::{Engine, control, run, runtime};

/// `berth restart`: stop (as `stop` does), then start in the background.
pub fn restart(engine: &Engine, record: &Record, timeout: Option<Duration>) -> Result<(), Error> {
    control::stop(engine, record, timeout)?;
    run::restart(engine, &engine.containers.load(&record.id)?)
}

/// `berth wait`: block until the container is not running; its exit code.
pub fn wait(engine: &Engine, record: &Record) -> Result<u8, Error> {
    loop {
        let current = engine.containers.find(&record.id)?;
        match current.state.monitor.filter(|_| current.monitor_alive()) {
            // Its monitor writes the exit code as it finishes.
            Some(monitor) => {
                monitor.wait_gone(Duration::from_secs(3600));
            }
            None => return Ok(current.state.exit_code.unwrap_or(0)),
        }
    }
}

/// `berth port`: the published ports, as `80/tcp -> 0.0.0.0:8080`, or the
/// host port of one (`PORT[/PROTO]`).
pub fn port(record: &Record, private: Option<&str>) -> Result<(), Error> {
    let mut shown = 0;
    for publish in &record.spec.publish {
        let (protocol, host, container) = firewall::parse_publish(publish)?;
        let key = format!("{container}/{}", protocol.as_str());
        match private {
            None => println!("{key} -> 0.0.0.0:{host}"),
            Some(asked) if asked == key || asked == container.to_string() => {
                println!("0.0.0.0:{host}")
            }
            Some(_) => continue,
        }
        shown += 1;
    }
    match (private, shown) {
        (Some(asked), 0) => Err(Error::Other(format!(
            "container {} publishes no port {asked} (see: berth port {})",
            record.display_name(),
            record.display_name()
        ))),
        _ => Ok(()),
    }
}

/// `berth rename`: a new name, also in its network's /etc/hosts files when
/// it runs on one.
pub fn rename(engine: &Engine, record: &Record, new_name: &str) -> Result<(), Error> {
    let new_name = parse_name(new_name).map_err(Error::Other)?;
    let _lock = engine.containers.lock()?;
    let mut current = engine.containers.load(&record.id)?;
    engine.containers.index_names()?;
    if let Some(owner) = engine.containers.named(&new_name)? {
        return Err(Error::Other(format!(
            "the name {new_name} is taken by container {}",
            owner.id
        )));
    }
    let old_name = current.display_name().to_string();
    let had_name = current.name.replace(new_name.clone());
    engine.containers.link_name(&new_name, &current.id)?;
    engine.containers.save(&current)?;
    if let Some(had_name) = had_name {
        engine.containers.unlink_name(&had_name, &current.id)?;
    }
    crate::events::emit(engine, &current, "rename", &[("oldName", old_name)]);
    let plugged = match current.is_running() {
        true => &current.state.plugged[..],
        false => &[],
    };
    for plugged in plugged {
        let network = engine.networks.get(&plugged.network)?;
        let ipam = engine.networks.ipam(&network);
        for (address, lease) in ipam.rename_container(&current.id, &new_name)? {
            if lease.container == current.id {
                let (containers, id) = (engine.containers.dir(), &current.id);
                (engine.networks).join_hosts(&network, containers, id, Some(&new_name), address)?;
            }
        }
    }
    Ok(())
}

/// `berth top`: the host's `ps` for the container's processes.
pub fn top(engine: &Engine, record: &Record, ps_options: &[String]) -> Result<u8, Error> {
    let pids = pids_of(engine, record)?;
    let options = match ps_options.is_empty() {
        true => vec!["-f".to_string()],
        false => ps_options.to_vec(),
    };
    let list: Vec<String> = pids.iter().map(i32::to_string).collect();
    let status = std::process::Command::new("ps")
        .args(&options)
        .arg("-p")
        .arg(list.join(","))
        .status()
        .map_err(|e| Error::io("run", "ps (procps)", e))?;
    Ok(stage01_chroot::exit::exit_code(status))
}

/// Every process of a running container, from its cgroups.
fn pids_of(engine: &Engine, record: &Record) -> Result<Vec<i32>, Error> {
    let (_, cgroups) = control::running(engine, record)?;
    let mut pids = Vec::new();
    for dir in cgroups {
        let procs = dir.join("cgroup.procs");
        let text = std::fs::read_to_string(&procs).map_err(|e| Error::io("read", &procs, e))?;
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

/// `berth pause` / `unpause`: freeze or thaw all of the container's
/// processes, through the runtime (its cgroup's freezer).
pub fn pause(engine: &Engine, record: &Record, frozen: bool) -> Result<(), Error> {
    control::running(engine, record)?;
    runtime::pause(engine.root.dir(), &record.id, frozen)?;
    let action = if frozen { "pause" } else { "unpause" };
    crate::events::emit(engine, record, action, &[]);
    Ok(())
}

/// `berth diff`: what the container changed, from its writable layer: `A`
/// added, `C` changed, `D` deleted (a whiteout), as Docker prints them.
pub fn diff(engine: &Engine, record: &Record) -> Result<(), Error> {
    let store = engine.root.store()?;
    let image = Image::open(&store, &record.spec.image)?;
    let layers = image.unpacked_layers(&store, &engine.root.layers())?;
    let upper = engine.containers.dirs(&record.id).upper;
    let mut changes = BTreeMap::new();
    walk_upper(&upper, Path::new("/"), &layers, &mut changes)?;
    // The files berth binds over (/etc/hosts...) leave empty mount points
    // in the upper layer: not the container's changes (Docker keeps them
    // in a layer of its own). A directory that only holds those goes too.
    for inside in hosts::TARGETS {
        changes.remove(Path::new(inside));
    }
    let kept: Vec<(&PathBuf, &char)> = changes
        .iter()
        .filter(|(path, kind)| {
            **kind != 'C'
                || !upper.join(path.strip_prefix("/").unwrap_or(path)).is_dir()
                || changes
                    .keys()
                    .any(|other| other != *path && other.starts_with(path))
        })
        .collect();
    for (path, kind) in kept {
        println!("{kind} {}", path.display());
    }
    Ok(())
}

fn walk_upper(
    dir: &Path,
    inside: &Path,
    layers: &[PathBuf],
    changes: &mut BTreeMap<PathBuf, char>,
) -> Result<(), Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()), // never ran
        Err(e) => return Err(Error::io("read", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read", dir, e))?;
        let path = inside.join(entry.file_name());
        let meta = entry
            .metadata()
            .map_err(|e| Error::io("stat", entry.path(), e))?;
        let in_image = layers.iter().any(|layer| {
            layer
                .join(path.strip_prefix("/").unwrap_or(&path))
                .symlink_metadata()
                .is_ok()
        });
        // overlayfs's whiteout: a character device 0:0.
        let kind = if meta.file_type().is_char_device() && meta.rdev() == 0 {
            'D'
        } else if in_image {
            'C'
        } else {
            'A'
        };
        changes.insert(path.clone(), kind);
        if meta.is_dir() {
            walk_upper(&entry.path(), &path, layers, changes)?;
        }
    }
    Ok(())
}

/// `berth stats`: CPU, memory and processes of running containers, once
/// (`no_stream`) or every two seconds until interrupted.
pub fn stats(engine: &Engine, keys: &[String], no_stream: bool) -> Result<(), Error> {
    let records: Vec<Record> = match keys.is_empty() {
        true => engine
            .containers
            .list()?
            .into_iter()
            .filter(Record::is_running)
            .collect(),
        false => keys
            .iter()
            .map(|key| engine.containers.find(key))
            .collect::<Result<_, _>>()?,
    };
    let sample = |record: &Record| -> Option<(Duration, Option<u64>, usize)> {
        let (_, cgroups) = control::running(engine, record).ok()?;
        let usage = cgroup::open(&cgroups).ok()?.usage().ok()?;
        let pids = pids_of(engine, record).map_or(0, |p| p.len());
        Some((usage.cpu_time, usage.memory_peak, pids))
    };
    loop {
        let before: Vec<_> = records.iter().map(sample).collect();
        let started = Instant::now();
        std::thread::sleep(Duration::from_millis(500));
        let elapsed = started.elapsed();
        println!(
            "{:<12}  {:<20}  {:>7}  {:>21}  {:>5}",
            "CONTAINER ID", "NAME", "CPU %", "MEM PEAK / LIMIT", "PIDS"
        );
        for (record, before) in records.iter().zip(before) {
            let (Some(before), Some(after)) = (before, sample(record)) else {
                continue; // not running
            };
            let cpu = (after.0.saturating_sub(before.0)).as_secs_f64() / elapsed.as_secs_f64();
            let limit = record.spec.memory.map_or("-".into(), format_size);
            let peak = after.1.map_or("-".into(), format_size);
            println!(
                "{:<12}  {:<20}  {:>6.1}%  {:>21}  {:>5}",
                record.id,
                record.display_name(),
                cpu * 100.0,
                format!("{peak} / {limit}"),
                after.2
            );
        }
        if no_stream {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(1500));
    }
}

/// `berth version`.
pub fn version() {
    println!("berth {}", env!("CARGO_PKG_VERSION"));
    println!("OCI runtime spec 1.0.2 (berth-runtime)");
    println!("kernel {}", kernel_release());
}

fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// `berth info`: what berth sees of itself and of the host.
pub fn info(engine: &Engine) -> Result<(), Error> {
    let records = engine.containers.list()?;
    let count = |status: &str| {
        records
            .iter()
            .filter(|r| state_of(engine, r) == status)
            .count()
    };
    let images = engine.root.store()?.list()?.len();
    let layout = match layout::detect()? {
        layout::Layout::Unified => "v2 (unified)",
        layout::Layout::Legacy { hybrid: true } => "v1 (hybrid: cgroup2 beside)",
        layout::Layout::Legacy { hybrid: false } => "v1",
    };
    println!("Containers: {}", records.len());
    println!(" Running: {}", count("running"));
    println!(" Paused: {}", count("paused"));
    println!(" Stopped: {}", count("exited") + count("created"));
    println!("Images: {images}");
    println!("Networks: {}", engine.networks.list()?.len());
    println!("Storage driver: overlay");
    println!("Cgroup version: {layout}");
    println!("Runtime: berth-runtime (built in)");
    println!(
        "Security options: seccomp (berth's profile), no-new-privileges, user namespaces (--userns)"
    );
    println!("Kernel version: {}", kernel_release());
    println!("Root dir: {}", engine.root.dir().display());
    println!("Version: {}", env!("CARGO_PKG_VERSION"));
    Ok(())
}

/// Docker's word for a container's state, paused included (the runtime
/// knows that one).
pub fn state_of(engine: &Engine, record: &Record) -> &'static str {
    if record.is_restarting() {
        return "restarting"; // its monitor waits to run it again (--restart)
    }
    match record.state.status {
        Status::Creating | Status::Created => "created",
        Status::Running | Status::Paused if record.is_running() => {
            match runtime::is_paused(engine.root.dir(), &record.id) {
                true => "paused",
                false => "running",
            }
        }
        _ => "exited",
    }
}

/// `berth system df`: what images and containers take on disk.
pub fn disk_usage(engine: &Engine) -> Result<(), Error> {
    let store = engine.root.store()?;
    let tags = store.list()?;
    let records = engine.containers.list()?;
    let images_size = dir_size(&engine.root.dir().join("images"));
    let layers_size = dir_size(&engine.root.layers());
    let used: Vec<&str> = records.iter().map(|r| r.spec.image.as_str()).collect();
    let containers_size: u64 = records
        .iter()
        .map(|r| dir_size(&engine.containers.dirs(&r.id).upper))
        .sum();
    let running = records.iter().filter(|r| r.is_running()).count();
    println!("{:<16}{:>8}{:>8}{:>12}", "TYPE", "TOTAL", "ACTIVE", "SIZE");
    let active_images = tags
        .iter()
        .filter(|(name, _)| used.contains(&name.as_str()))
        .count();
    println!(
        "{:<16}{:>8}{:>8}{:>12}",
        "Images",
        tags.len(),
        active_images,
        format_size(images_size + layers_size)
    );
    println!(
        "{:<16}{:>8}{:>8}{:>12}",
        "Containers",
        records.len(),
        running,
        format_size(containers_size)
    );
    Ok(())
}

/// Bytes under `dir`, as `du` counts them (blocks, each inode once).
fn dir_size(dir: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if seen.insert((meta.dev(), meta.ino())) {
                total += meta.blocks() * 512;
            }
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
}

/// `berth system prune`: stopped containers, networks no container names,
/// and (with `all_images`) images no container uses, then every blob and
/// layer nothing needs. Asks first unless `force`.
pub fn prune(engine: &Engine, force: bool, all_images: bool) -> Result<(), Error> {
    let what = match all_images {
        true => "stopped containers, unused networks and every image no container uses",
        false => "stopped containers, unused networks and the blobs and layers no image needs",
    };
    if !force && !confirm(&format!("This removes {what}. Go on?"))? {
        return Ok(());
    }
    for record in engine.containers.list()? {
        if !record.monitor_alive() {
            control::remove(engine, &record, false, false)?;
            println!("Deleted container: {}", record.id);
        }
    }
    engine.containers.sweep_names()?;
    network_prune(engine)?;
    if all_images {
        let store = engine.root.store()?;
        let used: Vec<String> = engine
            .containers
            .list()?
            .into_iter()
            .map(|r| r.spec.image)
            .collect();
        for (name, _) in store.list()? {
            if !used.contains(&name) {
                store.untag(&name)?;
                println!("Untagged: {name}");
            }
        }
    }
    let store = engine.root.store()?;
    let blobs = store.gc()?;
    let layers =
        image::remove_unused_layers(&store, &engine.root.layers(), engine.containers.dir())?;
    println!("Removed {} blobs and {layers} unpacked layers", blobs.len());
    Ok(())
}

/// Ask on the terminal; refuse, with the way out, when there is none.
pub fn confirm(question: &str) -> Result<bool, Error> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::Other(format!(
            "{question} There is no terminal to answer on: add -f to go ahead"
        )));
    }
    print!("{question} [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| Error::io("read", "stdin", e))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// `berth network inspect`: each network with its containers, as JSON.
pub fn network_inspect(engine: &Engine, names: &[String]) -> Result<(), Error> {
    let mut shown = Vec::new();
    for name in names {
        let network = engine.networks.get_existing(name)?;
        let containers: Vec<_> = engine
            .networks
            .ipam(&network)
            .leases()?
            .into_iter()
            .map(|(address, lease)| {
                json!({"ID": lease.container, "Name": lease.name, "IPv4Address": address.to_string()})
            })
            .collect();
        shown.push(json!({
            "Name": network.name, "Driver": "bridge", "Bridge": network.bridge,
            "Subnet": network.subnet.to_string(), "Gateway": network.gateway().to_string(),
            "Containers": containers,
        }));
    }
    let text = serde_json::to_string_pretty(&shown).map_err(|e| Error::Other(e.to_string()))?;
    println!("{text}");
    Ok(())
}

/// `berth network prune`: every network that no container names (the
/// default one stays, as Docker's do).
pub fn network_prune(engine: &Engine) -> Result<(), Error> {
    let records = engine.containers.list()?;
    let named: Vec<&str> = records.iter().flat_map(|r| r.spec.networks()).collect();
    for network in engine.networks.list()? {
        if network.name != DEFAULT_NETWORK && !named.contains(&network.name.as_str()) {
            engine.networks.remove(&network.name)?;
            println!("Deleted network: {}", network.name);
        }
    }
    Ok(())
}
