//! The SSM stand-in itself (tests/it/fixtures/ssm_standin.py, harness common::ssm): what the
//! `push --via ssm` tests rely on, checked with boto3 (tests/it/fixtures/ssm_client.py), never
//! with the release binary.

use std::path::Path;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::asg::{Worker, tail};
use crate::common::ssm::{Agent, Delivery, SsmStandIn, Timing};
use crate::common::{Asg, Market};

const CLIENT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/fixtures/ssm_client.py"
);
/// Longest any state change may take here (the stand-in's clocks are fractions of a second).
const LIMIT: Duration = Duration::from_secs(20);
/// Polls one command at most this often (above the tests' min_poll_interval).
const POLL: Duration = Duration::from_millis(250);
const FAST: Timing = Timing {
    pending_seconds: 0.2,
    min_poll_interval: 0.2,
    delivery_timeout_seconds: 2.0,
};
const ONE: &str = "i-0123456789abcdef0";
const TWO: &str = "i-0123456789abcdef1";

/// A stand-in (alone or under an Asg) and a boto3 client of it.
struct World {
    server: Server,
    client: Mutex<Worker>,
}

enum Server {
    StandIn(SsmStandIn),
    Asg(Asg),
}

impl World {
    fn start(timing: Timing) -> World {
        // Python imports boto3 while the stand-in boots.
        let client = Worker::start_script(Path::new(CLIENT));
        World::on(Server::StandIn(SsmStandIn::start()), client, timing)
    }

    fn on(server: Server, client: Worker, timing: Timing) -> World {
        let world = World {
            server,
            client: Mutex::new(client),
        };
        world.standin().set_timing(timing);
        world.ok("setup", json!({"endpoint": world.standin().endpoint()}));
        world
    }

    fn standin(&self) -> &SsmStandIn {
        match &self.server {
            Server::StandIn(standin) => standin,
            Server::Asg(asg) => asg.ssm(),
        }
    }

    /// Registers `id` with PATH and `extra` as its whole environment, in `cwd`.
    fn instance(&self, id: &str, extra: &[(&str, &str)], cwd: &Path) {
        let path = std::env::var("PATH").unwrap_or_default();
        let mut env = vec![("PATH", path.as_str())];
        env.extend_from_slice(extra);
        self.standin().set_instance(id, env, cwd);
    }

    fn call(&self, op: &str, args: Value) -> Result<Value, String> {
        let mut client = self.client.lock().unwrap_or_else(|e| e.into_inner());
        client.call(op, &args)
    }

    fn ok(&self, op: &str, args: Value) -> Value {
        self.call(op, args.clone()).unwrap_or_else(|error| {
            panic!(
                "{op} {args} failed: {error}\n--- stand-in log (last 4 KB):\n{}",
                tail(&self.standin().log(), 4096)
            )
        })
    }

    fn send(&self, ids: &[&str], commands: &[&str]) -> String {
        let id = self.ok("send", json!({"ids": ids, "commands": commands}));
        id.as_str().expect("a command id").to_owned()
    }

    fn list(&self, command: &str) -> Vec<Value> {
        let answer = self.ok("list", json!({"command_id": command}));
        answer["invocations"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Polls GetCommandInvocation until `instance`'s invocation is terminal; returns it.
    fn wait_done(&self, command: &str, instance: &str) -> Value {
        let started = Instant::now();
        loop {
            thread::sleep(POLL);
            let args = json!({"command_id": command, "instance_id": instance});
            if let Ok(answer) = self.call("get", args)
                && !matches!(answer["Status"].as_str(), Some("Pending" | "InProgress"))
            {
                return answer;
            }
            assert!(
                started.elapsed() < LIMIT,
                "{instance} did not finish within {LIMIT:?}:\n{}",
                tail(&self.standin().log(), 4096)
            );
        }
    }
}

#[test]
fn a_command_runs_in_the_instances_env_and_cwd_and_its_output_comes_back() {
    let world = World::start(FAST);
    let home = tempfile::tempdir().unwrap();
    world.instance(ONE, &[("GREETING", "hello there")], home.path());
    let commands = [
        "echo \"greeting=$GREETING\"",
        "echo \"cwd=$(pwd)\"",
        "echo \"home=${HOME-unset}\"",
        "echo \"agent=$AWS_SSM_INSTANCE_ID\"",
        "echo oops >&2",
    ];
    let command = world.send(&[ONE], &commands);
    let done = world.wait_done(&command, ONE);
    assert_eq!(done["Status"], "Success", "{done}");
    assert_eq!(done["ResponseCode"], 0, "{done}");
    let stdout = done["StandardOutputContent"].as_str().unwrap();
    let cwd = home.path().canonicalize().unwrap();
    assert_eq!(
        stdout,
        format!(
            "greeting=hello there\ncwd={}\nhome=unset\nagent={ONE}\n",
            cwd.display()
        ),
        "the command must see exactly the instance's env (plus the agent's AWS_SSM_INSTANCE_ID) \
         and cwd"
    );
    assert_eq!(done["StandardErrorContent"], "oops\n");
}

#[test]
fn the_first_list_is_empty_then_pending_in_progress_success() {
    let world = World::start(Timing {
        pending_seconds: 1.0,
        ..FAST
    });
    let home = tempfile::tempdir().unwrap();
    world.instance(ONE, &[], home.path());
    let command = world.send(&[ONE], &["sleep 1.5", "echo done"]);
    assert_eq!(world.list(&command), Vec::<Value>::new(), "first list");
    let mut seen: Vec<String> = Vec::new();
    let started = Instant::now();
    while seen.last().map(String::as_str) != Some("Success") {
        assert!(started.elapsed() < LIMIT, "never Success: {seen:?}");
        thread::sleep(POLL);
        if let Some(invocation) = world.list(&command).first() {
            let status = invocation["status"].as_str().unwrap().to_owned();
            if seen.last() != Some(&status) {
                seen.push(status);
            }
        }
    }
    assert_eq!(seen, ["Pending", "InProgress", "Success"]);
}

#[test]
fn exit_3_is_failed_with_response_code_3() {
    let world = World::start(FAST);
    let home = tempfile::tempdir().unwrap();
    world.instance(ONE, &[], home.path());
    let command = world.send(&[ONE], &["echo before", "exit 3", "echo never"]);
    let done = world.wait_done(&command, ONE);
    assert_eq!(done["Status"], "Failed", "{done}");
    assert_eq!(done["StatusDetails"], "Failed", "{done}");
    assert_eq!(done["ResponseCode"], 3, "{done}");
    assert_eq!(done["StandardOutputContent"], "before\n");
    thread::sleep(POLL); // one poll per min_poll_interval, GetCommandInvocation included
    let listed = world.list(&command);
    assert_eq!(listed[0]["code"], 3, "{listed:?}");
    assert_eq!(
        world.ok("command_status", json!({"command_id": command})),
        "Failed"
    );
}

#[test]
fn execution_timeout_kills_the_command_as_timed_out() {
    let world = World::start(FAST);
    let home = tempfile::tempdir().unwrap();
    world.instance(ONE, &[], home.path());
    let started = Instant::now();
    let args = json!({"ids": [ONE], "commands": ["sleep 30"], "execution_timeout": 1});
    let command = world.ok("send", args);
    let done = world.wait_done(command.as_str().unwrap(), ONE);
    assert_eq!(done["Status"], "TimedOut", "{done}");
    assert_eq!(done["StatusDetails"], "ExecutionTimedOut", "{done}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn an_offline_agent_times_out_delivery_and_shows_connection_lost() {
    let world = World::start(FAST);
    let home = tempfile::tempdir().unwrap();
    world.instance(ONE, &[], home.path());
    world.instance(TWO, &[], home.path());
    world.standin().set_agent(TWO, Agent::ConnectionLost);
    world
        .standin()
        .set_agent("i-00000000000000aaa", Agent::Absent);
    let described = world.ok("describe", json!({}));
    assert_eq!(
        described,
        json!([{"id": ONE, "ping": "Online"}, {"id": TWO, "ping": "ConnectionLost"}]),
        "an absent agent is not listed"
    );
    let started = Instant::now();
    let command = world.send(&[TWO, "i-00000000000000aaa"], &["touch ran"]);
    let mut pending_seen = false;
    let done = loop {
        assert!(started.elapsed() < LIMIT, "no DeliveryTimedOut");
        thread::sleep(POLL);
        let listed = world.list(&command);
        let Some(two) = listed.iter().find(|i| i["id"] == TWO) else {
            continue;
        };
        pending_seen |= two["status"] == "Pending";
        if two["status"] != "Pending" {
            break listed;
        }
    };
    assert!(pending_seen, "Pending before the delivery timeout");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let by_id = |id: &str| done.iter().find(|i| i["id"] == id).cloned().unwrap();
    assert_eq!(by_id(TWO)["status"], "TimedOut");
    assert_eq!(by_id(TWO)["details"], "DeliveryTimedOut");
    assert_eq!(by_id("i-00000000000000aaa")["details"], "Undeliverable");
    assert!(!home.path().join("ran").exists(), "nothing ran");
    world.standin().set_delivery(TWO, Delivery::Undeliverable);
    world.standin().set_agent(TWO, Agent::Online);
    let again = world.send(&[TWO], &["touch ran"]);
    assert_eq!(
        world.wait_done(&again, TWO)["StatusDetails"],
        "Undeliverable"
    );
}

#[test]
fn long_output_is_truncated_inline_and_whole_in_s3() {
    let world = World::start(FAST);
    let home = tempfile::tempdir().unwrap();
    world.instance(ONE, &[], home.path());
    world.ok("create_bucket", json!({"bucket": "ssm-logs"}));
    let script = "for i in $(seq 1 3000); do printf '%09d\\n' $i; done";
    let args =
        json!({"ids": [ONE], "commands": [script], "bucket": "ssm-logs", "prefix": "push/1"});
    let command = world.ok("send", args);
    let command = command.as_str().unwrap();
    let done = world.wait_done(command, ONE);
    let full: String = (1..=3000).map(|i| format!("{i:09}\n")).collect();
    assert_eq!(full.len(), 30_000);
    let inline = done["StandardOutputContent"].as_str().unwrap();
    // Compared as bools: a failure must not print 30 KB.
    let expected = format!("{}\n---Output truncated---", &full[..24_000]);
    assert!(
        inline == expected,
        "inline stdout: {} characters, ending {:?}; want the first 24,000 and the marker",
        inline.len(),
        tail(inline, 60)
    );
    let key = format!("push/1/{command}/{ONE}/awsrunShellScript/0.awsrunShellScript/stdout");
    assert!(
        done["StandardOutputUrl"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/ssm-logs/{key}")),
        "{done}"
    );
    let stored = world.ok("s3_get", json!({"bucket": "ssm-logs", "key": key}));
    let stored = stored.as_str().unwrap();
    assert!(
        stored == full,
        "S3 has {} characters, not all 30,000",
        stored.len()
    );
    thread::sleep(POLL); // one poll per min_poll_interval, GetCommandInvocation included
    let listed = world.list(command);
    let output = listed[0]["output"].as_str().unwrap();
    let expected = format!("{}\n---Output truncated---", &full[..2_500]);
    assert!(
        output == expected,
        "plugin Output ends {:?}",
        tail(output, 60)
    );
}

#[test]
fn cancel_kills_a_sleeping_command_and_its_process_group() {
    let world = World::start(FAST);
    let home = tempfile::tempdir().unwrap();
    world.instance(ONE, &[], home.path());
    let command = world.send(&[ONE], &["sleep 60 & echo $! > sleep.pid", "wait"]);
    let pid_file = home.path().join("sleep.pid");
    let started = Instant::now();
    while !pid_file.exists() || fs_err::read_to_string(&pid_file).unwrap().trim().is_empty() {
        assert!(started.elapsed() < LIMIT, "the command never started");
        thread::sleep(Duration::from_millis(50));
    }
    let pid = fs_err::read_to_string(&pid_file).unwrap().trim().to_owned();
    assert!(alive(&pid), "sleep {pid} runs before the cancel");
    world.ok("cancel", json!({"command_id": command}));
    let done = world.wait_done(&command, ONE);
    assert_eq!(done["Status"], "Cancelled", "{done}");
    let gone = Instant::now();
    // Killed, it is a zombie until whoever inherited it reaps it: that counts as gone.
    while alive(&pid) {
        assert!(
            gone.elapsed() < Duration::from_secs(5),
            "sleep {pid} survived the cancel"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn polling_faster_than_the_minimum_interval_is_throttled() {
    let world = World::start(Timing {
        min_poll_interval: 0.5,
        ..FAST
    });
    let home = tempfile::tempdir().unwrap();
    world.instance(ONE, &[], home.path());
    let command = world.send(&[ONE], &["true"]);
    world.list(&command);
    thread::sleep(Duration::from_millis(100));
    let second = world.call("list", json!({"command_id": command}));
    assert_eq!(second, Err("ThrottlingException: Rate exceeded".to_owned()));
    thread::sleep(Duration::from_millis(600));
    world.list(&command);
}

#[test]
fn more_than_50_instances_and_other_documents_are_refused() {
    let world = World::start(FAST);
    let ids: Vec<String> = (0..51).map(|i| format!("i-{i:017x}")).collect();
    let refused = world.call("send", json!({"ids": ids, "commands": ["true"]}));
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.starts_with("ValidationException")),
        "{refused:?}"
    );
    let fifty = world.call("send", json!({"ids": ids[..50], "commands": ["true"]}));
    assert!(fifty.is_ok(), "{fifty:?}");
    let args = json!({"ids": [ONE], "commands": ["true"], "document": "AWS-RunPowerShellScript"});
    let other = world.call("send", args);
    assert!(
        other
            .as_ref()
            .is_err_and(|e| e.starts_with("InvalidDocument")),
        "{other:?}"
    );
}

#[test]
fn the_request_log_counts_requests_by_service_and_action() {
    let world = World::start(FAST);
    let home = tempfile::tempdir().unwrap();
    world.instance(ONE, &[], home.path());
    world.ok("create_bucket", json!({"bucket": "counted"}));
    let command = world.send(&[ONE], &["true"]);
    world.wait_done(&command, ONE);
    world.ok("describe", json!({"ids": [ONE]}));
    let _ = world.call("s3_get", json!({"bucket": "counted", "key": "missing"}));
    let standin = world.standin();
    assert_eq!(standin.request_count("ssm", "SendCommand"), 1);
    assert!(standin.request_count("ssm", "GetCommandInvocation") >= 1);
    assert_eq!(
        standin.request_count("ssm", "DescribeInstanceInformation"),
        1
    );
    assert_eq!(standin.request_count("s3", "CreateBucket"), 1);
    assert_eq!(standin.request_count("s3", "GetObject"), 1);
    let requests = standin.requests();
    assert!(
        requests.iter().all(|(s, a)| !s.is_empty() && !a.is_empty()),
        "{requests:?}"
    );
}

#[test]
fn an_asg_world_runs_on_the_stand_in() {
    let client = Worker::start_script(Path::new(CLIENT));
    let asg = Asg::start_with_ssm();
    let instances = asg.create_group("web", 2, Market::OnDemand);
    let world = World::on(Server::Asg(asg), client, FAST);
    let standin = world.standin();
    assert_eq!(
        standin.request_count("autoscaling", "CreateAutoScalingGroup"),
        1
    );
    assert!(standin.request_count("ec2", "CreateVpc") >= 1);
    let home = tempfile::tempdir().unwrap();
    let path = std::env::var("PATH").unwrap_or_default();
    for instance in &instances {
        let env = [("PATH", path.as_str()), ("ME", instance.id.as_str())];
        standin.set_instance(&instance.id, env, home.path());
    }
    let ids: Vec<&str> = instances.iter().map(|i| i.id.as_str()).collect();
    let command = world.send(&ids, &["echo \"$ME\" >> ran"]);
    for id in &ids {
        assert_eq!(world.wait_done(&command, id)["Status"], "Success");
    }
    let ran = fs_err::read_to_string(home.path().join("ran")).unwrap();
    let mut lines: Vec<&str> = ran.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ids);
}

#[test]
fn lists_come_in_pages_and_later_pages_are_not_throttled() {
    let world = World::start(Timing {
        min_poll_interval: 5.0,
        ..FAST
    });
    let home = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..12).map(|i| format!("i-{i:017x}")).collect();
    for id in &ids {
        world.instance(id, &[], home.path());
    }
    // DescribeInstanceInformation answers 10 per page by default; the client follows NextToken.
    let described = world.ok("describe", json!({}));
    assert_eq!(described.as_array().map(Vec::len), Some(12), "{described}");
    assert!(
        world
            .standin()
            .request_count("ssm", "DescribeInstanceInformation")
            >= 2
    );
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let command = world.send(&id_refs, &["true"]);
    thread::sleep(Duration::from_millis(600)); // all listed (2 × pending_seconds + margin)
    let mut seen = Vec::new();
    let mut token = Value::Null;
    for _ in 0..3 {
        let args = json!({"command_id": command, "max_results": 5, "next_token": token});
        let page = world.ok("list", args);
        seen.extend(
            page["invocations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].clone()),
        );
        token = page["next_token"].clone();
    }
    assert_eq!(token, Value::Null, "three pages of 5, 5, 2");
    assert_eq!(seen, ids.iter().map(|id| json!(id)).collect::<Vec<_>>());
}

#[test]
fn commands_still_running_die_with_the_stand_in() {
    let world = World::start(FAST);
    let home = tempfile::tempdir().unwrap();
    world.instance(ONE, &[], home.path());
    world.send(&[ONE], &["sleep 60 & echo $! > sleep.pid", "wait"]);
    let pid_file = home.path().join("sleep.pid");
    let started = Instant::now();
    while !fs_err::read_to_string(&pid_file).is_ok_and(|pid| !pid.trim().is_empty()) {
        assert!(started.elapsed() < LIMIT, "the command never started");
        thread::sleep(Duration::from_millis(50));
    }
    let pid = fs_err::read_to_string(&pid_file).unwrap().trim().to_owned();
    drop(world);
    let gone = Instant::now();
    while alive(&pid) {
        assert!(
            gone.elapsed() < Duration::from_secs(5),
            "sleep {pid} outlived the stand-in"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Whether process `pid` exists and is not a zombie (killed, waiting to be reaped).
fn alive(pid: &str) -> bool {
    fs_err::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}
