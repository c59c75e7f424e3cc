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
use stage04_images::auth::{self, Credentials, DOCKER_HUB_KEY, config_key};
use stage04_images::reference::Reference;
use stage04_images::registry::{Registry, RegistryOptions};

/// A login as `berth login` takes it. The auth file (and HTTP's Basic
/// auth) keep `user:password` in one string, so a user name with a `:`
/// would read back as another user.
pub fn credentials(username: String, password: String) -> Result<Credentials, Error> {
    if username.is_empty() || password.is_empty() {
        return Err(Error::Other(
            "a login needs a user name and a password".into(),
        ));
    }
    if username.contains(':') {
        return Err(Error::Other(format!(
            "the user name {username:?} has a ':', which registries' logins can't hold \
             (user and password are joined by one); check the user name"
        )));
    }
    Ok(Credentials { username, password })
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
    add_login(&mut config, registry, &credentials)?;
    write_config(path, &config)
}
// ANCHOR_END: login

/// Forget the login for `registry`; `false` if there was none.
pub fn logout(registry: &str, path: &Path) -> Result<bool, Error> {
    let mut config = read_config(path)?;
    let removed = remove_login(&mut config, registry)?;
    if removed {
        write_config(path, &config)?;
    }
    Ok(removed)
}

/// Put the login for `registry` into an auth file's JSON.
pub fn add_login(
    config: &mut Value,
    registry: &str,
    credentials: &Credentials,
) -> Result<(), Error> {
    let entry = serde_json::json!({ "auth": credentials.encoded() });
    auths(config)?.insert(config_key(registry), entry);
    Ok(())
}

/// Take the login for `registry` out of an auth file's JSON, under every
/// spelling a pull would read it by (`quay.io`, `https://quay.io`, ...), as
/// `docker logout` does; `false` if there was none.
pub fn remove_login(config: &mut Value, registry: &str) -> Result<bool, Error> {
    let auths = auths(config)?;
    let before = auths.len();
    auths.retain(|key, _| !auth::key_names(key, registry));
    Ok(auths.len() < before)
}

fn read_config(path: &Path) -> Result<Value, Error> {
    match std::fs::read(path) {
        Ok(bytes) => parse_config(&bytes, path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::json!({})),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// An auth file's bytes as JSON, every key kept (other tools' too); `path`
/// names the file in errors.
pub fn parse_config(bytes: &[u8], path: &Path) -> Result<Value, Error> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::Other(format!(
            "{} is not a JSON auth file ({e}); fix or remove it",
            path.display()
        ))
    })
}

/// The auth file's bytes, as `write_config` writes them.
pub fn encode_config(config: &Value) -> Result<Vec<u8>, Error> {
    let mut bytes = serde_json::to_vec_pretty(config)
        .map_err(|e| Error::Other(format!("cannot encode the auth file: {e}")))?;
    bytes.push(b'\n');
    Ok(bytes)
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
    let bytes = encode_config(config)?;
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut file| {
            file.write_all(&bytes)?;
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

    /// A login added to `file` (its bytes), then read as a pull reads it.
    fn login_then_read(file: &str, registry: &str, user: &str) -> Option<Credentials> {
        let path = Path::new("config.json");
        let mut config = parse_config(file.as_bytes(), path).unwrap();
        let credentials = credentials(user.into(), "secret".into()).unwrap();
        add_login(&mut config, registry, &credentials).unwrap();
        let bytes = encode_config(&config).unwrap();
        auth::from_config(&bytes, registry, path).unwrap()
    }

    #[test]
    fn a_login_reads_back_over_another_tool_s() {
        // Podman keeps Docker Hub's login under `docker.io`; ours goes under
        // the v1 URL, and must be the one a pull then uses.
        let podman = r#"{"auths":{"docker.io":{"auth":"Ym9iOm9sZA=="}}}"#;
        for registry in ["docker.io", "127.0.0.1:5000"] {
            let read = login_then_read(podman, registry, "alice").unwrap();
            assert_eq!(
                (read.username.as_str(), read.password.as_str()),
                ("alice", "secret")
            );
        }
    }

    #[test]
    fn a_user_name_with_a_colon_is_refused() {
        assert!(credentials("a:b".into(), "p".into()).is_err());
        assert!(credentials("".into(), "p".into()).is_err());
        assert!(credentials("a".into(), "".into()).is_err());
        assert!(credentials("a".into(), "p:q".into()).is_ok());
    }

    #[test]
    fn logout_removes_every_spelling_of_the_registry() {
        let text = r#"{"auths":{"docker.io":{"auth":"YTpi"},"https://index.docker.io/v1/":{"auth":"YTpi"},"quay.io":{"auth":"YTpi"}}}"#;
        let mut config = parse_config(text.as_bytes(), Path::new("c")).unwrap();
        assert!(remove_login(&mut config, "docker.io").unwrap());
        assert!(!remove_login(&mut config, "docker.io").unwrap());
        let keys: Vec<&String> = config["auths"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["quay.io"]);
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
