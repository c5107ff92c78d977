//! The SSM transport: a batch goes to Systems Manager Run Command as a whole. Agents are asked
//! first (an instance whose agent is not Online fails as unreachable, nothing is sent to it),
//! then one SendCommand per 50 instances runs the same script everywhere: the remote command
//! (install, or `--command`), then the health command on the host. The controller polls the
//! invocations with a growing pause (SSM throttles fast pollers), maps each terminal status to a
//! report line, and on a signal cancels what still runs.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use release_fleet::ssm::{Agent, Invocation, MAX_IDS_PER_CALL, OutputLocation, Send, Ssm, Status};
use tokio_util::sync::CancellationToken;

use super::health::{self, HealthCheck};
use super::targets::Target;
use super::template::quote;
use super::{HostReport, HostResult, Rollout, Runner, join_hosts, remote_command, unstarted};
use crate::bucket::store::Store;

/// First pause before asking SSM how the commands are doing: installs take seconds.
const FIRST_POLL: Duration = Duration::from_secs(1);
/// The longest pause between two polls: a finished host waits at most this for its line.
const MAX_POLL: Duration = Duration::from_secs(10);
/// How long the script may run on a host before the agent kills it, besides the health
/// timeout: installs of large builds take minutes, never an hour.
const EXECUTION_TIMEOUT: u64 = 3600;
/// How long, after a signal, to wait for SSM to confirm that cancelled commands ended.
const CANCEL_WAIT: Duration = Duration::from_secs(30);
/// Polls in a row that may fail (after the SDK's own retries) before the push gives up on a
/// command: a transient outage must not fail hosts that are fine.
const MAX_POLL_ERRORS: u32 = 5;
/// AWS's line between stdout and stderr in a plugin's inline output.
const ERROR_SEPARATOR: &str = "----------ERROR-------";
/// AWS's mark at the end of inline output that was cut.
const TRUNCATED: &str = "---Output truncated---";
/// Lines of stderr a failed line quotes.
const TAIL_LINES: usize = 5;

/// What the SSM transport needs besides the rollout.
pub(crate) struct Link {
    ssm: Ssm,
    /// `--ssm-output`'s bucket, opened to read back full outputs.
    logs: Option<Store>,
    /// When SSM was last asked about a command (a poll or a GetCommandInvocation): the next
    /// GetCommandInvocation waits [`FIRST_POLL`] after it, as polls do, since SSM throttles
    /// calls about one command that come too fast.
    last_call: tokio::sync::Mutex<Option<Instant>>,
}

impl Link {
    /// `logs` reads `--ssm-output`'s bucket, when one is given.
    pub(crate) fn new(ssm: Ssm, logs: Option<Store>) -> Link {
        Link {
            ssm,
            logs,
            last_call: tokio::sync::Mutex::new(None),
        }
    }

    /// GetCommandInvocation, at least [`FIRST_POLL`] after the previous call.
    async fn output(&self, command_id: &str, instance_id: &str) -> Result<(String, String)> {
        let mut last = self.last_call.lock().await;
        if let Some(at) = *last {
            tokio::time::sleep(FIRST_POLL.saturating_sub(at.elapsed())).await;
        }
        let got = self.ssm.output(command_id, instance_id).await;
        *last = Some(Instant::now());
        Ok(got?)
    }
}

/// The pause before each poll: 1 s, then ×1.5 up to 10 s.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff { next: FIRST_POLL }
    }

    /// The pause to take now; the following one is longer, up to [`MAX_POLL`].
    pub(crate) fn pause(&mut self) -> Duration {
        let now = self.next;
        self.next = self.next.mul_f64(1.5).min(MAX_POLL);
        now
    }
}

/// How one instance's part of the batch ended, before it becomes a report line.
#[derive(Debug, Clone)]
enum Ended {
    /// Its agent is not Online (or SSM could not say): nothing was sent. The whole reason.
    Unreachable(String),
    /// Nothing was sent: SendCommand failed, or a signal came first.
    NotSent(HostResult, String),
    /// SSM says it is over.
    Finished {
        command_id: String,
        invocation: Invocation,
        /// Seconds from the batch's start.
        seconds: f64,
    },
    /// No terminal status came: the poll failed, or the wait ran out.
    Lost(String),
}

/// The instance id of a target (SSM targets always have one: `--via ssm` needs `--asg`).
fn id(target: &Target) -> String {
    target
        .instance
        .clone()
        .unwrap_or_else(|| target.host.clone())
}

/// The hosts of one batch through Run Command; their reports in the batch's order.
pub(super) async fn run_batch(
    runner: &Arc<Runner>,
    link: &Link,
    batch: Vec<Target>,
    cancel: &CancellationToken,
) -> Vec<HostReport> {
    let started = Instant::now();
    let mut ended = check_agents(link, &batch).await;
    let online: Vec<&Target> = batch
        .iter()
        .filter(|t| !ended.contains_key(&id(t)))
        .collect();
    if cancel.is_cancelled() {
        for target in online {
            let why = "interrupted before its command was sent".to_owned();
            ended.insert(id(target), Ended::NotSent(HostResult::NotStarted, why));
        }
    } else if !online.is_empty() {
        let sent = send_all(&runner.rollout, link, &online, &mut ended).await;
        poll(link, &sent, cancel, started, &mut ended).await;
    }
    let ended = Arc::new(Mutex::new(ended));
    join_hosts(batch, |target| {
        let runner = Arc::clone(runner);
        let outcome = ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id(&target));
        async move { finish(&runner, target, outcome).await }
    })
    .await
}

/// Instances whose agent is not Online (or that SSM does not know), with why; those left out
/// are Online. If the question itself fails, every instance is unreachable, saying why.
async fn check_agents(link: &Link, batch: &[Target]) -> BTreeMap<String, Ended> {
    let ids: Vec<String> = batch.iter().map(id).collect();
    match link.ssm.agents(&ids).await {
        Ok(agents) => agents
            .into_iter()
            .filter_map(|(id, agent)| {
                let state = match agent {
                    Agent::Online => return None,
                    Agent::Offline(ping) => ping,
                    Agent::NotRegistered => "not registered".to_owned(),
                };
                let why = format!("not reachable over SSM: agent {state}");
                Some((id, Ended::Unreachable(why)))
            })
            .collect(),
        Err(err) => ids
            .into_iter()
            .map(|id| {
                let why = format!("not reachable over SSM: {err}");
                (id, Ended::Unreachable(why))
            })
            .collect(),
    }
}

/// One command sent: its id and the instances it went to.
struct Sent {
    command_id: String,
    ids: Vec<String>,
}

/// SendCommand per 50 instances; a chunk whose send fails ends its instances as not sent.
async fn send_all(
    rollout: &Rollout,
    link: &Link,
    online: &[&Target],
    ended: &mut BTreeMap<String, Ended>,
) -> Vec<Sent> {
    let mut sent = Vec::new();
    for (chunk, ids) in online.chunks(MAX_IDS_PER_CALL).zip(id_chunks(online)) {
        let result = match script(rollout, chunk) {
            Ok(commands) => {
                let send = Send {
                    instance_ids: &ids,
                    commands,
                    execution_timeout: EXECUTION_TIMEOUT + rollout.health_timeout.as_secs(),
                    output: rollout.ssm_output.as_ref(),
                    comment: format!("release push {} {}", rollout.artifact, rollout.version),
                };
                link.ssm.send(&send).await.map_err(anyhow::Error::from)
            }
            Err(err) => Err(err),
        };
        match result {
            Ok(command_id) => sent.push(Sent { command_id, ids }),
            Err(err) => {
                for id in ids {
                    let why = format!("its command was not sent: {err:#}");
                    ended.insert(id, Ended::NotSent(HostResult::Failed, why));
                }
            }
        }
    }
    sent
}

/// The ids of `online`, at most 50 per SendCommand (AWS refuses more).
fn id_chunks(online: &[&Target]) -> Vec<Vec<String>> {
    online
        .chunks(MAX_IDS_PER_CALL)
        .map(|chunk| chunk.iter().map(|t| id(t)).collect())
        .collect()
}

/// Polls every command until each of its instances has a terminal status; on a signal cancels
/// them, then waits (bounded) for SSM to confirm.
async fn poll(
    link: &Link,
    sent: &[Sent],
    cancel: &CancellationToken,
    started: Instant,
    ended: &mut BTreeMap<String, Ended>,
) {
    let mut backoff = Backoff::new();
    let mut cancelled_at: Option<Instant> = None;
    let mut errors: BTreeMap<&str, (u32, String)> = BTreeMap::new();
    // SSM ends every invocation by itself (delivery or execution timeout); this bound only
    // guards against a service that never says so.
    let limit = Duration::from_secs(2 * EXECUTION_TIMEOUT);
    loop {
        let waiting: Vec<&Sent> = sent
            .iter()
            .filter(|s| s.ids.iter().any(|id| !ended.contains_key(id)))
            .collect();
        if waiting.is_empty() {
            return;
        }
        if cancelled_at.is_some_and(|at| at.elapsed() > CANCEL_WAIT) || started.elapsed() > limit {
            lose_rest(sent, ended, cancelled_at.is_some());
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff.pause()) => {}
            () = cancel.cancelled(), if cancelled_at.is_none() => {
                cancel_all(link, &waiting).await;
                cancelled_at = Some(Instant::now());
                // Cancelled commands end within seconds: look again soon.
                backoff = Backoff::new();
                continue;
            }
        }
        for command in waiting {
            poll_one(link, command, started, ended, &mut errors).await;
        }
    }
}

/// One ListCommandInvocations of `command`; terminal invocations end their instance. After
/// [`MAX_POLL_ERRORS`] failures in a row, its instances are lost.
async fn poll_one<'a>(
    link: &Link,
    command: &'a Sent,
    started: Instant,
    ended: &mut BTreeMap<String, Ended>,
    errors: &mut BTreeMap<&'a str, (u32, String)>,
) {
    let polled = link.ssm.invocations(&command.command_id).await;
    *link.last_call.lock().await = Some(Instant::now());
    match polled {
        Ok(invocations) => {
            errors.remove(command.command_id.as_str());
            // An empty list right after SendCommand means "not yet", as does a missing id.
            for invocation in invocations {
                let id = invocation.instance_id.clone();
                if invocation.status.is_terminal()
                    && command.ids.contains(&id)
                    && !ended.contains_key(&id)
                {
                    let seconds = started.elapsed().as_secs_f64();
                    let command_id = command.command_id.clone();
                    ended.insert(
                        id,
                        Ended::Finished {
                            command_id,
                            invocation,
                            seconds,
                        },
                    );
                }
            }
        }
        Err(err) => {
            let entry = errors
                .entry(command.command_id.as_str())
                .or_insert((0, String::new()));
            *entry = (entry.0 + 1, err.to_string());
            if entry.0 >= MAX_POLL_ERRORS {
                let why = format!(
                    "lost track of SSM command {}: {}; it may still be running there",
                    command.command_id, entry.1
                );
                for id in &command.ids {
                    ended
                        .entry(id.clone())
                        .or_insert_with(|| Ended::Lost(why.clone()));
                }
            }
        }
    }
}

/// CancelCommand for each command still running; a failure is part of the lines' story.
async fn cancel_all(link: &Link, waiting: &[&Sent]) {
    for command in waiting {
        if let Err(err) = link.ssm.cancel(&command.command_id).await {
            tracing::warn!("CancelCommand {} failed: {err}", command.command_id);
        }
    }
}

/// Instances that never got a terminal status.
fn lose_rest(sent: &[Sent], ended: &mut BTreeMap<String, Ended>, cancelled: bool) {
    for command in sent {
        let why = if cancelled {
            format!(
                "cancelled (SSM command {}), but SSM had not confirmed its end after {}s; it \
                 may still be running there",
                command.command_id,
                CANCEL_WAIT.as_secs()
            )
        } else {
            format!(
                "SSM command {} gave no final status in time; it may still be running there",
                command.command_id
            )
        };
        for id in &command.ids {
            ended
                .entry(id.clone())
                .or_insert_with(|| Ended::Lost(why.clone()));
        }
    }
}

/// The script every instance of `targets` runs: its own remote command (chosen by the id the
/// agent puts in `AWS_SSM_INSTANCE_ID` when the commands differ), then the health command.
/// Every value is one quoted word: the command itself is `eval`ed from a single-quoted
/// variable, so nothing in it can change the script around it.
pub(crate) fn script(rollout: &Rollout, targets: &[&Target]) -> Result<Vec<String>> {
    let mut commands: Vec<(String, String)> = Vec::new();
    for target in targets {
        commands.push((
            id(target),
            remote_command(rollout, target, "ssm")?.to_string(),
        ));
    }
    let mut lines = vec!["set -u".to_owned()];
    let first = commands.first().map(|(_, c)| c.clone()).unwrap_or_default();
    if commands.iter().all(|(_, c)| *c == first) {
        lines.push(format!("release_command={}", quote(&first)));
    } else {
        lines.push("case \"${AWS_SSM_INSTANCE_ID:-}\" in".to_owned());
        for (id, command) in &commands {
            lines.push(format!(
                "  {}) release_command={} ;;",
                quote(id),
                quote(command)
            ));
        }
        lines.push(
            "  *) echo \"release push: no command for instance '${AWS_SSM_INSTANCE_ID:-?}' \
             (the SSM agent sets AWS_SSM_INSTANCE_ID)\" >&2; exit 125 ;;"
                .to_owned(),
        );
        lines.push("esac".to_owned());
    }
    lines.push("eval \"$release_command\"".to_owned());
    lines.push("release_status=$?".to_owned());
    lines.push("[ \"$release_status\" -eq 0 ] || exit \"$release_status\"".to_owned());
    if let HealthCheck::Command(check) = &rollout.health {
        lines.extend(health_lines(check, rollout.health_timeout));
    }
    Ok(lines)
}

/// The health command on the host, retried every second until `timeout`; its stdout goes to
/// stderr so that stdout stays install's JSON document.
fn health_lines(check: &str, timeout: Duration) -> Vec<String> {
    let secs = timeout.as_secs();
    vec![
        format!("release_health={}", quote(check)),
        format!("release_deadline=$(( $(date +%s) + {secs} ))"),
        "while :; do".to_owned(),
        "  ( eval \"$release_health\" ) >&2".to_owned(),
        "  release_status=$?".to_owned(),
        "  [ \"$release_status\" -eq 0 ] && break".to_owned(),
        "  if [ \"$(date +%s)\" -ge \"$release_deadline\" ]; then".to_owned(),
        format!(
            "    echo \"release push: not healthy after {secs}s: the health command exited \
             $release_status\" >&2"
        ),
        "    exit \"$release_status\"".to_owned(),
        "  fi".to_owned(),
        "  sleep 1".to_owned(),
        "done".to_owned(),
    ]
}

/// One instance's report line from how it ended.
async fn finish(runner: &Runner, target: Target, ended: Option<Ended>) -> HostReport {
    let mut line = unstarted(&target, HostResult::Failed);
    let outcome = match ended {
        Some(Ended::Unreachable(why)) => Err(why),
        Some(Ended::NotSent(result, why)) => {
            line.result = result;
            Err(why)
        }
        Some(Ended::Lost(why)) => Err(why),
        Some(Ended::Finished {
            command_id,
            invocation,
            seconds,
        }) => {
            line.seconds = seconds;
            let done = finished(runner, &target, &command_id, &invocation, &mut line).await;
            done.map_err(|e| format!("{e:#}"))
        }
        None => Err("internal error: no outcome for this instance".to_owned()),
    };
    match outcome {
        Ok(()) => {
            line.result = HostResult::Ok;
            runner
                .printer
                .status(&format!("[{}] ok in {:.1}s", target.host, line.seconds));
        }
        Err(text) => {
            if line.result == HostResult::Failed {
                runner
                    .printer
                    .status(&format!("[{}] FAILED: {text}", target.host));
            }
            line.error = Some(text);
        }
    }
    line
}

/// A finished invocation: its output read (from S3 when cut and `--ssm-output` is given),
/// shown, logged; then its status, install's document and the controller's health check.
async fn finished(
    runner: &Runner,
    target: &Target,
    command_id: &str,
    invocation: &Invocation,
    line: &mut HostReport,
) -> Result<()> {
    let rollout = &runner.rollout;
    let link = match &runner.transport {
        super::Transport::Ssm(link) => link,
        super::Transport::Ssh(_) => anyhow::bail!("internal error: not an SSM push"),
    };
    if let Some(location) = &rollout.ssm_output {
        let key = location.key(command_id, &invocation.instance_id, "stdout");
        line.log = Some(format!("s3://{}/{key}", location.bucket));
    }
    let (stdout, stderr) = outputs(rollout, link, command_id, invocation).await?;
    show(runner, target, &stdout, &stderr);
    check_status(rollout, invocation, &stderr)?;
    if rollout.template.is_none() {
        let doc = install_document(&stdout, rollout.ssm_output.is_some())?;
        line.before = doc["previous"].as_u64();
        line.after = doc["version"].as_u64();
    }
    if let HealthCheck::Url(url) = &rollout.health {
        health::wait_url(url, &target.host, &target.address, rollout.health_timeout).await?;
    }
    Ok(())
}

/// stdout and stderr, as far as the report needs them. The listing's inline output is cut at
/// 2,500 characters; when what is needed was cut (install's JSON on stdout; stderr's tail of a
/// failure), it is read whole from `--ssm-output`, else from GetCommandInvocation (24,000 and
/// 8,000 characters). Nothing more is asked for hosts whose listing says it all, so requests
/// stay per command, not per host.
async fn outputs(
    rollout: &Rollout,
    link: &Link,
    command_id: &str,
    invocation: &Invocation,
) -> Result<(String, String)> {
    let (stdout, stderr) = split_output(&invocation.output);
    let stdout_cut = is_truncated(&stdout);
    let need_stdout = stdout_cut && rollout.template.is_none();
    let need_stderr = invocation.status != Status::Success && (stdout_cut || is_truncated(&stderr));
    if !need_stdout && !need_stderr {
        return Ok((stdout, stderr));
    }
    let Some(location) = &rollout.ssm_output else {
        return link.output(command_id, &invocation.instance_id).await;
    };
    let stdout = if need_stdout {
        read_full(link, location, command_id, invocation, "stdout").await?
    } else {
        stdout
    };
    let stderr = if need_stderr {
        read_full(link, location, command_id, invocation, "stderr").await?
    } else {
        stderr
    };
    Ok((stdout, stderr))
}

/// Install's stderr (and a `--command`'s stdout) for people, as over SSH; the whole output in
/// the `--log-dir` file.
fn show(runner: &Runner, target: &Target, stdout: &str, stderr: &str) {
    for text in stderr.lines().filter(|l| !l.trim().is_empty()) {
        runner.printer.status(&format!("[{}] {text}", target.host));
    }
    if runner.rollout.template.is_some() {
        for text in stdout.lines().filter(|l| !l.trim().is_empty()) {
            runner.printer.status(&format!("[{}] {text}", target.host));
        }
    }
    if let Some(dir) = &runner.rollout.log_dir {
        let path = dir.join(format!("{}.log", target.host));
        let written = fs_err::File::create(&path)
            .and_then(|mut f| f.write_all(format!("{stderr}{stdout}").as_bytes()));
        if let Err(err) = written {
            runner.printer.warn(&format!("cannot write the log: {err}"));
        }
    }
}

/// Ok for Success; otherwise an error naming the status, what it means, the exit code and the
/// tail of stderr.
fn check_status(rollout: &Rollout, invocation: &Invocation, stderr: &str) -> Result<()> {
    let status = &invocation.status;
    let meaning = match status {
        Status::Success => return Ok(()),
        Status::Failed => "the script failed".to_owned(),
        Status::TimedOut => format!(
            "the script ran longer than its execution timeout ({}s)",
            EXECUTION_TIMEOUT + rollout.health_timeout.as_secs()
        ),
        Status::Cancelled => "the command was cancelled".to_owned(),
        Status::DeliveryTimedOut => {
            "the agent never picked the command up (is it running, and can it reach SSM?)"
                .to_owned()
        }
        Status::Undeliverable => {
            "SSM could not deliver it (the instance is gone or unknown)".into()
        }
        Status::Terminated => "the instance stopped while the command ran".to_owned(),
        Status::Running | Status::Other(_) => format!("unexpected status ({})", invocation.details),
    };
    let code = match invocation.exit_code {
        Some(code) if code >= 0 => format!(", exit code {code}"),
        _ => String::new(),
    };
    let mut tail = stderr_tail(stderr);
    if is_truncated(stderr) && rollout.ssm_output.is_none() {
        tail.push_str(" (stderr was truncated by SSM; give --ssm-output for all of it)");
    }
    anyhow::bail!("SSM status {}: {meaning}{code}: {tail}", status.as_str())
}

/// Install's `--output json` document from stdout.
fn install_document(stdout: &str, full: bool) -> Result<serde_json::Value> {
    if is_truncated(stdout) && !full {
        anyhow::bail!(
            "SSM says Success, but the output was truncated (SSM returns 24,000 characters of \
             stdout) and install's JSON document with it: give --ssm-output s3://BUCKET/PREFIX \
             to read the whole output"
        );
    }
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    serde_json::from_str::<serde_json::Value>(stdout.trim())
        .or_else(|_| serde_json::from_str(last.trim()))
        .map_err(|err| {
            anyhow::anyhow!(
                "SSM says Success, but stdout is not install's JSON document ({err}): `{}`",
                last.chars().take(200).collect::<String>()
            )
        })
}

/// The full stdout or stderr SSM wrote under `--ssm-output`.
async fn read_full(
    link: &Link,
    location: &OutputLocation,
    command_id: &str,
    invocation: &Invocation,
    stream: &str,
) -> Result<String> {
    let key = location.key(command_id, &invocation.instance_id, stream);
    let url = format!("s3://{}/{key}", location.bucket);
    let store = link
        .logs
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("internal error: no client for {url}"))?;
    match store.get(&key).await {
        Ok(Some(object)) => Ok(String::from_utf8_lossy(&object.body).into_owned()),
        Ok(None) => anyhow::bail!(
            "the output was truncated and {url} does not exist (can the instance profile write \
             to the --ssm-output bucket?)"
        ),
        Err(err) => anyhow::bail!("the output was truncated and reading {url} failed: {err}"),
    }
}

/// stdout and stderr from a plugin's inline output (AWS puts stderr after its separator line).
pub(crate) fn split_output(output: &str) -> (String, String) {
    match output.split_once(ERROR_SEPARATOR) {
        Some((out, err)) => (
            out.strip_suffix('\n').unwrap_or(out).to_owned(),
            err.strip_prefix('\n').unwrap_or(err).to_owned(),
        ),
        None => (output.to_owned(), String::new()),
    }
}

/// Whether SSM cut this text.
pub(crate) fn is_truncated(text: &str) -> bool {
    text.trim_end().ends_with(TRUNCATED)
}

/// The last lines of stderr, joined for one report line.
fn stderr_tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && l.trim() != TRUNCATED)
        .collect();
    let tail = &lines[lines.len().saturating_sub(TAIL_LINES)..];
    if tail.is_empty() {
        "(no stderr)".to_owned()
    } else {
        tail.join(" / ")
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::rollout::plan::BatchSize;
    use crate::rollout::ssh::SshOptions;
    use crate::rollout::{Remote, Via};

    fn rollout(template: Option<&str>, health: HealthCheck) -> Rollout {
        Rollout {
            artifact: "web".into(),
            version: 7,
            push_id: "20261201T000000Z-0123abcd".into(),
            bucket: "builds".into(),
            stage: "prod".into(),
            remote: Remote {
                sudo: false,
                binary: "/usr/local/bin/release".into(),
                dir: None,
            },
            template: template.map(str::to_owned),
            health,
            health_timeout: Duration::from_secs(2),
            max_failures: 0,
            batch: BatchSize::Hosts(1),
            ssh: SshOptions {
                user: None,
                port: None,
                config: None,
                identity: None,
                host_keys: openssh::KnownHosts::Strict,
                connect_timeout: Duration::from_secs(1),
            },
            max_connections: 1,
            log_dir: None,
            via: Via::Ssm,
            ssm_output: None,
        }
    }

    fn target(id: &str) -> Target {
        Target {
            host: id.to_owned(),
            address: "10.0.0.1".to_owned(),
            instance: Some(id.to_owned()),
            group: Some("web".to_owned()),
            lifecycle: None,
            zone: None,
        }
    }

    /// Runs `lines` as SSM would (`bash -c`, lines joined), as instance `id`, in `dir`.
    fn run(lines: &[String], id: &str, dir: &std::path::Path) -> std::process::Output {
        Command::new("bash")
            .arg("-c")
            .arg(lines.join("\n"))
            .env("AWS_SSM_INSTANCE_ID", id)
            .current_dir(dir)
            .output()
            .unwrap()
    }

    #[test]
    fn backoff_grows_by_half_up_to_ten_seconds() {
        let mut backoff = Backoff::new();
        let pauses: Vec<u128> = (0..9).map(|_| backoff.pause().as_millis()).collect();
        assert_eq!(
            pauses,
            [1000, 1500, 2250, 3375, 5062, 7593, 10000, 10000, 10000]
        );
    }

    #[test]
    fn inline_output_splits_at_the_error_line_and_knows_truncation() {
        let (out, err) = split_output("{\"a\":1}\n----------ERROR-------\nwarn\nboom");
        assert_eq!((out.as_str(), err.as_str()), ("{\"a\":1}", "warn\nboom"));
        let (out, err) = split_output("only out\n");
        assert_eq!((out.as_str(), err.as_str()), ("only out\n", ""));
        assert!(is_truncated("xxxx\n---Output truncated---"));
        assert!(!is_truncated("xxxx"));
        assert_eq!(
            stderr_tail("a\nb\nc\nd\ne\nf\n---Output truncated---"),
            "b / c / d / e / f"
        );
        assert_eq!(stderr_tail(""), "(no stderr)");
    }

    /// Hostile values (spaces, quotes, `$(…)`, `;`, backticks) stay single words: what runs
    /// gets each as one argument, and nothing they spell is executed.
    #[test]
    fn hostile_values_stay_single_words_in_the_script() {
        let dir = tempfile::tempdir().unwrap();
        let hostile = "a b'c\"d;touch MARK1;$(touch MARK2)`touch MARK3`";
        let mut plain = rollout(None, HealthCheck::None);
        plain.stage = hostile.to_owned();
        // A "release" that prints its arguments one per line.
        let echo = dir.path().join("args.sh");
        fs_err::write(
            &echo,
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n",
        )
        .unwrap();
        rustix::fs::chmod(&echo, rustix::fs::Mode::from_raw_mode(0o755)).unwrap();
        plain.remote.binary = echo.display().to_string();
        let lines = script(&plain, &[&target("i-1")]).unwrap();
        let ran = run(&lines, "i-1", dir.path());
        assert!(ran.status.success(), "{ran:?}");
        let args = String::from_utf8(ran.stdout).unwrap();
        let args: Vec<&str> = args.lines().collect();
        assert_eq!(args[..2], ["install", "7"], "{args:?}");
        let stage = args.iter().position(|a| *a == "--stage").unwrap();
        assert_eq!(args[stage + 1], hostile, "{args:?}");
        assert_eq!(args[args.len() - 2..], ["--output", "json"], "{args:?}");
        let templated = rollout(Some("printf '%s\\n' {stage} {instance}"), HealthCheck::None);
        let mut templated = templated;
        templated.stage = hostile.to_owned();
        let lines = script(&templated, &[&target("i-1")]).unwrap();
        let ran = run(&lines, "i-1", dir.path());
        assert_eq!(
            String::from_utf8_lossy(&ran.stdout),
            format!("{hostile}\ni-1\n")
        );
        for mark in ["MARK1", "MARK2", "MARK3"] {
            assert!(!dir.path().join(mark).exists(), "{mark} was created");
        }
    }

    /// Commands that differ per instance are chosen by the agent's AWS_SSM_INSTANCE_ID; an
    /// instance with none of them fails rather than run another's.
    #[test]
    fn each_instance_runs_its_own_command() {
        let dir = tempfile::tempdir().unwrap();
        let per_host = rollout(Some("echo {instance}"), HealthCheck::None);
        let (one, two) = (target("i-1"), target("i-2"));
        let lines = script(&per_host, &[&one, &two]).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&run(&lines, "i-2", dir.path()).stdout),
            "i-2\n"
        );
        assert_eq!(
            String::from_utf8_lossy(&run(&lines, "i-1", dir.path()).stdout),
            "i-1\n"
        );
        let stranger = run(&lines, "i-3", dir.path());
        assert_eq!(stranger.status.code(), Some(125));
        // The same command everywhere needs no dispatch.
        let same = script(&rollout(Some("true"), HealthCheck::None), &[&one, &two]).unwrap();
        assert!(!same.join("\n").contains("AWS_SSM_INSTANCE_ID"));
    }

    /// Install's failure is the script's exit code; the health command runs after a good
    /// install, its stdout kept off stdout, and its failure ends the script non-zero in time.
    #[test]
    fn the_health_command_runs_after_the_install_in_the_same_script() {
        let dir = tempfile::tempdir().unwrap();
        let failing = rollout(Some("exit 3"), HealthCheck::Command("touch HEALTH".into()));
        let ran = run(
            &script(&failing, &[&target("i-1")]).unwrap(),
            "i-1",
            dir.path(),
        );
        assert_eq!(ran.status.code(), Some(3));
        assert!(
            !dir.path().join("HEALTH").exists(),
            "health ran after a failed install"
        );
        let healthy = rollout(
            Some("echo '{{\"version\":7}}'"),
            HealthCheck::Command("echo checking; test -e ok".into()),
        );
        fs_err::write(dir.path().join("ok"), "").unwrap();
        let ran = run(
            &script(&healthy, &[&target("i-1")]).unwrap(),
            "i-1",
            dir.path(),
        );
        assert!(ran.status.success(), "{ran:?}");
        assert_eq!(String::from_utf8_lossy(&ran.stdout), "{\"version\":7}\n");
        assert!(String::from_utf8_lossy(&ran.stderr).contains("checking"));
        fs_err::remove_file(dir.path().join("ok")).unwrap();
        let started = Instant::now();
        let ran = run(
            &script(&healthy, &[&target("i-1")]).unwrap(),
            "i-1",
            dir.path(),
        );
        assert_eq!(ran.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&ran.stderr).contains("not healthy after 2s"),
            "{ran:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(6));
    }

    #[test]
    fn instances_go_in_chunks_of_fifty() {
        let targets: Vec<Target> = (0..120).map(|n| target(&format!("i-{n}"))).collect();
        let refs: Vec<&Target> = targets.iter().collect();
        let sizes: Vec<usize> = id_chunks(&refs).iter().map(Vec::len).collect();
        assert_eq!(sizes, [50, 50, 20]);
    }
}
