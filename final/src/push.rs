//! `berth push`: an image from the store to a registry, the distribution
//! API's upload half. Pull (stage 04) only reads; push writes, in this
//! order, so a registry never holds a manifest whose blobs are missing:
//!
//! 1. each layer, then the config: `HEAD blobs/<digest>` first, and only a
//!    blob the registry lacks is sent. One the registry holds in another
//!    repository (an image pulled from or pushed to it under another name)
//!    is *mounted* from there (`POST blobs/uploads/?mount=<digest>&from=<repo>`),
//!    so no byte travels;
//! 2. else an upload: `POST blobs/uploads/` opens a session at the
//!    `Location` it answers, then either one `PUT <location>?digest=` with
//!    the whole blob (monolithic), or `PATCH` requests with one chunk each
//!    and a closing `PUT` (chunked, for blobs over the chunk size);
//! 3. the manifest, `PUT manifests/<tag>`, with its own media type (OCI or
//!    Docker), byte for byte as stored, so its digest stays the same.
//!
//! Logins work as in pull: a `401` challenge is answered with a token for
//! the scope the registry names (`repository:NAME:pull,push`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;

use stage01_chroot::Error;
use stage04_images::digest::{Digest, HashingReader};
use stage04_images::layers;
use stage04_images::reference::Reference;
use stage04_images::registry::{Registry, RegistryOptions};
use stage04_images::spec::{self, Descriptor, Index, Manifest};
use stage04_images::store::Store;
use ureq::Body;
use ureq::http::Response;

/// Blobs larger than this go up in chunks of this size (`PATCH` each).
pub const DEFAULT_CHUNK_SIZE: u64 = 32 * 1024 * 1024;
/// Overrides [`DEFAULT_CHUNK_SIZE`] (in bytes): tests use small chunks.
pub const CHUNK_SIZE_VAR: &str = "BERTH_PUSH_CHUNK_SIZE";

/// How one blob got to the registry (what `push` prints for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The registry had it: nothing sent.
    AlreadyThere,
    /// Mounted from another repository of the same registry.
    Mounted(String),
    /// Uploaded in this many requests carrying bytes.
    Uploaded { chunks: usize },
}

/// What a push did: the manifest's descriptor, and each blob's fate.
pub struct Pushed {
    pub manifest: Descriptor,
    pub blobs: Vec<(Digest, Sent)>,
}

/// How layers should be compressed in the registry (`--compression-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    Gzip,
    Zstd,
}

// ANCHOR: push
/// Push the stored image `name` (a full reference) as `destination`, its
/// layers recompressed first if `compression` asks for another format.
pub fn push(
    store: &Store,
    name: &str,
    destination: &Reference,
    options: &RegistryOptions,
    compression: Option<Compression>,
) -> Result<Pushed, Error> {
    let manifest = store
        .resolve(name)?
        .ok_or_else(|| Error::Other(format!("no image {name} in the store (see: berth images)")))?;
    // A concurrent `rmi` must not collect blobs we are reading (or the
    // recompressed ones we add, which nothing names until a later gc).
    let _lock = store.lock()?;
    let manifest = match compression {
        Some(compression) => recompressed(store, &manifest, compression)?,
        None => manifest,
    };
    let mut registry = Registry::connect(destination, options)?;
    let mut pusher = Pusher {
        store,
        registry: &mut registry,
        destination,
        elsewhere: blobs_elsewhere(store, destination)?,
        chunk_size: chunk_size()?,
        blobs: Vec::new(),
    };
    println!("The push refers to repository [{}]", destination.name());
    let tag = destination
        .digest
        .as_ref()
        .map(Digest::to_string)
        .or_else(|| destination.tag.clone())
        .unwrap_or_else(|| "latest".into());
    pusher.push_manifest(&manifest, &tag)?;
    println!("{tag}: digest: {} size: {}", manifest.digest, manifest.size);
    let pushed: Vec<&Digest> = pusher.blobs.iter().map(|(digest, _)| digest).collect();
    remember_pushed(store, &pushed, destination)?;
    Ok(Pushed {
        manifest,
        blobs: pusher.blobs,
    })
}
// ANCHOR_END: push

struct Pusher<'a> {
    store: &'a Store,
    registry: &'a mut Registry,
    destination: &'a Reference,
    /// For each blob digest, a repository of the same registry that holds it.
    elsewhere: BTreeMap<Digest, String>,
    chunk_size: u64,
    blobs: Vec<(Digest, Sent)>,
}

impl Pusher<'_> {
    /// Push a manifest's blobs, then the manifest under `tag`. An index
    /// pushes each manifest it lists first (by digest), then itself.
    fn push_manifest(&mut self, manifest: &Descriptor, tag: &str) -> Result<(), Error> {
        let bytes = self.store.read_blob(&manifest.digest)?;
        if spec::is_index(&manifest.media_type) {
            let index: Index = json(&bytes, "index")?;
            for child in &index.manifests {
                if !self.store.has_blob(&child.digest) {
                    return Err(Error::Other(format!(
                        "the index {} lists {} ({}), which is not in the store (only one \
                         platform was pulled?): push a single-platform image instead",
                        manifest.digest,
                        child.digest,
                        platform_name(child)
                    )));
                }
                self.push_manifest(child, &child.digest.to_string())?;
            }
        } else {
            let parsed: Manifest = json(&bytes, "manifest")?;
            for blob in parsed.layers.iter().chain([&parsed.config]) {
                let sent = self.push_blob(blob)?;
                println!("{}: {}", &blob.digest.hex()[..12], describe(&sent));
                self.blobs.push((blob.digest.clone(), sent));
            }
        }
        self.put_manifest(manifest, &bytes, tag)
    }

    // ANCHOR: push_blob
    /// Make sure the registry holds `blob`: check, mount, or upload.
    fn push_blob(&mut self, blob: &Descriptor) -> Result<Sent, Error> {
        if self.registry_has(&blob.digest)? {
            return Ok(Sent::AlreadyThere);
        }
        let mut location = None;
        if let Some(from) = self.elsewhere.get(&blob.digest).cloned() {
            // 201: mounted. 202: the registry could not (it lacks the blob
            // there after all) and opened an ordinary upload instead.
            let url = self
                .registry
                .url(&format!("blobs/uploads/?mount={}&from={from}", blob.digest));
            let response = self.send("POST", &url, None, Payload::Empty)?;
            match response.status().as_u16() {
                201 => return Ok(Sent::Mounted(from)),
                202 => location = Some(self.location(&response)?),
                _ => return Err(self.refused(response, "mount a blob")),
            }
        }
        let location = match location {
            Some(location) => location,
            None => self.start_upload()?,
        };
        self.upload(blob, location)
    }
    // ANCHOR_END: push_blob

    fn registry_has(&mut self, digest: &Digest) -> Result<bool, Error> {
        let url = self.registry.url(&format!("blobs/{digest}"));
        let response = self.send("HEAD", &url, None, Payload::Empty)?;
        match response.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.refused(response, "check for a blob")),
        }
    }

    /// Open an upload session; its URL.
    fn start_upload(&mut self) -> Result<String, Error> {
        let url = self.registry.url("blobs/uploads/");
        let response = self.send("POST", &url, None, Payload::Empty)?;
        if response.status() != 202 {
            return Err(self.refused(response, "start an upload"));
        }
        self.location(&response)
    }

    // ANCHOR: upload
    /// Send the blob's bytes to an open session, whole or in chunks, and
    /// close it with the digest (the registry checks the bytes against it).
    fn upload(&mut self, blob: &Descriptor, mut location: String) -> Result<Sent, Error> {
        let path = self.store.blob_path(&blob.digest);
        let close = |location: &str| {
            let separator = if location.contains('?') { '&' } else { '?' };
            format!("{location}{separator}digest={}", blob.digest)
        };
        if blob.size <= self.chunk_size {
            let url = close(&location);
            let response = self.send("PUT", &url, None, Payload::File(&path, 0, blob.size))?;
            self.expect(response, 201, "upload a blob")?;
            return Ok(Sent::Uploaded { chunks: 1 });
        }
        let mut chunks = 0;
        let mut start = 0;
        while start < blob.size {
            let length = self.chunk_size.min(blob.size - start);
            // Content-Range is inclusive: the first 10 bytes are `0-9`.
            let range = format!("{start}-{}", start + length - 1);
            let response = self.send(
                "PATCH",
                &location,
                Some(&range),
                Payload::File(&path, start, length),
            )?;
            if response.status() != 202 {
                return Err(self.refused(response, "upload a chunk"));
            }
            location = self.location(&response)?;
            start += length;
            chunks += 1;
        }
        let response = self.send("PUT", &close(&location), None, Payload::Empty)?;
        self.expect(response, 201, "finish an upload")?;
        Ok(Sent::Uploaded { chunks })
    }
    // ANCHOR_END: upload

    fn put_manifest(
        &mut self,
        manifest: &Descriptor,
        bytes: &[u8],
        tag: &str,
    ) -> Result<(), Error> {
        let url = self.registry.url(&format!("manifests/{tag}"));
        let media_type = manifest.media_type.clone();
        let response = self.send("PUT", &url, None, Payload::Manifest(bytes, &media_type))?;
        self.expect(response, 201, "store the manifest")
    }

    /// One request, through the registry's auth. `range` is a PATCH's
    /// Content-Range.
    fn send(
        &mut self,
        method: &str,
        url: &str,
        range: Option<&str>,
        payload: Payload,
    ) -> Result<Response<Body>, Error> {
        self.registry.call_authorized(url, |agent, authorization| {
            let mut request = ureq::http::Request::builder().method(method).uri(url);
            if let Some(authorization) = authorization {
                request = request.header("Authorization", authorization);
            }
            if let Some(range) = range {
                request = request.header("Content-Range", range);
            }
            let request = match &payload {
                // HEAD carries no body at all, not even an empty one.
                Payload::Empty if method == "HEAD" => {
                    return agent.run(request.body(()).map_err(ureq::Error::Http)?);
                }
                Payload::Empty => request.body(Vec::new()),
                Payload::Manifest(bytes, media_type) => request
                    .header("Content-Type", *media_type)
                    .body(bytes.to_vec()),
                Payload::File(path, start, length) => {
                    let bytes = read_range(path, *start, *length).map_err(ureq::Error::Io)?;
                    request
                        .header("Content-Type", "application/octet-stream")
                        .body(bytes)
                }
            };
            agent.run(request.map_err(ureq::Error::Http)?)
        })
    }

    fn location(&self, response: &Response<Body>) -> Result<String, Error> {
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Error::Other(format!(
                    "{} opened an upload but sent no Location for it",
                    self.registry.name()
                ))
            })?;
        let url = self.registry.resolve_location(location);
        // Uploads may go to another host (a storage service), but never
        // over plain HTTP there: the blob would travel unprotected.
        if !self.registry.same_origin(&url) && !url.starts_with("https://") {
            return Err(Error::Other(format!(
                "{} sent an upload location on another host over plain HTTP ({url}); \
                 refusing to send the image there",
                self.registry.name()
            )));
        }
        Ok(url)
    }

    fn expect(&self, response: Response<Body>, status: u16, what: &str) -> Result<(), Error> {
        if response.status() == status {
            Ok(())
        } else {
            Err(self.refused(response, what))
        }
    }

    /// The registry's answer as an error: its status and the message in its
    /// JSON errors, with a hint for a missing login.
    fn refused(&self, mut response: Response<Body>, what: &str) -> Error {
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_string()
            .unwrap_or_default();
        let hint = match status {
            401 | 403 => {
                "; log in first (berth login, or push --creds USER:PASSWORD), and check that \
                 the login may push to this repository"
            }
            _ => "",
        };
        Error::Other(format!(
            "{} answered {status} when we tried to {what} for {}: {}{hint}",
            self.registry.name(),
            self.destination.name(),
            body.trim()
        ))
    }
}

// ANCHOR: recompress
/// The manifest with every layer in `compression` (a layer already so is
/// kept): each other layer is decompressed and compressed again into the
/// store, and a new manifest written beside the old. The config is
/// unchanged: its diff IDs name the *uncompressed* tars, the same either
/// way. zstd layers exist only in OCI manifests, so a Docker manifest
/// becomes an OCI one.
fn recompressed(
    store: &Store,
    manifest: &Descriptor,
    compression: Compression,
) -> Result<Descriptor, Error> {
    if !spec::is_manifest(&manifest.media_type) {
        return Err(Error::Other(
            "--compression-format works on single-platform images, not on an index".into(),
        ));
    }
    let mut parsed: Manifest = json(&store.read_blob(&manifest.digest)?, "manifest")?;
    let docker = manifest.media_type == spec::MEDIA_TYPE_DOCKER_MANIFEST;
    let to_oci = docker && compression == Compression::Zstd;
    let wanted = match compression {
        Compression::Zstd => spec::MEDIA_TYPE_OCI_LAYER_ZSTD,
        Compression::Gzip if docker => spec::MEDIA_TYPE_DOCKER_LAYER_GZIP,
        Compression::Gzip => spec::MEDIA_TYPE_OCI_LAYER_GZIP,
    };
    let mut changed = to_oci;
    for layer in &mut parsed.layers {
        if compression_of(store, layer)? == Some(compression) {
            continue;
        }
        let (digest, size) = recompress(store, &layer.digest, compression)?;
        eprintln!(
            "Recompressed layer {} as {}: {digest}",
            &layer.digest.hex()[..12],
            format!("{compression:?}").to_lowercase()
        );
        *layer = Descriptor {
            media_type: wanted.into(),
            digest,
            size,
            annotations: None,
            platform: None,
        };
        changed = true;
    }
    if !changed {
        return Ok(manifest.clone());
    }
    let media_type = if to_oci {
        parsed.config.media_type = spec::MEDIA_TYPE_OCI_CONFIG.into();
        spec::MEDIA_TYPE_OCI_MANIFEST
    } else {
        manifest.media_type.as_str()
    };
    parsed.media_type = Some(media_type.into());
    let bytes = serde_json::to_vec(&parsed)
        .map_err(|e| Error::Other(format!("encode the new manifest: {e}")))?;
    Ok(Descriptor {
        media_type: media_type.into(),
        digest: store.put_bytes(&bytes)?,
        size: bytes.len() as u64,
        annotations: None,
        platform: None,
    })
}
// ANCHOR_END: recompress

/// A layer's compression, from its first bytes (media types lie sometimes).
fn compression_of(store: &Store, layer: &Descriptor) -> Result<Option<Compression>, Error> {
    let path = store.blob_path(&layer.digest);
    let mut magic = [0u8; 4];
    let mut file = File::open(&path).map_err(|e| Error::io("open layer", &path, e))?;
    let n = file
        .read(&mut magic)
        .map_err(|e| Error::io("read layer", &path, e))?;
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => Some(Compression::Gzip),
        [0x28, 0xb5, 0x2f, 0xfd] => Some(Compression::Zstd),
        _ => None,
    })
}

/// Compress the layer `blob` afresh into the store; the new blob's digest
/// and size. Written to a temp file beside the store first, since a blob's
/// digest must be known before the store takes it.
fn recompress(
    store: &Store,
    blob: &Digest,
    compression: Compression,
) -> Result<(Digest, u64), Error> {
    let source = store.blob_path(blob);
    let temp = store
        .dir()
        .with_file_name(format!(".push-{}-{}", std::process::id(), blob.hex()));
    let result = compress_into(&source, &temp, compression).and_then(|()| {
        let file = File::open(&temp).map_err(|e| Error::io("open", &temp, e))?;
        let mut hashing = HashingReader::new(file);
        std::io::copy(&mut hashing, &mut std::io::sink())
            .map_err(|e| Error::io("read", &temp, e))?;
        let (digest, size) = hashing.finish();
        let descriptor = Descriptor {
            media_type: String::new(),
            digest: digest.clone(),
            size,
            annotations: None,
            platform: None,
        };
        let file = File::open(&temp).map_err(|e| Error::io("open", &temp, e))?;
        store.put_blob(file, &descriptor)?; // verifies what we just hashed
        Ok((digest, size))
    });
    let _ = std::fs::remove_file(&temp);
    result
}

fn compress_into(
    source: &std::path::Path,
    dest: &std::path::Path,
    compression: Compression,
) -> Result<(), Error> {
    let file = File::open(source).map_err(|e| Error::io("open layer", source, e))?;
    let mut plain = layers::decompress(file, source)?;
    let out = File::create(dest).map_err(|e| Error::io("create", dest, e))?;
    let written = match compression {
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::default());
            std::io::copy(&mut plain, &mut encoder).and_then(|_| encoder.finish().map(drop))
        }
        Compression::Zstd => zstd::stream::copy_encode(&mut plain, out, 3),
    };
    written.map_err(|e| Error::io("recompress layer into", dest, e))
}

/// What a request carries.
enum Payload<'a> {
    Empty,
    /// A manifest and its media type.
    Manifest(&'a [u8], &'a str),
    /// `length` bytes of a blob file from `start`.
    File(&'a std::path::Path, u64, u64),
}

/// Read `length` bytes at `start`: one chunk, or a whole (small) blob.
fn read_range(path: &std::path::Path, start: u64, length: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Seek, SeekFrom};
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
    file.take(length).read_to_end(&mut bytes)?;
    if bytes.len() as u64 != length {
        return Err(std::io::Error::other(format!(
            "{} is shorter than its descriptor says",
            path.display()
        )));
    }
    Ok(bytes)
}

/// Where berth remembers which repositories it pushed each blob to (as
/// Docker's "distribution metadata" does): beside the store, not in it, so
/// the store stays a plain OCI layout. `{"sha256:...": ["host/repo", ...]}`.
const PUSHED_FILE: &str = "pushed-blobs.json";
/// Repositories remembered per blob: the latest few are enough to mount from.
const PUSHED_PER_BLOB: usize = 8;

fn pushed_path(store: &Store) -> std::path::PathBuf {
    store.dir().with_file_name(PUSHED_FILE)
}

/// What [`PUSHED_FILE`] says; an unreadable file is as good as none (it is
/// only a hint: a mount the registry refuses becomes an upload).
fn pushed_before(store: &Store) -> BTreeMap<Digest, Vec<String>> {
    std::fs::read(pushed_path(store))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Note that `blobs` are now in `destination`'s repository. Called with
/// the store's lock held, so two pushes don't lose each other's notes.
fn remember_pushed(store: &Store, blobs: &[&Digest], destination: &Reference) -> Result<(), Error> {
    let mut known = pushed_before(store);
    let repository = destination.name();
    for digest in blobs {
        let repositories = known.entry((*digest).clone()).or_default();
        repositories.retain(|r| *r != repository);
        repositories.push(repository.clone());
        let extra = repositories.len().saturating_sub(PUSHED_PER_BLOB);
        repositories.drain(..extra);
    }
    // Blobs the store no longer has are not worth remembering.
    known.retain(|digest, _| store.has_blob(digest));
    let bytes = serde_json::to_vec_pretty(&known)
        .map_err(|e| Error::Other(format!("encode {PUSHED_FILE}: {e}")))?;
    stage04_images::store::write_atomic(&pushed_path(store), &bytes)
}

/// For each blob, a repository of the destination's registry (another
/// one) that holds it: one berth pushed it to, or one an image in the
/// store was pulled from or is named after. Where a mount can come from.
fn blobs_elsewhere(
    store: &Store,
    destination: &Reference,
) -> Result<BTreeMap<Digest, String>, Error> {
    let mut found = BTreeMap::new();
    let prefix = format!("{}/", destination.registry);
    for (digest, repositories) in pushed_before(store) {
        let other = repositories.iter().rev().find_map(|name| {
            let repository = name.strip_prefix(&prefix)?;
            (repository != destination.repository).then(|| repository.to_string())
        });
        if let Some(repository) = other {
            found.insert(digest, repository);
        }
    }
    for (name, descriptor) in store.list()? {
        let Ok(reference) = name.parse::<Reference>() else {
            continue;
        };
        if reference.registry != destination.registry
            || reference.repository == destination.repository
            || !spec::is_manifest(&descriptor.media_type)
        {
            continue;
        }
        let Ok(bytes) = store.read_blob(&descriptor.digest) else {
            continue;
        };
        let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes) else {
            continue;
        };
        for blob in manifest.layers.iter().chain([&manifest.config]) {
            found
                .entry(blob.digest.clone())
                .or_insert_with(|| reference.repository.clone());
        }
    }
    Ok(found)
}

fn chunk_size() -> Result<u64, Error> {
    match std::env::var(CHUNK_SIZE_VAR) {
        Ok(text) => text.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            Error::Other(format!(
                "{CHUNK_SIZE_VAR}={text:?} is not a positive number of bytes"
            ))
        }),
        Err(_) => Ok(DEFAULT_CHUNK_SIZE),
    }
}

/// Docker's words for each blob.
fn describe(sent: &Sent) -> String {
    match sent {
        Sent::AlreadyThere => "Layer already exists".into(),
        Sent::Mounted(from) => format!("Mounted from {from}"),
        Sent::Uploaded { chunks: 1 } => "Pushed".into(),
        Sent::Uploaded { chunks } => format!("Pushed ({chunks} chunks)"),
    }
}

fn platform_name(descriptor: &Descriptor) -> String {
    descriptor
        .platform
        .as_ref()
        .map_or("no platform".into(), |p| {
            format!("{}/{}", p.os, p.architecture)
        })
}

fn json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, Error> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::Other(format!("the stored {what} is not valid JSON: {e}")))
}
