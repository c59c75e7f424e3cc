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

use crate::images::PulledImage;
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
    peer: Option<crate::Running>,
    pulled: PulledImage,
}

impl ImageRoot {
    pub fn new(fixture: &Fixture) -> ImageRoot {
        // A page for the peer, and glibc's name service so busybox can
        // resolve `peer` (both harmless to the directory stages' probes).
        stage01_chroot::rootfs::add_name_service(&fixture.rootfs()).unwrap();
        std::fs::create_dir_all(fixture.rootfs().join("srv/peer")).unwrap();
        std::fs::write(
            fixture.rootfs().join("srv/peer/index.html"),
            "peer-says-hi\n",
        )
        .unwrap();
        let pulled = PulledImage::new(fixture.dir(), &fixture.rootfs());
        ImageRoot { peer: None, pulled }
    }

    /// Start the container `peer` on network `matrix` (stage 05), serving
    /// `peer-says-hi`; wait until the host can fetch it.
    pub fn start_peer(&mut self) {
        let berth = || {
            let mut command = Command::new(bin("stage05-networks"));
            command.arg("--root").arg(self.pulled.root.path());
            command
        };
        let created = berth()
            .args(["network", "create", "matrix", "--subnet", "10.251.0.0/24"])
            .output()
            .unwrap();
        assert!(
            created.status.success(),
            "{}",
            String::from_utf8_lossy(&created.stderr)
        );
        let peer = berth()
            .args([
                "run",
                "--name",
                "peer",
                "--network",
                "matrix",
                &self.pulled.image,
                "httpd",
                "-f",
                "-p",
                "80",
                "-h",
                "/srv/peer",
            ])
            .spawn()
            .unwrap();
        self.peer = Some(crate::Running::new(peer));
        let leases = self.pulled.root.path().join("networks/matrix/leases");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let address = std::fs::read_dir(&leases).ok().and_then(|mut dir| {
                dir.find_map(|e| {
                    e.ok()?
                        .file_name()
                        .to_string_lossy()
                        .parse::<std::net::Ipv4Addr>()
                        .ok()
                })
            });
            if let Some(address) = address
                && std::net::TcpStream::connect((address, 80)).is_ok()
            {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the matrix's peer never came up"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for ImageRoot {
    /// Stop the peer and remove its network.
    fn drop(&mut self) {
        if let Some(peer) = self.peer.take() {
            peer.stop();
            let _ = Command::new(bin("stage05-networks"))
                .arg("--root")
                .arg(self.pulled.root.path())
                .args(["network", "rm", "matrix"])
                .output();
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
        question: "own network (no host interface inside)",
        // Interfaces are told apart by hardware address: the container's own
        // eth0 (stage 05) may share a name with one of the host's.
        condition: |_| {
            let macs = host_macs();
            format!(
                "ip -o link show > /tmp/links; ! grep -q -i -E '{}' /tmp/links",
                macs.join("|")
            )
        },
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
        question: "CPU limit enforced",
        // A busy loop runs for a second: the ticks of CPU time it got (100
        // a second at most, on one core) must be few. Stage 03 and later
        // run with `--cpus 0.1`. (Stage 01 has no /proc: no answer, no.)
        condition: |_| {
            "sh -c 'while :; do :; done' & p=$!; sleep 1; \
             t=$(awk '{print $14 + $15}' /proc/$p/stat); kill $p; test \"$t\" -lt 40"
                .into()
        },
    },
    Probe {
        question: "root filesystem from a verified image",
        // Pulled by digest-checked blobs, mounted as an overlay of its layers.
        condition: |_| {
            "grep -q '^[^ ]* [^ ]* [^ ]* [^ ]* / .* - overlay ' /proc/self/mountinfo".into()
        },
    },
    Probe {
        question: "reach a peer by name",
        // The matrix runs a container named `peer` on network `matrix`,
        // serving a page; only a container on that network finds it.
        condition: |_| {
            "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 peer 80 | grep -q peer-says-hi".into()
        },
    },
    // What the engine's secure defaults add (see the engine chapter).
    Probe {
        question: "no block device can be made (mknod)",
        // (Made, it is removed again: the stages share one rootfs.)
        condition: |_| "if mknod /tmp/disk b 8 0 2>/tmp/err; then rm /tmp/disk; false; fi".into(),
    },
    Probe {
        question: "no file system can be mounted (/sys read-write)",
        // Stage 01 has no mount namespace of its own: what it mounts is
        // the host's, so it unmounts it again.
        condition: |_| {
            "mkdir -p /tmp/m; if mount -t sysfs sysfs /tmp/m 2>/tmp/err; then umount /tmp/m; false; \
             else ! mount -o remount,rw /sys 2>/tmp/err; fi"
                .into()
        },
    },
    Probe {
        question: "no new user namespace (unshare -U)",
        condition: |_| "! unshare -U true 2>/tmp/err".into(),
    },
    Probe {
        question: "no raw sockets (busybox ping)",
        // busybox's ping opens a raw socket; refused, it says so. (Refused
        // for another reason, such as no route, it is no answer: no.)
        condition: |_| {
            "ping -c 1 -W 1 127.0.0.1 > /tmp/ping 2>&1; grep -q 'permission denied' /tmp/ping"
                .into()
        },
    },
    Probe {
        question: "root inside is not root on the host",
        // In a user namespace, uid 0 maps to another host uid; without
        // one, the map is the identity: 0 0 4294967295.
        condition: |_| {
            "test -r /proc/self/uid_map && ! grep -q '^ *0 *0 *4294967295' /proc/self/uid_map"
                .into()
        },
    },
];

pub const STAGES: &[Stage] = &[
    Stage {
        name: "01 chroot",
        bin: "stage01-chroot",
        args: &[],
        from_image: false,
        expected: &[
            true, false, false, false, false, false, false, false, false, false, false, false,
            true, false, false,
        ],
    },
    Stage {
        name: "02 namespaces",
        bin: "stage02-namespaces",
        args: &[],
        from_image: false,
        expected: &[
            true, true, true, true, true, false, false, false, false, false, false, false, false,
            false, false,
        ],
    },
    Stage {
        name: "03 cgroups",
        bin: "stage03-cgroups",
        args: &["--memory", "64m", "--pids-limit", "20", "--cpus", "0.1"],
        from_image: false,
        expected: &[
            true, true, true, true, true, true, true, true, false, false, false, false, false,
            false, false,
        ],
    },
    Stage {
        name: "04 images",
        bin: "stage04-images",
        args: &["--memory", "64m", "--pids-limit", "20", "--cpus", "0.1"],
        from_image: true,
        expected: &[
            true, true, true, true, true, true, true, true, true, false, false, false, false,
            false, false,
        ],
    },
    Stage {
        name: "05 networks",
        bin: "stage05-networks",
        args: &[
            "--network",
            "matrix",
            "--memory",
            "64m",
            "--pids-limit",
            "20",
            "--cpus",
            "0.1",
        ],
        from_image: true,
        expected: &[
            true, true, true, true, true, true, true, true, true, true, false, false, false, false,
            false,
        ],
    },
    // The engine with its defaults: the stages' isolation plus the
    // hardening (capabilities, seccomp, no_new_privs, masked /proc).
    Stage {
        name: "berth",
        bin: "berth",
        args: &[
            "--rm",
            "--network",
            "matrix",
            "--memory",
            "64m",
            "--pids-limit",
            "20",
            "--cpus",
            "0.1",
        ],
        from_image: true,
        expected: &[
            true, true, true, true, true, true, true, true, true, true, true, true, true, true,
            false,
        ],
    },
    Stage {
        name: "berth --userns",
        bin: "berth",
        args: &[
            "--rm",
            "--userns",
            "--network",
            "matrix",
            "--memory",
            "64m",
            "--pids-limit",
            "20",
            "--cpus",
            "0.1",
        ],
        from_image: true,
        expected: &[
            true, true, true, true, true, true, true, true, true, true, true, true, true, true,
            true,
        ],
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
            .arg(image.pulled.root.path())
            .arg("run")
            .args(stage.args)
            .arg(&image.pulled.image);
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

/// The hardware addresses of the host's interfaces (not loopback's zeros).
pub fn host_macs() -> Vec<String> {
    let mut macs: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("address")).ok())
        .map(|mac| mac.trim().to_string())
        .filter(|mac| mac.len() == 17 && mac != "00:00:00:00:00:00")
        .collect();
    macs.sort();
    macs.dedup();
    macs
}

/// This machine's hostname, as the host sees it.
pub fn host_hostname() -> String {
    nix::unistd::gethostname()
        .expect("gethostname")
        .to_string_lossy()
        .into_owned()
}
