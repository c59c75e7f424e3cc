//! The isolation matrix: every probe against every stage binary.
//!
//! Asserts each stage's exact answers, that isolation only grows from one
//! stage to the next, and that the table in the book is this very matrix.
//! `BERTH_BLESS=1` rewrites the book's table after an intended change.

use berth_tests::probes::{self, ImageRoot, PROBES, STAGES};
use berth_tests::{Fixture, root_or_skip};

const BOOK_PAGE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../book/src/isolation-matrix.md"
);
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
    check_book_table(&probes::render(&rows));
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

fn check_book_table(table: &str) {
    let page = std::fs::read_to_string(BOOK_PAGE).expect("read the book's matrix page");
    let start = page
        .find(START)
        .expect("ANCHOR: matrix marker in the book page")
        + START.len();
    let end = page
        .find(END)
        .expect("ANCHOR_END: matrix marker in the book page");
    if page[start..end] == *table {
        return;
    }
    if std::env::var("BERTH_BLESS").is_ok_and(|v| v == "1") {
        let updated = format!("{}{table}{}", &page[..start], &page[end..]);
        std::fs::write(BOOK_PAGE, updated).expect("update the book's matrix page");
        return;
    }
    panic!(
        "the book's matrix differs from the measured one; rerun with BERTH_BLESS=1 to update it.\n\
         book:\n{}\nmeasured:\n{table}",
        &page[start..end]
    );
}
