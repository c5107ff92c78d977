//! `release status --asg` from the bucket says when an install switched but never reported its
//! end (killed with `kill -9` during its after-switch hook): the install writes
//! `hosts/{host}/{N}.started` right before its switch, and its end removes it.

use std::path::Path;

use serde_json::Value;

use crate::common::Release;
use crate::common::asg::Market;
use crate::common::interrupt::{blocking_hook, kill_during_hook};
use crate::host_reports::{host_keys, install_by_hand};
use crate::push::World;

/// An ssh config under which no host can be reached: status must answer from the bucket.
fn refusing_ssh_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("ssh_config");
    fs_err::write(&path, "Host *\n  ProxyCommand false\n  Port 1\n").unwrap();
    path
}

/// `release status --asg GROUP` (bucket mode) on the controller, JSON or text.
fn status(world: &World, ssh_config: &Path, group: &str, json: bool) -> Release {
    Release::new()
        .current_dir(world.workspace.path())
        .endpoint(&world.asg.endpoint())
        .env("RELEASE_BUCKET", &world.bucket)
        .args([
            "--artifact",
            "web",
            "--output",
            if json { "json" } else { "text" },
        ])
        .args(["status", "--asg", group])
        .arg("--ssh-config")
        .arg(ssh_config)
}

#[test]
fn a_killed_install_is_unfinished_in_the_bucket_until_its_rerun() {
    let world = World::new();
    let group = world.asg.create_group("web-u", 2, Market::OnDemand);
    let (id, other) = (group[0].id.as_str(), group[1].id.as_str());
    let moto = world.asg.endpoint();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let ssh = refusing_ssh_config(w);
    let dir = w.join("web");
    let hook = blocking_hook(w);
    let install = || install_by_hand(&world, &moto, &dir).args(["--host-id", id, "--run", &hook]);
    install_by_hand(&world, &moto, &w.join("other"))
        .args(["1", "--host-id", other])
        .success();
    // On build 2 (not stable: drift), then killed half-way onto the stable build 1.
    install().arg("2").success();
    kill_during_hook(install().arg("1"), w);
    assert_eq!(
        fs_err::read_link(dir.join("current")).unwrap(),
        Path::new("releases/1"),
        "switched"
    );
    assert!(
        host_keys(&world.s3, &world.bucket).contains(&format!("{id}/1.started")),
        "{:?}",
        host_keys(&world.s3, &world.bucket)
    );

    let doc = status(&world, &ssh, "web-u", true).success().stdout_json();
    let row = &doc["hosts"][0];
    assert_eq!(row["instance"], id, "{doc}");
    assert_eq!(row["state"], "unfinished", "{doc}");
    assert_eq!(row["version"], 1, "{doc}");
    assert_eq!(row["result"], Value::Null, "no end, no result: {doc}");
    assert_eq!(
        row["drift"], true,
        "half-way onto stable is not on it: {doc}"
    );
    assert!(
        row["age_seconds"].as_u64().is_some_and(|s| s < 600),
        "{doc}"
    );
    let error = row["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("an install of 1 started ")
            && error.contains("did not report its end")
            && error.contains("run `release install 1` on it again"),
        "{doc}"
    );
    assert_eq!(doc["hosts"][1]["state"], "stable", "{doc}");
    assert_eq!(doc["drifted"], 1, "{doc}");
    let text = status(&world, &ssh, "web-u", false).success().stdout();
    assert!(
        text.contains("UNFINISHED: an install of 1 started "),
        "{text}"
    );
    assert!(text.contains("1 host(s) not on it"), "{text}");

    // The re-run finishes it; its end removed the start marker.
    let done = install().args(["1"]).success().stdout_json();
    assert_eq!(done["status"], "finished", "{done}");
    let doc = status(&world, &ssh, "web-u", true).success().stdout_json();
    assert_eq!(doc["hosts"][0]["state"], "stable", "{doc}");
    assert_eq!(doc["hosts"][0]["result"], "ok", "{doc}");
    assert_eq!(doc["drifted"], 0, "{doc}");
    let keys = host_keys(&world.s3, &world.bucket);
    let mut mine: Vec<&String> = keys.iter().filter(|k| k.starts_with(id)).collect();
    mine.sort();
    assert_eq!(
        mine,
        [&format!("{id}.json"), &format!("{id}/1.ok")],
        "{keys:?}"
    );
}

#[test]
fn no_start_marker_without_a_report_or_in_a_dry_run() {
    let world = World::new();
    let moto = world.asg.endpoint();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("web");
    let hook = blocking_hook(work.path());
    install_by_hand(&world, &moto, &dir)
        .args(["1", "--host-id", "web-dry", "--dry-run"])
        .success();
    // Killed after its switch: nothing of it may be in the bucket, not even a start.
    kill_during_hook(
        install_by_hand(&world, &moto, &dir).args([
            "1",
            "--host-id",
            "web-quiet",
            "--no-report",
            "--run",
            &hook,
        ]),
        work.path(),
    );
    assert_eq!(
        fs_err::read_link(dir.join("current")).unwrap(),
        Path::new("releases/1"),
        "switched"
    );
    assert_eq!(host_keys(&world.s3, &world.bucket), Vec::<String>::new());
}
