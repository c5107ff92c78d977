//! The documentation holds what the code does: the configuration reference is regenerated and
//! compared, the IAM policies parse, and completions and the man page come out of the binary.

use std::path::{Path, PathBuf};

use crate::common::Release;
use crate::common::SUBCOMMANDS;

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
        .filter_map(|line| {
            let line = line.trim();
            line.strip_prefix("pub(crate) const ")
                .or_else(|| line.strip_prefix("pub const "))
        })
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
    // Host reports: the instances write only under hosts/, and nothing else gains a write.
    let statements: Vec<serde_json::Value> = blocks
        .iter()
        .filter_map(|(_, block)| serde_json::from_str::<serde_json::Value>(block).ok())
        .filter_map(|doc| doc["Statement"].as_array().cloned())
        .flatten()
        .collect();
    let by_sid = |sid: &str| {
        statements
            .iter()
            .find(|s| s["Sid"] == sid)
            .unwrap_or_else(|| panic!("docs/iam.md has no statement {sid}"))
    };
    let reports = by_sid("WriteHostReports");
    assert_eq!(
        reports["Action"],
        serde_json::json!(["s3:PutObject", "s3:DeleteObject"])
    );
    assert_eq!(
        reports["Resource"],
        "arn:aws:s3:::build/obelix-appengine/prod/hosts/*"
    );
    assert_eq!(
        by_sid("ListTheHostReports")["Condition"]["StringLike"]["s3:prefix"],
        serde_json::json!(["obelix-appengine/prod/hosts/*"])
    );
    assert_eq!(
        by_sid("RemoveTheReportsOfTerminatedInstances")["Resource"],
        "arn:aws:s3:::build/obelix-appengine/prod/hosts/*"
    );
}

/// docs/ssm.md's policies parse, and the controller's `ssm:SendCommand` is never allowed on
/// `*`: once for the document `AWS-RunShellScript` only, once for instances only under an
/// `ssm:resourceTag/aws:autoscaling:groupName` condition. The actions push --via ssm calls are
/// all granted.
#[test]
fn ssm_policies_parse_and_restrict_send_command() {
    let text = fs_err::read_to_string(repo_file("docs/ssm.md")).expect("read docs/ssm.md");
    let mut send_command = Vec::new();
    let mut actions = String::new();
    for (line, block) in json_blocks(&text) {
        let doc: serde_json::Value = serde_json::from_str(&block)
            .unwrap_or_else(|e| panic!("docs/ssm.md line {line}: not JSON ({e})"));
        assert_eq!(doc["Version"], "2012-10-17", "line {line}");
        for statement in doc["Statement"].as_array().expect("Statement is a list") {
            assert_eq!(statement["Effect"], "Allow", "line {line}: {statement}");
            let action = statement["Action"].to_string();
            assert!(
                !action.contains("\"*\"") && !action.contains(":*"),
                "line {line}: not least privilege: {action}"
            );
            if action.contains("ssm:SendCommand") {
                send_command.push(statement.clone());
            }
            actions.push_str(&action);
        }
    }
    assert_eq!(send_command.len(), 2, "{send_command:?}");
    for statement in &send_command {
        let resource = statement["Resource"].to_string();
        assert!(!resource.contains("\"*\""), "SendCommand on *: {statement}");
        if resource.contains(":document/") {
            assert_eq!(
                statement["Resource"], "arn:aws:ssm:*:*:document/AWS-RunShellScript",
                "{statement}"
            );
            assert!(statement.get("Condition").is_none(), "{statement}");
        } else {
            assert!(resource.contains(":instance/"), "{statement}");
            let condition =
                statement["Condition"]["StringLike"]["ssm:resourceTag/aws:autoscaling:groupName"]
                    .as_array()
                    .unwrap_or_else(|| panic!("no group-tag condition: {statement}"));
            assert!(!condition.is_empty() && !condition.iter().any(|v| v == "*"));
        }
    }
    for needed in [
        "ssm:ListCommandInvocations",
        "ssm:CancelCommand",
        "ssm:DescribeInstanceInformation",
        "autoscaling:DescribeAutoScalingGroups",
        "s3:GetObject",
        "s3:PutObject",
    ] {
        assert!(actions.contains(needed), "docs/ssm.md grants no {needed}");
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

/// Options that have no default: the value is needed, or its absence means "not done". Add one
/// here only when that is true; every other option says `[default: …]` in its help.
const NO_DEFAULT: &[&str] = &[
    "artifact",
    "region",
    "sse_kms_key_id",
    "exclude",
    "semver",
    "keep_local",
    "check",
    "run",
    "health_file",
    "asg",
    "hosts",
    // Item 5 of issue 13: with no user given, the ssh config and ssh decide.
    "ssh_user",
    "ssh_config",
    "identity",
    "health_url",
    "health_command",
    "command",
    "log_dir",
    "dir",
    // Signing (docs/signing.md): no key means the build is not signed, or not checked.
    "sign",
    "trusted_keys",
];

/// The built CLI and its commands (globals propagated into each).
fn commands() -> Vec<clap::Command> {
    use clap::CommandFactory;
    let mut cli = release::cli::Cli::command();
    cli.build();
    let mut all = vec![cli.clone()];
    all.extend(cli.get_subcommands().cloned());
    all
}

/// Every option that takes a value shows its default in its help (the defaults live in the
/// code after flag > env > release.toml, so the help text states them).
#[test]
fn help_shows_every_default() {
    let mut missing = Vec::new();
    for command in commands() {
        for arg in command.get_arguments() {
            let takes_value = arg.get_action().takes_values();
            if !takes_value || arg.is_required_set() || arg.is_hide_set() {
                continue;
            }
            let help = arg
                .get_long_help()
                .or(arg.get_help())
                .map(|h| h.to_string());
            let id = arg.get_id().as_str();
            if !help.unwrap_or_default().contains("[default:") && !NO_DEFAULT.contains(&id) {
                missing.push(format!("release {} --{id}", command.get_name()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "no `[default: …]` in the help of {missing:?}"
    );
    for (command, option, default) in [
        ("push", "--health-timeout", "[default: 60]"),
        ("push", "--max-connections", "[default: 8]"),
        ("install", "--keep", "[default: 5]"),
        ("push", "--batch", "[default: 25%]"),
    ] {
        let help = Release::new().args([command, "--help"]).success().stdout();
        let line = help.split(option).nth(1).unwrap_or_default();
        let text: String = line.split("\n\n").next().unwrap_or_default().into();
        assert!(text.contains(default), "{command} {option}: {text}");
    }
}

/// A command's help lists its own options first, the global ones after under their heading.
#[test]
fn command_help_lists_its_own_options_before_the_global_ones() {
    for (command, own) in [
        ("build", "--compression"),
        ("push", "--health-timeout"),
        ("install", "--keep"),
        ("list", "--limit"),
    ] {
        for flag in ["--help", "-h"] {
            let help = Release::new().args([command, flag]).success().stdout();
            let globals = help
                .find("Global options:")
                .unwrap_or_else(|| panic!("`{command} {flag}` has no Global options:\n{help}"));
            let own_at = help.find(own).expect("own option listed");
            let global_at = help.find("--artifact").expect("global option listed");
            assert!(
                own_at < globals && globals < global_at,
                "{command} {flag}:\n{help}"
            );
        }
    }
}

/// One page per command, named as the main page refers to them, and the main page's EXIT
/// STATUS, ENVIRONMENT and EXAMPLES sections; `man -l` formats them where man is installed.
#[test]
fn man_pages_exist_for_every_command_and_the_main_page_has_its_sections() {
    let main = Release::new().arg("man").success().stdout();
    for section in [".SH \"EXIT STATUS\"", ".SH ENVIRONMENT", ".SH EXAMPLES"] {
        assert!(main.contains(section), "main page lacks {section}");
    }
    assert!(main.contains("RELEASE_BUCKET") && main.contains("GIT_COMMIT"));
    for command in SUBCOMMANDS {
        let page = Release::new().args(["man", command]).success().stdout();
        assert!(
            page.contains(&format!(".TH release-{command} 1")),
            "`release man {command}` is not release-{command}(1):\n{}",
            &page[..page.len().min(300)]
        );
        assert!(
            main.contains(&format!("release\\-{command}(1)"))
                || main.contains(&format!("release-{command}(1)"))
        );
    }
    Release::new()
        .args(["man", "nosuch"])
        .code(2)
        .stderr_contains("no command `nosuch`");

    let dir = tempfile::tempdir().unwrap();
    Release::new()
        .args(["man", "--dir"])
        .arg(dir.path())
        .success();
    let mut pages: Vec<String> = fs_err::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    let mut expected: Vec<String> = SUBCOMMANDS
        .iter()
        .map(|c| format!("release-{c}.1"))
        .chain(["release.1".to_owned()])
        .collect();
    expected.sort();
    assert_eq!(pages, expected);

    if which_man().is_some() {
        for page in &pages {
            let output = std::process::Command::new("man")
                .arg("-l")
                .arg(dir.path().join(page))
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "80")
                .output()
                .expect("run man");
            let text = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success() && text.contains("NAME"),
                "man -l {page}: {text}"
            );
        }
    }
}

fn which_man() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("man"))
            .find(|candidate| candidate.is_file())
    })
}

/// scripts/glibc-requirement.sh reads the binary's newest glibc symbol version and, given a
/// ceiling, fails when the binary needs more (issue 13 item 11).
#[test]
fn glibc_requirement_script_reads_the_binary() {
    let script = repo_file("scripts/glibc-requirement.sh");
    let binary = env!("CARGO_BIN_EXE_release");
    let run = |extra: &[&str]| {
        std::process::Command::new("bash")
            .arg(&script)
            .arg(binary)
            .args(extra)
            .output()
            .expect("run the script")
    };
    let output = run(&[]);
    let said = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(output.status.success(), "{output:?}");
    assert!(said.starts_with("GLIBC_2."), "{said}");
    let version = said.trim_start_matches("GLIBC_").to_owned();
    assert!(
        run(&[&version]).status.success(),
        "its own version is enough"
    );
    let too_old = run(&["2.0"]);
    assert_eq!(too_old.status.code(), Some(1), "{too_old:?}");
    assert!(String::from_utf8_lossy(&too_old.stderr).contains("newer than the allowed glibc 2.0"));
}

/// scripts/ssm-smoke.sh (run by users against a real account, never here) parses, is
/// executable, and refuses to run without `--i-mean-it` and against a non-AWS endpoint: both
/// checks end it before any request.
#[test]
fn ssm_smoke_script_refuses_without_consent() {
    use std::os::unix::fs::PermissionsExt;
    let script = repo_file("scripts/ssm-smoke.sh");
    let mode = fs_err::metadata(&script)
        .expect("the script")
        .permissions()
        .mode();
    assert_ne!(mode & 0o111, 0, "scripts/ssm-smoke.sh is not executable");
    let syntax = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash -n");
    assert!(syntax.status.success(), "{syntax:?}");
    let home = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        std::process::Command::new("bash")
            .arg(&script)
            .args([
                "--asg",
                "web-canary",
                "--bucket",
                "build",
                "--artifact",
                "web",
                "--ssm-output",
                "s3://logs/smoke",
            ])
            .args(extra)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", home.path())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("AWS_ACCESS_KEY_ID", "test")
            .output()
            .expect("run the script")
    };
    let without = run(&[]);
    assert_eq!(without.status.code(), Some(2), "{without:?}");
    assert!(String::from_utf8_lossy(&without.stderr).contains("--i-mean-it"));
    let local = run(&["--i-mean-it", "--release", env!("CARGO_BIN_EXE_release")]);
    assert_eq!(local.status.code(), Some(2), "{local:?}");
    assert!(
        String::from_utf8_lossy(&local.stderr).contains("real AWS account"),
        "{local:?}"
    );
}
