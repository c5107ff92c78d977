//! The test world: real local servers, repositories, and a builder that runs the binary.
//!
//! Tests run the real `release` binary in a clean environment (nothing from the developer's
//! shell, `~/.aws` or git config leaks in) against loopback servers the tests start themselves:
//! moto for AWS ([`Moto`]), optionally behind a fault proxy ([`FaultProxy`]), and git
//! repositories on disk ([`Workspace`], [`BareRepo`]). A blocking [`S3`] client seeds and
//! inspects buckets. See DESIGN.md, "Test world".

// Each test module uses a different part of the harness; the rest would warn.
#![allow(dead_code, unused_imports)]

pub mod asg;
pub mod dir_store;
pub mod host_dir;
pub mod hosts;
pub mod interrupt;
pub mod moto;
pub mod proxy;
pub mod s3;
pub mod ssm;
pub mod workspace;

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use tempfile::TempDir;

pub use asg::{Asg, Instance, Market};
pub use hosts::Hosts;
pub use moto::Moto;
pub use proxy::{Action, Exchange, FaultProxy, RequestInfo};
pub use s3::S3;
pub use ssm::SsmStandIn;
pub use workspace::{BareRepo, Workspace};

/// Longest a single run of the binary may take before it is killed and the test fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Every subcommand of `release`, in the order its help lists them: completions, man pages and
/// help snapshots are checked for each.
pub const SUBCOMMANDS: [&str; 14] = [
    "build",
    "promote",
    "rollback",
    "list",
    "show",
    "history",
    "install",
    "current",
    "push",
    "status",
    "unlock",
    "key",
    "completions",
    "man",
];

/// A bucket name no other test uses: `{prefix}-{12 hex digits}` (tests share one moto server).
pub fn unique_bucket(prefix: &str) -> String {
    assert!(
        !prefix.is_empty()
            && prefix.len() <= 40
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && prefix.as_bytes()[0].is_ascii_alphanumeric(),
        "bucket prefix `{prefix}` must be 1-40 of [a-z0-9-], starting alphanumeric"
    );
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}

/// Incompressible bytes from a fixed seed (xorshift): archives of them span several upload
/// parts and take long enough to interrupt.
pub fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// One test's usual world: the shared moto, a fresh bucket in it, and a fresh git workspace.
pub struct TestContext {
    /// The shared server.
    pub moto: &'static Moto,
    /// A client for it.
    pub s3: S3,
    /// This test's bucket, already created.
    pub bucket: String,
    /// The working directory the binary runs in.
    pub workspace: Workspace,
}

impl TestContext {
    /// Starts (or reuses) the shared moto, creates a unique bucket and an empty workspace.
    pub fn new() -> TestContext {
        let moto = Moto::shared();
        let s3 = S3::new(&moto.endpoint());
        let bucket = unique_bucket("test");
        s3.create_bucket(&bucket);
        TestContext {
            moto,
            s3,
            bucket,
            workspace: Workspace::new(),
        }
    }

    /// The binary, run in the workspace against this context's server and bucket
    /// (`RELEASE_BUCKET`).
    pub fn release(&self) -> Release {
        Release::new()
            .current_dir(self.workspace.path())
            .endpoint(&self.moto.endpoint())
            .env("RELEASE_BUCKET", &self.bucket)
    }
}

impl Default for TestContext {
    fn default() -> Self {
        TestContext::new()
    }
}

/// A run of the `release` binary being set up, in the spirit of just's `Test` builder.
///
/// The environment starts empty, then gets `PATH`, a private temporary `HOME`, `LANG`, `TZ`,
/// AWS settings that cannot leave loopback (no instance metadata, dummy credentials, a region, an
/// endpoint: the shared moto unless [`Release::endpoint`] says otherwise) and no git system
/// config. Later `env`/`env_remove` calls override those defaults.
pub struct Release {
    command: std::process::Command,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    home: TempDir,
    /// The working directory the binary runs in unless [`Release::current_dir`] says otherwise:
    /// an empty one of its own, so no run sees the repository's `./release.toml` or git
    /// repository (cargo runs tests in the package root).
    cwd: TempDir,
    /// Environment changes made by the test, applied after the defaults.
    env: Vec<(OsString, Option<OsString>)>,
    stdout_contains: Vec<String>,
    stderr_contains: Vec<String>,
}

impl Release {
    /// The binary with a clean environment and no arguments.
    pub fn new() -> Release {
        let home = tempfile::Builder::new()
            .prefix("release-home-")
            .tempdir()
            .expect("create HOME");
        let cwd = tempfile::Builder::new()
            .prefix("release-cwd-")
            .tempdir()
            .expect("create a working directory");
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_release"));
        command.env_clear().current_dir(cwd.path());
        Release {
            command,
            stdin: None,
            timeout: RUN_TIMEOUT,
            home,
            cwd,
            env: Vec::new(),
            stdout_contains: Vec::new(),
            stderr_contains: Vec::new(),
        }
    }

    /// Runs the binary in `dir`.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.command.current_dir(dir);
        self
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.command.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command.args(args);
        self
    }

    /// Runs the binary through `wrapper` (a program and its first arguments, e.g.
    /// `["/usr/bin/time", "-f", "%M"]`), which gets the binary's path and arguments after its
    /// own. Call it after the arguments are added; the environment is set as usual.
    pub fn wrapped(mut self, wrapper: &[&str]) -> Self {
        let (program, first) = wrapper.split_first().expect("a wrapper program");
        let mut command = std::process::Command::new(program);
        command
            .args(first)
            .arg(self.command.get_program())
            .args(self.command.get_args())
            .env_clear();
        if let Some(dir) = self.command.get_current_dir() {
            command.current_dir(dir);
        }
        self.command = command;
        self
    }

    /// Sets an environment variable (overriding a default).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Removes an environment variable, defaults included.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// Sends every AWS request to `url` (`AWS_ENDPOINT_URL`), e.g. a private moto or a proxy.
    pub fn endpoint(self, url: &str) -> Self {
        self.env("AWS_ENDPOINT_URL", url)
    }

    /// Feeds `input` to the binary's stdin.
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    /// Overrides the default limit of 120 s for this run.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The temporary `HOME` the binary sees (empty unless the test puts files there).
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Expects stdout to contain `text` (checked when the binary has run).
    pub fn stdout_contains(mut self, text: &str) -> Self {
        self.stdout_contains.push(text.to_owned());
        self
    }

    /// Expects stderr to contain `text` (checked when the binary has run).
    pub fn stderr_contains(mut self, text: &str) -> Self {
        self.stderr_contains.push(text.to_owned());
        self
    }

    /// Runs the binary and checks the expected output, whatever the exit code; a run killed at
    /// its timeout fails the test (its partial output must not satisfy an assertion).
    pub fn run(mut self) -> Output {
        self.apply_env();
        let mut command = assert_cmd::Command::from_std(self.command);
        command.timeout(self.timeout);
        if let Some(input) = self.stdin {
            command.write_stdin(input);
        }
        let started = std::time::Instant::now();
        let output = command.output().expect("spawn the release binary");
        let mut output = Output {
            output,
            home: self.home,
        };
        output.fail_if_timed_out(started.elapsed(), self.timeout);
        for text in &self.stdout_contains {
            output = output.stdout_contains(text);
        }
        for text in &self.stderr_contains {
            output = output.stderr_contains(text);
        }
        output
    }

    /// Starts the binary without waiting (stdout and stderr piped), for tests that signal it
    /// mid-run. The caller bounds its waits; [`Running`] kills the process if dropped running.
    pub fn spawn(mut self) -> Running {
        self.apply_env();
        let child = self
            .command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn the release binary");
        Running {
            child: Some(child),
            home: self.home,
            _cwd: self.cwd,
        }
    }

    /// Runs the binary and expects exit code 0.
    pub fn success(self) -> Output {
        self.run().success()
    }

    /// Runs the binary and expects exit code `code`.
    pub fn code(self, code: i32) -> Output {
        self.run().code(code)
    }

    /// The defaults, then the test's changes; refuses an AWS endpoint outside loopback.
    fn apply_env(&mut self) {
        let home = self.home.path();
        let mut env: Vec<(OsString, Option<OsString>)> = vec![
            ("PATH".into(), std::env::var_os("PATH")),
            ("HOME".into(), Some(home.into())),
            ("LANG".into(), Some("C.UTF-8".into())),
            ("TZ".into(), Some("UTC".into())),
            ("RUST_BACKTRACE".into(), Some("1".into())),
            ("GIT_CONFIG_NOSYSTEM".into(), Some("1".into())),
            ("AWS_EC2_METADATA_DISABLED".into(), Some("true".into())),
            ("AWS_ACCESS_KEY_ID".into(), Some("test".into())),
            ("AWS_SECRET_ACCESS_KEY".into(), Some("test".into())),
            ("AWS_REGION".into(), Some("us-east-1".into())),
            (
                "AWS_CONFIG_FILE".into(),
                Some(home.join(".aws/config").into()),
            ),
            (
                "AWS_SHARED_CREDENTIALS_FILE".into(),
                Some(home.join(".aws/credentials").into()),
            ),
        ];
        if !self.env.iter().any(|(key, _)| key == "AWS_ENDPOINT_URL") {
            // Started only when a test runs the binary without choosing an endpoint.
            env.push((
                "AWS_ENDPOINT_URL".into(),
                Some(Moto::shared().endpoint().into()),
            ));
        }
        env.append(&mut self.env);
        let mut effective: Vec<(OsString, OsString)> = Vec::new();
        for (key, value) in env {
            effective.retain(|(k, _)| *k != key);
            match value {
                Some(value) => {
                    self.command.env(&key, &value);
                    effective.push((key, value));
                }
                None => {
                    self.command.env_remove(&key);
                }
            };
        }
        check_endpoints(
            effective
                .iter()
                .map(|(k, v)| (k.to_string_lossy(), v.to_string_lossy())),
        );
    }
}

/// Panics unless every AWS endpoint variable (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`,
/// `_EC2`, `_AUTO_SCALING`, ...) is an `http://` URL whose host is an IPv4 address in
/// 127.0.0.0/8, and unless `AWS_ENDPOINT_URL` is set at all (without it the SDK goes to AWS).
/// `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` would make the SDK ignore them all: refused too.
pub fn check_endpoints<K: AsRef<str>, V: AsRef<str>>(env: impl IntoIterator<Item = (K, V)>) {
    let mut general = false;
    for (key, value) in env {
        let (key, value) = (key.as_ref(), value.as_ref());
        if key.starts_with("AWS_ENDPOINT_URL") {
            assert_loopback_url(key, value);
            general |= key == "AWS_ENDPOINT_URL";
        }
        assert!(
            key != "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS" || value.is_empty() || value == "false",
            "tests only reach loopback: {key}={value} would send requests to AWS itself"
        );
    }
    assert!(
        general,
        "tests only reach loopback: AWS_ENDPOINT_URL must be set to an http://127.x.x.x:PORT"
    );
}

/// Panics unless `url` is `http://127.x.x.x[:PORT][/...]`: the host parsed as an address, so
/// a name such as `127.example.com` or `127.0.0.1@example.com` is refused.
pub fn assert_loopback_url(key: &str, url: &str) {
    let host = url
        .strip_prefix("http://")
        .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default())
        .filter(|authority| !authority.contains('@'))
        .map(|authority| {
            authority
                .rsplit_once(':')
                .map_or(authority, |(host, _)| host)
        });
    let loopback = host
        .and_then(|host| host.parse::<std::net::Ipv4Addr>().ok())
        .is_some_and(|ip| ip.is_loopback());
    assert!(
        loopback,
        "tests only reach loopback: {key} must be http://127.x.x.x:PORT, not `{url}`"
    );
}

impl Default for Release {
    fn default() -> Self {
        Release::new()
    }
}

/// A run of the binary still going (see [`Release::spawn`]).
pub struct Running {
    child: Option<std::process::Child>,
    home: TempDir,
    /// The default working directory, kept while the process runs.
    _cwd: TempDir,
}

impl Running {
    /// The process id, to signal it.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().expect("wait for release").is_none())
    }

    /// Sends `signal` (e.g. "TERM") with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Waits at most `limit` for the process to end; panics (after killing it) if it does not.
    pub fn wait(mut self, limit: Duration) -> Output {
        let mut child = self.child.take().expect("running child");
        let start = std::time::Instant::now();
        while child.try_wait().expect("wait for release").is_none() {
            if start.elapsed() > limit {
                let _ = child.kill();
                panic!("release did not end within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output().expect("collect output");
        Output {
            output,
            home: std::mem::replace(&mut self.home, tempfile::tempdir().expect("tempdir")),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A finished run of the binary.
pub struct Output {
    /// Exit status, stdout and stderr.
    pub output: std::process::Output,
    /// The `HOME` it ran with, kept until the test is done with the output.
    home: TempDir,
}

impl Output {
    /// The exit status.
    pub fn status(&self) -> ExitStatus {
        self.output.status
    }

    /// Stdout as text (lossy UTF-8).
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    /// Stderr as text (lossy UTF-8).
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// The `HOME` the binary ran with.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Stdout parsed as one JSON document (`--output json`).
    pub fn stdout_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.output.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}){}", self.report()))
    }

    /// Panics if the run ended by SIGKILL at or after `limit`: assert_cmd's timeout killed it.
    fn fail_if_timed_out(&self, elapsed: Duration, limit: Duration) {
        use std::os::unix::process::ExitStatusExt;
        let killed = self.output.status.signal() == Some(9);
        assert!(
            !(killed && elapsed >= limit),
            "release ran longer than its {limit:?} limit and was killed{}",
            self.report()
        );
    }

    /// Asserts exit code 0.
    pub fn success(self) -> Self {
        self.code(0)
    }

    /// Asserts exit code `code`.
    pub fn code(self, code: i32) -> Self {
        assert_eq!(
            self.output.status.code(),
            Some(code),
            "unexpected exit{}",
            self.report()
        );
        self
    }

    /// Asserts stdout contains `text`.
    pub fn stdout_contains(self, text: &str) -> Self {
        assert!(
            self.stdout().contains(text),
            "stdout lacks {text:?}{}",
            self.report()
        );
        self
    }

    /// Asserts stderr contains `text`.
    pub fn stderr_contains(self, text: &str) -> Self {
        assert!(
            self.stderr().contains(text),
            "stderr lacks {text:?}{}",
            self.report()
        );
        self
    }

    /// Status, stdout and stderr, for failure messages.
    fn report(&self) -> String {
        let status = match self.output.status.code() {
            Some(code) => format!("exit code {code}"),
            None => format!(
                "{} (killed by a signal: did it time out?)",
                self.output.status
            ),
        };
        format!(
            "\n--- {status}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.stdout(),
            self.stderr()
        )
    }
}
