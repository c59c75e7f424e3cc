//! The workshop's exercises work, for every stage: `scripts/exercise NN DIR`
//! makes a copy of the stage with its exercises blanked out, which builds;
//! `scripts/check NN DIR` fails on it and points at the first exercise; and
//! `scripts/check NN` passes on the real stage. For stage 01 a copy with the
//! answers filled back in passes too, which proves the learner's path (its
//! own build in target/workshop, the tests pointed at it) can go green.
//!
//! The checks run the stage's whole test suite, so they run one at a time:
//! two suites side by side could disturb each other's measurements (stage
//! 03 times CPU use).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use berth_tests::root_or_skip;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// One exercise of a stage's exercises.toml: its name and file.
struct Exercise {
    name: String,
    file: String,
}

/// `stages/NN-*`.
fn stage_dir(nn: &str) -> PathBuf {
    std::fs::read_dir(Path::new(REPO).join("stages"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{nn}-"))
        })
        .unwrap_or_else(|| panic!("no stages/{nn}-*"))
}

/// The exercises of stage `nn`, in order (the `name` and `file` lines).
fn exercises(nn: &str) -> Vec<Exercise> {
    let toml = std::fs::read_to_string(stage_dir(nn).join("exercises.toml")).unwrap();
    let value = |line: &str, key: &str| {
        let rest = line.strip_prefix(key)?.trim_start().strip_prefix('=')?;
        Some(rest.trim().trim_matches('"').to_string())
    };
    let names = toml.lines().filter_map(|l| value(l, "name"));
    let files = toml.lines().filter_map(|l| value(l, "file"));
    let found: Vec<Exercise> = names
        .zip(files)
        .map(|(name, file)| Exercise { name, file })
        .collect();
    assert!(!found.is_empty(), "stage {nn} has no exercises");
    found
}

/// Run a script of the repository; its output, stdout and stderr.
fn script(args: &[&str]) -> (Output, String) {
    let output = Command::new(Path::new(REPO).join(args[0]))
        .args(&args[1..])
        .current_dir(REPO)
        .output()
        .unwrap_or_else(|e| panic!("run {args:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output, text)
}

/// A learner's copy of a stage, in cargo's temp dir for tests (so that its
/// build in target/workshop is reused from one run to the next); removed
/// when dropped.
struct Copy(PathBuf);

impl Copy {
    fn new(nn: &str) -> Copy {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("workshop-{nn}"));
        let _ = std::fs::remove_dir_all(&dir);
        let copy = Copy(dir);
        let (output, text) = script(&["scripts/exercise", nn, copy.path()]);
        assert!(output.status.success(), "scripts/exercise {nn}:\n{text}");
        copy
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The blank copy fails, pointing at the first exercise; the real stage
/// passes every test.
fn check_stage(nn: &str) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let copy = Copy::new(nn);
    let first = &exercises(nn)[0];
    let (output, report) = script(&["scripts/check", "--fail-fast", nn, copy.path()]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "scripts/check {nn} on a blank copy must fail:\n{report}"
    );
    let pointer = format!(
        "look at next: {}/{}:exercise_{} — ",
        copy.path(),
        first.file,
        first.name
    );
    assert!(
        report.contains(&pointer),
        "no `{pointer}` in the report:\n{report}"
    );
    assert!(
        report.contains(&format!("✗  exercise_{}", first.name)) && report.contains("still todo!()"),
        "the first exercise is not marked as failing and still todo:\n{report}"
    );
    drop(copy);

    let (output, report) = script(&["scripts/check", nn]);
    assert!(
        output.status.success(),
        "scripts/check {nn} on the real stage must pass:\n{report}"
    );
    assert!(
        report.contains(&format!("stage {nn}: all ")),
        "no verdict in the report:\n{report}"
    );
    for exercise in exercises(nn) {
        assert!(
            report.contains(&format!("✓  exercise_{}", exercise.name)),
            "exercise_{} is not marked as passing:\n{report}",
            exercise.name
        );
    }
}

#[test]
fn stage_01_exercises() {
    if !root_or_skip("stage_01_exercises") {
        return;
    }
    check_stage("01");
}

#[test]
fn stage_02_exercises() {
    if !root_or_skip("stage_02_exercises") {
        return;
    }
    check_stage("02");
}

#[test]
fn stage_03_exercises() {
    if !root_or_skip("stage_03_exercises") {
        return;
    }
    check_stage("03");
}

#[test]
fn stage_04_exercises() {
    if !root_or_skip("stage_04_exercises") {
        return;
    }
    check_stage("04");
}

#[test]
fn stage_05_exercises() {
    if !root_or_skip("stage_05_exercises") {
        return;
    }
    check_stage("05");
}

/// The lines strictly between `// ANCHOR: exercise_<name>` and its
/// `ANCHOR_END` in `text`, and where they are.
fn region(text: &str, name: &str) -> std::ops::Range<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let at = |marker: String| {
        lines
            .iter()
            .position(|l| l.trim() == marker)
            .unwrap_or_else(|| panic!("no `{marker}`"))
    };
    at(format!("// ANCHOR: exercise_{name}")) + 1..at(format!("// ANCHOR_END: exercise_{name}"))
}

/// A copy with every exercise solved (the real stage's code put back in
/// place of the todo!s) passes: a learner can get to green.
#[test]
fn a_solved_copy_passes() {
    if !root_or_skip("a_solved_copy_passes") {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let copy = Copy::new("01");
    for exercise in exercises("01") {
        let real = std::fs::read_to_string(stage_dir("01").join(&exercise.file)).unwrap();
        let path = copy.0.join(&exercise.file);
        let blank = std::fs::read_to_string(&path).unwrap();
        let (real_lines, blank_lines): (Vec<&str>, Vec<&str>) =
            (real.lines().collect(), blank.lines().collect());
        let (answer, todo) = (
            region(&real, &exercise.name),
            region(&blank, &exercise.name),
        );
        assert_eq!(todo.len(), 1, "the blank region is one todo!() line");
        assert!(blank_lines[todo.start].contains("todo!(\"exercise "));
        let mut solved: Vec<&str> = blank_lines[..todo.start].to_vec();
        solved.extend(&real_lines[answer]);
        solved.extend(&blank_lines[todo.end..]);
        std::fs::write(&path, solved.join("\n") + "\n").unwrap();
    }
    let (output, report) = script(&["scripts/check", "01", copy.path()]);
    assert!(
        output.status.success(),
        "scripts/check 01 on a solved copy must pass:\n{report}"
    );
    assert!(report.contains("your copy in"), "{report}");
}
