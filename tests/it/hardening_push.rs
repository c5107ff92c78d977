//! Issue 10, push, status and unlock: an AWS error mid-push keeps the report, host names that
//! ssh would read as options are refused, and the push lock is removed and renewed only by
//! compare-and-swap. The real binary against moto (behind the fault proxy) and one sshd per
//! host, as in push.rs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::asg::{self, Market};
use crate::common::proxy::{self, RequestInfo};
use crate::common::{Action, Hosts, Release, S3};
use crate::push::{World, current, results};

const ARTIFACT: &str = "web";
const LOCK: &str = "web/prod/push.lock";
/// The test-only lifetime of the push lock (src/env_vars.rs).
const TTL_VARIABLE: &str = "RELEASE_TEST_LOCK_TTL_SECONDS";

impl World {
    fn lock(&self) -> Option<serde_json::Value> {
        let body = self.s3.get(&self.bucket, LOCK)?;
        Some(serde_json::from_slice(&body).expect("the push lock is JSON"))
    }

    /// The hosts' results of every push in the history, newest first.
    fn pushes(&self, hosts: &Hosts) -> Vec<serde_json::Value> {
        let history = self
            .cmd(hosts, &["--output", "json", "history"])
            .success()
            .stdout_json();
        history["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "push")
            .cloned()
            .collect()
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(h, r)| (h.to_string(), r.to_string()))
        .collect()
}

fn is_autoscaling(request: &RequestInfo) -> bool {
    proxy::signed_service(request) == Some("autoscaling")
}

fn throttled() -> Action {
    proxy::query_error(400, "Throttling", "Rate exceeded")
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn timestamp(value: &serde_json::Value) -> jiff::Timestamp {
    value
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("not a timestamp: {value}"))
}

/// Item 13: DescribeAutoScalingGroups throttled (every attempt, the SDK's retries included)
/// after batch 1: the push stops, batch 1's host is named ok, the rest not started with the
/// reason, the history is written, the lock released, exit 4. The same for the final sweep.
#[test]
fn an_aws_error_mid_push_stops_it_and_keeps_the_report() {
    let world = World::new();
    let group = world.asg.create_group("web-throttled", 3, Market::OnDemand);
    let addresses = asg::addresses(&group);
    let hosts = world.hosts(&addresses);
    // 1: resolving the targets, 2: re-reading before batch 1, then every later one fails.
    world
        .proxy
        .set_rule(proxy::after_n(2, is_autoscaling, throttled()));
    let out = world
        .cmd(
            &hosts,
            &[
                "--output",
                "json",
                "push",
                "--asg",
                "web-throttled",
                "--batch",
                "1",
            ],
        )
        .code(4);
    let doc = out.stdout_json();
    assert_eq!(
        results(&doc),
        pairs(&[
            (addresses[0], "ok"),
            (addresses[1], "not-started"),
            (addresses[2], "not-started")
        ]),
        "{}",
        out.stderr()
    );
    assert_eq!(doc["hosts"][0]["after"], 1);
    assert_eq!(current(&hosts, addresses[0]).as_deref(), Some("releases/1"));
    assert_eq!(current(&hosts, addresses[1]), None);
    let stopped = doc["stopped"].as_str().unwrap();
    assert!(
        stopped.contains("before batch 2") && stopped.contains("DescribeAutoScalingGroups"),
        "{stopped}"
    );
    assert!(
        doc["hosts"][1]["error"]
            .as_str()
            .unwrap()
            .contains("Throttling"),
        "the reason is on the hosts not started: {doc}"
    );
    assert!(out.stderr().contains("stopped: "), "{}", out.stderr());
    assert!(world.lock().is_none(), "the lock is released");
    let pushes = world.pushes(&hosts);
    assert_eq!(pushes.len(), 1, "one history record: {pushes:?}");
    assert_eq!(pushes[0]["hosts"][0]["result"], "ok");
    assert_eq!(pushes[0]["hosts"][2]["result"], "not-started");

    // The final sweep: every host is updated, but instances that joined meanwhile may not be.
    world
        .proxy
        .set_rule(proxy::after_n(2, is_autoscaling, throttled()));
    let out = world
        .cmd(
            &hosts,
            &[
                "--output",
                "json",
                "push",
                "2",
                "--asg",
                "web-throttled",
                "--batch",
                "100%",
            ],
        )
        .code(4);
    let doc = out.stdout_json();
    assert_eq!(doc["ok"], 3, "{doc}");
    assert!(
        doc["stopped"].as_str().unwrap().contains("final sweep"),
        "{doc}"
    );
    assert!(world.lock().is_none(), "the lock is released");
    world.proxy.clear_rule();
    assert_eq!(world.pushes(&hosts).len(), 2);
}

/// Item 15: a host that ssh would read as an option is refused before anything happens, from
/// `--hosts`, from release.toml, and for `status`.
#[test]
fn hosts_that_look_like_ssh_options_are_refused() {
    let world = World::new();
    let hosts = world.hosts(&["127.0.1.91"]);
    let marker = tempfile::tempdir().unwrap();
    let pwned = marker.path().join("pwned");
    let proxy_command = format!("-oProxyCommand=touch {}", pwned.display());

    world
        .cmd(&hosts, &["push", "--hosts=-V"])
        .code(2)
        .stderr_contains("invalid host `-V` in --hosts");
    world
        .cmd(
            &hosts,
            &["push", &format!("--hosts=127.0.1.91,{proxy_command}")],
        )
        .code(2)
        .stderr_contains("starts with `-`");
    world
        .cmd(&hosts, &["status", "--hosts=-V"])
        .code(2)
        .stderr_contains("`-V`");
    let config = marker.path().join("release.toml");
    std::fs::write(
        &config,
        format!("[push]\nhosts = [\"127.0.1.91\", \"{proxy_command}\"]\n"),
    )
    .unwrap();
    let config = config.display().to_string();
    world
        .cmd(&hosts, &["--config", &config, "push"])
        .code(2)
        .stderr_contains("in `hosts` in release.toml");
    world
        .cmd(&hosts, &["push", "--hosts=127.0.1.91,web 2"])
        .code(2)
        .stderr_contains("contains ' '");

    assert!(!pwned.exists(), "ssh ran the ProxyCommand");
    assert_eq!(current(&hosts, "127.0.1.91"), None, "no host was touched");
    assert!(world.lock().is_none(), "no lock was taken");
    assert!(world.pushes(&hosts).is_empty(), "no history was written");
}

/// Item 16: an empty or garbled push.lock blocks every push; `unlock` names it and refuses
/// without `--force`, and `--force` removes it.
#[test]
fn a_damaged_lock_is_removed_by_unlock_force() {
    let world = World::new();
    let hosts = world.hosts(&["127.0.1.92"]);
    for damaged in ["", "{\"holder\": \"alice@jen"] {
        world.s3.put(&world.bucket, LOCK, damaged);
        world
            .cmd(&hosts, &["push", "--hosts", "127.0.1.92"])
            .code(3)
            .stderr_contains("damaged");
        world
            .cmd(&hosts, &["unlock"])
            .code(3)
            .stderr_contains("push.lock")
            .stderr_contains("--force");
        assert!(world.s3.get(&world.bucket, LOCK).is_some(), "kept");
        world
            .cmd(&hosts, &["unlock", "--force"])
            .success()
            .stdout_contains("removed the damaged push lock");
        assert!(world.s3.get(&world.bucket, LOCK).is_none(), "removed");
    }
    world
        .cmd(&hosts, &["push", "--hosts", "127.0.1.92"])
        .success();
}

/// Item 16, the `file://` store: the same for a damaged lock in a directory.
#[test]
fn a_damaged_lock_in_a_directory_store_is_removed_by_unlock_force() {
    let store = tempfile::tempdir().unwrap();
    let lock = store.path().join(LOCK);
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    std::fs::write(&lock, "").unwrap();
    let unlock = |force: bool| {
        Release::new()
            .args(["--artifact", ARTIFACT, "--bucket"])
            .arg(format!("file://{}", store.path().display()))
            .arg("unlock")
            .args(force.then_some("--force"))
    };
    unlock(false)
        .code(3)
        .stderr_contains("is damaged (it is empty)");
    assert!(lock.exists());
    unlock(true)
        .success()
        .stdout_contains("removed the damaged push lock");
    assert!(!lock.exists());
}

/// Item 16: `unlock` removes only the lock it read. The proxy replaces the lock (another push
/// took it) just before unlock's DELETE reaches moto: the new lock stays, and unlock says so.
#[test]
fn unlock_leaves_a_lock_that_changed_after_it_was_read() {
    let world = World::new();
    let hosts = world.hosts(&["127.0.1.93"]);
    let lock = |holder: &str, expires: &str| {
        format!(
            r#"{{"holder":"{holder}","pid":42,"since":"2026-11-23T10:00:00Z","expires":"{expires}","what":"push web 1 to 1 host(s)","token":"{holder}"}}"#
        )
    };
    let newer = lock("bob@new", "2999-01-01T00:00:00Z");
    // Expired, so that `unlock` without --force removes it too.
    let older = lock("alice@old", "2020-01-01T00:00:00Z");
    for args in [&["unlock"][..], &["unlock", "--force"][..]] {
        world.s3.put(&world.bucket, LOCK, older.clone());
        swap_on_delete(&world, &newer);
        let out = world
            .cmd(&hosts, args)
            .code(3)
            .stderr_contains("changed while it was being removed");
        assert_eq!(
            world.s3.get(&world.bucket, LOCK).as_deref(),
            Some(newer.as_bytes()),
            "{args:?} removed the newer lock: {}",
            out.stderr()
        );
    }
    world.proxy.clear_rule();
    world
        .cmd(&hosts, &["unlock", "--force"])
        .success()
        .stdout_contains("bob@new");
    assert!(world.s3.get(&world.bucket, LOCK).is_none());
}

/// Makes the proxy write `body` over the lock (straight to moto) the first time a DELETE of
/// the lock passes, just before forwarding that DELETE.
fn swap_on_delete(world: &World, body: &str) {
    let swapper = S3::new(&world.asg.endpoint());
    let swapped = AtomicBool::new(false);
    let (bucket, body) = (world.bucket.clone(), body.to_owned());
    world.proxy.set_rule(move |request: &RequestInfo| {
        if request.method == "DELETE"
            && request.path().ends_with(LOCK)
            && !swapped.swap(true, Ordering::SeqCst)
        {
            swapper.put(&bucket, LOCK, body.clone());
        }
        Action::Forward
    });
}

/// Item 16: a push that outlives the lock's lifetime (3 s here) renews it: mid-push the lock's
/// expiry has moved past the first one, `unlock` sees it unexpired, a second push is refused.
#[test]
fn a_push_longer_than_the_lock_lifetime_keeps_its_lock() {
    let world = World::new();
    let addresses = ["127.0.1.94", "127.0.1.95", "127.0.1.96"];
    let hosts = world.hosts(&addresses);
    let running = world
        .cmd(
            &hosts,
            &[
                "--output",
                "json",
                "push",
                "--hosts",
                &addresses.join(","),
                "--batch",
                "1",
                "--health-command",
                "sleep 4",
            ],
        )
        .env(TTL_VARIABLE, "3")
        .spawn();
    let mut first = None;
    wait_until("the lock", Duration::from_secs(60), || {
        first = world.lock();
        first.is_some()
    });
    let first = first.unwrap();
    let first_expiry = timestamp(&first["expires"]);
    let wait = first_expiry.duration_since(jiff::Timestamp::now());
    assert!(
        wait < jiff::SignedDuration::from_secs(10),
        "the lock expires {first_expiry}: {TTL_VARIABLE} was not honoured"
    );
    // Past the first expiry, with the push still on its second or third host.
    std::thread::sleep(Duration::from_millis(wait.as_millis().max(0) as u64 + 1500));
    let now = world.lock().expect("the push still holds its lock");
    assert_eq!(now["token"], first["token"], "the same push's lock");
    assert!(
        timestamp(&now["expires"]) > jiff::Timestamp::now(),
        "renewed: {now}"
    );
    world
        .cmd(&hosts, &["unlock"])
        .code(3)
        .stderr_contains("may still be running");
    world
        .cmd(&hosts, &["push", "--hosts", addresses[0]])
        .code(3)
        .stderr_contains("another push holds");
    assert!(
        current(&hosts, addresses[2]).is_none(),
        "the push was still running when checked"
    );

    let out = running.wait(Duration::from_secs(120));
    assert!(out.status().success(), "{}", out.stderr());
    assert_eq!(out.stdout_json()["ok"], 3);
    assert!(world.lock().is_none(), "released at the end");
}

/// Item 16: when the renewal finds the lock taken by someone else, no new batch starts, the
/// report says why (exit 4), and the other holder's lock is left alone.
#[test]
fn a_push_whose_lock_was_taken_starts_no_new_batch() {
    let world = World::new();
    let addresses = ["127.0.1.97", "127.0.1.98", "127.0.1.99"];
    let hosts = world.hosts(&addresses);
    let running = world
        .cmd(
            &hosts,
            &[
                "--output",
                "json",
                "push",
                "--hosts",
                &addresses.join(","),
                "--batch",
                "1",
                "--health-command",
                "sleep 3",
            ],
        )
        .env(TTL_VARIABLE, "3")
        .spawn();
    wait_until("the first host's install", Duration::from_secs(60), || {
        current(&hosts, addresses[0]).is_some()
    });
    let theirs = r#"{"holder":"bob@elsewhere","pid":7,"since":"2026-12-01T00:00:00Z","expires":"2999-01-01T00:00:00Z","what":"push web 2 to 9 host(s)","token":"bob"}"#;
    world.s3.put(&world.bucket, LOCK, theirs);

    let out = running.wait(Duration::from_secs(120));
    assert_eq!(out.status().code(), Some(4), "{}", out.stderr());
    let doc = out.stdout_json();
    assert_eq!(
        results(&doc),
        pairs(&[
            (addresses[0], "ok"),
            (addresses[1], "not-started"),
            (addresses[2], "not-started")
        ])
    );
    let stopped = doc["stopped"].as_str().unwrap();
    assert!(
        stopped.contains("was lost") && stopped.contains("bob@elsewhere"),
        "{stopped}"
    );
    assert_eq!(current(&hosts, addresses[1]), None);
    assert_eq!(
        world.s3.get(&world.bucket, LOCK).as_deref(),
        Some(theirs.as_bytes()),
        "the other push's lock is left alone"
    );
}
