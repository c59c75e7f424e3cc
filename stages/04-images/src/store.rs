//! The image store: an OCI image layout on disk.
//!
//! ```text
//! <dir>/oci-layout            {"imageLayoutVersion":"1.0.0"}
//! <dir>/index.json            an OCI index: one entry per tag
//! <dir>/blobs/sha256/<hex>    manifests, configs and layers, by digest
//! <dir>.lock                  our lock file, beside the layout, not in it
//! ```
//!
//! Using the standard layout rather than a format of our own means
//! `skopeo` and `umoci` can read what Berth stores, and Berth can read what
//! they make. A tag is an index.json entry whose annotation
//! `org.opencontainers.image.ref.name` holds the full reference, e.g.
//! `docker.io/library/busybox:latest`.
//!
//! Safety rules: a blob only appears under its final name once its digest
//! and size were checked (temp file + rename); index.json is replaced
//! atomically; and every change to index.json, and `gc`, happens under an
//! exclusive `flock` so two `berth` processes never lose each other's tags.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use stage01_chroot::Error;
use stage03_cgroups::limits::format_size;

use crate::bounds::MAX_DOCUMENT_SIZE;
use crate::digest::{Digest, HashingReader};
use crate::spec::{self, ANNOTATION_REF_NAME, Descriptor, Index, MEDIA_TYPE_OCI_INDEX, Manifest};

type Result<T> = std::result::Result<T, Error>;

const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT_VERSION: &str = "1.0.0";
const INDEX_FILE: &str = "index.json";
/// Half-written files start with this, so a crash leaves nothing that looks
/// like a real blob, and `gc` knows what to sweep.
const TEMP_PREFIX: &str = ".tmp-";

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    lock_path: PathBuf,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LayoutFile {
    image_layout_version: String,
}

impl Store {
    /// Open the layout at `dir`, creating it if it does not exist yet.
    pub fn open(dir: &Path) -> Result<Store> {
        fs::create_dir_all(dir).map_err(|e| Error::io("create image store directory", dir, e))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| Error::io("resolve image store directory", dir, e))?;
        let store = Store {
            lock_path: lock_path_for(&dir)?,
            dir,
        };
        if store.dir.join(LAYOUT_FILE).exists() {
            store.check_layout_file()?;
            store.ensure_index()?;
        } else {
            // Two processes may create the same store at once: decide under
            // the lock, so one creates and the other finds it made.
            let _lock = store.lock()?;
            store.create_layout()?;
        }
        Ok(store)
    }

    /// The layout directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob with `digest` lives (whether or not it is there).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    /// Whether the blob is stored. Blobs only get their final name once
    /// verified, so existing means complete and correct.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Take the store's exclusive lock until the guard is dropped.
    ///
    /// `tag`, `untag` and `gc` take it themselves. A pull holds it from its
    /// first `put_blob` to its `tag`, so a `gc` in between can't delete the
    /// blobs it has stored but not yet tagged. Within one thread the lock is
    /// re-entrant: `store.tag(..)` while holding the guard is fine.
    pub fn lock(&self) -> Result<StoreLock> {
        StoreLock::acquire(&self.lock_path)
    }

    fn blobs_dir(&self) -> PathBuf {
        self.dir.join("blobs").join("sha256")
    }

    // ---- opening and creating the layout ----

    /// Refuse anything that is not a version 1 image layout.
    fn check_layout_file(&self) -> Result<()> {
        let path = self.dir.join(LAYOUT_FILE);
        let text = fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        let layout: LayoutFile = serde_json::from_slice(&text).map_err(|e| {
            Error::Other(format!(
                "{} is not a valid oci-layout file ({e}); is {} really an image store?",
                path.display(),
                self.dir.display()
            ))
        })?;
        if !layout.image_layout_version.starts_with("1.") {
            return Err(Error::Other(format!(
                "{} has imageLayoutVersion {:?}, but only 1.x layouts are understood; \
                 use another store directory",
                path.display(),
                layout.image_layout_version
            )));
        }
        fs::create_dir_all(self.blobs_dir())
            .map_err(|e| Error::io("create blob directory", self.blobs_dir(), e))
    }

    /// A layout that lost its index.json (or a tool that never wrote one)
    /// gets an empty one; under the lock, so no tag written meanwhile is lost.
    fn ensure_index(&self) -> Result<()> {
        if self.dir.join(INDEX_FILE).exists() {
            return Ok(());
        }
        let _lock = self.lock()?;
        if !self.dir.join(INDEX_FILE).exists() {
            self.write_index(&empty_index())?;
        }
        Ok(())
    }

    /// Called with the lock held. `oci-layout` is written last: its presence
    /// marks a complete layout.
    fn create_layout(&self) -> Result<()> {
        if self.dir.join(LAYOUT_FILE).exists() {
            return self.check_layout_file().and_then(|()| self.ensure_index());
        }
        self.refuse_foreign_directory()?;
        fs::create_dir_all(self.blobs_dir())
            .map_err(|e| Error::io("create blob directory", self.blobs_dir(), e))?;
        if !self.dir.join(INDEX_FILE).exists() {
            self.write_index(&empty_index())?;
        }
        let layout = LayoutFile {
            image_layout_version: LAYOUT_VERSION.to_string(),
        };
        let json = serde_json::to_vec(&layout).map_err(|e| json_error(&self.dir, e))?;
        write_atomic(&self.dir.join(LAYOUT_FILE), &json)
    }

    /// Don't sprinkle `blobs/` into, say, someone's home directory: only an
    /// empty directory (or one we began to set up) becomes a store.
    fn refuse_foreign_directory(&self) -> Result<()> {
        let entries = fs::read_dir(&self.dir).map_err(|e| Error::io("list", &self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list", &self.dir, e))?;
            let name = entry.file_name();
            let ours = name == "blobs" || name == INDEX_FILE;
            if !ours && !name.to_string_lossy().starts_with(TEMP_PREFIX) {
                return Err(Error::Other(format!(
                    "{} is not empty and is not an OCI image layout (it has no {LAYOUT_FILE} \
                     file); give a new or empty directory for the image store",
                    self.dir.display()
                )));
            }
        }
        Ok(())
    }

    // ---- blobs ----

    // ANCHOR: put_blob
    /// Store a blob streamed from `reader`, checking it against `expected`'s
    /// digest and size *while* it is written. A blob that doesn't match is
    /// deleted and never becomes visible under its name.
    pub fn put_blob(&self, reader: impl Read, expected: &Descriptor) -> Result<()> {
        self.write_blob(reader, &expected.digest, expected.size)
    }

    fn write_blob(&self, reader: impl Read, digest: &Digest, size: u64) -> Result<()> {
        if self.has_blob(digest) {
            return Ok(()); // content-addressed: same name, same bytes.
        }
        let (temp_path, file) = create_temp(&self.blobs_dir())?;
        let written = self
            .copy_verified(reader, &file, digest, size)
            .and_then(|()| {
                file.sync_all()
                    .map_err(|e| Error::io("fsync", &temp_path, e))
            });
        drop(file);
        if let Err(err) = written {
            let _ = fs::remove_file(&temp_path); // best effort: the error matters more.
            return Err(err);
        }
        self.publish_blob(&temp_path, digest)
    }

    /// Copy into `file`, hashing on the way. Reading at most `size + 1`
    /// bytes means a lying server can't fill the disk, yet "too long" is
    /// still detected.
    fn copy_verified(
        &self,
        reader: impl Read,
        mut file: &File,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        // ANCHOR: exercise_verify_blob
        let mut hashing = HashingReader::new(reader.take(size.saturating_add(1)));
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match hashing.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::Other(format!(
                        "reading blob {digest} failed: {e}; check the network or the source and try again"
                    )));
                }
            };
            file.write_all(&buf[..n])
                .map_err(|e| Error::io("write blob", self.blob_path(digest), e))?;
        }
        let (got, got_size) = hashing.finish();
        if got == *digest && got_size == size {
            return Ok(());
        }
        // Past `size` we stopped reading, so `got` is only a prefix's hash.
        let got = if got_size > size {
            format!("more than the {size} bytes announced")
        } else {
            format!("{got} ({got_size} bytes)")
        };
        Err(Error::Other(format!(
            "digest mismatch: expected {digest} ({size} bytes), got {got}, for blob {}; \
             the download is corrupt or the source served other content: try again, and \
             distrust the source if it persists",
            self.blob_path(digest).display()
        )))
        // ANCHOR_END: exercise_verify_blob
    }

    /// The rename is atomic: readers see no blob or the whole blob. If a
    /// concurrent writer got there first, its identical copy stays.
    fn publish_blob(&self, temp_path: &Path, digest: &Digest) -> Result<()> {
        let final_path = self.blob_path(digest);
        if final_path.exists() {
            let _ = fs::remove_file(temp_path);
            return Ok(());
        }
        fs::rename(temp_path, &final_path).map_err(|e| {
            let _ = fs::remove_file(temp_path);
            Error::io("rename blob into place", &final_path, e)
        })?;
        sync_dir(&self.blobs_dir())
    }
    // ANCHOR_END: put_blob

    /// Store small in-memory blobs (manifests, configs); returns their digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        self.write_blob(bytes, &digest, bytes.len() as u64)?;
        Ok(digest)
    }

    /// Read a whole blob, checking its digest again: a file changed on disk
    /// must not be trusted. Meant for manifests, configs and indexes, so
    /// anything over [`MAX_DOCUMENT_SIZE`] is refused unread; stream layers
    /// from [`Store::blob_path`] instead.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let file = File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::Other(format!(
                "blob {digest} is not in the image store {} ({}); pull the image again",
                self.dir.display(),
                path.display()
            )),
            _ => Error::io("read blob", &path, e),
        })?;
        let mut bytes = Vec::new();
        file.take(MAX_DOCUMENT_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io("read blob", &path, e))?;
        if bytes.len() as u64 > MAX_DOCUMENT_SIZE {
            return Err(Error::Other(format!(
                "blob {} is larger than {}, more than any manifest, config or index may be; \
                 delete it and pull the image again",
                path.display(),
                format_size(MAX_DOCUMENT_SIZE)
            )));
        }
        let got = Digest::of(&bytes);
        if got != *digest {
            return Err(Error::Other(format!(
                "blob {} is corrupt: its content hashes to {got}; delete it and pull the image again",
                path.display()
            )));
        }
        Ok(bytes)
    }

    // ---- tags: entries of index.json ----

    // ANCHOR: tag
    /// Point `name` (a full reference such as
    /// `docker.io/library/busybox:latest`) at `manifest`, replacing what the
    /// name pointed at before. The manifest blob must already be stored.
    pub fn tag(&self, name: &str, manifest: Descriptor) -> Result<()> {
        check_ref_name(name)?;
        if !self.has_blob(&manifest.digest) {
            return Err(Error::Other(format!(
                "cannot tag {name}: manifest {} is not in the image store {}; store it first",
                manifest.digest,
                self.dir.display()
            )));
        }
        let mut entry = manifest;
        entry
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(ANNOTATION_REF_NAME.to_string(), name.to_string());

        // Read, change, write back: under the lock, or two tags written at
        // once would each drop the other's.
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        index.manifests.retain(|d| ref_name(d) != Some(name));
        index.manifests.push(entry);
        self.write_index(&index)
    }
    // ANCHOR_END: tag

    /// The manifest descriptor tagged `name`, if any.
    pub fn resolve(&self, name: &str) -> Result<Option<Descriptor>> {
        // No lock for reading: index.json is only ever replaced whole.
        let index = self.read_index()?;
        Ok(index
            .manifests
            .into_iter()
            .find(|d| ref_name(d) == Some(name)))
    }

    /// Every tag and its manifest descriptor, sorted by name. Entries without
    /// a name (other tools may write some) are not tags and are left out.
    pub fn list(&self) -> Result<Vec<(String, Descriptor)>> {
        let index = self.read_index()?;
        let mut tags: Vec<(String, Descriptor)> = index
            .manifests
            .into_iter()
            .filter_map(|d| Some((ref_name(&d)?.to_string(), d)))
            .collect();
        tags.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(tags)
    }

    /// Remove the tag `name`; `false` if there was none. The blobs stay until
    /// [`Store::gc`].
    pub fn untag(&self, name: &str) -> Result<bool> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let before = index.manifests.len();
        index.manifests.retain(|d| ref_name(d) != Some(name));
        if index.manifests.len() == before {
            return Ok(false);
        }
        self.write_index(&index)?;
        Ok(true)
    }

    fn read_index(&self) -> Result<Index> {
        let path = self.dir.join(INDEX_FILE);
        let bytes = fs::read(&path).map_err(|e| Error::io("read image index", &path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::Other(format!(
                "{} is not a valid OCI index ({e}); restore it or start a new image store",
                path.display()
            ))
        })
    }

    /// Callers hold the lock (or are creating the store).
    fn write_index(&self, index: &Index) -> Result<()> {
        let path = self.dir.join(INDEX_FILE);
        let json = serde_json::to_vec_pretty(index).map_err(|e| json_error(&path, e))?;
        write_atomic(&path, &json)
    }

    // ---- garbage collection ----

    // ANCHOR: gc
    /// Delete every blob no tag can reach, and leftover temp files. Returns
    /// the digests removed. Mark and sweep, under the lock, so a pull that
    /// holds the lock keeps its untagged blobs.
    pub fn gc(&self) -> Result<Vec<Digest>> {
        let _lock = self.lock()?;
        let index = self.read_index()?;
        let mut reachable = BTreeSet::new();
        for entry in &index.manifests {
            self.mark(entry, &mut reachable)?;
        }
        self.sweep_temp_files(&self.dir)?;
        self.sweep(&reachable)
    }

    /// Mark a descriptor's blob and, for manifests and indexes, what they
    /// point at. Missing children are fine: a pull stores only the platform
    /// it needs from a multi-platform index.
    fn mark(&self, desc: &Descriptor, reachable: &mut BTreeSet<Digest>) -> Result<()> {
        if !reachable.insert(desc.digest.clone()) || !self.has_blob(&desc.digest) {
            return Ok(());
        }
        if spec::is_index(&desc.media_type) {
            let index: Index = self.read_json(&desc.digest)?;
            for child in &index.manifests {
                self.mark(child, reachable)?;
            }
        } else if spec::is_manifest(&desc.media_type) {
            let manifest: Manifest = self.read_json(&desc.digest)?;
            reachable.insert(manifest.config.digest);
            reachable.extend(manifest.layers.into_iter().map(|l| l.digest));
        }
        Ok(())
    }

    fn sweep(&self, reachable: &BTreeSet<Digest>) -> Result<Vec<Digest>> {
        let dir = self.blobs_dir();
        let mut removed = Vec::new();
        for name in list_names(&dir)? {
            if name.starts_with(TEMP_PREFIX) {
                remove_file_if_present(&dir.join(&name))?;
                continue;
            }
            // Files that are not digests are not ours to judge: leave them.
            let Ok(digest) = format!("sha256:{name}").parse::<Digest>() else {
                continue;
            };
            if !reachable.contains(&digest) {
                remove_file_if_present(&self.blob_path(&digest))?;
                removed.push(digest);
            }
        }
        removed.sort();
        Ok(removed)
    }
    // ANCHOR_END: gc

    /// A crash while writing index.json leaves a temp file in the layout root.
    fn sweep_temp_files(&self, dir: &Path) -> Result<()> {
        for name in list_names(dir)? {
            if name.starts_with(TEMP_PREFIX) {
                remove_file_if_present(&dir.join(name))?;
            }
        }
        Ok(())
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, digest: &Digest) -> Result<T> {
        let bytes = self.read_blob(digest)?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::Other(format!(
                "blob {} is not the JSON document its descriptor says ({e}); \
                 delete it and pull the image again",
                self.blob_path(digest).display()
            ))
        })
    }
}

// ---- the lock ----

/// Holding this means holding the store's exclusive lock.
///
/// `flock` locks belong to an open file, so a second `open` + `flock` in the
/// same thread would wait for itself forever. Each thread therefore keeps
/// the locks it holds in a table and counts nested guards; the file is
/// unlocked when the last guard goes. Other threads and processes open the
/// file themselves and wait, as they should.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct StoreLock {
    path: PathBuf,
    /// The table is per thread, so the guard must stay on its thread.
    _not_send: PhantomData<*const ()>,
}

thread_local! {
    static HELD: RefCell<HashMap<PathBuf, (Flock<File>, usize)>> = RefCell::new(HashMap::new());
}

impl StoreLock {
    fn acquire(path: &Path) -> Result<StoreLock> {
        let nested = HELD.with(|held| match held.borrow_mut().get_mut(path) {
            Some((_, count)) => {
                *count += 1;
                true
            }
            None => false,
        });
        if !nested {
            let flock = lock_file(path)?;
            HELD.with(|held| held.borrow_mut().insert(path.to_path_buf(), (flock, 1)));
        }
        Ok(StoreLock {
            path: path.to_path_buf(),
            _not_send: PhantomData,
        })
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        // try_with: at thread exit the table may already be gone; the
        // kernel drops the lock with the file anyway.
        let _ = HELD.try_with(|held| {
            let mut held = held.borrow_mut();
            if let Some((_, count)) = held.get_mut(&self.path) {
                *count -= 1;
                if *count == 0 {
                    held.remove(&self.path); // dropping the Flock unlocks.
                }
            }
        });
    }
}

/// Open (creating) the lock file and wait for the exclusive lock. (Stage 05's
/// networks and the engine's containers are locked the same way.)
pub fn lock_file(path: &Path) -> Result<Flock<File>> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::io("open lock file", path, e))?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusive) {
            Ok(locked) => return Ok(locked),
            Err((unlocked, Errno::EINTR)) => file = unlocked,
            Err((_, errno)) => {
                return Err(Error::io("flock", path, io::Error::from(errno)));
            }
        }
    }
}

/// `<parent>/<name>.lock`, beside the layout, so skopeo and umoci see only
/// standard files inside it.
fn lock_path_for(dir: &Path) -> Result<PathBuf> {
    match (dir.parent(), dir.file_name()) {
        (Some(parent), Some(name)) => {
            let mut lock_name = name.to_os_string();
            lock_name.push(".lock");
            Ok(parent.join(lock_name))
        }
        _ => Err(Error::Other(format!(
            "{} cannot hold an image store (its lock file goes beside it); \
             use a subdirectory such as /var/lib/berth/images",
            dir.display()
        ))),
    }
}

// ---- small file helpers ----

/// Reference names as the image layout spec allows them (and as skopeo and
/// umoci check): components of `[A-Za-z0-9]+` joined by `-._:@+` or `--`,
/// separated by '/'.
fn check_ref_name(name: &str) -> Result<()> {
    let component_ok = |c: &str| {
        let alnum = |ch: char| ch.is_ascii_alphanumeric();
        c.starts_with(alnum)
            && c.ends_with(alnum)
            && c.split(alnum)
                .filter(|sep| !sep.is_empty())
                .all(|sep| (sep.len() == 1 && "-._:@+".contains(sep)) || sep == "--")
    };
    if name.split('/').all(component_ok) {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "{name:?} is not a valid image name for the store; use a full reference such \
             as docker.io/library/busybox:latest"
        )))
    }
}

fn ref_name(desc: &Descriptor) -> Option<&str> {
    desc.annotations
        .as_ref()?
        .get(ANNOTATION_REF_NAME)
        .map(String::as_str)
}

fn empty_index() -> Index {
    Index {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_OCI_INDEX.to_string()),
        manifests: Vec::new(),
        annotations: None,
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A new, uniquely named `.tmp-` file in `dir` (same file system as its
/// final name, so the rename is atomic).
fn create_temp(dir: &Path) -> Result<(PathBuf, File)> {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Error::io("create temporary file", &path, e))?;
    Ok((path, file))
}

/// Write + fsync a temp file, rename it over `path`, fsync the directory:
/// after a crash, `path` holds the old content or the new, never half.
/// (Stage 05 keeps its network files and address leases the same way.)
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let (temp_path, mut file) = create_temp(dir)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| fs::rename(&temp_path, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&temp_path);
        return Err(Error::io("write", path, e));
    }
    sync_dir(dir)
}

/// Write a temp file and rename it over `path`, without waiting for the
/// disk. A process killed at any moment still leaves the old content or
/// the new, never half (the kernel's page cache outlives the process); a
/// power loss may lose the change. That is the right trade for what a
/// reboot makes moot anyway, such as the state of processes, mounts and
/// links, which die with the machine: an fsync costs milliseconds.
pub fn replace_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let (temp_path, mut file) = create_temp(dir)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| fs::rename(&temp_path, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&temp_path);
        return Err(Error::io("write", path, e));
    }
    Ok(())
}

/// A rename or unlink is only durable once the directory itself is synced.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}

fn list_names(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

/// Remove a file; one that is not there is fine.
pub fn remove_file_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

fn json_error(path: &Path, e: serde_json::Error) -> Error {
    Error::Other(format!("cannot encode {} as JSON: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{
        ContainerConfig, ImageConfig, MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_OCI_LAYER_GZIP,
        MEDIA_TYPE_OCI_MANIFEST, RootFs,
    };
    use std::process::Command;
    use std::sync::mpsc;
    use std::time::Duration;

    const NAME: &str = "docker.io/library/busybox:latest";

    /// A temp dir holding `store/` (and its sibling lock file).
    fn new_store() -> (tempfile::TempDir, Store) {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("store")).unwrap();
        (tmp, store)
    }

    fn descriptor(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
            annotations: None,
            platform: None,
        }
    }

    fn temp_files(store: &Store) -> Vec<String> {
        list_names(&store.blobs_dir())
            .unwrap()
            .into_iter()
            .chain(list_names(store.dir()).unwrap())
            .filter(|n| n.starts_with(TEMP_PREFIX))
            .collect()
    }

    /// A gzipped tar holding `hello.txt`, and the digest of the plain tar.
    fn tiny_layer() -> (Vec<u8>, Digest) {
        let mut builder = tar::Builder::new(Vec::new());
        let content = b"hello from a layer\n";
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, "hello.txt", &content[..])
            .unwrap();
        let tar = builder.into_inner().unwrap();
        let diff_id = Digest::of(&tar);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        (gz.finish().unwrap(), diff_id)
    }

    /// Store a complete one-layer image and return its manifest descriptor.
    fn put_tiny_image(store: &Store) -> (Descriptor, Manifest) {
        let (layer, diff_id) = tiny_layer();
        let layer_desc = descriptor(MEDIA_TYPE_OCI_LAYER_GZIP, &layer);
        store.put_blob(&layer[..], &layer_desc).unwrap();
        let config = ImageConfig {
            architecture: spec::host_platform().architecture,
            os: "linux".into(),
            config: Some(ContainerConfig {
                cmd: Some(vec!["/bin/sh".into()]),
                ..Default::default()
            }),
            rootfs: RootFs {
                r#type: "layers".into(),
                diff_ids: vec![diff_id],
            },
            created: None,
            history: Vec::new(),
        };
        let config_json = serde_json::to_vec(&config).unwrap();
        store.put_bytes(&config_json).unwrap();
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_OCI_MANIFEST.into()),
            config: descriptor(MEDIA_TYPE_OCI_CONFIG, &config_json),
            layers: vec![layer_desc],
            annotations: None,
        };
        let manifest_json = serde_json::to_vec(&manifest).unwrap();
        store.put_bytes(&manifest_json).unwrap();
        (
            descriptor(MEDIA_TYPE_OCI_MANIFEST, &manifest_json),
            manifest,
        )
    }

    #[test]
    fn open_creates_a_clean_layout_with_the_lock_beside_it() {
        let (tmp, store) = new_store();
        let layout = fs::read_to_string(store.dir().join("oci-layout")).unwrap();
        assert_eq!(layout, r#"{"imageLayoutVersion":"1.0.0"}"#);
        let index: Index =
            serde_json::from_slice(&fs::read(store.dir().join("index.json")).unwrap()).unwrap();
        assert_eq!(index.schema_version, 2);
        assert_eq!(index.media_type.as_deref(), Some(MEDIA_TYPE_OCI_INDEX));
        assert!(index.manifests.is_empty());
        assert!(store.dir().join("blobs/sha256").is_dir());

        let mut names = list_names(store.dir()).unwrap();
        names.sort();
        assert_eq!(names, ["blobs", "index.json", "oci-layout"]);
        assert!(tmp.path().join("store.lock").is_file());

        // Opening again keeps what is there.
        let again = Store::open(store.dir()).unwrap();
        assert_eq!(again.dir(), store.dir());
    }

    #[test]
    fn open_refuses_foreign_directories_and_other_layout_versions() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        fs::create_dir(&home).unwrap();
        fs::write(home.join("notes.txt"), "mine").unwrap();
        let err = Store::open(&home).unwrap_err().to_string();
        assert!(err.contains("not an OCI image layout"), "{err}");
        assert!(!home.join("blobs").exists());

        let future = tmp.path().join("future");
        fs::create_dir(&future).unwrap();
        fs::write(
            future.join("oci-layout"),
            r#"{"imageLayoutVersion":"2.0.0"}"#,
        )
        .unwrap();
        let err = Store::open(&future).unwrap_err().to_string();
        assert!(err.contains("2.0.0"), "{err}");

        assert!(Store::open(Path::new("/")).is_err());
    }

    #[test]
    fn put_blob_stores_verified_content() {
        let (_tmp, store) = new_store();
        let desc = descriptor(MEDIA_TYPE_OCI_LAYER_GZIP, b"layer bytes");
        assert!(!store.has_blob(&desc.digest));
        store.put_blob(&b"layer bytes"[..], &desc).unwrap();
        assert!(store.has_blob(&desc.digest));
        assert_eq!(
            fs::read(store.blob_path(&desc.digest)).unwrap(),
            b"layer bytes"
        );
        // A second put of the same blob doesn't even read the source.
        store.put_blob(io::empty(), &desc).unwrap();
        assert!(temp_files(&store).is_empty());
    }

    #[test]
    fn put_blob_refuses_a_mismatch_and_leaves_nothing_behind() {
        let (_tmp, store) = new_store();
        let desc = descriptor(MEDIA_TYPE_OCI_LAYER_GZIP, b"the real thing");
        for wrong in [
            &b"something else"[..],
            b"the real thin",
            b"the real thing!",
            b"",
        ] {
            let err = store.put_blob(wrong, &desc).unwrap_err().to_string();
            assert!(err.contains("digest mismatch"), "{err}");
            assert!(err.contains(&format!("expected {}", desc.digest)), "{err}");
            if wrong.len() > 14 {
                assert!(err.contains("got more than the 14 bytes"), "{err}");
            } else {
                assert!(err.contains(&format!("got {}", Digest::of(wrong))), "{err}");
            }
            assert!(!store.has_blob(&desc.digest));
            assert!(temp_files(&store).is_empty());
        }
    }

    #[test]
    fn read_blob_checks_the_digest_again() {
        let (_tmp, store) = new_store();
        let digest = store.put_bytes(b"{\"a\":1}").unwrap();
        assert_eq!(store.read_blob(&digest).unwrap(), b"{\"a\":1}");
        fs::write(store.blob_path(&digest), b"{\"a\":2}").unwrap();
        let err = store.read_blob(&digest).unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
        let missing = Digest::of(b"nope");
        let err = store.read_blob(&missing).unwrap_err().to_string();
        assert!(err.contains("not in the image store"), "{err}");
    }

    #[test]
    fn tag_resolve_list_untag() {
        let (_tmp, store) = new_store();
        let (manifest, _) = put_tiny_image(&store);
        assert_eq!(store.resolve(NAME).unwrap(), None);

        store.tag(NAME, manifest.clone()).unwrap();
        store
            .tag("localhost:5000/app:v1", manifest.clone())
            .unwrap();
        let found = store.resolve(NAME).unwrap().unwrap();
        assert_eq!(found.digest, manifest.digest);
        assert_eq!(ref_name(&found), Some(NAME));

        // Re-tagging replaces the entry instead of adding a second one.
        let other = store.put_bytes(b"{}").unwrap();
        let other_desc = Descriptor {
            digest: other.clone(),
            size: 2,
            ..manifest.clone()
        };
        store.tag(NAME, other_desc).unwrap();
        let list = store.list().unwrap();
        let names: Vec<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, [NAME, "localhost:5000/app:v1"]);
        assert_eq!(list[0].1.digest, other);

        assert!(store.untag(NAME).unwrap());
        assert!(!store.untag(NAME).unwrap());
        assert_eq!(store.resolve(NAME).unwrap(), None);
        assert_eq!(store.list().unwrap().len(), 1);
    }

    #[test]
    fn tag_refuses_missing_manifests_and_bad_names() {
        let (_tmp, store) = new_store();
        let absent = descriptor(MEDIA_TYPE_OCI_MANIFEST, b"never stored");
        let err = store.tag(NAME, absent).unwrap_err().to_string();
        assert!(err.contains("not in the image store"), "{err}");
        let (manifest, _) = put_tiny_image(&store);
        for bad in ["", "a b", "a//b", "/a", "a:", "Übung"] {
            assert!(
                store.tag(bad, manifest.clone()).is_err(),
                "{bad:?} accepted"
            );
        }
        let digest_name = format!("docker.io/library/busybox:1.36@{}", manifest.digest);
        store.tag(&digest_name, manifest).unwrap();
    }

    #[test]
    fn gc_keeps_what_tags_reach_and_removes_the_rest() {
        let (_tmp, store) = new_store();
        let (manifest_desc, manifest) = put_tiny_image(&store);
        store.tag(NAME, manifest_desc.clone()).unwrap();

        // An index tagged by name, whose child is our manifest plus one
        // platform that was never pulled.
        let index = Index {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_OCI_INDEX.into()),
            manifests: vec![
                manifest_desc.clone(),
                descriptor(MEDIA_TYPE_OCI_MANIFEST, b"other platform"),
            ],
            annotations: None,
        };
        let index_json = serde_json::to_vec(&index).unwrap();
        store.put_bytes(&index_json).unwrap();
        store
            .tag(
                "localhost/multi:1",
                descriptor(MEDIA_TYPE_OCI_INDEX, &index_json),
            )
            .unwrap();

        let orphan = store.put_bytes(b"orphan").unwrap();
        fs::write(store.blobs_dir().join(".tmp-crashed"), b"half").unwrap();
        fs::write(store.dir().join(".tmp-index"), b"half").unwrap();
        fs::write(store.blobs_dir().join("README"), b"not a digest").unwrap();

        assert_eq!(store.gc().unwrap(), std::slice::from_ref(&orphan));
        assert!(!store.has_blob(&orphan));
        for kept in [
            &manifest_desc.digest,
            &manifest.config.digest,
            &manifest.layers[0].digest,
        ] {
            assert!(store.has_blob(kept), "{kept} removed");
        }
        assert!(store.has_blob(&Digest::of(&index_json)));
        assert!(temp_files(&store).is_empty());
        assert!(store.blobs_dir().join("README").exists());

        // Untag both: everything goes.
        store.untag(NAME).unwrap();
        store.untag("localhost/multi:1").unwrap();
        assert_eq!(store.gc().unwrap().len(), 4);
        assert!(list_names(&store.blobs_dir()).unwrap() == ["README"]);
    }

    #[test]
    fn concurrent_tags_from_many_threads_all_land() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    // Each thread opens the store itself, even while it is
                    // being created: like separate berth processes.
                    let store = Store::open(&dir).unwrap();
                    let digest = store.put_bytes(format!("manifest {t}").as_bytes()).unwrap();
                    for i in 0..10 {
                        let desc = Descriptor {
                            media_type: MEDIA_TYPE_OCI_MANIFEST.into(),
                            digest: digest.clone(),
                            size: 10,
                            annotations: None,
                            platform: None,
                        };
                        store.tag(&format!("localhost/t{t}:v{i}"), desc).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.list().unwrap().len(), 80);
    }

    #[test]
    fn the_lock_is_reentrant_and_excludes_other_threads() {
        let (_tmp, store) = new_store();
        let (manifest, _) = put_tiny_image(&store);
        let guard = store.lock().unwrap();
        // Same thread: tag takes the lock again without waiting on itself.
        store.tag(NAME, manifest.clone()).unwrap();

        let (done_tx, done_rx) = mpsc::channel();
        let dir = store.dir().to_path_buf();
        let other = std::thread::spawn(move || {
            let store = Store::open(&dir).unwrap();
            store.tag("localhost/other:1", manifest).unwrap();
            done_tx.send(()).unwrap();
        });
        // While we hold the lock, the other thread must wait.
        assert!(done_rx.recv_timeout(Duration::from_millis(300)).is_err());
        assert_eq!(store.resolve("localhost/other:1").unwrap(), None);
        drop(guard);
        done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        other.join().unwrap();
        assert!(store.resolve("localhost/other:1").unwrap().is_some());
    }

    fn run(tool: &str, args: &[&str]) -> String {
        let out = Command::new(tool)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{tool} must be installed (apt-get install {tool}): {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn skopeo_and_umoci_read_the_store() {
        let (_tmp, store) = new_store();
        let (manifest_desc, _) = put_tiny_image(&store);
        store.tag(NAME, manifest_desc.clone()).unwrap();
        let dir = store.dir().to_str().unwrap();

        let listed = run("umoci", &["ls", "--layout", dir]);
        assert_eq!(listed.trim(), NAME);

        let raw = run(
            "skopeo",
            &["inspect", "--raw", &format!("oci:{dir}:{NAME}")],
        );
        assert_eq!(Digest::of(raw.as_bytes()), manifest_desc.digest);

        let inspected = run("skopeo", &["inspect", &format!("oci:{dir}:{NAME}")]);
        let json: serde_json::Value = serde_json::from_str(&inspected).unwrap();
        assert_eq!(json["Layers"].as_array().unwrap().len(), 1);

        // umoci checks every blob's digest on unpack: the strictest reader.
        let bundle = store.dir().parent().unwrap().join("bundle");
        run(
            "umoci",
            &[
                "unpack",
                "--rootless",
                "--image",
                &format!("{dir}:{NAME}"),
                bundle.to_str().unwrap(),
            ],
        );
        let hello = fs::read_to_string(bundle.join("rootfs/hello.txt")).unwrap();
        assert_eq!(hello, "hello from a layer\n");

        // And the other way: a layout skopeo wrote is a store we can read.
        let copy = store.dir().parent().unwrap().join("copy");
        let copy_ref = format!("oci:{}:{NAME}", copy.display());
        run("skopeo", &["copy", &format!("oci:{dir}:{NAME}"), &copy_ref]);
        let theirs = Store::open(&copy).unwrap();
        let found = theirs.resolve(NAME).unwrap().unwrap();
        let manifest: Manifest = theirs.read_json(&found.digest).unwrap();
        assert_eq!(manifest.layers.len(), 1);
        assert!(theirs.has_blob(&manifest.layers[0].digest));
    }
}
