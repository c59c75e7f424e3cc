//! Looking after the images in the store, as Docker users do: `tag`,
//! `rmi` by ID, `history`, `image inspect` and `image prune`.
//!
//! Everything here reads the store's OCI layout: a tag is an entry of
//! index.json, an image's ID is its config's digest (Docker's IMAGE ID), and
//! what `history` and `inspect` show comes from that config, as it was
//! pulled, built or loaded. Unknown fields of the config are kept as they
//! are, so `inspect` shows what the image's maker wrote.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};
use stage01_chroot::Error;
use stage03_cgroups::limits::format_size;
use stage04_images::image::{self, Image};
use stage04_images::reference::Reference;
use stage04_images::spec::{Descriptor, Platform};
use stage04_images::store::Store;

use crate::format::{Format, render};
use crate::{Engine, images, logfile, record};

/// An image as Docker's `image inspect` and `history` see it: its ID, its
/// names, and its config as raw JSON (every field its maker wrote).
pub struct Details {
    pub image: Image,
    /// Every tag naming this image (same config digest), sorted.
    pub names: Vec<String>,
    /// The manifests those tags point at, sorted.
    pub manifests: BTreeSet<String>,
    pub config: Value,
}

impl Details {
    /// The image `key` names: a tag, an ID or an ID prefix.
    pub fn find(engine: &Engine, key: &str) -> Result<Details, Error> {
        let name = images::resolve(engine, key)?;
        let store = engine.root.store()?;
        let image = Image::open(&store, &name)?;
        let config: Value =
            serde_json::from_slice(&store.read_blob(&image.manifest.config.digest)?)
                .map_err(|e| Error::Other(format!("{name}: the image config is not JSON: {e}")))?;
        let mut names = Vec::new();
        let mut manifests = BTreeSet::new();
        for (other, descriptor) in store.list()? {
            let same = other == name
                || Image::open(&store, &other)
                    .is_ok_and(|i| i.manifest.config.digest == image.manifest.config.digest);
            if same {
                names.push(other);
                manifests.insert(descriptor.digest.to_string());
            }
        }
        Ok(Details {
            image,
            names,
            manifests,
            config,
        })
    }

    /// Docker's IMAGE ID: `sha256:` and the config's digest.
    pub fn id(&self) -> String {
        self.image.manifest.config.digest.to_string()
    }

    /// The layers' size as stored (compressed: Docker shows them unpacked).
    pub fn size(&self) -> u64 {
        self.image.manifest.layers.iter().map(|l| l.size).sum()
    }
}

/// Docker's short form of a stored name: `busybox:latest` for Docker Hub's
/// official images, `team/app:1` for Docker Hub's others, else the whole.
pub fn familiar(name: &str) -> String {
    let short = name.strip_prefix("docker.io/").unwrap_or(name);
    if short.len() == name.len() {
        return name.to_string();
    }
    short.strip_prefix("library/").unwrap_or(short).to_string()
}

// ANCHOR: tag
/// `berth tag SOURCE TARGET`: one more name for the same manifest.
pub fn tag(engine: &Engine, source: &str, target: &str) -> Result<(), Error> {
    let name = images::resolve(engine, source)?;
    let store = engine.root.store()?;
    let manifest = stored(&store, &name)?;
    let target: Reference = target.parse()?;
    if target.digest.is_some() {
        return Err(Error::Other(format!(
            "{target}: a tag can't hold a digest (the digest is the content's own name)"
        )));
    }
    let plain = Descriptor {
        annotations: None,
        ..manifest
    };
    store.tag(&target.to_string(), plain)
}
// ANCHOR_END: tag

fn stored(store: &Store, name: &str) -> Result<Descriptor, Error> {
    let reference: Reference = name.parse()?;
    store.resolve(&reference.to_string())?.ok_or_else(|| {
        Error::Other(format!(
            "no image {reference} in the store (see: berth images)"
        ))
    })
}

/// The names `key` removes in `rmi`: itself, or for an ID the one name of
/// that image. An ID with several names is refused, as Docker does
/// without `-f`: which one did you mean?
pub fn names_to_remove(engine: &Engine, key: &str) -> Result<String, Error> {
    let name = images::resolve(engine, key)?;
    if name == key {
        return Ok(name);
    }
    let details = Details::find(engine, &name)?;
    if details.names.len() > 1 {
        return Err(Error::Other(format!(
            "image {key} has several names ({}): remove them one by one by name",
            details.names.join(", ")
        )));
    }
    Ok(name)
}

/// `run --platform`: the stored image must be for `platform`. (berth runs
/// what is in the store, and pulls nothing by itself.)
pub fn check_platform(engine: &Engine, key: &str, platform: &Platform) -> Result<(), Error> {
    let details = Details::find(engine, key)?;
    let text = |field: &str| details.config[field].as_str().unwrap_or("").to_string();
    let variant = details.config["variant"].as_str();
    if platform.matches(&text("os"), &text("architecture"), variant) {
        return Ok(());
    }
    Err(Error::Other(format!(
        "{key} is an image for {}/{}, not {platform}; pull the one you want: \
         berth pull --platform {platform} {key}",
        text("os"),
        text("architecture")
    )))
}

/// `rmi` must not pull an image from under a container that uses it.
pub fn refuse_in_use(engine: &Engine, image: &str) -> Result<(), Error> {
    let wanted = image.parse::<Reference>()?.to_string();
    let users: Vec<String> = engine
        .containers
        .list()?
        .into_iter()
        .filter(|r| normal(&r.spec.image).as_deref() == Some(wanted.as_str()))
        .map(|r| r.display_name().to_string())
        .collect();
    if users.is_empty() {
        return Ok(());
    }
    Err(Error::Other(format!(
        "image {wanted} is used by container(s) {}: remove them first (berth rm)",
        users.join(", ")
    )))
}

// ANCHOR: history
/// `berth history IMAGE`: the config's `history`, newest first, in
/// Docker's columns. Each entry that made a layer is matched to it (in
/// order), to show its size; `empty_layer` entries (ENV, CMD...) made none.
pub fn history(
    engine: &Engine,
    key: &str,
    format: &Format,
    no_trunc: bool,
    human: bool,
) -> Result<(), Error> {
    let details = Details::find(engine, key)?;
    let entries = details.config["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut layers = details.image.manifest.layers.iter();
    let mut rows: Vec<Map<String, Value>> = Vec::new();
    let made_layers = entries
        .iter()
        .filter(|e| !e["empty_layer"].as_bool().unwrap_or(false))
        .count();
    // Layers the history doesn't tell of (some tools write none, and a
    // build on such a base adds its own steps only): a row each, below.
    let untold = details.image.manifest.layers.len().checked_sub(made_layers);
    let entries = match untold {
        Some(untold) => {
            let created = details.config["created"].clone();
            let mut all = vec![json!({"created": created}); untold];
            all.extend(entries);
            all
        }
        // More than there are: the history is wrong, show the layers.
        None => details
            .image
            .manifest
            .layers
            .iter()
            .map(|_| json!({"created": details.config["created"]}))
            .collect(),
    };
    for entry in &entries {
        let size = match entry["empty_layer"].as_bool().unwrap_or(false) {
            true => 0,
            false => layers.next().map_or(0, |l| l.size),
        };
        let created = entry["created"].as_str().unwrap_or("");
        let created_by = entry["created_by"].as_str().unwrap_or("");
        rows.push(object(json!({
            "ID": "<missing>",
            "CreatedAt": created,
            "CreatedSince": since(created),
            "CreatedBy": created_by,
            "Size": format_size(size),
            "Comment": entry["comment"].as_str().unwrap_or(""),
        })));
    }
    rows.reverse();
    // The newest entry is the image itself.
    if let Some(top) = rows.first_mut() {
        let id = details.id();
        top.insert(
            "ID".into(),
            json!(if no_trunc { id } else { id[7..19].to_string() }),
        );
    }
    format.print(&rows, "ID", || {
        println!(
            "{:<12}  {:<15}  {:<45}  {:>8}  COMMENT",
            "IMAGE", "CREATED", "CREATED BY", "SIZE"
        );
        for row in &rows {
            let text = |key: &str| row[key].as_str().unwrap_or("").to_string();
            let created_by = text("CreatedBy");
            let created_by = if no_trunc || created_by.chars().count() <= 45 {
                created_by
            } else {
                created_by.chars().take(44).collect::<String>() + "…"
            };
            let created = if human {
                text("CreatedSince")
            } else {
                text("CreatedAt")
            };
            println!(
                "{:<12}  {:<15}  {:<45}  {:>8}  {}",
                text("ID"),
                created,
                created_by,
                text("Size"),
                text("Comment")
            );
        }
    })
}
// ANCHOR_END: history

/// `2 hours ago` from an RFC 3339 time; nothing if there is none.
fn since(created: &str) -> String {
    match logfile::parse_time(created, logfile::now_nanos()) {
        Ok(nanos) if !created.is_empty() => {
            let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(0);
            format!("{} ago", record::human_age(secs))
        }
        _ => String::new(),
    }
}

// ANCHOR: inspect
/// `berth image inspect`: Docker's JSON for each image (or, with
/// `--format`, the template filled in from it).
pub fn inspect(engine: &Engine, keys: &[String], template: Option<&str>) -> Result<(), Error> {
    let mut all = Vec::new();
    for key in keys {
        all.push(docker_json(&Details::find(engine, key)?));
    }
    match template {
        Some(template) => {
            for image in &all {
                let Value::Object(map) = image else { continue };
                println!("{}", render(template, map)?);
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default()),
    }
    Ok(())
}

/// One image in Docker's `image inspect` shape.
fn docker_json(details: &Details) -> Value {
    let config = &details.config;
    let repo_digests: BTreeSet<String> = details
        .names
        .iter()
        .filter_map(|name| name.parse::<Reference>().ok())
        .flat_map(|r| {
            let name = familiar(&r.name());
            details
                .manifests
                .iter()
                .map(move |digest| format!("{name}@{digest}"))
        })
        .collect();
    let mut image = json!({
        "Id": details.id(),
        "RepoTags": details.names.iter().map(|n| familiar(n)).collect::<Vec<_>>(),
        "RepoDigests": repo_digests,
        "Parent": "",
        "Comment": config["comment"].as_str().unwrap_or(""),
        "Created": config["created"].as_str().unwrap_or(""),
        "Author": config["author"].as_str().unwrap_or(""),
        "Config": config["config"].clone(),
        "Architecture": config["architecture"].clone(),
        "Os": config["os"].clone(),
        "Size": details.size(),
        "RootFS": {
            "Type": config["rootfs"]["type"].as_str().unwrap_or("layers"),
            "Layers": config["rootfs"]["diff_ids"].clone(),
        },
        "Descriptor": {
            "mediaType": details.image.descriptor.media_type,
            "digest": details.image.descriptor.digest.to_string(),
            "size": details.image.descriptor.size,
        },
    });
    // Docker leaves Variant out where the image names none.
    if let Some(variant) = config.get("variant") {
        image["Variant"] = variant.clone();
    }
    image
}
// ANCHOR_END: inspect

// ANCHOR: prune
/// `berth image prune`: what no tag reaches any more (Docker's dangling
/// images: the manifests and configs a moved tag or a rebuild left
/// behind), and unpacked layers no image uses. With `all`, first every
/// image no container uses loses its names too.
pub fn prune(engine: &Engine, all: bool) -> Result<(), Error> {
    let store = engine.root.store()?;
    let mut untagged = Vec::new();
    if all {
        let used: BTreeSet<String> = engine
            .containers
            .list()?
            .into_iter()
            .filter_map(|r| normal(&r.spec.image))
            .collect();
        for (name, _) in store.list()? {
            if !used.contains(&name) {
                store.untag(&name)?;
                untagged.push(name);
            }
        }
    }
    let before = blob_bytes(&store);
    let deleted = store.gc()?;
    let reclaimed = before.saturating_sub(blob_bytes(&store));
    image::remove_unused_layers(&store, &engine.root.layers(), engine.containers.dir())?;
    if !untagged.is_empty() || !deleted.is_empty() {
        println!("Deleted Images:");
        for name in &untagged {
            println!("untagged: {}", familiar(name));
        }
        for digest in &deleted {
            println!("deleted: {digest}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", format_size(reclaimed));
    Ok(())
}
// ANCHOR_END: prune

/// A container's image as the store names it.
fn normal(image: &str) -> Option<String> {
    image.parse::<Reference>().ok().map(|r| r.to_string())
}

fn blob_bytes(store: &Store) -> u64 {
    std::fs::read_dir(store.dir().join("blobs/sha256"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn familiar_names_are_docker_s() {
        assert_eq!(
            familiar("docker.io/library/busybox:latest"),
            "busybox:latest"
        );
        assert_eq!(familiar("docker.io/team/app:1"), "team/app:1");
        assert_eq!(
            familiar("127.0.0.1:5000/busybox:latest"),
            "127.0.0.1:5000/busybox:latest"
        );
    }
}
