//! The book can't drift from the code: its transcripts are replayed and its
//! `{{#include}}`s must point at real anchors.
//!
//! A transcript is a ```console block. A line starting with `# ` is a command
//! typed at a root prompt; the lines after it, up to the next command, are
//! what it printed (stdout and stderr together, as on a terminal). In the
//! expected output `[..]` matches any text within a line and a line `...`
//! matches any number of lines.
//!
//! All transcripts of one chapter run in order, in one fresh temporary
//! directory that holds a busybox rootfs named `rootfs` (a chapter that makes
//! its own says `<!-- transcript: no-rootfs -->`), with the workspace's
//! binaries first in PATH and `BERTH_ROOT` pointing into that directory.
//! A chapter that says `<!-- transcript: registry -->` also gets a registry
//! of its own on 127.0.0.1, its address in `$REGISTRY`, holding
//! `busybox:latest` built from that rootfs (Cmd `/bin/sh`);
//! `<!-- transcript: registry-with-resolver -->` first adds glibc's name
//! service to the rootfs (`berth-mkrootfs --resolver`), for networks.
//!
//! Some output depends on the host's cgroup layout. A block right after
//! `<!-- transcript: cgroup v2 -->` is for a host whose /sys/fs/cgroup is a
//! cgroup2 tree, one after `<!-- transcript: cgroup v1 -->` for a v1 or
//! hybrid host; each runs only where it fits, unmarked blocks everywhere.
//! `<!-- transcript: cgroup v2 needs memory pids -->` names the controllers
//! a v2 block needs.
//!
//! On a v1/hybrid host the v2 blocks run too, after the chapter's others,
//! each command in a private mount namespace with a cgroup2 tree mounted
//! over /sys/fs/cgroup (`unshare -m` + `mount -t cgroup2`). That tree holds
//! only the controllers no v1 hierarchy has taken: a controller belongs to
//! one version at a time, and leaves a v1 hierarchy only when that is
//! unmounted everywhere and has no cgroups left, which the host's own
//! (shared) hierarchies never are. So a v2 block that needs a controller
//! the tree lacks can't run there, and is listed as not replayed. On the CI
//! host (hybrid, v2 offers only `hugetlb`) that is every v2 block needing
//! `memory`, `cpu` or `pids`; on a v2 host every v2 block runs.
//!
//! So on a v1/hybrid host `cgroup_v2_transcripts_on_a_v2_only_kernel`
//! replays them for real: `scripts/v2-vm` boots a kernel with
//! `cgroup_no_v1=all` in a qemu VM that shares this machine's files, and
//! there this same test binary runs `transcripts_match_real_runs` on the
//! chapters that have v2 blocks (`BERTH_BOOK_CHAPTERS`), with
//! `BERTH_BOOK_IN_V2_VM=1`: stage 03's `layout::detect` must say `Unified`,
//! and every command of every v2 block must run and match. Emulated (no
//! KVM, as on the CI machine) that takes about a minute; `BERTH_SKIP_V2_VM=1`
//! skips it on purpose. On a v2 host there is nothing more to do.

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_tests::images::{TestRegistry, build_image};
use berth_tests::{bin_dir, root_or_skip, run_test_in_v2_vm};
use stage01_chroot::rootfs::{DEFAULT_BUSYBOX, make_busybox_rootfs};
use stage03_cgroups::layout::{self, Layout};

const BOOK_SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../book/src");

/// `BERTH_BOOK_CHAPTERS=ch03-cgroups.md,...`: replay only these chapters.
const CHAPTERS_VAR: &str = "BERTH_BOOK_CHAPTERS";
/// Set by `cgroup_v2_transcripts_on_a_v2_only_kernel` for the run it starts
/// in the VM: there the host must be v2 and every v2 block must run.
const IN_V2_VM_VAR: &str = "BERTH_BOOK_IN_V2_VM";
/// `BERTH_SKIP_V2_VM=1` skips the VM on purpose (CI never sets it).
const SKIP_V2_VM_VAR: &str = "BERTH_SKIP_V2_VM";

struct Step {
    line: usize,
    command: String,
    expected: Vec<String>,
    /// Set for a block written for one cgroup layout.
    variant: Option<Variant>,
}

/// What `<!-- transcript: cgroup v2 needs memory -->` says about a block.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Variant {
    v2: bool,
    /// Controllers the block needs (v2 blocks only).
    needs: Vec<String>,
}

/// Where a command runs: on the host as it is, or (for a v2 block on a
/// v1/hybrid host) with a cgroup2 tree mounted over /sys/fs/cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Host,
    Cgroup2,
}

#[test]
fn transcripts_match_real_runs() {
    if !root_or_skip("transcripts_match_real_runs") {
        return;
    }
    let host_layout = layout::detect().expect("the host's cgroup layout");
    let in_v2_vm = std::env::var_os(IN_V2_VM_VAR).is_some();
    // The check the VM is there for: stage 03's own detection calls it v2.
    assert!(
        !in_v2_vm || host_layout == Layout::Unified,
        "{IN_V2_VM_VAR} is set, but layout::detect() says {host_layout:?}, not Unified: the VM's \
         /sys/fs/cgroup is not a cgroup2 tree"
    );
    let host_is_v2 = host_layout == Layout::Unified;
    let mut failures = Vec::new();
    let mut replayed = 0;
    let mut replayed_on_cgroup2 = 0;
    // Commands of v2 blocks: how many the chapters have, how many ran.
    let mut v2_commands = 0;
    let mut v2_replayed = 0;
    let mut not_here = Vec::new();
    for chapter in chapters_to_replay() {
        let text = std::fs::read_to_string(&chapter).unwrap();
        let steps =
            transcript_steps(&text).unwrap_or_else(|e| panic!("{}: {e}", chapter.display()));
        if steps.is_empty() {
            continue;
        }
        let dir = tempfile::Builder::new()
            .prefix("berth-book-")
            .tempdir()
            .unwrap();
        if !text.contains("<!-- transcript: no-rootfs -->") {
            make_busybox_rootfs(&dir.path().join("rootfs"), Path::new(DEFAULT_BUSYBOX))
                .expect("make the book's rootfs");
        }
        if text.contains("<!-- transcript: registry-with-resolver -->") {
            stage01_chroot::rootfs::add_name_service(&dir.path().join("rootfs")).unwrap();
        }
        let registry = text
            .contains("<!-- transcript: registry")
            .then(|| registry_with_busybox(dir.path()));
        let mut env = vec![(
            "BERTH_ROOT".to_string(),
            dir.path().join("berth").display().to_string(),
        )];
        if let Some(registry) = &registry {
            env.push(("REGISTRY".into(), registry.host()));
        }
        v2_commands += steps.iter().filter(|s| is_v2(s)).count();
        let mut replay = |step: &Step, view: View| {
            replayed += 1;
            if is_v2(step) {
                v2_replayed += 1;
            }
            let actual = run(&step.command, dir.path(), &env, view);
            if !matches(&step.expected, &actual) {
                let on = match view {
                    View::Host => "",
                    View::Cgroup2 => " (on a cgroup2 tree mounted over /sys/fs/cgroup)",
                };
                failures.push(format!(
                    "{}:{}: `{}`{on}\n--- the book says:\n{}\n--- the run printed:\n{}",
                    chapter.display(),
                    step.line,
                    step.command,
                    step.expected.join("\n"),
                    actual.join("\n")
                ));
            }
        };
        let fits_host = |step: &&Step| step.variant.as_ref().is_none_or(|v| v.v2 == host_is_v2);
        for step in steps.iter().filter(fits_host) {
            replay(step, View::Host);
        }
        remove_demo_cgroup(dir.path(), View::Host);
        // A v1/hybrid host: the v2 blocks on a cgroup2 tree of their own.
        let v2_blocks: Vec<&Step> = steps.iter().filter(|s| !host_is_v2 && is_v2(s)).collect();
        if !v2_blocks.is_empty() {
            let free = controllers_free_for_v2(dir.path());
            for step in v2_blocks {
                let needs = &step.variant.as_ref().unwrap().needs;
                let lacking: Vec<&str> = needs
                    .iter()
                    .filter(|c| !free.contains(c))
                    .map(String::as_str)
                    .collect();
                if lacking.is_empty() {
                    replayed_on_cgroup2 += 1;
                    replay(step, View::Cgroup2);
                } else {
                    not_here.push(format!(
                        "{}:{} (needs {})",
                        chapter.file_name().unwrap().display(),
                        step.line,
                        lacking.join(" ")
                    ));
                }
            }
            remove_demo_cgroup(dir.path(), View::Cgroup2);
        }
        remove_engine_leftovers(&dir.path().join("berth"));
    }
    assert!(replayed > 0, "no transcript found in {BOOK_SRC}");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    eprintln!(
        "{replayed} transcript commands replayed, {replayed_on_cgroup2} of them on a cgroup2 \
         tree mounted for them"
    );
    eprintln!("{v2_replayed} of the {v2_commands} commands of cgroup v2 blocks were replayed");
    if !not_here.is_empty() {
        eprintln!(
            "not replayed: {} cgroup v2 commands, as the controllers they need are bound to \
             this host's v1 hierarchies: {}",
            not_here.len(),
            not_here.join(", ")
        );
    }
    if in_v2_vm {
        let controllers = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers");
        eprintln!(
            "in the v2 VM: layout::detect() says {host_layout:?}; /sys/fs/cgroup offers: {}",
            controllers.unwrap_or_default().trim()
        );
        assert!(
            v2_commands > 0 && v2_replayed == v2_commands && not_here.is_empty(),
            "in the v2 VM every command of a cgroup v2 block must run: {v2_replayed} of \
             {v2_commands} did"
        );
    }
}

/// The v2 blocks on a real cgroup v2 host, when this one is v1 or hybrid:
/// `scripts/v2-vm` boots a kernel with `cgroup_no_v1=all` in a VM that
/// shares this machine's files, and this same test binary replays there,
/// with `transcripts_match_real_runs`, each chapter that has v2 blocks.
/// There every controller is in the cgroup2 tree, so every v2 block must
/// run, and match.
#[test]
fn cgroup_v2_transcripts_on_a_v2_only_kernel() {
    let test = "cgroup_v2_transcripts_on_a_v2_only_kernel";
    if !root_or_skip(test) {
        return;
    }
    if std::env::var(SKIP_V2_VM_VAR).is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED {test}: {SKIP_V2_VM_VAR}=1");
        return;
    }
    if layout::detect().expect("the host's cgroup layout") == Layout::Unified {
        eprintln!(
            "{test}: this host is cgroup v2, so transcripts_match_real_runs has replayed the \
             v2 blocks here; no VM needed"
        );
        return;
    }
    let with_v2_blocks: Vec<String> = chapters()
        .iter()
        .filter(|c| {
            std::fs::read_to_string(c)
                .unwrap()
                .contains("<!-- transcript: cgroup v2")
        })
        .map(|c| c.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        !with_v2_blocks.is_empty(),
        "no chapter has a cgroup v2 block"
    );
    let started = std::time::Instant::now();
    let (passed, printed) = run_test_in_v2_vm(
        "transcripts_match_real_runs",
        &[
            (CHAPTERS_VAR, with_v2_blocks.join(",")),
            (IN_V2_VM_VAR, "1".into()),
        ],
    );
    assert!(
        passed,
        "replaying {} in a cgroup v2 VM failed; set {SKIP_V2_VM_VAR}=1 to skip this \
         test on purpose. The VM printed:\n{printed}",
        with_v2_blocks.join(", "),
    );
    eprintln!(
        "{test}: {} replayed in a cgroup v2 VM in {:.0?}:\n{printed}",
        with_v2_blocks.join(", "),
        started.elapsed()
    );
}

#[test]
fn includes_point_at_real_anchors() {
    let mut checked = 0;
    for chapter in chapters() {
        let text = std::fs::read_to_string(&chapter).unwrap();
        for include in text.split("{{#include ").skip(1) {
            let target = &include[..include.find("}}").expect("closing }}")];
            let (path, anchor) = target.split_once(':').unwrap_or((target, ""));
            let source = chapter.parent().unwrap().join(path);
            let code = std::fs::read_to_string(&source)
                .unwrap_or_else(|e| panic!("{}: include {}: {e}", chapter.display(), path));
            if !anchor.is_empty() && anchor.parse::<usize>().is_err() {
                assert!(
                    has_marker(&code, "ANCHOR", anchor) && has_marker(&code, "ANCHOR_END", anchor),
                    "{}: anchor {anchor} not found in {path}",
                    chapter.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "the book includes no code from the sources");
}

#[test]
fn the_matcher_understands_wildcards() {
    let lines = |s: &str| s.lines().map(String::from).collect::<Vec<_>>();
    assert!(matches(&lines("a\n...\nz"), &lines("a\nb\nc\nz")));
    assert!(matches(&lines("a\n...\nz"), &lines("a\nz")));
    assert!(matches(&lines("x [..] y"), &lines("x 123 y")));
    assert!(!matches(&lines("a\nb"), &lines("a\nc")));
    assert!(!matches(&lines("a"), &lines("a\nb")));
    assert!(!matches(&lines("x [..] y"), &lines("x 1 z")));
}

#[test]
fn blocks_can_be_marked_for_a_cgroup_layout() {
    let markdown = "\
Text.

<!-- transcript: cgroup v2 needs memory pids -->

```console
# echo v2
v2
```

```console
# echo anywhere
anywhere
```
<!-- transcript: cgroup v1 -->
```console
# echo v1
v1
```
";
    let steps = transcript_steps(markdown).unwrap();
    let variants: Vec<_> = steps.iter().map(|s| s.variant.clone()).collect();
    assert_eq!(
        variants,
        [
            Some(Variant {
                v2: true,
                needs: vec!["memory".into(), "pids".into()]
            }),
            None,
            Some(Variant {
                v2: false,
                needs: vec![]
            }),
        ]
    );
    assert_eq!(steps[0].expected, ["v2"]);
    // A marker that could be meant for the wrong block is an error.
    for bad in [
        "<!-- transcript: cgroup v2 -->\nSome text.\n```console\n# true\n```\n",
        "<!-- transcript: cgroup v2 -->\n```rust\nfn f() {}\n```\n",
        "<!-- transcript: cgroup v3 -->\n```console\n# true\n```\n",
        "<!-- transcript: cgroup v2 needs -->\n```console\n# true\n```\n",
        "<!-- transcript: cgroup v1 -->\n",
    ] {
        assert!(transcript_steps(bad).is_err(), "accepted: {bad}");
    }
}

/// Is there a line with `KIND: anchor` (and nothing more of a name after it)?
fn has_marker(code: &str, kind: &str, anchor: &str) -> bool {
    let marker = format!("{kind}: {anchor}");
    code.lines().any(|line| {
        line.split_once(&marker)
            .is_some_and(|(_, after)| !after.starts_with(|c: char| c.is_alphanumeric() || c == '_'))
    })
}

/// Is this step from a block written for a cgroup v2 host?
fn is_v2(step: &Step) -> bool {
    step.variant.as_ref().is_some_and(|v| v.v2)
}

/// The chapters `transcripts_match_real_runs` replays: all of them, or
/// those `BERTH_BOOK_CHAPTERS` names (file names, comma separated).
fn chapters_to_replay() -> Vec<PathBuf> {
    let Ok(wanted) = std::env::var(CHAPTERS_VAR) else {
        return chapters();
    };
    let wanted: Vec<&str> = wanted.split(',').map(str::trim).collect();
    let chosen: Vec<PathBuf> = chapters()
        .into_iter()
        .filter(|c| {
            wanted
                .iter()
                .any(|w| c.file_name().is_some_and(|n| n == *w))
        })
        .collect();
    assert_eq!(
        chosen.len(),
        wanted.len(),
        "{CHAPTERS_VAR}={wanted:?} names a chapter that is not in {BOOK_SRC}"
    );
    chosen
}

fn chapters() -> Vec<PathBuf> {
    let mut chapters: Vec<_> = std::fs::read_dir(BOOK_SRC)
        .expect("book/src")
        .map(|entry| entry.expect("read book/src").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    chapters.sort();
    chapters
}

/// The commands of every ```console block, with what they printed, and
/// the layout each block is for.
fn transcript_steps(markdown: &str) -> Result<Vec<Step>, String> {
    let mut steps: Vec<Step> = Vec::new();
    let mut in_fence = false;
    let mut in_console = false;
    // A layout marker seen, waiting for its block: (line, variant).
    let mut marker: Option<(usize, Variant)> = None;
    let mut variant = None;
    for (index, line) in markdown.lines().enumerate() {
        let fence = line.trim_start();
        if fence.starts_with("```") {
            in_fence = !in_fence;
            in_console = in_fence && fence == "```console";
            variant = None;
            if let Some((at, found)) = marker.take() {
                if !in_console {
                    return Err(format!(
                        "line {at}: its marker is not followed by a ```console block"
                    ));
                }
                variant = Some(found);
            }
            continue;
        }
        if !in_fence {
            if let Some(found) =
                parse_marker(line).map_err(|e| format!("line {}: {e}", index + 1))?
            {
                marker = Some((index + 1, found));
            } else if let Some((at, _)) = &marker
                && !line.trim().is_empty()
            {
                return Err(format!(
                    "line {at}: a cgroup marker must come right before its ```console block"
                ));
            }
        }
        if !in_console {
            continue;
        }
        if let Some(command) = line.strip_prefix("# ") {
            steps.push(Step {
                line: index + 1,
                command: command.into(),
                expected: Vec::new(),
                variant: variant.clone(),
            });
        } else if let Some(step) = steps.last_mut() {
            step.expected.push(line.trim_end().into());
        }
    }
    match marker {
        Some((at, _)) => Err(format!("line {at}: a cgroup marker with no block after it")),
        None => Ok(steps),
    }
}

/// `<!-- transcript: cgroup v1 -->`, `<!-- transcript: cgroup v2 -->` or
/// `<!-- transcript: cgroup v2 needs CONTROLLER... -->`; other lines: None.
fn parse_marker(line: &str) -> Result<Option<Variant>, String> {
    let Some(rest) = line.trim().strip_prefix("<!-- transcript: cgroup ") else {
        return Ok(None);
    };
    let words: Vec<&str> = rest
        .strip_suffix("-->")
        .ok_or("a cgroup marker ends with -->")?
        .split_whitespace()
        .collect();
    match words[..] {
        ["v1"] => Ok(Some(Variant {
            v2: false,
            needs: Vec::new(),
        })),
        ["v2"] => Ok(Some(Variant {
            v2: true,
            needs: Vec::new(),
        })),
        ["v2", "needs", ref controllers @ ..] if !controllers.is_empty() => Ok(Some(Variant {
            v2: true,
            needs: controllers.iter().map(|c| c.to_string()).collect(),
        })),
        _ => Err(format!(
            "unknown cgroup marker {:?}: write `cgroup v1`, `cgroup v2` or `cgroup v2 needs \
             CONTROLLER...`",
            line.trim()
        )),
    }
}

/// The controllers a cgroup2 tree mounted here offers (those no v1
/// hierarchy holds), read where the v2 blocks run.
fn controllers_free_for_v2(dir: &Path) -> Vec<String> {
    let output = command_in(
        View::Cgroup2,
        "cat /sys/fs/cgroup/cgroup.controllers",
        dir,
        &[],
    )
    .output()
    .expect("run unshare");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "can't mount a cgroup2 tree in a private mount namespace to replay the cgroup v2 \
         transcripts: {text}"
    );
    text.split_whitespace().map(String::from).collect()
}

/// A chapter that failed halfway may leave the cgroup its `demo` link
/// points to, with processes in it: kill them and remove it (and the ones
/// below it), in the view it was made in. Only a real cgroup: the PIDs in a
/// plain file named cgroup.procs could be anyone's.
fn remove_demo_cgroup(dir: &Path, view: View) {
    let script = r#"d=$(readlink demo) || exit 0
case "$d" in /sys/fs/cgroup/*berth-demo-*) ;; *) exit 0 ;; esac
case "$(stat -f -c %T "$d")" in cgroupfs | cgroup2fs) ;; *) exit 0 ;; esac
find "$d" -name cgroup.procs -exec cat {} + | xargs -r kill -KILL
sleep 0.2; find "$d" -depth -type d -exec rmdir {} +; rm demo"#;
    let _ = command_in(view, script, dir, &[]).output();
}

/// A chapter that failed halfway may leave berth containers running and
/// networks made: remove them, as a reader would with `rm -f`/`network rm`.
fn remove_engine_leftovers(root: &Path) {
    let berth = |args: &[&str]| {
        Command::new(bin_dir().join("berth"))
            .arg("--root")
            .arg(root)
            .args(args)
            .output()
    };
    let names = |dir: &str| -> Vec<String> {
        std::fs::read_dir(root.join(dir))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default()
    };
    for id in names("containers") {
        let _ = berth(&["rm", "-f", &id]);
    }
    for network in names("networks") {
        if root.join("networks").join(&network).is_dir() {
            let _ = berth(&["network", "rm", &network]);
        }
    }
}

/// A registry holding `busybox:latest`, made from `dir/rootfs` with umoci.
fn registry_with_busybox(dir: &Path) -> TestRegistry {
    let registry = TestRegistry::start();
    let layout = tempfile::tempdir().unwrap();
    let layout = layout.path().join("layout");
    build_image(
        &layout,
        "latest",
        &dir.join("rootfs"),
        &["--config.cmd=/bin/sh"],
    );
    registry.push(&layout, "latest", "busybox:latest", "oci", false);
    registry
}

/// Run `command` in `dir` the way a root shell would, output merged.
fn run(command: &str, dir: &Path, env: &[(String, String)], view: View) -> Vec<String> {
    let output = command_in(view, command, dir, env)
        .output()
        .expect("run /bin/sh");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| l.trim_end().to_string())
        .collect()
}

/// `/bin/sh -c command`, with stderr into stdout, in `view`.
fn command_in(view: View, command: &str, dir: &Path, env: &[(String, String)]) -> Command {
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = format!("exec 2>&1\n{command}");
    let mut sh = match view {
        View::Host => {
            let mut sh = Command::new("/bin/sh");
            sh.arg("-c").arg(script);
            sh
        }
        View::Cgroup2 => {
            // The mount goes with the namespace when its last process ends.
            let mut sh = Command::new("unshare");
            sh.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
                .arg(
                    "exec 2>&1; mount -t cgroup2 berth-book-cgroup2 /sys/fs/cgroup && \
                     exec /bin/sh -c \"$1\"",
                )
                .args(["sh", &script]);
            sh
        }
    };
    sh.current_dir(dir)
        .env("PATH", path)
        .envs(env.iter().cloned());
    sh
}

/// Does `actual` fit `expected`, with `...` lines and `[..]` wildcards?
fn matches(expected: &[String], actual: &[String]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first == "..." => {
            (0..=actual.len()).any(|skip| matches(rest, &actual[skip..]))
        }
        Some((first, rest)) => actual.split_first().is_some_and(|(line, actual_rest)| {
            line_matches(first, line) && matches(rest, actual_rest)
        }),
    }
}

fn line_matches(pattern: &str, line: &str) -> bool {
    let mut parts = pattern.split("[..]");
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = line.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i == parts.len() - 1 {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}
