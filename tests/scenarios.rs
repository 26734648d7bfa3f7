//! Data-driven Raft scenarios, in the style of etcd raft's interaction tests: every file in
//! `testdata/raft/` is a script of commands, each followed by the output it must print
//! (the format is in `scenarios/script.rs`, the verbs in `scenarios/verbs.rs`). A mismatch
//! fails with a diff; `REWRITE=1 cargo test --test scenarios` rewrites the files with the
//! output produced, to be reviewed as a diff before committing.

mod scenarios {
    pub mod cluster;
    pub mod render;
    pub mod script;
    pub mod verbs;
}

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use scenarios::cluster::Cluster;
use scenarios::script::{self, parse_script, render_script, Command};
use scenarios::verbs;

/// Runs one file; returns the outputs of its cases or an error naming the line.
fn run_file(path: &Path, text: &str) -> Result<(script::Script, Vec<String>), String> {
    let name = path.display();
    let script = parse_script(text).map_err(|e| format!("{name}: {e}"))?;
    let mut cluster = Cluster::default();
    let mut outputs = Vec::new();
    for case in &script.cases {
        let at = |e: String| format!("{name}:{}: {e}", case.line);
        let cmd = Command::parse(&case.command).map_err(at)?;
        let out = verbs::run(&mut cluster, &cmd).map_err(at)?;
        let out = out.trim_end().to_string();
        outputs.push(if out.is_empty() { "ok".to_string() } else { out });
    }
    Ok((script, outputs))
}

/// A line diff (longest common subsequence), `-` expected, `+` produced.
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] =
                if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            writeln!(out, "  {}", a[i]).unwrap();
            (i, j) = (i + 1, j + 1);
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            writeln!(out, "+ {}", b[j]).unwrap();
            j += 1;
        } else {
            writeln!(out, "- {}", a[i]).unwrap();
            i += 1;
        }
    }
    out
}

/// Checks (or with `REWRITE=1` rewrites) one file; returns a report of its mismatches.
fn check_file(path: &Path, rewrite: bool) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (script, outputs) = run_file(path, &text)?;
    if rewrite {
        let new = render_script(&script, &outputs);
        if new != text {
            std::fs::write(path, new).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        return Ok(());
    }
    let mut report = String::new();
    for (case, out) in script.cases.iter().zip(&outputs) {
        if case.expected.trim_end() != out {
            let d = diff(case.expected.trim_end(), out);
            writeln!(report, "{}:{}: {}\n{d}", path.display(), case.line, case.command).unwrap();
        }
    }
    if report.is_empty() {
        Ok(())
    } else {
        Err(report)
    }
}

fn scenario_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/raft");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_raft_scenario_prints_its_expected_output() {
    let rewrite = std::env::var("REWRITE").is_ok_and(|v| v == "1");
    let files = scenario_files();
    assert!(!files.is_empty(), "no scenario files in testdata/raft");
    let failures: Vec<String> =
        files.iter().filter_map(|f| check_file(f, rewrite).err()).collect();
    assert!(failures.is_empty(), "scenario mismatches:\n{}", failures.join("\n"));
}

#[test]
fn a_command_without_its_separator_is_a_parse_error_naming_the_line() {
    let err = parse_script("# c\nraft-state\nstatus 1\n----\nok\n").unwrap_err();
    assert!(err.starts_with("line 2:"), "{err}");
}

#[test]
fn an_unknown_verb_fails_naming_the_file_and_line() {
    let err = run_file(Path::new("x.txt"), "heal\n----\nok\n\nfly 1\n----\nok\n").unwrap_err();
    assert!(err.starts_with("x.txt:5: unknown verb"), "{err}");
}

#[test]
fn rewriting_keeps_comments_and_replaces_outputs() {
    let text = "# a comment\nheal\n----\nstale\n\n# tail\n";
    let (script, outputs) = run_file(Path::new("x.txt"), text).unwrap();
    assert_eq!(render_script(&script, &outputs), "# a comment\nheal\n----\nok\n\n# tail\n");
}
