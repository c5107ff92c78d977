//! What scripts read (issue 11 item 2): under `--output json` a usage error that clap itself
//! reports is one JSON error document on stdout too, like every other error.

use crate::common::Release;

fn usage_error_document(out: &crate::common::Output) -> serde_json::Value {
    let doc = out.stdout_json();
    assert_eq!(doc["error"]["exit_code"], 2, "{doc}");
    assert!(doc["error"]["message"].is_string(), "{doc}");
    doc
}

#[test]
fn clap_usage_errors_are_json_documents_under_output_json() {
    let out = Release::new()
        .args(["--output", "json", "build", "--no-such-flag"])
        .code(2);
    let doc = usage_error_document(&out);
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(message.contains("--no-such-flag"), "{doc}");
    assert!(
        out.stderr().contains("--no-such-flag"),
        "clap's text stays on stderr"
    );

    let out = Release::new()
        .env("RELEASE_OUTPUT", "json")
        .args(["list", "--limit", "many"])
        .code(2);
    usage_error_document(&out);

    let out = Release::new().args(["--output=json"]).code(2);
    usage_error_document(&out);
}

#[test]
fn clap_usage_errors_print_nothing_on_stdout_in_text() {
    let out = Release::new().args(["build", "--no-such-flag"]).code(2);
    assert_eq!(out.stdout(), "", "stdout carries results only");
    let out = Release::new()
        .args(["--output", "json", "--help"])
        .success();
    assert!(out.stdout().contains("Usage:"), "help is help, JSON or not");
}

/// `status` keeps a host's state (an enum: stable, drift, empty, unreachable) apart from the
/// error text; before, the state of an unreachable host was `UNREACHABLE: cannot connect …`.
#[test]
fn status_state_is_one_word_and_the_error_is_its_own_key() {
    let bucket = tempfile::tempdir().unwrap();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port().to_string()
    };
    let store = format!("file://{}", bucket.path().display());
    let args = ["--output", "json", "--bucket", &store, "--artifact", "web"];
    let doc = Release::new()
        .args(args)
        .args(["status", "--hosts", "127.0.0.1", "--ssh-port", &port])
        .success()
        .stdout_json();
    let host = &doc["hosts"][0];
    assert_eq!(host["state"], "unreachable", "{doc}");
    assert_eq!(host["drift"], true, "{doc}");
    assert!(
        host["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{doc}"
    );
    assert_eq!(doc["drifted"], 1, "{doc}");
}

/// One type per key: `build`'s document says `dry_run` in real runs too (false), not only in
/// dry runs.
#[test]
fn real_runs_say_dry_run_false() {
    let bucket = tempfile::tempdir().unwrap();
    let ws = tempfile::tempdir().unwrap();
    fs_err::write(ws.path().join("app.txt"), "hello\n").unwrap();
    let store = format!("file://{}", bucket.path().display());
    let doc = Release::new()
        .current_dir(ws.path())
        .env("GIT_COMMIT", "0123456789abcdef0123456789abcdef01234567")
        .args([
            "--output",
            "json",
            "--bucket",
            &store,
            "--artifact",
            "web",
            "build",
        ])
        .success()
        .stdout_json();
    assert_eq!(doc["dry_run"], false, "{doc}");
    assert_eq!(doc["version"], 1, "{doc}");
}

/// History kinds are an enum, but a record of a kind this version does not know (written by a
/// newer one) stays readable: `history` lists it with its kind as written, and `rollback`'s walk
/// passes over it instead of failing or taking its versions.
#[test]
fn unknown_history_kinds_are_listed_and_skipped_by_rollback() {
    let bucket = tempfile::tempdir().unwrap();
    let ws = tempfile::tempdir().unwrap();
    fs_err::write(ws.path().join("app.txt"), "hello\n").unwrap();
    let store = format!("file://{}", bucket.path().display());
    let global = ["--output", "json", "--bucket", &store, "--artifact", "web"];
    let run = |args: &[&str]| {
        Release::new()
            .current_dir(ws.path())
            .env("GIT_COMMIT", "0123456789abcdef0123456789abcdef01234567")
            .args(global)
            .args(args)
            .success()
            .stdout_json()
    };
    run(&["build"]);
    run(&["build"]);
    run(&["promote", "1", "--no-tag"]);
    run(&["promote", "2", "--no-tag"]);
    let history = bucket.path().join("web/prod/history");
    let newest = "29991231T235959.999Z-scale-0a1b2c3d.json";
    fs_err::write(
        history.join(newest),
        r#"{"kind":"scale","time":"2999-12-31T23:59:59.999Z","user":"a","host":"h",
            "artifact":"web","stage":"prod","from_version":2,"to_version":9,"tag":null,
            "commit":null,"replicas":3}"#,
    )
    .unwrap();
    let listed = run(&["history"]);
    assert_eq!(listed["events"][0]["kind"], "scale", "{listed}");
    assert_eq!(listed["events"][0]["replicas"], 3, "{listed}");
    assert_eq!(listed["events"][1]["kind"], "promote", "{listed}");
    let rolled = run(&["rollback", "--no-tag"]);
    assert_eq!(rolled["version"], 1, "{rolled}");
    assert_eq!(rolled["from_version"], 2, "{rolled}");
}
