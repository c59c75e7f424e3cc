//! `berth save`: images out of the store into one tar file, in the two
//! shapes other tools load (stage 04's `load` reads both back):
//!
//! - **docker-archive**, what `docker save` writes and `docker load`,
//!   `podman load` and `skopeo ... docker-archive:` read:
//!   ```text
//!   manifest.json   [{"Config": "<hex>.json", "RepoTags": ["web:1"], "Layers": ["<diff id>.tar"]}]
//!   repositories    {"web": {"1": "<top layer's diff id>"}}
//!   <hex>.json      the config, as stored
//!   <diff id>.tar   each layer as a plain (uncompressed) tar
//!   ```
//! - **oci-archive**: a tar of an OCI image layout (`oci-layout`,
//!   `index.json`, `blobs/sha256/...`), blobs byte for byte as stored, each
//!   image named in index.json by its full reference.
//!
//! Several images go into one archive; a layer or blob they share goes in
//! once. The archive is written to an unnamed file (`O_TMPFILE`) that is
//! named and renamed over `-o FILE` at the end, so a killed save leaves no
//! half archive, under that name or another.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::json;
use stage01_chroot::Error;
use stage04_images::digest::{Digest, HashingReader};
use stage04_images::image::Image;
use stage04_images::layers;
use stage04_images::reference::Reference;
use stage04_images::spec::{self, ANNOTATION_REF_NAME};
use stage04_images::store::Store;

use crate::image_ops::familiar;
use crate::{Engine, images};

/// The two archive shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ArchiveFormat {
    /// `docker save`'s: manifest.json, repositories, config, layer tars.
    DockerArchive,
    /// A tar of an OCI image layout.
    OciArchive,
}

/// One image to save: its name in the store and what it is made of.
struct Saved {
    name: String,
    image: Image,
}

// ANCHOR: save
/// Save the images `keys` name (names, IDs, ID prefixes) as `format` to
/// `output` (a file, or stdout when `None`).
pub fn save(
    engine: &Engine,
    keys: &[String],
    format: ArchiveFormat,
    output: Option<&Path>,
) -> Result<(), Error> {
    let store = engine.root.store()?;
    let mut saved = Vec::new();
    for key in keys {
        let name = images::resolve(engine, key)?;
        let image = Image::open(&store, &name)?;
        saved.push(Saved {
            name: image.reference.to_string(),
            image,
        });
    }
    // A concurrent `rmi` must not take blobs while we read them.
    let _lock = store.lock()?;
    match output {
        Some(path) => {
            remove_killed_temps(path);
            let temp = temp_beside(path);
            let (file, named) = unnamed_file_beside(path, &temp)?;
            let written = write_archive(&store, &saved, format, io::BufWriter::new(&file))
                .and_then(|()| match named {
                    true => Ok(()),
                    false => name_it(&file, &temp),
                })
                .and_then(|()| {
                    std::fs::rename(&temp, path).map_err(|e| Error::io("rename", path, e))
                });
            if written.is_err() && named {
                let _ = std::fs::remove_file(&temp);
            }
            written
        }
        None => {
            if io::IsTerminal::is_terminal(&io::stdout()) {
                return Err(Error::Other(
                    "refusing to write an archive to a terminal: use -o FILE or redirect stdout"
                        .into(),
                ));
            }
            write_archive(&store, &saved, format, io::stdout().lock())
        }
    }
}
// ANCHOR_END: save

/// A file to write the archive into, in `path`'s directory. Unnamed if
/// the file system can (`O_TMPFILE`): a save killed while it writes then
/// leaves nothing at all, and the file gets `temp` as its name only once
/// it is whole, just before the rename over `path`. Else it is `temp`
/// from the start (the `bool`: named already).
fn unnamed_file_beside(path: &Path, temp: &Path) -> Result<(File, bool), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let unnamed = std::fs::OpenOptions::new()
        .write(true)
        .mode(0o644)
        .custom_flags(libc::O_TMPFILE)
        .open(dir);
    match unnamed {
        Ok(file) => Ok((file, false)),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => File::create(temp)
            .map(|file| (file, true))
            .map_err(|e| Error::io("create", temp, e)),
        Err(e) => Err(Error::io("create a file in", dir, e)),
    }
}

/// Give the unnamed `file` the name `temp` (`linkat` of its /proc/self/fd).
fn name_it(file: &File, temp: &Path) -> Result<(), Error> {
    use std::os::fd::AsRawFd;
    let source = format!("/proc/self/fd/{}", file.as_raw_fd());
    nix::unistd::linkat(
        nix::fcntl::AT_FDCWD,
        source.as_str(),
        nix::fcntl::AT_FDCWD,
        temp,
        nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
    )
    .map_err(|e| Error::io("name the archive", temp, e.into()))
}

/// A save killed in the moment between naming its archive and renaming it
/// into place left `.NAME.berth-tmp-PID`: the next save to NAME removes
/// those whose process is gone.
fn remove_killed_temps(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!(".{}.berth-tmp-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let pid = file_name
            .strip_prefix(&prefix)
            .and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn temp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or("archive".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.berth-tmp-{}", std::process::id()))
}

fn write_archive(
    store: &Store,
    saved: &[Saved],
    format: ArchiveFormat,
    out: impl Write,
) -> Result<(), Error> {
    let mut tar = tar::Builder::new(out);
    match format {
        ArchiveFormat::DockerArchive => write_docker_archive(store, saved, &mut tar)?,
        ArchiveFormat::OciArchive => write_oci_archive(store, saved, &mut tar)?,
    }
    tar.into_inner()
        .and_then(|mut out| out.flush())
        .map_err(|e| Error::Other(format!("writing the archive: {e}")))
}

// ANCHOR: docker_archive
fn write_docker_archive<W: Write>(
    store: &Store,
    saved: &[Saved],
    tar: &mut tar::Builder<W>,
) -> Result<(), Error> {
    // One entry per image (by config), with every name it was asked by.
    let mut entries: BTreeMap<Digest, (Vec<String>, &Image)> = BTreeMap::new();
    for one in saved {
        let entry = entries
            .entry(one.image.manifest.config.digest.clone())
            .or_insert_with(|| (Vec::new(), &one.image));
        let tag = familiar(&one.name);
        if !entry.0.contains(&tag) {
            entry.0.push(tag);
        }
    }
    let mut manifest = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut written = BTreeSet::new();
    for (config_digest, (tags, image)) in &entries {
        let config_name = format!("{}.json", config_digest.hex());
        append_bytes(tar, &config_name, &store.read_blob(config_digest)?)?;
        let mut layer_names = Vec::new();
        for (layer, diff_id) in image
            .manifest
            .layers
            .iter()
            .zip(&image.config.rootfs.diff_ids)
        {
            let layer_name = format!("{}.tar", diff_id.hex());
            if written.insert(layer_name.clone()) {
                append_plain_layer(tar, store, &layer.digest, diff_id, &layer_name)?;
            }
            layer_names.push(layer_name);
        }
        manifest.push(json!({"Config": config_name, "RepoTags": tags, "Layers": layer_names}));
        let top = image
            .config
            .rootfs
            .diff_ids
            .last()
            .map(|d| d.hex().to_string());
        for tag in tags {
            if let (Some((repository, tag)), Some(top)) = (tag.rsplit_once(':'), &top) {
                repositories
                    .entry(repository.to_string())
                    .or_default()
                    .insert(tag.to_string(), top.clone());
            }
        }
    }
    append_bytes(tar, "manifest.json", json!(manifest).to_string().as_bytes())?;
    append_bytes(
        tar,
        "repositories",
        json!(repositories).to_string().as_bytes(),
    )
}
// ANCHOR_END: docker_archive

/// A layer as a plain tar, whatever its compression in the store. Its size
/// must be in the tar header before its bytes, so it is decompressed twice:
/// once to count (and check the diff ID), once to copy.
fn append_plain_layer<W: Write>(
    tar: &mut tar::Builder<W>,
    store: &Store,
    blob: &Digest,
    diff_id: &Digest,
    name: &str,
) -> Result<(), Error> {
    let path = store.blob_path(blob);
    let open = || -> Result<Box<dyn Read>, Error> {
        let file = File::open(&path).map_err(|e| Error::io("open layer", &path, e))?;
        layers::decompress(file, &path)
    };
    let mut hashing = HashingReader::new(open()?);
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| Error::io("read layer", &path, e))?;
    let (actual, size) = hashing.finish();
    if actual != *diff_id {
        return Err(Error::Other(format!(
            "layer {blob} unpacks to {actual}, not the diff ID {diff_id} its config names: \
             the store is damaged; pull the image again"
        )));
    }
    let mut header = file_header(size);
    tar.append_data(&mut header, name, open()?)
        .map_err(|e| Error::Other(format!("writing {name} to the archive: {e}")))
}

// ANCHOR: oci_archive
fn write_oci_archive<W: Write>(
    store: &Store,
    saved: &[Saved],
    tar: &mut tar::Builder<W>,
) -> Result<(), Error> {
    let mut written = BTreeSet::new();
    let mut index = Vec::new();
    for one in saved {
        let image = &one.image;
        let blobs = std::iter::once(&image.manifest.config)
            .chain(&image.manifest.layers)
            .map(|d| &d.digest)
            .chain([&image.descriptor.digest]);
        for digest in blobs {
            if written.insert(digest.clone()) {
                let path = store.blob_path(digest);
                let mut file = File::open(&path).map_err(|e| Error::io("open blob", &path, e))?;
                let size = file
                    .metadata()
                    .map_err(|e| Error::io("stat blob", &path, e))?
                    .len();
                let name = format!("blobs/sha256/{}", digest.hex());
                tar.append_data(&mut file_header(size), &name, &mut file)
                    .map_err(|e| Error::Other(format!("writing {name} to the archive: {e}")))?;
            }
        }
        let reference: Reference = one.name.parse()?;
        index.push(json!({
            "mediaType": image.descriptor.media_type,
            "digest": image.descriptor.digest.to_string(),
            "size": image.descriptor.size,
            "annotations": {
                ANNOTATION_REF_NAME: reference.to_string(),
                // containerd's (and Docker's) name for it, read by their load.
                "io.containerd.image.name": reference.to_string(),
            },
        }));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": spec::MEDIA_TYPE_OCI_INDEX,
        "manifests": index,
    });
    append_bytes(tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    append_bytes(tar, "index.json", index.to_string().as_bytes())
}
// ANCHOR_END: oci_archive

/// A regular file's header: root-owned, 0644, time 0 (the same images give
/// the same archive).
fn file_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

fn append_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    bytes: &[u8],
) -> Result<(), Error> {
    tar.append_data(&mut file_header(bytes.len() as u64), name, bytes)
        .map_err(|e| Error::Other(format!("writing {name} to the archive: {e}")))
}
