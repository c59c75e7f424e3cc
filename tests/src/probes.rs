//! The isolation matrix: the same questions, asked inside every stage.
//!
//! Each probe is a small busybox shell script run as the container's command.
//! Probes write nothing to /dev: stage 01 has no devices, and a redirection
//! to /dev/null there would make a plain file.
//! It prints `yes` when the container is isolated in that respect and `no`
//! when it is not; anything else means the probe itself broke, and the test
//! fails rather than guess. Later stages add a [`Stage`] and, when they bring
//! a new mechanism, a [`Probe`]; the harness stays as it is.

use std::process::Command;

use crate::images::{TestRegistry, build_image};
use crate::{Fixture, bin};

/// One stage binary and the answers we expect from it, probe by probe.
pub struct Stage {
    pub name: &'static str,
    pub bin: &'static str,
    /// Options given before ROOTFS (or before IMAGE), e.g. limits.
    pub args: &'static [&'static str],
    /// Whether the stage runs images (`BIN --root R run ARGS IMAGE CMD`)
    /// rather than a directory (`BIN ARGS ROOTFS CMD`).
    pub from_image: bool,
    /// Expected answer per probe, in the order of [`PROBES`].
    pub expected: &'static [bool],
}

/// The fixture's rootfs as an image: built with umoci, pushed to a registry
/// of our own, and pulled (verified) into a berth root, for image stages.
pub struct ImageRoot {
    _registry: TestRegistry,
    root: tempfile::TempDir,
    image: String,
}

impl ImageRoot {
    pub fn new(fixture: &Fixture) -> ImageRoot {
        let registry = TestRegistry::start();
        let layout = fixture.dir().join("matrix-layout");
        build_image(&layout, "latest", &fixture.rootfs(), &[]);
        registry.push(&layout, "latest", "matrix:latest", "oci", false);
        let root = tempfile::Builder::new()
            .prefix("berth-root-")
            .tempdir()
            .unwrap();
        let image = format!("{}/matrix:latest", registry.host());
        let pulled = Command::new(bin("stage04-images"))
            .arg("--root")
            .arg(root.path())
            .args(["pull", &image])
            .output()
            .unwrap();
        assert!(
            pulled.status.success(),
            "pull for the matrix: {}",
            String::from_utf8_lossy(&pulled.stderr)
        );
        ImageRoot {
            _registry: registry,
            root,
            image,
        }
    }
}

pub struct Probe {
    pub question: &'static str,
    /// Shell condition that holds when the container is isolated.
    condition: fn(&Fixture) -> String,
}

pub const PROBES: &[Probe] = &[
    Probe {
        question: "`/` is the rootfs, not the host's",
        condition: |fx| {
            format!(
                "test -e {} && ! test -e {}",
                Fixture::ROOTFS_MARKER,
                fx.host_marker().display()
            )
        },
    },
    Probe {
        question: "own hostname",
        condition: |_| format!("test \"$(hostname)\" != '{}'", host_hostname()),
    },
    Probe {
        question: "host processes invisible",
        // Signal 0 checks that a PID exists. Our test process is a host PID.
        condition: |_| format!("! kill -0 {}", std::process::id()),
    },
    Probe {
        question: "root cannot escape the root",
        condition: |fx| {
            format!(
                "! chroot-escape /bin/sh -c 'test -e {}'",
                fx.host_marker().display()
            )
        },
    },
    Probe {
        question: "own network (only `lo`)",
        condition: |_| "test -z \"$(ip -o link show | grep -v ': lo:')\"".into(),
    },
    Probe {
        question: "memory limit enforced",
        // A subshell holds 100 MiB in a variable: killed over a limit.
        // (No /dev/zero: stage 01 has no devices.)
        condition: |_| "! ( x=$(yes | head -c 104857600); true )".into(),
    },
    Probe {
        question: "fork bomb contained",
        // A burst of 64 processes: a shell exits non-zero when fork fails.
        condition: |_| "! sh -c 'for i in $(seq 64); do sleep 1 & done; wait'".into(),
    },
    Probe {
        question: "root filesystem from a verified image",
        // Pulled by digest-checked blobs, mounted as an overlay of its layers.
        condition: |_| {
            "grep -q '^[^ ]* [^ ]* [^ ]* [^ ]* / .* - overlay ' /proc/self/mountinfo".into()
        },
    },
];

pub const STAGES: &[Stage] = &[
    Stage {
        name: "01 chroot",
        bin: "stage01-chroot",
        args: &[],
        from_image: false,
        expected: &[true, false, false, false, false, false, false, false],
    },
    Stage {
        name: "02 namespaces",
        bin: "stage02-namespaces",
        args: &[],
        from_image: false,
        expected: &[true, true, true, true, true, false, false, false],
    },
    Stage {
        name: "03 cgroups",
        bin: "stage03-cgroups",
        args: &["--memory", "64m", "--pids-limit", "20"],
        from_image: false,
        expected: &[true, true, true, true, true, true, true, false],
    },
    Stage {
        name: "04 images",
        bin: "stage04-images",
        args: &["--memory", "64m", "--pids-limit", "20"],
        from_image: true,
        expected: &[true, true, true, true, true, true, true, true],
    },
];

/// Ask `probe` inside a container made by `stage`: true = isolated.
/// Image stages need `image`.
pub fn ask(stage: &Stage, probe: &Probe, fixture: &Fixture, image: Option<&ImageRoot>) -> bool {
    let script = format!(
        "if {}; then echo yes; else echo no; fi",
        (probe.condition)(fixture)
    );
    let mut command = Command::new(bin(stage.bin));
    if stage.from_image {
        let image = image.expect("an image for an image stage");
        command
            .arg("--root")
            .arg(image.root.path())
            .arg("run")
            .args(stage.args)
            .arg(&image.image);
    } else {
        command.args(stage.args).arg(fixture.rootfs());
    }
    let output = command
        .args(["/bin/sh", "-c", &script])
        .output()
        .expect("run the stage binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    match (output.status.success(), stdout.trim()) {
        (true, "yes") => true,
        (true, "no") => false,
        _ => panic!(
            "probe {:?} on stage {} broke: {}\nstdout: {stdout}\nstderr: {}",
            probe.question,
            stage.name,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// The matrix as a markdown table: one row per probe, one column per stage.
pub fn render(rows: &[(&Stage, Vec<bool>)]) -> String {
    let mut table = String::from("| isolated? |");
    for (stage, _) in rows {
        table += &format!(" {} |", stage.name);
    }
    table += "\n|---|";
    table += &":-:|".repeat(rows.len());
    for (i, probe) in PROBES.iter().enumerate() {
        table += &format!("\n| {} |", probe.question);
        for (_, answers) in rows {
            table += if answers[i] { " yes |" } else { " no |" };
        }
    }
    table + "\n"
}

/// This machine's hostname, as the host sees it.
pub fn host_hostname() -> String {
    nix::unistd::gethostname()
        .expect("gethostname")
        .to_string_lossy()
        .into_owned()
}
