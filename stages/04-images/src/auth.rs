//! Registry credentials: from `--creds USER:PASS`, or from a Docker-style
//! `config.json` (`{"auths": {"registry": {"auth": base64("user:pass")}}}`),
//! and the Bearer-token dance registries like Docker Hub ask for.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use stage01_chroot::Error;

use crate::reference::DOCKER_HUB;

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    // Never print a password, not even in a debug dump.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credentials {{ username: {:?}, password: <hidden> }}",
            self.username
        )
    }
}

impl Credentials {
    /// `USER:PASS`, as `--creds` takes it.
    pub fn parse(text: &str) -> Result<Credentials, Error> {
        let (username, password) = text
            .split_once(':')
            .filter(|(user, _)| !user.is_empty())
            .ok_or_else(|| Error::Other("--creds takes USER:PASSWORD".into()))?;
        Ok(Credentials {
            username: username.into(),
            password: password.into(),
        })
    }

    /// The value of an `Authorization: Basic ...` header.
    pub fn basic_header(&self) -> String {
        format!("Basic {}", self.encoded())
    }

    /// base64 of `user:password`: a Basic header's value, and what a
    /// config.json's `auth` field holds.
    pub fn encoded(&self) -> String {
        base64_encode(format!("{}:{}", self.username, self.password).as_bytes())
    }
}

/// A Docker-style config file, as far as logins go. Each entry is kept as
/// JSON and read only when asked for: an entry another tool wrote in a
/// shape we don't know must not stop pulls from the other registries.
#[derive(serde::Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, serde_json::Value>,
}

/// Docker Hub's logins live under its old v1 URL, as Docker writes them.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The key `berth login` writes `registry`'s login under in `auths`: the
/// host (`quay.io`, `127.0.0.1:5000`), or Docker Hub's v1 URL, as Docker.
pub fn config_key(registry: &str) -> String {
    match key_host(registry) {
        DOCKER_HUB => DOCKER_HUB_KEY.into(),
        host => host.into(),
    }
}

/// Whether `key`, a key of `auths`, holds a login for `registry`. Tools
/// spell a registry several ways (`quay.io`, `https://quay.io`,
/// `http://quay.io/v1/`; Docker Hub also as `docker.io`, `index.docker.io`),
/// and a login by any of them is the registry's login.
pub fn key_names(key: &str, registry: &str) -> bool {
    key_host(key) == key_host(registry)
}

/// The registry a key names: a URL's host, or the key without a trailing
/// `/`, Docker Hub's every name as `docker.io` (and an empty name too, as
/// `berth login` takes it). A key with a path but no scheme (Podman's
/// `quay.io/team`: a login for one namespace) stays as it is, so it names
/// no whole registry.
fn key_host(key: &str) -> &str {
    let host = match key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
    {
        Some(url) => url.split('/').next().unwrap_or(url),
        None => key.trim_end_matches('/'),
    };
    match host {
        "" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB,
        host => host,
    }
}

/// Where Docker and Podman keep logins: `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`.
pub fn default_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
}

/// The login stored for `registry` in a Docker-style config file, if any.
pub fn from_config_file(path: &Path, registry: &str) -> Result<Option<Credentials>, Error> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", path, e)),
    };
    from_config(&bytes, registry, path)
}

/// The login stored for `registry` in the config file's bytes, if any
/// (`path` names the file in errors). The entry under berth's own key is
/// read first (a `berth login` just made is the one used), then the
/// registry's other spellings; entries with no `auth` (Docker leaves `{}`
/// where a credential helper keeps the password) are passed over.
pub fn from_config(
    bytes: &[u8],
    registry: &str,
    path: &Path,
) -> Result<Option<Credentials>, Error> {
    let config: DockerConfig = serde_json::from_slice(bytes)
        .map_err(|e| Error::Other(format!("{}: not a Docker config file: {e}", path.display())))?;
    let own = config_key(registry);
    let others = config
        .auths
        .keys()
        .filter(|key| **key != own && key_names(key, registry));
    for key in std::iter::once(&own).chain(others) {
        let auth = config.auths.get(key).and_then(|entry| entry.get("auth"));
        match auth {
            None | Some(serde_json::Value::Null) => continue,
            Some(serde_json::Value::String(encoded)) if encoded.is_empty() => continue,
            Some(auth) => return decode_auth(auth, key, path).map(Some),
        }
    }
    Ok(None)
}

/// An entry's `auth`: base64 of `user:password`.
fn decode_auth(auth: &serde_json::Value, key: &str, path: &Path) -> Result<Credentials, Error> {
    auth.as_str()
        .and_then(base64_decode)
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| Credentials::parse(&text).ok())
        .ok_or_else(|| {
            Error::Other(format!(
                "{}: the auth for {key} is not base64 of user:password; log in again",
                path.display()
            ))
        })
}

/// The parameters of a `WWW-Authenticate: Bearer realm="...",service="...",
/// scope="..."` challenge: where to get a token, and for what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerChallenge {
    pub realm: String,
    pub service: Option<String>,
    pub scope: Option<String>,
}

// ANCHOR: challenge
/// Parse a `WWW-Authenticate` header; `None` unless it asks for a Bearer token.
pub fn parse_bearer_challenge(header: &str) -> Option<BearerChallenge> {
    let params = header.trim().strip_prefix("Bearer ")?;
    let mut realm = None;
    let mut service = None;
    let mut scope = None;
    for (key, value) in split_params(params) {
        match key.as_str() {
            "realm" => realm = Some(value),
            "service" => service = Some(value),
            "scope" => scope = Some(value),
            _ => {}
        }
    }
    Some(BearerChallenge {
        realm: realm?,
        service,
        scope,
    })
}
// ANCHOR_END: challenge

/// `a="x",b="y,z"` -> [(a, x), (b, "y,z")]: commas inside quotes belong to
/// the value (scopes like `repository:a:pull,push` have them).
fn split_params(text: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_string();
        let (value, remaining) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.split_once('"') {
                Some((value, remaining)) => (value.to_string(), remaining),
                None => (quoted.to_string(), ""),
            },
            None => match after.split_once(',') {
                Some((value, remaining)) => (value.trim().to_string(), remaining),
                None => (after.trim().to_string(), ""),
            },
        };
        params.push((key, value));
        rest = remaining.trim_start_matches(',').trim();
    }
    params
}

/// A token endpoint's reply. Some registries send `token`, some
/// `access_token`, some both.
#[derive(serde::Deserialize)]
pub struct TokenReply {
    pub token: Option<String>,
    pub access_token: Option<String>,
}

impl TokenReply {
    pub fn into_token(self) -> Option<String> {
        self.token.or(self.access_token)
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u32> = text
        .trim()
        .trim_end_matches('=')
        .bytes()
        .map(|c| BASE64.iter().position(|b| *b == c).map(|p| p as u32))
        .collect::<Option<_>>()?;
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, d)| n | (d << (18 - 6 * i)));
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for text in ["", "a", "ab", "abc", "user:pass", "ünïcode:p@ss"] {
            let encoded = base64_encode(text.as_bytes());
            assert_eq!(
                base64_decode(&encoded).unwrap(),
                text.as_bytes(),
                "{encoded}"
            );
        }
        assert_eq!(base64_encode(b"user:pass"), "dXNlcjpwYXNz");
    }

    #[test]
    fn docker_hubs_challenge() {
        let header = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#;
        assert_eq!(
            parse_bearer_challenge(header),
            Some(BearerChallenge {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            })
        );
        assert_eq!(parse_bearer_challenge(r#"Basic realm="x""#), None);
        let commas = r#"Bearer realm="r",scope="repository:a:pull,push""#;
        assert_eq!(
            parse_bearer_challenge(commas).unwrap().scope.unwrap(),
            "repository:a:pull,push"
        );
    }

    #[test]
    fn credentials_from_a_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"},"127.0.0.1:5000":{"auth":"YTpi"}}}"#,
        )
        .unwrap();
        let hub = from_config_file(&path, "docker.io").unwrap().unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("user", "pass")
        );
        let local = from_config_file(&path, "127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(local.username, "a");
        assert_eq!(from_config_file(&path, "quay.io").unwrap(), None);
        assert_eq!(
            from_config_file(&dir.path().join("none.json"), "x").unwrap(),
            None
        );
        assert!(
            !format!("{hub:?}").contains("pass\""),
            "debug output leaks the password"
        );
    }

    #[test]
    fn keys_are_docker_s() {
        assert_eq!(config_key("docker.io"), DOCKER_HUB_KEY);
        assert_eq!(config_key(""), DOCKER_HUB_KEY);
        assert_eq!(config_key("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(config_key("https://quay.io/"), "quay.io");
        for hub in [
            "docker.io",
            "index.docker.io",
            DOCKER_HUB_KEY,
            "https://docker.io",
        ] {
            assert!(key_names(hub, "docker.io"), "{hub}");
        }
        for quay in [
            "quay.io",
            "quay.io/",
            "https://quay.io",
            "http://quay.io/v1/",
        ] {
            assert!(key_names(quay, "quay.io"), "{quay}");
        }
        // A login for one namespace (Podman's) is not the registry's.
        assert!(!key_names("quay.io/team", "quay.io"));
        assert!(!key_names("quay.io:443", "quay.io"));
    }

    #[test]
    fn the_registry_s_own_key_is_read_first_then_its_other_spellings() {
        let path = Path::new("auth.json");
        let read = |text: &str, registry| from_config(text.as_bytes(), registry, path);
        // Podman wrote `docker.io`, berth (as Docker) the v1 URL: berth's is used.
        let both = r#"{"auths":{"docker.io":{"auth":"Ym9iOm9sZA=="},"https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"}}}"#;
        assert_eq!(read(both, "docker.io").unwrap().unwrap().username, "user");
        let podman = r#"{"auths":{"docker.io":{"auth":"Ym9iOm9sZA=="}}}"#;
        assert_eq!(read(podman, "docker.io").unwrap().unwrap().username, "bob");
        // A credential helper's placeholder is passed over.
        let helper =
            r#"{"auths":{"quay.io":{},"https://quay.io":{"auth":"YTpi"}},"credsStore":"x"}"#;
        assert_eq!(read(helper, "quay.io").unwrap().unwrap().username, "a");
        // An entry another tool wrote in another shape spoils only itself.
        let odd = r#"{"auths":{"quay.io":7,"127.0.0.1:5000":{"auth":"YTpi"}}}"#;
        assert_eq!(read(odd, "127.0.0.1:5000").unwrap().unwrap().username, "a");
        assert!(read(r#"{"auths":{"quay.io":{"auth":7}}}"#, "quay.io").is_err());
        assert!(
            read(
                r#"{"auths":{"quay.io":{"auth":"bm9jb2xvbg=="}}}"#,
                "quay.io"
            )
            .is_err()
        );
        assert_eq!(read("{}", "quay.io").unwrap(), None);
    }

    #[test]
    fn creds_flag() {
        assert_eq!(Credentials::parse("u:p:q").unwrap().password, "p:q");
        assert!(Credentials::parse("nopassword").is_err());
        assert!(Credentials::parse(":p").is_err());
    }
}
