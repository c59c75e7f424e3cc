//! `berth login` and `logout`: logins kept where Docker and Podman keep
//! them, `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`:
//!
//! ```json
//! {"auths": {"127.0.0.1:5000": {"auth": "<base64 of user:password>"}}}
//! ```
//!
//! so a login made by any of the three serves the others (pull and push
//! read it through stage 04's `auth`). The file holds passwords, barely
//! disguised: it is written mode 0600, atomically, keeping every other key
//! another tool put there.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use stage01_chroot::Error;
use stage04_images::auth::{self, Credentials};
use stage04_images::reference::Reference;
use stage04_images::registry::{Registry, RegistryOptions};

/// Docker Hub's logins live under its old v1 URL, as Docker writes them.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The key of `registry` in `auths`: the host as given, or Docker Hub's URL.
pub fn config_key(registry: &str) -> String {
    match registry {
        "" | "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB_KEY.into(),
        other => other
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string(),
    }
}

/// The auth file to use: the one given, else Docker's default place.
pub fn config_path(given: Option<PathBuf>) -> Result<PathBuf, Error> {
    given.or_else(auth::default_config_path).ok_or_else(|| {
        Error::Other("no auth file: set DOCKER_CONFIG or HOME, or pass --authfile".into())
    })
}

// ANCHOR: login
/// Check the login against `registry` (`GET /v2/`, answering its
/// challenge with it), then save it.
pub fn login(
    registry: &str,
    credentials: Credentials,
    insecure_registries: Vec<String>,
    path: &Path,
) -> Result<(), Error> {
    let key = config_key(registry);
    let host = if key == DOCKER_HUB_KEY {
        "docker.io"
    } else {
        &key
    };
    // Any repository will do: only the API root is asked.
    let reference: Reference = format!("{host}/berth-login-check").parse()?;
    let options = RegistryOptions {
        insecure_registries,
        credentials: Some(credentials.clone()),
        auth_file: None,
    };
    Registry::connect(&reference, &options)?
        .ping()
        .map_err(|e| Error::Other(format!("login to {host} failed: {e}")))?;
    let mut config = read_config(path)?;
    auths(&mut config)?.insert(key, serde_json::json!({ "auth": credentials.encoded() }));
    write_config(path, &config)
}
// ANCHOR_END: login

/// Forget the login for `registry`; `false` if there was none.
pub fn logout(registry: &str, path: &Path) -> Result<bool, Error> {
    let mut config = read_config(path)?;
    let removed = auths(&mut config)?.remove(&config_key(registry)).is_some();
    if removed {
        write_config(path, &config)?;
    }
    Ok(removed)
}

fn read_config(path: &Path) -> Result<Value, Error> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            Error::Other(format!(
                "{} is not a JSON auth file ({e}); fix or remove it",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::json!({})),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

fn auths(config: &mut Value) -> Result<&mut Map<String, Value>, Error> {
    let object = config
        .as_object_mut()
        .ok_or_else(|| Error::Other("the auth file is not a JSON object".into()))?;
    object
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| Error::Other("the auth file's \"auths\" is not a JSON object".into()))
}

/// Write mode 0600 from the first byte (a temp file beside it, renamed
/// over it), in a directory only its owner can list if we make it.
fn write_config(path: &Path, config: &Value) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io("create directory", dir, e))?;
    let temp = dir.join(format!(".config.json.tmp-{}", std::process::id()));
    let bytes = serde_json::to_vec_pretty(config)
        .map_err(|e| Error::Other(format!("cannot encode the auth file: {e}")))?;
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut file| {
            file.write_all(&bytes)?;
            file.write_all(b"\n")?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&temp, path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        Error::io("write", path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keys_are_docker_s() {
        assert_eq!(config_key("docker.io"), DOCKER_HUB_KEY);
        assert_eq!(config_key("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(config_key("https://quay.io/"), "quay.io");
    }

    #[test]
    fn logout_keeps_the_rest_and_the_file_stays_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker/config.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            r#"{"auths":{"a:1":{"auth":"YTpi"},"b:2":{"auth":"YTpi"}},"credsStore":"x"}"#,
        )
        .unwrap();
        assert!(logout("a:1", &path).unwrap());
        assert!(!logout("a:1", &path).unwrap());
        let config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(config["credsStore"], "x");
        assert!(config["auths"].get("a:1").is_none());
        assert_eq!(config["auths"]["b:2"]["auth"], "YTpi");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
