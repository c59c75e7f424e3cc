//! Stage 04 on the real kernel, against a real registry: pull, verify,
//! store, load, unpack, overlay, run.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::prelude::*;
use berth_tests::images::{TestRegistry, add_multi_platform_index, build_image, tool};
use berth_tests::{Fixture, bin, root_or_skip};
use predicates::prelude::*;
use stage04_images::digest::Digest;

/// A registry holding `busybox:latest`, built from the test rootfs with a
/// Cmd, Env and WorkingDir, and an empty berth root to pull into.
struct Lab {
    fx: Fixture,
    registry: TestRegistry,
    layout: PathBuf,
    root: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        let fx = Fixture::new();
        let registry = TestRegistry::start();
        let layout = fx.dir().join("layout");
        build_image(
            &layout,
            "latest",
            &fx.rootfs(),
            &[
                "--config.cmd=/bin/echo",
                "--config.cmd=from-cmd",
                "--config.env=GREETING=hello",
                "--config.workingdir=/work",
            ],
        );
        registry.push(&layout, "latest", "busybox:latest", "oci", false);
        let root = tempfile::Builder::new()
            .prefix("berth-root-")
            .tempdir()
            .unwrap();
        Lab {
            fx,
            registry,
            layout,
            root,
        }
    }

    fn image(&self, name: &str) -> String {
        format!("{}/{name}", self.registry.host())
    }

    fn berth(&self) -> Command {
        let mut command = Command::new(bin("stage04-images"));
        command.arg("--root").arg(self.root.path());
        command
    }

    fn pull(&self, name: &str) -> String {
        let out = self
            .berth()
            .args(["pull", &self.image(name)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pull {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let digest = stdout
            .lines()
            .find_map(|l| l.strip_prefix("Digest: "))
            .unwrap();
        digest.to_string()
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.berth().arg("run").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "run {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn store(&self) -> PathBuf {
        self.root.path().join("images")
    }
}

#[test]
fn pull_by_tag_and_by_digest_then_run_with_the_images_config() {
    if !root_or_skip("pull_by_tag_and_by_digest_then_run_with_the_images_config") {
        return;
    }
    let lab = Lab::new();
    let digest = lab.pull("busybox");
    let by_digest = format!("busybox@{digest}");
    assert_eq!(lab.pull(&by_digest), digest);
    lab.berth()
        .arg("images")
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "{}:latest",
            lab.image("busybox")
        )))
        .stdout(predicate::str::contains(lab.image(&by_digest)));

    let image = lab.image("busybox");
    assert_eq!(lab.run(&[&image]), "from-cmd\n", "Cmd");
    assert_eq!(
        lab.run(&[
            &image,
            "sh",
            "-c",
            "pwd; echo $GREETING; cat /berth-rootfs-marker"
        ]),
        "/work\nhello\ninside\n",
        "WorkingDir, Env and the image's files"
    );
    assert_eq!(
        lab.run(&["--entrypoint", "/bin/echo", &image, "hi"]),
        "hi\n"
    );
    assert_eq!(
        lab.run(&[
            "-e",
            "GREETING=bye",
            "-w",
            "/tmp",
            &image,
            "sh",
            "-c",
            "pwd; echo $GREETING"
        ]),
        "/tmp\nbye\n"
    );
    assert_eq!(lab.run(&["-u", "nobody", &image, "id", "-u"]), "65534\n");
}

#[test]
fn a_second_pull_downloads_nothing() {
    if !root_or_skip("a_second_pull_downloads_nothing") {
        return;
    }
    let lab = Lab::new();
    lab.berth()
        .args(["pull", &lab.image("busybox")])
        .assert()
        .success()
        .stderr(predicate::str::contains("Copying blob").count(2));
    lab.berth()
        .args(["pull", &lab.image("busybox")])
        .assert()
        .success()
        .stderr(predicate::str::contains("Already have blob").count(2))
        .stderr(predicate::str::contains("Copying blob").not());
}

#[test]
fn an_index_yields_the_image_for_this_platform() {
    if !root_or_skip("an_index_yields_the_image_for_this_platform") {
        return;
    }
    let lab = Lab::new();
    let (amd64, arm64) = add_multi_platform_index(&lab.layout, "latest", "multi");
    lab.registry
        .push(&lab.layout, "multi", "multi:latest", "oci", true);
    let pulled = lab.pull("multi");
    assert_eq!(pulled, amd64, "not the amd64 manifest (arm64 is {arm64})");
    assert_eq!(lab.run(&[&lab.image("multi")]), "from-cmd\n");
}

#[test]
fn a_docker_schema_2_image_is_pulled() {
    if !root_or_skip("a_docker_schema_2_image_is_pulled") {
        return;
    }
    let lab = Lab::new();
    lab.registry
        .push(&lab.layout, "latest", "docker-v2:latest", "v2s2", false);
    let digest = lab.pull("docker-v2");
    let manifest: Digest = digest.parse().unwrap();
    let stored =
        std::fs::read_to_string(lab.store().join("blobs/sha256").join(manifest.hex())).unwrap();
    assert!(
        stored.contains("application/vnd.docker.distribution.manifest.v2+json"),
        "{stored}"
    );
    assert_eq!(
        lab.run(&[&lab.image("docker-v2"), "cat", "/berth-rootfs-marker"]),
        "inside\n"
    );
}

#[test]
fn skopeo_reads_the_store_and_a_docker_archive_loads_back() {
    if !root_or_skip("skopeo_reads_the_store_and_a_docker_archive_loads_back") {
        return;
    }
    let lab = Lab::new();
    let digest = lab.pull("busybox");
    let name = format!("{}:latest", lab.image("busybox"));
    let stored = format!("oci:{}:{name}", lab.store().display());
    let inspected = tool("skopeo", &["inspect", &stored]);
    assert!(inspected.contains(&digest), "{inspected}");
    tool("umoci", &["ls", "--layout", &lab.store().to_string_lossy()]);

    let archive = lab.fx.dir().join("busybox.tar");
    let dest = format!("docker-archive:{}:copied/busybox:v1", archive.display());
    tool("skopeo", &["copy", "--quiet", &stored, &dest]);
    lab.berth()
        .arg("load")
        .arg(&archive)
        .assert()
        .success()
        .stdout("Loaded image: docker.io/copied/busybox:v1\n");
    assert_eq!(
        lab.run(&["copied/busybox:v1", "cat", "/berth-rootfs-marker"]),
        "inside\n"
    );

    let oci_archive = lab.fx.dir().join("busybox-oci.tar");
    let dest = format!("oci-archive:{}:copied/busybox:v2", oci_archive.display());
    tool("skopeo", &["copy", "--quiet", &stored, &dest]);
    lab.berth()
        .arg("load")
        .arg(&oci_archive)
        .assert()
        .success()
        .stdout("Loaded image: docker.io/copied/busybox:v2\n");
}

/// Every file in a directory tree with its size and modification time.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let meta = entry.path().symlink_metadata().unwrap();
            out.push((entry.path(), meta.size(), meta.mtime()));
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn writes_inside_never_change_the_layer_cache() {
    if !root_or_skip("writes_inside_never_change_the_layer_cache") {
        return;
    }
    let lab = Lab::new();
    lab.pull("busybox");
    let image = lab.image("busybox");
    lab.run(&[&image, "true"]); // unpacks the layer
    let layers = lab.root.path().join("layers");
    let before = snapshot(&layers);
    let out = lab.run(&[
        &image,
        "sh",
        "-c",
        "echo changed > /etc/passwd && rm /bin/ls && mkdir /new && echo ok",
    ]);
    assert_eq!(out, "ok\n");
    assert_eq!(before, snapshot(&layers), "the layer cache changed");
    // The next container starts from the image again.
    assert_eq!(
        lab.run(&[
            &image,
            "sh",
            "-c",
            "head -c 4 /etc/passwd; test -e /bin/ls && echo ls"
        ]),
        "rootls\n"
    );
    let containers = lab.root.path().join("containers");
    assert_eq!(
        std::fs::read_dir(containers).unwrap().count(),
        0,
        "a container dir was left"
    );
}

#[test]
fn two_concurrent_pulls_both_succeed() {
    if !root_or_skip("two_concurrent_pulls_both_succeed") {
        return;
    }
    let lab = Lab::new();
    // Both start on an empty store at once and race for the same blobs.
    let children: Vec<_> = (0..2)
        .map(|_| {
            lab.berth()
                .args(["pull", &lab.image("busybox")])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let listing = tool("umoci", &["ls", "--layout", &lab.store().to_string_lossy()]);
    assert_eq!(listing.lines().count(), 1, "{listing}");
    tool(
        "skopeo",
        &[
            "inspect",
            &format!(
                "oci:{}:{}:latest",
                lab.store().display(),
                lab.image("busybox")
            ),
        ],
    );
}

#[test]
fn rmi_removes_the_image_its_blobs_and_its_layers() {
    if !root_or_skip("rmi_removes_the_image_its_blobs_and_its_layers") {
        return;
    }
    let lab = Lab::new();
    lab.pull("busybox");
    lab.run(&[&lab.image("busybox"), "true"]);
    lab.berth()
        .args(["rmi", &lab.image("busybox")])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "Deleted 3 blobs and 1 unpacked layers",
        ));
    assert_eq!(
        std::fs::read_dir(lab.store().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(lab.root.path().join("layers"))
            .unwrap()
            .count(),
        0
    );
    lab.berth()
        .args(["run", &lab.image("busybox")])
        .assert()
        .code(125)
        .stderr(predicate::str::contains(
            "is not in the store; pull it first",
        ));
    lab.berth()
        .args(["rmi", &lab.image("busybox")])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("no image"));
}

/// A tiny registry of our own serving one image, `tiny:latest`, for what
/// the real one won't do: corrupt a blob in transit, or demand a Bearer token
/// the way Docker Hub does (`/token` hands one out for the login user:pass).
fn serve_tiny_image(corrupt: bool, require_token: bool) -> String {
    let layer = gzip_tar_with_file("hello.txt", b"hello\n");
    let diff_id = Digest::of(&gunzip(&layer));
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
    )
    .into_bytes();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}]}}"#,
        Digest::of(&config),
        config.len(),
        Digest::of(&layer),
        layer.len()
    )
    .into_bytes();
    let mut served_layer = layer.clone();
    if corrupt {
        let middle = served_layer.len() / 2;
        served_layer[middle] ^= 0xff;
    }

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let (config_path, layer_path) = (
        format!("/v2/tiny/blobs/{}", Digest::of(&config)),
        format!("/v2/tiny/blobs/{}", Digest::of(&layer)),
    );
    let challenge = format!(
        "Bearer realm=\"http://{host}/token\",service=\"tiny\",scope=\"repository:tiny:pull\""
    );
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (path, authorization) = berth_tests::images::read_request(&stream);
            let token_ok = !require_token || authorization == "Bearer tiny-token";
            let (status, body, kind): (&str, &[u8], &str) = match path.as_str() {
                p if p.starts_with("/token") && authorization == "Basic dXNlcjpwYXNz" => (
                    "200 OK",
                    br#"{"access_token":"tiny-token"}"#,
                    "application/json",
                ),
                p if p.starts_with("/token") => ("401 Unauthorized", b"", "text/plain"),
                _ if !token_ok => ("401 Unauthorized", b"", "text/plain"),
                "/v2/tiny/manifests/latest" => (
                    "200 OK",
                    &manifest,
                    "application/vnd.oci.image.manifest.v1+json",
                ),
                p if p == config_path => ("200 OK", &config, "application/octet-stream"),
                p if p == layer_path => ("200 OK", &served_layer, "application/octet-stream"),
                _ => ("404 Not Found", b"", "text/plain"),
            };
            let mut stream = stream;
            let auth_header = if status.starts_with("401") && !path.starts_with("/token") {
                format!("WWW-Authenticate: {challenge}\r\n")
            } else {
                String::new()
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\n{auth_header}Content-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(body);
        }
    });
    host
}

fn gzip_tar_with_file(name: &str, contents: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(contents.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, name, contents).unwrap();
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut out).unwrap();
    out
}

#[test]
fn a_corrupted_blob_fails_the_pull_and_leaves_no_blob() {
    if !root_or_skip("a_corrupted_blob_fails_the_pull_and_leaves_no_blob") {
        return;
    }
    let host = serve_tiny_image(true, false);
    let root = tempfile::Builder::new()
        .prefix("berth-root-")
        .tempdir()
        .unwrap();
    Command::new(bin("stage04-images"))
        .arg("--root")
        .arg(root.path())
        .args(["pull", &format!("{host}/tiny")])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("digest mismatch"));
    let blobs: Vec<_> = std::fs::read_dir(root.path().join("images/blobs/sha256"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        blobs.len(),
        1,
        "only the (valid) config may be stored: {blobs:?}"
    );
    let index = std::fs::read_to_string(root.path().join("images/index.json")).unwrap();
    assert!(
        !index.contains("bad"),
        "the broken image was tagged: {index}"
    );
}

/// An OCI layout holding one image whose single layer is `layer` (a plain
/// tar), tagged `name`.
fn layout_with_layer(dir: &Path, layer: &[u8], name: &str) -> PathBuf {
    let layout = dir.join(format!("layout-{}", Digest::of(name.as_bytes()).hex()));
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let digest = Digest::of(bytes);
        std::fs::write(blobs.join(digest.hex()), bytes).unwrap();
        (digest, bytes.len())
    };
    let (layer_digest, layer_size) = put(layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["/bin/true"]}},"rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#
    );
    let (config_digest, config_size) = put(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{config_size}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{layer_size}}}]}}"#
    );
    let (manifest_digest, manifest_size) = put(manifest.as_bytes());
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        layout.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{manifest_size},"annotations":{{"org.opencontainers.image.ref.name":"{name}"}}}}]}}"#
        ),
    )
    .unwrap();
    layout
}

/// A tar entry whose name is written raw (tar::Builder refuses `..`).
fn raw_entry(
    builder: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    link: &str,
    data: &[u8],
) {
    let mut header = tar::Header::new_gnu();
    let bytes = name.as_bytes();
    header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    if !link.is_empty() {
        header.set_link_name(link).unwrap();
    }
    header.set_cksum();
    builder.append(&header, data).unwrap();
}

#[test]
fn hostile_layers_cannot_touch_the_host() {
    if !root_or_skip("hostile_layers_cannot_touch_the_host") {
        return;
    }
    let fx = Fixture::new();
    let root = tempfile::Builder::new()
        .prefix("berth-root-")
        .tempdir()
        .unwrap();
    let berth = || {
        let mut command = Command::new(bin("stage04-images"));
        command.arg("--root").arg(root.path());
        command
    };
    let target = format!("berth-hostile-{}", std::process::id());
    let host_file = Path::new("/tmp").join(&target);

    // A `../` path climbing to the host's /tmp: the whole layer is refused.
    let mut climb = tar::Builder::new(Vec::new());
    raw_entry(
        &mut climb,
        &format!("../../../../../../../../tmp/{target}"),
        tar::EntryType::Regular,
        "",
        b"owned\n",
    );
    let layout = layout_with_layer(fx.dir(), &climb.into_inner().unwrap(), "localhost/climb:1");
    berth().arg("load").arg(&layout).assert().success();
    berth()
        .args(["run", "localhost/climb:1"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("escapes the layer").or(predicate::str::contains("..")));
    assert!(
        !host_file.exists(),
        "a hostile layer wrote {}",
        host_file.display()
    );

    // A symlink to / and a file through it, a hard link to the host's
    // /etc/passwd, an absolute path and a device node: neutralised inside.
    let passwd_before = std::fs::read("/etc/passwd").unwrap();
    let mut sneaky = tar::Builder::new(Vec::new());
    raw_entry(&mut sneaky, "escape", tar::EntryType::Symlink, "/", b"");
    raw_entry(
        &mut sneaky,
        &format!("escape/tmp/{target}"),
        tar::EntryType::Regular,
        "",
        b"inside\n",
    );
    raw_entry(&mut sneaky, "etc/", tar::EntryType::Directory, "", b"");
    raw_entry(
        &mut sneaky,
        &format!("/{target}-abs"),
        tar::EntryType::Regular,
        "",
        b"abs\n",
    );
    raw_entry(&mut sneaky, "null", tar::EntryType::Char, "", b"");
    let layout = layout_with_layer(
        fx.dir(),
        &sneaky.into_inner().unwrap(),
        "localhost/sneaky:1",
    );
    berth().arg("load").arg(&layout).assert().success();
    // Unpacked (neutralised); the image has no /bin/true to run, hence 127.
    berth()
        .args(["run", "localhost/sneaky:1"])
        .assert()
        .code(127);
    let layer_dir = std::fs::read_dir(root.path().join("layers"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    assert_eq!(
        std::fs::read_to_string(layer_dir.join("tmp").join(&target)).unwrap(),
        "inside\n"
    );
    assert!(
        layer_dir.join(format!("{target}-abs")).exists(),
        "the absolute path lands inside"
    );
    assert!(
        !layer_dir.join("null").exists(),
        "a device node was made from an image"
    );
    assert!(!host_file.exists(), "the symlinked parent led outside");
    assert!(!Path::new("/").join(format!("{target}-abs")).exists());

    let mut link = tar::Builder::new(Vec::new());
    raw_entry(
        &mut link,
        "stolen",
        tar::EntryType::Link,
        "/etc/passwd",
        b"",
    );
    let layout = layout_with_layer(fx.dir(), &link.into_inner().unwrap(), "localhost/link:1");
    berth().arg("load").arg(&layout).assert().success();
    berth()
        .args(["run", "localhost/link:1"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("stolen"));
    assert_eq!(
        std::fs::read("/etc/passwd").unwrap(),
        passwd_before,
        "the host's /etc/passwd changed"
    );
}

#[test]
fn a_registry_that_wants_a_bearer_token_gets_one() {
    if !root_or_skip("a_registry_that_wants_a_bearer_token_gets_one") {
        return;
    }
    let host = serve_tiny_image(false, true);
    let image = format!("{host}/tiny");
    let root = tempfile::Builder::new()
        .prefix("berth-root-")
        .tempdir()
        .unwrap();
    let pull = || {
        let mut command = Command::new(bin("stage04-images"));
        command.arg("--root").arg(root.path()).arg("pull");
        command
    };
    // No login: the token service says no, and we say what to do.
    pull()
        .arg(&image)
        .env("DOCKER_CONFIG", root.path())
        .assert()
        .code(125)
        .stderr(predicate::str::contains("refused us"))
        .stderr(predicate::str::contains("--creds"));
    // A login on the command line...
    pull()
        .args(["--creds", "user:pass", &image])
        .assert()
        .success();
    // ...or from a Docker-style auth file.
    let auth = root.path().join("auth.json");
    std::fs::write(
        &auth,
        format!(r#"{{"auths":{{"{host}":{{"auth":"dXNlcjpwYXNz"}}}}}}"#),
    )
    .unwrap();
    pull()
        .arg("--auth-file")
        .arg(&auth)
        .arg(&image)
        .assert()
        .success();
}

/// Every file below `dir` with its owner, group and mode.
fn owners_in(dir: &Path) -> Vec<(PathBuf, u32, u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let meta = entry.path().symlink_metadata().unwrap();
            out.push((entry.path(), meta.uid(), meta.gid(), meta.mode()));
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// The host PID of the one process whose command line is `cmdline`,
/// waiting (up to 5 s) for it to appear.
fn pid_running(cmdline: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let found: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|entry| {
                let raw = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                raw.split(|b| *b == 0)
                    .filter(|word| !word.is_empty())
                    .map(|word| String::from_utf8_lossy(word).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
                    == cmdline
            })
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        if let [pid] = found.as_slice() {
            return pid.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "`{cmdline}` never ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The real and effective user IDs of a process, as the host sees them.
fn host_uids_of(pid: &str) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uids = status
        .lines()
        .find(|line| line.starts_with("Uid:"))
        .unwrap();
    uids.split_whitespace()
        .skip(1)
        .take(2)
        .map(String::from)
        .collect()
}

/// Make a state root private, mode 700, as `Root::open` makes a new one
/// (the lab's comes from `tempdir`, which leaves it open to everyone).
fn make_private(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// A private state root after a `--userns` run: still closed to other
/// users, but passable by the container root's group (host 100000), which
/// had to reach its container's directory through it.
fn assert_passable_by_container_root_only(root: &Path) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(root).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o710, 0, 100_000),
        "mode, owner and group of the state root"
    );
}

/// What the `--userns` tests run inside: who we are, whose the image's
/// files are, and whose a file we make is.
const USERNS_SCRIPT: &str = "id -u; cat /proc/self/uid_map; stat -c %u /etc/passwd /extra/top; \
                             echo x > /etc/made-inside; stat -c %u /etc/made-inside";

/// Adds `busybox:layered` to the lab's registry: its image with a second
/// layer on top holding `/extra/top`, so that the overlay has two layers.
fn push_layered(lab: &Lab) {
    let extra = lab.fx.dir().join("extra");
    std::fs::create_dir(&extra).unwrap();
    std::fs::write(extra.join("top"), "from the top layer\n").unwrap();
    // Not a regular file last: umoci 0.4.7 would write a truncated layer.
    std::fs::create_dir(extra.join("zz")).unwrap();
    let layout = lab.layout.to_string_lossy();
    tool(
        "umoci",
        &["tag", "--image", &format!("{layout}:latest"), "layered"],
    );
    let layered = format!("{layout}:layered");
    tool(
        "umoci",
        &[
            "insert",
            "--image",
            &layered,
            &extra.to_string_lossy(),
            "/extra",
        ],
    );
    lab.registry
        .push(&lab.layout, "layered", "busybox:layered", "oci", false);
}

#[test]
fn a_user_namespace_sees_the_layers_through_idmapped_mounts() {
    if !root_or_skip("a_user_namespace_sees_the_layers_through_idmapped_mounts") {
        return;
    }
    let lab = Lab::new();
    push_layered(&lab);
    lab.pull("busybox:layered");
    let image = lab.image("busybox:layered");
    lab.run(&[&image, "true"]); // unpacks the layers
    let layers = lab.root.path().join("layers");
    let before = owners_in(&layers);
    assert!(before.iter().all(|(_, uid, gid, _)| (*uid, *gid) == (0, 0)));
    make_private(lab.root.path());

    let sleeper = format!("sleep 8{}", std::process::id());
    let script = format!("{USERNS_SCRIPT}; echo ready; exec {sleeper}");
    let mut child = berth_tests::Running::new(
        lab.berth()
            .args(["run", "--userns", &image, "sh", "-c", &script])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines: Vec<String> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .take_while(|line| line != "ready")
        .collect();
    // Inside: root, mapped to host 100000; the layers' files (host root's
    // on disk, both layers) are root's; what root makes is root's. All of
    // it read after the parent closed its descriptors of the layers.
    let lines: Vec<&str> = lines.iter().map(|l| l.trim()).collect();
    let uid_map = lines
        .get(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>());
    assert_eq!(uid_map, Some(vec!["0", "100000", "65536"]), "{lines:?}");
    assert_eq!(
        [lines[0], lines[2], lines[3], lines[4]],
        ["0", "0", "0", "0"],
        "{lines:?}"
    );

    // Outside, the container's process is the unprivileged host user
    // 100000, and the file it made is in its upper directory, owned by
    // that user: the upper's own top directory is that user's too.
    let pid = pid_running(&sleeper);
    assert_eq!(
        host_uids_of(&pid),
        ["100000", "100000"],
        "host IDs of {pid}"
    );
    let containers = lab.root.path().join("containers");
    let container = std::fs::read_dir(&containers)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let upper = container.path().join("upper");
    let owner = |path: &Path| {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(path).unwrap();
        (meta.uid(), meta.gid())
    };
    assert_eq!(owner(&upper.join("etc/made-inside")), (100_000, 100_000));
    assert_eq!(owner(&upper), (100_000, 100_000));
    // Its mounts live in its own mount namespace only.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root_dir = lab.root.path().to_string_lossy().into_owned();
    assert!(!mountinfo.contains(&root_dir), "{mountinfo}");
    let output = child.stop();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("note:"), "fell back to a copy: {stderr}");

    // The layers are as they were: nothing written, no owner changed.
    assert_eq!(owners_in(&layers), before, "the layer cache changed");
    assert_passable_by_container_root_only(lab.root.path());
    assert!(
        std::fs::read_dir(&containers).unwrap().next().is_none(),
        "a container dir was left"
    );
}

#[test]
fn stage05_runs_an_image_in_a_user_namespace_too() {
    if !root_or_skip("stage05_runs_an_image_in_a_user_namespace_too") {
        return;
    }
    let lab = Lab::new();
    lab.pull("busybox");
    make_private(lab.root.path());
    let out = Command::new(bin("stage05-networks"))
        .arg("--root")
        .arg(lab.root.path())
        .args([
            "run",
            "--userns",
            "--network",
            "none",
            "--name",
            "berth-userns",
        ])
        .arg(lab.image("busybox"))
        .args([
            "sh",
            "-c",
            "id -u; cat /etc/hostname; echo x > /etc/made-inside && stat -c %u /etc/made-inside",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0\nberth-userns\n0\n");
    assert!(!stderr.contains("note:"), "fell back to a copy: {stderr}");
    assert_passable_by_container_root_only(lab.root.path());
}

/// Loads the image into a state root on a ramfs, a file system that can't
/// be idmapped, and runs it with `--userns`, all in a mount namespace of
/// its own (`unshare -m`): the ramfs never shows on the host and goes away
/// with the script. Prints sections: what ran inside printed, the layers'
/// files that are not host root's, and any made-inside in the layers.
const RAMFS_USERNS_SCRIPT: &str = r#"
set -e
mount -t ramfs -o mode=755 berth-ramfs "$DIR"
"$STAGE04" --root "$DIR/root" load --tag localhost/userns:1 "$LAYOUT" > /dev/null
echo "== inside"
"$STAGE04" --root "$DIR/root" run --userns localhost/userns:1 sh -c "$SCRIPT" 2> "$ERR"
echo "== not host root's"
find "$DIR/root/layers" ! -user 0 -o ! -group 0
echo "== made inside"
find "$DIR/root/layers" -name made-inside
"#;

#[test]
fn layers_that_cannot_be_idmapped_give_a_shifted_copy() {
    if !root_or_skip("layers_that_cannot_be_idmapped_give_a_shifted_copy") {
        return;
    }
    let fx = Fixture::new();
    std::fs::create_dir(fx.rootfs().join("extra")).unwrap();
    std::fs::write(fx.rootfs().join("extra/top"), "top\n").unwrap();
    let layout = fx.dir().join("layout");
    build_image(&layout, "latest", &fx.rootfs(), &[]);
    let ramfs = fx.dir().join("berth-ramfs");
    std::fs::create_dir(&ramfs).unwrap();
    let stderr_file = fx.dir().join("stderr");
    let output = Command::new("unshare")
        .args(["-m", "--propagation", "private", "/bin/sh", "-c"])
        .arg(RAMFS_USERNS_SCRIPT)
        .env("DIR", &ramfs)
        .env("STAGE04", bin("stage04-images"))
        .env("LAYOUT", &layout)
        .env("SCRIPT", USERNS_SCRIPT)
        .env("ERR", &stderr_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = std::fs::read_to_string(&stderr_file).unwrap_or_default();
    assert!(
        output.status.success(),
        "{stdout}\n{stderr}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let section = |name: &str| -> Vec<String> {
        let start = stdout.find(&format!("== {name}\n")).expect(name) + name.len() + 4;
        let rest = &stdout[start..];
        rest[..rest.find("== ").unwrap_or(rest.len())]
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    // The same view inside as with idmapped layers...
    assert_eq!(
        section("inside"),
        ["0", "0 100000 65536", "0", "0", "0"],
        "{stderr}"
    );
    // ...from a copy, which the note says, and the layers untouched.
    assert!(
        stderr.contains("note: no idmapped layers")
            && stderr.contains("a copy of the image's overlay"),
        "the fallback was not explained: {stderr}"
    );
    assert_eq!(section("not host root's"), Vec::<String>::new());
    assert_eq!(section("made inside"), Vec::<String>::new());
}
