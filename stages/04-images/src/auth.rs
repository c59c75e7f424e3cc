//! Registry credentials: from `--creds USER:PASS`, or from a Docker-style
//! `config.json` (`{"auths": {"registry": {"auth": base64("user:pass")}}}`),
//! and the Bearer-token dance registries like Docker Hub ask for.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use stage01_chroot::Error;

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

#[derive(serde::Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(serde::Deserialize)]
struct AuthEntry {
    auth: Option<String>,
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
/// Docker Hub is stored under its old v1 URL, so `docker.io` looks there too.
pub fn from_config_file(path: &Path, registry: &str) -> Result<Option<Credentials>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", path, e)),
    };
    let config: DockerConfig = serde_json::from_str(&text)
        .map_err(|e| Error::Other(format!("{}: not a Docker config file: {e}", path.display())))?;
    let mut keys = vec![registry.to_string(), format!("https://{registry}")];
    if registry == "docker.io" {
        keys.push("https://index.docker.io/v1/".into());
    }
    let Some(entry) = keys.iter().find_map(|key| config.auths.get(key)) else {
        return Ok(None);
    };
    let Some(encoded) = &entry.auth else {
        return Ok(None);
    };
    let decoded = base64_decode(encoded)
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| {
            Error::Other(format!(
                "{}: the auth for {registry} is not base64 of user:password",
                path.display()
            ))
        })?;
    Credentials::parse(&decoded).map(Some)
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
    fn creds_flag() {
        assert_eq!(Credentials::parse("u:p:q").unwrap().password, "p:q");
        assert!(Credentials::parse("nopassword").is_err());
        assert!(Credentials::parse(":p").is_err());
    }
}
