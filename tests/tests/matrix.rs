//! The isolation matrix: every probe against every stage binary.
//!
//! Asserts each stage's exact answers, that isolation only grows from one
//! stage to the next, that the table in the book is this very matrix, and
//! that each stage's chapter ends with the matrix up to that stage.
//! `BERTH_BLESS=1` rewrites the book's tables after an intended change.

use std::path::PathBuf;

use berth_tests::probes::{self, ImageRoot, PROBES, STAGES};
use berth_tests::{Fixture, root_or_skip};

/// The whole matrix, as measured.
const MATRIX_PAGE: &str = "isolation-matrix.md";
/// Each stage's chapter, and how many of the matrix's columns it shows:
/// the stages up to its own, so that the rows still saying "no" are what
/// is not isolated yet.
const CHAPTERS: &[(&str, usize)] = &[
    ("ch01-chroot.md", 1),
    ("ch02-namespaces.md", 2),
    ("ch03-cgroups.md", 3),
    ("ch04-layers.md", 4),
    ("ch05-networks.md", 5),
];
const START: &str = "<!-- ANCHOR: matrix -->\n";
const END: &str = "<!-- ANCHOR_END: matrix -->";

#[test]
fn every_stage_answers_the_probes_as_expected() {
    if !root_or_skip("every_stage_answers_the_probes_as_expected") {
        return;
    }
    let fixture = Fixture::new();
    let mut image = STAGES
        .iter()
        .any(|s| s.from_image)
        .then(|| ImageRoot::new(&fixture));
    if let Some(image) = image.as_mut()
        && STAGES.iter().any(|s| s.bin == "stage05-networks")
    {
        image.start_peer();
    }
    let mut rows = Vec::new();
    for stage in STAGES {
        assert_eq!(
            stage.expected.len(),
            PROBES.len(),
            "{}: one answer per probe",
            stage.name
        );
        let answers: Vec<bool> = PROBES
            .iter()
            .map(|probe| probes::ask(stage, probe, &fixture, image.as_ref()))
            .collect();
        eprintln!("{}: {answers:?}", stage.name);
        assert_eq!(
            answers, stage.expected,
            "stage {} answered differently",
            stage.name
        );
        rows.push((stage, answers));
    }
    check_table(MATRIX_PAGE, &probes::render(&rows));
}

/// The chapters' tables come from the answers the test above asserts, so
/// they are checked without root.
#[test]
fn each_chapter_ends_with_the_matrix_up_to_its_stage() {
    for &(chapter, columns) in CHAPTERS {
        let rows: Vec<_> = STAGES[..columns]
            .iter()
            .map(|stage| (stage, stage.expected.to_vec()))
            .collect();
        check_table(chapter, &probes::render(&rows));
    }
}

/// Probes a stage may answer "yes" to and the next "no", on purpose: the
/// kernel refuses a new user namespace to a chrooted process (a user
/// namespace would give it the powers to leave its chroot), and stage 02's
/// pivot_root makes a real root, so the refusal goes until the engine's
/// seccomp filter brings it back.
const MAY_SHRINK: &[&str] = &["no new user namespace (unshare -U)"];

#[test]
fn isolation_only_grows() {
    for pair in STAGES.windows(2) {
        for (i, probe) in PROBES.iter().enumerate() {
            if MAY_SHRINK.contains(&probe.question) {
                continue;
            }
            assert!(
                !pair[0].expected[i] || pair[1].expected[i],
                "{} loses '{}' that {} had",
                pair[1].name,
                probe.question,
                pair[0].name
            );
        }
    }
}

/// Does `page` of the book hold `table` between its matrix markers?
fn check_table(page: &str, table: &str) {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../book/src")).join(page);
    let text = std::fs::read_to_string(&path).expect("read a page of the book");
    let start = text
        .find(START)
        .unwrap_or_else(|| panic!("{page}: no `{}` marker", START.trim()))
        + START.len();
    let end = text
        .find(END)
        .unwrap_or_else(|| panic!("{page}: no `{END}` marker"));
    if text[start..end] == *table {
        return;
    }
    if std::env::var("BERTH_BLESS").is_ok_and(|v| v == "1") {
        let updated = format!("{}{table}{}", &text[..start], &text[end..]);
        std::fs::write(&path, updated).expect("update the book's matrix");
        return;
    }
    panic!(
        "{page}: the matrix differs from the measured one; rerun with BERTH_BLESS=1 to update \
         it.\nbook:\n{}\nmeasured:\n{table}",
        &text[start..end]
    );
}
