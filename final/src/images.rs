//! Images as the engine's commands name them: by reference, as stage 04
//! does, or, as Docker users do, by ID: the digest of the image's config
//! (Docker's IMAGE ID) or of its manifest (what `berth images` shows),
//! whole or a unique prefix, with or without `sha256:`.

use stage01_chroot::Error;
use stage04_images::image::Image;
use stage04_images::reference::Reference;

use crate::Engine;

/// The reference of the image `key` names. A tag in the store wins, as in
/// Docker (`abc` is also a valid name); a key that is neither a stored tag
/// nor any image's ID comes back as it is, for `Image::open` to say it is
/// not in the store.
pub fn resolve(engine: &Engine, key: &str) -> Result<String, Error> {
    // Most keys can't be IDs (`host:5000/busybox`): nothing to look up.
    let Some(prefix) = id_prefix(key) else {
        return Ok(key.to_string());
    };
    let store = engine.root.store()?;
    if let Ok(reference) = key.parse::<Reference>()
        && store.resolve(&reference.to_string())?.is_some()
    {
        return Ok(key.to_string());
    }
    // (the ID it matched by, the image's name), for every tag.
    let mut found: Vec<(String, String)> = Vec::new();
    for (name, manifest) in store.list()? {
        let Ok(image) = Image::open(&store, &name) else {
            continue; // a tag whose blobs are damaged names no image
        };
        for digest in [&image.manifest.config.digest, &manifest.digest] {
            if digest.hex().starts_with(prefix) {
                found.push((digest.hex().to_string(), name.clone()));
            }
        }
    }
    let mut ids: Vec<&str> = found.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    match ids.len() {
        0 => Ok(key.to_string()),
        1 => Ok(found.swap_remove(0).1), // several tags of one image: any will do
        n => Err(Error::Other(format!(
            "{key} is the start of {n} image IDs; give more of it (see: berth images)"
        ))),
    }
}

/// The hex digits of `key` if it could be an image ID: `sha256:` optional,
/// then 1 to 64 lowercase hex digits.
fn id_prefix(key: &str) -> Option<&str> {
    let hex = key.strip_prefix("sha256:").unwrap_or(key);
    let is_hex = hex
        .chars()
        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
    (!hex.is_empty() && hex.len() <= 64 && is_hex).then_some(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex_prefixes() {
        assert_eq!(id_prefix("3f2a"), Some("3f2a"));
        assert_eq!(id_prefix("sha256:3f2a"), Some("3f2a"));
        for not_an_id in [
            "",
            "sha256:",
            "busybox",
            "3F2A",
            "3f2a:latest",
            &"a".repeat(65),
        ] {
            assert_eq!(id_prefix(not_an_id), None, "{not_an_id}");
        }
    }
}
