//! `release status --asg` from the bucket (issue 12): group membership joined with one LIST of
//! the host reports' markers, with an ssh config that refuses every host; the states; the
//! removal of the reports of terminated instances; and how many requests it makes.

use std::path::PathBuf;

use serde_json::Value;

use crate::common::asg::{self, Market};
use crate::common::proxy::signed_service;
use crate::common::{Release, S3};
use crate::host_reports::{host_keys, install_by_hand};
use crate::push::World;

/// An ssh config under which no host can be reached: any SSH attempt fails.
fn refusing_ssh_config() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ssh_config");
    std::fs::write(&path, "Host *\n  ProxyCommand false\n  Port 1\n").unwrap();
    (dir, path)
}

/// `release --output json status ARGS` on the controller, through the fault proxy, with the
/// refusing ssh config.
fn status(world: &World, ssh_config: &std::path::Path, args: &[&str]) -> Release {
    Release::new()
        .current_dir(world.workspace.path())
        .endpoint(&world.proxy.endpoint())
        .env("RELEASE_BUCKET", &world.bucket)
        .args(["--artifact", "web", "--output", "json", "status"])
        .arg("--ssh-config")
        .arg(ssh_config)
        .args(args)
}

/// (instance, state) of each row.
fn states(doc: &Value) -> Vec<(String, String)> {
    doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["instance"].as_str().unwrap().to_owned(),
                h["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Writes a marker as an install would (a test's S3 PUT).
fn put_marker(s3: &S3, bucket: &str, host: &str, name: &str) {
    s3.put(bucket, &format!("web/prod/hosts/{host}/{name}"), "");
}

/// The current UTC time, RFC 3339 (as `date` prints it).
fn now_rfc3339() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("run date");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn status_reads_the_reports_of_a_push_without_any_ssh() {
    let world = World::new();
    let a = world.asg.create_group("web-a", 2, Market::OnDemand);
    let b = world.asg.create_group("web-b", 1, Market::Spot);
    let mut addresses = asg::addresses(&a);
    addresses.extend(asg::addresses(&b));
    let hosts = world.hosts(&addresses);
    world
        .cmd(&hosts, &["push", "--asg", "web-a", "--asg", "web-b"])
        .success();

    let (_keep, refusing) = refusing_ssh_config();
    world.proxy.reset();
    let out = status(&world, &refusing, &["--asg", "web-a", "--asg", "web-b"]).success();
    let doc = out.stdout_json();
    assert_eq!(doc["via"], "bucket");
    assert_eq!(doc["stable"], 1);
    assert_eq!(doc["drifted"], 0);
    assert_eq!(doc["removed"], serde_json::json!([]));
    for (row, instance) in doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .zip(a.iter().chain(&b))
    {
        assert_eq!(row["instance"], instance.id.as_str());
        assert_eq!(row["host"], instance.id.as_str());
        assert_eq!(row["state"], "stable", "{row}");
        assert_eq!(row["version"], 1);
        assert_eq!(row["result"], "ok");
        assert_eq!(row["lifecycle_state"], "InService");
        assert_eq!(row["zone"], instance.zone.as_str());
        assert!(
            row["age_seconds"].as_u64().is_some_and(|s| s < 600),
            "{row}"
        );
        assert!(row["reported"].as_str().is_some(), "{row}");
        assert_eq!(row["error"], Value::Null);
    }
    assert_eq!(doc["hosts"][2]["group"], "web-b");

    // A handful of requests, none of them a GET of a host's report.
    let log = world.proxy.log();
    let kinds: Vec<String> = log
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                signed_service(&e.request).unwrap_or("?"),
                e.request.method,
                e.request.path()
            )
        })
        .collect();
    assert!(log.len() <= 5, "{kinds:#?}");
    assert!(
        !kinds
            .iter()
            .any(|k| k.contains("GET") && k.contains("/hosts/")),
        "{kinds:#?}"
    );

    // The text table, then the SSH way still works on demand.
    let text = Release::new()
        .current_dir(world.workspace.path())
        .endpoint(&world.proxy.endpoint())
        .env("RELEASE_BUCKET", &world.bucket)
        .args([
            "--artifact",
            "web",
            "status",
            "--asg",
            "web-a",
            "--asg",
            "web-b",
        ])
        .arg("--ssh-config")
        .arg(&refusing)
        .success();
    let stdout = text.stdout();
    for column in [
        "GROUP",
        "INSTANCE",
        "LIFECYCLE",
        "ZONE",
        "BUILD",
        "RESULT",
        "AGE",
        "STATE",
    ] {
        assert!(stdout.contains(column), "{stdout}");
    }
    assert_eq!(stdout.matches("on stable").count(), 3, "{stdout}");
    let ssh = world
        .cmd(
            &hosts,
            &[
                "--output", "json", "status", "--via", "ssh", "--asg", "web-a",
            ],
        )
        .success()
        .stdout_json();
    assert_eq!(ssh["via"], "ssh");
    assert_eq!(states(&ssh).len(), 2);
    assert!(states(&ssh).iter().all(|(_, s)| s == "stable"), "{ssh}");
    let refused = status(&world, &refusing, &["--via", "ssh", "--asg", "web-a"]).success();
    assert!(
        states(&refused.stdout_json())
            .iter()
            .all(|(_, s)| s == "unreachable"),
        "the refusing config really refuses: {}",
        refused.stdout()
    );
}

#[test]
fn failed_drift_no_report_and_stale() {
    let world = World::new();
    let group = world.asg.create_group("web-s", 4, Market::OnDemand);
    let moto = world.asg.endpoint();
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let id = |i: usize| group[i].id.as_str();
    install_by_hand(&world, &moto, dirs[0].path())
        .args(["1", "--host-id", id(0)])
        .success();
    install_by_hand(&world, &moto, dirs[1].path())
        .args(["2", "--host-id", id(1)])
        .success();
    install_by_hand(&world, &moto, dirs[2].path())
        .args(["1", "--host-id", id(2), "--check", "false"])
        .code(1);
    let (_keep, refusing) = refusing_ssh_config();
    let doc = status(&world, &refusing, &["--asg", "web-s"])
        .success()
        .stdout_json();
    let expected = [
        (id(0), "stable"),
        (id(1), "drift"),
        (id(2), "failed"),
        (id(3), "no-report"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(i, s)| ((*i).to_owned(), (*s).to_owned()))
        .collect();
    assert_eq!(states(&doc), expected, "{doc}");
    assert_eq!(doc["drifted"], 3);
    assert_eq!(doc["hosts"][1]["version"], 2);
    assert_eq!(doc["hosts"][2]["version"], Value::Null, "nothing current");
    assert_eq!(doc["hosts"][2]["result"], "failed");
    assert_eq!(doc["hosts"][3]["result"], Value::Null);
    let text = status(&world, &refusing, &["--asg", "web-s"])
        .args(["--output", "text"])
        .success()
        .stdout();
    for label in ["on stable", "DRIFT", "FAILED", "NO REPORT"] {
        assert!(text.contains(label), "{text}");
    }

    std::thread::sleep(std::time::Duration::from_millis(2100));
    let doc = status(
        &world,
        &refusing,
        &["--asg", "web-s", "--stale-after", "1s"],
    )
    .success()
    .stdout_json();
    let stale: Vec<String> = states(&doc).into_iter().map(|(_, s)| s).collect();
    assert_eq!(stale, ["stale", "stale", "stale", "no-report"], "{doc}");
    status(
        &world,
        &refusing,
        &["--asg", "web-s", "--stale-after", "soon"],
    )
    .code(2);
    status(
        &world,
        &refusing,
        &["--hosts", "127.0.1.9", "--via", "bucket"],
    )
    .code(2);
}

#[test]
fn a_report_without_its_marker_costs_one_get() {
    let world = World::new();
    let group = world.asg.create_group("web-m", 1, Market::OnDemand);
    let id = group[0].id.clone();
    let report = serde_json::json!({
        "schema": 1, "artifact": "web", "stage": "prod", "host": id, "hostname": "h",
        "before": null, "after": 2, "sha256": null, "result": "ok", "step": null,
        "error": null, "started_by": "manual", "push_id": null,
        "time": now_rfc3339(), "release_version": "0.0.0"
    });
    world.s3.put(
        &world.bucket,
        &format!("web/prod/hosts/{id}.json"),
        report.to_string(),
    );
    let (_keep, refusing) = refusing_ssh_config();
    world.proxy.reset();
    let doc = status(&world, &refusing, &["--asg", "web-m"])
        .success()
        .stdout_json();
    assert_eq!(states(&doc), [(id.clone(), "drift".to_owned())], "{doc}");
    assert_eq!(doc["hosts"][0]["version"], 2);
    let gets = world
        .proxy
        .log()
        .iter()
        .filter(|e| e.request.method == "GET" && e.request.path().contains("/hosts/"))
        .count();
    assert_eq!(gets, 1);
}

#[test]
#[allow(clippy::print_stdout)] // the figures, for the report (`--nocapture`)
fn requests_do_not_grow_with_the_fleet() {
    let world = World::new();
    let (_keep, refusing) = refusing_ssh_config();
    let mut counts = Vec::new();
    let mut args: Vec<&str> = Vec::new();
    let mut total = 0;
    for (name, size) in [("web-3", 3), ("web-40", 40)] {
        let group = world.asg.create_group(name, size, Market::OnDemand);
        for instance in &group {
            put_marker(&world.s3, &world.bucket, &instance.id, "1.ok");
        }
        args.extend(["--asg", name]);
        total += size;
        world.proxy.reset();
        let doc = status(&world, &refusing, &args).success().stdout_json();
        assert_eq!(doc["hosts"].as_array().unwrap().len(), total);
        assert!(states(&doc).iter().all(|(_, s)| s == "stable"), "{doc}");
        let log = world.proxy.log();
        let by_kind = |service: &str| {
            log.iter()
                .filter(|e| signed_service(&e.request) == Some(service))
                .count()
        };
        println!(
            "status of {total} instances: {} requests ({} autoscaling, {} s3, {} ec2)",
            log.len(),
            by_kind("autoscaling"),
            by_kind("s3"),
            by_kind("ec2")
        );
        counts.push(log.len());
    }
    assert_eq!(counts[0], counts[1], "{counts:?}");
    assert!(counts[1] <= 5, "{counts:?}");
}

#[test]
fn reports_of_terminated_instances_are_removed_and_the_rest_kept() {
    let world = World::new();
    let group = world.asg.create_group("web-c", 3, Market::OnDemand);
    let moto = world.asg.endpoint();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    for (instance, dir) in group.iter().zip(&dirs) {
        install_by_hand(&world, &moto, dir.path())
            .args(["1", "--host-id", &instance.id])
            .success();
    }
    // One EC2 has never heard of, and one named by hostname (never removed by status).
    put_marker(&world.s3, &world.bucket, "i-0123456789abcdef0", "1.ok");
    world.s3.put(
        &world.bucket,
        "web/prod/hosts/i-0123456789abcdef0.json",
        "{}",
    );
    put_marker(&world.s3, &world.bucket, "old-web-1", "1.ok");
    // A running instance of a group this status does not read: EC2 says it runs, it stays.
    let other = world.asg.create_group("web-other", 1, Market::OnDemand);
    put_marker(&world.s3, &world.bucket, &other[0].id, "1.ok");

    let left = world.asg.set_desired("web-c", 2);
    let left: Vec<&str> = left
        .iter()
        .filter(|i| i.state != "terminated")
        .map(|i| i.id.as_str())
        .collect();
    let gone = group
        .iter()
        .map(|i| i.id.as_str())
        .find(|id| !left.contains(id))
        .expect("one instance was terminated");
    let before = host_keys(&world.s3, &world.bucket);
    assert!(before.contains(&format!("{gone}.json")), "{before:?}");

    let (_keep, refusing) = refusing_ssh_config();
    let doc = status(&world, &refusing, &["--asg", "web-c", "--keep-reports"])
        .success()
        .stdout_json();
    assert_eq!(doc["removed"], serde_json::json!([]));
    assert_eq!(
        host_keys(&world.s3, &world.bucket),
        before,
        "--keep-reports"
    );
    let out = status(&world, &refusing, &["--asg", "web-c", "--dry-run"]).success();
    assert_eq!(out.stdout_json()["removed"], serde_json::json!([]));
    assert!(
        out.stderr()
            .contains("dry run: would remove the reports of 2"),
        "{}",
        out.stderr()
    );
    assert_eq!(host_keys(&world.s3, &world.bucket), before, "--dry-run");

    let out = status(&world, &refusing, &["--asg", "web-c"]).success();
    let doc = out.stdout_json();
    let mut removed: Vec<&str> = doc["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    removed.sort();
    let mut expected = vec![gone, "i-0123456789abcdef0"];
    expected.sort();
    assert_eq!(removed, expected, "{doc}");
    assert!(
        out.stderr()
            .contains("removed the reports of 2 terminated instance(s)"),
        "{}",
        out.stderr()
    );
    let after = host_keys(&world.s3, &world.bucket);
    let mut kept: Vec<String> = left
        .iter()
        .flat_map(|id| [format!("{id}.json"), format!("{id}/1.ok")])
        .collect();
    kept.push("old-web-1/1.ok".into());
    kept.push(format!("{}/1.ok", other[0].id));
    kept.sort();
    assert_eq!(after, kept);
    assert_eq!(states(&doc).len(), 2);
}
