//! Promotions that succeed: latest, by number, rollbacks, old builds, dry runs.

use serde_json::Value;

use super::{ARTIFACT, World, key, seed_legacy};
use crate::common::FaultProxy;

#[test]
fn promote_latest_then_back_by_number() {
    let mut w = World::new();
    let (one, c1) = w.build("v1");
    let (two, c2) = w.build("v2");
    assert_eq!((one, two), (1, 2));
    // Tags of the repository's own: a promote pushes only its tag, never these.
    w.ctx.workspace.git(["tag", "unrelated-light"]);
    w.ctx
        .workspace
        .git(["tag", "-a", "-m", "mine", "unrelated-annotated", &c1]);

    let doc = w
        .release()
        .args(["--output", "json", "promote", "latest"])
        .success()
        .stdout_json();
    assert_eq!(doc["version"], 2);
    assert_eq!(doc["from_version"], Value::Null);
    assert_eq!(doc["pointer_moved"], true);
    assert_eq!(doc["tag"], "web-stable");
    assert_eq!(doc["tag_pushed"], true);
    assert_eq!(doc["commit"], c2.as_str());
    assert_eq!(w.stable().unwrap(), w.manifest(2));
    assert_eq!(
        w.origin.tag_commit("web-stable").as_deref(),
        Some(c2.as_str())
    );
    // Annotated, naming artifact, version, build and who promoted.
    assert_eq!(
        w.origin.git(["cat-file", "-t", "refs/tags/web-stable"]),
        "tag"
    );
    let message = w
        .origin
        .git(["tag", "-l", "--format=%(contents)", "web-stable"]);
    for text in [
        "web 2 promoted to stable",
        "version: 2",
        "build: manual",
        "alice",
    ] {
        assert!(message.contains(text), "{text:?} not in {message}");
    }
    let records = w.history();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r["kind"], "promote");
    assert_eq!(r["user"], "alice");
    assert_eq!(r["from_version"], Value::Null);
    assert_eq!(r["to_version"], 2);
    assert_eq!(r["tag"], "web-stable");
    assert_eq!(r["commit"], c2.as_str());
    assert_eq!(r["artifact"], ARTIFACT);
    assert_eq!(r["stage"], "prod");
    assert!(r["host"].as_str().is_some_and(|h| !h.is_empty()));
    assert!(r["time"].as_str().unwrap().ends_with('Z'), "{r}");

    // Back to 1 by number: the pointer, the tag and a second record.
    w.release()
        .args(["promote", "1"])
        .stdout_contains("promoted web 1 to latest-stable (was 2)")
        .success();
    assert_eq!(w.stable().unwrap(), w.manifest(1));
    assert_eq!(
        w.origin.tag_commit("web-stable").as_deref(),
        Some(c1.as_str())
    );
    assert_eq!(w.origin.tags(), ["web-stable"], "only its tag was pushed");
    let records = w.history();
    assert_eq!(records.len(), 2);
    assert_eq!(
        (
            records[1]["from_version"].clone(),
            records[1]["to_version"].clone()
        ),
        (2.into(), 1.into())
    );
}

#[test]
fn rollback_walks_back_through_the_history() {
    let mut w = World::new();
    let mut commits = vec![String::new()];
    for n in 1..=3 {
        let (number, commit) = w.build(&format!("v{n}"));
        assert_eq!(number, n);
        commits.push(commit);
    }
    let release = || w.release().env("GIT_TAG_NAME", "web-prod");
    for n in ["1", "2", "3"] {
        release().args(["promote", n]).success();
    }
    // A dry run names the build it would go back to and writes nothing: no object, no tag.
    let before = w.snapshot();
    let local_tag = w.ctx.workspace.git(["rev-parse", "web-prod^{commit}"]);
    let proxy = FaultProxy::new(&w.ctx.moto.endpoint());
    let doc = release()
        .endpoint(&proxy.endpoint())
        .args(["--dry-run", "--output", "json", "rollback"])
        .success()
        .stdout_json();
    assert_eq!(
        (&doc["dry_run"], &doc["version"]),
        (&true.into(), &2.into()),
        "{doc}"
    );
    let writes: Vec<String> = proxy
        .log()
        .iter()
        .filter(|e| !matches!(e.request.method.as_str(), "GET" | "HEAD"))
        .map(|e| format!("{} {}", e.request.method, e.request.target))
        .collect();
    assert_eq!(writes, Vec::<String>::new());
    assert_eq!(w.snapshot(), before);
    assert_eq!(
        w.ctx.workspace.git(["rev-parse", "web-prod^{commit}"]),
        local_tag
    );
    assert_eq!(
        w.origin.tag_commit("web-prod").as_deref(),
        Some(commits[3].as_str())
    );
    for expected in [2u64, 1] {
        let doc = release()
            .args(["--output", "json", "rollback"])
            .success()
            .stdout_json();
        assert_eq!(doc["version"], expected);
        assert_eq!(w.stable().unwrap(), w.manifest(expected));
        assert_eq!(
            w.origin.tag_commit("web-prod").as_deref(),
            Some(commits[expected as usize].as_str())
        );
    }
    // Nothing older than 1 was ever stable: an input error that changes nothing.
    let before = w.snapshot();
    release()
        .args(["rollback"])
        .stderr_contains("no build that was stable before 1")
        .stderr_contains("release promote N")
        .code(2);
    assert_eq!(w.snapshot(), before);
    assert_eq!(w.origin.tags(), ["web-prod"]);
    let moves: Vec<(Value, Value)> = w
        .history()
        .iter()
        .map(|r| (r["from_version"].clone(), r["to_version"].clone()))
        .collect();
    assert_eq!(
        moves,
        [
            (Value::Null, 1.into()),
            (1.into(), 2.into()),
            (2.into(), 3.into()),
            (3.into(), 2.into()),
            (2.into(), 1.into()),
        ]
    );
}

#[test]
fn rollback_without_history_asks_for_a_number() {
    let w = World::new();
    w.ctx.s3.put(
        &w.ctx.bucket,
        &key("latest-stable.txt"),
        "MODULE=web\nVERSION=23\nBUILD=33\n",
    );
    w.release()
        .args(["rollback", "--no-tag"])
        .stderr_contains("no promotion history")
        .stderr_contains("release promote N")
        .code(2);
    assert!(w.history().is_empty());
}

#[test]
fn legacy_build_is_read_from_its_tar_and_needs_no_tag() {
    let w = World::new();
    let release_17 = seed_legacy(&w);

    // No GIT_COMMIT: tagging is impossible, and it says so before anything moves.
    w.release()
        .args(["promote", "17"])
        .stderr_contains("no GIT_COMMIT")
        .stderr_contains("--no-tag")
        .code(2);
    assert_eq!(w.stable(), None);
    assert!(w.history().is_empty());

    let doc = w
        .release()
        .args(["--output", "json", "promote", "17", "--no-tag"])
        .stderr_contains("made by the old jobs")
        .success()
        .stdout_json();
    assert_eq!(doc["version"], 17);
    assert_eq!(doc["tag"], Value::Null);
    assert_eq!(w.stable().unwrap(), release_17);
    assert!(w.origin.tags().is_empty());
    let records = w.history();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["to_version"], 17);
    assert_eq!(records[0]["tag"], Value::Null);
    assert_eq!(records[0]["commit"], Value::Null);
}

#[test]
fn dry_run_writes_nothing() {
    let mut w = World::new();
    let (_, commit) = w.build("v1");
    let before = w.snapshot();
    let proxy = FaultProxy::new(&w.ctx.moto.endpoint());
    let doc = w
        .release()
        .endpoint(&proxy.endpoint())
        .args(["--dry-run", "--output", "json", "promote", "latest"])
        .success()
        .stdout_json();
    assert_eq!(doc["dry_run"], true);
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["commit"], commit.as_str());
    assert_eq!(doc["pointer_moved"], false);
    w.release()
        .endpoint(&proxy.endpoint())
        .args(["--dry-run", "promote", "1"])
        .stdout_contains("dry run")
        .stdout_contains("nothing was written")
        .success();
    assert_eq!(proxy.count_method("PUT"), 0);
    assert_eq!(proxy.count_method("DELETE"), 0);
    assert_eq!(w.snapshot(), before);
    assert!(w.origin.tags().is_empty());
    assert_eq!(w.ctx.workspace.git(["tag", "--list"]), "");
}

#[test]
fn tag_name_from_flag_env_or_release_toml() {
    let mut w = World::new();
    let (_, commit) = w.build("v1");
    w.ctx
        .workspace
        .write("release.toml", "[promote]\ntag = \"toml-tag\"\n");
    w.release().args(["promote", "1"]).success();
    w.release()
        .env("GIT_TAG_NAME", "env-tag")
        .args(["promote", "1"])
        .success();
    w.release()
        .env("GIT_TAG_NAME", "env-tag")
        .args(["promote", "1", "--tag", "flag-tag"])
        .success();
    assert_eq!(w.origin.tags(), ["env-tag", "flag-tag", "toml-tag"]);
    for tag in w.origin.tags() {
        assert_eq!(w.origin.tag_commit(&tag).as_deref(), Some(commit.as_str()));
    }
    // Only the first run moved the pointer.
    assert_eq!(w.history().len(), 1);
}
