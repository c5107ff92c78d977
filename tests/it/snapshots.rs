//! Snapshots of what people and scripts see (issue 11 item 2): the `--help` of the program and
//! of every command, and the JSON documents that need no server, with temporary paths, times,
//! sizes and digests redacted. docs/output.md is the contract; these pin it.
//! `INSTA_UPDATE=always cargo test --test it snapshots::` rewrites them after a deliberate change.

use serde_json::Value;

use crate::common::Release;

const COMMANDS: &[&str] = &[
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
    "key",
    "completions",
    "man",
];

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

fn redacted(mut doc: Value) -> String {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map.iter_mut() {
                    if VOLATILE.contains(&key.as_str()) && !inner.is_null() && !inner.is_object() {
                        *inner = Value::String("[redacted]".into());
                    } else {
                        walk(inner);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut doc);
    serde_json::to_string_pretty(&doc).unwrap()
}

#[test]
fn help_of_the_program_and_every_command() {
    insta::assert_snapshot!("help", Release::new().arg("--help").success().stdout());
    for command in COMMANDS {
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
