//! What berth reads from strangers, one function per kind, for the fuzz
//! targets in `fuzz/` (`scripts/fuzz`) and for the tests that replay the
//! inputs they once crashed on (`tests/tests/fuzz_regressions.rs`).
//!
//! Each takes bytes as berth meets them: a Dockerfile, an image reference,
//! a registry's JSON, a layer's tar, a bundle's config.json, an archive to
//! `berth load`, an auth file with registry logins. Any input may
//! be refused with an error; none may make berth panic, hang, or write
//! outside where it was told. Where a property holds for every input (a
//! reference prints as something that parses back to itself; a layer
//! writes only inside its directory), the function checks it and panics
//! when it does not, so that the fuzzer reports it as a crash.

use std::path::{Path, PathBuf};

use stage04_images::auth;
use stage04_images::bounds::LayerBudget;
use stage04_images::image::{self, Image, Overrides};
use stage04_images::reference::Reference;
use stage04_images::root::Root;
use stage04_images::spec::{self, ImageConfig, Index, Manifest};

/// A Dockerfile, as `berth build` parses it; and the same bytes as a
/// `.dockerignore` (a context may come from anywhere), asked about a few
/// paths, and about each of its own lines as a path.
pub fn dockerfile(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let _ = crate::dockerfile::parse("Dockerfile", text);
    if let Ok(ignore) = crate::dockerignore::Ignore::parse(text) {
        for path in ["Dockerfile", "a/b/c.txt", ".git/HEAD", "secret/key"] {
            let _ = ignore.excluded(path);
        }
        for line in text.lines().take(16) {
            let _ = ignore.excluded(&crate::dockerignore::clean(line));
        }
    }
}

/// An image reference (`pull`, `run`, `FROM`): one that parses prints as a
/// reference that parses to the same.
pub fn reference(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Ok(reference) = text.parse::<Reference>() {
        let printed = reference.to_string();
        let again: Reference = (printed.parse())
            .unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}, which fails: {e}"));
        assert_eq!(again.to_string(), printed, "from {text:?}");
    }
}

/// A registry's JSON: a manifest, an index (and the platform picked from
/// it), an image config (and the process it says to run).
pub fn image_json(bytes: &[u8]) {
    let _ = serde_json::from_slice::<Manifest>(bytes);
    if let Ok(index) = serde_json::from_slice::<Index>(bytes) {
        let _ = index.pick(&spec::host_platform());
    }
    if let Ok(config) = serde_json::from_slice::<ImageConfig>(bytes) {
        let _ = image::process(&config, &Overrides::default());
    }
}

/// A layer's tar, unpacked into an empty directory under `scratch` (which
/// must exist and be empty): everything it writes stays in there.
pub fn layer_tar(bytes: &[u8], scratch: &Path) {
    let dest = scratch.join("layer");
    let beside = scratch.join("beside");
    for dir in [&dest, &beside] {
        std::fs::create_dir(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    }
    let budget = LayerBudget::new(64 << 20);
    let _ = stage04_images::unpack::unpack_layer(bytes, &dest, &budget);
    let names = |dir: &Path| -> Vec<PathBuf> {
        let entries = std::fs::read_dir(dir).expect("read the scratch directory");
        entries.flatten().map(|e| e.path()).collect()
    };
    let mut outside = names(scratch);
    outside.sort();
    assert_eq!(
        outside,
        [beside.clone(), dest.clone()],
        "a file outside the layer"
    );
    assert!(names(&beside).is_empty(), "a file written beside the layer");
    for dir in [&dest, &beside] {
        std::fs::remove_dir_all(dir).unwrap_or_else(|e| panic!("remove {}: {e}", dir.display()));
    }
}

/// A bundle's config.json, as `berth-runtime create` takes it, in a
/// bundle `bundle` that holds an empty `rootfs`.
pub fn runtime_config(bytes: &[u8], bundle: &Path) {
    let _ = crate::runtime::check_config(bytes, bundle);
}

/// An archive given to `berth load` (a docker-archive or an oci-archive),
/// loaded into a new image store under `scratch` (which must exist and be
/// empty). Every image load names opens, its layers all stored; nothing is
/// written outside the store, and nothing half-made stays in it.
pub fn archive_load(bytes: &[u8], scratch: &Path) {
    let mut bytes = bytes.to_vec();
    with_tar_checksums_right(&mut bytes);
    let archive = scratch.join("archive.tar");
    std::fs::write(&archive, &bytes).unwrap_or_else(|e| panic!("write {}: {e}", archive.display()));
    let root = Root::open(&scratch.join("root")).expect("make the state root");
    let store = root.store().expect("open the image store");
    if let Ok(names) = stage04_images::load::load(&store, &archive, None) {
        for name in &names {
            let image = Image::open(&store, name)
                .unwrap_or_else(|e| panic!("load named {name}, which does not open: {e}"));
            for layer in &image.manifest.layers {
                assert!(
                    store.has_blob(&layer.digest),
                    "{name}: layer {} missing",
                    layer.digest
                );
            }
        }
    }
    assert_eq!(
        file_names(scratch),
        ["archive.tar", "root"],
        "a file outside the state root"
    );
    assert_eq!(
        file_names(root.dir()),
        ["images", "images.lock"],
        "a file beside the store"
    );
    let blobs = store.dir().join("blobs/sha256");
    let half_made = file_names(&blobs)
        .into_iter()
        .find(|name| name.starts_with('.'));
    assert_eq!(half_made, None, "a temporary file left in the store");
    for path in [&archive, &root.dir().to_path_buf()] {
        let removed = match path.is_dir() {
            true => std::fs::remove_dir_all(path),
            false => std::fs::remove_file(path),
        };
        removed.unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
    }
}

/// Writes each tar header's checksum into it, so that what the fuzzer
/// changes in names, types, sizes and links gets past the tar reader's
/// checksum check to the code behind it. (Berth meets such archives too:
/// anyone can write a right checksum.) Headers are found as a tar reader
/// finds them: each one's data, rounded up to 512 bytes, follows it.
fn with_tar_checksums_right(bytes: &mut [u8]) {
    let mut at = 0usize;
    while let Some(header) = bytes.get_mut(at..at + 512) {
        at += 512;
        if header.iter().all(|&b| b == 0) {
            continue; // the end-of-archive blocks
        }
        header[148..156].fill(b' ');
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let size = std::str::from_utf8(&header[124..136])
            .ok()
            .and_then(|field| u64::from_str_radix(field.trim_matches(['\0', ' ']), 8).ok())
            .unwrap_or(0);
        let Some(next) = usize::try_from(size.div_ceil(512) * 512)
            .ok()
            .and_then(|data| at.checked_add(data))
        else {
            return;
        };
        at = next;
    }
}

/// The names in `dir`, sorted.
fn file_names(dir: &Path) -> Vec<String> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Registries an auth file is asked about: Docker Hub (stored under its
/// old v1 URL), a local one with a port, and two by name.
const REGISTRIES: &[&str] = &["docker.io", "127.0.0.1:5000", "quay.io", "localhost"];

/// An auth file (Docker's config.json, containers' auth.json), as a pull
/// reads it and as `berth login` adds to it. A login written into a file
/// login accepts reads back as the same user and password; after a logout,
/// none is read.
pub fn auth_file(bytes: &[u8]) {
    let path = Path::new("config.json");
    for registry in REGISTRIES {
        let _ = auth::from_config(bytes, registry, path);
    }
    let Ok(mut config) = crate::login::parse_config(bytes, path) else {
        return;
    };
    // A user name and password from the input itself.
    let text = String::from_utf8_lossy(bytes);
    let username: String = text.chars().take(8).collect();
    let password: String = text.chars().rev().take(16).collect();
    let Ok(credentials) = crate::login::credentials(username, password) else {
        return;
    };
    for registry in REGISTRIES {
        if crate::login::add_login(&mut config, registry, &credentials).is_err() {
            return; // login refuses this file: its "auths" is not an object
        }
        let written = crate::login::encode_config(&config).expect("encode an auth file");
        let read = auth::from_config(&written, registry, path);
        assert!(
            matches!(&read, Ok(Some(got)) if *got == credentials),
            "logged in to {registry} as {credentials:?}, read back {read:?}"
        );
    }
    for registry in REGISTRIES {
        let removed = crate::login::remove_login(&mut config, registry);
        assert!(
            matches!(removed, Ok(true)),
            "{registry}: no login to remove"
        );
        let written = crate::login::encode_config(&config).expect("encode an auth file");
        let read = auth::from_config(&written, registry, path);
        assert!(
            matches!(read, Ok(None)),
            "logged out of {registry}, read back {read:?}"
        );
    }
}
