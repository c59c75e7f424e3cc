//! `pull`: from a reference to a tagged image in the store.
//!
//! 1. Fetch the manifest. If it is an index (one manifest per platform),
//!    pick ours and fetch that manifest, by digest.
//! 2. Fetch every blob the manifest names (the config, then each layer)
//!    that the store doesn't have yet, verifying each digest as it streams.
//! 3. Store the manifest and tag it. The tag is written last, so an image
//!    is never listed before all of its blobs are there.

use std::io::{IsTerminal, Read};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use stage01_chroot::Error;

use crate::bounds::check_document_size;
use crate::reference::Reference;
use crate::registry::{Registry, RegistryOptions};
use crate::spec::{self, Descriptor, ImageConfig, Index, Manifest, Platform};
use crate::store::Store;

/// Pull `reference` for this host's platform into `store`.
pub fn pull(
    store: &Store,
    reference: &Reference,
    options: &RegistryOptions,
) -> Result<Descriptor, Error> {
    pull_platform(store, reference, options, None)
}

// ANCHOR: pull
/// Pull `reference` into `store`; the descriptor of the stored manifest.
/// From an index, the manifest for `platform` (default: the host's) is
/// taken; a single image that was asked for a platform must be that one.
pub fn pull_platform(
    store: &Store,
    reference: &Reference,
    options: &RegistryOptions,
    platform: Option<&Platform>,
) -> Result<Descriptor, Error> {
    let mut registry = Registry::connect(reference, options)?;
    let (mut bytes, mut media_type) = registry.manifest(&reference.reference_for_api(), None)?;
    let host = spec::host_platform();
    if spec::is_index(&media_type) {
        let chosen = pick_platform(&bytes, reference, platform.unwrap_or(&host))?;
        let declared = Some(chosen.size);
        (bytes, media_type) = registry.manifest(&chosen.digest.to_string(), declared)?;
    }
    let manifest = parse_manifest(&bytes, &media_type, reference)?;
    // The config is read into memory later: refuse a huge one before any
    // download. (Every blob is read to its declared size and no further.)
    check_document_size("config", &manifest.config.digest, manifest.config.size)?;

    // Hold the store's lock until the tag is written: a concurrent `rmi`'s
    // garbage collection must not take blobs that nothing refers to *yet*.
    let _lock = store.lock()?;
    let progress = Progress::new();
    for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
        if store.has_blob(&blob.digest) {
            if blob_size(store, blob) == Some(blob.size) {
                progress.already_have(blob);
                continue;
            }
            // Damaged in the store (truncated, say): fetch it again.
            let path = store.blob_path(&blob.digest);
            std::fs::remove_file(&path).map_err(|e| Error::io("remove damaged blob", &path, e))?;
        }
        let (reader, _length) = registry.blob(&blob.digest)?;
        store.put_blob(progress.track(blob, reader), blob)?; // verifies the digest
    }
    check_config(store, &manifest, reference, platform)?;

    let digest = store.put_bytes(&bytes)?;
    let descriptor = Descriptor {
        media_type,
        digest,
        size: bytes.len() as u64,
        annotations: None,
        platform: None,
    };
    store.tag(&reference.to_string(), descriptor.clone())?;
    Ok(descriptor)
}
// ANCHOR_END: pull

fn blob_size(store: &Store, blob: &Descriptor) -> Option<u64> {
    std::fs::metadata(store.blob_path(&blob.digest))
        .ok()
        .map(|m| m.len())
}

/// The manifest for `platform` in an index.
fn pick_platform(
    bytes: &[u8],
    reference: &Reference,
    platform: &Platform,
) -> Result<Descriptor, Error> {
    let index: Index = serde_json::from_slice(bytes).map_err(|e| {
        Error::Other(format!(
            "{reference}: the image index is not valid JSON: {e}"
        ))
    })?;
    index.pick(platform).cloned().ok_or_else(|| {
        let offered: Vec<String> = index
            .manifests
            .iter()
            .filter_map(|m| m.platform.as_ref())
            .map(|p| format!("{}/{}", p.os, p.architecture))
            .collect();
        Error::Other(format!(
            "{reference} has no image for {}/{} (it offers: {})",
            platform.os,
            platform.architecture,
            offered.join(", ")
        ))
    })
}

fn parse_manifest(
    bytes: &[u8],
    media_type: &str,
    reference: &Reference,
) -> Result<Manifest, Error> {
    if !spec::is_manifest(media_type) {
        return Err(Error::Other(format!(
            "{reference}: unsupported manifest type {media_type:?} (we read OCI and Docker schema 2 \
             manifests; Docker schema 1 is long deprecated)"
        )));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| Error::Other(format!("{reference}: the manifest is not valid: {e}")))
}

/// The config must be readable and name one diff ID per layer: we key the
/// layer cache by them. And be for the platform asked for, if one was.
fn check_config(
    store: &Store,
    manifest: &Manifest,
    reference: &Reference,
    platform: Option<&Platform>,
) -> Result<(), Error> {
    let bytes = store.read_blob(&manifest.config.digest)?;
    let config: ImageConfig = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Other(format!("{reference}: the image config is not valid: {e}")))?;
    if let Some(platform) = platform {
        #[derive(serde::Deserialize)]
        struct Variant {
            variant: Option<String>,
        }
        let variant = serde_json::from_slice::<Variant>(&bytes)
            .ok()
            .and_then(|v| v.variant);
        if !platform.matches(&config.os, &config.architecture, variant.as_deref()) {
            return Err(Error::Other(format!(
                "{reference} is an image for {}/{}, not {platform} (it is no multi-platform \
                 index to choose from)",
                config.os, config.architecture
            )));
        }
    }
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(Error::Other(format!(
            "{reference}: the manifest has {} layers but the config lists {} diff IDs",
            manifest.layers.len(),
            config.rootfs.diff_ids.len()
        )));
    }
    Ok(())
}

/// Progress per blob: bars on a terminal, one line per blob otherwise.
struct Progress {
    bars: Option<MultiProgress>,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            bars: std::io::stderr().is_terminal().then(MultiProgress::new),
        }
    }

    fn already_have(&self, blob: &Descriptor) {
        eprintln!("Already have blob {}", short(blob));
    }

    fn track<R: Read>(&self, blob: &Descriptor, reader: R) -> impl Read + use<R> {
        let bar = match &self.bars {
            Some(bars) => {
                let bar = bars.add(ProgressBar::new(blob.size));
                let style = ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                bar.set_style(style);
                bar.set_prefix(format!("Copying blob {}", short(blob)));
                bar
            }
            None => {
                eprintln!("Copying blob {} ({} bytes)", short(blob), blob.size);
                ProgressBar::hidden()
            }
        };
        bar.wrap_read(reader)
    }
}

/// `sha256:abcdef012345` (12 digits, as Docker shows them).
fn short(blob: &Descriptor) -> String {
    format!("sha256:{}", &blob.digest.hex()[..12])
}
