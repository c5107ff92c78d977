//! `list`, `show` and `history`, in text and JSON.

use serde_json::Value;

use super::{World, key, seed_legacy};

/// Build 1 (promoted) and build 2 (Jenkins values, a SEMVER); returns build 1's commit.
fn two_builds(w: &mut World) -> String {
    let (_, c1) = w.build("v1");
    w.commit("v2");
    w.ctx.workspace.push();
    let doc = w
        .release()
        .env("BUILD_NUMBER", "77")
        .env("GIT_BRANCH", "origin/hotfix")
        .args(["--output", "json", "build", "app", "--semver", "2.3.1"])
        .success()
        .stdout_json();
    assert_eq!(doc["version"], 2);
    w.release().args(["promote", "1"]).success();
    c1
}

fn json(w: &World, args: &[&str]) -> Value {
    w.release()
        .args(["--output", "json"])
        .args(args)
        .success()
        .stdout_json()
}

#[test]
fn list_marks_latest_and_stable() {
    let mut w = World::new();
    let c1 = two_builds(&mut w);
    let list = json(&w, &["list"]);
    assert_eq!(list["latest"], 2);
    assert_eq!(list["stable"], 1);
    let builds = list["builds"].as_array().unwrap();
    assert_eq!(builds.len(), 2);
    let b2 = &builds[0];
    assert_eq!(b2["version"], 2);
    assert_eq!(b2["build"], "77");
    assert_eq!(b2["branch"], "hotfix");
    assert_eq!(b2["semver"], "2.3.1");
    assert_eq!(b2["archive"], "web-2.tar.gz");
    assert_eq!(b2["latest"], true);
    assert_eq!(b2["stable"], false);
    assert_eq!(b2["source"], "manifest");
    assert_eq!(
        b2["size"].as_u64(),
        w.ctx.s3.head_size(&w.ctx.bucket, &key("web-2.tar.gz"))
    );
    assert_eq!(builds[1]["commit"], c1.as_str());
    assert_eq!(builds[1]["stable"], true);
    assert_eq!(builds[1]["latest"], false);
    let limited = json(&w, &["list", "--limit", "1"]);
    assert_eq!(limited["builds"].as_array().unwrap().len(), 1);

    let text = w.release().args(["list"]).success().stdout();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("VERSION"), "{text}");
    assert!(
        lines[1].starts_with('2') && lines[1].contains("77") && lines[1].ends_with("latest"),
        "{text}"
    );
    assert!(
        lines[2].starts_with('1') && lines[2].contains(&c1[..12]) && lines[2].ends_with("stable"),
        "{text}"
    );
}

#[test]
fn show_prints_one_manifest() {
    let mut w = World::new();
    let c1 = two_builds(&mut w);
    let shown = w.release().args(["show", "2"]).success().stdout();
    assert_eq!(shown, w.manifest(2));
    let show = json(&w, &["show", "latest-stable"]);
    assert_eq!(show["version"], 1);
    assert_eq!(show["origin"], "pointer");
    assert_eq!(show["manifest"]["GIT_COMMIT"], c1.as_str());
    let show = json(&w, &["show", "1"]);
    assert_eq!(show["origin"], "manifest");
    assert_eq!(show["manifest"]["VERSION"], "1");
    assert_eq!(json(&w, &["show", "^2"])["version"], 2);
    w.release()
        .args(["show", "9"])
        .stderr_contains("build 9 of web does not exist")
        .code(2);
}

/// Semantic version references: a bare X.Y.Z is exactly that version (1.2.3 is not 1.2.30),
/// an operator matches by semver rules, and the highest build number among the matches wins.
#[test]
fn semver_references_pick_the_highest_matching_build() {
    let mut w = World::new();
    for (n, semver) in ["1.2.3", "1.4.0", "1.2.3", "2.0.0", "1.2.30", ""]
        .iter()
        .enumerate()
    {
        w.commit(&format!("v{n}"));
        let mut build = w.release().args(["--output", "json", "build", "app"]);
        if !semver.is_empty() {
            build = build.args(["--semver", semver]);
        }
        assert_eq!(build.success().stdout_json()["version"], n as u64 + 1);
    }
    for (reference, build) in [
        ("1.2.3", 3),
        ("1.2.30", 5),
        ("=1.4.0", 2),
        ("~1.2.3", 5),
        ("^1.2", 5),
        (">=1.4", 4),
        ("<1.2.30", 3),
    ] {
        assert_eq!(
            json(&w, &["show", reference])["version"],
            build,
            "`{reference}`"
        );
    }
    for reference in ["2.0.1", "1.2", "^3"] {
        let out = w.release().args(["show", reference]).code(2);
        assert!(
            out.stderr().contains(reference),
            "{reference}: {}",
            out.stderr()
        );
    }
}

#[test]
fn history_lists_promotions_newest_first() {
    let mut w = World::new();
    two_builds(&mut w);
    w.release()
        .env("BUILD_USER_ID", "bob")
        .args(["promote", "2"])
        .success();
    let history = json(&w, &["history"]);
    let events = history["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["kind"], "promote");
    assert_eq!(events[0]["to_version"], 2);
    assert_eq!(events[0]["from_version"], 1);
    assert_eq!(events[0]["user"], "bob");
    assert_eq!(events[1]["to_version"], 1);
    assert_eq!(events[1]["from_version"], Value::Null);
    assert_eq!(events[1]["user"], "alice");
    let one = json(&w, &["history", "--limit", "1"]);
    assert_eq!(one["events"].as_array().unwrap().len(), 1);
    assert_eq!(one["events"][0]["to_version"], 2);

    let text = w.release().args(["history"]).success().stdout();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("TIME"), "{text}");
    assert!(
        lines[1].contains("promote") && lines[1].contains("bob"),
        "{text}"
    );
    assert!(
        lines[2].contains("alice") && lines[2].contains("web-stable"),
        "{text}"
    );
}

#[test]
fn old_builds_show_what_the_listing_knows() {
    let w = World::new();
    seed_legacy(&w);
    w.release().args(["promote", "17", "--no-tag"]).success();
    let list = json(&w, &["list"]);
    assert_eq!(list["latest"], 23);
    assert_eq!(list["stable"], 17);
    let builds = list["builds"].as_array().unwrap();
    assert_eq!(builds.len(), 2);
    assert_eq!(builds[0]["version"], 23);
    assert_eq!(builds[0]["build"], "33");
    assert_eq!(builds[0]["source"], "pointer");
    assert_eq!(builds[0]["latest"], true);
    assert_eq!(builds[1]["version"], 17);
    assert_eq!(builds[1]["stable"], true);
    assert_eq!(builds[1]["archive"], "web-17.tar");
    assert_eq!(
        builds[1]["size"].as_u64(),
        w.ctx.s3.head_size(&w.ctx.bucket, &key("web-17.tar"))
    );
    let show = json(&w, &["show", "17"]);
    assert_eq!(show["origin"], "legacy-archive");
    assert_eq!(show["manifest"]["BUILD"], "12");
}
