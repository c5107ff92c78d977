//! Promotions that stop: bad input, missing builds and commits, rejected pushes, races.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{World, key};
use crate::common::{Action, FaultProxy, Workspace};

#[test]
fn a_missing_build_or_archive_moves_nothing() {
    let mut w = World::new();
    w.build("v1");
    w.build("v2");
    w.release().args(["promote", "1"]).success();
    let before = w.snapshot();

    w.release()
        .args(["promote", "7"])
        .stderr_contains("web/prod/web-7.release")
        .stderr_contains("nearest builds: 2")
        .code(2);

    // Build 2's archive is gone: not installable, so not promotable.
    w.ctx.s3.delete(&w.ctx.bucket, &key("web-2.tar.gz"));
    let before_2 = w.snapshot();
    w.release()
        .args(["promote", "2"])
        .stderr_contains("web/prod/web-2.tar.gz")
        .stderr_contains("does not exist")
        .code(2);
    assert_eq!(w.snapshot(), before_2);

    // Build 1's archive was replaced: its size no longer matches SIZE.
    w.ctx.s3.put(&w.ctx.bucket, &key("web-1.tar.gz"), "short");
    w.release()
        .args(["promote", "1", "--tag", "other"])
        .stderr_contains("SIZE=")
        .code(2);

    assert_eq!(w.stable().unwrap(), w.manifest(1));
    assert_eq!(w.history().len(), 1);
    assert_eq!(w.origin.tags(), ["web-stable"]);
    assert_eq!(
        before
            .iter()
            .filter(|(k, _)| !k.contains(".tar.gz"))
            .collect::<Vec<_>>(),
        w.snapshot()
            .iter()
            .filter(|(k, _)| !k.contains(".tar.gz"))
            .collect::<Vec<_>>()
    );
}

#[test]
fn bad_tag_names_are_refused_before_any_request() {
    let w = World::new();
    let proxy = FaultProxy::new(&w.ctx.moto.endpoint());
    for bad in ["two words", "a..b", "x:y", "-f"] {
        w.release()
            .endpoint(&proxy.endpoint())
            .args(["promote", "1", &format!("--tag={bad}")])
            .stderr_contains("not a valid git tag name")
            .code(2);
    }
    w.release()
        .endpoint(&proxy.endpoint())
        .args(["promote", "1", "--remote", "nowhere"])
        .stderr_contains("no remote `nowhere`")
        .code(2);
    assert_eq!(proxy.count(), 0);
}

/// Artifact and stage names outside `[A-Za-z0-9][A-Za-z0-9._-]{0,127}` are refused by every
/// command before any request: nothing reaches the proxy.
#[test]
fn bad_artifact_and_stage_names_are_refused_before_any_request() {
    let w = World::new();
    let proxy = FaultProxy::new(&w.ctx.moto.endpoint());
    let long = "a".repeat(129);
    let commands: [&[&str]; 10] = [
        &["build"],
        &["promote", "1"],
        &["rollback"],
        &["list"],
        &["show", "1"],
        &["history"],
        &["install", "1", "--dir", "/nonexistent/release-test"],
        &["push", "1", "--hosts", "127.0.0.1"],
        &["status", "--hosts", "127.0.0.1"],
        &["unlock"],
    ];
    for bad in [
        "web/app",
        "../web",
        ".web",
        "-web",
        "web app",
        "web$(id)",
        long.as_str(),
    ] {
        for (flag, what) in [("--artifact", "artifact"), ("--stage", "stage")] {
            for command in commands {
                let out = w
                    .release()
                    .endpoint(&proxy.endpoint())
                    .arg(format!("{flag}={bad}"))
                    .args(command)
                    .code(2);
                assert!(
                    out.stderr().contains(&format!("invalid {what}")),
                    "{flag}={bad} {command:?}: {}",
                    out.stderr()
                );
            }
        }
    }
    assert_eq!(
        proxy.count(),
        0,
        "a request went out: {:?}",
        proxy.log().first()
    );
}

#[test]
fn a_commit_missing_here_is_fetched_from_origin() {
    let mut w = World::new();
    w.commit("here");
    // Another clone makes and pushes the commits; this workspace never saw them.
    let mut other = Workspace::new();
    other.add_origin(&w.origin);
    other.write("app/main.py", "there");
    let pushed = other.commit("there");
    other.push();
    let build = |ws: &Workspace| {
        w.release()
            .current_dir(ws.path())
            .args(["--output", "json", "build", "app"])
            .success()
            .stdout_json()["version"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(build(&other), 1);

    w.release()
        .args(["promote", "1"])
        .stderr_contains("fetching it from origin")
        .success();
    assert_eq!(
        w.origin.tag_commit("web-stable").as_deref(),
        Some(pushed.as_str())
    );
    w.ctx
        .workspace
        .git(["cat-file", "-e", &format!("{pushed}^{{commit}}")]);

    // A commit that exists nowhere but in the other clone: a clear error, nothing moved.
    other.write("app/main.py", "unpushed");
    let unpushed = other.commit("unpushed");
    assert_eq!(build(&other), 2);
    let before = w.snapshot();
    w.release()
        .args(["promote", "2"])
        .stderr_contains(&unpushed)
        .stderr_contains("nor on origin")
        .stderr_contains("--no-tag")
        .code(2);
    assert_eq!(w.snapshot(), before);
    assert_eq!(w.stable().unwrap(), w.manifest(1));
    assert_eq!(
        w.origin.tag_commit("web-stable").as_deref(),
        Some(pushed.as_str())
    );
}

#[test]
fn a_rejected_push_is_partial_and_a_rerun_only_retries_the_tag() {
    let mut w = World::new();
    let (n, commit) = w.build("v1");
    let hook = w.origin.path().join("hooks/pre-receive");
    fs_err::write(&hook, "#!/bin/sh\necho 'tags are frozen' >&2\nexit 1\n").unwrap();
    fs_err::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();

    w.release()
        .args(["promote", "latest"])
        .stderr_contains("latest-stable moved to 1")
        .stderr_contains("tag web-stable not pushed to origin")
        .stderr_contains("tags are frozen")
        .stderr_contains("re-run `release promote 1` to retry the tag")
        .code(4);
    assert_eq!(w.stable().unwrap(), w.manifest(n));
    assert_eq!(w.history().len(), 1);
    assert!(w.origin.tags().is_empty());

    fs_err::remove_file(&hook).unwrap();
    let before = w.snapshot();
    let proxy = FaultProxy::new(&w.ctx.moto.endpoint());
    let doc = w
        .release()
        .endpoint(&proxy.endpoint())
        .args(["--output", "json", "promote", "1"])
        .success()
        .stdout_json();
    assert_eq!(doc["already_stable"], true);
    assert_eq!(doc["pointer_moved"], false);
    assert_eq!(doc["tag_pushed"], true);
    assert_eq!(
        w.origin.tag_commit("web-stable").as_deref(),
        Some(commit.as_str())
    );
    assert_eq!(proxy.count_method("PUT"), 0, "{:?}", proxy.log());
    assert_eq!(w.snapshot(), before);
    assert_eq!(w.history().len(), 1);
}

#[test]
fn racing_promotes_one_wins_the_other_changes_nothing() {
    let mut w = World::new();
    let mut commits = vec![String::new()];
    for n in 1..=3 {
        commits.push(w.build(&format!("v{n}")).1);
    }
    w.release().args(["promote", "1"]).success();

    // Both read latest-stable before either writes it: hold every write of it until moto
    // answered two reads, and the second write until moto answered the first.
    let proxy = FaultProxy::new(&w.ctx.moto.endpoint());
    let writes = Arc::new(AtomicUsize::new(0));
    let log = proxy.log_handle();
    proxy.set_rule(move |r| {
        if r.path().ends_with("/latest-stable.txt") && r.method == "PUT" {
            let answered = |method: &str| {
                let log = log.log();
                let of_pointer = log.iter().filter(|e| {
                    e.request.method == method
                        && e.request.path().ends_with("/latest-stable.txt")
                        && e.upstream_status.is_some()
                });
                of_pointer.count()
            };
            let earlier = writes.fetch_add(1, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(30);
            while (answered("GET") < 2 || answered("PUT") < earlier) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Action::Forward
    });
    let outputs: Vec<_> = std::thread::scope(|scope| {
        let runs: Vec<_> = ["2", "3"]
            .into_iter()
            .map(|n| {
                let run = w.release().endpoint(&proxy.endpoint()).args(["promote", n]);
                scope.spawn(move || run.run())
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let codes: Vec<i32> = outputs.iter().map(|o| o.status().code().unwrap()).collect();
    let winner = match codes.as_slice() {
        [0, 3] => 2u64,
        [3, 0] => 3,
        _ => panic!(
            "expected one 0 and one 3: {codes:?}\n{}\n{}",
            outputs[0].stderr(),
            outputs[1].stderr()
        ),
    };
    let loser = outputs
        .iter()
        .find(|o| o.status().code() == Some(3))
        .unwrap();
    assert!(
        loser.stderr().contains("moved by someone else meanwhile"),
        "{}",
        loser.stderr()
    );
    assert_eq!(w.stable().unwrap(), w.manifest(winner));
    let records = w.history();
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[1]["to_version"], winner);
    assert_eq!(records[1]["from_version"], 1);
    assert_eq!(
        w.origin.tag_commit("web-stable").as_deref(),
        Some(commits[winner as usize].as_str())
    );
}

#[test]
fn a_history_record_that_cannot_be_written_is_partial() {
    let mut w = World::new();
    let (_, commit) = w.build("v1");
    let proxy = FaultProxy::new(&w.ctx.moto.endpoint());
    proxy.set_rule(|r| {
        if r.method == "PUT" && r.path().contains("/history/") {
            Action::error(403, "AccessDenied", "Access Denied")
        } else {
            Action::Forward
        }
    });
    w.release()
        .endpoint(&proxy.endpoint())
        .args(["promote", "1"])
        .stderr_contains("latest-stable moved to 1")
        .stderr_contains("the history record was not written")
        .stderr_contains("tag web-stable pushed to origin")
        .code(4);
    assert_eq!(w.stable().unwrap(), w.manifest(1));
    assert!(w.history().is_empty());
    assert_eq!(
        w.origin.tag_commit("web-stable").as_deref(),
        Some(commit.as_str())
    );
}
