//! `berth build` on real Dockerfiles: .dockerignore, multi-stage builds,
//! COPY's options, here-documents, RUN mounts and secrets. Every test has
//! its own state root (a `Lab`) and reads what the build stored.

use std::io::Read;
use std::path::{Path, PathBuf};

use assert_cmd::prelude::*;
use berth_tests::lab::Lab;
use berth_tests::root_or_skip;
use predicates::prelude::*;

/// A build context: `files` (path, content) and the Dockerfile.
fn context(dir: &Path, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
    let context = dir.join("ctx");
    for (path, content) in files {
        let path = context.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(context.join("Dockerfile"), dockerfile).unwrap();
    context
}

/// Every blob in the lab's store, decompressed when it is gzipped: the
/// layers of every image, configs and manifests.
fn stored_blobs(lab: &Lab) -> Vec<(String, Vec<u8>)> {
    let dir = lab.pulled.root.path().join("images/blobs/sha256");
    let mut blobs = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let raw = std::fs::read(&path).unwrap();
        let mut plain = Vec::new();
        let bytes = match flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut plain) {
            Ok(_) => plain,
            Err(_) => raw,
        };
        blobs.push((path.display().to_string(), bytes));
    }
    assert!(blobs.len() > 3, "no blobs in {}", dir.display());
    blobs
}

/// The paths in every layer tar of the store.
fn layer_paths(lab: &Lab) -> Vec<String> {
    let mut paths = Vec::new();
    for (_, bytes) in stored_blobs(lab) {
        let mut archive = tar::Archive::new(&bytes[..]);
        let Ok(entries) = archive.entries() else {
            continue;
        };
        for entry in entries.flatten() {
            if let Ok(path) = entry.path() {
                paths.push(path.to_string_lossy().into_owned());
            }
        }
    }
    paths
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The image config of `tag` in the lab's store (via `berth`'s own layout).
fn image_config(lab: &Lab, tag: &str) -> serde_json::Value {
    let store = lab.pulled.root.path().join("images");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("index.json")).unwrap()).unwrap();
    let manifest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .is_some_and(|n| n.ends_with(tag))
        })
        .unwrap_or_else(|| panic!("{tag} not in {index}"));
    let blob = |digest: &str| -> serde_json::Value {
        let hex = digest.strip_prefix("sha256:").unwrap();
        serde_json::from_slice(&std::fs::read(store.join("blobs/sha256").join(hex)).unwrap())
            .unwrap()
    };
    let manifest = blob(manifest["digest"].as_str().unwrap());
    blob(manifest["config"]["digest"].as_str().unwrap())
}

const SECRET: &str = "TOP-SECRET-d41d8cd98f00";
const MOUNTED_SECRET: &str = "MOUNTED-SECRET-9e107d9d372b";

#[test]
fn dockerignore_and_secrets_keep_files_out_of_every_layer() {
    if !root_or_skip("dockerignore_and_secrets_keep_files_out_of_every_layer") {
        return;
    }
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let dockerfile = format!(
        "FROM {}\n\
         COPY . /app/\n\
         COPY secret* /glob/\n\
         RUN --mount=type=bind,target=/ctx ls -R /ctx > /bind-listing\n\
         RUN --mount=type=secret,id=token wc -c < /run/secrets/token > /used\n",
        lab.pulled.image
    );
    let ctx = context(
        dir.path(),
        &dockerfile,
        &[
            ("secret/key", SECRET),
            ("secret/keep", "kept by an exception\n"),
            ("notes.md", "left out\n"),
            ("README.md", "kept\n"),
            ("src/main.c", "int main(void) { return 0; }\n"),
            (
                ".dockerignore",
                "# the context's secrets stay home\n/secret\n!secret/keep\n*.md\n!README.md\n",
            ),
        ],
    );
    let token = dir.path().join("token");
    std::fs::write(&token, MOUNTED_SECRET).unwrap();
    let out = lab.ok(&[
        "build",
        "-t",
        "ignored:1",
        "--secret",
        &format!("id=token,src={}", token.display()),
        &ctx.to_string_lossy(),
    ]);
    assert!(out.contains("Successfully tagged"), "{out}");

    let run = |command: &str| {
        let out = lab
            .berth()
            .args(["run", "--rm", "--network", "none", "ignored:1", "sh", "-c"])
            .arg(command)
            .output()
            .unwrap();
        assert!(out.status.success(), "{command}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listing = run("cd /app && find . | sort");
    assert!(listing.contains("./secret/keep"), "{listing}");
    assert!(listing.contains("./README.md") && listing.contains("./src/main.c"));
    assert!(!listing.contains("./secret/key"), "{listing}");
    assert!(!listing.contains("notes.md"), "{listing}");
    // The Dockerfile and .dockerignore are sent, and copied like any file.
    assert!(listing.contains("./Dockerfile") && listing.contains("./.dockerignore"));
    assert_eq!(run("ls /glob"), "keep\n", "the glob skips what is ignored");
    let bind = run("cat /bind-listing");
    assert!(bind.contains("keep") && !bind.contains("key"), "{bind}");
    assert_eq!(run("cat /used").trim(), MOUNTED_SECRET.len().to_string());
    assert_eq!(
        run("ls /run/secrets 2>&1; echo end"),
        "end\n",
        "the mount point of the secret stayed in the image"
    );

    // Neither secret is in any blob of the store, layer or config.
    for (path, bytes) in stored_blobs(&lab) {
        assert!(!contains(&bytes, SECRET), "the secret leaked into {path}");
        assert!(
            !contains(&bytes, MOUNTED_SECRET),
            "the mounted secret leaked into {path}"
        );
    }
    let paths = layer_paths(&lab);
    assert!(paths.iter().any(|p| p.ends_with("secret/keep")));
    assert!(
        !paths.iter().any(|p| p.ends_with("secret/key")),
        "{paths:?}"
    );

    // A named Dockerfile's own ignore file wins over the context's.
    std::fs::write(
        ctx.join("Other.dockerfile"),
        dockerfile.lines().take(2).collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
    std::fs::write(ctx.join("Other.dockerfile.dockerignore"), "*\n!README.md\n").unwrap();
    lab.ok(&[
        "build",
        "-t",
        "other:1",
        "-f",
        &ctx.join("Other.dockerfile").to_string_lossy(),
        &ctx.to_string_lossy(),
    ]);
    let out = lab
        .berth()
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "other:1",
            "ls",
            "-A",
            "/app",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "README.md\n");

    // A source that is ignored is missing, as in Docker.
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {}\nCOPY secret/key /x\n", lab.pulled.image),
    )
    .unwrap();
    lab.berth()
        .args(["build", "-t", "leak:1", &ctx.to_string_lossy()])
        .assert()
        .code(125)
        .stderr(predicate::str::contains(
            "secret/key: no such file in the build context (or .dockerignore leaves it out)",
        ));
}

#[test]
fn multi_stage_builds_copy_between_stages_and_skip_what_the_target_does_not_need() {
    if !root_or_skip(
        "multi_stage_builds_copy_between_stages_and_skip_what_the_target_does_not_need",
    ) {
        return;
    }
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let dockerfile = format!(
        r#"# syntax=docker/dockerfile:1
ARG BASE={image}
ARG GREETING=hello
FROM ${{BASE}} AS build
ARG GREETING
RUN <<EOF
mkdir -p /out
echo "$GREETING from the build stage" > /out/message
chmod 750 /out/message
EOF
RUN echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1000:' >> /etc/group
COPY --chmod=600 <<CONF /out/app.conf
greeting=${{GREETING}}
CONF

FROM ${{BASE}} AS never-needed
RUN echo this stage must not be built && exit 1

FROM build AS runtime
COPY --from=build /out/ /srv/
COPY --from=0 --chown=app:app /out/message /home/app/
COPY --chown=1234:5678 --link *.txt /texts/
COPY --from={image} /srv/www/index.html /from-image/
SHELL ["/bin/sh", "-ec"]
RUN cat <<EOF > /shell-form
shell is $0
EOF
HEALTHCHECK --interval=5s --timeout=2s --retries=4 CMD wget -q -O- http://localhost/ || exit 1
STOPSIGNAL SIGQUIT
ONBUILD RUN echo built on top
USER app
CMD ["sh", "-c", "cat /home/app/message; id -u"]
"#,
        image = lab.pulled.image
    );
    let ctx = context(
        dir.path(),
        &dockerfile,
        &[("a.txt", "a\n"), ("b.txt", "b\n"), ("c.md", "c\n")],
    );
    let ctx = ctx.to_string_lossy();
    let first = lab.ok(&[
        "build",
        "-t",
        "multi:1",
        "--build-arg",
        "GREETING=hi",
        "--label",
        "org.example.team=builders",
        &ctx,
    ]);
    assert!(
        first.contains("[stage 1] skipped: the target does not need it"),
        "{first}"
    );
    assert!(!first.contains("must not be built"), "{first}");

    let run = |image: &str, command: &str| {
        let out = lab
            .berth()
            .args([
                "run",
                "--rm",
                "--network",
                "none",
                "--user",
                "0",
                image,
                "sh",
                "-c",
            ])
            .arg(command)
            .output()
            .unwrap();
        assert!(out.status.success(), "{command}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ran = lab
        .berth()
        .args(["run", "--rm", "--network", "none", "multi:1"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout),
        "hi from the build stage\n1000\n",
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert_eq!(
        run(
            "multi:1",
            "stat -c '%a %u:%g %n' /srv/message /srv/app.conf /home/app/message /texts/a.txt"
        ),
        "750 0:0 /srv/message\n600 0:0 /srv/app.conf\n750 1000:1000 /home/app/message\n\
         644 1234:5678 /texts/a.txt\n"
    );
    assert_eq!(run("multi:1", "cat /srv/app.conf"), "greeting=hi\n");
    assert_eq!(run("multi:1", "ls /texts"), "a.txt\nb.txt\n");
    assert_eq!(
        run("multi:1", "cat /from-image/index.html"),
        "hello from web\n",
        "COPY --from an image"
    );
    assert_eq!(run("multi:1", "cat /shell-form"), "shell is /bin/sh\n");

    let config = image_config(&lab, "multi:1");
    let c = &config["config"];
    assert_eq!(
        c["Healthcheck"],
        serde_json::json!({
            "Test": ["CMD-SHELL", "wget -q -O- http://localhost/ || exit 1"],
            "Interval": 5_000_000_000u64, "Timeout": 2_000_000_000u64, "Retries": 4
        })
    );
    assert_eq!(c["StopSignal"], "SIGQUIT");
    assert_eq!(c["OnBuild"], serde_json::json!(["RUN echo built on top"]));
    assert_eq!(c["Shell"], serde_json::json!(["/bin/sh", "-ec"]));
    assert_eq!(c["User"], "app");
    assert_eq!(c["Labels"]["org.example.team"], "builders");

    // --target: only that stage (and what it needs) is built.
    let out = lab.ok(&["build", "-t", "multi:build", "--target", "build", &ctx]);
    assert!(out.contains("[stage 2] skipped"), "{out}");
    assert_eq!(
        run("multi:build", "ls /texts 2>&1; cat /out/message"),
        "ls: /texts: No such file or directory\nhello from the build stage\n"
    );

    // A cached rebuild reuses every layer, COPY's too: the same image.
    let digest = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("Digest:"))
            .unwrap()
            .to_string()
    };
    let again = lab.ok(&[
        "build",
        "-t",
        "multi:1",
        "--build-arg",
        "GREETING=hi",
        "--label",
        "org.example.team=builders",
        &ctx,
    ]);
    let built = again.lines().filter(|l| l.starts_with("--> "));
    assert!(built.clone().all(|l| l.contains("Using cache")), "{again}");
    assert_eq!(built.count(), 8, "{again}");
    assert_eq!(digest(&first), digest(&again));

    // A changed file makes its COPY run again.
    std::fs::write(dir.path().join("ctx/b.txt"), "b changed\n").unwrap();
    let changed = lab.ok(&["build", "-t", "multi:2", "--build-arg", "GREETING=hi", &ctx]);
    assert_eq!(
        run("multi:2", "cat /texts/b.txt"),
        "b changed\n",
        "{changed}"
    );

    // An image built FROM multi:1 runs its ONBUILD first, and does not
    // pass it on; --pull fetches the base again (here from the registry).
    let child = dir.path().join("child");
    std::fs::create_dir_all(&child).unwrap();
    std::fs::write(child.join("Dockerfile"), "FROM multi:1\nUSER 0\n").unwrap();
    let out = lab.ok(&["build", "-t", "child:1", &child.to_string_lossy()]);
    assert!(out.contains("ONBUILD RUN echo built on top"), "{out}");
    assert!(out.contains("built on top\n"), "{out}");
    assert!(
        image_config(&lab, "child:1")["config"]
            .get("OnBuild")
            .is_none()
    );
    std::fs::write(
        child.join("Dockerfile"),
        format!("FROM --platform=$BUILDPLATFORM {}\n", lab.pulled.image),
    )
    .unwrap();
    let out = lab.ok(&[
        "build",
        "--pull",
        "-t",
        "pulled:1",
        &child.to_string_lossy(),
    ]);
    assert!(out.contains("Pulling"), "{out}");
    std::fs::write(
        child.join("Dockerfile"),
        "FROM --platform=linux/s390x scratch\n",
    )
    .unwrap();
    lab.berth()
        .args(["build", "-t", "s390x:1", &child.to_string_lossy()])
        .assert()
        .code(125)
        .stderr(predicate::str::contains(
            "berth builds for this machine's platform",
        ));

    // `-f -`: the Dockerfile from stdin; mistakes name line and column.
    assert_cmd::Command::from_std(lab.berth())
        .args(["build", "-t", "bad:1", "-f", "-", &ctx])
        .write_stdin("FROM scratch\nCOPY --form=x a b\n")
        .assert()
        .code(125)
        .stderr(predicate::str::contains(
            "Dockerfile:2:6: COPY has no option --form",
        ));
}

#[test]
fn cache_mounts_persist_between_builds_and_stay_out_of_the_image() {
    if !root_or_skip("cache_mounts_persist_between_builds_and_stay_out_of_the_image") {
        return;
    }
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(
        dir.path(),
        &format!(
            "FROM {}\nRUN --mount=type=cache,target=/var/cache/app \
             echo run >> /var/cache/app/runs && wc -l < /var/cache/app/runs > /runs\n\
             RUN --mount=type=bind,source=data.txt,target=/mnt/data.txt cp /mnt/data.txt /copied\n",
            lab.pulled.image
        ),
        &[("data.txt", "first\n")],
    );
    let ctx = ctx.to_string_lossy();
    lab.ok(&["build", "-t", "cached:1", &ctx]);
    lab.ok(&["build", "-t", "cached:2", "--no-cache", &ctx]);
    let read = |image: &str, command: &str| {
        let out = lab
            .berth()
            .args([
                "run",
                "--rm",
                "--network",
                "none",
                image,
                "sh",
                "-c",
                command,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(read("cached:1", "cat /runs"), "1");
    assert_eq!(read("cached:2", "cat /copied"), "first");
    // What a bind mount shows is part of the step's cache key.
    std::fs::write(dir.path().join("ctx/data.txt"), "second\n").unwrap();
    lab.ok(&["build", "-t", "cached:3", &ctx]);
    assert_eq!(read("cached:3", "cat /copied; cat /runs"), "second\n2");
    assert_eq!(read("cached:2", "cat /runs"), "2", "the cache was not kept");
    assert_eq!(
        read(
            "cached:2",
            "[ -e /var/cache/app/runs ] && echo leaked || echo clean"
        ),
        "clean",
        "the cache's content went into the image"
    );
}

#[test]
fn run_steps_reach_the_network_and_leave_nothing_plugged_in() {
    if !root_or_skip("run_steps_reach_the_network_and_leave_nothing_plugged_in") {
        return;
    }
    let mut lab = Lab::new();
    // A web server of the test's own, on a network of its own: no internet.
    lab.network("t-build", "10.251.40.0/24");
    lab.detach(
        &["--name", "web", "--network", "t-build"],
        &["httpd", "-f", "-p", "8080", "-h", "/srv/www"],
    );
    let record: serde_json::Value = serde_json::from_str(&lab.ok(&["inspect", "web"])).unwrap();
    let address = record["state"]["address"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(
        dir.path(),
        &format!(
            "FROM {}\nRUN for i in 1 2 3 4 5 6 7 8 9 10; do \
             printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {address} 8080 > /raw; \
             grep -q 'hello from web' /raw && break; sleep 0.3; done; \
             grep 'hello from web' /raw > /fetched && rm /raw\n\
             RUN --network=none cat /proc/net/dev | grep -c : > /interfaces\n",
            lab.pulled.image
        ),
        &[],
    );
    let ctx = ctx.to_string_lossy();
    lab.ok(&["build", "-t", "fetched:1", "--network", "t-build", &ctx]);
    let out = lab
        .berth()
        .args(["run", "--rm", "--network", "none", "fetched:1", "sh", "-c"])
        .arg("cat /fetched /interfaces")
        .output()
        .unwrap();
    // RUN --network=none has only its loopback (and the header lines).
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from web\n1\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Without the network the same step fails: it really used it.
    lab.berth()
        .args([
            "build",
            "-t",
            "offline:1",
            "--no-cache",
            "--network",
            "none",
            &ctx,
        ])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("failed with exit code 1"));
    assert!(!lab.ok(&["images"]).contains("offline"));

    // Nothing of the steps is left: no veth, no address lease but web's.
    assert_eq!(
        bridge_ports(&lab, "t-build").len(),
        1,
        "a RUN step's veth was left on the bridge"
    );
    let leases = lab.pulled.root.path().join("networks/t-build/leases");
    let leased: Vec<_> = std::fs::read_dir(&leases)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("10."))
        .collect();
    assert_eq!(leased.len(), 1, "{leased:?}");
    let builds = lab.pulled.root.path().join("build");
    assert!(
        std::fs::read_dir(&builds).map_or(true, |mut d| d.next().is_none()),
        "the build's scratch directory was left"
    );
}

/// On drop, a build of `FROM scratch` in the context: the next build
/// removes what a killed one left.
struct Sweep<'a>(&'a Lab, PathBuf);

impl Drop for Sweep<'_> {
    fn drop(&mut self) {
        let _ = std::fs::write(self.1.join("Dockerfile"), "FROM scratch\nLABEL sweep=1\n");
        let _ = self
            .0
            .berth()
            .args(["build", "-t", "sweep:1"])
            .arg(&self.1)
            .output();
    }
}

/// The interfaces plugged into the bridge of berth network `name`.
fn bridge_ports(lab: &Lab, name: &str) -> Vec<String> {
    let inspect: serde_json::Value =
        serde_json::from_str(&lab.ok(&["network", "inspect", name])).unwrap();
    let network = if inspect.is_array() {
        &inspect[0]
    } else {
        &inspect
    };
    let bridge = network["Bridge"]
        .as_str()
        .or_else(|| network["Options"]["com.docker.network.bridge.name"].as_str())
        .unwrap_or_else(|| panic!("no bridge in {inspect}"));
    std::fs::read_dir(format!("/sys/class/net/{bridge}/brif"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_build_killed_in_a_run_step_leaves_nothing_after_the_next() {
    if !root_or_skip("a_build_killed_in_a_run_step_leaves_nothing_after_the_next") {
        return;
    }
    let mut lab = Lab::new();
    lab.network("t-killed", "10.251.41.0/24");
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(
        dir.path(),
        &format!("FROM {}\nRUN sleep 60\n", lab.pulled.image),
        &[],
    );
    // If this test fails halfway, a build still sweeps up the killed one
    // (its RUN container's cgroups) before the lab goes.
    let _sweep = Sweep(&lab, ctx.clone());
    let mut build = lab
        .berth()
        .args(["build", "-t", "killed:1", "--network", "t-killed"])
        .arg(&ctx)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the step's container runs (its runtime state exists).
    let builds = lab.pulled.root.path().join("build");
    let mut step = None;
    berth_tests::lab::eventually("the RUN step runs", || {
        step = std::fs::read_dir(&builds)
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|d| {
                std::fs::read_dir(d.path().join("runtime"))
                    .into_iter()
                    .flatten()
            })
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .next();
        step.is_some() && !bridge_ports(&lab, "t-killed").is_empty()
    });
    let step = step.unwrap();
    assert!(!berth_tests::lab::cgroups_of(&step).is_empty());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(build.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    build.wait().unwrap();
    // The step's container dies with the build, and its veth with it.
    berth_tests::lab::eventually("the veth is gone", || {
        bridge_ports(&lab, "t-killed").is_empty()
    });
    // The next build removes the rest: scratch directory and cgroups.
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {}\nRUN true\n", lab.pulled.image),
    )
    .unwrap();
    lab.ok(&[
        "build",
        "-t",
        "next:1",
        "--network",
        "none",
        &ctx.to_string_lossy(),
    ]);
    assert!(
        std::fs::read_dir(&builds).map_or(true, |mut d| d.next().is_none()),
        "the killed build's scratch directory was left"
    );
    assert!(
        berth_tests::lab::cgroups_of(&step).is_empty(),
        "its cgroup was left"
    );
    let leases = lab.pulled.root.path().join("networks/t-killed/leases");
    let leased = std::fs::read_dir(&leases)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("10."))
                .count()
        })
        .unwrap_or(0);
    assert!(
        leased <= 1,
        "stale leases are reclaimed on the next allocation"
    );
}

#[test]
fn history_tells_each_step_and_a_cached_rebuild_is_the_same_image() {
    if !root_or_skip("history_tells_each_step_and_a_cached_rebuild_is_the_same_image") {
        return;
    }
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let dockerfile = format!(
        "FROM {}\nENV GREETING=hi\nCOPY hello.txt /srv/\nRUN echo built > /built\nCMD [\"cat\", \"/built\"]\n",
        lab.pulled.image
    );
    let ctx = context(dir.path(), &dockerfile, &[("hello.txt", "hello\n")]);
    let id = |lab: &Lab| lab.ok(&["image", "inspect", "--format", "{{.Id}}", "told:1"]);
    let build = |lab: &Lab| {
        lab.ok(&[
            "build",
            "--network",
            "none",
            "-t",
            "told:1",
            &ctx.to_string_lossy(),
        ])
    };
    build(&lab);
    let first = id(&lab);
    let history = lab.ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}|{{.Size}}",
        "told:1",
    ]);
    let rows: Vec<&str> = history.lines().collect();
    // Newest first: the steps, then the base image's own.
    assert_eq!(rows[0], "CMD [\"cat\", \"/built\"]|0 B", "{history}");
    assert!(rows[1].starts_with("RUN echo built > /built|"), "{history}");
    assert!(!rows[1].ends_with("|0 B"), "RUN made a layer: {history}");
    assert!(rows[2].starts_with("COPY hello.txt /srv/|"), "{history}");
    assert_eq!(rows[3], "ENV GREETING=hi|0 B", "{history}");
    assert_eq!(rows.len(), 5, "{history}");
    // Nothing in it is a time: the cache gives back the very same image.
    build(&lab);
    assert_eq!(id(&lab), first);

    // --platform: this machine's is accepted (scripts name it), another
    // refused, since RUN steps run here.
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let ours = format!("linux/{arch}");
    let path = ctx.to_string_lossy();
    lab.ok(&[
        "build",
        "--network",
        "none",
        "--platform",
        &ours,
        "-t",
        "told:1",
        &path,
    ]);
    assert_eq!(id(&lab), first);
    lab.berth()
        .args(["build", "--platform", "linux/s390x", "-t", "told:2", &path])
        .assert()
        .code(125)
        .stderr(predicate::str::contains(
            "builds for this machine's platform",
        ));
}
