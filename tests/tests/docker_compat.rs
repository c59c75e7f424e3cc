//! The book's page "berth for Docker users" (book/src/docker-compat.md)
//! says, for each Docker command and `run` option, whether berth has it.
//! Kept true both ways: what it marks yes or partial must be in berth's
//! `--help`, and what it marks no must not be (so a new command or option
//! can't land without the page saying so). No root needed: only `--help`.

use std::process::Command;

use berth_tests::bin;

const PAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../book/src/docker-compat.md");

/// One row: what Docker calls it (backticked words of the first column),
/// and whether berth has it.
struct Row {
    names: Vec<String>,
    has: bool,
    line: String,
}

/// The rows of the table under the heading `## {heading}`.
fn rows(heading: &str) -> Vec<Row> {
    let page = std::fs::read_to_string(PAGE).expect("read docker-compat.md");
    let section = page
        .split(&format!("## {heading}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("no section {heading}"));
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.split(" | ").collect();
            let names = cells[0]
                .split('`')
                .skip(1)
                .step_by(2)
                .map(String::from)
                .collect();
            let has = match cells[1].trim() {
                "yes" | "partial" => true,
                "no" => false,
                other => panic!("{line}: the second column says {other:?}, not yes/partial/no"),
            };
            Row {
                names,
                has,
                line: line.into(),
            }
        })
        .collect()
}

fn help(args: &[&str]) -> Option<String> {
    let out = Command::new(bin("berth"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn every_docker_command_the_page_lists_is_as_it_says() {
    let rows = rows("Commands");
    assert!(rows.len() > 40, "only {} commands", rows.len());
    for row in rows {
        let words: Vec<&str> = row.names[0]
            .strip_prefix("docker ")
            .unwrap_or_else(|| panic!("{}: not a docker command", row.line))
            .split(' ')
            .collect();
        assert_eq!(
            help(&words).is_some(),
            row.has,
            "berth {} --help disagrees with the page: {}",
            words.join(" "),
            row.line
        );
    }
}

#[test]
fn every_run_option_the_page_lists_is_as_it_says() {
    let help = help(&["run"]).expect("berth run --help");
    // The options of each line of the help: `-d, --detach  Run...`.
    let options: Vec<&str> = help
        .lines()
        .flat_map(|line| {
            line.split_whitespace()
                .take_while(|word| word.starts_with('-'))
                .map(|word| word.trim_end_matches(','))
        })
        .collect();
    let rows = rows("Options of `run`");
    assert!(rows.len() > 40, "only {} options", rows.len());
    for row in rows {
        for name in &row.names {
            assert_eq!(
                options.contains(&name.as_str()),
                row.has,
                "berth run --help disagrees with the page about {name}: {}",
                row.line
            );
        }
    }
}

/// The subcommands `berth PATH --help` lists.
fn subcommands(path: &[&str]) -> Vec<String> {
    let text = help(path).unwrap_or_default();
    text.lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(String::from)
        .collect()
}

#[test]
fn every_command_has_help_with_examples() {
    let mut paths: Vec<Vec<String>> = subcommands(&[]).into_iter().map(|c| vec![c]).collect();
    let mut i = 0;
    while i < paths.len() {
        let path: Vec<&str> = paths[i].iter().map(String::as_str).collect();
        let text = help(&path).unwrap_or_else(|| panic!("berth {} --help fails", path.join(" ")));
        assert!(
            text.contains("Example"),
            "berth {} --help shows no example:\n{text}",
            path.join(" ")
        );
        for sub in subcommands(&path) {
            let mut deeper = paths[i].clone();
            deeper.push(sub);
            paths.push(deeper);
        }
        i += 1;
    }
    assert!(paths.len() > 40, "only {} commands found", paths.len());
}
