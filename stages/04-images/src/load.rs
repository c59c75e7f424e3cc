//! `load`: images from files instead of a registry.
//!
//! Two formats are common:
//! - **docker-archive** (`docker save`, `skopeo copy ... docker-archive:F`):
//!   a tar with `manifest.json` (`[{"Config": "x.json", "RepoTags": [...],
//!   "Layers": ["a.tar", ...]}]`), the config and the layer tars;
//! - **OCI layout**, as a directory or as a tar of one (`oci-archive`):
//!   `index.json`, `oci-layout` and `blobs/sha256/...`, like our store.
//!
//! Either way every blob goes through the store's verifying `put_blob`, and
//! the image is tagged only once all of it is in. A file is read no further
//! than its descriptor declares, and JSON documents no further than
//! [`crate::bounds::MAX_DOCUMENT_SIZE`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Cursor, Read};
use std::path::{Component, Path, PathBuf};

use stage01_chroot::Error;

use crate::bounds::{read_document, read_small_file};
use crate::digest::{Digest, HashingReader};
use crate::reference::Reference;
use crate::spec::{self, Descriptor, ImageConfig, Index, Manifest};
use crate::store::Store;

/// Load the image(s) in `path`; the names they were tagged with.
pub fn load(store: &Store, path: &Path, tag: Option<&str>) -> Result<Vec<String>, Error> {
    if path.is_dir() {
        if !path.join("index.json").is_file() {
            return Err(not_an_image(path, "a directory without an index.json"));
        }
        return load_oci_layout(store, path, tag);
    }
    // An archive: unpack its plain files into a scratch directory next to
    // the store, then read it as the directory it was.
    let archive = open_archive(path)?;
    let scratch = Scratch::new(store)?;
    extract_plain_files(archive, path, &scratch.0)?;
    if scratch.0.join("manifest.json").exists() {
        load_docker_archive(store, &scratch.0, tag)
    } else if scratch.0.join("index.json").exists() {
        load_oci_layout(store, &scratch.0, tag)
    } else {
        Err(not_an_image(
            path,
            "a tar file without a manifest.json (docker-archive) or an index.json (oci-archive)",
        ))
    }
}

/// Load an archive piped to stdin (`berth save web | berth load`): it is
/// copied to a scratch file beside the store first, since a tar's members
/// can't be read twice from a pipe.
pub fn load_stdin(store: &Store, tag: Option<&str>) -> Result<Vec<String>, Error> {
    let stdin = io::stdin();
    if io::IsTerminal::is_terminal(&stdin) {
        return Err(Error::Other(format!(
            "no archive given and stdin is a terminal; {LOAD_TAKES}: name the file, \
             or pipe it in"
        )));
    }
    let scratch = Scratch::new(store)?;
    let path = scratch.0.join("stdin.tar");
    let mut file = File::create(&path).map_err(|e| Error::io("create", &path, e))?;
    io::copy(&mut stdin.lock(), &mut file).map_err(|e| Error::io("write", &path, e))?;
    drop(file);
    load(store, &path, tag)
}

/// What `load` reads, for errors about what a file is not.
const LOAD_TAKES: &str = "load takes a docker-archive or oci-archive tar file (as `docker save` \
     or `skopeo copy ... docker-archive:FILE` write them) or an OCI layout directory";

/// Says what `path` is not, and never quotes its content: it may be any
/// file, `/etc/shadow` included.
fn not_an_image(path: &Path, what_it_is: &str) -> Error {
    Error::Other(format!(
        "{} is not an image archive or OCI layout: it is {what_it_is}; {LOAD_TAKES}",
        path.display()
    ))
}

/// Opens `path` after checking that it starts like a tar archive: a first
/// 512-byte header whose checksum is right.
fn open_archive(path: &Path) -> Result<impl Read, Error> {
    let mut file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut block = Vec::with_capacity(512);
    (&mut file)
        .take(512)
        .read_to_end(&mut block)
        .map_err(|e| Error::io("read", path, e))?;
    if block.starts_with(&[0x1f, 0x8b]) {
        return Err(not_an_image(
            path,
            "gzip-compressed (decompress it first, e.g. with gunzip)",
        ));
    }
    if !is_tar_header(&block) {
        return Err(not_an_image(path, "not a tar file"));
    }
    Ok(Cursor::new(block).chain(file))
}

/// A tar header block: 512 bytes whose checksum field (octal, at 148)
/// equals the sum of all its bytes, counting that field as spaces.
fn is_tar_header(block: &[u8]) -> bool {
    let Ok(header) = <&[u8; 512]>::try_from(block) else {
        return false;
    };
    let sum: u32 = header
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum();
    let field = String::from_utf8_lossy(&header[148..156]);
    let digits = field.trim_matches(|c: char| c == '\0' || c == ' ');
    u32::from_str_radix(digits, 8).is_ok_and(|stored| stored == sum)
}

/// A temporary directory beside the store, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(store: &Store) -> Result<Scratch, Error> {
        let parent = store.dir().parent().unwrap_or(store.dir());
        static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = parent.join(format!(".load-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).map_err(|e| Error::io("create", &dir, e))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Write the archive's regular files below `dest`. Only relative names that
/// stay inside are accepted (no absolute paths, no `..` above the top), so
/// nothing lands outside it. Symbolic links (docker save uses them for
/// repeated layers, `../<id>/layer.tar`) become hard links: a copy each
/// would let a small archive fill the disk.
fn extract_plain_files(tar: impl Read, archive: &Path, dest: &Path) -> Result<(), Error> {
    let mut tar = tar::Archive::new(tar);
    let mut links: Vec<(PathBuf, PathBuf)> = Vec::new();
    let entries = tar.entries().map_err(|e| damaged(archive, 0, e))?;
    for (number, entry) in entries.enumerate() {
        let mut entry = entry.map_err(|e| damaged(archive, number, e))?;
        let name = entry
            .path()
            .map_err(|e| Error::io("read a name in", archive, e))?
            .into_owned();
        let Some(relative) = plain_relative(&name) else {
            if is_top(&name) && entry.header().entry_type().is_dir() {
                continue; // `./`, as `tar -C layout -cf x.tar .` writes it
            }
            return Err(Error::Other(format!(
                "{}: unsafe entry name {name:?}",
                archive.display()
            )));
        };
        let target = dest.join(&relative);
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                std::fs::create_dir_all(&target).map_err(|e| Error::io("create", &target, e))?;
            }
            tar::EntryType::Regular => {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| Error::io("create", parent, e))?;
                }
                let mut out = File::create(&target).map_err(|e| Error::io("create", &target, e))?;
                io::copy(&mut entry, &mut out).map_err(|e| Error::io("write", &target, e))?;
            }
            tar::EntryType::Symlink => {
                if let Some(link) = entry.link_name().ok().flatten() {
                    let resolved = relative.parent().unwrap_or(Path::new("")).join(link);
                    if let Some(source) = plain_relative(&resolved) {
                        links.push((relative, source));
                    }
                }
            }
            _ => {} // nothing else belongs in an image archive
        }
    }
    for (link, source) in links {
        if link == source {
            continue; // a link to itself: nothing to make
        }
        let (from, to) = (dest.join(&source), dest.join(&link));
        let _ = std::fs::remove_file(&to); // a later entry replaces an earlier one
        std::fs::hard_link(&from, &to).map_err(|e| Error::io("link", &from, e))?;
    }
    Ok(())
}

/// A tar entry that cannot be read. The `tar` crate's message may quote
/// the bytes it choked on, so only a real I/O error is passed on as it is.
fn damaged(archive: &Path, number: usize, e: io::Error) -> Error {
    if e.raw_os_error().is_some() {
        return Error::io("read", archive, e);
    }
    Error::Other(format!(
        "{} is damaged: entry {} of the tar cannot be read (truncated or not a tar); {LOAD_TAKES}",
        archive.display(),
        number + 1
    ))
}

/// `a/./b` -> `a/b`, `a/../b` -> `b` (the archive's files are plain files
/// and directories, so `..` undoes the name before it); `None` for
/// absolute paths, for a `..` above the top, and for the top itself.
fn plain_relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir if out.pop() => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// `.` or `./`: the archive's top directory itself.
fn is_top(path: &Path) -> bool {
    path.components().all(|c| c == Component::CurDir)
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

// ANCHOR: docker_archive
/// A docker-archive, unpacked in `dir`: make an OCI manifest for each image.
fn load_docker_archive(store: &Store, dir: &Path, tag: Option<&str>) -> Result<Vec<String>, Error> {
    let list = read_small_file("the archive's manifest.json", &dir.join("manifest.json"))?;
    let entries: Vec<ArchiveEntry> = serde_json::from_slice(&list)
        .map_err(|e| Error::Other(format!("manifest.json of the archive is not valid: {e}")))?;
    let _lock = store.lock()?;
    let mut names = Vec::new();
    // Each layer file is hashed once, however often the list names it: a
    // small manifest.json must not make us read a big layer over and over.
    let mut stored: BTreeMap<PathBuf, Descriptor> = BTreeMap::new();
    for entry in entries {
        let config_bytes = read_small_file("the image config", &archive_path(dir, &entry.config)?)?;
        let image_config: ImageConfig = serde_json::from_slice(&config_bytes)
            .map_err(|e| Error::Other(format!("{}: not an image config: {e}", entry.config)))?;
        if image_config.rootfs.diff_ids.len() != entry.layers.len() {
            return Err(Error::Other(format!(
                "the archive lists {} layers but its config {} diff IDs",
                entry.layers.len(),
                image_config.rootfs.diff_ids.len()
            )));
        }
        let config = Descriptor {
            media_type: spec::MEDIA_TYPE_OCI_CONFIG.into(),
            digest: store.put_bytes(&config_bytes)?,
            size: config_bytes.len() as u64,
            annotations: None,
            platform: None,
        };
        let mut layers = Vec::new();
        for layer in &entry.layers {
            let path = archive_path(dir, layer)?;
            let descriptor = match stored.get(&path) {
                Some(descriptor) => descriptor.clone(),
                None => put_file(store, &path)?,
            };
            stored.insert(path, descriptor.clone());
            layers.push(descriptor);
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(spec::MEDIA_TYPE_OCI_MANIFEST.into()),
            config,
            layers,
            annotations: None,
        };
        let descriptor = put_manifest(store, &manifest)?;
        let tags = match (tag, entry.repo_tags) {
            (Some(tag), _) => vec![tag.to_string()],
            (None, Some(tags)) if !tags.is_empty() => tags,
            _ => {
                return Err(Error::Other(
                    "the archive names no image: pass --tag NAME".into(),
                ));
            }
        };
        for name in tags {
            names.push(tag_as(store, &name, &descriptor)?);
        }
    }
    Ok(names)
}
// ANCHOR_END: docker_archive

/// A path named inside the archive, kept inside the scratch directory.
fn archive_path(dir: &Path, name: &str) -> Result<PathBuf, Error> {
    plain_relative(Path::new(name))
        .map(|relative| dir.join(relative))
        .ok_or_else(|| Error::Other(format!("the archive names an unsafe path: {name:?}")))
}

/// Store a layer file as it is (gzipped or plain tar), as a blob. (The
/// engine's build stores the layers it makes with it too.)
pub fn put_file(store: &Store, path: &Path) -> Result<Descriptor, Error> {
    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut hashing = HashingReader::new(file);
    let mut magic = [0u8; 4];
    let whole = hashing.read_exact(&mut magic).is_ok();
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(|e| Error::io("read", path, e))?;
    let (digest, size) = hashing.finish();
    let media_type = match magic {
        [0x1f, 0x8b, ..] if whole => spec::MEDIA_TYPE_OCI_LAYER_GZIP,
        [0x28, 0xb5, 0x2f, 0xfd] if whole => spec::MEDIA_TYPE_OCI_LAYER_ZSTD,
        _ => spec::MEDIA_TYPE_OCI_LAYER,
    };
    let descriptor = Descriptor {
        media_type: media_type.into(),
        digest,
        size,
        annotations: None,
        platform: None,
    };
    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    store.put_blob(file, &descriptor)?;
    Ok(descriptor)
}

pub fn put_manifest(store: &Store, manifest: &Manifest) -> Result<Descriptor, Error> {
    let bytes = serde_json::to_vec(manifest)
        .map_err(|e| Error::Other(format!("encode a manifest: {e}")))?;
    Ok(Descriptor {
        media_type: spec::MEDIA_TYPE_OCI_MANIFEST.into(),
        digest: store.put_bytes(&bytes)?,
        size: bytes.len() as u64,
        annotations: None,
        platform: None,
    })
}

/// Tag under the normalized name (`busybox:latest` -> docker.io/library/...).
fn tag_as(store: &Store, name: &str, descriptor: &Descriptor) -> Result<String, Error> {
    let reference: Reference = name.parse()?;
    store.tag(&reference.to_string(), descriptor.clone())?;
    Ok(reference.to_string())
}

/// An OCI layout directory: copy each tagged manifest with everything it
/// names (verifying every blob) and tag it here.
fn load_oci_layout(store: &Store, dir: &Path, tag: Option<&str>) -> Result<Vec<String>, Error> {
    let index_bytes = read_small_file("the layout's index.json", &dir.join("index.json"))?;
    let index: Index = serde_json::from_slice(&index_bytes)
        .map_err(|e| Error::Other(format!("{}: index.json is not valid: {e}", dir.display())))?;
    if tag.is_some() && index.manifests.len() > 1 {
        return Err(Error::Other(format!(
            "{} holds {} images; --tag names only one: load a layout with a single image",
            dir.display(),
            index.manifests.len()
        )));
    }
    let _lock = store.lock()?;
    let mut names = Vec::new();
    // An image named twice (two tags on one manifest) is copied once.
    let mut copied: BTreeMap<Digest, Descriptor> = BTreeMap::new();
    for entry in &index.manifests {
        let descriptor = match copied.get(&entry.digest) {
            Some(descriptor) => descriptor.clone(),
            None => copy_image(store, dir, entry)?,
        };
        copied.insert(entry.digest.clone(), descriptor.clone());
        // containerd and Docker put the full name in an annotation of their
        // own, and maybe only the tag in the OCI one.
        let ref_name = entry.annotations.as_ref().and_then(|a| {
            a.get(CONTAINERD_IMAGE_NAME)
                .or_else(|| a.get(spec::ANNOTATION_REF_NAME))
        });
        let name = match (tag, ref_name) {
            (Some(tag), _) => tag.to_string(),
            (None, Some(name)) if name.parse::<Reference>().is_ok() && name.contains('/') => {
                name.clone()
            }
            (None, Some(name)) => {
                return Err(Error::Other(format!(
                    "the layout's image is tagged only {name:?}: pass --tag NAME to name it"
                )));
            }
            (None, None) => {
                return Err(Error::Other(
                    "the layout's image has no name: pass --tag NAME".into(),
                ));
            }
        };
        names.push(tag_as(store, &name, &descriptor)?);
    }
    Ok(names)
}

/// Copy the image `entry` of the layout `dir` names (a manifest, or an
/// index to pick this platform's from) into the store, with its config and
/// layers; the descriptor to tag it by.
fn copy_image(store: &Store, dir: &Path, entry: &Descriptor) -> Result<Descriptor, Error> {
    let mut manifest_desc = entry.clone();
    let what = if spec::is_index(&entry.media_type) {
        "index"
    } else {
        "manifest"
    };
    let mut bytes = read_described(dir, what, entry)?;
    if spec::is_index(&entry.media_type) {
        let inner: Index = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Other(format!("an index in the layout is not valid: {e}")))?;
        manifest_desc = inner
            .pick(&spec::host_platform())
            .cloned()
            .ok_or_else(|| Error::Other("the layout has no image for this platform".into()))?;
        bytes = read_described(dir, "manifest", &manifest_desc)?;
    }
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Other(format!("a manifest in the layout is not valid: {e}")))?;
    let config_bytes = read_described(dir, "config", &manifest.config)?;
    let config: ImageConfig = serde_json::from_slice(&config_bytes)
        .map_err(|e| Error::Other(format!("an image config in the layout is not valid: {e}")))?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(Error::Other(format!(
            "an image in the layout has {} layers but its config {} diff IDs",
            manifest.layers.len(),
            config.rootfs.diff_ids.len()
        )));
    }
    // Layers stream from their files, read to their declared size and no
    // further by `put_blob`; the config and manifest are in memory.
    for layer in &manifest.layers {
        let path = dir.join("blobs/sha256").join(layer.digest.hex());
        let file = File::open(&path).map_err(|e| Error::io("open", &path, e))?;
        store.put_blob(file, layer)?;
    }
    store.put_blob(&config_bytes[..], &manifest.config)?;
    store.put_blob(&bytes[..], &manifest_desc)?;
    Ok(Descriptor {
        annotations: None,
        platform: None,
        ..manifest_desc
    })
}

/// The annotation containerd and Docker name an image with in a layout.
const CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";

// ANCHOR: read_described
/// The manifest, config or index `desc` names in the layout `dir`: read to
/// its declared size and no further, and verified. A 3 GiB file posing as
/// a 200-byte config costs 201 bytes of memory, then an error.
fn read_described(dir: &Path, what: &str, desc: &Descriptor) -> Result<Vec<u8>, Error> {
    let path = dir.join("blobs/sha256").join(desc.digest.hex());
    let file = File::open(&path).map_err(|e| Error::io("open", &path, e))?;
    read_document(what, &desc.digest, desc.size, file, &path)
}
// ANCHOR_END: read_described

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_names_pass() {
        assert_eq!(
            plain_relative(Path::new("./a/b.tar")),
            Some(PathBuf::from("a/b.tar"))
        );
        assert_eq!(plain_relative(Path::new("../x")), None);
        assert_eq!(plain_relative(Path::new("a/../../x")), None);
        assert_eq!(plain_relative(Path::new("/etc/passwd")), None);
        assert_eq!(plain_relative(Path::new(".")), None);
        assert_eq!(plain_relative(Path::new("a/..")), None);
        assert_eq!(
            plain_relative(Path::new("2222/../1111/layer.tar")),
            Some(PathBuf::from("1111/layer.tar"))
        );
        assert!(is_top(Path::new("./")) && is_top(Path::new(".")));
        assert!(!is_top(Path::new("./a")) && !is_top(Path::new("/")));
    }

    /// A tar of `entries`: (name, contents), or a symlink when the contents
    /// start with `->`, or a directory when the name ends with `/`.
    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for (name, contents) in entries {
            let mut header = tar::Header::new_ustar();
            header.set_mode(0o644);
            if let Some(target) = contents.strip_prefix(b"->") {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                tar.append_link(&mut header, name, std::str::from_utf8(target).unwrap())
                    .unwrap();
            } else if name.ends_with('/') {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                header.set_path(name).unwrap();
                header.set_cksum();
                tar.append(&header, &[][..]).unwrap();
            } else {
                header.set_size(contents.len() as u64);
                tar.append_data(&mut header, name, *contents).unwrap();
            }
        }
        tar.into_inner().unwrap()
    }

    /// Load `archive` (its bytes) into a new store; the names loaded.
    fn load_bytes(archive: &[u8]) -> Result<Vec<String>, Error> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archive.tar");
        std::fs::write(&path, archive).unwrap();
        let store = Store::open(&dir.path().join("images")).unwrap();
        load(&store, &path, None)
    }

    fn config_of(layers: &[&[u8]]) -> Vec<u8> {
        let diff_ids: Vec<String> = layers.iter().map(|l| Digest::of(l).to_string()).collect();
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap()
    }

    #[test]
    fn docker_save_s_link_to_a_repeated_layer_loads() {
        // docker save before Docker 25: a directory per layer, and a layer
        // met again is a symlink to its first copy.
        let layer = tar_of(&[("hello", b"hi\n")]);
        let config = config_of(&[&layer, &layer]);
        let manifest = br#"[{"Config":"c.json","RepoTags":["old:1"],"Layers":["1111/layer.tar","2222/layer.tar"]}]"#;
        let archive = tar_of(&[
            ("manifest.json", manifest),
            ("c.json", &config),
            ("1111/", b""),
            ("1111/layer.tar", &layer),
            ("2222/", b""),
            ("2222/layer.tar", b"->../1111/layer.tar"),
        ]);
        assert_eq!(load_bytes(&archive).unwrap(), ["docker.io/library/old:1"]);
        // A link that leaves the archive is not followed.
        let archive = tar_of(&[
            ("manifest.json", manifest),
            ("c.json", &config),
            ("1111/layer.tar", &layer),
            ("2222/layer.tar", b"->../../1111/layer.tar"),
        ]);
        assert!(load_bytes(&archive).is_err());
    }

    #[test]
    fn a_layout_tarred_from_inside_loads() {
        // `tar -C layout -cf x.tar .` starts with the entry `./`.
        let config = config_of(&[]);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": spec::MEDIA_TYPE_OCI_MANIFEST,
            "config": {"mediaType": spec::MEDIA_TYPE_OCI_CONFIG,
                       "digest": Digest::of(&config).to_string(), "size": config.len()},
            "layers": [],
        }))
        .unwrap();
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": spec::MEDIA_TYPE_OCI_MANIFEST,
                           "digest": Digest::of(&manifest).to_string(), "size": manifest.len(),
                           "annotations": {"org.opencontainers.image.ref.name": "localhost/dot:1"}}],
        }))
        .unwrap();
        let blob = |bytes: &[u8]| format!("./blobs/sha256/{}", Digest::of(bytes).hex());
        let (config_name, manifest_name) = (blob(&config), blob(&manifest));
        let archive = tar_of(&[
            ("./", b""),
            ("./oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
            ("./index.json", &index),
            (&config_name, &config),
            (&manifest_name, &manifest),
        ]);
        assert_eq!(load_bytes(&archive).unwrap(), ["localhost/dot:1"]);
    }
}
