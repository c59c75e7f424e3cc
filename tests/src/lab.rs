//! A berth state root with an image in it, for the engine's tests.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::images::PulledImage;
use crate::{Fixture, bin};

/// A berth root holding busybox (with a web page at /srv/www), pulled from
/// a registry of our own. On drop, every container in it is removed (`rm
/// -f`) and then every network it made.
pub struct Lab {
    _fx: Fixture,
    pub pulled: PulledImage,
    pub networks: Vec<String>,
    /// The subnet of this lab's default network (`berth`, which `run` and
    /// a build's RUN join): one of its own, since labs run side by side
    /// and their default bridges are routes on one host.
    pub default_subnet: String,
}

/// A /24 for the next lab's default network, in 10.160.0.0/12 (which the
/// tests' own networks stay out of).
pub fn next_default_subnet() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 4096;
    format!("10.{}.{}.0/24", 160 + n / 256, n % 256)
}

impl Lab {
    pub fn new() -> Lab {
        Lab::with_rootfs(|_| ())
    }

    /// A lab whose image also has what `add` puts in its root filesystem.
    pub fn with_rootfs(add: impl FnOnce(&std::path::Path)) -> Lab {
        let fx = Fixture::new();
        stage01_chroot::rootfs::add_name_service(&fx.rootfs()).unwrap();
        std::fs::create_dir_all(fx.rootfs().join("srv/www")).unwrap();
        std::fs::write(fx.rootfs().join("srv/www/index.html"), "hello from web\n").unwrap();
        add(&fx.rootfs());
        let pulled = PulledImage::new(fx.dir(), &fx.rootfs());
        Lab {
            _fx: fx,
            pulled,
            networks: Vec::new(),
            default_subnet: next_default_subnet(),
        }
    }

    pub fn berth(&self) -> Command {
        let mut command = Command::new(bin("berth"));
        command.arg("--root").arg(self.pulled.root.path());
        command.env("BERTH_DEFAULT_SUBNET", &self.default_subnet);
        command
    }

    /// `berth ARGS...`, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.berth().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "berth {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `berth run OPTIONS IMAGE CMD...`.
    pub fn run(&self, options: &[&str], command: &[&str]) -> Output {
        self.berth()
            .arg("run")
            .args(options)
            .arg(&self.pulled.image)
            .args(command)
            .output()
            .unwrap()
    }

    /// `berth run -d OPTIONS IMAGE CMD...`; the container's ID.
    pub fn detach(&self, options: &[&str], command: &[&str]) -> String {
        let out = self.run(&[&["-d"], options].concat(), command);
        assert!(
            out.status.success(),
            "run -d: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            id.len() == 12 && id.chars().all(|c| c.is_ascii_hexdigit()),
            "not an ID: {id:?}"
        );
        id
    }

    pub fn network(&mut self, name: &str, subnet: &str) {
        self.ok(&["network", "create", name, "--subnet", subnet]);
        self.networks.push(name.into());
    }

    pub fn containers_dir(&self) -> PathBuf {
        self.pulled.root.path().join("containers")
    }

    pub fn container_dirs(&self) -> Vec<String> {
        std::fs::read_dir(self.containers_dir())
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Default for Lab {
    fn default() -> Self {
        Lab::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for id in self.container_dirs() {
            let _ = self.berth().args(["rm", "-f", &id]).output();
        }
        // The test's networks, and any the root made itself: the default
        // one (`berth`, bridge berth0), which `run` and a build's RUN join.
        let mut networks = self.networks.clone();
        networks.extend(networks_in(self.pulled.root.path()));
        for name in networks {
            let _ = self.berth().args(["network", "rm", &name]).output();
        }
    }
}

/// The networks defined under berth state root `root`.
pub fn networks_in(root: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(root.join("networks"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_suffix(".json").map(String::from)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Wait until `check` holds, or fail after 10 s saying `what`.
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// berth-<id> cgroup directories on the host, in any hierarchy.
pub fn cgroups_of(id: &str) -> Vec<String> {
    cgroups_named(&format!("berth-{id}"))
}

/// Cgroup directories on the host whose name matches `pattern` (find's
/// `-name`), in any hierarchy.
pub fn cgroups_named(pattern: &str) -> Vec<String> {
    let out = Command::new("find")
        .args(["/sys/fs/cgroup", "-maxdepth", "6", "-type", "d", "-name"])
        .arg(pattern)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}
