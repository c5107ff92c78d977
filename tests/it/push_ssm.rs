//! `release push --via ssm`: the real binary against the SSM stand-in (moto's server with Run
//! Command made real, tests/it/fixtures/ssm_standin.py), whose instances are directories here:
//! each instance id runs its commands with its own HOME, install dir and PATH (the binary under
//! test first), in its home, and installs from the same moto. No sshd is involved.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::asg::Instance;
use crate::common::hosts::release_bin_dir;
use crate::common::interrupt::wait_for;
use crate::common::ssm::{Agent, Delivery, SsmStandIn, Timing};
use crate::common::{Asg, Market, Release, S3, Workspace, unique_bucket};
use crate::push::{results, two_builds_one_stable};

const ARTIFACT: &str = "web";
/// The binary under test, as the hosts run it (the default, /usr/local/bin/release, is not
/// there in tests).
const BINARY: &str = env!("CARGO_BIN_EXE_release");
/// The stand-in's clocks: quick, with throttling of polls closer than half a second (as the
/// default) so that a controller polling too fast would be seen.
const TIMING: Timing = Timing {
    pending_seconds: 0.2,
    min_poll_interval: 0.5,
    delivery_timeout_seconds: 2.0,
};
/// Longest any push here may take.
const LIMIT: Duration = Duration::from_secs(120);

/// A stand-in serving groups, S3 and SSM, a bucket with builds 1 and 2 (1 promoted), and one
/// directory per instance.
struct World {
    asg: Asg,
    s3: S3,
    bucket: String,
    workspace: Workspace,
    /// `{id}/home`, `{id}/install` per instance; `ran` (what each install ran) at the top.
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let asg = Asg::start_with_ssm();
        asg.ssm().set_timing(TIMING);
        let s3 = S3::new(&asg.endpoint());
        let bucket = unique_bucket("pushssm");
        s3.create_bucket(&bucket);
        let workspace = two_builds_one_stable(&asg.endpoint(), &bucket);
        let dir = tempfile::tempdir().unwrap();
        let world = World {
            asg,
            s3,
            bucket,
            workspace,
            dir,
        };
        world.write_wrapper();
        world
    }

    fn standin(&self) -> &SsmStandIn {
        self.asg.ssm()
    }

    /// A group of `n` instances, each registered with the stand-in (agent Online).
    fn group(&self, name: &str, n: usize) -> Vec<Instance> {
        let instances = self.asg.create_group(name, n, Market::OnDemand);
        for instance in &instances {
            self.register(&instance.id);
        }
        instances
    }

    /// Gives instance `id` its directories and environment, as an instance profile and
    /// /etc/environment would: AWS settings and its install dir (the stand-in adds the agent's
    /// `AWS_SSM_INSTANCE_ID`, as the real agent does).
    fn register(&self, id: &str) {
        self.register_with(id, &[]);
    }

    /// [`World::register`] with `extra` variables (which the wrapper reads: `BIG`, `SLOW`).
    fn register_with(&self, id: &str, extra: &[(&str, &str)]) {
        let home = self.home(id);
        fs_err::create_dir_all(&home).unwrap();
        let text = |p: PathBuf| p.display().to_string();
        let mut env: Vec<(String, String)> = [
            (
                "PATH",
                format!("{}:/usr/bin:/bin", release_bin_dir().display()),
            ),
            ("HOME", text(home.clone())),
            ("LANG", "C.UTF-8".into()),
            ("TZ", "UTC".into()),
            ("RELEASE_INSTALL_DIR", text(self.install_dir(id))),
            ("AWS_ENDPOINT_URL", self.asg.endpoint()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("RAN", text(self.ran_file())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        self.standin().set_instance(id, env, &home);
    }

    fn home(&self, id: &str) -> PathBuf {
        self.dir.path().join(id).join("home")
    }

    fn install_dir(&self, id: &str) -> PathBuf {
        self.dir.path().join(id).join("install")
    }

    /// One line per install started: `{epoch seconds} {instance id}`.
    fn ran_file(&self) -> PathBuf {
        self.dir.path().join("ran")
    }

    /// The instance ids in the order their installs started.
    fn ran(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.ran_file()).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
            .collect()
    }

    /// `release` for the hosts: notes the start, keeps its words one per line in
    /// `$HOME/args`, prints `$BIG` characters (and a newline) if set, sleeps `$SLOW` seconds if
    /// set, then runs the binary under test.
    fn wrapper(&self) -> PathBuf {
        self.dir.path().join("release-wrapper")
    }

    fn write_wrapper(&self) {
        let script = format!(
            "#!/bin/sh\n\
             echo \"$(date +%s.%N) $AWS_SSM_INSTANCE_ID\" >> \"$RAN\"\n\
             for a in \"$@\"; do printf '%s\\n' \"$a\"; done > \"$HOME/args\"\n\
             [ -z \"${{BIG:-}}\" ] || head -c \"$BIG\" /dev/zero | tr '\\0' x\n\
             [ -z \"${{BIG:-}}\" ] || echo\n\
             [ -z \"${{SLOW:-}}\" ] || sleep \"$SLOW\"\n\
             exec {BINARY} \"$@\"\n"
        );
        let path = self.wrapper();
        fs_err::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// The binary on the controller: `push --via ssm` with the wrapper as the hosts' binary.
    fn push(&self, args: &[&str]) -> Release {
        let wrapper = self.wrapper().display().to_string();
        Release::new()
            .current_dir(self.workspace.path())
            .endpoint(&self.asg.endpoint())
            .env("RELEASE_BUCKET", &self.bucket)
            .args(["--artifact", ARTIFACT, "--output", "json", "push"])
            .args(["--via", "ssm", "--remote-binary", &wrapper])
            .args(args)
            .timeout(LIMIT)
    }

    /// `release status ARGS --output json` on the controller: from the bucket, with an ssh
    /// config whose every connection fails, so nothing can come from the hosts.
    fn status(&self, args: &[&str]) -> Value {
        let config = self.dir.path().join("ssh-config-refusing");
        fs_err::write(&config, "Host *\n  ProxyCommand false\n").unwrap();
        Release::new()
            .current_dir(self.workspace.path())
            .endpoint(&self.asg.endpoint())
            .env("RELEASE_BUCKET", &self.bucket)
            .args(["--artifact", ARTIFACT, "--output", "json", "status"])
            .arg("--ssh-config")
            .arg(&config)
            .args(args)
            .timeout(LIMIT)
            .success()
            .stdout_json()
    }

    /// Where `current` of instance `id` points, if anywhere.
    fn current(&self, id: &str) -> Option<String> {
        std::fs::read_link(self.install_dir(id).join("current"))
            .ok()
            .map(|p| p.display().to_string())
    }

    fn count(&self, action: &str) -> usize {
        self.standin().request_count("ssm", action)
    }
}

fn ids(instances: &[Instance]) -> Vec<String> {
    instances.iter().map(|i| i.id.clone()).collect()
}

fn line<'a>(doc: &'a Value, id: &str) -> &'a Value {
    doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == id)
        .unwrap_or_else(|| panic!("no line for {id} in {doc}"))
}

/// Seconds between consecutive ListCommandInvocations (whatever the command).
fn poll_gaps(standin: &SsmStandIn) -> Vec<f64> {
    let times: Vec<f64> = standin
        .requests_timed()
        .into_iter()
        .filter(|(_, s, a)| s == "ssm" && a == "ListCommandInvocations")
        .map(|(t, _, _)| t)
        .collect();
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

#[test]
fn push_over_ssm_to_two_groups_puts_every_instance_on_the_build() {
    let world = World::new();
    let a = world.group("web-a", 2);
    let b = world.group("web-b", 2);
    let out = world
        .push(&["--asg", "web-a", "--asg", "web-b", "--batch", "50%"])
        .success();
    let doc = out.stdout_json();
    assert_eq!(doc["via"], "ssm");
    assert_eq!(
        (doc["ok"].as_u64(), doc["batches"].as_u64()),
        (Some(4), Some(2))
    );
    let mut all = ids(&a);
    all.extend(ids(&b));
    let named: Vec<String> = results(&doc).into_iter().map(|(h, _)| h).collect();
    assert_eq!(named, all, "lines named by instance id, group by group");
    for id in &all {
        let line = line(&doc, id);
        assert_eq!(line["result"], "ok", "{line}");
        assert_eq!(line["instance"], id.as_str());
        assert_eq!(line["before"], Value::Null, "first install: {line}");
        assert_eq!(line["after"], 1, "{line}");
        let current = world
            .current(id)
            .unwrap_or_else(|| panic!("{id}: no current"));
        assert!(
            current.ends_with("/1") || current.ends_with("1"),
            "{id}: {current}"
        );
    }
    // Per batch: one agent check, one SendCommand (≤ 50 ids), and polls of the command, not of
    // each host; never faster than the stand-in's throttle.
    assert_eq!(world.count("DescribeInstanceInformation"), 2);
    assert_eq!(world.count("SendCommand"), 2);
    let polls = world.count("ListCommandInvocations");
    assert!((2..=12).contains(&polls), "{polls} polls for 2 batches");
    assert!(
        poll_gaps(world.standin()).iter().all(|gap| *gap >= 0.5),
        "polls closer than the throttle: {:?}",
        poll_gaps(world.standin())
    );
    // Status from the bucket, with no way to reach any host: every instance reported itself
    // on the stable build, through the push.
    let status = world.status(&["--asg", "web-a", "--asg", "web-b"]);
    assert_eq!(status["via"], "bucket", "{status}");
    assert_eq!(status["drifted"], 0, "{status}");
    let states: Vec<(&str, &str)> = status["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["instance"].as_str().unwrap(),
                h["state"].as_str().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(&str, &str)> = all.iter().map(|id| (id.as_str(), "stable")).collect();
    assert_eq!(states, expected, "{status}");
    // Again, onto build 2: before/after say where each instance was and is.
    let doc = world
        .push(&["--asg", "web-a", "--asg", "web-b", "--batch", "100%", "2"])
        .success()
        .stdout_json();
    for id in &all {
        let line = line(&doc, id);
        assert_eq!(
            (line["before"].as_u64(), line["after"].as_u64()),
            (Some(1), Some(2))
        );
    }
}

/// Polls grow with batches, not with hosts: one batch of 6 costs about what one of 1 does.
#[test]
fn polling_cost_grows_with_batches_not_hosts() {
    let world = World::new();
    world.group("web", 6);
    world.push(&["--asg", "web", "--batch", "100%"]).success();
    let polls = world.count("ListCommandInvocations");
    assert!(
        polls <= 6,
        "{polls} ListCommandInvocations for one batch of 6 hosts: polling per host?"
    );
    assert_eq!(world.count("SendCommand"), 1);
}

#[test]
fn canary_then_batches_in_order() {
    let world = World::new();
    let instances = world.group("web", 4);
    let all = ids(&instances);
    let doc = world
        .push(&["--asg", "web", "--canary", "1", "--batch", "2"])
        .success()
        .stdout_json();
    assert_eq!(doc["batches"], 3);
    assert_eq!(world.count("SendCommand"), 3, "one command per batch");
    let ran = world.ran();
    assert_eq!(ran.len(), 4, "{ran:?}");
    assert_eq!(ran[0], all[0], "the canary first");
    let mut second = ran[1..3].to_vec();
    second.sort();
    assert_eq!(second, all[1..3], "then the next two together");
    assert_eq!(ran[3], all[3], "then the last");
}

/// An instance whose agent is not Online fails as unreachable before anything is sent to it;
/// with --max-failures 0 no batch starts after it.
#[test]
fn an_offline_agent_fails_before_anything_is_sent_and_stops_the_push() {
    let world = World::new();
    let instances = world.group("web", 3);
    let all = ids(&instances);
    world.standin().set_agent(&all[0], Agent::ConnectionLost);
    let out = world.push(&["--asg", "web", "--batch", "1"]).code(1);
    let doc = out.stdout_json();
    let first = line(&doc, &all[0]);
    assert_eq!(first["result"], "failed");
    let error = first["error"].as_str().unwrap();
    assert!(
        error.contains("not reachable over SSM: agent ConnectionLost"),
        "{error}"
    );
    assert_eq!(
        results(&doc)[1..]
            .iter()
            .map(|(_, r)| r.as_str())
            .collect::<Vec<_>>(),
        ["not-started", "not-started"]
    );
    assert_eq!(world.count("SendCommand"), 0, "nothing sent to anyone");
    assert!(world.ran().is_empty());
    assert!(
        out.stderr().contains("--max-failures 0"),
        "{}",
        out.stderr()
    );
}

#[test]
fn with_max_failures_1_the_others_still_get_the_build() {
    let world = World::new();
    let instances = world.group("web", 3);
    let all = ids(&instances);
    world.standin().set_agent(&all[1], Agent::Absent);
    let doc = world
        .push(&["--asg", "web", "--batch", "1", "--max-failures", "1"])
        .code(4)
        .stdout_json();
    assert_eq!(
        results(&doc)
            .into_iter()
            .map(|(_, r)| r)
            .collect::<Vec<_>>(),
        ["ok", "failed", "ok"]
    );
    let error = line(&doc, &all[1])["error"].as_str().unwrap().to_owned();
    assert!(error.contains("agent not registered"), "{error}");
    assert_eq!(world.count("SendCommand"), 2);
    assert_eq!(world.ran(), [all[0].clone(), all[2].clone()]);
}

/// A script that fails is a failed line with SSM's status, the exit code and stderr's tail.
#[test]
fn a_failing_command_is_a_failed_line_with_code_and_stderr() {
    let world = World::new();
    let instances = world.group("web", 2);
    let all = ids(&instances);
    let out = world
        .push(&[
            "--asg",
            "web",
            "--batch",
            "1",
            "--max-failures",
            "1",
            "--command",
            "echo first >&2; echo 'it broke' >&2; exit 3",
        ])
        .code(1);
    let doc = out.stdout_json();
    for id in &all {
        let error = line(&doc, id)["error"].as_str().unwrap().to_owned();
        assert!(error.contains("SSM status Failed"), "{error}");
        assert!(error.contains("exit code 3"), "{error}");
        assert!(error.contains("first / it broke"), "{error}");
    }
    // A failing install, through the real binary: its install dir cannot be made.
    let out = world
        .push(&[
            "--asg",
            "web",
            "--batch",
            "100%",
            "--dir",
            "/proc/no-such/web",
        ])
        .code(1);
    let doc = out.stdout_json();
    for id in &all {
        let error = line_error(&doc, id);
        assert!(error.contains("SSM status Failed"), "{error}");
        assert!(error.contains("exit code"), "{error}");
        assert!(error.contains("/proc/no-such/web"), "{error}");
    }
}

/// Output beyond what SSM returns inline: with --ssm-output the full stdout is read back from
/// S3 and the line says where it is; without, the line says it was truncated.
#[test]
fn output_beyond_the_inline_limit() {
    let world = World::new();
    let instances = world.group("web", 1);
    let id = instances[0].id.clone();
    let logs = unique_bucket("ssmlogs");
    world.s3.create_bucket(&logs);
    // The wrapper prints 30,000 characters before install's JSON.
    world.register_with(&id, &[("BIG", "30000")]);
    let url = format!("s3://{logs}/push/web");
    let doc = world
        .push(&["--asg", "web", "--ssm-output", &url])
        .success()
        .stdout_json();
    let line = line(&doc, &id);
    assert_eq!(line["after"], 1, "{line}");
    let log = line["log"].as_str().unwrap();
    assert!(
        log.starts_with(&format!("s3://{logs}/push/web/"))
            && log.ends_with(&format!(
                "/{id}/awsrunShellScript/0.awsrunShellScript/stdout"
            )),
        "{log}"
    );
    let key = log.trim_start_matches(&format!("s3://{logs}/"));
    let full = world.s3.get(&logs, key).expect("the full stdout is in S3");
    assert!(full.len() > 30_000);
    // What moto's own parser recorded of the SendCommand: AWS-RunShellScript, one script, the
    // output bucket, and SSM's own failure limit out of the way (release's planner decides).
    let sent = world.standin().list_commands();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let command = &sent[0];
    assert_eq!(command["DocumentName"], "AWS-RunShellScript", "{command}");
    assert_eq!(command["InstanceIds"], serde_json::json!([id]), "{command}");
    assert_eq!(command["MaxConcurrency"], "100%", "{command}");
    assert_eq!(command["MaxErrors"], "100%", "{command}");
    assert_eq!(
        command["TimeoutSeconds"], 600,
        "delivery timeout: {command}"
    );
    assert_eq!(command["OutputS3BucketName"], logs.as_str(), "{command}");
    assert_eq!(command["OutputS3KeyPrefix"], "push/web", "{command}");
    let script: Vec<&str> = command["Parameters"]["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line.as_str().unwrap())
        .collect();
    let script = script.join("\n");
    assert!(
        script.contains("install") && script.contains("ssm"),
        "the script runs install, started by ssm:\n{script}"
    );
    assert!(
        command["Parameters"]["executionTimeout"][0]
            .as_str()
            .and_then(|t| t.parse::<u64>().ok())
            .is_some(),
        "{command}"
    );
    assert!(
        command["Comment"]
            .as_str()
            .unwrap()
            .starts_with("release push web 1"),
        "{command}"
    );

    let out = world.push(&["--asg", "web", "2"]).code(1);
    let doc = out.stdout_json();
    let error = line_error(&doc, &id);
    assert!(error.contains("truncated"), "{error}");
    assert!(error.contains("--ssm-output"), "{error}");
    assert_eq!(doc["hosts"][0]["log"], Value::Null);
}

/// Output cut in the listing (2,500 characters) but whole in GetCommandInvocation (24,000): one
/// GetCommandInvocation for that host, no --ssm-output needed.
#[test]
fn output_cut_only_in_the_listing_is_read_with_one_get() {
    let world = World::new();
    let instances = world.group("web", 2);
    let big = &instances[0].id;
    world.register_with(big, &[("BIG", "5000")]);
    let doc = world
        .push(&["--asg", "web", "--batch", "100%"])
        .success()
        .stdout_json();
    assert_eq!(line(&doc, big)["after"], 1);
    assert_eq!(line(&doc, &instances[1].id)["after"], 1);
    assert_eq!(
        world.count("GetCommandInvocation"),
        1,
        "only for the cut one"
    );
}

/// An Online agent whose command is never delivered: DeliveryTimedOut, said as such.
#[test]
fn a_command_never_delivered_is_a_delivery_timeout() {
    let world = World::new();
    let instances = world.group("web", 1);
    let id = &instances[0].id;
    world.standin().set_delivery(id, Delivery::Timeout);
    let doc = world.push(&["--asg", "web"]).code(1).stdout_json();
    let error = line_error(&doc, id);
    assert!(error.contains("SSM status DeliveryTimedOut"), "{error}");
    assert!(error.contains("never picked the command up"), "{error}");
}

/// A command that differs per instance (here through `{instance}`) still goes in one
/// SendCommand, and each instance runs its own.
#[test]
fn each_instance_runs_its_own_command_from_one_send() {
    let world = World::new();
    let instances = world.group("web", 3);
    world
        .push(&[
            "--asg",
            "web",
            "--batch",
            "100%",
            "--command",
            "echo {instance} > me",
        ])
        .success();
    assert_eq!(world.count("SendCommand"), 1);
    for instance in &instances {
        let me = std::fs::read_to_string(world.home(&instance.id).join("me")).unwrap();
        assert_eq!(me.trim(), instance.id);
    }
}

fn line_error(doc: &Value, id: &str) -> String {
    line(doc, id)["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// SIGTERM mid-push: CancelCommand for what runs, the processes are gone, the report says
/// interrupted, the lock is released.
#[test]
fn sigterm_cancels_the_running_commands_and_reports() {
    let world = World::new();
    let instances = world.group("web", 2);
    let all = ids(&instances);
    let running = world
        .push(&[
            "--asg",
            "web",
            "--batch",
            "100%",
            "--command",
            "echo $$ > pid; exec sleep 60",
        ])
        .spawn();
    for id in &all {
        wait_for(&world.home(id).join("pid"), "the command's start");
    }
    std::thread::sleep(Duration::from_millis(300));
    running.signal("TERM");
    let out = running.wait(LIMIT);
    assert_eq!(out.status().code(), Some(1), "{}", out.stderr());
    let doc = out.stdout_json();
    assert_eq!(doc["interrupted"], true);
    assert!(world.count("CancelCommand") >= 1, "no CancelCommand sent");
    for id in &all {
        assert!(
            line_error(&doc, id).contains("Cancelled"),
            "{}",
            line_error(&doc, id)
        );
        let pid = std::fs::read_to_string(world.home(id).join("pid")).unwrap();
        assert!(
            !Path::new(&format!("/proc/{}", pid.trim())).exists(),
            "{id}: its sleep still runs"
        );
    }
    assert!(
        world.s3.get(&world.bucket, "web/prod/push.lock").is_none(),
        "the lock is released"
    );
}

/// The lock holds over SSM too: a second push while one runs is a conflict (exit 3).
#[test]
fn a_second_push_while_one_holds_the_lock_is_refused() {
    let world = World::new();
    let instances = world.group("web", 1);
    let id = instances[0].id.clone();
    let running = world
        .push(&["--asg", "web", "--command", "touch started; sleep 20"])
        .spawn();
    wait_for(&world.home(&id).join("started"), "the first push's command");
    let out = world.push(&["--asg", "web"]).code(3);
    assert!(out.stderr().contains("lock"), "{}", out.stderr());
    running.signal("TERM");
    running.wait(LIMIT);
}

/// An instance that joins the group while the push runs gets the build in the final sweep.
#[test]
fn an_instance_added_mid_push_gets_the_build_in_the_sweep() {
    let world = World::new();
    let first = world.group("web", 1);
    world.register_with(&first[0].id, &[("SLOW", "3")]);
    let running = world.push(&["--asg", "web"]).spawn();
    let started = Instant::now();
    while world.ran().is_empty() {
        assert!(started.elapsed() < LIMIT, "the first install never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let now = world.asg.set_desired("web", 2);
    let joined: Vec<String> = ids(&now)
        .into_iter()
        .filter(|id| *id != first[0].id)
        .collect();
    assert_eq!(joined.len(), 1);
    world.register(&joined[0]);
    let out = running.wait(LIMIT);
    assert!(out.status().success(), "{}", out.stderr());
    let doc = out.stdout_json();
    assert_eq!(doc["ok"], 2, "{doc}");
    assert!(
        world.current(&joined[0]).is_some(),
        "the joiner has no build"
    );
}

/// Values with spaces, quotes, `$(…)`, `;` reach the host as single words: the install dir
/// given with --dir is used as is, and nothing it spells runs.
#[test]
fn hostile_values_stay_single_words() {
    let world = World::new();
    let instances = world.group("web", 1);
    let id = instances[0].id.clone();
    let home = world.home(&id);
    let odd = home.join("odd dir 'q' \"d\" $(touch MARK1); touch MARK2 `touch MARK3`");
    let odd_text = odd.display().to_string();
    let doc = world
        .push(&["--asg", "web", "--dir", &odd_text])
        .success()
        .stdout_json();
    assert_eq!(line(&doc, &id)["after"], 1);
    assert!(odd.join("current").exists(), "installed elsewhere");
    let args = std::fs::read_to_string(home.join("args")).unwrap();
    assert!(args.lines().any(|l| l == odd_text), "{args}");
    for mark in ["MARK1", "MARK2", "MARK3"] {
        assert!(!home.join(mark).exists(), "{mark} was created");
    }
}

/// What --via ssm refuses, before anything is touched (exit 2).
#[test]
fn sudo_hosts_and_bad_values_are_refused() {
    let world = World::new();
    world.group("web", 1);
    let cases: [(&[&str], &str); 5] = [
        (
            &["--asg", "web", "--sudo"],
            "--sudo does not apply to --via ssm: the SSM agent runs commands as root",
        ),
        (
            &["--hosts", "127.0.1.4"],
            "SSM reaches instances by id; use --asg",
        ),
        (
            &["--asg", "web", "--ssm-output", "s3://Bad_Bucket/x"],
            "is not an S3 bucket name",
        ),
        (
            &["--asg", "web", "--ssm-output", "s3://user@logs/x"],
            "no user",
        ),
        (
            &["--asg", "web", "--ssm-output", "https://logs/x"],
            "not an s3:// URL",
        ),
    ];
    for (args, words) in cases {
        let out = world.push(args).code(2);
        assert!(out.stderr().contains(words), "{args:?}: {}", out.stderr());
    }
    let out = Release::new()
        .current_dir(world.workspace.path())
        .endpoint(&world.asg.endpoint())
        .env("RELEASE_BUCKET", &world.bucket)
        .env("RELEASE_PUSH_VIA", "pigeon")
        .args(["--artifact", ARTIFACT, "push", "--asg", "web"])
        .code(2);
    assert!(out.stderr().contains("use ssh or ssm"), "{}", out.stderr());
    assert_eq!(world.count("SendCommand"), 0);
}

/// The dry run's plan says how hosts would be reached, and names them by instance id.
#[test]
fn the_dry_run_plan_says_via() {
    let world = World::new();
    let instances = world.group("web", 2);
    let doc = world
        .push(&["--asg", "web"])
        .env("RELEASE_DRY_RUN", "true")
        .success()
        .stdout_json();
    assert_eq!(doc["via"], "ssm");
    assert_eq!(doc["plan"][0][0]["host"], instances[0].id.as_str());
    assert_eq!(world.count("SendCommand"), 0);
    assert_eq!(world.count("DescribeInstanceInformation"), 0);
}
