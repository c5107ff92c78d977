//! Host reports (issue 12): every `release install` writes `hosts/{host}.json` and one state
//! marker `hosts/{host}/{build|none}.{ok|failed}`; `push` passes `--started-by`, `--push-id`
//! and `--host-id`. Real installs: over SSH on the push world's hosts, or by hand against its
//! moto (through the fault proxy where a test breaks the writes).

use serde_json::Value;

use crate::common::asg::{self, Market};
use crate::common::proxy::Action;
use crate::common::{Release, S3};
use crate::push::World;

const ARTIFACT: &str = "web";

/// The keys under `web/prod/hosts/`, without that prefix.
pub(crate) fn host_keys(s3: &S3, bucket: &str) -> Vec<String> {
    s3.keys(bucket, "web/prod/hosts/")
        .into_iter()
        .map(|k| k.trim_start_matches("web/prod/hosts/").to_owned())
        .collect()
}

/// The report object of `host`, parsed.
pub(crate) fn report(s3: &S3, bucket: &str, host: &str) -> Value {
    let body = s3
        .get(bucket, &format!("web/prod/hosts/{host}.json"))
        .unwrap_or_else(|| panic!("no report for {host}"));
    serde_json::from_slice(&body).expect("a report is JSON")
}

/// `release install` by hand on this machine, into `dir`, against the world's moto
/// (`endpoint`: moto or the proxy).
pub(crate) fn install_by_hand(world: &World, endpoint: &str, dir: &std::path::Path) -> Release {
    Release::new()
        .endpoint(endpoint)
        .env("RELEASE_BUCKET", &world.bucket)
        .args(["--artifact", ARTIFACT, "--output", "json", "install"])
        .arg("--dir")
        .arg(dir)
}

#[test]
fn a_push_leaves_one_report_and_one_marker_per_host() {
    let world = World::new();
    let instances = world.asg.create_group("web-a", 2, Market::OnDemand);
    let hosts = world.hosts(&asg::addresses(&instances));
    let push = world
        .cmd(&hosts, &["--output", "json", "push", "--asg", "web-a"])
        .success()
        .stdout_json();
    let push_id = push["push_id"].as_str().expect("push_id in push's report");
    let (time, random) = push_id.split_once('-').unwrap();
    assert!(
        time.len() == 16 && time.ends_with('Z') && random.len() == 8,
        "{push_id}"
    );

    let mut expected: Vec<String> = Vec::new();
    for instance in &instances {
        let id = instance.id.as_str();
        let doc = report(&world.s3, &world.bucket, id);
        assert_eq!(doc["schema"], 1);
        assert_eq!(doc["host"], id, "push passes --host-id {id}");
        assert_eq!(doc["artifact"], ARTIFACT);
        assert_eq!(doc["stage"], "prod");
        assert_eq!(doc["before"], Value::Null);
        assert_eq!(doc["after"], 1);
        assert_eq!(doc["result"], "ok");
        assert_eq!(doc["step"], Value::Null);
        assert_eq!(doc["error"], Value::Null);
        assert_eq!(doc["started_by"], "ssh");
        assert_eq!(doc["push_id"], push_id);
        assert_eq!(doc["release_version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(doc["sha256"].as_str().map(str::len), Some(64), "{doc}");
        assert!(doc["hostname"].as_str().is_some_and(|h| !h.is_empty()));
        assert!(doc["time"].as_str().unwrap().ends_with('Z'), "{doc}");
        expected.push(format!("{id}.json"));
        expected.push(format!("{id}/1.ok"));
    }
    expected.sort();
    assert_eq!(host_keys(&world.s3, &world.bucket), expected);

    // The history record names the push too.
    let history = world
        .cmd(&hosts, &["--output", "json", "history"])
        .success()
        .stdout_json();
    let pushes: Vec<&Value> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "push")
        .collect();
    assert_eq!(pushes[0]["push_id"], push_id, "{history}");

    // The next push replaces the marker: one per host, the newest.
    let push = world
        .cmd(&hosts, &["--output", "json", "push", "2", "--asg", "web-a"])
        .success()
        .stdout_json();
    assert_ne!(push["push_id"].as_str(), Some(push_id), "a new id per push");
    let id = instances[0].id.as_str();
    let doc = report(&world.s3, &world.bucket, id);
    assert_eq!(
        (doc["before"].clone(), doc["after"].clone()),
        (1.into(), 2.into())
    );
    let mine: Vec<String> = host_keys(&world.s3, &world.bucket)
        .into_iter()
        .filter(|k| k.starts_with(&format!("{id}/")))
        .collect();
    assert_eq!(mine, [format!("{id}/2.ok")]);
}

#[test]
fn command_templates_get_the_push_id() {
    let world = World::new();
    let instances = world.asg.create_group("web-t", 1, Market::OnDemand);
    let hosts = world.hosts(&asg::addresses(&instances));
    let template = format!(
        "release install 1 --artifact web --bucket {} --stage prod --host-id {{instance}} \
         --push-id {{push_id}} --started-by ssh --output json",
        world.bucket
    );
    let push = world
        .cmd(
            &hosts,
            &[
                "--output",
                "json",
                "push",
                "--asg",
                "web-t",
                "--command",
                &template,
            ],
        )
        .success()
        .stdout_json();
    let doc = report(&world.s3, &world.bucket, &instances[0].id);
    assert_eq!(doc["push_id"], push["push_id"], "{doc}");
}

#[test]
fn a_failed_install_reports_its_step_and_message() {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = world.asg.endpoint();
    install_by_hand(&world, &endpoint, dir.path())
        .args(["1", "--host-id", "i-0123456789abcdef0"])
        .success();
    let out = install_by_hand(&world, &endpoint, dir.path())
        .args(["2", "--host-id", "i-0123456789abcdef0", "--check", "exit 7"])
        .code(1);
    let doc = report(&world.s3, &world.bucket, "i-0123456789abcdef0");
    assert_eq!(doc["result"], "failed", "{doc}");
    assert_eq!(doc["step"], "check", "{doc}");
    assert_eq!(doc["before"], 1);
    assert_eq!(doc["after"], 1, "still on the build before");
    assert_eq!(doc["started_by"], "manual");
    let error = doc["error"].as_str().unwrap();
    assert!(error.contains("not switched"), "{error}");
    assert!(out.stderr().contains("not switched"), "{}", out.stderr());
    assert_eq!(
        host_keys(&world.s3, &world.bucket),
        ["i-0123456789abcdef0.json", "i-0123456789abcdef0/1.failed"]
    );
}

#[test]
fn without_host_id_the_hostname_names_the_report_and_no_report_writes_nothing() {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = world.asg.endpoint();
    // AWS_EC2_METADATA_DISABLED=true (Release's default): IMDS is never asked.
    let doc = install_by_hand(&world, &endpoint, dir.path())
        .args(["1", "--no-report"])
        .success()
        .stdout_json();
    assert_eq!(doc["report"], Value::Null);
    assert!(host_keys(&world.s3, &world.bucket).is_empty());

    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let hostname = hostname.trim();
    let doc = install_by_hand(&world, &endpoint, dir.path())
        .args(["2"])
        .env("RELEASE_STARTED_BY", "boot")
        .success()
        .stdout_json();
    assert_eq!(doc["report"], format!("web/prod/hosts/{hostname}.json"));
    let report = report(&world.s3, &world.bucket, hostname);
    assert_eq!(report["started_by"], "boot");
    assert_eq!(report["after"], 2);
    assert_eq!(report["push_id"], Value::Null);
}

#[test]
fn hostile_host_ids_are_refused_before_anything_is_touched() {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = world.asg.endpoint();
    let long = "a".repeat(200);
    for bad in ["../x", "a/b", "-x", "x y", long.as_str()] {
        let out = install_by_hand(&world, &endpoint, dir.path())
            .arg(format!("--host-id={bad}"))
            .code(2);
        assert!(
            out.stderr().contains("--host-id"),
            "{bad}: {}",
            out.stderr()
        );
        let out = install_by_hand(&world, &endpoint, dir.path())
            .env("RELEASE_PUSH_ID", bad)
            .code(2);
        assert!(
            out.stderr().contains("--push-id"),
            "{bad}: {}",
            out.stderr()
        );
    }
    assert!(host_keys(&world.s3, &world.bucket).is_empty());
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "the install directory was not touched"
    );
}

#[test]
fn a_report_that_cannot_be_written_is_one_warning_and_the_install_stands() {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let proxy = world.proxy.endpoint();
    let report_key = format!("/{}/web/prod/hosts/i-0123abcd.json", world.bucket);
    let denied = report_key.clone();
    world.proxy.set_rule(move |r| {
        if r.method == "PUT" && r.path() == denied {
            Action::error(403, "AccessDenied", "Access Denied")
        } else {
            Action::Forward
        }
    });
    let out = install_by_hand(&world, &proxy, dir.path())
        .args(["1", "--host-id", "i-0123abcd"])
        .success();
    assert_eq!(out.stdout_json()["report"], Value::Null);
    assert_eq!(out.stdout_json()["status"], "installed");
    let stderr = out.stderr();
    let warnings = stderr.lines().filter(|l| l.starts_with("warning:")).count();
    assert_eq!(warnings, 1, "{stderr}");
    assert!(stderr.contains("hosts/i-0123abcd.json"), "{stderr}");
    // The marker still went: status keeps working from the listing.
    assert_eq!(host_keys(&world.s3, &world.bucket), ["i-0123abcd/1.ok"]);

    // Nothing under hosts/ may be written: still exit 0, each failure named.
    let prefix = format!("/{}/web/prod/hosts/", world.bucket);
    world.proxy.set_rule(move |r| {
        if r.method == "PUT" && r.path().starts_with(&prefix) {
            Action::error(403, "AccessDenied", "Access Denied")
        } else {
            Action::Forward
        }
    });
    let out = install_by_hand(&world, &proxy, dir.path())
        .args(["2", "--host-id", "i-0123abcd"])
        .success();
    let stderr = out.stderr();
    assert!(stderr.contains("hosts/i-0123abcd.json"), "{stderr}");
    assert!(stderr.contains("hosts/i-0123abcd/2.ok"), "{stderr}");
    assert_eq!(out.stdout_json()["version"], 2);
}

/// A loopback stand-in for the instance metadata service (IMDSv2): a token for a PUT to
/// `/latest/api/token`, the instance id for a GET with that token; every request line and its
/// token header are logged. Serves `limit` connections, then stops.
fn fake_imds(
    instance_id: &'static str,
    limit: usize,
) -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(limit) {
            let Ok(mut stream) = stream else { return };
            stream
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let mut token = String::new();
            let _ = reader.read_line(&mut request);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("x-aws-ec2-metadata-token")
                {
                    token = value.trim().to_owned();
                }
            }
            let body = if request.starts_with("PUT /latest/api/token") {
                "tok-123"
            } else if request.starts_with("GET /latest/meta-data/instance-id") && token == "tok-123"
            {
                instance_id
            } else {
                ""
            };
            let status = if body.is_empty() {
                "401 Unauthorized"
            } else {
                "200 OK"
            };
            let _ = tx.send(format!("{} token={token}", request.trim()));
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (endpoint, rx)
}

#[test]
fn the_host_id_comes_from_imdsv2_when_it_is_not_disabled() {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let (imds, asked) = fake_imds("i-0fedcba987654321f", 2);
    let doc = install_by_hand(&world, &world.asg.endpoint(), dir.path())
        .arg("1")
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds)
        .success()
        .stdout_json();
    assert_eq!(doc["report"], "web/prod/hosts/i-0fedcba987654321f.json");
    let asked: Vec<String> = asked.try_iter().collect();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(asked[0].starts_with("PUT /latest/api/token"), "{asked:?}");
    assert!(
        asked[1].starts_with("GET /latest/meta-data/instance-id")
            && asked[1].ends_with("token=tok-123"),
        "{asked:?}"
    );
}
