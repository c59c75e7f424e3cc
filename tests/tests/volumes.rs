//! Volumes on the real kernel: bind mounts, named and anonymous volumes,
//! tmpfs, the `berth volume` commands, copy-up, and the attacks an image
//! can try with symlinks where a volume goes. Every test has its own state
//! root (a `Lab`) and runs its containers with `--network none`; host
//! directories are temp dirs named `berth-vol-*`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use assert_cmd::prelude::*;
use berth_tests::lab::{Lab, eventually};
use berth_tests::root_or_skip;
use predicates::prelude::*;

/// A host directory of the test's own, removed when dropped.
fn host_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("berth-vol-")
        .tempdir()
        .unwrap()
}

/// `berth run --network none OPTIONS IMAGE sh -c SCRIPT`, which must
/// succeed; its stdout.
fn sh(lab: &Lab, options: &[&str], script: &str) -> String {
    let out = lab.run(
        &[&["--network", "none"], options].concat(),
        &["sh", "-c", script],
    );
    assert!(
        out.status.success(),
        "run {options:?} {script:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn volumes_dir(lab: &Lab) -> PathBuf {
    lab.pulled.root.path().join("volumes")
}

/// Everything under `<root>/volumes`, hidden entries too.
fn volume_entries(lab: &Lab) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(volumes_dir(lab))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn volume_names(lab: &Lab) -> Vec<String> {
    lab.ok(&["volume", "ls", "-q"])
        .lines()
        .map(String::from)
        .collect()
}

/// The host's mount table says nothing of the lab's root: every mount a
/// container made was in its own mount namespace.
fn assert_no_host_mounts(lab: &Lab) {
    let root = lab.pulled.root.path().to_string_lossy().into_owned();
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let stray: Vec<&str> = table.lines().filter(|l| l.contains(&root)).collect();
    assert!(stray.is_empty(), "mounts left on the host: {stray:#?}");
}

#[test]
fn a_bind_mount_shares_host_files_and_ro_is_read_only() {
    if !root_or_skip("a_bind_mount_shares_host_files_and_ro_is_read_only") {
        return;
    }
    let lab = Lab::new();
    let host = host_dir();
    let site = host.path().join("site");
    let spec = format!("{}:/srv/site", site.display());

    // -v makes the missing host directory; what the container writes is
    // there on the host, and a second container sees it.
    let said = sh(
        &lab,
        &["--rm", "-v", &spec],
        "echo from-inside > /srv/site/page; echo ok",
    );
    assert_eq!(said, "ok\n");
    assert_eq!(
        std::fs::read_to_string(site.join("page")).unwrap(),
        "from-inside\n"
    );
    std::fs::write(site.join("host-file"), "from-host\n").unwrap();
    let said = sh(
        &lab,
        &["--rm", "-v", &spec],
        "cat /srv/site/page /srv/site/host-file",
    );
    assert_eq!(said, "from-inside\nfrom-host\n");

    // :ro: reading works, writing fails with EROFS, and the host file is
    // as it was. The same with --mount's readonly.
    let read_only = format!("{spec}:ro");
    let said = sh(
        &lab,
        &["--rm", "-v", &read_only],
        "cat /srv/site/page; echo evil > /srv/site/page 2>/dev/null || echo refused; \
         grep ' /srv/site ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1",
    );
    assert_eq!(said, "from-inside\nrefused\nro\n");
    let mount = format!(
        "type=bind,source={},target=/srv/site,readonly",
        site.display()
    );
    let said = sh(
        &lab,
        &["--rm", "--mount", &mount],
        "touch /srv/site/new 2>/dev/null || echo refused",
    );
    assert_eq!(said, "refused\n");
    assert_eq!(
        std::fs::read_to_string(site.join("page")).unwrap(),
        "from-inside\n"
    );
    assert!(!site.join("new").exists());

    // A single file can be bound too, over a file of the image.
    let motd = host.path().join("motd");
    std::fs::write(&motd, "bound file\n").unwrap();
    let said = sh(
        &lab,
        &["--rm", "-v", &format!("{}:/etc/motd", motd.display())],
        "cat /etc/motd",
    );
    assert_eq!(said, "bound file\n");

    // --mount type=bind refuses a missing source, and makes nothing.
    let missing = host.path().join("missing");
    lab.berth()
        .args(["run", "--rm", "--network", "none", "--mount"])
        .arg(format!("type=bind,src={},dst=/x", missing.display()))
        .args([&lab.pulled.image, "true"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("bind source path does not exist"));
    assert!(!missing.exists());
    assert!(
        lab.container_dirs().is_empty(),
        "{:?}",
        lab.container_dirs()
    );
    assert!(volume_names(&lab).is_empty());
    assert_no_host_mounts(&lab);
}

#[test]
fn a_named_volume_outlives_its_container_and_starts_with_the_images_files() {
    if !root_or_skip("a_named_volume_outlives_its_container_and_starts_with_the_images_files") {
        return;
    }
    let lab = Lab::with_rootfs(|rootfs| {
        let seed = rootfs.join("var/lib/app");
        std::fs::create_dir_all(seed.join("conf")).unwrap();
        std::fs::write(seed.join("conf/app.conf"), "port=80\n").unwrap();
        std::os::unix::fs::symlink("conf/app.conf", seed.join("current")).unwrap();
        std::os::unix::fs::chown(&seed, Some(1000), Some(1000)).unwrap();
        std::fs::set_permissions(&seed, std::os::unix::fs::PermissionsExt::from_mode(0o750))
            .unwrap();
    });
    // First use makes it, with a copy of what the image has at the target
    // (owner and mode of the directory too, symlinks as symlinks).
    let said = sh(
        &lab,
        &["--name", "first", "-v", "appdata:/var/lib/app"],
        "cat /var/lib/app/current; stat -c '%u %a' /var/lib/app; echo 42 > /var/lib/app/counter",
    );
    assert_eq!(said, "port=80\n1000 750\n");
    let data = volumes_dir(&lab).join("appdata/_data");
    assert_eq!(
        std::fs::read_to_string(data.join("conf/app.conf")).unwrap(),
        "port=80\n"
    );
    assert_eq!(
        std::fs::read_link(data.join("current")).unwrap(),
        Path::new("conf/app.conf")
    );
    assert_eq!(std::fs::metadata(&data).unwrap().uid(), 1000);
    assert_eq!(volume_names(&lab), ["appdata"]);

    // It outlives the container, even rm -v (named volumes stay), and the
    // next container sees what the first wrote: no second copy over it.
    lab.ok(&["rm", "-v", "first"]);
    assert_eq!(volume_names(&lab), ["appdata"]);
    std::fs::write(data.join("conf/app.conf"), "port=8080\n").unwrap();
    let said = sh(
        &lab,
        &["--rm", "-v", "appdata:/var/lib/app"],
        "cat /var/lib/app/counter /var/lib/app/conf/app.conf",
    );
    assert_eq!(said, "42\nport=8080\n");
    // Mounted elsewhere, it is the same directory.
    let said = sh(
        &lab,
        &["--rm", "-v", "appdata:/mnt/data"],
        "cat /mnt/data/counter",
    );
    assert_eq!(said, "42\n");

    // nocopy: a new volume stays empty; a volume made with `volume create`
    // is filled on its first mount, as it is still empty then.
    let said = sh(
        &lab,
        &["--rm", "-v", "bare:/var/lib/app:nocopy"],
        "ls -A /var/lib/app | wc -l",
    );
    assert_eq!(said.trim(), "0");
    assert_eq!(lab.ok(&["volume", "create", "made-first"]), "made-first\n");
    let said = sh(
        &lab,
        &["--rm", "-v", "made-first:/var/lib/app"],
        "cat /var/lib/app/conf/app.conf",
    );
    assert_eq!(said, "port=80\n");
    let said = sh(
        &lab,
        &[
            "--rm",
            "--mount",
            "source=long-form,target=/var/lib/app,volume-nocopy",
        ],
        "ls -A /var/lib/app | wc -l",
    );
    assert_eq!(said.trim(), "0");
    assert_eq!(
        volume_names(&lab),
        ["appdata", "bare", "long-form", "made-first"]
    );
    assert_no_host_mounts(&lab);
}

#[test]
fn an_images_volume_is_anonymous_and_goes_with_rm_v_or_run_rm() {
    if !root_or_skip("an_images_volume_is_anonymous_and_goes_with_rm_v_or_run_rm") {
        return;
    }
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().join("context");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        format!(
            "FROM {}\nRUN mkdir -p /data && echo from-image > /data/seed\nVOLUME /data\n",
            lab.pulled.image
        ),
    )
    .unwrap();
    lab.ok(&["build", "-t", "with-volume:1", &context.to_string_lossy()]);

    // Each container gets an anonymous volume at /data, with the image's
    // file copied in; a named volume beside it.
    let run = |options: &[&str], script: &str| {
        let out = lab
            .berth()
            .args(["run", "--network", "none"])
            .args(options)
            .args(["with-volume:1", "sh", "-c", script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = run(
        &["--name", "app", "-v", "kept:/kept"],
        "cat /data/seed; echo written > /data/mine; echo named > /kept/x",
    );
    assert_eq!(said, "from-image\n");
    let names = volume_names(&lab);
    assert_eq!(names.len(), 2, "{names:?}");
    let anonymous = names.iter().find(|n| *n != "kept").unwrap().clone();
    assert!(
        anonymous.len() == 64 && anonymous.chars().all(|c| c.is_ascii_hexdigit()),
        "{anonymous}"
    );
    let record: serde_json::Value = serde_json::from_str(&lab.ok(&["inspect", "app"])).unwrap();
    let mounts = record["Mounts"].as_array().unwrap();
    let at_data = mounts.iter().find(|m| m["Destination"] == "/data").unwrap();
    assert_eq!(at_data["Type"], "volume");
    assert_eq!(at_data["Name"], anonymous.as_str());
    assert_eq!(at_data["RW"], true);
    assert_eq!(
        std::fs::read_to_string(volumes_dir(&lab).join(&anonymous).join("_data/mine")).unwrap(),
        "written\n"
    );

    // A mount of the user's at the same path takes the image's place.
    let said = run(
        &["--rm", "--tmpfs", "/data"],
        "ls -A /data | wc -l; grep -c ' /data tmpfs' /proc/mounts",
    );
    assert_eq!(said, "0\n1\n");
    assert_eq!(volume_names(&lab).len(), 2, "--tmpfs /data made a volume");

    // rm without -v keeps the volumes; rm -v removes the anonymous one only.
    let said = run(&["--name", "app2"], "true");
    assert_eq!(said, "");
    assert_eq!(volume_names(&lab).len(), 3);
    lab.ok(&["rm", "app2"]);
    assert_eq!(
        volume_names(&lab).len(),
        3,
        "rm without -v removed a volume"
    );
    lab.ok(&["rm", "-v", "app"]);
    let left = volume_names(&lab);
    assert!(!left.contains(&anonymous), "{left:?}");
    assert!(left.contains(&"kept".to_string()), "{left:?}");

    // run --rm takes its anonymous volume along, as Docker does.
    let before = volume_names(&lab);
    run(&["--rm"], "true");
    assert_eq!(volume_names(&lab), before);
    // And so does a detached one with --rm.
    lab.berth()
        .args([
            "run",
            "-d",
            "--rm",
            "--network",
            "none",
            "with-volume:1",
            "sleep",
            "0.2",
        ])
        .assert()
        .success();
    eventually("the --rm container and its volume are gone", || {
        lab.container_dirs().is_empty() && volume_names(&lab) == before
    });
    assert_no_host_mounts(&lab);
}

#[test]
fn a_tmpfs_is_memory_and_is_gone_with_its_container() {
    if !root_or_skip("a_tmpfs_is_memory_and_is_gone_with_its_container") {
        return;
    }
    let lab = Lab::new();
    // Each run says what it found in /scratch, then leaves a file there.
    let script = "grep ' /scratch ' /proc/mounts; ls -A /scratch | wc -l; echo data > /scratch/f; \
                  cat /scratch/f; cp /bin/busybox /scratch/echo && /scratch/echo ran 2>/dev/null \
                  || echo noexec";
    let said = sh(
        &lab,
        &["--name", "tm", "--tmpfs", "/scratch:size=2m"],
        script,
    );
    let lines: Vec<&str> = said.lines().collect();
    let fields: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(fields[..3], ["tmpfs", "/scratch", "tmpfs"], "{said}");
    let options: Vec<&str> = fields[3].split(',').collect();
    for wanted in ["rw", "nosuid", "nodev", "noexec", "size=2048k"] {
        assert!(options.contains(&wanted), "{wanted} not in {options:?}");
    }
    assert_eq!(lines[1..], ["0", "data", "noexec"], "{said}");
    // Not on the host's disk: not in the container's upper directory.
    let record: serde_json::Value = serde_json::from_str(&lab.ok(&["inspect", "tm"])).unwrap();
    let id = record["id"].as_str().unwrap();
    assert!(
        !lab.containers_dir()
            .join(id)
            .join("upper/scratch/f")
            .exists()
    );
    assert_eq!(record["Mounts"][0]["Type"], "tmpfs");
    assert_eq!(record["Mounts"][0]["Destination"], "/scratch");
    // Started again, it finds an empty tmpfs: what it wrote went with it.
    lab.ok(&["start", "tm"]);
    let again = lab.ok(&["logs", "-f", "tm"]);
    assert_eq!(again.lines().nth(1), Some("0"), "{again}");
    // Options win over the defaults: exec, a mode.
    let said = sh(
        &lab,
        &["--rm", "--tmpfs", "/scratch:exec,mode=700"],
        "stat -c %a /scratch; cp /bin/busybox /scratch/echo && /scratch/echo exec-ok",
    );
    assert_eq!(said, "700\nexec-ok\n");
    // --mount type=tmpfs, with Docker's size and mode fields.
    let said = sh(
        &lab,
        &[
            "--rm",
            "--mount",
            "type=tmpfs,dst=/cache,tmpfs-size=1m,tmpfs-mode=1770",
        ],
        "stat -c %a /cache; grep ' /cache ' /proc/mounts | grep -o size=1024k",
    );
    assert_eq!(said, "1770\nsize=1024k\n");
    assert!(volume_names(&lab).is_empty());
    assert_no_host_mounts(&lab);
}

#[test]
fn the_volume_commands_list_inspect_refuse_in_use_and_prune() {
    if !root_or_skip("the_volume_commands_list_inspect_refuse_in_use_and_prune") {
        return;
    }
    let lab = Lab::new();
    assert_eq!(
        lab.ok(&["volume", "create", "--label", "team=web", "site"]),
        "site\n"
    );
    assert_eq!(
        lab.ok(&["volume", "create", "site"]),
        "site\n",
        "made twice: kept"
    );
    let random = lab.ok(&["volume", "create"]).trim().to_string();
    assert_eq!(random.len(), 64, "{random}");
    let listing = lab.ok(&["volume", "ls"]);
    assert!(listing.starts_with("DRIVER    VOLUME NAME\n"), "{listing}");
    assert!(listing.contains("local     site\n"), "{listing}");

    let inspected: serde_json::Value =
        serde_json::from_str(&lab.ok(&["volume", "inspect", "site"])).unwrap();
    let site = &inspected[0];
    assert_eq!(site["Name"], "site");
    assert_eq!(site["Driver"], "local");
    assert_eq!(site["Scope"], "local");
    assert_eq!(site["Labels"]["team"], "web");
    assert!(site["CreatedAt"].as_str().unwrap().ends_with('Z'));
    let mountpoint = PathBuf::from(site["Mountpoint"].as_str().unwrap());
    assert_eq!(mountpoint, volumes_dir(&lab).join("site/_data"));
    assert!(mountpoint.is_dir());
    lab.berth()
        .args(["volume", "inspect", "site", "nope"])
        .assert()
        .code(125)
        .stdout(predicate::str::contains("\"Name\": \"site\""))
        .stderr(predicate::str::contains("no such volume: nope"));

    // In use by a running container, and then by a stopped one: refused,
    // with -f too, naming the container.
    lab.detach(
        &["--name", "user", "--network", "none", "-v", "site:/site"],
        &["sleep", "600"],
    );
    for args in [
        &["volume", "rm", "site"][..],
        &["volume", "rm", "-f", "site"],
    ] {
        lab.berth()
            .args(args)
            .assert()
            .code(125)
            .stderr(predicate::str::contains(
                "volume site is in use by container(s) user",
            ));
    }
    lab.ok(&["stop", "-t", "1", "user"]);
    lab.berth()
        .args(["volume", "rm", "site"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("in use by container(s) user"));
    // prune -f keeps what is used, and named volumes without --all.
    let anonymous_user = lab.run(
        &["--name", "anon", "--network", "none", "-v", "/tmp/a"],
        &["true"],
    );
    assert!(anonymous_user.status.success());
    let orphan = lab.run(&["--network", "none", "-v", "/tmp/b"], &["true"]);
    assert!(orphan.status.success());
    let names = volume_names(&lab);
    assert_eq!(names.len(), 4, "{names:?}");
    lab.ok(&[
        "rm",
        &lab.container_dirs()
            .into_iter()
            .find(|id| {
                let record: serde_json::Value =
                    serde_json::from_str(&lab.ok(&["inspect", id])).unwrap();
                record["name"].is_null()
            })
            .unwrap(),
    ]);
    // Without -f, prune asks, and a "no" leaves everything.
    let out = {
        use std::io::Write;
        let mut prune = lab
            .berth()
            .args(["volume", "prune"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        prune.stdin.take().unwrap().write_all(b"n\n").unwrap();
        prune.wait_with_output().unwrap()
    };
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Are you sure you want to continue? [y/N]")
    );
    assert_eq!(volume_names(&lab).len(), 4);
    let pruned = lab.ok(&["volume", "prune", "-f"]);
    assert!(pruned.starts_with("Deleted Volumes:\n"), "{pruned}");
    assert!(pruned.contains("Total reclaimed space: "), "{pruned}");
    let left = volume_names(&lab);
    assert_eq!(
        left.len(),
        3,
        "prune removed more than the orphan: {left:?}"
    );
    assert!(left.contains(&"site".to_string()) && left.contains(&random));
    // --all: every volume no container uses, named ones too.
    lab.ok(&["volume", "prune", "-f", "--all"]);
    let left = volume_names(&lab);
    assert_eq!(left.len(), 2, "{left:?}"); // site (user) and anon's
    assert!(left.contains(&"site".to_string()));
    lab.ok(&["rm", "-v", "anon"]);
    lab.ok(&["rm", "user"]);
    assert_eq!(lab.ok(&["volume", "rm", "site"]), "site\n");
    assert!(volume_names(&lab).is_empty());
    // -f: no error for what is not there.
    lab.berth()
        .args(["volume", "rm", "site"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("no such volume: site"));
    lab.ok(&["volume", "rm", "-f", "site"]);
    assert!(
        volume_entries(&lab).is_empty(),
        "{:?}",
        volume_entries(&lab)
    );
}

#[test]
fn an_images_symlinks_lead_no_volume_or_tmpfs_out_of_the_container() {
    if !root_or_skip("an_images_symlinks_lead_no_volume_or_tmpfs_out_of_the_container") {
        return;
    }
    // /data -> / and /conf -> /etc: before pivot_root, both would lead to
    // the host's own directories.
    let lab = Lab::with_rootfs(|rootfs| {
        std::os::unix::fs::symlink("/", rootfs.join("data")).unwrap();
        std::os::unix::fs::symlink("/etc", rootfs.join("conf")).unwrap();
    });
    let host_root_before: Vec<_> = std::fs::read_dir("/")
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    let host_passwd = std::fs::read("/etc/passwd").unwrap();

    // A volume on the symlink replaces it, inside the container only; the
    // copy-up finds no directory there (it does not follow the link), so
    // the host's root is not copied in.
    let said = sh(
        &lab,
        &["--rm", "-v", "stolen:/data", "-v", "stolen2:/conf"],
        "ls -A /data | wc -l; ls -A /conf | wc -l; echo mine > /data/berth-vol-escape; \
         echo mine > /conf/passwd; echo done",
    );
    assert_eq!(said, "0\n0\ndone\n");
    for name in ["stolen", "stolen2"] {
        let data = volumes_dir(&lab).join(name).join("_data");
        let mut entries: Vec<_> = std::fs::read_dir(&data)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        entries.sort();
        assert_eq!(entries.len(), 1, "{name} has host files in it: {entries:?}");
    }
    assert!(!Path::new("/berth-vol-escape").exists());
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), host_passwd);

    // Through the symlink, or a tmpfs on it: refused before anything is
    // made (no container, no volume), saying what the image did.
    for options in [
        &["-v", "deeper:/conf/ssh"][..],
        &["--tmpfs", "/data"],
        &["--tmpfs", "/conf/berth-tmpfs"],
        &["--mount", "type=volume,src=deeper,dst=/data/etc"],
    ] {
        lab.berth()
            .args(["run", "--rm", "--network", "none"])
            .args(options)
            .args([&lab.pulled.image, "true"])
            .assert()
            .code(125)
            .stderr(predicate::str::contains("is a symlink in the image"));
    }
    assert!(!Path::new("/etc/ssh/berth-tmpfs").exists() && !Path::new("/etc/berth-tmpfs").exists());
    assert!(
        lab.container_dirs().is_empty(),
        "{:?}",
        lab.container_dirs()
    );
    assert_eq!(volume_names(&lab), ["stolen", "stolen2"]);

    // A name that is a path is no volume name.
    lab.berth()
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            "../x:/x",
            &lab.pulled.image,
            "true",
        ])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("is not a volume name"));
    lab.berth()
        .args(["volume", "create", "../x"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("is not a volume name"));
    lab.berth()
        .args(["volume", "rm", "../containers"])
        .assert()
        .code(125);
    assert!(lab.containers_dir().exists());
    let host_root_after: Vec<_> = std::fs::read_dir("/")
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(host_root_before.len(), host_root_after.len());
    assert_no_host_mounts(&lab);
}

#[test]
fn bad_mounts_are_refused_clearly_and_leave_nothing() {
    if !root_or_skip("bad_mounts_are_refused_clearly_and_leave_nothing") {
        return;
    }
    let lab = Lab::new();
    let host = host_dir();
    let state = lab.pulled.root.path().join("containers");
    let refused = |options: &[&str], code: i32, says: &str| {
        lab.berth()
            .args(["run", "--rm", "--network", "none"])
            .args(options)
            .args([&lab.pulled.image, "true"])
            .assert()
            .code(code)
            .stderr(predicate::str::contains(says));
    };
    // What the flags themselves get wrong: usage errors, 125 as all of berth's.
    refused(&["-v", "data:relative"], 125, "must be absolute");
    refused(&["-v", "data:/a/../etc"], 125, "'..'");
    refused(&["-v", "data:/"], 125, "can't be '/'");
    refused(&["-v", "data:/data:rw,ro"], 125, "can't go together");
    refused(&["-v", "data:/data:bogus"], 125, "invalid mode: bogus");
    refused(&["-v", "/data:ro"], 125, "two parts are SOURCE:TARGET");
    refused(
        &["--mount", "type=bind,dst=/x"],
        125,
        "field Source must not be empty",
    );
    refused(
        &["--mount", "type=tmpfs,src=x,dst=/x"],
        125,
        "must not be specified",
    );
    refused(&["--mount", "src=data"], 125, "target is required");
    refused(&["--tmpfs", "/t:huge=always"], 125, "unknown tmpfs option");
    // What needs the state to see: berth's errors (125).
    refused(
        &["-v", "a1:/data", "-v", "a2:/data"],
        125,
        "duplicate mount point: /data",
    );
    refused(
        &["-v", &format!("{}:/x", state.display())],
        125,
        "inside berth's state directory",
    );
    refused(
        &["-v", &format!("{}/../containers/x:/x", state.display())],
        125,
        "inside berth's state directory",
    );
    // A symlink on the host that leads into the state directory is seen
    // through.
    let sneaky = host.path().join("sneaky");
    std::os::unix::fs::symlink(lab.pulled.root.path(), &sneaky).unwrap();
    refused(
        &["-v", &format!("{}:/x", sneaky.display())],
        125,
        "inside berth's state directory",
    );
    // A file bound over a directory of the image: the runtime refuses it
    // (ENOTDIR), and the container that could not start is gone again.
    let file = host.path().join("file");
    std::fs::write(&file, "x").unwrap();
    refused(&["-v", &format!("{}:/bin", file.display())], 125, "/bin");

    assert!(
        lab.container_dirs().is_empty(),
        "{:?}",
        lab.container_dirs()
    );
    assert!(
        volume_entries(&lab).is_empty(),
        "{:?}",
        volume_entries(&lab)
    );
    assert_no_host_mounts(&lab);
}

#[test]
fn with_userns_a_new_volume_is_the_container_roots() {
    if !root_or_skip("with_userns_a_new_volume_is_the_container_roots") {
        return;
    }
    let lab = Lab::with_rootfs(|rootfs| {
        std::fs::create_dir_all(rootfs.join("seed")).unwrap();
        std::fs::write(rootfs.join("seed/file"), "seeded\n").unwrap();
    });
    let said = sh(
        &lab,
        &["--rm", "--userns", "-v", "mapped:/seed"],
        "id -u; stat -c '%u %n' /seed /seed/file; cat /seed/file; echo new > /seed/made && echo wrote",
    );
    assert_eq!(said, "0\n0 /seed\n0 /seed/file\nseeded\nwrote\n");
    // On the host: the container's root, host user 100000, owns it all.
    let data = volumes_dir(&lab).join("mapped/_data");
    for path in [data.clone(), data.join("file"), data.join("made")] {
        assert_eq!(
            std::fs::metadata(&path).unwrap().uid(),
            100_000,
            "{}",
            path.display()
        );
    }
    // A host directory bound in keeps its host owners: host root's files
    // are nobody's inside, and root inside can't write there.
    let host = host_dir();
    std::fs::set_permissions(
        host.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let spec = format!("{}:/h", host.path().display());
    let said = sh(
        &lab,
        &["--rm", "--userns", "-v", &spec],
        "stat -c %u /h; touch /h/x 2>/dev/null || echo refused",
    );
    assert_eq!(said, "65534\nrefused\n");
}
