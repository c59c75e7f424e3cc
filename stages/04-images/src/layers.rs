//! The unpacked-layer cache: each layer is extracted once, into
//! `<cache>/<diff ID hex>`, and shared by every image that contains it.
//!
//! A layer has two digests. The registry and the manifest name the
//! *compressed* blob; the image config's `rootfs.diff_ids` name the
//! *uncompressed* tar. The cache is keyed by the diff ID, because the same
//! tar compressed twice gives two blobs but one set of files.

use std::fs::{self, DirBuilder};
use std::io::{self, Cursor, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::read::MultiGzDecoder;
use stage01_chroot::Error;
use stage03_cgroups::limits::format_size;

use crate::bounds::{self, LayerBudget, MAX_LAYER_SIZE_VAR};
use crate::digest::{Digest, HashingReader};
use crate::spec::Descriptor;
use crate::unpack::unpack_layer;

/// Where the layer with this diff ID is (or will be) unpacked.
pub fn layer_dir(cache: &Path, diff_id: &Digest) -> PathBuf {
    cache.join(diff_id.hex())
}

/// Returns the unpacked layer directory for `diff_id`, unpacking
/// `compressed` (a layer blob of `media_type`) into the cache first if no
/// earlier call did. The uncompressed tar must hash to `diff_id`, and may
/// unpack to at most [`bounds::max_layer_size`] bytes.
pub fn ensure_unpacked(
    cache: &Path,
    diff_id: &Digest,
    media_type: &str,
    compressed: impl Read,
) -> Result<PathBuf, Error> {
    ensure(cache, diff_id, media_type, compressed, None)
}

/// [`ensure_unpacked`] for the layer blob `blob` of a manifest: errors name
/// the blob's digest too, as `pull` and registries show it.
pub fn ensure_unpacked_blob(
    cache: &Path,
    blob: &Descriptor,
    diff_id: &Digest,
    compressed: impl Read,
) -> Result<PathBuf, Error> {
    ensure(
        cache,
        diff_id,
        &blob.media_type,
        compressed,
        Some(&blob.digest),
    )
}

fn ensure(
    cache: &Path,
    diff_id: &Digest,
    media_type: &str,
    compressed: impl Read,
    blob: Option<&Digest>,
) -> Result<PathBuf, Error> {
    // Only finished layers ever get this name (see `commit`), so an
    // existing directory is a complete one.
    let dir = layer_dir(cache, diff_id);
    if dir.is_dir() {
        return Ok(dir);
    }
    let limit = bounds::max_layer_size()?;
    unpack_into_cache(cache, diff_id, media_type, compressed, blob, limit)
}

fn unpack_into_cache(
    cache: &Path,
    diff_id: &Digest,
    media_type: &str,
    compressed: impl Read,
    blob: Option<&Digest>,
    limit: u64,
) -> Result<PathBuf, Error> {
    let dir = layer_dir(cache, diff_id);
    check_media_type(media_type)?;
    let budget = LayerBudget::new(limit);
    create_cache(cache)?;
    let temp = TempLayer::create(cache, diff_id)?;
    let unpacked = unpack_verified(compressed, diff_id, &temp.path, &budget);
    if budget.exceeded() {
        // Whatever error the unpack stopped with, this is the reason.
        return Err(too_large(diff_id, blob, budget.limit()));
    }
    unpacked?;
    temp.commit(&dir)
}

// ANCHOR: too_large
/// The error for a layer over the limit: which layer, the limit, and how
/// to raise it if the image is trusted. (`TempLayer` has already removed
/// what was unpacked when the caller sees this.)
fn too_large(diff_id: &Digest, blob: Option<&Digest>, limit: u64) -> Error {
    let layer = match blob {
        Some(blob) => format!("layer {blob} (diff ID {diff_id})"),
        None => format!("layer with diff ID {diff_id}"),
    };
    Error::Other(format!(
        "{layer} unpacks to more than {}, the limit for one layer; stopped, and \
         nothing of it was kept (a decompression bomb looks like this). If you trust the \
         image and it really is that large, raise the limit with the environment \
         variable {MAX_LAYER_SIZE_VAR}, e.g. {MAX_LAYER_SIZE_VAR}=100g",
        format_size(limit)
    ))
}
// ANCHOR_END: too_large

/// The layer media types we can read: tar, plain or gzip-compressed, in
/// their OCI and Docker spellings, and (with the `zstd` feature, as the
/// engine has it) zstd-compressed.
fn check_media_type(media_type: &str) -> Result<(), Error> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Ok(()),
        zstd if zstd.ends_with("+zstd") || zstd.ends_with(".zstd") => {
            if cfg!(feature = "zstd") {
                Ok(())
            } else {
                Err(zstd_error())
            }
        }
        other => Err(Error::Other(format!(
            "layer media type {other:?} is not a tar layer berth can unpack \
             (expected an OCI or Docker tar, plain, gzip or zstd)"
        ))),
    }
}

#[cfg_attr(feature = "zstd", allow(dead_code))]
fn zstd_error() -> Error {
    Error::Other(
        "zstd-compressed layers need the stage's `zstd` feature (cargo build --features zstd; \
         the engine has it); or pull a gzip variant of the image"
            .into(),
    )
}

/// The first bytes of every zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

#[cfg(feature = "zstd")]
fn zstd_reader<'a>(stream: impl Read + 'a, dest: &Path) -> Result<Box<dyn Read + 'a>, Error> {
    zstd::stream::read::Decoder::new(stream)
        .map(|decoder| Box::new(decoder) as Box<dyn Read>)
        .map_err(|e| Error::io("start zstd decompression of", dest, e))
}

#[cfg(not(feature = "zstd"))]
fn zstd_reader<'a>(_stream: impl Read + 'a, _dest: &Path) -> Result<Box<dyn Read + 'a>, Error> {
    Err(zstd_error())
}

/// The cache holds images' setuid-root programs: host users must not be
/// able to reach (and run) them, so a cache we create is private (0700).
fn create_cache(cache: &Path) -> Result<(), Error> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(cache)
        .map_err(|e| Error::io("create layer cache", cache, e))
}

// ANCHOR: unpack_verified
/// Decompresses, unpacks into `dest` and checks the diff ID, all in one
/// pass over the stream.
fn unpack_verified(
    compressed: impl Read,
    diff_id: &Digest,
    dest: &Path,
    budget: &LayerBudget,
) -> Result<(), Error> {
    // ANCHOR: exercise_unpack_layer
    // The diff ID is the sha256 of the *uncompressed* tar: hash after
    // decompressing. The budget counts the same bytes and stops a bomb.
    let mut tar = HashingReader::new(budget.reader(decompress(compressed, dest)?));
    unpack_layer(&mut tar, dest, budget)?;
    // The tar reader stops at the end-of-archive marker; the padding after
    // it is part of the blob, and of the hash.
    io::copy(&mut tar, &mut io::sink()).map_err(|e| Error::io("read layer", dest, e))?;
    let (actual, _size) = tar.finish();
    if actual != *diff_id {
        return Err(Error::Other(format!(
            "layer diff ID mismatch: expected {diff_id}, got {actual}; the layer \
             blob does not match the image config (corrupt or tampered): pull again"
        )));
    }
    Ok(())
    // ANCHOR_END: exercise_unpack_layer
}
// ANCHOR_END: unpack_verified

/// Chooses the decompressor from the stream's first bytes, not only the
/// media type: some registries label gzip layers as plain tar. A wrong
/// guess cannot slip through, since the diff ID is checked afterwards.
/// (The engine's `save` reads layers back to plain tars with it too.)
pub fn decompress<'a>(mut input: impl Read + 'a, dest: &Path) -> Result<Box<dyn Read + 'a>, Error> {
    let mut magic = [0u8; 4];
    let n = read_up_to(&mut input, &mut magic).map_err(|e| Error::io("read layer", dest, e))?;
    let head = &magic[..n];
    let stream = Cursor::new(head.to_vec()).chain(input);
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(MultiGzDecoder::new(stream)))
    } else if head == ZSTD_MAGIC {
        zstd_reader(stream, dest)
    } else {
        Ok(Box::new(stream))
    }
}

/// Reads until `buf` is full or the stream ends (a short read is not the end).
fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A layer directory being unpacked under a temporary name. It is renamed
/// to its final name only when complete and verified, and removed on drop
/// otherwise, so an error (or a panic) at any point leaves nothing behind.
struct TempLayer {
    path: PathBuf,
    committed: bool,
}

impl TempLayer {
    fn create(cache: &Path, diff_id: &Digest) -> Result<TempLayer, Error> {
        // pid: two processes never share a temp dir; the counter: nor do
        // two threads of one process.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            ".tmp-{}-{}-{}",
            diff_id.hex(),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = cache.join(name);
        // Left over by a crashed process that had our pid: nobody owns it.
        let _ = fs::remove_dir_all(&path);
        DirBuilder::new()
            .mode(0o755)
            .create(&path)
            .map_err(|e| Error::io("create temporary layer directory", &path, e))?;
        Ok(TempLayer {
            path,
            committed: false,
        })
    }

    /// Publishes the layer with one atomic rename. If another process
    /// published the same layer first, theirs is as good as ours: use it.
    fn commit(mut self, dir: &Path) -> Result<PathBuf, Error> {
        match fs::rename(&self.path, dir) {
            Ok(()) => {
                self.committed = true;
                Ok(dir.to_path_buf())
            }
            Err(_) if dir.is_dir() => Ok(dir.to_path_buf()),
            Err(e) => Err(Error::io("rename unpacked layer to", dir, e)),
        }
    }
}

impl Drop for TempLayer {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: a failure here must not hide the original error.
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    const DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

    /// A small layer with real-world tar padding after the end marker.
    fn layer() -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(5);
        header.set_mode(0o644);
        header.set_mtime(0);
        builder
            .append_data(&mut header, "etc/hello", &b"hello"[..])
            .unwrap();
        let mut bytes = builder.into_inner().unwrap();
        bytes.resize(10240, 0); // GNU tar pads to a 10 KiB record
        bytes
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// A blob that must not be read: the layer is already in the cache.
    struct MustNotRead;

    impl Read for MustNotRead {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            panic!("an unpacked layer was read again");
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_layer_is_unpacked_once() {
        let cache = tempfile::tempdir().unwrap();
        let tar = layer();
        let diff_id = Digest::of(&tar);
        let dir = ensure_unpacked(cache.path(), &diff_id, TAR, &tar[..]).unwrap();
        assert_eq!(dir, layer_dir(cache.path(), &diff_id));
        assert_eq!(fs::read(dir.join("etc/hello")).unwrap(), b"hello");
        let again = ensure_unpacked(cache.path(), &diff_id, TAR, MustNotRead).unwrap();
        assert_eq!(again, dir);
        assert_eq!(names(cache.path()), [diff_id.hex()]);
    }

    #[test]
    fn gzip_layers_are_decompressed_even_when_mislabelled() {
        let tar = layer();
        let diff_id = Digest::of(&tar);
        for media_type in [GZIP, DOCKER_GZIP, TAR] {
            let cache = tempfile::tempdir().unwrap();
            let blob = gzip(&tar);
            let dir = ensure_unpacked(cache.path(), &diff_id, media_type, &blob[..]).unwrap();
            assert_eq!(fs::read(dir.join("etc/hello")).unwrap(), b"hello");
        }
    }

    #[test]
    fn a_diff_id_mismatch_leaves_nothing() {
        let cache = tempfile::tempdir().unwrap();
        let wrong = Digest::of(b"another layer");
        let blob = gzip(&layer());
        let err = ensure_unpacked(cache.path(), &wrong, GZIP, &blob[..]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("layer diff ID mismatch: expected"), "{text}");
        assert!(text.contains(&Digest::of(&layer()).to_string()), "{text}");
        assert!(names(cache.path()).is_empty());
    }

    #[test]
    fn a_failed_unpack_leaves_nothing() {
        let cache = tempfile::tempdir().unwrap();
        let mut tar = layer();
        // Rename the entry to `../evil` (same length) and fix the checksum.
        tar[..9].copy_from_slice(b"../evil\0\0");
        let mut header = tar::Header::new_old();
        header.as_mut_bytes().copy_from_slice(&tar[..512]);
        header.set_cksum();
        tar[..512].copy_from_slice(header.as_bytes());
        let diff_id = Digest::of(&tar);
        let err = ensure_unpacked(cache.path(), &diff_id, TAR, &tar[..]).unwrap_err();
        assert!(err.to_string().contains("../evil"), "{err}");
        assert!(names(cache.path()).is_empty());
    }

    /// A gzip stream of a tar holding one file of `size` zeros, made
    /// without holding either in memory; and the tar's diff ID.
    fn bomb(size: u64) -> (Vec<u8>, Digest) {
        let mut header = tar::Header::new_gnu();
        header.set_path("zeros").unwrap();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_cksum();
        let tar = header
            .as_bytes()
            .as_slice()
            .chain(io::repeat(0).take(size.next_multiple_of(512) + 1024));
        let mut hashing = HashingReader::new(tar);
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        io::copy(&mut hashing, &mut gz).unwrap();
        (gz.finish().unwrap(), hashing.finish().0)
    }

    #[test]
    fn a_layer_over_the_limit_is_stopped_and_leaves_nothing() {
        let cache = tempfile::tempdir().unwrap();
        let (blob, diff_id) = bomb(64 << 20);
        let digest = Digest::of(&blob);
        let err = unpack_into_cache(
            cache.path(),
            &diff_id,
            GZIP,
            &blob[..],
            Some(&digest),
            1 << 20,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&format!("layer {digest} (diff ID {diff_id})")),
            "{err}"
        );
        assert!(err.contains("more than 1 MiB"), "{err}");
        assert!(err.contains("BERTH_MAX_LAYER_SIZE"), "{err}");
        assert!(names(cache.path()).is_empty(), "{:?}", names(cache.path()));
        // Under a higher limit the same layer is fine.
        let dir =
            unpack_into_cache(cache.path(), &diff_id, GZIP, &blob[..], None, 128 << 20).unwrap();
        assert_eq!(fs::metadata(dir.join("zeros")).unwrap().len(), 64 << 20);
    }

    #[test]
    #[cfg(feature = "zstd")]
    fn zstd_layers_unpack() {
        let cache = tempfile::tempdir().unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(5);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, "z.txt", &b"zstd\n"[..])
            .unwrap();
        let tar = builder.into_inner().unwrap();
        let diff_id = Digest::of(&tar);
        let blob = zstd::encode_all(&tar[..], 3).unwrap();
        let zstd = "application/vnd.oci.image.layer.v1.tar+zstd";
        let dir = ensure_unpacked(cache.path(), &diff_id, zstd, &blob[..]).unwrap();
        assert_eq!(fs::read(dir.join("z.txt")).unwrap(), b"zstd\n");
    }

    #[test]
    #[cfg(not(feature = "zstd"))]
    fn zstd_and_unknown_media_types_are_refused() {
        let cache = tempfile::tempdir().unwrap();
        let diff_id = Digest::of(b"");
        let zstd = "application/vnd.oci.image.layer.v1.tar+zstd";
        let err = ensure_unpacked(cache.path(), &diff_id, zstd, MustNotRead).unwrap_err();
        assert!(
            err.to_string()
                .contains("zstd-compressed layers need the stage's `zstd` feature")
        );
        let err = ensure_unpacked(cache.path(), &diff_id, "text/plain", MustNotRead).unwrap_err();
        assert!(err.to_string().contains("text/plain"));
        // zstd data under a tar label is caught by its magic bytes.
        let blob = [0x28, 0xb5, 0x2f, 0xfd, 0, 0];
        let err = ensure_unpacked(cache.path(), &diff_id, TAR, &blob[..]).unwrap_err();
        assert!(err.to_string().contains("zstd"));
        assert!(names(cache.path()).is_empty());
    }

    #[test]
    fn unknown_media_types_are_refused() {
        let cache = tempfile::tempdir().unwrap();
        let diff_id = Digest::of(b"");
        let err = ensure_unpacked(cache.path(), &diff_id, "text/plain", MustNotRead).unwrap_err();
        assert!(err.to_string().contains("text/plain"));
    }
}
