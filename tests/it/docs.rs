//! The documentation holds what the code does: the configuration reference is regenerated and
//! compared, the IAM policies parse, and completions and the man page come out of the binary.

use std::path::{Path, PathBuf};

use crate::common::Release;

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// docs/configuration.md is exactly what `configuration_reference()` renders from the CLI
/// definition; `UPDATE_DOCS=1` rewrites it instead of failing.
#[test]
fn configuration_reference_is_fresh() {
    let path = repo_file("docs/configuration.md");
    let expected = release::docs::configuration_reference();
    if std::env::var_os("UPDATE_DOCS").is_some_and(|v| v == "1") {
        fs_err::write(&path, &expected).expect("write docs/configuration.md");
        return;
    }
    let committed = fs_err::read_to_string(&path).unwrap_or_default();
    if committed != expected {
        let first_difference = committed
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || "the files differ in length".to_owned(),
                |n| format!("first difference at line {}", n + 1),
            );
        panic!(
            "docs/configuration.md is stale ({first_difference}): run \
             `UPDATE_DOCS=1 cargo test --test it docs::` and commit the result"
        );
    }
}

/// Every variable named in src/env_vars.rs, every global and command flag appears in the
/// reference: a new constant without a description there fails here.
#[test]
fn configuration_reference_names_every_variable() {
    let reference = release::docs::configuration_reference();
    let source = fs_err::read_to_string(repo_file("src/env_vars.rs")).expect("read env_vars.rs");
    let names: Vec<&str> = source
        .lines()
        .filter_map(|line| line.trim().strip_prefix("pub const "))
        .filter_map(|rest| rest.split('"').nth(1))
        .collect();
    assert!(names.len() >= 15, "parsed too few names: {names:?}");
    for name in names {
        assert!(
            reference.contains(&format!("`{name}`")),
            "`{name}` (src/env_vars.rs) is missing from docs/configuration.md"
        );
    }
    for flag in [
        "--artifact",
        "--dry-run",
        "--keep-local",
        "--no-tag",
        "--health-file",
        "--strict-host-keys",
        "--max-failures",
        "--remote-binary",
    ] {
        assert!(reference.contains(flag), "{flag} is missing");
    }
    for table in ["[build]", "[promote]", "[install]", "[push]"] {
        assert!(reference.contains(table), "{table} is missing");
    }
}

/// Every ```json block of docs/iam.md is a policy document (or the lifecycle configuration):
/// valid JSON, with `Version` and `Statement` (`Rules` for lifecycle).
#[test]
fn iam_policies_parse() {
    let text = fs_err::read_to_string(repo_file("docs/iam.md")).expect("read docs/iam.md");
    let blocks = json_blocks(&text);
    let mut policies = 0;
    let mut lifecycle = 0;
    for (line, block) in &blocks {
        let doc: serde_json::Value = serde_json::from_str(block)
            .unwrap_or_else(|e| panic!("docs/iam.md line {line}: not JSON ({e})"));
        if doc.get("Rules").is_some() {
            lifecycle += 1;
            let rules = doc["Rules"].as_array().expect("Rules is a list");
            assert!(
                rules
                    .iter()
                    .any(|r| r.get("AbortIncompleteMultipartUpload").is_some()),
                "line {line}: no rule aborts incomplete multipart uploads"
            );
            continue;
        }
        policies += 1;
        assert_eq!(
            doc["Version"], "2012-10-17",
            "line {line}: a policy needs Version 2012-10-17"
        );
        let statements = doc["Statement"]
            .as_array()
            .unwrap_or_else(|| panic!("line {line}: Statement must be a list"));
        assert!(!statements.is_empty(), "line {line}: no statements");
        for statement in statements {
            assert_eq!(statement["Effect"], "Allow", "line {line}: {statement}");
            assert!(
                statement.get("Action").is_some() && statement.get("Resource").is_some(),
                "line {line}: a statement lacks Action or Resource: {statement}"
            );
            let actions = statement["Action"].to_string();
            assert!(
                !actions.contains("\"*\"") && !actions.contains("s3:*"),
                "line {line}: not least privilege: {actions}"
            );
        }
    }
    assert!(
        policies >= 4,
        "expected a policy per command group, found {policies}"
    );
    assert_eq!(lifecycle, 1, "expected one lifecycle configuration");
    for needed in [
        "kms:GenerateDataKey",
        "kms:Decrypt",
        "s3:AbortMultipartUpload",
    ] {
        assert!(text.contains(needed), "docs/iam.md lacks {needed}");
    }
}

/// The fenced ```json blocks of a Markdown text, with the line each starts on.
fn json_blocks(text: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        match &mut current {
            None if line.trim() == "```json" => current = Some((n + 1, String::new())),
            None => {}
            Some(_) if line.trim() == "```" => blocks.extend(current.take()),
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    assert!(current.is_none(), "an unterminated ```json block");
    blocks
}

const SUBCOMMANDS: [&str; 13] = [
    "build",
    "promote",
    "rollback",
    "list",
    "show",
    "history",
    "install",
    "current",
    "push",
    "status",
    "unlock",
    "completions",
    "man",
];

#[test]
fn completions_name_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let script = Release::new()
            .args(["completions", shell])
            .success()
            .stdout();
        for command in SUBCOMMANDS {
            // Each shell's own entry for the subcommand, not a bare word that any text has.
            let entries = match shell {
                "bash" => vec![
                    format!("release,{command})"),
                    format!("release__subcmd__{command})"),
                ],
                "zsh" => vec![format!("({command})"), format!("'{command}:")],
                _ => vec![format!(
                    "complete -c release -n \"__fish_release_needs_command\" -f -a \"{command}\""
                )],
            };
            for entry in entries {
                assert!(
                    script.contains(&entry),
                    "{shell} completions lack `{entry}` for `{command}`"
                );
            }
        }
        assert!(script.contains("max-failures"), "{shell}: no push flags");
    }
    // A shell that clap_complete does not know is a usage error.
    Release::new().args(["completions", "tcsh"]).code(2);
}

#[test]
fn bash_completions_load_in_bash() {
    let script = Release::new()
        .args(["completions", "bash"])
        .success()
        .stdout();
    let output = std::process::Command::new("bash")
        .args(["--norc", "-c", "eval \"$1\" && complete -p release", "bash"])
        .arg(&script)
        .env_clear()
        .output()
        .expect("run bash");
    assert!(
        output.status.success(),
        "bash rejects the completions: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("release"));
}

#[test]
fn man_page_lists_every_subcommand() {
    let page = Release::new().arg("man").success().stdout();
    assert!(page.contains(".TH release"), "no title header");
    let listed = page
        .split_once(".SH SUBCOMMANDS\n")
        .expect("a SUBCOMMANDS section")
        .1;
    for command in SUBCOMMANDS {
        let entry = format!(".TP\nrelease\\-{command}(1)\n");
        assert!(
            listed.contains(&entry),
            "the man page's SUBCOMMANDS lack `{entry}`"
        );
    }
    assert!(
        page.contains("RELEASE_BUCKET"),
        "env twins are not documented"
    );
}
