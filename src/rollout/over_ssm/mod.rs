//! The SSM transport: a batch goes to Systems Manager Run Command as a whole. Agents are asked
//! first (an instance whose agent is not Online fails as unreachable, nothing is sent to it),
//! then one SendCommand per 50 instances runs the same script everywhere: the remote command
//! (install, or `--command`), then the health command on the host. The controller polls the
//! invocations with a growing pause (SSM throttles fast pollers), maps each terminal status to a
//! report line, and on a signal cancels what still runs.
//!
//! This module is that flow; `script` builds the shell script the instances run and `outcome`
//! turns a finished invocation into a report line.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use release_fleet::ssm::{Agent, Invocation, MAX_IDS_PER_CALL, Send, Ssm};
use tokio_util::sync::CancellationToken;

use self::outcome::finish;
use self::script::script;
use super::targets::Target;
use super::{HostReport, HostResult, Rollout, Runner, join_hosts};
use crate::bucket::store::Store;

mod outcome;
mod script;

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

/// What the tests of the three files share: a rollout and a target.
#[cfg(test)]
mod fixtures {
    use std::time::Duration;

    use crate::rollout::health::HealthCheck;
    use crate::rollout::plan::BatchSize;
    use crate::rollout::ssh::SshOptions;
    use crate::rollout::targets::Target;
    use crate::rollout::{Remote, Rollout, Via};

    pub(super) fn rollout(template: Option<&str>, health: HealthCheck) -> Rollout {
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

    pub(super) fn target(id: &str) -> Target {
        Target {
            host: id.to_owned(),
            address: "10.0.0.1".to_owned(),
            instance: Some(id.to_owned()),
            group: Some("web".to_owned()),
            lifecycle: None,
            zone: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::target;
    use super::*;

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
    fn instances_go_in_chunks_of_fifty() {
        let targets: Vec<Target> = (0..120).map(|n| target(&format!("i-{n}"))).collect();
        let refs: Vec<&Target> = targets.iter().collect();
        let sizes: Vec<usize> = id_chunks(&refs).iter().map(Vec::len).collect();
        assert_eq!(sizes, [50, 50, 20]);
    }
}
