//! Snapshots of what people and scripts see (issue 11 item 2): the `--help` of the program and
//! of every command, and the JSON documents that need no server, with temporary paths, times,
//! sizes and digests redacted. docs/output.md is the contract; these pin it.
//! `INSTA_UPDATE=always cargo test --test it snapshots::` rewrites them after a deliberate change.

use serde_json::Value;

use crate::common::{Release, SUBCOMMANDS};

/// Keys whose values change from run to run (paths, times, sizes, digests, ports).
const VOLATILE: &[&str] = &[
    "object",
    "sha256",
    "size",
    "tar_size",
    "seconds",
    "dir",
    "timestamp",
    "time",
    "error",
];

fn redacted(doc: Value) -> String {
    redacted_also(doc, &[])
}

/// As `redacted`, with the keys `also` redacted too (a bucket's keys and paths, the machine's
/// name, a manifest's digest and time).
fn redacted_also(mut doc: Value, also: &[&str]) -> String {
    fn walk(value: &mut Value, also: &[&str]) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map.iter_mut() {
                    let volatile = VOLATILE.contains(&key.as_str()) || also.contains(&key.as_str());
                    if volatile && !inner.is_null() && !inner.is_object() {
                        *inner = Value::String("[redacted]".into());
                    } else {
                        walk(inner, also);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| walk(item, also)),
            _ => {}
        }
    }
    walk(&mut doc, also);
    serde_json::to_string_pretty(&doc).unwrap()
}

#[test]
fn help_of_the_program_and_every_command() {
    insta::assert_snapshot!("help", Release::new().arg("--help").success().stdout());
    for command in SUBCOMMANDS {
        let help = Release::new().args([command, "--help"]).success().stdout();
        insta::assert_snapshot!(format!("help_{command}"), help);
    }
}

#[test]
fn json_documents_that_need_no_server() {
    let bucket = tempfile::tempdir().unwrap();
    let ws = tempfile::tempdir().unwrap();
    fs_err::write(ws.path().join("app.txt"), "hello\n").unwrap();
    let store = format!("file://{}", bucket.path().display());
    let global = ["--output", "json", "--bucket", &store, "--artifact", "web"];
    let json = |args: &[&str], code: i32| {
        let out = Release::new()
            .current_dir(ws.path())
            .env("GIT_COMMIT", "0123456789abcdef0123456789abcdef01234567")
            .env("BUILD_NUMBER", "33")
            .args(global)
            .args(args)
            .code(code);
        redacted(out.stdout_json())
    };
    insta::assert_snapshot!("usage_error", json(&["build", "--no-such-flag"], 2));
    insta::assert_snapshot!("build_dry_run", json(&["build", "--dry-run"], 0));
    insta::assert_snapshot!("build", json(&["build"], 0));
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port().to_string()
    };
    let status = ["status", "--hosts", "127.0.0.1", "--ssh-port", &port];
    insta::assert_snapshot!("status", json(&status, 0));
    let install_dir = ws.path().join("opt");
    let install_dir = install_dir.to_str().unwrap();
    insta::assert_snapshot!("current_empty", json(&["current", "--dir", install_dir], 0));
    insta::assert_snapshot!("unlock_no_lock", json(&["unlock"], 0));
}

/// The documents of the bucket commands in a file store: list, show, history, promote and
/// rollback (without a tag), install, unlock's dry run, and push's plan (a dry run connects to
/// no host).
#[test]
fn json_documents_of_the_bucket_commands() {
    let bucket = tempfile::tempdir().unwrap();
    let ws = tempfile::tempdir().unwrap();
    fs_err::write(ws.path().join("app.txt"), "hello\n").unwrap();
    let store = format!("file://{}", bucket.path().display());
    let global = ["--output", "json", "--bucket", &store, "--artifact", "web"];
    let json = |args: &[&str]| {
        let out = Release::new()
            .current_dir(ws.path())
            .env("GIT_COMMIT", "0123456789abcdef0123456789abcdef01234567")
            .env("BUILD_NUMBER", "33")
            .env("USER", "snap")
            .args(global)
            .args(args)
            .success();
        let machine = ["history", "pointer", "SHA256", "SIZE", "TIMESTAMP"];
        redacted_also(out.stdout_json(), &machine)
    };
    json(&["build"]);
    json(&["build"]);
    insta::assert_snapshot!("promote", json(&["promote", "1", "--no-tag"]));
    insta::assert_snapshot!("list", json(&["list"]));
    insta::assert_snapshot!("show", json(&["show", "1"]));
    // `host` is the machine the test runs on: redacted here only, push's plan names its hosts.
    let history = Release::new()
        .env("USER", "snap")
        .args(global)
        .arg("history")
        .success()
        .stdout_json();
    let history = redacted_also(history, &["host"]);
    insta::assert_snapshot!("history", history);
    let install_dir = ws.path().join("opt");
    let install_dir = install_dir.to_str().unwrap();
    // A fixed host id: the report's key would otherwise hold this machine's hostname.
    let install = [
        "install",
        "2",
        "--dir",
        install_dir,
        "--host-id",
        "i-0123abcd",
    ];
    insta::assert_snapshot!("install", json(&install));
    json(&["promote", "2", "--no-tag"]);
    insta::assert_snapshot!("rollback", json(&["rollback", "--no-tag"]));
    insta::assert_snapshot!("unlock_dry_run", json(&["--dry-run", "unlock"]));
    let push = [
        "push",
        "1",
        "--hosts",
        "127.0.1.9,127.0.1.10",
        "--batch",
        "1",
    ];
    insta::assert_snapshot!("push_dry_run", json(&[&["--dry-run"][..], &push].concat()));
}
