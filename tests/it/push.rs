//! `release push`, `status` and `unlock`: the real binary against moto's Auto Scaling Groups
//! and one OpenSSH sshd per instance address (127.0.1.x), each host with its own install dir.

use std::time::{Duration, Instant};

use crate::common::asg::{self, Market};
use crate::common::hosts::{DEBIAN_SECURE_PATH, sudo_calls, sudo_stand_in_with_path};
use crate::common::{Asg, FaultProxy, Hosts, Release, S3, Workspace, unique_bucket};

const ARTIFACT: &str = "web";

/// A private moto with a bucket holding builds 1 and 2 (1 promoted), and a workspace. The
/// binary under test talks to moto through a fault proxy (forwarding everything unless a test
/// sets a rule), the hosts directly. Shared with hardening_push.rs and signing.rs.
pub(crate) struct World {
    pub(crate) asg: Asg,
    pub(crate) proxy: FaultProxy,
    pub(crate) s3: S3,
    pub(crate) bucket: String,
    pub(crate) workspace: Workspace,
}

impl World {
    pub(crate) fn new() -> World {
        let asg = Asg::start();
        let proxy = FaultProxy::new(&asg.endpoint());
        let s3 = S3::new(&asg.endpoint());
        let bucket = unique_bucket("push");
        s3.create_bucket(&bucket);
        let workspace = two_builds_one_stable(&asg.endpoint(), &bucket);
        World {
            asg,
            proxy,
            s3,
            bucket,
            workspace,
        }
    }

    /// sshd on every address, talking to this world's moto.
    pub(crate) fn hosts(&self, addresses: &[&str]) -> Hosts {
        Hosts::start(addresses, &[("AWS_ENDPOINT_URL", &self.asg.endpoint())])
    }

    /// The binary on the controller running `args`, with the hosts' ssh options after a
    /// `push` or `status` subcommand.
    pub(crate) fn cmd(&self, hosts: &Hosts, args: &[&str]) -> Release {
        let release = Release::new()
            .current_dir(self.workspace.path())
            .endpoint(&self.proxy.endpoint())
            .env("RELEASE_BUCKET", &self.bucket)
            .args(["--artifact", ARTIFACT])
            .args(args);
        if args.iter().any(|a| *a == "push" || *a == "status") {
            release.args(hosts.release_args())
        } else {
            release
        }
    }
}

/// A workspace whose builds 1 and 2 of `ARTIFACT` are in `bucket` at `endpoint`, 1 promoted:
/// the starting point of the push worlds (over SSH here, over SSM in push_ssm.rs).
pub(crate) fn two_builds_one_stable(endpoint: &str, bucket: &str) -> Workspace {
    let mut workspace = Workspace::new();
    let release = |ws: &Workspace| {
        Release::new()
            .current_dir(ws.path())
            .endpoint(endpoint)
            .env("RELEASE_BUCKET", bucket)
            .args(["--artifact", ARTIFACT, "-q"])
    };
    for n in 1..=2 {
        workspace.write("app/version.txt", format!("{n}\n"));
        workspace.commit(&format!("build {n}"));
        release(&workspace).args(["build", "app"]).success();
    }
    release(&workspace)
        .args(["promote", "1", "--no-tag"])
        .success();
    workspace
}

/// Where `current` of the host at `address` points, if anywhere.
pub(crate) fn current(hosts: &Hosts, address: &str) -> Option<String> {
    std::fs::read_link(hosts.install_dir(address).join("current"))
        .ok()
        .map(|p| p.display().to_string())
}

/// (host, result) of each line of a push report.
pub(crate) fn results(doc: &serde_json::Value) -> Vec<(String, String)> {
    doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["host"].as_str().unwrap().to_owned(),
                h["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn push_to_two_groups_then_status_shows_no_drift() {
    let world = World::new();
    let on_demand = world.asg.create_group("web-ondemand", 2, Market::OnDemand);
    let spot = world.asg.create_group("web-spot", 2, Market::Spot);
    let mut addresses = asg::addresses(&on_demand);
    addresses.extend(asg::addresses(&spot));
    let hosts = world.hosts(&addresses);

    let doc = world
        .cmd(
            &hosts,
            &[
                "--output",
                "json",
                "push",
                "--asg",
                "web-ondemand",
                "--asg",
                "web-spot",
                "--batch",
                "50%",
            ],
        )
        .success()
        .stdout_json();
    assert_eq!(doc["version"], 1, "latest-stable by default");
    assert_eq!(doc["ok"], 4);
    assert_eq!(doc["batches"], 2);
    let reported: Vec<&str> = doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    assert_eq!(reported, addresses, "group by group, then by instance id");
    for (host, instance) in doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .zip(on_demand.iter().chain(spot.iter()))
    {
        assert_eq!(host["instance"], instance.id.as_str());
        assert_eq!(host["after"], 1);
        assert_eq!(host["before"], serde_json::Value::Null);
        assert_eq!(host["zone"], instance.zone.as_str());
    }
    assert_eq!(doc["hosts"][2]["lifecycle"], "spot");
    assert_eq!(doc["hosts"][0]["lifecycle"], "on-demand");
    for address in &addresses {
        assert_eq!(
            current(&hosts, address).as_deref(),
            Some("releases/1"),
            "{address}"
        );
    }

    let status = world
        .cmd(
            &hosts,
            &[
                "--output",
                "json",
                "status",
                "--asg",
                "web-ondemand",
                "--asg",
                "web-spot",
            ],
        )
        .success()
        .stdout_json();
    assert_eq!(status["stable"], 1);
    assert_eq!(status["drifted"], 0);

    // Build 2 onto one group: before/after are reported, and status flags the drift.
    let doc = world
        .cmd(
            &hosts,
            &["--output", "json", "push", "2", "--asg", "web-spot"],
        )
        .success()
        .stdout_json();
    assert_eq!(doc["hosts"][0]["before"], 1);
    assert_eq!(doc["hosts"][0]["after"], 2);
    let status = world
        .cmd(
            &hosts,
            &["status", "--asg", "web-ondemand", "--asg", "web-spot"],
        )
        .success();
    assert_eq!(
        status.stdout().matches("DRIFT").count(),
        2,
        "{}",
        status.stdout()
    );

    let history = world
        .cmd(&hosts, &["--output", "json", "history"])
        .success()
        .stdout_json();
    let pushes = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "push")
        .count();
    assert_eq!(pushes, 2);
    assert!(
        world.s3.get(&world.bucket, "web/prod/push.lock").is_none(),
        "the lock is released"
    );
}

#[test]
fn hosts_keep_their_order_in_batches_after_a_canary() {
    let world = World::new();
    let addresses = ["127.0.1.21", "127.0.1.22", "127.0.1.23", "127.0.1.24"];
    let hosts = world.hosts(&addresses);
    let list = addresses.join(",");
    let plan = world
        .cmd(
            &hosts,
            &[
                "push",
                "--dry-run",
                "--hosts",
                &list,
                "--canary",
                "1",
                "--batch",
                "2",
            ],
        )
        .success();
    assert!(
        plan.stdout()
            .contains("batch 1: 127.0.1.21\nbatch 2: 127.0.1.22, 127.0.1.23\nbatch 3: 127.0.1.24"),
        "{}",
        plan.stdout()
    );
    for address in addresses {
        assert_eq!(current(&hosts, address), None, "a dry run installs nothing");
        let log = hosts.log(address);
        assert!(
            !log.contains("Connection from"),
            "a dry run connects nowhere, but {address}'s sshd logged:\n{log}"
        );
    }

    let doc = world
        .cmd(
            &hosts,
            &[
                "--output", "json", "push", "--hosts", &list, "--canary", "1", "--batch", "2",
            ],
        )
        .success()
        .stdout_json();
    assert_eq!(doc["batches"], 3);
    assert_eq!(
        results(&doc),
        addresses
            .iter()
            .map(|a| (a.to_string(), "ok".to_string()))
            .collect::<Vec<_>>()
    );
}

#[test]
fn failures_stop_new_batches_once_over_the_limit() {
    let world = World::new();
    let addresses = ["127.0.1.31", "127.0.1.32", "127.0.1.33", "127.0.1.34"];
    let hosts = world.hosts(&addresses);
    hosts.stop("127.0.1.32");
    let list = addresses.join(",");

    let out = world
        .cmd(
            &hosts,
            &["--output", "json", "push", "--hosts", &list, "--batch", "1"],
        )
        .code(4);
    let doc = out.stdout_json();
    assert_eq!(
        results(&doc),
        [
            ("127.0.1.31", "ok"),
            ("127.0.1.32", "failed"),
            ("127.0.1.33", "not-started"),
            ("127.0.1.34", "not-started")
        ]
        .map(|(h, r)| (h.to_string(), r.to_string()))
    );
    assert!(
        doc["hosts"][1]["error"]
            .as_str()
            .unwrap()
            .contains("127.0.1.32"),
        "{doc}"
    );
    assert_eq!(doc["error"]["exit_code"], 4);
    assert!(
        out.stderr().contains("failures exceeded --max-failures 0"),
        "{}",
        out.stderr()
    );

    // A larger threshold carries on past the dead host; a failing command counts too.
    let broken = hosts.install_dir("127.0.1.34");
    std::fs::remove_dir_all(&broken).unwrap();
    std::fs::write(&broken, "a file where the install dir should be").unwrap();
    let doc = world
        .cmd(
            &hosts,
            &[
                "--output",
                "json",
                "push",
                "--hosts",
                &list,
                "--batch",
                "1",
                "--max-failures",
                "2",
            ],
        )
        .code(4)
        .stdout_json();
    assert_eq!(
        results(&doc),
        [
            ("127.0.1.31", "ok"),
            ("127.0.1.32", "failed"),
            ("127.0.1.33", "ok"),
            ("127.0.1.34", "failed")
        ]
        .map(|(h, r)| (h.to_string(), r.to_string()))
    );
    assert!(
        doc["hosts"][3]["error"]
            .as_str()
            .unwrap()
            .contains("exited with"),
        "{doc}"
    );

    // Every host failing is a failure, not a partial.
    world
        .cmd(
            &hosts,
            &[
                "push",
                "--hosts",
                "127.0.1.31,127.0.1.33",
                "--command",
                "exit 3",
                "--max-failures",
                "5",
            ],
        )
        .code(1)
        .stdout_contains("failed");
}

/// A loopback HTTP server on one port of several addresses: `GET` answers 200 when `healthy`
/// says so for the address asked, else 503; every answer is logged.
struct HealthServer {
    port: u16,
    answers: std::sync::Arc<std::sync::Mutex<Vec<(String, u16)>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    addresses: Vec<String>,
}

impl HealthServer {
    fn start(
        addresses: &[&str],
        healthy: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> HealthServer {
        let listeners = (0..20)
            .find_map(|_| {
                let first = std::net::TcpListener::bind((addresses[0], 0)).ok()?;
                let port = first.local_addr().ok()?.port();
                let mut all = vec![first];
                for address in &addresses[1..] {
                    all.push(std::net::TcpListener::bind((*address, port)).ok()?);
                }
                Some((port, all))
            })
            .expect("one free port on every address");
        let (port, listeners) = listeners;
        let healthy = std::sync::Arc::new(healthy);
        let answers: std::sync::Arc<std::sync::Mutex<Vec<(String, u16)>>> =
            std::sync::Arc::default();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        for (listener, address) in listeners.into_iter().zip(addresses) {
            let (healthy, answers, stop) = (
                healthy.clone(),
                std::sync::Arc::clone(&answers),
                stop.clone(),
            );
            let address = (*address).to_owned();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        return;
                    }
                    let Ok(mut stream) = stream else { continue };
                    let status = if healthy(&address) { 200 } else { 503 };
                    answers.lock().unwrap().push((address.clone(), status));
                    answer(&mut stream, status);
                }
            });
        }
        HealthServer {
            port,
            answers,
            stop,
            addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    /// `http://{address}:PORT/health`, a `--health-url` template.
    fn url(&self) -> String {
        format!("http://{{address}}:{}/health", self.port)
    }

    /// The statuses answered to `address`, in order.
    fn answers(&self, address: &str) -> Vec<u16> {
        let answers = self.answers.lock().unwrap();
        answers
            .iter()
            .filter(|(a, _)| a == address)
            .map(|(_, s)| *s)
            .collect()
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for address in &self.addresses {
            // Wakes the blocking accept.
            let _ = std::net::TcpStream::connect((address.as_str(), self.port));
        }
    }
}

/// Reads a request head and answers `status` with `Connection: close`.
fn answer(stream: &mut std::net::TcpStream, status: u16) {
    use std::io::{BufRead, Write};
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
        line.clear();
    }
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
}

/// The URL health check is polled after the switch: a server that answers 200 only once the
/// host's `current` is build 1 passes the push; on build 2 it fails the first host, and with
/// `--batch 1` the second host is not started.
#[test]
fn a_health_check_that_never_passes_fails_the_host() {
    let world = World::new();
    let addresses = ["127.0.1.41", "127.0.1.42"];
    let hosts = std::sync::Arc::new(world.hosts(&addresses));
    let server = {
        let hosts = std::sync::Arc::clone(&hosts);
        HealthServer::start(&addresses, move |address| {
            current(&hosts, address).as_deref() == Some("releases/1")
        })
    };
    let push = |build: &str| {
        world
            .cmd(&hosts, &["--output", "json", "push", build])
            .args(["--hosts", &addresses.join(","), "--batch", "1"])
            .args(["--health-url", &server.url(), "--health-timeout", "2"])
    };
    let doc = push("1").success().stdout_json();
    assert_eq!(doc["ok"], 2, "{doc}");
    for address in addresses {
        assert_eq!(
            server.answers(address),
            [200],
            "{address} was checked once it switched"
        );
    }

    let started = Instant::now();
    let out = push("2").code(1);
    let doc = out.stdout_json();
    assert_eq!(
        results(&doc),
        [("127.0.1.41", "failed"), ("127.0.1.42", "not-started")]
            .map(|(h, r)| (h.to_string(), r.to_string()))
    );
    let error = doc["hosts"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("not healthy after 2s") && error.contains("127.0.1.41"),
        "{error}"
    );
    let first = server.answers(addresses[0]);
    assert!(
        first.len() >= 2 && first[1..].iter().all(|s| *s == 503),
        "{first:?}"
    );
    assert_eq!(
        server.answers(addresses[1]),
        [200],
        "the second host was left alone"
    );
    assert_eq!(current(&hosts, addresses[1]).as_deref(), Some("releases/1"));
    assert!(started.elapsed() < Duration::from_secs(60));

    // A check run on the host itself, that passes.
    world
        .cmd(
            &hosts,
            &[
                "push",
                "--hosts",
                "127.0.1.41",
                "--health-command",
                "test -f \"$RELEASE_INSTALL_DIR/current/app/version.txt\"",
            ],
        )
        .success();
}

#[test]
fn the_lock_keeps_pushes_apart_and_unlock_clears_a_stale_one() {
    let world = World::new();
    let hosts = world.hosts(&["127.0.1.51"]);
    let lock = |expires: &str| {
        format!(
            r#"{{"holder":"alice@jenkins-7","pid":42,"since":"2026-11-23T10:00:00Z","expires":"{expires}","what":"push web 1 to 4 host(s)","token":"t"}}"#
        )
    };
    world.s3.put(
        &world.bucket,
        "web/prod/push.lock",
        lock("2999-01-01T00:00:00Z"),
    );
    world
        .cmd(&hosts, &["push", "--hosts", "127.0.1.51"])
        .code(3)
        .stderr_contains("another push holds")
        .stderr_contains("alice@jenkins-7");
    assert_eq!(current(&hosts, "127.0.1.51"), None, "nothing was pushed");
    world
        .cmd(&hosts, &["unlock"])
        .code(3)
        .stderr_contains("--force");
    // A dry run of unlock --force says what it would remove and removes nothing.
    let held = world.s3.get(&world.bucket, "web/prod/push.lock");
    world
        .cmd(&hosts, &["--dry-run", "unlock", "--force"])
        .success()
        .stdout_contains("alice@jenkins-7");
    assert_eq!(world.s3.get(&world.bucket, "web/prod/push.lock"), held);
    world
        .cmd(&hosts, &["unlock", "--force"])
        .success()
        .stdout_contains("removed the push lock held by alice@jenkins-7");

    world.s3.put(
        &world.bucket,
        "web/prod/push.lock",
        lock("2020-01-01T00:00:00Z"),
    );
    world
        .cmd(&hosts, &["push", "--hosts", "127.0.1.51"])
        .code(3)
        .stderr_contains("EXPIRED");
    let expired = world.s3.get(&world.bucket, "web/prod/push.lock");
    world.cmd(&hosts, &["--dry-run", "unlock"]).success();
    assert_eq!(
        world.s3.get(&world.bucket, "web/prod/push.lock"),
        expired,
        "a dry run removes no lock"
    );
    world.cmd(&hosts, &["unlock"]).success();
    world
        .cmd(&hosts, &["push", "--hosts", "127.0.1.51"])
        .success();
    world
        .cmd(&hosts, &["unlock"])
        .success()
        .stdout_contains("no push lock");
}

/// A health command that waits (at most a minute) until `go` exists: holds a push mid-way
/// until the test says so.
fn wait_for(go: &std::path::Path) -> String {
    format!(
        "i=0; while [ ! -e '{go}' ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; \
         [ -e '{go}' ]",
        go = go.display()
    )
}

/// `--strict-host-keys`: `yes` (the default) refuses an unknown host, `accept-new` trusts it
/// and records its key, a changed key fails under both, and `no` connects anyway.
#[test]
fn strict_host_keys_refuse_unknown_and_changed_keys() {
    let world = World::new();
    let address = "127.0.1.59";
    let hosts = world.hosts(&[address]);
    let known_hosts = hosts.known_hosts_path();
    let genuine = fs_err::read_to_string(&known_hosts).unwrap();
    let push = |build: &str, policy: Option<&str>| {
        let run = world.cmd(
            &hosts,
            &["--output", "json", "push", build, "--hosts", address],
        );
        match policy {
            Some(policy) => run.args(["--strict-host-keys", policy]),
            None => run,
        }
    };
    let error = |out: &crate::common::Output| {
        out.stdout_json()["hosts"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };

    // Unknown host.
    fs_err::write(&known_hosts, "").unwrap();
    for policy in [None, Some("yes")] {
        let out = push("1", policy).code(1);
        assert!(
            error(&out).contains("cannot connect"),
            "{policy:?}: {}",
            error(&out)
        );
        assert_eq!(current(&hosts, address), None, "{policy:?}");
    }
    push("1", Some("accept-new")).success();
    assert_eq!(current(&hosts, address).as_deref(), Some("releases/1"));
    let learned = fs_err::read_to_string(&known_hosts).unwrap();
    fn key_of(line: &str) -> Vec<&str> {
        line.split_whitespace().skip(1).take(2).collect()
    }
    assert_eq!(
        learned.lines().map(key_of).collect::<Vec<_>>(),
        genuine.lines().map(key_of).collect::<Vec<_>>(),
        "accept-new recorded the host's key: {learned}"
    );

    // Changed key: the known_hosts entry names another key for the host.
    let other = tempfile::tempdir().unwrap();
    let other_key = other.path().join("key");
    let keygen = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other_key)
        .status()
        .unwrap();
    assert!(keygen.success());
    let public = fs_err::read_to_string(other_key.with_extension("pub")).unwrap();
    let public: Vec<&str> = public.split_whitespace().take(2).collect();
    let entry = genuine.split_whitespace().next().unwrap();
    fs_err::write(&known_hosts, format!("{entry} {}\n", public.join(" "))).unwrap();
    for policy in ["yes", "accept-new"] {
        let out = push("2", Some(policy)).code(1);
        assert!(
            error(&out).contains("cannot connect"),
            "{policy}: {}",
            error(&out)
        );
        assert_eq!(
            current(&hosts, address).as_deref(),
            Some("releases/1"),
            "{policy}"
        );
    }
    push("2", Some("no")).success();
    assert_eq!(current(&hosts, address).as_deref(), Some("releases/2"));
}

/// Two real pushes of one artifact started at once: one takes the lock and runs; the other
/// stops with exit 3 naming the holder, having touched no host and written no history.
#[test]
fn two_pushes_racing_for_the_lock_one_runs() {
    let world = World::new();
    let addresses = ["127.0.1.56", "127.0.1.57"];
    let hosts = world.hosts(&addresses);
    let signal = tempfile::tempdir().unwrap();
    let go = signal.path().join("go");
    let push = |build: &str| {
        world
            .cmd(&hosts, &["--output", "json", "push", build])
            .args(["--hosts", &addresses.join(","), "--batch", "100%"])
            .args(["--health-command", &wait_for(&go), "--health-timeout", "90"])
            .spawn()
    };
    let mut runs = [push("1"), push("2")];
    let started = Instant::now();
    while runs.iter_mut().all(|r| r.is_running()) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "neither push stopped"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    fs_err::write(&go, "").unwrap();
    let outs = runs.map(|r| r.wait(Duration::from_secs(90)));
    let codes: Vec<Option<i32>> = outs.iter().map(|o| o.status().code()).collect();
    let (winner, loser) = match codes[..] {
        [Some(0), Some(3)] => (&outs[0], &outs[1]),
        [Some(3), Some(0)] => (&outs[1], &outs[0]),
        _ => panic!(
            "one push must win, one lose with 3: {codes:?}\n{}\n{}",
            outs[0].stderr(),
            outs[1].stderr()
        ),
    };
    assert!(
        loser.stderr().contains("another push holds"),
        "{}",
        loser.stderr()
    );
    let version = winner.stdout_json()["version"].as_u64().unwrap();
    for address in addresses {
        assert_eq!(
            current(&hosts, address),
            Some(format!("releases/{version}")),
            "only the winner's build is on {address}"
        );
    }
    let history = world
        .cmd(&hosts, &["--output", "json", "history"])
        .success()
        .stdout_json();
    let pushes = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "push")
        .count();
    assert_eq!(pushes, 1, "the loser wrote no history");
    assert!(world.s3.get(&world.bucket, "web/prod/push.lock").is_none());
}

/// Groups are re-read before each batch and swept at the end: while the first host's health
/// check waits (for the test's signal, once that host switched), one instance joins and one
/// becomes Unhealthy; the one that left is reported `left`, the one that joined is swept in.
#[test]
fn an_instance_that_joins_mid_push_is_swept_in() {
    let world = World::new();
    let first = world.asg.create_group("web-grow", 3, Market::OnDemand);
    let hosts = world.hosts(&asg::addresses(&first));
    let signal = tempfile::tempdir().unwrap();
    let go = signal.path().join("go");
    let wait_for_go = wait_for(&go);
    let running = world
        .cmd(
            &hosts,
            &[
                "--output", "json", "push", "--asg", "web-grow", "--batch", "1",
            ],
        )
        .args(["--health-command", &wait_for_go, "--health-timeout", "90"])
        .spawn();
    let started = Instant::now();
    while current(&hosts, &first[0].private_ip).is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the first host never switched"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let grown = world.asg.set_desired("web-grow", 4);
    let joined = grown
        .iter()
        .find(|i| !first.iter().any(|f| f.id == i.id))
        .expect("a new instance");
    hosts.add(&joined.private_ip);
    world.asg.set_unhealthy(&first[2].id);
    fs_err::write(&go, "").unwrap();
    let out = running.wait(Duration::from_secs(120));
    // The host that left is not on the build: the push says so as partial.
    assert_eq!(out.status().code(), Some(4), "{}", out.stderr());
    assert!(
        out.stderr()
            .contains("1 instance(s) joined during the push"),
        "the sweep says so: {}",
        out.stderr()
    );
    let doc = out.stdout_json();
    assert_eq!(
        results(&doc),
        [
            (first[0].private_ip.as_str(), "ok"),
            (first[1].private_ip.as_str(), "ok"),
            (first[2].private_ip.as_str(), "left"),
            (joined.private_ip.as_str(), "ok"),
        ]
        .map(|(h, r)| (h.to_string(), r.to_string())),
        "{doc}"
    );
    assert_eq!(
        current(&hosts, &joined.private_ip).as_deref(),
        Some("releases/1")
    );
    assert_eq!(
        current(&hosts, &first[2].private_ip),
        None,
        "the one that left"
    );
}

#[test]
fn unhealthy_and_standby_instances_are_skipped_and_said() {
    let world = World::new();
    let group = world.asg.create_group("web-mixed", 3, Market::OnDemand);
    world.asg.set_unhealthy(&group[0].id);
    world.asg.enter_standby(&group[1].id);
    let now = world.asg.instances("web-mixed");
    let hosts = world.hosts(&asg::addresses(&now));
    let out = world
        .cmd(&hosts, &["--output", "json", "push", "--asg", "web-mixed"])
        .success();
    assert!(
        out.stderr()
            .contains(&format!("skipping {} in web-mixed: Unhealthy", group[0].id)),
        "{}",
        out.stderr()
    );
    assert!(
        out.stderr()
            .contains(&format!("skipping {} in web-mixed: Standby", group[1].id)),
        "{}",
        out.stderr()
    );
    let doc = out.stdout_json();
    assert_eq!(doc["ok"], now.len() - 2);
    assert_eq!(doc["skipped"].as_array().unwrap().len(), 2);
}

#[test]
fn bad_targets_are_usage_errors() {
    let world = World::new();
    let hosts = world.hosts(&["127.0.1.61"]);
    world
        .cmd(&hosts, &["push", "--asg", "no-such-group"])
        .code(2)
        .stderr_contains("`no-such-group` does not exist");
    world
        .cmd(&hosts, &["push"])
        .code(2)
        .stderr_contains("no targets");
    world
        .cmd(&hosts, &["push", "--hosts", "127.0.1.61", "--batch", "0"])
        .code(2)
        .stderr_contains("invalid --batch");
    world
        .cmd(
            &hosts,
            &[
                "push",
                "--hosts",
                "127.0.1.61",
                "--command",
                "deploy {nope}",
            ],
        )
        .code(2)
        .stderr_contains("unknown placeholder `{nope}`");
    world
        .cmd(&hosts, &["push", "99", "--hosts", "127.0.1.61"])
        .code(2)
        .stderr_contains("build 99");
    assert_eq!(current(&hosts, "127.0.1.61"), None);
}

/// Values from outside (a group name, template placeholders, `--dir`, `--remote-binary`) reach
/// no shell unquoted.
#[test]
fn hostile_values_do_not_execute() {
    let world = World::new();
    let marker = tempfile::tempdir().unwrap();
    let pwned = marker.path().join("pwned");
    let name = format!("web$(touch {})", pwned.display());
    let group = world.asg.create_group(&name, 1, Market::OnDemand);
    let hosts = world.hosts(&asg::addresses(&group));
    let out_file = marker.path().join("out.txt");
    world
        .cmd(&hosts, &["push", "--asg", &name])
        .args([
            "--command",
            &format!(
                "printf '%s|' {{artifact}} {{version}} {{address}} {{instance}} > {}",
                out_file.display()
            ),
        ])
        .success();
    assert_eq!(
        std::fs::read_to_string(&out_file).unwrap(),
        format!("web|1|{}|{}|", group[0].private_ip, group[0].id)
    );
    assert!(!pwned.exists(), "a group name was executed");

    // `--dir` and `--remote-binary` do reach the remote command line, through sudo: a space, a
    // quote and a command substitution arrive as they were, and nothing runs.
    let dir = marker
        .path()
        .join(format!("it's a $(touch {}) dir", pwned.display()));
    let bin_dir = marker.path().join("bin dir");
    std::fs::create_dir(&bin_dir).unwrap();
    let binary = bin_dir.join("it's release");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_release"), &binary).unwrap();
    let stand_in = sudo_stand_in_with_path(DEBIAN_SECURE_PATH);
    let path = format!("{}:/usr/bin:/bin", stand_in.path().display());
    let address = group[0].private_ip.as_str();
    let sudo_hosts = Hosts::start(
        &[address],
        &[("AWS_ENDPOINT_URL", &world.asg.endpoint()), ("PATH", &path)],
    );
    drop(hosts);
    let doc = world
        .cmd(
            &sudo_hosts,
            &["--output", "json", "push", "--hosts", address],
        )
        .args(["--sudo", "--dir"])
        .arg(&dir)
        .arg("--remote-binary")
        .arg(&binary)
        .success()
        .stdout_json();
    assert_eq!(doc["ok"], 1, "{doc}");
    assert_eq!(
        std::fs::read_link(dir.join("current")).unwrap(),
        std::path::Path::new("releases/1"),
        "installed in exactly that directory"
    );
    assert_eq!(
        current(&sudo_hosts, address),
        None,
        "not in the host's default"
    );
    let calls = sudo_calls(&sudo_hosts.home_dir(address));
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0][1], binary.display().to_string());
    assert_eq!(
        calls[0][calls[0].len() - 2..],
        ["--dir".to_owned(), dir.display().to_string()]
    );
    assert!(!pwned.exists(), "--dir was executed");
    let mut entries: Vec<String> = std::fs::read_dir(marker.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    // The directory's name holds the marker's absolute path: its first component is the top.
    let install = dir
        .strip_prefix(marker.path())
        .unwrap()
        .components()
        .next()
        .unwrap();
    let install = install.as_os_str().to_string_lossy().into_owned();
    assert_eq!(
        entries,
        ["bin dir".to_owned(), install, "out.txt".to_owned()]
    );
}

/// Ctrl-C / SIGTERM: the running host finishes, no new host starts, the lock is released and
/// the report says which hosts are where.
#[test]
fn a_signal_stops_new_hosts_and_releases_the_lock() {
    let world = World::new();
    let addresses = ["127.0.1.71", "127.0.1.72", "127.0.1.73"];
    let hosts = world.hosts(&addresses);
    let logs = tempfile::tempdir().unwrap();
    let log_dir = logs.path().display().to_string();
    let go = logs.path().join("go");
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
            ],
        )
        .args(["--health-command", &wait_for(&go), "--log-dir", &log_dir])
        .spawn();
    let start = Instant::now();
    while current(&hosts, addresses[0]).is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the first host was never updated"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The first host's health check is still waiting: the signal lands mid-host.
    running.signal("TERM");
    fs_err::write(&go, "").unwrap();
    let out = running.wait(Duration::from_secs(60));
    assert_eq!(out.status().code(), Some(4), "{}", out.stderr());
    let doc = out.stdout_json();
    assert_eq!(doc["interrupted"], true);
    assert_eq!(
        results(&doc),
        [
            ("127.0.1.71", "ok"),
            ("127.0.1.72", "not-started"),
            ("127.0.1.73", "not-started")
        ]
        .map(|(h, r)| (h.to_string(), r.to_string()))
    );
    assert_eq!(current(&hosts, addresses[1]), None);
    assert!(
        world.s3.get(&world.bucket, "web/prod/push.lock").is_none(),
        "the lock is released"
    );
    let log = std::fs::read_to_string(logs.path().join("127.0.1.71.log")).unwrap();
    assert!(
        log.contains("\"version\":1"),
        "the host's output is kept: {log}"
    );
}

/// `--sudo` and `--remote-binary`, as the Jenkins push job runs them (SUDO is on by default).
/// The hosts' PATH has the sudo stand-in, which logs its words and runs them with sudo's reset
/// environment, or refuses as sudo does without a password rule; `release` is on neither the
/// login's PATH nor sudo's secure_path: only `--remote-binary` finds it.
#[test]
fn sudo_and_remote_binary_reach_the_hosts_as_words() {
    let world = World::new();
    let addresses = ["127.0.1.81", "127.0.1.82"];
    let stand_in = sudo_stand_in_with_path(DEBIAN_SECURE_PATH);
    let path = format!("{}:/usr/bin:/bin", stand_in.path().display());
    let hosts = Hosts::start(
        &addresses,
        &[("AWS_ENDPOINT_URL", &world.asg.endpoint()), ("PATH", &path)],
    );
    std::fs::write(hosts.home_dir(addresses[1]).join("no-sudo-rule"), "").unwrap();
    let binary = env!("CARGO_BIN_EXE_release");

    let out = world
        .cmd(
            &hosts,
            &[
                "--output",
                "json",
                "push",
                "--hosts",
                &addresses.join(","),
                "--batch",
                "100%",
                "--max-failures",
                "1",
                "--sudo",
                "--remote-binary",
                binary,
            ],
        )
        .code(4);
    let doc = out.stdout_json();
    assert_eq!(
        results(&doc),
        [("127.0.1.81", "ok"), ("127.0.1.82", "failed")]
            .map(|(h, r)| (h.to_string(), r.to_string()))
    );
    assert_eq!(current(&hosts, addresses[0]).as_deref(), Some("releases/1"));
    assert_eq!(current(&hosts, addresses[1]), None);
    let calls = sudo_calls(&hosts.home_dir(addresses[0]));
    let expected = [
        "-n",
        binary,
        "install",
        "1",
        "--artifact",
        ARTIFACT,
        "--bucket",
        &world.bucket,
        "--stage",
        "prod",
        "--started-by",
        "ssh",
        "--push-id",
        doc["push_id"].as_str().unwrap(),
        "--output",
        "json",
    ];
    assert_eq!(calls, [expected], "one call, these words");
    let error = doc["hosts"][1]["error"].as_str().unwrap();
    assert!(error.contains("sudo: a password is required"), "{error}");
    assert!(
        error.contains("sudo -n"),
        "the error names the command: {error}"
    );
}
