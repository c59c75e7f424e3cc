//! Image references: `busybox`, `alpine:3.20`, `ghcr.io/org/app@sha256:...`.
//!
//! A reference names an image the way `docker pull` does. Short names are
//! filled in by the same rules as Docker's `distribution/reference`
//! package, so `busybox` means `docker.io/library/busybox:latest` here too
//! and a user's muscle memory keeps working.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use stage01_chroot::Error;

use crate::digest::Digest;

/// Docker Hub's name in references, and the host its API really lives on.
pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// Old clients wrote Docker Hub as `index.docker.io`; Docker still accepts it.
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
/// Official images live under `library/` on Docker Hub: `busybox` is
/// really `library/busybox`.
const OFFICIAL_NAMESPACE: &str = "library";
const DEFAULT_TAG: &str = "latest";
/// Docker refuses names longer than this (registry + '/' + repository).
const MAX_NAME_LEN: usize = 255;
/// A tag is one word character then up to 127 of `[\w.-]`.
const MAX_TAG_LEN: usize = 128;

/// A fully normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io`, `ghcr.io`, `localhost:5000`...
    pub registry: String,
    /// `library/busybox`, `org/app`: lowercase path components.
    pub repository: String,
    /// `latest` unless the user gave another tag or only a digest.
    pub tag: Option<String>,
    /// When present, this is what gets pulled: a digest can't move, a tag can.
    pub digest: Option<Digest>,
}

impl Reference {
    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The host to send API requests to. Docker Hub is named `docker.io` in
    /// references but serves the registry API from `registry-1.docker.io`.
    pub fn registry_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// Whether plain HTTP is allowed without asking: only for registries on
    /// this machine (`localhost`, `127.0.0.0/8`, `[::1]`, any port), where
    /// nobody can sit between us and the registry. Everything else is HTTPS.
    pub fn is_insecure_default(&self) -> bool {
        let host = host_without_port(&self.registry);
        host == "localhost"
            || host == "[::1]"
            || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// What goes after `/manifests/` in the registry API: the digest if we
    /// have one (it pins the content), else the tag.
    pub fn reference_for_api(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            // Parsing always sets one of them; `latest` is the safe meaning.
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }
}

// ANCHOR: parse
impl FromStr for Reference {
    type Err = Error;

    /// Parse like `docker pull`: split off `@digest`, then `:tag`, then
    /// decide whether the first path component is a registry.
    fn from_str(text: &str) -> Result<Reference, Error> {
        if text.is_empty() {
            return Err(invalid(
                text,
                "it is empty; give an image name such as busybox",
            ));
        }
        if is_64_hex(text) {
            return Err(invalid(
                text,
                "a bare 64-hex string looks like an image ID, not a name; \
                 write name@sha256:<hex> to pull by digest",
            ));
        }
        let (rest, digest) = split_digest(text)?;
        let (name, tag) = split_tag(text, rest)?;
        let (registry, repository) = split_registry(name);
        check_registry(text, &registry)?;
        check_repository(text, &repository)?;
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(invalid(
                text,
                "the name is longer than 255 characters; registries refuse it",
            ));
        }
        // No tag and no digest means `latest`, as in Docker.
        let tag = match (tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (tag, _) => tag,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}
// ANCHOR_END: parse

impl fmt::Display for Reference {
    /// The full normalized form: `docker.io/library/busybox:latest`,
    /// `docker.io/library/busybox@sha256:...`, or both tag and digest.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// `name@sha256:...` -> (`name`, digest). The digest is checked now, so a
/// typo fails here rather than as a confusing 404 from the registry.
fn split_digest(text: &str) -> Result<(&str, Option<Digest>), Error> {
    let Some((rest, digest)) = text.split_once('@') else {
        return Ok((text, None));
    };
    let digest = digest.parse::<Digest>().map_err(|err| {
        invalid(
            text,
            &format!("bad digest after '@' ({err}); only sha256 digests are supported"),
        )
    })?;
    Ok((rest, Some(digest)))
}

/// `name:tag` -> (`name`, tag). A ':' before the last '/' belongs to a
/// registry port (`localhost:5000/app`), not to a tag.
fn split_tag<'a>(text: &str, rest: &'a str) -> Result<(&'a str, Option<String>), Error> {
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let Some(colon) = rest[last_slash..].rfind(':').map(|i| i + last_slash) else {
        return Ok((rest, None));
    };
    let tag = &rest[colon + 1..];
    if !is_valid_tag(tag) {
        return Err(invalid(
            text,
            &format!(
                "bad tag {tag:?}: a tag is a letter, digit or '_', then up to 127 \
                 letters, digits, '_', '.' or '-'"
            ),
        ));
    }
    Ok((&rest[..colon], Some(tag.to_string())))
}

/// Split `host[:port]/path` from `path`, and fill in Docker Hub's defaults.
/// The first component is a registry iff it contains '.' or ':' or is
/// `localhost`: that is how `user/repo` differs from `ghcr.io/repo`.
fn split_registry(name: &str) -> (String, String) {
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            (first, rest.to_string())
        }
        _ => (DOCKER_HUB, name.to_string()),
    };
    let registry = if registry == DOCKER_HUB_LEGACY {
        DOCKER_HUB
    } else {
        registry
    };
    let repository = if registry == DOCKER_HUB && !repository.contains('/') {
        format!("{OFFICIAL_NAMESPACE}/{repository}")
    } else {
        repository
    };
    (registry.to_string(), repository)
}

fn is_valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_TAG_LEN
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `host[:port]` where host is DNS labels, an IPv4 address or `[IPv6]`.
fn check_registry(text: &str, registry: &str) -> Result<(), Error> {
    let host = host_without_port(registry);
    let port = &registry[host.len()..];
    let port_ok =
        port.is_empty() || (port.len() > 1 && port[1..].bytes().all(|b| b.is_ascii_digit()));
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(ipv6) => !ipv6.is_empty() && ipv6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':'),
        None => !host.is_empty() && host.split('.').all(is_dns_label),
    };
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(invalid(
            text,
            &format!(
                "bad registry {registry:?}: expected host[:port], e.g. ghcr.io or localhost:5000"
            ),
        ))
    }
}

/// `registry.example:5000` -> `registry.example`; `[::1]:5000` -> `[::1]`.
fn host_without_port(registry: &str) -> &str {
    let after_bracket = registry.rfind(']').map_or(0, |i| i + 1);
    match registry[after_bracket..].rfind(':') {
        Some(i) => &registry[..after_bracket + i],
        None => registry,
    }
}

fn is_dns_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    !bytes.is_empty()
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Each path component is `[a-z0-9]+` joined by `.`, `_`, `__` or runs of
/// `-`. Registries store names case-sensitively, so Docker insists on
/// lowercase and so do we.
fn check_repository(text: &str, repository: &str) -> Result<(), Error> {
    if repository.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(invalid(
            text,
            &format!("repository name {repository:?} must be lowercase"),
        ));
    }
    match repository.split('/').find(|c| !is_path_component(c)) {
        None => Ok(()),
        Some(bad) => Err(invalid(
            text,
            &format!(
                "bad repository component {bad:?}: use lowercase letters and digits, \
                 separated by '.', '_', '__' or '-'"
            ),
        )),
    }
}

fn is_path_component(component: &str) -> bool {
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) || !bytes.iter().all(|b| alnum(b) || b"._-".contains(b)) {
        return false;
    }
    // Between two alphanumeric runs: one '.', one or two '_', or any '-'s.
    component
        .split(|c: char| c.is_ascii_alphanumeric())
        .filter(|sep| !sep.is_empty())
        .all(|sep| matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-'))
}

fn is_64_hex(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn invalid(text: &str, why: &str) -> Error {
    Error::Other(format!("invalid image reference {text:?}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parse(text: &str) -> Reference {
        text.parse()
            .unwrap_or_else(|err| panic!("{text} refused: {err}"))
    }

    fn refused(text: &str) -> String {
        match text.parse::<Reference>() {
            Ok(r) => panic!("{text:?} accepted as {r}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn short_names_are_normalized_like_docker() {
        for (short, full) in [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("user/repo", "docker.io/user/repo:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
            ),
            (
                "docker.io/library/busybox:latest",
                "docker.io/library/busybox:latest",
            ),
            ("a/b/c", "docker.io/a/b/c:latest"),
            ("ghcr.io/org/app:v1.2", "ghcr.io/org/app:v1.2"),
            ("quay.io/app", "quay.io/app:latest"),
            ("localhost/repo", "localhost/repo:latest"),
            ("localhost:5000/repo", "localhost:5000/repo:latest"),
            ("host:5000/repo:tag", "host:5000/repo:tag"),
            ("127.0.0.1:5000/a/b:t", "127.0.0.1:5000/a/b:t"),
            ("[::1]:5000/a", "[::1]:5000/a:latest"),
            (
                "my_app.x__y-z--w",
                "docker.io/library/my_app.x__y-z--w:latest",
            ),
        ] {
            assert_eq!(parse(short).to_string(), full, "{short}");
        }
    }

    #[test]
    fn the_parts_are_split_out() {
        let r = parse("127.0.0.1:5000/a/b:t");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "a/b");
        assert_eq!(r.tag.as_deref(), Some("t"));
        assert_eq!(r.digest, None);
        assert_eq!(r.name(), "127.0.0.1:5000/a/b");
        assert_eq!(r.reference_for_api(), "t");
    }

    #[test]
    fn digest_references_pull_the_digest() {
        let r = parse(&format!("busybox@sha256:{HEX}"));
        assert_eq!(r.tag, None);
        assert_eq!(r.digest, Some(format!("sha256:{HEX}").parse().unwrap()));
        assert_eq!(
            r.to_string(),
            format!("docker.io/library/busybox@sha256:{HEX}")
        );
        assert_eq!(r.reference_for_api(), format!("sha256:{HEX}"));

        let both = parse(&format!("localhost:5000/app:1.0@sha256:{HEX}"));
        assert_eq!(both.tag.as_deref(), Some("1.0"));
        assert_eq!(both.reference_for_api(), format!("sha256:{HEX}"));
        assert_eq!(
            both.to_string(),
            format!("localhost:5000/app:1.0@sha256:{HEX}")
        );
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "busybox",
            "ghcr.io/org/app:v1",
            format!("localhost:5000/a@sha256:{HEX}").as_str(),
        ] {
            let once = parse(text);
            assert_eq!(parse(&once.to_string()), once);
        }
    }

    #[test]
    fn docker_hub_is_reached_through_its_api_host() {
        assert_eq!(parse("busybox").registry_host(), "registry-1.docker.io");
        assert_eq!(parse("ghcr.io/a/b").registry_host(), "ghcr.io");
        assert_eq!(parse("localhost:5000/a").registry_host(), "localhost:5000");
    }

    #[test]
    fn only_local_registries_default_to_plain_http() {
        for local in [
            "localhost/a",
            "localhost:5000/a",
            "127.0.0.1:5000/a",
            "127.0.0.2/a",
            "[::1]:5000/a",
        ] {
            assert!(parse(local).is_insecure_default(), "{local}");
        }
        for remote in [
            "busybox",
            "ghcr.io/a",
            "10.0.0.1:5000/a",
            "localhost.example.com/a",
            "mylocalhost:5000/a",
        ] {
            assert!(!parse(remote).is_insecure_default(), "{remote}");
        }
    }

    #[test]
    fn the_first_component_is_a_registry_only_if_it_looks_like_a_host() {
        assert_eq!(parse("user/repo").registry, "docker.io");
        assert_eq!(parse("localhost/repo").registry, "localhost");
        assert_eq!(parse("my.reg/repo").registry, "my.reg");
        assert_eq!(parse("reg:1/repo").registry, "reg:1");
        // A single component is always a repository, even with a dot.
        assert_eq!(parse("my.app").repository, "library/my.app");
    }

    #[test]
    fn invalid_references_are_refused_with_the_reason() {
        assert!(refused("").contains("empty"));
        assert!(refused("Busybox").contains("lowercase"));
        assert!(refused("ghcr.io/Org/app").contains("lowercase"));
        assert!(refused("busybox:").contains("bad tag"));
        assert!(refused("busybox:-x").contains("bad tag"));
        assert!(refused(&format!("busybox:{}", "a".repeat(129))).contains("bad tag"));
        assert!(refused("busybox@sha256:abc").contains("bad digest"));
        assert!(refused("busybox@md5:abc").contains("bad digest"));
        assert!(refused(HEX).contains("image ID"));
        assert!(refused(&format!("{}/a", "x".repeat(300))).contains("255"));
        for bad in [
            "a//b",
            "/a",
            "a/",
            "a..b",
            "a___b",
            "-a",
            "a-",
            "a b",
            "a/b!c",
            "bad_host.io:x/a",
            "[::1/a",
            ":5000/a",
            "host:/a",
            "a:b:c",
        ] {
            refused(bad);
        }
        // The tag grammar allows up to 128 characters.
        parse(&format!("busybox:{}", "a".repeat(128)));
    }
}
