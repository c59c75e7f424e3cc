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
        let dir = tempfile::Builder::new().prefix("berth-registry-").tempdir().unwrap();
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
            .unwrap_or_else(|e| panic!("docker-registry could not start ({e}); apt-get install docker-registry"));
        let registry = TestRegistry { child, _dir: dir, port };
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
        panic!("docker-registry did not answer on {} within 15 s", self.host());
    }

    /// `skopeo copy` an image from an OCI layout into this registry.
    /// `format` is `oci` or `v2s2` (Docker schema 2); `all` copies an index.
    pub fn push(&self, layout: &Path, tag: &str, repository: &str, format: &str, all: bool) {
        let source = format!("oci:{}:{tag}", layout.display());
        let dest = format!("docker://{}/{repository}", self.host());
        let mut args = vec!["copy", "--quiet", "--dest-tls-verify=false", "--format", format];
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
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The status code of a plain `GET path` to `host`, or None if it is down.
pub fn http_get_status(host: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").ok()?;
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
    tool("umoci", &["insert", "--image", &image, &rootfs.to_string_lossy(), "/"]);
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
