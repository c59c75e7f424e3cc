//! A client for the OCI distribution API, the HTTP protocol of registries.
//!
//! Pulling needs only two kinds of request, both below `/v2/<name>/`:
//! - `GET manifests/<tag or digest>`: the manifest (or an index of
//!   manifests, one per platform), with `Accept` listing the formats we read;
//! - `GET blobs/<digest>`: a config or a layer, by content address.
//!
//! Anonymous pulls from Docker Hub still need a token: the first request is
//! answered `401` with a `WWW-Authenticate: Bearer realm=...` challenge, we
//! ask the realm for a token (with a login, if we have one) and retry.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use stage01_chroot::Error;
use stage03_cgroups::limits::format_size;
use ureq::http::Response;
use ureq::{Agent, Body};

use crate::auth::{self, Credentials};
use crate::bounds::MAX_DOCUMENT_SIZE;
use crate::digest::Digest;
use crate::reference::Reference;
use crate::spec;

/// How to reach registries: which may use plain HTTP, which login to use.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Registries (`host:port`) to reach over plain HTTP. `localhost` and
    /// `127.0.0.1` always may.
    pub insecure_registries: Vec<String>,
    /// A login for this pull (`--creds`); else the auth file is consulted.
    pub credentials: Option<Credentials>,
    /// A Docker-style config.json with logins (default ~/.docker/config.json).
    pub auth_file: Option<PathBuf>,
}

/// The manifest formats we read, in order of preference.
pub const MANIFEST_ACCEPT: &[&str] = &[
    spec::MEDIA_TYPE_OCI_INDEX,
    spec::MEDIA_TYPE_OCI_MANIFEST,
    spec::MEDIA_TYPE_DOCKER_MANIFEST_LIST,
    spec::MEDIA_TYPE_DOCKER_MANIFEST,
];

/// One repository on one registry.
pub struct Registry {
    agent: Agent,
    /// `https://registry-1.docker.io`
    origin: String,
    /// `https://registry-1.docker.io/v2/library/busybox`
    base: String,
    registry: String,
    credentials: Option<Credentials>,
    /// The `Authorization` header value once a challenge was answered.
    authorization: Option<String>,
}

impl Registry {
    pub fn connect(reference: &Reference, options: &RegistryOptions) -> Result<Registry, Error> {
        let insecure = reference.is_insecure_default()
            || options.insecure_registries.contains(&reference.registry);
        let scheme = if insecure { "http" } else { "https" };
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false) // we read 401s and their challenge
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let credentials = match &options.credentials {
            Some(credentials) => Some(credentials.clone()),
            None => match options.auth_file.clone().or_else(auth::default_config_path) {
                Some(path) => auth::from_config_file(&path, &reference.registry)?,
                None => None,
            },
        };
        let origin = format!("{scheme}://{}", reference.registry_host());
        Ok(Registry {
            agent,
            base: format!("{origin}/v2/{}", reference.repository),
            origin,
            registry: reference.registry.clone(),
            credentials,
            authorization: None,
        })
    }

    // ANCHOR: manifest
    /// Fetch a manifest (or index) by tag or digest: its bytes and media type.
    /// `declared` is its size when a descriptor (an index entry) names it:
    /// then no byte beyond it is read. Never more than
    /// [`MAX_DOCUMENT_SIZE`] is read either way.
    pub fn manifest(
        &mut self,
        tag_or_digest: &str,
        declared: Option<u64>,
    ) -> Result<(Vec<u8>, String), Error> {
        let what = format!("manifest {tag_or_digest}");
        let limit = declared.unwrap_or(MAX_DOCUMENT_SIZE);
        if limit > MAX_DOCUMENT_SIZE {
            return Err(Error::Other(format!(
                "{what} on {} is declared {} bytes, but no manifest may be larger than {}; \
                 refusing the image (it is malformed or hostile)",
                self.registry,
                limit,
                format_size(MAX_DOCUMENT_SIZE)
            )));
        }
        let mut response = self.get(
            &format!("manifests/{tag_or_digest}"),
            &MANIFEST_ACCEPT.join(", "),
        )?;
        self.expect_ok(&response, &what)?;
        let media_type = header(&response, "content-type")
            .map(|v| v.split(';').next().unwrap_or("").trim().to_string());
        let bytes = response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => Error::Other(format!(
                    "{what} from {} is larger than {limit} bytes, {}; refusing the image \
                     (it is malformed or hostile)",
                    self.registry,
                    match declared {
                        Some(_) => "the size its descriptor declares",
                        None => "more than any manifest may be",
                    }
                )),
                other => self.failed(&what, other),
            })?;
        // Asked by digest: what came back must be exactly that.
        if let Ok(expected) = tag_or_digest.parse::<Digest>() {
            let actual = Digest::of(&bytes);
            if actual != expected {
                return Err(Error::Other(format!(
                    "digest mismatch for {what} from {}: got {actual}",
                    self.registry
                )));
            }
        }
        let media_type = match media_type.filter(|m| !m.is_empty() && m != "application/json") {
            Some(media_type) => media_type,
            None => media_type_in(&bytes),
        };
        Ok((bytes, media_type))
    }
    // ANCHOR_END: manifest

    /// Start downloading a blob: a reader of its bytes and their length if
    /// the registry said. The caller verifies the digest while storing it.
    pub fn blob(&mut self, digest: &Digest) -> Result<(impl Read + use<>, Option<u64>), Error> {
        let response = self.get(&format!("blobs/{digest}"), "*/*")?;
        self.expect_ok(&response, &format!("blob {digest}"))?;
        let length = response.body().content_length();
        Ok((response.into_body().into_reader(), length))
    }

    /// GET below the repository, answering an auth challenge once.
    fn get(&mut self, path: &str, accept: &str) -> Result<Response<Body>, Error> {
        let url = self.url(path);
        self.call_authorized(&url, |agent, authorization| {
            let mut request = agent.get(&url).header("Accept", accept);
            if let Some(authorization) = authorization {
                request = request.header("Authorization", authorization);
            }
            request.call()
        })
    }

    /// Make a request to `url` with `call` (given our agent and the
    /// `Authorization` value, if we have one); if the registry answers 401,
    /// answer its challenge and make it once more. `call` may run twice, so
    /// it builds the request (and its body) afresh each time. A URL on
    /// another host (an upload location on a storage service) gets no login
    /// or token, and its challenges are not answered. The engine's `push`
    /// sends its HEAD, POST, PATCH and PUT requests through here.
    pub fn call_authorized(
        &mut self,
        url: &str,
        mut call: impl FnMut(&Agent, Option<&str>) -> Result<Response<Body>, ureq::Error>,
    ) -> Result<Response<Body>, Error> {
        if !self.same_origin(url) {
            return call(&self.agent, None).map_err(|e| self.failed(url, e));
        }
        let response =
            call(&self.agent, self.authorization.as_deref()).map_err(|e| self.failed(url, e))?;
        if response.status() != 401 {
            return Ok(response);
        }
        let challenge = header(&response, "www-authenticate").unwrap_or_default();
        self.authorization = Some(self.answer(&challenge)?);
        call(&self.agent, self.authorization.as_deref()).map_err(|e| self.failed(url, e))
    }

    /// The URL of `path` below this repository (`blobs/uploads/`...).
    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// A URL the registry sent back (an upload's `Location`), made absolute.
    pub fn resolve_location(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}{location}", self.origin)
        }
    }

    /// Whether `url` is on the registry itself (same scheme, host and
    /// port): only there may our login or token go.
    pub fn same_origin(&self, url: &str) -> bool {
        url.strip_prefix(&self.origin)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// The registry's name, as in references (`127.0.0.1:5000`).
    pub fn name(&self) -> &str {
        &self.registry
    }

    /// Check that we may talk to the registry at all (`GET /v2/`): what
    /// `login` does to test a password before saving it.
    pub fn ping(&mut self) -> Result<(), Error> {
        let v2 = format!("{}/v2/", self.origin);
        let response = self.call_authorized(&v2, |agent, authorization| {
            let mut request = agent.get(&v2);
            if let Some(authorization) = authorization {
                request = request.header("Authorization", authorization);
            }
            request.call()
        })?;
        self.expect_ok(&response, "the API root /v2/")
    }

    // ANCHOR: answer
    /// Turn a `WWW-Authenticate` challenge into an `Authorization` value.
    fn answer(&self, challenge: &str) -> Result<String, Error> {
        if challenge.trim_start().starts_with("Basic") {
            return self
                .credentials
                .as_ref()
                .map(Credentials::basic_header)
                .ok_or_else(|| {
                    Error::Other(format!(
                        "{} wants a login: pass --creds USER:PASSWORD",
                        self.registry
                    ))
                });
        }
        let Some(bearer) = auth::parse_bearer_challenge(challenge) else {
            return Err(Error::Other(format!(
                "{} answered 401 with a challenge we don't understand: {challenge:?}",
                self.registry
            )));
        };
        let mut url = bearer.realm.clone();
        // One challenge may ask for several scopes, space-separated (a push
        // that mounts a blob needs `pull` on the repository it comes from):
        // each becomes a `scope=` parameter of its own.
        let scopes = bearer.scope.iter().flat_map(|s| s.split_whitespace());
        let query: Vec<String> = bearer
            .service
            .iter()
            .map(|service| ("service", service.as_str()))
            .chain(scopes.map(|scope| ("scope", scope)))
            .map(|(key, value)| format!("{key}={}", percent_encode(value)))
            .collect();
        if !query.is_empty() {
            url = format!(
                "{url}{}{}",
                if url.contains('?') { '&' } else { '?' },
                query.join("&")
            );
        }
        let mut request = self.agent.get(&url);
        if let Some(credentials) = &self.credentials {
            request = request.header("Authorization", credentials.basic_header());
        }
        let mut response = request.call().map_err(|e| self.failed(&url, e))?;
        if response.status() != 200 {
            return Err(Error::Other(format!(
                "the token service {} refused us ({}): check the login (--creds or the auth file)",
                bearer.realm,
                response.status()
            )));
        }
        let reply: auth::TokenReply = response
            .body_mut()
            .read_json()
            .map_err(|e| self.failed(&bearer.realm, e))?;
        let token = reply
            .into_token()
            .ok_or_else(|| Error::Other(format!("{} sent no token", bearer.realm)))?;
        Ok(format!("Bearer {token}"))
    }
    // ANCHOR_END: answer

    fn expect_ok(&self, response: &Response<Body>, what: &str) -> Result<(), Error> {
        match response.status().as_u16() {
            200 => Ok(()),
            401 | 403 => Err(Error::Other(format!(
                "{} refused access to {what} ({}): the image may be private; log in with --creds",
                self.registry,
                response.status()
            ))),
            404 => Err(Error::Other(format!(
                "{what} not found on {}",
                self.registry
            ))),
            status => Err(Error::Other(format!(
                "{} answered {status} for {what}",
                self.registry
            ))),
        }
    }

    fn failed(&self, what: &str, err: ureq::Error) -> Error {
        Error::Other(format!("talking to {} for {what}: {err}", self.registry))
    }
}

/// Registries that don't say send the media type inside the JSON, or
/// (old OCI) not at all: then `manifests` means an index.
fn media_type_in(bytes: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Peek {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Peek>(bytes) {
        Ok(Peek {
            media_type: Some(media_type),
            ..
        }) => media_type,
        Ok(Peek {
            manifests: Some(_), ..
        }) => spec::MEDIA_TYPE_OCI_INDEX.into(),
        _ => spec::MEDIA_TYPE_OCI_MANIFEST.into(),
    }
}

fn header(response: &Response<Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)?
        .to_str()
        .ok()
        .map(String::from)
}

/// Percent-encode a query value (RFC 3986 unreserved characters stay).
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_made_absolute() {
        let reference: Reference = "127.0.0.1:5000/team/app:1".parse().unwrap();
        let registry = Registry::connect(&reference, &RegistryOptions::default()).unwrap();
        assert_eq!(
            registry.url("blobs/uploads/"),
            "http://127.0.0.1:5000/v2/team/app/blobs/uploads/"
        );
        assert_eq!(
            registry.resolve_location("/v2/team/app/blobs/uploads/u1?_state=x"),
            "http://127.0.0.1:5000/v2/team/app/blobs/uploads/u1?_state=x"
        );
        let absolute = "https://cdn.example/upload/u1";
        assert_eq!(registry.resolve_location(absolute), absolute);
        assert!(registry.same_origin("http://127.0.0.1:5000/v2/x"));
        assert!(!registry.same_origin(absolute));
        assert!(!registry.same_origin("http://127.0.0.1:50001/v2/x"));
        assert!(!registry.same_origin("http://127.0.0.1:5000.evil/v2/x"));
    }

    #[test]
    fn scopes_are_percent_encoded() {
        assert_eq!(
            percent_encode("repository:library/busybox:pull"),
            "repository%3Alibrary%2Fbusybox%3Apull"
        );
    }
}
