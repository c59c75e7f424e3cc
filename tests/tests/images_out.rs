//! Images leaving the host: `berth login`, `push` to a real `docker-registry`
//! that wants Bearer tokens (from the tests' token server), and the image
//! read back by skopeo and podman, which run it.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use berth_tests::engines::Podman;
use berth_tests::images::{TestRegistry, build_image, tool};
use berth_tests::{Fixture, bin, root_or_skip};

const USER: &str = "pusher";
const PASSWORD: &str = "s3cret-push";

/// A berth root and an auth-file directory of its own.
struct Berth {
    root: tempfile::TempDir,
    docker_config: tempfile::TempDir,
}

impl Berth {
    fn new() -> Berth {
        let temp = |prefix| tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        Berth {
            root: temp("berth-root-"),
            docker_config: temp("berth-docker-config-"),
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(bin("berth"));
        command
            .arg("--root")
            .arg(self.root.path())
            .env("DOCKER_CONFIG", self.docker_config.path())
            .env(
                "BERTH_DEFAULT_SUBNET",
                berth_tests::lab::next_default_subnet(),
            )
            .stdin(Stdio::null());
        command
    }

    fn output(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// `berth ARGS`, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "berth {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn auth_file(&self) -> PathBuf {
        self.docker_config.path().join("config.json")
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        // Containers, then the networks they made (`run` joins the default
        // one, whose bridge and firewall table are the host's).
        let containers = self.output(&["ps", "-a", "-q"]);
        for id in String::from_utf8_lossy(&containers.stdout).split_whitespace() {
            let _ = self.output(&["rm", "-f", id]);
        }
        for name in berth_tests::lab::networks_in(self.root.path()) {
            let _ = self.output(&["network", "rm", &name]);
        }
    }
}

/// The busybox rootfs as `web:1` in a fresh berth root, with a command.
fn berth_with_image(fx: &Fixture) -> Berth {
    let berth = Berth::new();
    let layout = fx.dir().join("bth-push-layout");
    build_image(
        &layout,
        "latest",
        &fx.rootfs(),
        &[
            "--config.env=PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            "--config.cmd=echo",
            "--config.cmd=hello-from-pushed-image",
        ],
    );
    berth.ok(&["load", "--tag", "web:1", &layout.to_string_lossy()]);
    berth
}

fn lines_with<'a>(text: &'a str, word: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(word)).collect()
}

#[test]
fn push_with_a_token_login_then_skopeo_and_podman_pull_and_run_it() {
    if !root_or_skip("push_with_a_token_login_then_skopeo_and_podman_pull_and_run_it") {
        return;
    }
    let fx = Fixture::new();
    let berth = berth_with_image(&fx);
    let (registry, tokens) = TestRegistry::start_with_tokens(USER, PASSWORD);
    let host = registry.host();
    let dest = format!("{host}/team/web:1");

    // No login: the token service refuses, and berth says what to do.
    let refused = berth.output(&["push", "web:1", &dest]);
    assert_eq!(refused.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--creds"), "{stderr}");

    // A wrong password is refused by login, and nothing is saved.
    let mut login = berth.command();
    login
        .args(["login", "-u", USER, "--password-stdin", &host])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let wrong = feed(login, "not-the-password\n");
    assert!(
        !wrong.status.success(),
        "login with a wrong password succeeded"
    );
    assert!(!berth.auth_file().exists());

    let mut login = berth.command();
    login
        .args(["login", "-u", USER, "--password-stdin", &host])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let logged_in = feed(login, &format!("{PASSWORD}\n"));
    assert!(
        logged_in.status.success(),
        "{}",
        String::from_utf8_lossy(&logged_in.stderr)
    );
    assert!(String::from_utf8_lossy(&logged_in.stdout).contains("Login Succeeded"));
    let mode = std::fs::metadata(berth.auth_file())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the auth file is readable by others");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(berth.auth_file()).unwrap()).unwrap();
    assert_eq!(
        config["auths"][&host]["auth"],
        berth_tests::images::base64(format!("{USER}:{PASSWORD}").as_bytes(), false)
    );

    // Small chunks, so the layer goes up in several PATCH requests.
    let first = berth
        .command()
        .env("BERTH_PUSH_CHUNK_SIZE", "262144")
        .args(["push", "web:1", &dest])
        .output()
        .unwrap();
    assert!(
        first.status.success(),
        "push: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    let first = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(first.contains(&format!("The push refers to repository [{host}/team/web]")));
    assert!(
        lines_with(&first, "Pushed (").len() == 1
            && first.lines().filter(|l| l.ends_with(": Pushed")).count() == 1,
        "one layer in chunks, the config whole:\n{first}"
    );
    assert!(tokens.issued() > 0, "no token was asked for");
    let digest = first
        .lines()
        .find_map(|l| l.split(" digest: ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .unwrap()
        .to_string();

    // Pushed again: every blob is found, none is sent.
    let again = berth.ok(&["push", "web:1", &dest]);
    assert_eq!(lines_with(&again, "Pushed").len(), 0, "{again}");
    assert_eq!(
        lines_with(&again, "Layer already exists").len(),
        2,
        "{again}"
    );

    // skopeo reads it back: the same manifest, bit for bit.
    let creds = format!("--creds={USER}:{PASSWORD}");
    let inspected = tool(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            &creds,
            &format!("docker://{dest}"),
        ],
    );
    let inspected: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(inspected["Digest"], digest);
    let copied = fx.dir().join("bth-skopeo-copy");
    tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("--src-creds={USER}:{PASSWORD}"),
            &format!("docker://{dest}"),
            &format!("oci:{}:copied", copied.display()),
        ],
    );
    assert!(copied.join("index.json").is_file());

    // podman pulls it with the login berth wrote, and runs it.
    let podman = Podman::new(&fx.rootfs());
    let pulled = podman.output(&[
        "pull",
        "--tls-verify=false",
        "--authfile",
        &berth.auth_file().to_string_lossy(),
        &dest,
    ]);
    assert!(
        pulled.status.success(),
        "podman pull: {}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    let ran = podman.output(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--cgroup-parent",
        &podman.cgroup_parent,
        &dest,
    ]);
    assert!(
        ran.status.success(),
        "podman run: {}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout).trim(),
        "hello-from-pushed-image"
    );

    // Pushed under another name on the same registry: berth remembers
    // where it pushed, and the blobs are mounted from there, not uploaded.
    let third = berth.ok(&["push", "web:1", &format!("{host}/third/web:3")]);
    assert_eq!(
        lines_with(&third, "Mounted from team/web").len(),
        2,
        "{third}"
    );
    assert_eq!(lines_with(&third, "Pushed").len(), 0, "{third}");

    // Pulled back by berth, then pushed under another name on the same
    // registry: the blobs are mounted from a repository it was pulled from.
    berth.ok(&["pull", &dest]);
    let mounted = berth.ok(&["push", &dest, &format!("{host}/other/web:2")]);
    assert_eq!(lines_with(&mounted, "Mounted from ").len(), 2, "{mounted}");
    assert_eq!(lines_with(&mounted, "Pushed").len(), 0, "{mounted}");

    // Logged out: pushing is refused again.
    let logout = berth.ok(&["logout", &host]);
    assert!(logout.contains("Removing login credentials"), "{logout}");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(berth.auth_file()).unwrap()).unwrap();
    assert!(config["auths"].get(&host).is_none(), "{config}");
    assert!(!berth.output(&["push", "web:1", &dest]).status.success());
    // --creds works without the file.
    berth.ok(&[
        "push",
        "--creds",
        &format!("{USER}:{PASSWORD}"),
        "web:1",
        &dest,
    ]);
}

#[test]
fn a_docker_schema_2_image_is_pushed_as_one() {
    if !root_or_skip("a_docker_schema_2_image_is_pushed_as_one") {
        return;
    }
    let fx = Fixture::new();
    let plain = TestRegistry::start();
    let layout = fx.dir().join("bth-v2s2-layout");
    build_image(&layout, "latest", &fx.rootfs(), &["--config.cmd=sh"]);
    plain.push(&layout, "latest", "docker/busybox:latest", "v2s2", false);
    let berth = Berth::new();
    let source = format!("{}/docker/busybox:latest", plain.host());
    berth.ok(&["pull", &source]);

    let (registry, _tokens) = TestRegistry::start_with_tokens(USER, PASSWORD);
    let dest = format!("{}/copy/busybox:v2s2", registry.host());
    berth.ok(&[
        "push",
        "--creds",
        &format!("{USER}:{PASSWORD}"),
        &source,
        &dest,
    ]);
    let raw = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("--creds={USER}:{PASSWORD}"),
            &format!("docker://{dest}"),
        ],
    );
    let manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let original = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{source}"),
        ],
    );
    assert_eq!(raw, original, "the manifest changed on the way");
}

/// Run `command` with `input` on its stdin.
fn feed(mut command: Command, input: &str) -> Output {
    use std::io::Write;
    let mut child = command.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The store's index.json entries: (name, manifest digest).
fn tags_in(berth: &Berth) -> Vec<(String, String)> {
    let index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(berth.root.path().join("images/index.json")).unwrap(),
    )
    .unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn blob_exists(berth: &Berth, digest: &str) -> bool {
    berth
        .root
        .path()
        .join("images/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
        .exists()
}

#[test]
fn tag_history_inspect_prune_and_rmi_by_id() {
    if !root_or_skip("tag_history_inspect_prune_and_rmi_by_id") {
        return;
    }
    let fx = Fixture::new();
    let berth = berth_with_image(&fx);

    // inspect: Docker's field names, from the image's config.
    let inspected: serde_json::Value =
        serde_json::from_str(&berth.ok(&["image", "inspect", "web:1"])).unwrap();
    let image = &inspected[0];
    let id = image["Id"].as_str().unwrap().to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{image}");
    assert_eq!(image["RepoTags"], serde_json::json!(["web:1"]));
    assert_eq!(
        image["Config"]["Cmd"],
        serde_json::json!(["echo", "hello-from-pushed-image"])
    );
    assert_eq!(image["Os"], "linux");
    assert_eq!(image["RootFS"]["Type"], "layers");
    assert_eq!(image["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    assert!(image["Size"].as_u64().unwrap() > 100_000, "{image}");
    assert!(image["Created"].as_str().unwrap().starts_with("20"));
    let formatted = berth.ok(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}} {{.Config.Cmd}} {{json .RepoTags}}",
        "web:1",
    ]);
    assert_eq!(
        formatted.trim(),
        format!("{id} echo,hello-from-pushed-image [\"web:1\"]")
    );

    // docker inspect takes images too, where no container has the name.
    let plain: serde_json::Value = serde_json::from_str(&berth.ok(&["inspect", "web:1"])).unwrap();
    assert_eq!(plain[0]["Id"], id);

    // tag by an ID prefix: a second name for the same manifest.
    let short = &id[7..19];
    berth.ok(&["tag", short, "127.0.0.1:5999/team/web:2"]);
    let tags = tags_in(&berth);
    assert_eq!(tags.len(), 2, "{tags:?}");
    assert_eq!(tags[0].1, tags[1].1);
    let by_id = berth.ok(&["image", "inspect", "--format", "{{json .RepoTags}}", &id]);
    assert_eq!(by_id.trim(), r#"["127.0.0.1:5999/team/web:2","web:1"]"#);

    // history: the config's steps, newest first, the newest with the ID.
    let history = berth.ok(&["history", "web:1"]);
    let mut lines = history.lines();
    let header = lines.next().unwrap();
    for column in ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"] {
        assert!(header.contains(column), "{history}");
    }
    let rows: Vec<&str> = lines.collect();
    assert!(rows[0].starts_with(short), "{history}");
    assert!(rows.iter().any(|r| r.contains("umoci insert")), "{history}");
    assert!(rows.last().unwrap().starts_with("<missing>"), "{history}");
    let created_by = berth.ok(&["image", "history", "--format", "{{.CreatedBy}}", "web:1"]);
    assert_eq!(created_by.lines().count(), rows.len());
    assert_eq!(
        berth.ok(&["history", "-q", "web:1"]).lines().next(),
        Some(short)
    );

    // rmi by ID: refused while the image has two names, as Docker does.
    let refused = berth.output(&["rmi", short]);
    assert_eq!(refused.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("several names"));
    berth.ok(&["rmi", "127.0.0.1:5999/team/web:2"]);

    // A new image under web:1 leaves the old one dangling: prune takes it.
    let old_manifest = tags_in(&berth)[0].1.clone();
    let layout = fx.dir().join("bth-push-layout");
    tool(
        "umoci",
        &[
            "config",
            "--image",
            &format!("{}:latest", layout.display()),
            "--config.cmd=true",
        ],
    );
    berth.ok(&["load", "--tag", "web:1", &layout.to_string_lossy()]);
    assert!(blob_exists(&berth, &old_manifest));
    let pruned = berth.ok(&["image", "prune", "-f"]);
    assert!(
        pruned.contains(&format!("deleted: {old_manifest}")),
        "{pruned}"
    );
    assert!(pruned.contains(&format!("deleted: {id}")), "{pruned}");
    assert!(!blob_exists(&berth, &old_manifest));
    assert_eq!(tags_in(&berth).len(), 1);

    // -a: every image no container uses; a container's image stays.
    berth.ok(&["tag", "web:1", "spare:1"]);
    berth.ok(&["load", "--tag", "unused:1", &layout.to_string_lossy()]);
    berth.ok(&["run", "--name", "bth-keeps-web", "web:1"]);
    let pruned = berth.ok(&["image", "prune", "-a", "-f"]);
    assert!(pruned.contains("untagged: spare:1"), "{pruned}");
    assert!(!pruned.contains("untagged: web:1"), "{pruned}");
    let names: Vec<String> = tags_in(&berth).into_iter().map(|t| t.0).collect();
    assert_eq!(names, ["docker.io/library/web:1"]);
    berth.ok(&["rm", "bth-keeps-web"]);

    // Docker's management spellings: image ls, image rm.
    let listed = berth.ok(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(listed.trim(), "docker.io/library/web:1");
    berth.ok(&["tag", "web:1", "gone:1"]);
    berth.ok(&["image", "rm", "gone:1"]);
    assert_eq!(tags_in(&berth).len(), 1);

    // Several at once; one that fails doesn't stop the others.
    berth.ok(&["tag", "web:1", "one:1"]);
    berth.ok(&["tag", "web:1", "two:1"]);
    let out = berth.output(&["rmi", "one:1", "nosuch:1", "two:1"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuch"));
    assert_eq!(tags_in(&berth).len(), 1, "one:1 and two:1 are gone");

    // rmi by a unique ID prefix.
    let id = berth.ok(&["image", "inspect", "--format", "{{.Id}}", "web:1"]);
    berth.ok(&["rmi", &id.trim()[7..15]]);
    assert!(tags_in(&berth).is_empty());
}

#[test]
fn save_and_load_both_formats_with_skopeo_both_ways() {
    if !root_or_skip("save_and_load_both_formats_with_skopeo_both_ways") {
        return;
    }
    let fx = Fixture::new();
    let berth = berth_with_image(&fx);
    // A second image sharing the layer, in the same archive.
    let layout = fx.dir().join("bth-push-layout");
    let image = format!("{}:latest", layout.display());
    tool(
        "umoci",
        &["config", "--image", &image, "--config.cmd=hostname"],
    );
    berth.ok(&[
        "load",
        "--tag",
        "127.0.0.1:5999/team/host:2",
        &layout.to_string_lossy(),
    ]);
    let dir = fx.dir();

    // docker-archive, as docker save writes it: skopeo reads both images.
    let docker = dir.join("bth-saved-docker.tar");
    berth.ok(&[
        "save",
        "-o",
        &docker.to_string_lossy(),
        "web:1",
        "127.0.0.1:5999/team/host:2",
    ]);
    let listing = tool("tar", &["-tf", &docker.to_string_lossy()]);
    for name in ["manifest.json", "repositories"] {
        assert!(listing.lines().any(|l| l == name), "{listing}");
    }
    assert_eq!(
        listing.lines().filter(|l| l.ends_with(".tar")).count(),
        1,
        "the shared layer is in the archive once:\n{listing}"
    );
    let web_id = berth.ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .RootFS.Layers}}",
        "web:1",
    ]);
    for name in ["web:1", "127.0.0.1:5999/team/host:2"] {
        let inspected = tool(
            "skopeo",
            &[
                "inspect",
                &format!("docker-archive:{}:{name}", docker.display()),
            ],
        );
        let inspected: serde_json::Value = serde_json::from_str(&inspected).unwrap();
        assert_eq!(inspected["Layers"].to_string(), web_id.trim(), "{name}");
    }
    let copied = dir.join("bth-from-docker-archive");
    tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            &format!("docker-archive:{}:web:1", docker.display()),
            &format!("dir:{}", copied.display()),
        ],
    );
    assert!(copied.join("manifest.json").is_file());

    // oci-archive: skopeo reads it by the names berth gave.
    let oci = dir.join("bth-saved-oci.tar");
    berth.ok(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        &oci.to_string_lossy(),
        "web:1",
        "127.0.0.1:5999/team/host:2",
    ]);
    let manifest_digest = berth.ok(&[
        "image",
        "inspect",
        "--format",
        "{{.Descriptor.digest}}",
        "web:1",
    ]);
    let inspected = tool(
        "skopeo",
        &[
            "inspect",
            &format!("oci-archive:{}:docker.io/library/web:1", oci.display()),
        ],
    );
    let inspected: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(inspected["Digest"], manifest_digest.trim());
    let layout_copy = dir.join("bth-from-oci-archive");
    tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            &format!("oci-archive:{}:127.0.0.1:5999/team/host:2", oci.display()),
            &format!("oci:{}:copied", layout_copy.display()),
        ],
    );
    assert!(layout_copy.join("index.json").is_file());

    // Round trips into fresh roots: a file, and a pipe through stdin.
    for (format, archive) in [("docker", &docker), ("oci", &oci)] {
        let other = Berth::new();
        let loaded = match format {
            "docker" => other.ok(&["load", "-i", &archive.to_string_lossy()]),
            _ => other.ok(&["image", "load", "-i", &archive.to_string_lossy()]),
        };
        assert_eq!(loaded.lines().count(), 2, "{format}: {loaded}");
        let out = other.ok(&["run", "--rm", "web:1"]);
        assert_eq!(out.trim(), "hello-from-pushed-image", "{format}");
    }
    let piped = Berth::new();
    let mut save = berth.command();
    save.args(["save", "web:1"]).stdout(Stdio::piped());
    let mut save = save.spawn().unwrap();
    let mut load = piped.command();
    load.arg("load").stdin(save.stdout.take().unwrap());
    let loaded = load.output().unwrap();
    assert!(save.wait().unwrap().success());
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    assert_eq!(
        piped.ok(&["run", "--rm", "web:1"]).trim(),
        "hello-from-pushed-image"
    );

    // Archives skopeo wrote load into berth and run.
    let skopeo_docker = dir.join("bth-skopeo-docker.tar");
    tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            &format!("oci:{image}"),
            &format!(
                "docker-archive:{}:made/by-skopeo:1",
                skopeo_docker.display()
            ),
        ],
    );
    let skopeo_oci = dir.join("bth-skopeo-oci.tar");
    tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            &format!("oci:{image}"),
            &format!("oci-archive:{}:latest", skopeo_oci.display()),
        ],
    );
    let fresh = Berth::new();
    let loaded = fresh.ok(&["load", &skopeo_docker.to_string_lossy()]);
    assert!(loaded.contains("docker.io/made/by-skopeo:1"), "{loaded}");
    fresh.ok(&["load", "--tag", "oci:1", &skopeo_oci.to_string_lossy()]);
    for name in ["made/by-skopeo:1", "oci:1"] {
        let out = fresh.ok(&["run", "--rm", "--hostname", "bth-saved", name]);
        assert_eq!(out.trim(), "bth-saved", "{name}");
    }
}

/// The media types of the layers of `image` in a registry, as skopeo sees them.
fn layer_media_types(image: &str) -> Vec<String> {
    let raw = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{image}"),
        ],
    );
    let manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap().to_string())
        .collect()
}

const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

#[test]
fn zstd_layers_in_and_out_and_a_platform_from_an_index() {
    if !root_or_skip("zstd_layers_in_and_out_and_a_platform_from_an_index") {
        return;
    }
    let fx = Fixture::new();
    let berth = berth_with_image(&fx);
    let registry = TestRegistry::start();
    let host = registry.host();
    let layout = fx.dir().join("bth-push-layout");

    // An image skopeo pushed with zstd layers: berth pulls and runs it.
    let by_skopeo = format!("{host}/zstd/by-skopeo:1");
    tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--format",
            "oci",
            "--dest-compress-format",
            "zstd",
            "--dest-tls-verify=false",
            &format!("oci:{}:latest", layout.display()),
            &format!("docker://{by_skopeo}"),
        ],
    );
    assert_eq!(layer_media_types(&by_skopeo), [ZSTD]);
    let puller = Berth::new();
    puller.ok(&["pull", &by_skopeo]);
    assert_eq!(
        puller.ok(&["run", "--rm", &by_skopeo]).trim(),
        "hello-from-pushed-image"
    );

    // berth pushes zstd (recompressing its gzip layer) and gzip back.
    let by_berth = format!("{host}/zstd/by-berth:1");
    berth.ok(&["push", "--compression-format", "zstd", "web:1", &by_berth]);
    assert_eq!(layer_media_types(&by_berth), [ZSTD]);
    let copied = fx.dir().join("bth-zstd-copy");
    tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{by_berth}"),
            &format!("oci:{}:copied", copied.display()),
        ],
    );
    let fresh = Berth::new();
    fresh.ok(&["pull", &by_berth]);
    assert_eq!(
        fresh.ok(&["run", "--rm", &by_berth]).trim(),
        "hello-from-pushed-image"
    );
    let regzipped = format!("{host}/zstd/gzip-again:1");
    puller.ok(&[
        "push",
        "--compression-format",
        "gzip",
        &by_skopeo,
        &regzipped,
    ]);
    assert_eq!(layer_media_types(&regzipped), [GZIP]);
    let again = Berth::new();
    again.ok(&["pull", &regzipped]);
    assert_eq!(
        again.ok(&["run", "--rm", &regzipped]).trim(),
        "hello-from-pushed-image"
    );

    // An index of two platforms: the host's by default, --platform chooses.
    berth_tests::images::add_multi_platform_index(&layout, "latest", "multi");
    registry.push(&layout, "multi", "multi/busybox:1", "oci", true);
    let multi = format!("{host}/multi/busybox:1");
    let arch = |berth: &Berth| {
        berth
            .ok(&["image", "inspect", "--format", "{{.Architecture}}", &multi])
            .trim()
            .to_string()
    };
    let platforms = Berth::new();
    platforms.ok(&["pull", &multi]);
    assert_eq!(arch(&platforms), "amd64");
    platforms.ok(&["pull", "--platform", "linux/arm64", &multi]);
    assert_eq!(arch(&platforms), "arm64");
    // run --platform checks what is stored. (The "arm64" image is the
    // amd64 one with another config, so it runs here.)
    let wrong = platforms.output(&["run", "--rm", "--platform", "linux/amd64", &multi, "true"]);
    assert_eq!(wrong.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("berth pull --platform linux/amd64"));
    let ran = platforms.ok(&[
        "run",
        "--rm",
        "--platform",
        "linux/arm64",
        &multi,
        "echo",
        "ok",
    ]);
    assert_eq!(ran.trim(), "ok");
    let missing = platforms.output(&["pull", "--platform", "linux/s390x", &multi]);
    assert_eq!(missing.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("linux/arm64") && stderr.contains("linux/amd64"),
        "{stderr}"
    );
    // An index in the store (skopeo put it there: the store is an OCI
    // layout) is pushed whole: each manifest, then the index.
    let store_ref = format!(
        "oci:{}:{host}/multi/busybox:index",
        platforms.root.path().join("images").display()
    );
    tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--all",
            "--src-tls-verify=false",
            &format!("docker://{multi}"),
            &store_ref,
        ],
    );
    let pushed_index = format!("{host}/copied/multi:1");
    platforms.ok(&[
        "push",
        &format!("{host}/multi/busybox:index"),
        &pushed_index,
    ]);
    let raw = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{pushed_index}"),
        ],
    );
    let index: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{raw}");
    let arm = Berth::new();
    arm.ok(&["image", "pull", "--platform", "linux/arm64", &pushed_index]);
    assert_eq!(
        arm.ok(&[
            "image",
            "inspect",
            "--format",
            "{{.Architecture}}",
            &pushed_index
        ])
        .trim(),
        "arm64"
    );

    // A single image is only what it is.
    let single = platforms.output(&["pull", "--platform", "linux/arm64", &by_berth]);
    assert_eq!(single.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&single.stderr).contains("not linux/arm64"));
}

/// A registry that sends uploads to another host over plain HTTP: berth
/// refuses, and the other host receives nothing.
#[test]
fn an_upload_location_elsewhere_over_plain_http_is_refused() {
    if !root_or_skip("an_upload_location_elsewhere_over_plain_http_is_refused") {
        return;
    }
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let elsewhere = TcpListener::bind("127.0.0.1:0").unwrap();
    let elsewhere_port = elsewhere.local_addr().unwrap().port();
    let reached = Arc::new(AtomicUsize::new(0));
    let count = reached.clone();
    std::thread::spawn(move || {
        for _ in elsewhere.incoming() {
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    let registry = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = registry.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in registry.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
            }
            let reply = if request.starts_with("POST") {
                format!(
                    "HTTP/1.1 202 Accepted\r\nLocation: http://127.0.0.1:{elsewhere_port}/upload\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
            };
            let mut stream = stream;
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    let fx = Fixture::new();
    let berth = berth_with_image(&fx);
    let out = berth.output(&["push", "web:1", &format!("{host}/team/web:1")]);
    assert_eq!(out.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("over plain HTTP"), "{stderr}");
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "the other host was reached"
    );
}

#[test]
fn a_save_killed_at_any_moment_leaves_no_half_archive() {
    if !root_or_skip("a_save_killed_at_any_moment_leaves_no_half_archive") {
        return;
    }
    let fx = Fixture::new();
    let berth = berth_with_image(&fx);
    let out = fx.dir().join("bth-killed-save");
    std::fs::create_dir(&out).unwrap();
    let archive = out.join("web.tar");
    // How long a whole save takes, to spread the kills over it.
    let started = std::time::Instant::now();
    berth.ok(&["save", "-o", &archive.to_string_lossy(), "web:1"]);
    let took = started.elapsed();
    let whole = std::fs::read(&archive).unwrap();
    std::fs::remove_file(&archive).unwrap();
    const KILLS: u32 = 12;
    for n in 0..KILLS {
        let mut save = berth.command();
        save.args(["save", "-o", &archive.to_string_lossy(), "web:1"]);
        let mut save = save
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(took * n / KILLS);
        let _ = save.kill();
        let _ = save.wait();
        // Either no archive, or the whole one; never a part, nor a stray.
        let names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.is_empty() || names == ["web.tar"],
            "after a kill at {n}/{KILLS}: {names:?}"
        );
        if let Ok(bytes) = std::fs::read(&archive) {
            assert_eq!(bytes.len(), whole.len(), "a part of the archive");
            std::fs::remove_file(&archive).unwrap();
        }
    }
}
