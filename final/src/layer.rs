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

/// The layer of a `COPY` (or `ADD`) step: `sources`, relative to `context`,
/// at `dest` inside the image. Owned by root, with no times, so the same
/// files always make the same layer (and the cache can trust it).
pub fn from_context(
    context: &Path,
    sources: &[String],
    dest: &Path,
    unpack_archives: bool,
    out: &Path,
) -> Result<LayerFile, Error> {
    let dest_inside = relative_inside(dest)?;
    let into_dir = sources.len() > 1 || dest.as_os_str().to_string_lossy().ends_with('/');
    let mut resolved = Vec::new();
    for source in sources {
        resolved.push(inside_context(context, source)?);
    }
    write_layer(out, HeaderMode::Deterministic, |builder| {
        for (source, path) in sources.iter().zip(&resolved) {
            let meta = std::fs::metadata(path).map_err(|e| Error::io("stat", path, e))?;
            if meta.is_dir() {
                // Docker copies a directory's content, not the directory.
                if let Some(parent) = dest_inside.parent() {
                    add_parents(builder, parent)?;
                }
                append(builder, path, &dest_inside)?;
                add_tree(builder, path, &dest_inside)?;
            } else if unpack_archives && is_tar_archive(source) {
                add_parents(builder, &dest_inside)?;
                add_archive(builder, path, &dest_inside)?;
            } else {
                let target = match into_dir {
                    true => dest_inside.join(path.file_name().unwrap_or_default()),
                    false => dest_inside.clone(),
                };
                if let Some(parent) = target.parent() {
                    add_parents(builder, parent)?;
                }
                append(builder, path, &target)?;
            }
        }
        Ok(())
    })
}

/// `source` must name something inside the build context, even through
/// `..` or symlinks: a build must not read the host's other files.
fn inside_context(context: &Path, source: &str) -> Result<PathBuf, Error> {
    let path = context.join(source);
    let resolved = std::fs::canonicalize(&path)
        .map_err(|e| Error::io("find in the build context", &path, e))?;
    if !resolved.starts_with(context) {
        return Err(Error::Other(format!(
            "{source} is outside the build context {}; copy it into the context first",
            context.display()
        )));
    }
    Ok(resolved)
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

fn add_parents(builder: &mut Builder<File>, dir: &Path) -> Result<(), Error> {
    let mut path = PathBuf::new();
    for part in dir.components() {
        path.push(part);
        let mut header = Header::new_gnu();
        header.set_entry_type(EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        builder
            .append_data(&mut header, &path, std::io::empty())
            .map_err(|e| Error::io("write layer entry", &path, e))?;
    }
    Ok(())
}

fn add_tree(builder: &mut Builder<File>, dir: &Path, inside: &Path) -> Result<(), Error> {
    for (name, path) in sorted_entries(dir)? {
        let name_inside = inside.join(&name);
        append(builder, &path, &name_inside)?;
        let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io("stat", &path, e))?;
        if meta.is_dir() {
            add_tree(builder, &path, &name_inside)?;
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names(layer: &LayerFile) -> Vec<String> {
        let file = File::open(&layer.gzipped).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn copies_are_reproducible_and_stay_in_the_context() {
        let dir = tempfile::tempdir().unwrap();
        let context = dir.path().join("ctx");
        std::fs::create_dir_all(context.join("site/css")).unwrap();
        std::fs::write(context.join("site/index.html"), "hi").unwrap();
        std::fs::write(context.join("site/css/a.css"), "a").unwrap();
        std::fs::write(context.join("app.sh"), "echo").unwrap();
        let context = std::fs::canonicalize(&context).unwrap();

        let one = from_context(
            &context,
            &["site".into()],
            Path::new("/srv/www"),
            false,
            &dir.path().join("one"),
        )
        .unwrap();
        assert_eq!(
            names(&one),
            [
                "srv",
                "srv/www",
                "srv/www/css",
                "srv/www/css/a.css",
                "srv/www/index.html"
            ]
        );
        let again = from_context(
            &context,
            &["site".into()],
            Path::new("/srv/www"),
            false,
            &dir.path().join("two"),
        )
        .unwrap();
        assert_eq!(
            one.diff_id, again.diff_id,
            "the same files must make the same layer"
        );

        let file = from_context(
            &context,
            &["app.sh".into()],
            Path::new("/usr/bin/"),
            false,
            &dir.path().join("three"),
        )
        .unwrap();
        assert_eq!(names(&file), ["usr", "usr/bin", "usr/bin/app.sh"]);

        std::fs::write(dir.path().join("secret"), "no").unwrap();
        let outside = from_context(
            &context,
            &["../secret".into()],
            Path::new("/x"),
            false,
            &dir.path().join("four"),
        );
        assert!(
            outside
                .unwrap_err()
                .to_string()
                .contains("outside the build context")
        );
    }
}
