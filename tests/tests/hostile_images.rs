//! Hostile images, built for real: what an image may cost a berth root.
//!
//! - a gzip bomb layer (1 MB that unpacks to 1 GiB) is stopped at the
//!   unpack limit (`BERTH_MAX_LAYER_SIZE`), leaving no partial layer;
//! - a manifest or config that is a 3 GiB file behind a descriptor saying
//!   200 bytes costs `load` no memory: it reads 201 bytes and stops;
//! - a registry can't make `pull` read more than a descriptor declares;
//! - `load` of a file that is no image says so without quoting the file;
//! - a layer entry through a symlink that leaves the layer is named.
//!
//! Each test checks the error text, that nothing partial is left in the
//! root, and that the store still loads and runs a good image afterwards.
//! Both binaries that use stage 04 are driven: `stage04-images` and the
//! engine, `berth`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use berth_tests::images::{PulledImage, TestRegistry, build_image};
use berth_tests::{Fixture, bin, root_or_skip};
use flate2::Compression;
use flate2::write::GzEncoder;
use stage01_chroot::rootfs::DEFAULT_BUSYBOX;
use stage04_images::digest::{Digest, HashingReader};
use stage04_images::spec;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// The memory `load` may use, whatever the image claims.
const MAX_RSS_KIB: i64 = 64 * 1024;

/// Both binaries that read images through stage 04.
const BINARIES: [&str; 2] = ["stage04-images", "berth"];

// ---- a berth root with a good image, and what to check in it ----

/// A berth root holding busybox, pulled from a registry of our own, and a
/// scratch directory for hostile images.
struct Root {
    fx: Fixture,
    pulled: PulledImage,
}

impl Root {
    fn new() -> Root {
        let fx = Fixture::new();
        let pulled = PulledImage::new(fx.dir(), &fx.rootfs());
        Root { fx, pulled }
    }

    fn path(&self) -> &Path {
        self.pulled.root.path()
    }

    /// `program --root ROOT`, ready for arguments.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(bin(program));
        command.arg("--root").arg(self.path());
        command
    }

    /// `program ARGS`, which must fail: its stderr.
    fn fails(&self, program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self
            .command(program)
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "{program} {args:?} succeeded; stderr:\n{stderr}"
        );
        stderr
    }

    /// `program ARGS`, which must succeed: its stdout.
    fn ok(&self, program: &str, args: &[&str]) -> String {
        let out = self.command(program).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whatever a failed operation may have left: temp files and dirs in
    /// the store, the layer cache, the root, and scratch dirs of `load`.
    fn leftovers(&self) -> Vec<String> {
        let dirs = [
            self.path().to_path_buf(),
            self.path().join("images"),
            self.path().join("images/blobs/sha256"),
            self.path().join("layers"),
        ];
        dirs.iter()
            .flat_map(|dir| names(dir).into_iter().map(move |n| dir.join(n)))
            .filter(|path| {
                let name = path.file_name().unwrap().to_string_lossy();
                name.starts_with(".tmp-") || name.starts_with(".load-")
            })
            .map(|path| path.display().to_string())
            .collect()
    }

    fn layer_dirs(&self) -> Vec<String> {
        names(&self.path().join("layers"))
    }

    fn tagged(&self, name: &str) -> bool {
        let index = std::fs::read_to_string(self.path().join("images/index.json")).unwrap();
        index.contains(name)
    }

    fn containers(&self) -> Vec<String> {
        names(&self.path().join("containers"))
    }

    /// The store still works: both binaries run the pulled busybox, and a
    /// good image loads from a layout and runs.
    fn still_works(&self) {
        let image = &self.pulled.image;
        self.ok("stage04-images", &["run", image, "true"]);
        self.ok(
            "berth",
            &["run", "--rm", "--network", "none", image, "true"],
        );
        let layout = self.fx.dir().join("good-layout");
        if !layout.exists() {
            build_image(
                &layout,
                "good",
                &self.fx.rootfs(),
                &["--config.cmd=/bin/sh"],
            );
        }
        self.ok(
            "berth",
            &["load", "--tag", "localhost/berth-good:1", &path(&layout)],
        );
        self.ok(
            "berth",
            &[
                "run",
                "--rm",
                "--network",
                "none",
                "localhost/berth-good:1",
                "true",
            ],
        );
        self.ok("stage04-images", &["run", "localhost/berth-good:1", "true"]);
        assert!(self.leftovers().is_empty(), "{:?}", self.leftovers());
    }
}

fn names(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("list {}: {e}", dir.display()),
    }
}

fn path(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

// ---- hand-made OCI layouts ----

/// An OCI image layout written by hand, blob by blob, so that it can lie.
struct Layout {
    dir: PathBuf,
    manifests: Vec<String>,
}

impl Layout {
    fn new(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir: dir.to_path_buf(),
            manifests: Vec::new(),
        }
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest.hex())
    }

    /// Store `bytes` under their digest.
    fn blob(&self, bytes: &[u8]) -> (Digest, u64) {
        let digest = Digest::of(bytes);
        std::fs::write(self.blob_path(&digest), bytes).unwrap();
        (digest, bytes.len() as u64)
    }

    /// Tag the manifest `digest` (of `size` bytes) as `name` in index.json.
    fn tag(&mut self, name: &str, media_type: &str, digest: &Digest, size: u64) {
        self.manifests.push(format!(
            r#"{{"mediaType":"{media_type}","digest":"{digest}","size":{size},"annotations":{{"org.opencontainers.image.ref.name":"{name}"}}}}"#
        ));
        std::fs::write(
            self.dir.join("index.json"),
            format!(
                r#"{{"schemaVersion":2,"manifests":[{}]}}"#,
                self.manifests.join(",")
            ),
        )
        .unwrap();
    }
}

/// An image config for one layer with this diff ID, running /bin/true.
fn config_json(diff_id: &Digest) -> String {
    format!(
        r#"{{"architecture":"{}","os":"linux","config":{{"Cmd":["/bin/true"]}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#,
        spec::host_platform().architecture
    )
}

/// A manifest for a config and one layer.
fn manifest_json(config: (&Digest, u64), layer: (&str, &Digest, u64)) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{}","size":{}}}]}}"#,
        config.0, config.1, layer.0, layer.1, layer.2
    )
}

/// JSON padded with trailing spaces (still the same document) to `size`.
fn padded(json: &str, size: usize) -> Vec<u8> {
    assert!(json.len() <= size, "{json} is longer than {size}");
    let mut bytes = json.as_bytes().to_vec();
    bytes.resize(size, b' ');
    bytes
}

/// A plain tar with one small file.
fn small_layer() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(6);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "hello.txt", &b"hello\n"[..])
        .unwrap();
    builder.into_inner().unwrap()
}

// ---- measuring a child ----

/// How a child process ended, what it said, and its peak memory.
struct Measured {
    status: ExitStatus,
    stderr: String,
    max_rss_kib: i64,
}

/// Run `command` to its end and read its peak resident memory from the
/// kernel's accounting (`wait4`'s rusage), not from sampling.
fn measured(mut command: Command) -> Measured {
    let mut stderr = tempfile::tempfile().unwrap();
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr.try_clone().unwrap());
    let child = command.spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; zeroes are a valid value for it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet reaped (Child never waited);
    // both out-pointers are valid for writes.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4: {}", io::Error::last_os_error());
    drop(child); // already reaped: dropping a Child neither waits nor kills
    let mut text = String::new();
    io::Seek::rewind(&mut stderr).unwrap();
    stderr.read_to_string(&mut text).unwrap();
    Measured {
        status: ExitStatus::from_raw(status),
        stderr: text,
        max_rss_kib: usage.ru_maxrss,
    }
}

// ---- the gzip bomb ----

/// A gzip layer whose tar holds one file of `size` zeros, and its diff ID.
/// Made of gzip members of 1 MiB of zeros each (a gzip file may be several
/// members in a row), so neither the tar nor the zeros are ever in memory.
fn gzip_bomb(size: u64) -> (Vec<u8>, Digest) {
    const CHUNK: u64 = 1 << 20;
    assert_eq!(size % CHUNK, 0);
    let gzip = |bytes: &mut dyn Read| {
        let mut gz = GzEncoder::new(Vec::new(), Compression::best());
        io::copy(bytes, &mut gz).unwrap();
        gz.finish().unwrap()
    };
    let mut header = tar::Header::new_gnu();
    header.set_path("zeros").unwrap();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_cksum();
    let zeros = gzip(&mut io::repeat(0).take(CHUNK));
    let mut blob = gzip(&mut header.as_bytes().as_slice());
    for _ in 0..size / CHUNK {
        blob.extend_from_slice(&zeros);
    }
    blob.extend(gzip(&mut io::repeat(0).take(1024))); // the end-of-archive blocks
    // The diff ID: the sha256 of the whole uncompressed tar.
    let tar = header
        .as_bytes()
        .as_slice()
        .chain(io::repeat(0).take(size + 1024));
    let mut hashing = HashingReader::new(tar);
    io::copy(&mut hashing, &mut io::sink()).unwrap();
    (blob, hashing.finish().0)
}

#[test]
fn a_gzip_bomb_is_stopped_at_the_limit_and_leaves_nothing() {
    if !root_or_skip("a_gzip_bomb_is_stopped_at_the_limit_and_leaves_nothing") {
        return;
    }
    let root = Root::new();
    let (bomb, diff_id) = gzip_bomb(1 << 30);
    assert!(bomb.len() < 4 << 20, "the bomb is {} bytes", bomb.len());
    let mut layout = Layout::new(&root.fx.dir().join("bomb"));
    let layer = layout.blob(&bomb);
    let config = layout.blob(config_json(&diff_id).as_bytes());
    let manifest = manifest_json((&config.0, config.1), (OCI_LAYER_GZIP, &layer.0, layer.1));
    let manifest = layout.blob(manifest.as_bytes());
    layout.tag(
        "localhost/berth-bomb:1",
        OCI_MANIFEST,
        &manifest.0,
        manifest.1,
    );
    // Storing the blob is cheap: the bomb goes off when it is unpacked.
    root.ok("berth", &["load", &path(&layout.dir)]);

    let limit = [("BERTH_MAX_LAYER_SIZE", "64m")];
    let runs: [(&str, &[&str]); 2] = [
        ("stage04-images", &["run", "localhost/berth-bomb:1", "true"]),
        (
            "berth",
            &[
                "run",
                "--rm",
                "--network",
                "none",
                "localhost/berth-bomb:1",
                "true",
            ],
        ),
    ];
    for (program, args) in runs {
        let stderr = root.fails(program, args, &limit);
        for expected in [
            format!(
                "layer {} (diff ID {diff_id}) unpacks to more than 64 MiB",
                layer.0
            ),
            "the limit for one layer".to_string(),
            "nothing of it was kept".to_string(),
            "BERTH_MAX_LAYER_SIZE=100g".to_string(),
        ] {
            assert!(
                stderr.contains(&expected),
                "{program}: {expected:?} not in:\n{stderr}"
            );
        }
        assert!(
            !root.layer_dirs().contains(&diff_id.hex().to_string()),
            "{program}: the bomb's layer directory was left"
        );
        assert!(
            root.leftovers().is_empty(),
            "{program}: {:?}",
            root.leftovers()
        );
        assert!(
            root.containers().is_empty(),
            "{program}: {:?}",
            root.containers()
        );
    }

    // A bad value for the limit is an error of its own, not "no limit".
    let stderr = root.fails(
        "berth",
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "localhost/berth-bomb:1",
            "true",
        ],
        &[("BERTH_MAX_LAYER_SIZE", "lots")],
    );
    assert!(stderr.contains("BERTH_MAX_LAYER_SIZE"), "{stderr}");
    assert!(root.leftovers().is_empty(), "{:?}", root.leftovers());

    root.ok("berth", &["rmi", "localhost/berth-bomb:1"]);
    root.still_works();
}

// ---- oversized documents ----

/// A layout whose image is fine except that the manifest or the config
/// (`victim`) is a sparse 3 GiB file, its descriptor still saying 200
/// bytes: the first 200 bytes are the real document, then zeros.
fn layout_with_a_huge(victim: &str, dir: &Path, name: &str) -> Layout {
    let mut layout = Layout::new(dir);
    let tar = small_layer();
    let layer = layout.blob(&tar);
    let config = layout.blob(&padded(&config_json(&Digest::of(&tar)), 200));
    let manifest = padded(
        &manifest_json((&config.0, config.1), (OCI_LAYER, &layer.0, layer.1)),
        400,
    );
    let manifest = layout.blob(&manifest);
    layout.tag(name, OCI_MANIFEST, &manifest.0, manifest.1);
    let path = match victim {
        "config" => layout.blob_path(&config.0),
        _ => layout.blob_path(&manifest.0),
    };
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(3 << 30)
        .unwrap();
    layout
}

#[test]
fn a_3_gib_manifest_or_config_costs_load_no_memory() {
    if !root_or_skip("a_3_gib_manifest_or_config_costs_load_no_memory") {
        return;
    }
    let root = Root::new();
    for (victim, declared) in [("manifest", 400), ("config", 200)] {
        let name = format!("localhost/berth-huge-{victim}:1");
        let layout = layout_with_a_huge(victim, &root.fx.dir().join(victim), &name);
        for program in BINARIES {
            let mut load = root.command(program);
            load.arg("load").arg(&layout.dir);
            let run = measured(load);
            assert!(!run.status.success(), "{program} loaded a 3 GiB {victim}");
            let expected = format!("is larger than the {declared} bytes its descriptor declares");
            assert!(
                run.stderr.contains(&format!("the {victim} sha256:"))
                    && run.stderr.contains(&expected),
                "{program}, {victim}: {expected:?} not in:\n{}",
                run.stderr
            );
            assert!(
                run.max_rss_kib < MAX_RSS_KIB,
                "{program} load used {} KiB for a 3 GiB {victim}",
                run.max_rss_kib
            );
            assert!(!root.tagged(&name), "{program}: the image was tagged");
            assert!(root.leftovers().is_empty(), "{:?}", root.leftovers());
        }
    }

    // A descriptor that owns up to 3 GiB is refused before a byte is read,
    // and an archive's config, which has no descriptor, is capped at 4 MiB.
    let mut layout = Layout::new(&root.fx.dir().join("honest"));
    let tar = small_layer();
    let layer = layout.blob(&tar);
    let config = layout.blob(config_json(&Digest::of(&tar)).as_bytes());
    let manifest = manifest_json((&config.0, 3 << 30), (OCI_LAYER, &layer.0, layer.1));
    let manifest = layout.blob(manifest.as_bytes());
    layout.tag(
        "localhost/berth-honest:1",
        OCI_MANIFEST,
        &manifest.0,
        manifest.1,
    );
    let archive = root.fx.dir().join("big-config.tar");
    docker_archive_with_config(&archive, &padded(&config_json(&Digest::of(&tar)), 5 << 20));
    for program in BINARIES {
        let stderr = root.fails(program, &["load", &path(&layout.dir)], &[]);
        let expected = format!("the config {} declares 3 GiB", config.0);
        assert!(
            stderr.contains(&expected),
            "{program}: {expected:?} not in:\n{stderr}"
        );
        assert!(
            stderr.contains("no config may be larger than 4 MiB"),
            "{stderr}"
        );

        let stderr = root.fails(program, &["load", &path(&archive)], &[]);
        assert!(stderr.contains("the image config"), "{program}: {stderr}");
        assert!(
            stderr.contains("is larger than 4 MiB"),
            "{program}: {stderr}"
        );
        assert!(root.leftovers().is_empty(), "{:?}", root.leftovers());
    }
    root.still_works();
}

/// A docker-archive (as `docker save` writes) whose config file is `config`.
fn docker_archive_with_config(archive: &Path, config: &[u8]) {
    let tar = small_layer();
    let manifest = r#"[{"Config":"config.json","RepoTags":["localhost/berth-archive:1"],"Layers":["layer.tar"]}]"#;
    let mut builder = tar::Builder::new(File::create(archive).unwrap());
    for (name, bytes) in [
        ("manifest.json", manifest.as_bytes()),
        ("config.json", config),
        ("layer.tar", &tar),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, bytes).unwrap();
    }
    builder.finish().unwrap();
}

// ---- a registry that lies ----

/// One HTTP/1.1 request to the test registry: status, headers, body.
fn http(
    host: &str,
    method: &str,
    target: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    let split = reply.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&reply[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, reply[split + 4..].to_vec())
}

/// Push a blob with the registry's two-step upload (POST, then PUT).
fn push_blob(registry: &TestRegistry, repository: &str, bytes: &[u8]) -> Digest {
    let host = registry.host();
    let (status, head, _) = http(
        &host,
        "POST",
        &format!("/v2/{repository}/blobs/uploads/"),
        "application/octet-stream",
        b"",
    );
    assert_eq!(status, 202, "start upload: {head}");
    let location = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("Location: ")
                .or(l.strip_prefix("location: "))
        })
        .unwrap()
        .trim();
    let location = location
        .strip_prefix(&format!("http://{host}"))
        .unwrap_or(location);
    let digest = Digest::of(bytes);
    let separator = if location.contains('?') { '&' } else { '?' };
    let target = format!("{location}{separator}digest={digest}");
    let (status, head, _) = http(&host, "PUT", &target, "application/octet-stream", bytes);
    assert_eq!(status, 201, "finish upload: {head}");
    digest
}

fn push_manifest(
    registry: &TestRegistry,
    repository: &str,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
) {
    let target = format!("/v2/{repository}/manifests/{reference}");
    let (status, head, body) = http(&registry.host(), "PUT", &target, media_type, bytes);
    assert_eq!(
        status,
        201,
        "push manifest {reference}: {head}\n{}",
        String::from_utf8_lossy(&body)
    );
}

#[test]
fn a_registry_cannot_make_pull_read_more_than_declared() {
    if !root_or_skip("a_registry_cannot_make_pull_read_more_than_declared") {
        return;
    }
    let root = Root::new();
    let registry = &root.pulled.registry;
    let repository = "berth-liar";
    let tar = small_layer();
    let layer = push_blob(registry, repository, &tar);
    let layer = (OCI_LAYER, &layer, tar.len() as u64);
    // A config of 1 MiB (padded JSON), really stored in the registry.
    let config_bytes = padded(&config_json(&Digest::of(&tar)), 1 << 20);
    let config = push_blob(registry, repository, &config_bytes);

    // 1. The config's descriptor owns up to 3 GiB: refused before download.
    let huge = manifest_json((&config, 3 << 30), layer);
    push_manifest(registry, repository, "huge", OCI_MANIFEST, huge.as_bytes());
    // 2. It says 200 bytes for the 1 MiB config: reading stops at 201.
    let short = manifest_json((&config, 200), layer);
    push_manifest(
        registry,
        repository,
        "short",
        OCI_MANIFEST,
        short.as_bytes(),
    );
    // 3. An index says 200 bytes for a manifest that is longer.
    let honest = manifest_json((&config, config_bytes.len() as u64), layer);
    let honest_digest = Digest::of(honest.as_bytes());
    push_manifest(
        registry,
        repository,
        &honest_digest.to_string(),
        OCI_MANIFEST,
        honest.as_bytes(),
    );
    let platform = spec::host_platform();
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{honest_digest}","size":200,"platform":{{"architecture":"{}","os":"linux"}}}}]}}"#,
        platform.architecture
    );
    push_manifest(registry, repository, "index", OCI_INDEX, index.as_bytes());

    let image = |tag: &str| format!("{}/{repository}:{tag}", registry.host());
    let cases = [
        ("huge", format!("the config {config} declares 3 GiB")),
        ("short", "got more than the 200 bytes announced".to_string()),
        (
            "index",
            format!(
                "manifest {honest_digest} from {} is larger than 200 bytes",
                registry.host()
            ),
        ),
    ];
    for program in BINARIES {
        for (tag, expected) in &cases {
            let mut pull = root.command(program);
            pull.args(["pull", &image(tag)]);
            let run = measured(pull);
            assert!(!run.status.success(), "{program} pulled {tag}");
            assert!(
                run.stderr.contains(expected),
                "{program} pull {tag}: {expected:?} not in:\n{}",
                run.stderr
            );
            assert!(
                run.max_rss_kib < MAX_RSS_KIB,
                "{program}: {} KiB",
                run.max_rss_kib
            );
            assert!(!root.tagged(repository), "{program}: {tag} was tagged");
            assert!(root.leftovers().is_empty(), "{:?}", root.leftovers());
            let stored = root.path().join("images/blobs/sha256").join(config.hex());
            assert!(!stored.exists(), "{program} {tag}: the config was stored");
        }
    }
    root.still_works();
}

// ---- weak errors ----

#[test]
fn load_says_what_a_file_is_not_without_quoting_it() {
    if !root_or_skip("load_says_what_a_file_is_not_without_quoting_it") {
        return;
    }
    let root = Root::new();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let first_line = passwd.lines().next().unwrap();
    let gzipped = root.fx.dir().join("passwd.gz");
    let mut gz = GzEncoder::new(File::create(&gzipped).unwrap(), Compression::fast());
    gz.write_all(passwd.as_bytes()).unwrap();
    gz.finish().unwrap();
    let empty_dir = root.fx.dir().join("empty");
    std::fs::create_dir(&empty_dir).unwrap();

    let cases = [
        ("/etc/passwd".to_string(), "it is not a tar file"),
        (path(&gzipped), "it is gzip-compressed"),
        (path(&empty_dir), "it is a directory without an index.json"),
    ];
    for program in BINARIES {
        for (file, what) in &cases {
            let stderr = root.fails(program, &["load", file], &[]);
            let expected = format!("{file} is not an image archive or OCI layout: {what}");
            assert!(
                stderr.contains(&expected),
                "{program}: {expected:?} not in:\n{stderr}"
            );
            assert!(
                stderr.contains("load takes a docker-archive or oci-archive"),
                "{stderr}"
            );
            assert!(
                !stderr.contains(first_line) && !stderr.contains(":x:"),
                "{program} quoted the file:\n{stderr}"
            );
            assert!(root.leftovers().is_empty(), "{:?}", root.leftovers());
        }
    }
    root.still_works();
}

/// A tar entry with its name and link target written as given.
fn entry(
    builder: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    link: &str,
    data: &[u8],
) {
    let mut header = tar::Header::new_gnu();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(0o755);
    if !link.is_empty() {
        header.set_link_name_literal(link).unwrap();
    }
    header.set_cksum();
    builder.append(&header, data).unwrap();
}

/// A layout with one image `name` whose only layer is the tar `tar`.
fn layout_with_layer(dir: &Path, name: &str, tar: &[u8]) -> Layout {
    let mut layout = Layout::new(dir);
    let layer = layout.blob(tar);
    let config = layout.blob(config_json(&Digest::of(tar)).as_bytes());
    let manifest = manifest_json((&config.0, config.1), (OCI_LAYER, &layer.0, layer.1));
    let manifest = layout.blob(manifest.as_bytes());
    layout.tag(name, OCI_MANIFEST, &manifest.0, manifest.1);
    layout
}

#[test]
fn an_entry_through_a_symlink_out_of_the_layer_is_named() {
    if !root_or_skip("an_entry_through_a_symlink_out_of_the_layer_is_named") {
        return;
    }
    let root = Root::new();
    let passwd_before = std::fs::read("/etc/passwd").unwrap();
    let cases = [("lib", "/etc"), ("up", "../../../../../../etc")];
    for (number, (link, target)) in cases.iter().enumerate() {
        let mut tar = tar::Builder::new(Vec::new());
        entry(&mut tar, link, tar::EntryType::Symlink, target, b"");
        entry(
            &mut tar,
            &format!("{link}/passwd"),
            tar::EntryType::Regular,
            "",
            b"pwned\n",
        );
        let tar = tar.into_inner().unwrap();
        let name = format!("localhost/berth-escape-{number}:1");
        let layout =
            layout_with_layer(&root.fx.dir().join(format!("escape-{number}")), &name, &tar);
        root.ok("berth", &["load", &path(&layout.dir)]);
        let runs: [(&str, &[&str]); 2] = [
            ("stage04-images", &["run", &name, "true"]),
            (
                "berth",
                &["run", "--rm", "--network", "none", &name, "true"],
            ),
        ];
        for (program, args) in runs {
            let stderr = root.fails(program, args, &[]);
            let expected = format!(
                "layer entry \"{link}/passwd\" would leave the layer through the symlink \
                 \"{link}\" -> \"{target}\""
            );
            assert!(
                stderr.contains(&expected),
                "{program}: {expected:?} not in:\n{stderr}"
            );
            assert!(!stderr.contains("No such file or directory"), "{stderr}");
            let diff_id = Digest::of(&tar);
            assert!(!root.layer_dirs().contains(&diff_id.hex().to_string()));
            assert!(root.leftovers().is_empty(), "{:?}", root.leftovers());
            assert!(
                root.containers().is_empty(),
                "{program}: {:?}",
                root.containers()
            );
        }
        root.ok("berth", &["rmi", &name]);
    }
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd_before);

    // Real images' `lib -> usr/lib` and `/`-anchored links into the layer
    // still carry entries below them.
    let busybox = std::fs::read(DEFAULT_BUSYBOX).unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    entry(&mut tar, "usr/", tar::EntryType::Directory, "", b"");
    entry(&mut tar, "usr/lib/", tar::EntryType::Directory, "", b"");
    entry(&mut tar, "usr/bin/", tar::EntryType::Directory, "", b"");
    entry(&mut tar, "lib", tar::EntryType::Symlink, "usr/lib", b"");
    entry(&mut tar, "bin", tar::EntryType::Symlink, "/usr/bin", b"");
    entry(
        &mut tar,
        "bin/busybox",
        tar::EntryType::Regular,
        "",
        &busybox,
    );
    entry(
        &mut tar,
        "bin/true",
        tar::EntryType::Symlink,
        "busybox",
        b"",
    );
    entry(
        &mut tar,
        "lib/berth-note",
        tar::EntryType::Regular,
        "",
        b"below lib\n",
    );
    let tar = tar.into_inner().unwrap();
    let layout = layout_with_layer(
        &root.fx.dir().join("usrmerge"),
        "localhost/berth-usrmerge:1",
        &tar,
    );
    root.ok("berth", &["load", &path(&layout.dir)]);
    let out = root.ok(
        "berth",
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "localhost/berth-usrmerge:1",
            "/bin/busybox",
            "cat",
            "/usr/lib/berth-note",
        ],
    );
    assert_eq!(out, "below lib\n");
    root.ok("stage04-images", &["run", "localhost/berth-usrmerge:1"]);
    root.still_works();
}
