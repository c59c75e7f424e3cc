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
                 delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
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

    /// `127.0.0.1:PORT`, as it appears in image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if http_get_status(&self.host(), "/v2/") == Some(200) {
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
