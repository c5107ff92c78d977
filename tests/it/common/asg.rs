//! `Asg`: Auto Scaling groups in a private moto, whose instances have loopback addresses.
//!
//! The world is DESIGN.md's: a VPC 127.0.0.0/16 with one subnet 127.0.1.0/24 in us-east-1a and a
//! launch template on moto's built-in image `ami-12c6146b`, so moto hands out 127.0.1.4,
//! 127.0.1.5, ... in launch order (AWS reserves .0-.3), which [`super::Hosts`] serves over SSH.
//! Each `Asg` owns its moto: tests start instances and change their states, and must not see
//! another test's groups or addresses.
//!
//! The AWS calls are made by `tests/it/fixtures/asg_worker.py` with boto3 (which moto itself
//! depends on, so the Python that runs `moto_server` has it), one process per `Asg` fed JSON
//! lines: importing boto3 costs half a second, too much to pay per call. Every address moto
//! reports is checked to be in 127.0.0.0/8 before a test can use it, so a test fails instead of
//! connecting outside loopback (e.g. to moto's default VPC, 172.31.x.x).
//!
//! What moto does and does not do (moto 5.2.5):
//! - Instances are InService and Healthy at once; [`Asg::set_unhealthy`] and
//!   [`Asg::enter_standby`] are the only other states it produces, and it never replaces an
//!   Unhealthy instance.
//! - Instances launched by a group never carry `InstanceLifecycle`, whatever the launch template
//!   or a MixedInstancesPolicy says; only RunInstances with spot market options sets it. So a
//!   [`Market::Spot`] group is filled with such instances through AttachInstances.

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::moto::Moto;
use super::ssm::SsmStandIn;

/// Longest one call may take (moto answers in milliseconds; Python starts in about a second).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// The worker script.
const WORKER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/fixtures/asg_worker.py"
);
/// How to get what the worker needs, for panic messages.
const INSTALL: &str = "pip install 'moto[server]>=5.2.2' (it brings boto3), or set MOTO_SERVER \
                       to a moto_server whose Python has boto3";

/// How a group buys its instances; shows in DescribeInstances' `InstanceLifecycle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Market {
    /// Launched by the group itself; no `InstanceLifecycle`.
    OnDemand,
    /// `InstanceLifecycle=spot`; the group has a MixedInstancesPolicy with 0% on-demand.
    Spot,
}

/// One instance of a group, as DescribeAutoScalingGroups and DescribeInstances report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// `i-...`.
    pub id: String,
    /// The private address, checked to be in 127.0.0.0/8 (`127.0.1.x`).
    pub private_ip: String,
    /// The availability zone (always us-east-1a: there is one subnet).
    pub zone: String,
    /// `Some("spot")` for spot instances, `None` for on-demand ones.
    pub lifecycle: Option<String>,
    /// The group's view: `InService` or `Standby`.
    pub lifecycle_state: String,
    /// The group's view: `Healthy` or `Unhealthy`.
    pub health_status: String,
    /// The EC2 state: `running`.
    pub state: String,
}

/// The private addresses of `instances`, in order: the argument [`super::Hosts::start`] takes.
pub fn addresses(instances: &[Instance]) -> Vec<&str> {
    instances.iter().map(|i| i.private_ip.as_str()).collect()
}

/// A private moto with the loopback VPC, and groups created in it on demand.
pub struct Asg {
    server: Server,
    worker: Mutex<Worker>,
}

/// The server an [`Asg`] owns: plain moto, or the SSM stand-in (moto with Run Command).
enum Server {
    Moto(Moto),
    StandIn(SsmStandIn),
}

impl Server {
    fn endpoint(&self) -> String {
        match self {
            Server::Moto(moto) => moto.endpoint(),
            Server::StandIn(standin) => standin.endpoint(),
        }
    }

    fn log(&self) -> String {
        match self {
            Server::Moto(moto) => moto.log(),
            Server::StandIn(standin) => standin.log(),
        }
    }
}

impl Asg {
    /// Starts a private moto and creates the VPC, subnet and launch template.
    pub fn start() -> Asg {
        // Python imports boto3 while moto boots.
        let worker = Worker::start();
        let moto = Moto::start();
        Asg::setup(Server::Moto(moto), worker)
    }

    /// The same world on the SSM stand-in, which the `Asg` then owns: groups, S3 and SSM
    /// share one server (one `AWS_ENDPOINT_URL`), as in AWS. Register the instances with
    /// [`SsmStandIn::set_instance`] through [`Asg::ssm`].
    pub fn start_on(standin: SsmStandIn) -> Asg {
        Asg::setup(Server::StandIn(standin), Worker::start())
    }

    /// Starts an SSM stand-in and the world on it ([`Asg::start_on`]).
    pub fn start_with_ssm() -> Asg {
        // Python imports boto3 while the stand-in boots.
        let worker = Worker::start();
        Asg::setup(Server::StandIn(SsmStandIn::start()), worker)
    }

    fn setup(server: Server, worker: Worker) -> Asg {
        let asg = Asg {
            server,
            worker: Mutex::new(worker),
        };
        asg.call("setup", json!({"endpoint": asg.endpoint()}));
        asg
    }

    /// The moto server, also usable for S3 (`AWS_ENDPOINT_URL` of the binary and the hosts).
    ///
    /// Panics for an `Asg` on the SSM stand-in: use [`Asg::ssm`] or [`Asg::endpoint`].
    pub fn moto(&self) -> &Moto {
        match &self.server {
            Server::Moto(moto) => moto,
            Server::StandIn(_) => {
                panic!("this Asg runs on the SSM stand-in, not a plain moto: use Asg::ssm()")
            }
        }
    }

    /// The SSM stand-in of an `Asg` made by [`Asg::start_on`] / [`Asg::start_with_ssm`].
    ///
    /// Panics for an `Asg` on a plain moto ([`Asg::start`]).
    pub fn ssm(&self) -> &SsmStandIn {
        match &self.server {
            Server::StandIn(standin) => standin,
            Server::Moto(_) => {
                panic!("this Asg runs on a plain moto: start it with Asg::start_with_ssm()")
            }
        }
    }

    /// `http://127.0.0.1:PORT` of the server.
    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    /// Creates group `name` with `desired` instances (max size 200) and returns them, sorted by
    /// instance id (the order `release push` resolves them in).
    pub fn create_group(&self, name: &str, desired: usize, market: Market) -> Vec<Instance> {
        let spot = market == Market::Spot;
        let answer = self.call(
            "create_group",
            json!({"name": name, "desired": desired, "spot": spot}),
        );
        let instances = parse_instances(answer);
        assert_eq!(
            instances.len(),
            desired,
            "moto launched {} instances for group {name}, not {desired}: {instances:?}",
            instances.len()
        );
        instances
    }

    /// The group's instances, all states, sorted by instance id.
    pub fn instances(&self, name: &str) -> Vec<Instance> {
        parse_instances(self.call("instances", json!({"name": name})))
    }

    /// Sets the desired capacity (SetDesiredCapacity; a spot group grows by attaching spot
    /// instances) and returns the group's instances. moto launches or terminates at once.
    pub fn set_desired(&self, name: &str, desired: usize) -> Vec<Instance> {
        parse_instances(self.call("set_desired", json!({"name": name, "desired": desired})))
    }

    /// Marks the instance Unhealthy (SetInstanceHealth); moto does not replace it.
    pub fn set_unhealthy(&self, instance: &str) {
        self.call(
            "set_health",
            json!({"instance": instance, "status": "Unhealthy"}),
        );
    }

    /// Marks the instance Healthy again (SetInstanceHealth).
    pub fn set_healthy(&self, instance: &str) {
        self.call(
            "set_health",
            json!({"instance": instance, "status": "Healthy"}),
        );
    }

    /// Moves the instance to Standby (EnterStandby), decrementing the desired capacity: without
    /// that, moto would launch a replacement at once.
    pub fn enter_standby(&self, instance: &str) {
        self.call("enter_standby", json!({"instance": instance}));
    }

    /// Sends one request to the worker and returns its `ok` value; panics with moto's error.
    fn call(&self, op: &str, args: Value) -> Value {
        let mut worker = self.worker.lock().unwrap_or_else(|e| e.into_inner());
        match worker.call(op, &args) {
            Ok(value) => value,
            Err(error) => panic!(
                "{op} {args} failed: {error}\n--- moto's log (last 4 KB):\n{}",
                tail(&self.server.log(), 4096)
            ),
        }
    }
}

/// The boto3 process: requests on its stdin, answers read by a thread into a channel (so each
/// wait is bounded).
pub(crate) struct Worker {
    child: Child,
    stdin: ChildStdin,
    answers: Receiver<String>,
    /// Its stderr (Python tracebacks), unlinked.
    stderr: std::fs::File,
}

impl Worker {
    fn start() -> Worker {
        Worker::start_script(Path::new(WORKER))
    }

    /// A worker running `script` (same protocol: JSON lines in, one JSON line out per request).
    pub(crate) fn start_script(script: &Path) -> Worker {
        let stderr = tempfile::tempfile().expect("create a file for the worker's stderr");
        let (program, args) = python();
        let mut child = Command::new(&program)
            .args(&args)
            .arg(script)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            // No profile or credentials file of the developer's may reach boto3.
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr.try_clone().expect("clone a file handle"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}) for the ASG worker: {INSTALL}",
                    program.display()
                )
            });
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, answers) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Worker {
            child,
            stdin,
            answers,
            stderr,
        }
    }

    /// One request, one answer line: `{"ok": ...}` or `{"error": "..."}`.
    pub(crate) fn call(&mut self, op: &str, args: &Value) -> Result<Value, String> {
        let request = json!({"op": op, "args": args}).to_string();
        if writeln!(self.stdin, "{request}").is_err() {
            return Err(format!("the worker is gone:\n{}", self.stderr()));
        }
        let line = match self.answers.recv_timeout(CALL_TIMEOUT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!("no answer within {CALL_TIMEOUT:?}"));
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                return Err(format!(
                    "the worker exited ({status}); is boto3 installed for it? {INSTALL}\n{}",
                    self.stderr()
                ));
            }
        };
        let mut answer: Value =
            serde_json::from_str(&line).map_err(|e| format!("unreadable answer ({e}): {line}"))?;
        match answer.get("error") {
            Some(error) => Err(error.as_str().unwrap_or_default().to_owned()),
            None => Ok(answer["ok"].take()),
        }
    }

    pub(crate) fn stderr(&self) -> String {
        use std::io::{Read, Seek};
        let mut file = &self.stderr;
        let mut text = String::new();
        let _ = file.rewind();
        let _ = file.read_to_string(&mut text);
        text
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // It would end on end of input; killing it is quicker and certain.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The worker's answer as instances; panics on any address outside loopback. (Crate-visible for
/// its self-test: no moto call in this world yields such an address.)
pub(crate) fn parse_instances(answer: Value) -> Vec<Instance> {
    /// As [`Instance`], before the address is checked.
    #[derive(Deserialize)]
    struct Raw {
        id: String,
        private_ip: Option<String>,
        zone: String,
        lifecycle: Option<String>,
        lifecycle_state: String,
        health_status: String,
        state: String,
    }
    let raw: Vec<Raw> = serde_json::from_value(answer.clone())
        .unwrap_or_else(|e| panic!("unexpected instances from the worker ({e}): {answer}"));
    raw.into_iter()
        .map(|r| {
            let private_ip = r.private_ip.unwrap_or_default();
            let loopback = private_ip
                .parse::<Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback());
            assert!(
                loopback,
                "moto gave instance {} the address `{private_ip}`, outside 127.0.0.0/8: the tests \
                 never connect outside loopback (DESIGN.md). Instances must be launched in the \
                 127.0.1.0/24 subnet, not moto's default VPC",
                r.id
            );
            Instance {
                id: r.id,
                private_ip,
                zone: r.zone,
                lifecycle: r.lifecycle,
                lifecycle_state: r.lifecycle_state,
                health_status: r.health_status,
                state: r.state,
            }
        })
        .collect()
}

/// The Python that runs `moto_server` (from its `#!` line), which has boto3 since moto needs
/// it; else `python3`. Returns the program and its leading arguments (`#!/usr/bin/env python3`).
pub(crate) fn python() -> (PathBuf, Vec<String>) {
    let server = std::env::var_os("MOTO_SERVER")
        .map(PathBuf::from)
        .or_else(|| find_in_path("moto_server"));
    let shebang = server
        .and_then(|path| fs_err::read_to_string(path).ok())
        .and_then(|text| {
            let first = text.lines().next()?.strip_prefix("#!")?.to_owned();
            Some(first)
        });
    let mut words = shebang
        .as_deref()
        .unwrap_or("python3")
        .split_whitespace()
        .map(str::to_owned);
    let program = words.next().unwrap_or_else(|| "python3".into());
    (PathBuf::from(program), words.collect())
}

/// The first `name` in `PATH`.
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| Path::new(candidate).is_file())
}

/// The last `max` bytes of `text` (at a character boundary).
pub(crate) fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
