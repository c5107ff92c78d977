//! `SsmStandIn`: moto's server with SSM Run Command made real (`tests/it/fixtures/ssm_standin.py`).
//!
//! One process serves every moto service (S3, EC2, Auto Scaling, ...) as `moto_server` does,
//! and SendCommand really runs the commands: `bash -c` per instance, with the environment and
//! working directory the test gave that instance ([`SsmStandIn::set_instance`]). What it models
//! (timeline, statuses, truncation, S3 output, cancel, throttling) is in the script's docstring
//! and in docs/decisions.md ("Issue 12 — standin"). The points a client must know:
//! - right after SendCommand, ListCommandInvocations lists nothing for `pending_seconds`, then
//!   `Pending` for another `pending_seconds`, then `InProgress`, then the terminal state;
//! - `Status` is AWS's coarse enum; the precise terminal state is in `StatusDetails`
//!   (DeliveryTimedOut and ExecutionTimedOut have Status `TimedOut`, Undeliverable `Failed`);
//! - the plugin `Output` of ListCommandInvocations(Details=true) is stdout, then
//!   `\n----------ERROR-------\n` and stderr if any, cut at 2,500 characters; GetCommandInvocation
//!   has 24,000 / 8,000; both add `\n---Output truncated---` when cut;
//! - polling one CommandId faster than `min_poll_interval` gets ThrottlingException.
//!
//! The server dies with the test: on `Drop` it gets SIGTERM (it then kills every process group
//! it started) and, if still there after a few seconds, SIGKILL; a watchdog `sh` sends the SIGTERM
//! when the test process ends without destructors (see [`super::moto`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::asg::python;
use super::moto::{
    PORT_ATTEMPTS, answers_http, listens_on, on_a_free_port, read_all_at, spawn_watchdog,
};

/// The stand-in script.
const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/fixtures/ssm_standin.py"
);
/// How to get what the script needs, for panic messages.
const INSTALL: &str = "pip install 'moto[server]>=5.2.2' (the stand-in runs with the Python of \
                       moto_server: set MOTO_SERVER to its path, e.g. \
                       ~/.cache/release-venv/bin/moto_server)";
/// How long a fresh server may take to answer (moto imports a lot of Python).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server may take to kill its process groups and exit on SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// What the instance's SSM agent reports (DescribeInstanceInformation's PingStatus).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Agent {
    /// Registered and connected: commands are delivered and run.
    Online,
    /// Registered, not connected: commands stay Pending (then DeliveryTimedOut).
    ConnectionLost,
    /// Registered, not seen for long.
    Inactive,
    /// Not registered at all: not listed by DescribeInstanceInformation; Undeliverable.
    Absent,
}

impl Agent {
    fn as_str(self) -> &'static str {
        match self {
            Agent::Online => "Online",
            Agent::ConnectionLost => "ConnectionLost",
            Agent::Inactive => "Inactive",
            Agent::Absent => "absent",
        }
    }
}

/// How a command reaches the instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Delivered if the agent is Online (else as `Timeout`).
    Ok,
    /// Stays Pending, then Status TimedOut / StatusDetails DeliveryTimedOut after
    /// `delivery_timeout_seconds` from the SendCommand.
    Timeout,
    /// Status Failed / StatusDetails Undeliverable as soon as it is listed.
    Undeliverable,
}

impl Delivery {
    fn as_str(self) -> &'static str {
        match self {
            Delivery::Ok => "ok",
            Delivery::Timeout => "timeout",
            Delivery::Undeliverable => "undeliverable",
        }
    }
}

/// The stand-in's clocks, in seconds (the script's defaults: 0.5, 0.5, 3).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    /// How long an invocation is not listed after SendCommand, and then how long it is Pending
    /// before its commands start.
    pub pending_seconds: f64,
    /// Polls of one CommandId closer than this get ThrottlingException.
    pub min_poll_interval: f64,
    /// From SendCommand to DeliveryTimedOut for an instance whose command is not delivered.
    pub delivery_timeout_seconds: f64,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            pending_seconds: 0.5,
            min_poll_interval: 0.5,
            delivery_timeout_seconds: 3.0,
        }
    }
}

/// A running stand-in on `127.0.0.1`, killed when dropped.
pub struct SsmStandIn {
    server: Child,
    watchdog: Child,
    port: u16,
    /// The server's stdout and stderr, unlinked.
    log: File,
    /// Holds `instances.json` and `requests.jsonl`.
    dir: tempfile::TempDir,
    /// The instances file's content; every change rewrites the file (atomically).
    world: Mutex<Value>,
}

impl SsmStandIn {
    /// Starts the stand-in on a free port and waits until it answers HTTP.
    ///
    /// Panics, with the fix in the message, if the Python of moto_server is missing or cannot
    /// import moto.
    pub fn start() -> SsmStandIn {
        on_a_free_port(SsmStandIn::try_start).unwrap_or_else(|last_log| {
            panic!(
                "the SSM stand-in ({SCRIPT}) exited before answering, {PORT_ATTEMPTS} times; is \
                 moto installed for its Python? {INSTALL}\nits last output:\n{last_log}"
            )
        })
    }

    /// `http://127.0.0.1:PORT`: for `AWS_ENDPOINT_URL` (SSM, S3, EC2, Auto Scaling alike).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything the server wrote so far (one line per request, Python tracebacks): for
    /// failure messages.
    pub fn log(&self) -> String {
        read_all_at(&self.log)
    }

    /// The instances file the server re-reads on every SSM request.
    pub fn instances_file(&self) -> PathBuf {
        self.dir.path().join("instances.json")
    }

    /// Registers instance `id` (agent Online, delivery ok unless set before) whose commands run
    /// with exactly `env` (PATH included) in `cwd`.
    pub fn set_instance<K, V>(
        &self,
        id: &str,
        env: impl IntoIterator<Item = (K, V)>,
        cwd: impl AsRef<Path>,
    ) where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let env: BTreeMap<String, String> = env
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
            .collect();
        let cwd = cwd.as_ref().to_string_lossy().into_owned();
        self.update(|world| {
            let instance = instance_entry(world, id);
            instance["env"] = json!(env);
            instance["cwd"] = json!(cwd);
        });
    }

    /// Sets what instance `id`'s agent reports (registering it with an empty env if new).
    pub fn set_agent(&self, id: &str, agent: Agent) {
        self.update(|world| instance_entry(world, id)["agent"] = json!(agent.as_str()));
    }

    /// Sets how commands reach instance `id` (registering it with an empty env if new).
    pub fn set_delivery(&self, id: &str, delivery: Delivery) {
        self.update(|world| instance_entry(world, id)["delivery"] = json!(delivery.as_str()));
    }

    /// Sets the stand-in's clocks (for every command sent from now on; throttling at once).
    pub fn set_timing(&self, timing: Timing) {
        self.update(|world| {
            world["pending_seconds"] = json!(timing.pending_seconds);
            world["min_poll_interval"] = json!(timing.min_poll_interval);
            world["delivery_timeout_seconds"] = json!(timing.delivery_timeout_seconds);
        });
    }

    /// The commands moto recorded, as its own ListCommands answers (boto3, one short Python run):
    /// what moto's request parser made of each SendCommand (document, ids, parameters,
    /// MaxConcurrency, MaxErrors, output bucket), so tests check the request shape against moto.
    pub fn list_commands(&self) -> Vec<Value> {
        let (program, args) = python();
        let script = "import boto3, json, sys\n\
                      ssm = boto3.client('ssm', endpoint_url=sys.argv[1], \
                      region_name='us-east-1', aws_access_key_id='test', \
                      aws_secret_access_key='test')\n\
                      pages = ssm.get_paginator('list_commands').paginate()\n\
                      print(json.dumps([c for p in pages for c in p['Commands']], default=str))\n";
        let output = Command::new(&program)
            .args(&args)
            .args(["-c", script, &self.endpoint()])
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; {INSTALL}", program.display()));
        assert!(
            output.status.success(),
            "ListCommands failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("ListCommands as JSON")
    }

    /// Every request the server received so far, in order: (service, action), e.g.
    /// `("ssm", "SendCommand")`, `("s3", "GetObject")`, `("autoscaling",
    /// "DescribeAutoScalingGroups")`. Includes the harness's own setup requests.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.requests_timed()
            .into_iter()
            .map(|(_, service, action)| (service, action))
            .collect()
    }

    /// As [`SsmStandIn::requests`], with each request's time (epoch seconds).
    pub fn requests_timed(&self) -> Vec<(f64, String, String)> {
        let text =
            fs_err::read_to_string(self.dir.path().join("requests.jsonl")).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .map(|v| {
                let field = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
                (
                    v["t"].as_f64().unwrap_or(0.0),
                    field("service"),
                    field("action"),
                )
            })
            .collect()
    }

    /// How many requests of `service` and `action` the server received so far.
    pub fn request_count(&self, service: &str, action: &str) -> usize {
        self.requests()
            .iter()
            .filter(|(s, a)| s == service && a == action)
            .count()
    }

    /// Applies `change` to the instances file's content and rewrites it atomically (the server
    /// may read it at any moment).
    fn update(&self, change: impl FnOnce(&mut Value)) {
        let mut world = self.world.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut world);
        let path = self.instances_file();
        let temporary = path.with_extension("json.tmp");
        fs_err::write(&temporary, world.to_string()).expect("write the stand-in's instances");
        fs_err::rename(&temporary, &path).expect("replace the stand-in's instances file");
    }

    /// Spawns the script on `port`; `Err(output)` if it exits before it is ready.
    fn try_start(port: u16) -> Result<SsmStandIn, String> {
        let dir = tempfile::tempdir().expect("create a directory for the SSM stand-in");
        let log = tempfile::tempfile().expect("create a file for the stand-in's output");
        let (program, args) = python();
        let server = Command::new(&program)
            .args(&args)
            .arg(SCRIPT)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--instances")
            .arg(dir.path().join("instances.json"))
            .arg("--requests")
            .arg(dir.path().join("requests.jsonl"))
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the stand-in's log file"))
            .stderr(log.try_clone().expect("clone the stand-in's log file"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}) for the SSM stand-in: {INSTALL}",
                    program.display()
                )
            });
        let watchdog = spawn_watchdog(server.id());
        let standin = SsmStandIn {
            server,
            watchdog,
            port,
            log,
            dir,
            world: Mutex::new(json!({"instances": {}})),
        };
        standin.set_timing(Timing::default());
        let mut standin = standin;
        standin.wait_ready()?;
        Ok(standin)
    }

    /// Polls until our own child listens on the port and answers HTTP.
    fn wait_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.server.try_wait().expect("wait for the stand-in") {
                return Err(format!("({status})\n{}", self.log()));
            }
            if listens_on(self.server.id(), self.port) && answers_http(self.port) {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                panic!(
                    "the SSM stand-in on port {} did not answer within {READY_TIMEOUT:?}; its \
                     output:\n{}",
                    self.port,
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The entry of instance `id`, created (Online, delivery ok, empty env, cwd /) if missing.
fn instance_entry<'a>(world: &'a mut Value, id: &str) -> &'a mut Value {
    let instances = world["instances"]
        .as_object_mut()
        .expect("instances is an object");
    instances
        .entry(id.to_owned())
        .or_insert_with(|| json!({"env": {}, "cwd": "/", "agent": "Online", "delivery": "ok"}))
}

impl Drop for SsmStandIn {
    fn drop(&mut self) {
        // The watchdog first, so it cannot signal a recycled pid after the server is reaped.
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        // SIGTERM lets the server kill the process groups of the commands still running;
        // SIGKILL (Child::kill) would leave them behind.
        let _ = Command::new("kill")
            .arg(self.server.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.server.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
