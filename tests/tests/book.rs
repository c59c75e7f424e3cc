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

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_tests::images::{TestRegistry, build_image};
use berth_tests::{bin_dir, root_or_skip};
use stage01_chroot::rootfs::{DEFAULT_BUSYBOX, make_busybox_rootfs};

const BOOK_SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../book/src");

struct Step {
    line: usize,
    command: String,
    expected: Vec<String>,
}

#[test]
fn transcripts_match_real_runs() {
    if !root_or_skip("transcripts_match_real_runs") {
        return;
    }
    let mut failures = Vec::new();
    let mut replayed = 0;
    for chapter in chapters() {
        let text = std::fs::read_to_string(&chapter).unwrap();
        let steps = transcript_steps(&text);
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
        for step in &steps {
            replayed += 1;
            let actual = run(&step.command, dir.path(), &env);
            if !matches(&step.expected, &actual) {
                failures.push(format!(
                    "{}:{}: `{}`\n--- the book says:\n{}\n--- the run printed:\n{}",
                    chapter.display(),
                    step.line,
                    step.command,
                    step.expected.join("\n"),
                    actual.join("\n")
                ));
            }
        }
        remove_engine_leftovers(&dir.path().join("berth"));
    }
    assert!(replayed > 0, "no transcript found in {BOOK_SRC}");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    eprintln!("{replayed} transcript commands replayed");
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

/// Is there a line with `KIND: anchor` (and nothing more of a name after it)?
fn has_marker(code: &str, kind: &str, anchor: &str) -> bool {
    let marker = format!("{kind}: {anchor}");
    code.lines().any(|line| {
        line.split_once(&marker)
            .is_some_and(|(_, after)| !after.starts_with(|c: char| c.is_alphanumeric() || c == '_'))
    })
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

/// The commands of every ```console block, with what they printed.
fn transcript_steps(markdown: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut in_console = false;
    for (index, line) in markdown.lines().enumerate() {
        let fence = line.trim_start();
        if fence.starts_with("```") {
            in_console = !in_console && fence == "```console";
            continue;
        }
        if !in_console {
            continue;
        }
        if let Some(command) = line.strip_prefix("# ") {
            steps.push(Step {
                line: index + 1,
                command: command.into(),
                expected: Vec::new(),
            });
        } else if let Some(step) = steps.last_mut() {
            step.expected.push(line.trim_end().into());
        }
    }
    steps
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
fn run(command: &str, dir: &Path, env: &[(String, String)]) -> Vec<String> {
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("exec 2>&1\n{command}"))
        .current_dir(dir)
        .env("PATH", path)
        .envs(env.iter().cloned())
        .output()
        .expect("run /bin/sh");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| l.trim_end().to_string())
        .collect()
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
