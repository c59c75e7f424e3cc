//! Volumes: data that outlives a container.
//!
//! A container's writes land in its upper directory and go with `berth rm`.
//! What must stay (a database, uploads) goes elsewhere, mounted into the
//! container, in one of three ways Docker named:
//!
//! - a **bind mount** of a host directory (`-v /srv/site:/www`): the host's
//!   files, as they are;
//! - a **volume** (`-v data:/var/lib/db`): a directory berth keeps for the
//!   purpose, `<root>/volumes/<name>/_data`, made on first use and kept
//!   until `berth volume rm`. One without a name (`-v /cache`, or an
//!   image's VOLUME) is *anonymous*: it gets a random name, and goes with
//!   its container when that is removed with `rm -v` or `run --rm`. A new
//!   volume starts with a copy of what the image has at its path ([`copy`]);
//! - a **tmpfs** (`--tmpfs /run`): memory, gone with the container.
//!
//! [`spec`] reads the flags, [`store`] keeps the volumes; this module makes
//! them ready for a new container ([`plan`]), lists them in its bundle for
//! the runtime ([`oci_mounts`]), and has the `berth volume` commands.

mod copy;
pub mod spec;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::Flock;
use serde_json::{Value, json};
use stage01_chroot::Error;
use stage02_namespaces::{IdMap, IdMaps};
use stage04_images::overlay::ContainerDirs;

pub use spec::{Mount, MountType};
pub use store::{Volume, Volumes};

use crate::Engine;
use crate::format::{Filters, Format, label_matches};
use crate::record::Record;

/// The only volume driver berth has: directories on this host.
pub const DRIVER: &str = "local";

// ---- `berth run`'s options ----

/// The mount options of `berth run`, as Docker's.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MountArgs {
    /// Mount a volume or a host directory: NAME:/PATH (a named volume, made
    /// on first use), /HOST/PATH:/PATH (a bind mount; a missing host
    /// directory is made), or /PATH (an anonymous volume). OPTS: ro or rw;
    /// nocopy (a new volume gets no copy of the image's files); z or Z
    /// (SELinux relabelling: accepted, and a no-op, as berth sets no
    /// SELinux labels).
    #[arg(short = 'v', long = "volume", value_name = "[SRC:]DST[:OPTS]",
          value_parser = spec::parse_volume_flag)]
    pub volume: Vec<Mount>,
    /// Mount, in Docker's long form: type=bind|volume|tmpfs (default volume),
    /// source=|src=, target=|dst=|destination=, readonly|ro[=true|false],
    /// volume-nocopy, volume-label=K=V, bind-nonrecursive, tmpfs-size=,
    /// tmpfs-mode=. A bind's source must exist.
    #[arg(long = "mount", value_name = "type=TYPE,src=SRC,dst=DST,...",
          value_parser = spec::parse_mount_flag)]
    pub mount: Vec<Mount>,
    /// Mount a tmpfs (memory; gone with the container). OPTS: size=64m,
    /// mode=1777, uid=, gid=, exec, suid, dev, ro... (default: nosuid,
    /// nodev, noexec, as Docker).
    #[arg(long = "tmpfs", value_name = "/PATH[:OPTS]", value_parser = spec::parse_tmpfs_flag)]
    pub tmpfs: Vec<Mount>,
}

impl MountArgs {
    pub fn into_mounts(self) -> Vec<Mount> {
        [self.volume, self.mount, self.tmpfs].concat()
    }
}

// ---- a new container's mounts ----

/// A new container's mounts, checked, with what they need made aside:
/// the volumes new to berth, each staged with its copy of the image's
/// files. Nothing is in place yet ([`Planned::make`] does that).
pub struct Planned {
    /// As the record keeps them: every anonymous volume named.
    pub mounts: Vec<Mount>,
    staged: Vec<store::Staged>,
    /// (volume, target) to copy the image into if the volume is empty.
    copy_into_existing: Vec<(String, PathBuf)>,
    image: Option<std::os::fd::OwnedFd>,
    maps: Option<IdMaps>,
}

// ANCHOR: plan
/// Check a new container's mounts and make ready what they need, without
/// putting anything in place: the image's VOLUMEs join the user's mounts
/// (unless the user mounts something there); bind sources are checked;
/// each volume new to berth is made aside, with what the image has at its
/// target copied in. `layers` are the image's (bottom first), asked for
/// only if something is to be copied.
pub fn plan(
    engine: &Engine,
    mut mounts: Vec<Mount>,
    image_volumes: &[String],
    layers: impl FnOnce() -> Result<Vec<PathBuf>, Error>,
    userns: bool,
) -> Result<Planned, Error> {
    let mut targets = BTreeSet::new();
    for mount in &mounts {
        if !targets.insert(mount.target.clone()) {
            return Err(Error::Other(format!(
                "duplicate mount point: {} (each target may be mounted once)",
                mount.target.display()
            )));
        }
    }
    for path in image_volumes {
        let target = spec::clean_target(path).map_err(|why| {
            Error::Other(format!(
                "the image's config asks for a volume at {path:?}, which berth refuses: {why}"
            ))
        })?;
        if targets.insert(target.clone()) {
            mounts.push(Mount::anonymous(target));
        }
    }
    let maps = userns.then_some(IdMaps::same(IdMap::DEFAULT));
    let mut planned = Planned {
        mounts: Vec::new(),
        staged: Vec::new(),
        copy_into_existing: Vec::new(),
        image: None,
        maps,
    };
    let mut new = BTreeMap::new(); // name -> (labels, anonymous, copy from)
    for mut mount in mounts {
        match mount.kind {
            MountType::Bind => mount.source = bind_source(engine, &mount)?,
            MountType::Volume if mount.source.is_empty() => {
                mount.source = random_name()?;
                new.insert(mount.source.clone(), (BTreeMap::new(), true, Vec::new()));
            }
            MountType::Volume if engine.volumes.get(&mount.source)?.is_none() => {
                new.entry(mount.source.clone())
                    .or_insert_with(|| (mount.labels.clone(), false, Vec::new()));
            }
            MountType::Volume if !mount.no_copy => planned
                .copy_into_existing
                .push((mount.source.clone(), mount.target.clone())),
            MountType::Volume | MountType::Tmpfs => {}
        }
        if let (MountType::Volume, false, Some((_, _, from))) =
            (mount.kind, mount.no_copy, new.get_mut(&mount.source))
        {
            from.push(mount.target.clone());
        }
        planned.mounts.push(mount);
    }
    if !planned.mounts.is_empty() {
        let mut lower = layers()?;
        lower.reverse(); // topmost first, as overlayfs takes them
        let image = stage02_namespaces::userns::read_only_layers(&lower)?;
        for mount in &planned.mounts {
            check_target_in(&image, mount)?;
        }
        planned.image = Some(image);
    }
    let owner = maps.map(|m| (m.uid.to_host(0), m.gid.to_host(0)));
    for (name, (labels, anonymous, from)) in new {
        let staged = engine
            .volumes
            .stage(&Volume::new(&name, labels, anonymous), owner)?;
        if let Some(image) = &planned.image {
            // The first target where the image has a directory wins.
            for target in &from {
                if copy::copy_up(image, target, &staged.data(), maps)? {
                    break;
                }
            }
        }
        planned.staged.push(staged);
    }
    Ok(planned)
}
// ANCHOR_END: plan

// ANCHOR: check_target_in
/// Refuse now, before anything is made, a target the runtime would refuse
/// later: one that goes through a symlink of the image (`/data/x` with
/// `/data -> /etc`: before `pivot_root`, that would lead to the host's
/// `/etc`), or a tmpfs on one. (A bind mount or volume replaces a symlink
/// at the target itself, in the container's upper directory.)
fn check_target_in(image: &std::os::fd::OwnedFd, mount: &Mount) -> Result<(), Error> {
    use nix::fcntl::{AtFlags, OFlag, openat};
    use nix::sys::stat::{Mode, fstatat};
    let names: Vec<&std::ffi::OsStr> = mount
        .target
        .components()
        .filter_map(|part| match part {
            Component::Normal(name) => Some(name),
            _ => None,
        })
        .collect();
    let mut dir = image
        .try_clone()
        .map_err(|e| Error::io("open the image", "/", e))?;
    let mut path = PathBuf::from("/");
    for (i, name) in names.iter().enumerate() {
        path.push(name);
        let Ok(stat) = fstatat(&dir, *name, AtFlags::AT_SYMLINK_NOFOLLOW) else {
            return Ok(()); // not in the image: the runtime makes it
        };
        let last = i + 1 == names.len();
        if stat.st_mode & libc::S_IFMT == libc::S_IFLNK && (!last || mount.kind == MountType::Tmpfs)
        {
            let points_to = nix::fcntl::readlinkat(&dir, *name).unwrap_or_default();
            return Err(Error::Other(format!(
                "mount target {}: {} is a symlink in the image (to {}), which berth does not \
                 follow; mount on the directory it means instead",
                mount.target.display(),
                path.display(),
                points_to.to_string_lossy()
            )));
        }
        if last || stat.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return Ok(());
        }
        dir = openat(
            &dir,
            *name,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("open in the image", &path, e.into()))?;
    }
    Ok(())
}
// ANCHOR_END: check_target_in

/// What [`Planned::make`] made, to take back if the container can't be.
pub struct Made {
    volumes: Vec<String>,
}

impl Planned {
    /// Under the containers' lock, just before the record is written: put
    /// the new volumes in place, make the missing host directories of `-v`,
    /// and copy the image into volumes that exist but are empty.
    pub fn make(self, engine: &Engine, _lock: &Flock<std::fs::File>) -> Result<Made, Error> {
        let mut made = Made {
            volumes: Vec::new(),
        };
        let mut copy_into_existing = self.copy_into_existing;
        for staged in self.staged {
            let name = staged.name().to_string();
            match engine.volumes.place(staged) {
                Ok(true) => made.volumes.push(name),
                // Made by someone else meanwhile: theirs is used, as it is.
                Ok(false) => {
                    for mount in self
                        .mounts
                        .iter()
                        .filter(|m| m.source == name && !m.no_copy)
                    {
                        copy_into_existing.push((name.clone(), mount.target.clone()));
                    }
                }
                Err(err) => return Err(made.undo(engine, err)),
            }
        }
        for mount in &self.mounts {
            if let Err(err) = make_bind_source(mount) {
                return Err(made.undo(engine, err));
            }
        }
        for (name, target) in copy_into_existing {
            let Some(image) = &self.image else { break };
            let data = engine.volumes.data(&name);
            if let Err(err) = copy_into_empty(image, &target, &data, self.maps) {
                return Err(made.undo(engine, err));
            }
        }
        Ok(made)
    }
}

impl Made {
    /// Remove the volumes made for a container that could not be made.
    pub fn undo(self, engine: &Engine, err: Error) -> Error {
        for name in &self.volumes {
            if let Err(e) = engine.volumes.remove(name) {
                eprintln!("berth: warning: {e}");
            }
        }
        err
    }
}

/// Copy-up into a volume that exists already, if it is empty. A volume in
/// place may be in use: the copy goes straight in, as with Docker; if it
/// fails halfway, what was copied goes again, so that the volume is empty
/// as before (and the next container tries anew).
fn copy_into_empty(
    image: &std::os::fd::OwnedFd,
    target: &Path,
    data: &Path,
    maps: Option<IdMaps>,
) -> Result<(), Error> {
    match copy::copy_up(image, target, data, maps) {
        Ok(_) => Ok(()),
        Err(err) => {
            if let Ok(entries) = std::fs::read_dir(data) {
                for entry in entries.flatten() {
                    // remove_dir_all follows no symlink.
                    let _ = match entry.file_type().is_ok_and(|t| t.is_dir()) {
                        true => std::fs::remove_dir_all(entry.path()),
                        false => std::fs::remove_file(entry.path()),
                    };
                }
            }
            Err(err)
        }
    }
}

// ANCHOR: bind_source
/// A bind mount's source as the mount will use it: absolute and clean.
/// It must exist, unless `-v` asked for it to be made. Berth's own state
/// is refused: a container that could write its records, or another's
/// upper directory, could make berth act on what it wrote.
fn bind_source(engine: &Engine, mount: &Mount) -> Result<String, Error> {
    let invalid =
        |why: String| Error::Other(format!("invalid mount config for type \"bind\": {why}"));
    let mut path = PathBuf::from("/");
    for part in Path::new(&mount.source).components() {
        match part {
            Component::Normal(name) => path.push(name),
            Component::ParentDir => {
                path.pop();
            }
            _ => {}
        }
    }
    if !path.exists() && !mount.create_source {
        return Err(invalid(format!(
            "bind source path does not exist: {} (make it first, or use -v, which makes a \
             missing directory)",
            path.display()
        )));
    }
    // Where it really leads: the nearest part that exists, resolved, and
    // the rest.
    let existing = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let real = std::fs::canonicalize(existing)
        .map_err(|e| Error::io("resolve", existing, e))?
        .join(path.strip_prefix(existing).unwrap_or(Path::new("")));
    let state = engine.root.dir();
    if real.starts_with(state) {
        return Err(invalid(format!(
            "{} is inside berth's state directory {}: a container must not reach berth's own \
             files; use a volume (-v NAME:{}) instead",
            mount.source,
            state.display(),
            mount.target.display()
        )));
    }
    Ok(path.to_string_lossy().into_owned())
}
// ANCHOR_END: bind_source

/// `-v /host/dir:...` makes a missing host directory, as Docker does.
fn make_bind_source(mount: &Mount) -> Result<(), Error> {
    if mount.kind != MountType::Bind || !mount.create_source {
        return Ok(());
    }
    let path = Path::new(&mount.source);
    if path.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(path).map_err(|e| Error::io("create the bind source", path, e))
}

/// A new anonymous volume's name: 64 random hex digits, as Docker's.
fn random_name() -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| Error::io("read", "/dev/urandom", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

// ---- the container's bundle ----

// ANCHOR: oci_mounts
/// The container's mounts as the runtime spec lists them (`config.json`'s
/// `mounts`), with what each needs on the host made ready for this run:
/// a `-v` bind's host directory (made again if it went), and with a user
/// namespace, a way through berth's root to each volume for the
/// container's root (as for its own directory: see `ContainerDirs::open_to`).
pub fn oci_mounts(
    engine: &Engine,
    mounts: &[Mount],
    user_map: Option<IdMaps>,
) -> Result<Vec<(PathBuf, Value)>, Error> {
    let mut listed = Vec::new();
    for mount in mounts {
        let mut options = Vec::new();
        let (kind, source) = match mount.kind {
            MountType::Bind => {
                make_bind_source(mount)?;
                ("bind", PathBuf::from(&mount.source))
            }
            MountType::Volume => {
                if engine.volumes.get(&mount.source)?.is_none() {
                    return Err(Error::Other(format!(
                        "volume {} of this container is gone from {}: remove the container, \
                         or make the volume again (berth volume create {})",
                        mount.source,
                        engine.volumes.dir().display(),
                        mount.source
                    )));
                }
                if let Some(maps) = user_map {
                    ContainerDirs::open(engine.volumes.dir(), &mount.source)
                        .open_to(engine.root.dir(), maps.gid.to_host(0))?;
                }
                ("bind", engine.volumes.data(&mount.source))
            }
            MountType::Tmpfs => {
                // Docker's defaults; the user's options come after, and win.
                options.extend(["nosuid", "nodev", "noexec"].map(String::from));
                options.extend(mount.tmpfs_options.iter().cloned());
                ("tmpfs", PathBuf::from("tmpfs"))
            }
        };
        if kind == "bind" {
            let bind = if mount.non_recursive { "bind" } else { "rbind" };
            options.extend([bind.to_string(), "rprivate".to_string()]);
        }
        if mount.read_only {
            options.push("ro".into());
        }
        listed.push((
            mount.target.clone(),
            json!({
                "destination": mount.target, "type": kind, "source": source, "options": options,
            }),
        ));
    }
    Ok(listed)
}
// ANCHOR_END: oci_mounts

/// `docker inspect`'s `Mounts`: what each mount is, in Docker's words.
pub fn inspect_mounts(engine: &Engine, mounts: &[Mount]) -> Value {
    let listed: Vec<Value> = mounts
        .iter()
        .map(|mount| match mount.kind {
            MountType::Volume => json!({
                "Type": "volume",
                "Name": mount.source,
                "Source": engine.volumes.data(&mount.source),
                "Destination": mount.target,
                "Driver": DRIVER,
                "Mode": if mount.no_copy { "nocopy" } else { "" },
                "RW": !mount.read_only,
                "Propagation": "",
            }),
            MountType::Bind => json!({
                "Type": "bind",
                "Source": mount.source,
                "Destination": mount.target,
                "Mode": "",
                "RW": !mount.read_only,
                "Propagation": "rprivate",
            }),
            MountType::Tmpfs => json!({
                "Type": "tmpfs",
                "Source": "",
                "Destination": mount.target,
                "Mode": mount.tmpfs_options.join(","),
                "RW": !mount.read_only && !mount.tmpfs_options.iter().any(|o| o == "ro"),
                "Propagation": "",
            }),
        })
        .collect();
    Value::from(listed)
}

// ---- when a container goes ----

/// The containers that mount volume `name`, by name.
fn users(records: &[Record], name: &str) -> Vec<String> {
    records
        .iter()
        .filter(|r| {
            r.spec
                .mounts
                .iter()
                .any(|m| m.kind == MountType::Volume && m.source == name)
        })
        .map(|r| r.display_name().to_string())
        .collect()
}

// ANCHOR: remove_anonymous
/// Remove the anonymous volumes of a container that was just removed
/// (`rm -v`, `run --rm`), under the containers' lock; named ones stay, as
/// do anonymous ones another container mounts too (by name).
pub fn remove_anonymous(
    engine: &Engine,
    record: &Record,
    _lock: &Flock<std::fs::File>,
) -> Result<(), Error> {
    // The other containers, read once and only if there is a volume to
    // ask about (most containers have none, and there may be a thousand).
    let mut others = None;
    for mount in &record.spec.mounts {
        if mount.kind != MountType::Volume {
            continue;
        }
        match engine.volumes.get(&mount.source)? {
            Some(volume) if volume.anonymous => {}
            _ => continue,
        }
        let others = match &mut others {
            Some(others) => others,
            None => others.insert(engine.containers.list()?),
        };
        let users = users(others, &mount.source);
        if !users.is_empty() {
            eprintln!(
                "berth: warning: volume {} is still used by {}: kept",
                mount.source,
                users.join(", ")
            );
            continue;
        }
        engine.volumes.remove(&mount.source)?;
    }
    Ok(())
}
// ANCHOR_END: remove_anonymous

// ---- `berth volume` ----

/// `berth volume`: manage volumes.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum VolumeCommand {
    /// Make a volume and print its name (a random one if none is given).
    Create {
        /// Set a label on it.
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        #[arg(value_name = "NAME")]
        name: Option<String>,
    },
    /// List volumes.
    #[command(alias = "list")]
    Ls {
        /// Only the names.
        #[arg(short, long)]
        quiet: bool,
        /// Print each as TEMPLATE says, e.g. '{{.Name}} {{.Mountpoint}}', or json.
        /// Fields: Name, Driver, Mountpoint, Labels, Anonymous.
        #[arg(long, value_name = "TEMPLATE")]
        format: Option<String>,
        /// Only volumes that match: name=, label=KEY[=VALUE], dangling=true|false
        /// (no container mounts it).
        #[arg(short, long = "filter", value_name = "KEY=VALUE")]
        filter: Vec<String>,
    },
    /// Show what berth knows about volumes, as JSON.
    Inspect {
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
    },
    /// Remove volumes and their data. One that a container mounts (running
    /// or not) is refused, even with -f: remove the container first.
    #[command(alias = "remove")]
    Rm {
        /// No error for a volume that does not exist.
        #[arg(short, long)]
        force: bool,
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
    },
    /// Remove the anonymous volumes that no container mounts (with --all:
    /// every volume that no container mounts).
    Prune {
        /// Don't ask first.
        #[arg(short, long)]
        force: bool,
        /// Named volumes too.
        #[arg(short, long)]
        all: bool,
    },
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').unwrap_or((text, ""));
    match key.is_empty() {
        true => Err(format!("{text:?} is not KEY=VALUE")),
        false => Ok((key.to_string(), value.to_string())),
    }
}

/// Run one `berth volume` command.
pub fn command(engine: &Engine, command: VolumeCommand) -> Result<u8, Error> {
    match command {
        VolumeCommand::Create { labels, name } => {
            let name = match name {
                Some(name) => name,
                None => random_name()?,
            };
            spec::check_volume_name(&name).map_err(Error::Other)?;
            let volume = Volume::new(&name, labels.into_iter().collect(), false);
            engine.volumes.create(&volume, None)?;
            println!("{name}");
            Ok(0)
        }
        VolumeCommand::Ls {
            quiet,
            format,
            filter,
        } => list(engine, quiet, format.as_deref(), &filter).map(|()| 0),
        VolumeCommand::Inspect { names } => inspect(engine, &names),
        VolumeCommand::Rm { force, names } => remove(engine, &names, force),
        VolumeCommand::Prune { force, all } => prune(engine, force, all),
    }
}

/// `berth volume ls`, with Docker's `-q`, `--format` and `--filter`.
fn list(
    engine: &Engine,
    quiet: bool,
    format: Option<&str>,
    filter: &[String],
) -> Result<(), Error> {
    let filters = Filters::new(filter, &["name", "label", "dangling"])?;
    let records = engine.containers.list()?;
    let volumes: Vec<_> = engine
        .volumes
        .list()?
        .into_iter()
        .filter(|volume| {
            filters.pass(|key, value| match key {
                "name" => volume.name.contains(value),
                "label" => label_matches(&json!(volume.labels), value),
                "dangling" => users(&records, &volume.name).is_empty() == (value == "true"),
                _ => false,
            })
        })
        .collect();
    let rows: Vec<_> = volumes
        .iter()
        .map(|volume| {
            let row = json!({
                "Name": volume.name, "Driver": volume.driver,
                "Mountpoint": engine.volumes.data(&volume.name).display().to_string(),
                "Labels": volume.labels, "Anonymous": volume.anonymous,
            });
            row.as_object().cloned().unwrap_or_default()
        })
        .collect();
    Format::new(quiet, format).print(&rows, "Name", || {
        println!("{:<9} VOLUME NAME", "DRIVER");
        for volume in &volumes {
            println!("{:<9} {}", volume.driver, volume.name);
        }
    })
}

/// `docker volume inspect`'s JSON: those found, then an error for the rest.
fn inspect(engine: &Engine, names: &[String]) -> Result<u8, Error> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in names {
        match engine.volumes.get(name) {
            Ok(Some(volume)) => found.push(json!({
                "CreatedAt": crate::runtime::rfc3339(volume.created),
                "Driver": volume.driver,
                "Labels": volume.labels,
                "Mountpoint": engine.volumes.data(&volume.name),
                "Name": volume.name,
                "Options": {},
                "Scope": "local",
            })),
            Ok(None) | Err(_) => missing.push(name.as_str()),
        }
    }
    let text = serde_json::to_string_pretty(&found)
        .map_err(|e| Error::Other(format!("encode the volumes: {e}")))?;
    println!("{text}");
    match missing.is_empty() {
        true => Ok(0),
        false => Err(Error::Other(format!(
            "no such volume: {} (see: berth volume ls)",
            missing.join(", ")
        ))),
    }
}

// ANCHOR: volume_rm
/// `berth volume rm`: each volume no container mounts, printing its name;
/// the others are refused, naming their containers. All are tried; the
/// first error is returned.
fn remove(engine: &Engine, names: &[String], force: bool) -> Result<u8, Error> {
    let lock = engine.containers.lock()?;
    let records = engine.containers.list()?;
    let mut first_error = None;
    for name in names {
        let result = match engine.volumes.get(name) {
            Ok(None) if force => continue,
            Ok(None) => Err(Error::Other(format!(
                "no such volume: {name} (see: berth volume ls)"
            ))),
            Err(err) => Err(err),
            Ok(Some(_)) => match users(&records, name).as_slice() {
                [] => engine.volumes.remove(name),
                users => Err(Error::Other(format!(
                    "volume {name} is in use by container(s) {}: remove them first (berth rm), \
                     then the volume",
                    users.join(", ")
                ))),
            },
        };
        match result {
            Ok(()) => println!("{name}"),
            Err(err) if first_error.is_none() => first_error = Some(err),
            Err(err) => eprintln!("berth: {err}"),
        }
    }
    drop(lock);
    first_error.map_or(Ok(0), Err)
}
// ANCHOR_END: volume_rm

/// `berth volume prune`: the anonymous volumes no container mounts (all
/// unused ones with `all`), after asking, unless `force`.
fn prune(engine: &Engine, force: bool, all: bool) -> Result<u8, Error> {
    if !force {
        let which = match all {
            true => "all local volumes",
            false => "anonymous local volumes",
        };
        print!(
            "WARNING! This will remove {which} not used by at least one container.\n\
             Are you sure you want to continue? [y/N] "
        );
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(0);
        }
    }
    let _lock = engine.containers.lock()?;
    let records = engine.containers.list()?;
    let mut deleted = Vec::new();
    let mut reclaimed = 0;
    for volume in engine.volumes.list()? {
        if !(all || volume.anonymous) || !users(&records, &volume.name).is_empty() {
            continue;
        }
        reclaimed += size_of(&engine.volumes.data(&volume.name));
        engine.volumes.remove(&volume.name)?;
        deleted.push(volume.name);
    }
    if !deleted.is_empty() {
        println!("Deleted Volumes:\n{}\n", deleted.join("\n"));
    }
    println!("Total reclaimed space: {}", human_size(reclaimed));
    Ok(0)
}

/// The bytes of the files below `dir` (symlinks not followed).
fn size_of(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => size_of(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// `0B`, `12.3kB`, `4.56MB`: Docker's decimal units.
fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes}B"),
        _ => format!(
            "{}{}",
            format!("{value:.3}")
                .trim_end_matches('0')
                .trim_end_matches('.'),
            units[unit]
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_dockers() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1500), "1.5kB");
        assert_eq!(human_size(4_560_000), "4.56MB");
    }

    #[test]
    fn labels_are_key_value() {
        assert_eq!(parse_label("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(parse_label("flag").unwrap(), ("flag".into(), String::new()));
        assert!(parse_label("=x").is_err());
    }
}
