//! Making image layers: a layer is a tar of the files a step added,
//! changed or removed, in the format `stage04`'s unpacker reads.
//!
//! A `RUN` step's changes are exactly the overlay's upper directory, with
//! one translation: overlayfs marks a deleted file with a character device
//! 0/0 and a directory whose old content is hidden with the xattr
//! `trusted.overlay.opaque=y`, while an image layer says the same with
//! `.wh.NAME` and `.wh..wh..opq` files.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use stage01_chroot::Error;
use stage04_images::digest::{Digest, HashingReader};

use crate::dockerignore::Ignore;
use tar::{Builder, EntryType, Header, HeaderMode};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// A layer made on disk: the gzipped tar, and the digest of the tar inside
/// (its diff ID, what the image config lists).
#[derive(Debug)]
pub struct LayerFile {
    pub gzipped: PathBuf,
    pub diff_id: Digest,
}

// ANCHOR: diff
/// The layer of a `RUN` step: the overlay's upper directory as a tar,
/// without the paths in `skip` (relative, e.g. `etc/hosts`: the mount
/// points of files bound over the container's).
pub fn from_upper_dir(upper: &Path, out: &Path, skip: &[PathBuf]) -> Result<LayerFile, Error> {
    write_layer(out, HeaderMode::Complete, |builder| {
        let mut hard_links = HashMap::new();
        add_upper_dir(builder, upper, Path::new(""), skip, &mut hard_links)
    })
}

fn add_upper_dir(
    builder: &mut Builder<File>,
    dir: &Path,
    inside: &Path,
    skip: &[PathBuf],
    hard_links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<(), Error> {
    for (name, path) in sorted_entries(dir)? {
        let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io("stat", &path, e))?;
        let name_inside = inside.join(&name);
        if skip.contains(&name_inside) {
            continue;
        }
        if meta.file_type().is_char_device() && meta.rdev() == 0 {
            // Deleted in this step: a whiteout for the layers below.
            let whiteout = inside.join(format!("{WHITEOUT_PREFIX}{}", name.to_string_lossy()));
            append_empty_file(builder, &whiteout)?;
        } else if meta.is_dir() {
            append(builder, &path, &name_inside)?;
            if is_opaque(&path) {
                append_empty_file(builder, &name_inside.join(OPAQUE_MARKER))?;
            }
            add_upper_dir(builder, &path, &name_inside, skip, hard_links)?;
        } else if meta.is_file() && meta.nlink() > 1 {
            match hard_links.get(&(meta.dev(), meta.ino())) {
                Some(first) => append_hard_link(builder, &name_inside, first)?,
                None => {
                    hard_links.insert((meta.dev(), meta.ino()), name_inside.clone());
                    append(builder, &path, &name_inside)?;
                }
            }
        } else {
            append(builder, &path, &name_inside)?;
        }
    }
    Ok(())
}
// ANCHOR_END: diff

fn is_opaque(dir: &Path) -> bool {
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    let mut value = [0u8; 2];
    // SAFETY: valid C strings and a buffer of the size we pass.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    n == 1 && value[0] == b'y'
}

/// One COPY or ADD: what to copy from where to where, and as whom.
pub struct CopyJob<'a> {
    /// Where source paths are looked up: the build context, or `/` in a
    /// thread chrooted into another stage (`COPY --from`).
    pub root: &'a Path,
    /// The `.dockerignore` rules (empty for `--from`).
    pub ignore: &'a Ignore,
    pub sources: &'a [CopySource],
    /// Where in the image; ends with `/` for "into this directory".
    pub dest: &'a Path,
    pub unpack_archives: bool,
    /// `--chown`, resolved to numbers (root's otherwise).
    pub owner: (u32, u32),
    /// `--chmod`.
    pub chmod: Option<u32>,
    /// What the image already has at and above `dest`.
    pub dest_info: DestInfo,
}

/// A source of COPY: a path or glob, or a here-document's bytes.
#[derive(Debug, Clone)]
pub enum CopySource {
    Path(String),
    Inline { name: String, content: Vec<u8> },
}

/// The destination as the image so far has it.
#[derive(Debug, Clone, Default)]
pub struct DestInfo {
    /// `dest` is a directory already: a file is copied into it.
    pub is_dir: bool,
    /// Directories from `/` down to `dest` that must be made, top first.
    pub missing: Vec<PathBuf>,
}

/// One file to put in a COPY layer.
struct Pick {
    /// Where it is read from (a host path, or inside a chroot).
    from: PathBuf,
    /// Where it goes, relative to the image's root.
    to: PathBuf,
    meta: std::fs::Metadata,
    /// ADD: a tar archive to unpack at `to`.
    archive: bool,
    /// The destination directory a directory's content goes into: made
    /// (mode 755, owned by `--chown`'s user) if the image lacks it, left as
    /// it is otherwise.
    dest_dir: bool,
}

// ANCHOR: copy
/// The layer of a `COPY` or `ADD` step: what `job` picks, owned by
/// `job.owner`, with modes and times as in the context.
pub fn copy_layer(job: &CopyJob, out: &Path) -> Result<LayerFile, Error> {
    let (picks, inline) = pick(job)?;
    write_layer(out, HeaderMode::Complete, |builder| {
        write_picks(builder, job, &picks, &inline)
    })
}
// ANCHOR_END: copy

/// `COPY --from`: the same, with sources read from the overlay of `layers`
/// (another stage or image), mounted read-only in a mount namespace and
/// chroot of one thread, so that its absolute symlinks can't point at the
/// host's files and the mount is gone when the thread (or berth) ends.
pub fn copy_layer_from(
    layers: &[PathBuf],
    scratch: &Path,
    job: &CopyJob,
    out: &Path,
) -> Result<LayerFile, Error> {
    let mountpoint = scratch.join("from");
    let empty = scratch.join("empty");
    for dir in [&mountpoint, &empty] {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    }
    write_layer(out, HeaderMode::Complete, |builder| {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    enter_read_only_root(layers, &empty, &mountpoint)?;
                    let (picks, inline) = pick(job)?;
                    write_picks(builder, job, &picks, &inline)
                })
                .join()
                .unwrap_or_else(|_| Err(Error::Other("the COPY --from thread panicked".into())))
        })
    })
}

/// This thread only: a mount namespace of its own, the overlay of
/// `layers` mounted read-only at `at`, and `at` as its root.
fn enter_read_only_root(layers: &[PathBuf], empty: &Path, at: &Path) -> Result<(), Error> {
    use nix::mount::{MsFlags, mount};
    use nix::sched::{CloneFlags, unshare};
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_FS)
        .map_err(|e| Error::Other(format!("unshare(CLONE_NEWNS) for COPY --from: {e}")))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| Error::Other(format!("make / private for COPY --from: {e}")))?;
    // overlayfs wants two lower directories at least without an upper one.
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .chain([&empty.to_path_buf()])
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let options = format!("lowerdir={}", lower.join(":"));
    mount(
        Some("overlay"),
        at,
        Some("overlay"),
        MsFlags::MS_RDONLY,
        Some(options.as_str()),
    )
    .map_err(|e| {
        Error::Other(format!(
            "mount the stage for COPY --from at {}: {e}",
            at.display()
        ))
    })?;
    nix::unistd::chroot(at).map_err(|e| Error::Other(format!("chroot {}: {e}", at.display())))?;
    std::env::set_current_dir("/").map_err(|e| Error::io("chdir", "/", e))
}

/// A stat-only fingerprint of what `job` would copy: the paths, sizes,
/// modes, owners, times and inode numbers of every source file. Equal
/// fingerprints on the same image mean the same layer, so a cached build
/// neither reads nor hashes nor archives the files again.
pub fn fingerprint(job: &CopyJob) -> Result<Digest, Error> {
    let (picks, inline) = pick(job)?;
    let mut text = format!(
        "{:?} {:?} {} {}\n",
        job.owner,
        job.chmod,
        job.dest.display(),
        job.unpack_archives
    );
    for p in &picks {
        let link = std::fs::read_link(&p.from).ok();
        text.push_str(&format!(
            "{} {} {:o} {} {}:{} {}.{} {}:{} {link:?} {}\n",
            p.from.display(),
            p.to.display(),
            p.meta.mode(),
            p.meta.size(),
            p.meta.uid(),
            p.meta.gid(),
            p.meta.mtime(),
            p.meta.mtime_nsec(),
            p.meta.dev(),
            p.meta.ino(),
            p.archive,
        ));
    }
    for (to, content) in &inline {
        text.push_str(&format!("{} {}\n", to.display(), Digest::of(content)));
    }
    Ok(Digest::of(text.as_bytes()))
}

/// Every file, directory and symlink `job` copies, in order, and the
/// here-documents with their places.
#[allow(clippy::type_complexity)]
fn pick(job: &CopyJob) -> Result<(Vec<Pick>, Vec<(PathBuf, Vec<u8>)>), Error> {
    let dest = relative_inside(job.dest)?;
    let mut matched = Vec::new();
    let mut inline = Vec::new();
    for source in job.sources {
        match source {
            CopySource::Path(path) => {
                let found = expand(job.root, job.ignore, path)?;
                if found.is_empty() {
                    return Err(Error::Other(format!(
                        "{path}: no such file in the build context{}",
                        match job.ignore.is_empty() {
                            true => "",
                            false => " (or .dockerignore leaves it out)",
                        }
                    )));
                }
                matched.extend(found);
            }
            CopySource::Inline { name, content } => inline.push((name.clone(), content.clone())),
        }
    }
    let into_dir = job.dest_info.is_dir
        || job.dest.as_os_str().to_string_lossy().ends_with('/')
        || matched.len() + inline.len() > 1;
    let mut picks = Vec::new();
    for (path, relative) in matched {
        let meta = std::fs::metadata(&path).map_err(|e| Error::io("stat", &path, e))?;
        if meta.is_dir() {
            // Docker copies a directory's content, not the directory.
            picks.push(Pick {
                from: path.clone(),
                to: dest.clone(),
                meta,
                archive: false,
                dest_dir: true,
            });
            walk(job, &path, &relative, &dest, &mut picks)?;
        } else if job.unpack_archives && is_tar_archive(&path.to_string_lossy()) {
            picks.push(Pick {
                from: path,
                to: dest.clone(),
                meta,
                archive: true,
                dest_dir: false,
            });
        } else {
            let to = match into_dir {
                true => dest.join(path.file_name().unwrap_or_default()),
                false => dest.clone(),
            };
            picks.push(Pick {
                from: path,
                to,
                meta,
                archive: false,
                dest_dir: false,
            });
        }
    }
    let inline = inline
        .into_iter()
        .map(|(name, content)| match into_dir {
            true => (dest.join(name), content),
            false => (dest.clone(), content),
        })
        .collect();
    Ok((picks, inline))
}

/// A source path or glob, resolved inside `root`: each match's real path
/// and its path relative to the root (for .dockerignore). A symlink may
/// lead anywhere inside the root, never out of it.
fn expand(root: &Path, ignore: &Ignore, source: &str) -> Result<Vec<(PathBuf, String)>, Error> {
    let cleaned = crate::dockerignore::clean(source);
    let mut candidates = vec![String::new()];
    for part in cleaned.split('/').filter(|p| *p != ".") {
        let mut next = Vec::new();
        for base in candidates {
            let join = |name: &str| match base.is_empty() {
                true => name.to_string(),
                false => format!("{base}/{name}"),
            };
            if !part.contains(['*', '?', '[']) {
                next.push(join(part));
                continue;
            }
            let Ok(entries) = std::fs::read_dir(root.join(&base)) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| crate::dockerignore::glob_match(part, name))
                .collect();
            names.sort();
            next.extend(names.iter().map(|n| join(n)));
        }
        candidates = next;
    }
    let mut found = Vec::new();
    for relative in candidates {
        let path = root.join(&relative);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        // An excluded directory may still hold what an exception brings
        // back: `walk` sorts that out inside it.
        let dir_with_exceptions = meta.is_dir() && ignore.has_exceptions();
        if ignore.excluded(&relative) && !dir_with_exceptions {
            continue;
        }
        let resolved = inside_root(root, &relative)?;
        let relative = resolved
            .strip_prefix(root)
            .unwrap_or(&resolved)
            .to_string_lossy()
            .into_owned();
        if ignore.excluded(&relative) && !dir_with_exceptions {
            continue;
        }
        found.push((resolved, relative));
    }
    Ok(found)
}

/// The entries below the directory `dir` (context path `relative`), at
/// `to`, without those .dockerignore leaves out.
fn walk(
    job: &CopyJob,
    dir: &Path,
    relative: &str,
    to: &Path,
    picks: &mut Vec<Pick>,
) -> Result<(), Error> {
    for (name, path) in sorted_entries(dir)? {
        let name_str = name.to_string_lossy();
        let rel = match relative.is_empty() {
            true => name_str.to_string(),
            false => format!("{relative}/{name_str}"),
        };
        let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io("stat", &path, e))?;
        let excluded = job.ignore.excluded(&rel);
        if meta.is_dir() {
            if excluded && !job.ignore.has_exceptions() {
                continue;
            }
            let at = picks.len();
            picks.push(Pick {
                from: path.clone(),
                to: to.join(&name),
                meta,
                archive: false,
                dest_dir: false,
            });
            walk(job, &path, &rel, &to.join(&name), picks)?;
            // An excluded directory is kept only for what an exception
            // brought back inside it.
            if excluded && picks.len() == at + 1 {
                picks.pop();
            }
        } else if !excluded && (meta.is_file() || meta.file_type().is_symlink()) {
            picks.push(Pick {
                from: path,
                to: to.join(&name),
                meta,
                archive: false,
                dest_dir: false,
            });
        }
    }
    Ok(())
}

fn write_picks(
    builder: &mut Builder<File>,
    job: &CopyJob,
    picks: &[Pick],
    inline: &[(PathBuf, Vec<u8>)],
) -> Result<(), Error> {
    // Directories the COPY makes belong to its owner, as with BuildKit.
    for dir in &job.dest_info.missing {
        let mut header = Header::new_gnu();
        header.set_entry_type(EntryType::Directory);
        header.set_mode(0o755);
        header.set_uid(job.owner.0.into());
        header.set_gid(job.owner.1.into());
        header.set_size(0);
        builder
            .append_data(&mut header, relative_inside(dir)?, std::io::empty())
            .map_err(|e| Error::io("write layer entry", dir, e))?;
    }
    for p in picks {
        if p.to.as_os_str().is_empty() || (p.dest_dir && job.dest_info.is_dir) {
            continue; // what the image has keeps its metadata
        }
        if p.archive {
            add_archive(builder, &p.from, &p.to)?;
            continue;
        }
        let mut header = Header::new_gnu();
        header.set_metadata_in_mode(&p.meta, HeaderMode::Complete);
        header.set_uid(job.owner.0.into());
        header.set_gid(job.owner.1.into());
        if let Some(mode) = job.chmod {
            header.set_mode(mode);
        } else if p.dest_dir {
            header.set_mode(0o755);
        }
        let failed = |e| Error::io("add to layer", &p.from, e);
        if p.meta.file_type().is_symlink() {
            let target = std::fs::read_link(&p.from).map_err(failed)?;
            header.set_size(0);
            builder
                .append_link(&mut header, &p.to, target)
                .map_err(failed)?;
        } else if p.meta.is_dir() {
            header.set_size(0);
            builder
                .append_data(&mut header, &p.to, std::io::empty())
                .map_err(failed)?;
        } else {
            let file = File::open(&p.from).map_err(failed)?;
            builder
                .append_data(&mut header, &p.to, file)
                .map_err(failed)?;
        }
    }
    for (to, content) in inline {
        let mut header = Header::new_gnu();
        header.set_entry_type(EntryType::Regular);
        header.set_mode(job.chmod.unwrap_or(0o644));
        header.set_uid(job.owner.0.into());
        header.set_gid(job.owner.1.into());
        header.set_size(content.len() as u64);
        builder
            .append_data(&mut header, to, &content[..])
            .map_err(|e| Error::io("write layer entry", to, e))?;
    }
    Ok(())
}

/// `relative` resolved inside `root`, symlinks included: it must stay
/// inside, so a build can't read the host's other files.
fn inside_root(root: &Path, relative: &str) -> Result<PathBuf, Error> {
    let path = root.join(relative);
    let resolved = std::fs::canonicalize(&path)
        .map_err(|e| Error::io("find in the build context", &path, e))?;
    if !resolved.starts_with(root) {
        return Err(Error::Other(format!(
            "{relative} is outside the build context {}; copy it into the context first",
            root.display()
        )));
    }
    Ok(resolved)
}

/// The image's files across its unpacked `layers` (bottom first), as the
/// overlay would show them, for small lookups without a mount: the topmost
/// layer that has `path` (or a whiteout of it) decides.
pub fn lookup(layers: &[PathBuf], path: &Path) -> Option<std::fs::Metadata> {
    let relative = relative_inside(path).ok()?;
    for layer in layers.iter().rev() {
        if let Ok(meta) = std::fs::symlink_metadata(layer.join(&relative)) {
            let whiteout = meta.file_type().is_char_device() && meta.rdev() == 0;
            return (!whiteout).then_some(meta);
        }
    }
    None
}

/// A file's content in the image (`/etc/passwd`), if it has one.
pub fn read_in_layers(layers: &[PathBuf], path: &Path) -> Option<Vec<u8>> {
    let relative = relative_inside(path).ok()?;
    let meta = lookup(layers, path)?;
    if !meta.is_file() {
        return None;
    }
    let layer = layers
        .iter()
        .rev()
        .find(|l| std::fs::symlink_metadata(l.join(&relative)).is_ok())?;
    std::fs::read(layer.join(relative)).ok()
}

/// What the image has at `dest`: a directory already, and the directories
/// above it (and it, for `into_dir`) that a COPY must make.
pub fn dest_info(layers: &[PathBuf], dest: &Path, into_dir: bool) -> DestInfo {
    let is_dir = lookup(layers, dest).is_some_and(|m| m.is_dir());
    let mut missing = Vec::new();
    let mut path = PathBuf::from("/");
    let parts: Vec<_> = dest.components().skip(1).collect();
    let upto = match into_dir || is_dir {
        true => parts.len(),
        false => parts.len().saturating_sub(1),
    };
    for part in &parts[..upto] {
        path.push(part);
        if !lookup(layers, &path).is_some_and(|m| m.is_dir() || m.file_type().is_symlink()) {
            missing.push(path.clone());
        }
    }
    DestInfo { is_dir, missing }
}

fn is_tar_archive(name: &str) -> bool {
    [".tar", ".tar.gz", ".tgz"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// `/srv/www` as `srv/www`; `..` is refused.
fn relative_inside(path: &Path) -> Result<PathBuf, Error> {
    let mut relative = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::RootDir | Component::CurDir => {}
            _ => {
                return Err(Error::Other(format!(
                    "{}: a destination inside the image can't use ..",
                    path.display()
                )));
            }
        }
    }
    Ok(relative)
}

/// `ADD archive.tar.gz /dest`: the archive's entries, moved under `/dest`.
fn add_archive(builder: &mut Builder<File>, archive: &Path, dest: &Path) -> Result<(), Error> {
    let file = File::open(archive).map_err(|e| Error::io("open", archive, e))?;
    let mut magic = [0u8; 2];
    let gzipped = File::open(archive)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == [0x1f, 0x8b];
    let reader: Box<dyn Read> = match gzipped {
        true => Box::new(flate2::read::GzDecoder::new(file)),
        false => Box::new(file),
    };
    let mut tar = tar::Archive::new(reader);
    let bad = |e: std::io::Error| Error::io("read archive", archive, e);
    for entry in tar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let name = relative_inside(&entry.path().map_err(bad)?)?;
        let mut header = entry.header().clone();
        if let Some(link) = entry.link_name().map_err(bad)?
            && header.entry_type() == EntryType::Link
        {
            header
                .set_link_name(dest.join(relative_inside(&link)?))
                .map_err(bad)?;
        }
        builder
            .append_data(&mut header, dest.join(name), &mut entry)
            .map_err(bad)?;
    }
    Ok(())
}

fn sorted_entries(dir: &Path) -> Result<Vec<(std::ffi::OsString, PathBuf)>, Error> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io("list", dir, e))?
        .map(|entry| entry.map(|e| (e.file_name(), e.path())))
        .collect::<Result<_, _>>()
        .map_err(|e| Error::io("list", dir, e))?;
    entries.sort();
    Ok(entries)
}

fn append(builder: &mut Builder<File>, path: &Path, inside: &Path) -> Result<(), Error> {
    builder
        .append_path_with_name(path, inside)
        .map_err(|e| Error::io("add to layer", path, e))
}

fn append_empty_file(builder: &mut Builder<File>, inside: &Path) -> Result<(), Error> {
    let mut header = Header::new_gnu();
    header.set_entry_type(EntryType::Regular);
    header.set_mode(0o600);
    header.set_size(0);
    builder
        .append_data(&mut header, inside, std::io::empty())
        .map_err(|e| Error::io("write layer entry", inside, e))
}

fn append_hard_link(
    builder: &mut Builder<File>,
    inside: &Path,
    target: &Path,
) -> Result<(), Error> {
    let mut header = Header::new_gnu();
    header.set_entry_type(EntryType::Link);
    header.set_size(0);
    builder
        .append_link(&mut header, inside, target)
        .map_err(|e| Error::io("write layer entry", inside, e))
}

/// Write the tar with `fill`, then gzip it beside; hash both.
fn write_layer(
    out: &Path,
    mode: HeaderMode,
    fill: impl FnOnce(&mut Builder<File>) -> Result<(), Error>,
) -> Result<LayerFile, Error> {
    let tar_path = out.with_extension("tar");
    let file = File::create(&tar_path).map_err(|e| Error::io("create", &tar_path, e))?;
    let mut builder = Builder::new(file);
    builder.mode(mode);
    builder.follow_symlinks(false);
    fill(&mut builder)?;
    builder
        .into_inner()
        .map_err(|e| Error::io("finish", &tar_path, e))?;

    // The diff ID is the digest of the plain tar; the blob is gzipped.
    let mut tar =
        HashingReader::new(File::open(&tar_path).map_err(|e| Error::io("open", &tar_path, e))?);
    let gzipped = out.with_extension("tar.gz");
    let gz_file = File::create(&gzipped).map_err(|e| Error::io("create", &gzipped, e))?;
    let mut encoder = GzEncoder::new(gz_file, Compression::default());
    std::io::copy(&mut tar, &mut encoder).map_err(|e| Error::io("compress", &tar_path, e))?;
    encoder
        .finish()
        .map_err(|e| Error::io("compress", &gzipped, e))?;
    let (diff_id, _) = tar.finish();
    std::fs::remove_file(&tar_path).map_err(|e| Error::io("remove", &tar_path, e))?;
    Ok(LayerFile { gzipped, diff_id })
}
