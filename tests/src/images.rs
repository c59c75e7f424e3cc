//! Real image tooling for the stage 04 tests: a registry of our own on
//! 127.0.0.1 (Debian's `docker-registry`), images built with `umoci` from the
//! busybox rootfs, and pushed with `skopeo`. Nothing here is mocked.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Run a peer tool; panic with its output if it fails or is missing.
pub fn tool(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| {
        panic!("{program} is needed by the image tests and could not run ({e}); install it: apt-get install {program}")
    });
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A `docker-registry` listening on 127.0.0.1 only, storing in a temp dir,
/// with no auth. Killed and removed on drop.
pub struct TestRegistry {
    child: Child,
    _dir: TempDir,
    port: u16,
}

impl TestRegistry {
    pub fn start() -> TestRegistry {
        TestRegistry::start_with_auth(|_| String::new())
    }

    /// A registry that wants Bearer tokens from a [`TokenServer`] of its
    /// own, which hands them out for the login `user`:`password` only.
    pub fn start_with_tokens(user: &str, password: &str) -> (TestRegistry, TokenServer) {
        let tokens = TokenServer::start(user, password);
        let auth = tokens.registry_config();
        (TestRegistry::start_with_auth(|_| auth.clone()), tokens)
    }

    /// `auth` gives the config's `auth:` section (with its key), if any.
    fn start_with_auth(auth: impl Fn(&Path) -> String) -> TestRegistry {
        let dir = tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
                 delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{}",
                dir.path().join("data").display(),
                auth(dir.path())
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("docker-registry could not start ({e}); apt-get install docker-registry")
            });
        let registry = TestRegistry {
            child,
            _dir: dir,
            port,
        };
        registry.wait_until_ready();
        registry
    }

    /// The registry's own log (what it received and refused).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("registry.log")).unwrap_or_default()
    }

    /// `127.0.0.1:PORT`, as it appears in image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            // 401: up, and wanting a token.
            if matches!(http_get_status(&self.host(), "/v2/"), Some(200 | 401)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "docker-registry did not answer on {} within 15 s",
            self.host()
        );
    }

    /// `skopeo copy` an image from an OCI layout into this registry.
    /// `format` is `oci` or `v2s2` (Docker schema 2); `all` copies an index.
    pub fn push(&self, layout: &Path, tag: &str, repository: &str, format: &str, all: bool) {
        let source = format!("oci:{}:{tag}", layout.display());
        let dest = format!("docker://{}/{repository}", self.host());
        let mut args = vec![
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--format",
            format,
        ];
        if all {
            args.push("--all");
        }
        args.extend([source.as_str(), dest.as_str()]);
        tool("skopeo", &args);
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The status code of a plain `GET path` to `host`, or None if it is down.
pub fn http_get_status(host: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    reply.split(' ').nth(1)?.parse().ok()
}

/// Build an OCI layout at `layout` with the image `tag`: one layer holding
/// `rootfs`, and the given `umoci config` flags (e.g. `--config.cmd=/bin/sh`).
pub fn build_image(layout: &Path, tag: &str, rootfs: &Path, config: &[&str]) {
    let image = format!("{}:{tag}", layout.display());
    if !layout.join("index.json").exists() {
        tool("umoci", &["init", "--layout", &layout.to_string_lossy()]);
    }
    tool("umoci", &["new", "--image", &image]);
    tool(
        "umoci",
        &["insert", "--image", &image, &rootfs.to_string_lossy(), "/"],
    );
    if !config.is_empty() {
        let mut args = vec!["config", "--image", &image];
        args.extend(config);
        tool("umoci", &args);
    }
}

/// A layout directory inside `dir`, for `build_image`.
pub fn layout_in(dir: &Path) -> PathBuf {
    dir.join("layout")
}

/// Add to `layout` an image index `index_tag` holding the image `tag` (as
/// linux/amd64) and a copy of it that claims to be linux/arm64 (same layers,
/// a config saying arm64). Returns the amd64 and arm64 manifest digests.
pub fn add_multi_platform_index(layout: &Path, tag: &str, index_tag: &str) -> (String, String) {
    use serde_json::{Value, json};
    use stage04_images::digest::Digest;

    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let write_blob = |bytes: &[u8]| {
        let digest = Digest::of(bytes).to_string();
        std::fs::write(blob(&digest), bytes).unwrap();
        (digest, bytes.len())
    };
    let index_path = layout.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let amd64 = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap()
        .clone();
    let amd64_digest = amd64["digest"].as_str().unwrap().to_string();

    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(blob(&amd64_digest)).unwrap()).unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(blob(&config_digest)).unwrap()).unwrap();
    config["architecture"] = json!("arm64");
    let (arm_config, arm_config_size) = write_blob(&serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = json!(arm_config);
    manifest["config"]["size"] = json!(arm_config_size);
    let (arm_digest, arm_size) = write_blob(&serde_json::to_vec(&manifest).unwrap());

    let manifest_type = "application/vnd.oci.image.manifest.v1+json";
    let image_index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": manifest_type, "digest": arm_digest, "size": arm_size,
             "platform": {"architecture": "arm64", "os": "linux"}},
            {"mediaType": manifest_type, "digest": amd64_digest, "size": amd64["size"],
             "platform": {"architecture": "amd64", "os": "linux"}},
        ]
    });
    let (index_digest, index_size) = write_blob(&serde_json::to_vec(&image_index).unwrap());
    index["manifests"].as_array_mut().unwrap().push(json!({
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": index_digest,
        "size": index_size,
        "annotations": {"org.opencontainers.image.ref.name": index_tag},
    }));
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    (amd64_digest, arm_digest)
}

/// An image in a berth root: `rootfs` built into `busybox:latest` with
/// umoci, pushed to a registry of its own, and pulled (digests verified) into
/// a fresh state root. The registry lives as long as this does.
pub struct PulledImage {
    pub registry: TestRegistry,
    pub root: TempDir,
    /// The reference to run, `127.0.0.1:PORT/busybox:latest`.
    pub image: String,
}

impl PulledImage {
    pub fn new(work: &Path, rootfs: &Path) -> PulledImage {
        let registry = TestRegistry::start();
        let layout = work.join("pulled-layout");
        build_image(&layout, "latest", rootfs, &[]);
        registry.push(&layout, "latest", "busybox:latest", "oci", false);
        let root = tempfile::Builder::new()
            .prefix("berth-root-")
            .tempdir()
            .unwrap();
        let image = format!("{}/busybox:latest", registry.host());
        let pulled = Command::new(crate::bin("stage04-images"))
            .arg("--root")
            .arg(root.path())
            .args(["pull", &image])
            .output()
            .unwrap();
        assert!(
            pulled.status.success(),
            "pull {image}: {}",
            String::from_utf8_lossy(&pulled.stderr)
        );
        PulledImage {
            registry,
            root,
            image,
        }
    }
}

/// A token service in the shape of Docker Hub's `auth.docker.io/token`, for
/// a real `docker-registry` configured with `auth: token:`. It checks the
/// Basic login, and signs a JWT (RS256, with its certificate in the `x5c`
/// header, which the registry checks against its `rootcertbundle`) granting
/// every scope asked for. Counts the tokens it gave.
pub struct TokenServer {
    dir: TempDir,
    host: String,
    issued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

const TOKEN_SERVICE: &str = "berth-test-registry";
const TOKEN_ISSUER: &str = "berth-test-issuer";

impl TokenServer {
    pub fn start(user: &str, password: &str) -> TokenServer {
        let dir = tempfile::Builder::new()
            .prefix("berth-tokens-")
            .tempdir()
            .unwrap();
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        tool(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=berth-test-token-issuer",
                "-keyout",
                &key.to_string_lossy(),
                "-out",
                &cert.to_string_lossy(),
            ],
        );
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .unwrap()
            .stdout;
        let x5c = base64(&der, false);
        let login = format!(
            "Basic {}",
            base64(format!("{user}:{password}").as_bytes(), false)
        );
        let user = user.to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let issued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = issued.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (path, authorization) = read_request(&stream);
                let reply = if authorization != login {
                    (
                        "401 Unauthorized",
                        String::from("{\"details\":\"bad login\"}"),
                    )
                } else {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let token = sign_token(&key, &x5c, &user, &scopes_in(&path));
                    (
                        "200 OK",
                        format!("{{\"token\":\"{token}\",\"expires_in\":300}}"),
                    )
                };
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                    reply.0,
                    reply.1.len(),
                    reply.1
                );
            }
        });
        TokenServer { dir, host, issued }
    }

    /// The registry config's `auth:` section that trusts this server.
    pub fn registry_config(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: http://{}/token\n    service: {TOKEN_SERVICE}\n    \
             issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
            self.host,
            self.dir.path().join("cert.pem").display()
        )
    }

    /// How many tokens it handed out so far.
    pub fn issued(&self) -> usize {
        self.issued.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The path and the Authorization header of one HTTP request.
pub fn read_request(stream: &TcpStream) -> (String, String) {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(stream);
    let mut request = String::new();
    let _ = reader.read_line(&mut request);
    let mut authorization = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
        {
            authorization = value.trim().to_string();
        }
    }
    let path = request.split(' ').nth(1).unwrap_or("").to_string();
    (path, authorization)
}

/// The `scope=` parameters of a token request, percent-decoded, each split
/// on spaces (one parameter may carry several).
fn scopes_in(path: &str) -> Vec<String> {
    let query = path.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("scope="))
        .flat_map(|value| {
            percent_decode(value)
                .split(' ')
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .filter(|s| !s.is_empty())
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A JWT granting each `type:name:actions` scope, signed with `key`.
fn sign_token(key: &Path, x5c: &str, user: &str, scopes: &[String]) -> String {
    use serde_json::json;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|scope| {
            // `repository:a/b:pull,push`; a name may hold a port's colon.
            let (kind, rest) = scope.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            Some(json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
        })
        .collect();
    let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
    let claims = json!({
        "iss": TOKEN_ISSUER, "sub": user, "aud": TOKEN_SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now,
        "jti": format!("berth-{now}-{}", std::process::id()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        base64(header.to_string().as_bytes(), true),
        base64(claims.to_string().as_bytes(), true)
    );
    let mut openssl = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    openssl
        .stdin
        .take()
        .unwrap()
        .write_all(signing_input.as_bytes())
        .unwrap();
    let signature = openssl.wait_with_output().unwrap().stdout;
    format!("{signing_input}.{}", base64(&signature, true))
}

/// base64, standard or (for JWTs) URL-safe without padding.
pub fn base64(bytes: &[u8], url: bool) -> String {
    let alphabet: &[u8; 64] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(alphabet[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else if !url {
                out.push('=');
            }
        }
    }
    out
}
