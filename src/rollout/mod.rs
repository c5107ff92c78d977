//! Rolling a build onto hosts: batches run one after another, the hosts of a batch at once.
//! Failures are counted over the whole push; once they exceed the limit no new batch starts.
//! Groups are re-read before each batch and swept at the end, so instances that joined
//! meanwhile are not left behind.
//!
//! This module is the planner; how a batch reaches its hosts is the transport's
//! ([`Transport`]): over SSH, host by host (`over_ssh`), or through Systems Manager Run Command,
//! the batch at once (`over_ssm`). Both return one report line per host of the batch.

pub(crate) mod fan_out;
pub(crate) mod health;
pub(crate) mod over_ssh;
pub(crate) mod over_ssm;
pub(crate) mod plan;
pub(crate) mod ssh;
pub(crate) mod targets;
pub(crate) mod template;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use release_fleet::Fleet;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::ExitError;
use crate::output::Printer;
use fan_out::Connections;
use health::HealthCheck;
use plan::BatchSize;
use release_fleet::ssm::OutputLocation;
use ssh::{RemoteCommand, SshOptions};
use targets::{Skipped, Source, Target};

/// How hosts are reached: `--via`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Via {
    /// OpenSSH from the controller, host by host.
    Ssh,
    /// Systems Manager Run Command, by instance id.
    Ssm,
}

impl std::str::FromStr for Via {
    type Err = ExitError;

    fn from_str(text: &str) -> Result<Self, ExitError> {
        match text {
            "ssh" => Ok(Self::Ssh),
            "ssm" => Ok(Self::Ssm),
            other => Err(ExitError::Usage(format!(
                "invalid --via `{other}`: use ssh or ssm"
            ))),
        }
    }
}

impl Via {
    /// The word, as given.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Ssh => "ssh",
            Self::Ssm => "ssm",
        }
    }
}

/// Everything a push needs to know, resolved.
#[derive(Debug, Clone)]
pub(crate) struct Rollout {
    pub(crate) artifact: String,
    /// The build number every host gets.
    pub(crate) version: u64,
    /// This push's id (`{UTC yyyymmddThhmmssZ}-{8 hex}`), given to every host's install for
    /// its report, and in push's report and history record.
    pub(crate) push_id: String,
    /// The bucket as the controller was given it (passed on to the hosts).
    pub(crate) bucket: String,
    pub(crate) stage: String,
    /// How `release` runs on the hosts.
    pub(crate) remote: Remote,
    /// `--command` template, instead of `release install`.
    pub(crate) template: Option<String>,
    /// Health check.
    pub(crate) health: HealthCheck,
    pub(crate) health_timeout: Duration,
    /// Failures tolerated over the whole push.
    pub(crate) max_failures: usize,
    /// Batch size.
    pub(crate) batch: BatchSize,
    /// SSH options.
    pub(crate) ssh: SshOptions,
    /// New connections at once.
    pub(crate) max_connections: usize,
    /// Per-host logs.
    pub(crate) log_dir: Option<PathBuf>,
    /// How hosts are reached.
    pub(crate) via: Via,
    /// `--ssm-output`: where SSM writes each invocation's full output.
    pub(crate) ssm_output: Option<OutputLocation>,
}

/// How one host ended (`result` in push's report and history record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum HostResult {
    Ok,
    Failed,
    /// No batch of it started: the push stopped before.
    NotStarted,
    /// The instance left its group before its batch.
    Left,
}

impl HostResult {
    /// The word in the report's table: the JSON name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::NotStarted => "not-started",
            Self::Left => "left",
        }
    }
}

/// How one host ended.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HostReport {
    /// Host name (its address).
    pub(crate) host: String,
    /// Instance id.
    pub(crate) instance: Option<String>,
    pub(crate) group: Option<String>,
    /// spot / on-demand.
    pub(crate) lifecycle: Option<String>,
    /// Availability zone.
    pub(crate) zone: Option<String>,
    /// Build before.
    pub(crate) before: Option<u64>,
    /// Build after.
    pub(crate) after: Option<u64>,
    pub(crate) result: HostResult,
    /// Why it failed.
    pub(crate) error: Option<String>,
    /// Where its full output is: the `--log-dir` file over SSH, the `--ssm-output` object of
    /// its stdout over SSM.
    pub(crate) log: Option<String>,
    /// Seconds spent on it.
    pub(crate) seconds: f64,
}

/// The whole push.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Report {
    /// One entry per host, in the order they were planned.
    pub(crate) hosts: Vec<HostReport>,
    /// Instances left out of the groups, and why.
    pub(crate) skipped: Vec<Skipped>,
    /// Batches run.
    pub(crate) batches: usize,
    /// Whether a signal stopped it.
    pub(crate) interrupted: bool,
    /// Why it stopped before its end although no host failed beyond the limit: an AWS error
    /// re-reading the groups, or a push lock that was lost.
    pub(crate) stopped: Option<String>,
}

impl Report {
    /// Hosts that failed.
    pub(crate) fn failed(&self) -> usize {
        self.hosts
            .iter()
            .filter(|h| h.result == HostResult::Failed)
            .count()
    }

    /// Hosts that are on the build and healthy.
    pub(crate) fn ok(&self) -> usize {
        self.hosts
            .iter()
            .filter(|h| h.result == HostResult::Ok)
            .count()
    }
}

/// Why no new batch may start, set from outside the batch loop (the lock's renewal) or by it
/// (an AWS error): the first reason set wins.
#[derive(Debug, Clone, Default)]
pub(crate) struct Halt(Arc<Mutex<Option<String>>>);

impl Halt {
    /// Stops new batches for `reason`, unless a reason was already given.
    pub(crate) fn set(&self, reason: String) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(reason);
    }

    /// The reason, if set.
    pub(crate) fn reason(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// How a batch reaches its hosts.
pub(crate) enum Transport {
    /// One SSH session per host; new connections limited.
    Ssh(Arc<Connections>),
    /// Run Command, by instance id.
    Ssm(over_ssm::Link),
}

impl Transport {
    /// The SSH transport: the control-socket directory and the connection limit.
    pub(crate) fn ssh(rollout: &Rollout) -> Result<Transport> {
        Ok(Transport::Ssh(Arc::new(Connections::new(
            rollout.ssh.clone(),
            rollout.max_connections,
        )?)))
    }
}

/// Shared by the hosts of a push.
pub(crate) struct Runner {
    rollout: Rollout,
    transport: Transport,
    printer: Arc<Printer>,
}

impl Runner {
    /// Prepares what the hosts share (the transport, the log directory), before the lock is
    /// taken and any host touched, so that a failure here changes nothing.
    pub(crate) fn new(
        rollout: Rollout,
        transport: Transport,
        printer: Arc<Printer>,
    ) -> Result<Runner> {
        if let Some(dir) = &rollout.log_dir {
            fs_err::create_dir_all(dir)?;
        }
        Ok(Runner {
            rollout,
            transport,
            printer,
        })
    }
}

/// Runs the batches; never fails: every host planned gets a line in the report, and an error
/// after the first host was touched (re-reading the groups) stops new batches instead.
pub(crate) async fn run(
    runner: Runner,
    batches: Vec<Vec<Target>>,
    source: &Source,
    fleet: Option<&Fleet>,
    cancel: &CancellationToken,
    halt: &Halt,
) -> Report {
    let push = Push {
        runner: Arc::new(runner),
        source,
        fleet,
        cancel,
        halt,
    };
    let mut report = Report::default();
    let mut attempted: BTreeSet<String> = BTreeSet::new();
    let mut queue: std::collections::VecDeque<Vec<Target>> = batches.into();
    let mut sweeps = 0;
    loop {
        let Some(batch) = queue.pop_front() else {
            if sweeps >= 3 || push.stopped(&report) {
                break;
            }
            sweeps += 1;
            let joined = push.sweep(&attempted).await;
            if joined.is_empty() {
                break;
            }
            queue.extend(joined);
            continue;
        };
        let batch = push.still_present(batch, &mut report).await;
        if push.stopped(&report) {
            report.interrupted |= cancel.is_cancelled();
            let why = halt.reason();
            for target in batch.into_iter().chain(queue.drain(..).flatten()) {
                let mut line = unstarted(&target, HostResult::NotStarted);
                line.error.clone_from(&why);
                report.hosts.push(line);
            }
            break;
        }
        report.batches += 1;
        push.runner.printer.status(&format!(
            "batch {}: {}",
            report.batches,
            batch
                .iter()
                .map(|t| t.host.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        attempted.extend(batch.iter().map(key));
        report
            .hosts
            .extend(run_batch(&push.runner, batch, cancel).await);
    }
    report.stopped = halt.reason();
    // A signal during the last batch stops no further batch, but the push was still cut short
    // (over SSM its commands were cancelled).
    report.interrupted |= cancel.is_cancelled();
    report
}

/// What the batch loop works with.
struct Push<'a> {
    runner: Arc<Runner>,
    source: &'a Source,
    fleet: Option<&'a Fleet>,
    cancel: &'a CancellationToken,
    halt: &'a Halt,
}

impl Push<'_> {
    /// Whether no new batch may start: a signal, too many failures, or a halt.
    fn stopped(&self, report: &Report) -> bool {
        self.cancel.is_cancelled()
            || report.failed() > self.runner.rollout.max_failures
            || self.halt.reason().is_some()
    }

    /// Instances that joined the groups during the push, as batches. Groups that cannot be
    /// read stop the push (the report says joiners may be missing).
    async fn sweep(&self, attempted: &BTreeSet<String>) -> Vec<Vec<Target>> {
        if !matches!(self.source, Source::Groups { .. }) {
            return Vec::new();
        }
        let now = match targets::resolve(self.source, self.fleet).await {
            Ok((now, _)) => now,
            Err(err) => {
                self.halt.set(format!(
                    "the final sweep could not re-read the groups: {err:#}; instances that \
                     joined during the push may not be on the build"
                ));
                return Vec::new();
            }
        };
        let joined: Vec<Target> = now
            .into_iter()
            .filter(|t| !attempted.contains(&key(t)))
            .collect();
        if !joined.is_empty() {
            self.runner.printer.status(&format!(
                "{} instance(s) joined during the push",
                joined.len()
            ));
        }
        plan::batches(&joined, self.runner.rollout.batch, 0)
    }

    /// The hosts of `batch` still InService and Healthy in their groups (re-read now, one
    /// DescribeAutoScalingGroups: no addresses needed); those that left are reported as `left`.
    /// Groups that cannot be read stop the push instead of failing it.
    async fn still_present(&self, batch: Vec<Target>, report: &mut Report) -> Vec<Target> {
        let Source::Groups { names, .. } = self.source else {
            return batch;
        };
        if self.stopped(report) {
            return batch;
        }
        let now = match self.fleet {
            Some(fleet) => targets::in_service(names, fleet).await,
            None => Err(anyhow::anyhow!("no AWS client for Auto Scaling")),
        };
        match now {
            Ok((now, _)) => {
                let present: BTreeSet<String> = now.into_iter().map(|m| m.instance_id).collect();
                let (stay, left): (Vec<Target>, Vec<Target>) =
                    batch.into_iter().partition(|t| present.contains(&key(t)));
                report
                    .hosts
                    .extend(left.iter().map(|t| unstarted(t, HostResult::Left)));
                stay
            }
            Err(err) => {
                self.halt.set(format!(
                    "re-reading the groups before batch {} failed: {err:#}",
                    report.batches + 1
                ));
                batch
            }
        }
    }
}

fn key(target: &Target) -> String {
    target
        .instance
        .clone()
        .unwrap_or_else(|| target.host.clone())
}

/// The hosts of one batch, handed to the transport; their reports in the batch's order.
async fn run_batch(
    runner: &Arc<Runner>,
    batch: Vec<Target>,
    cancel: &CancellationToken,
) -> Vec<HostReport> {
    let reports = match &runner.transport {
        Transport::Ssh(connections) => over_ssh::run_batch(runner, connections, batch).await,
        Transport::Ssm(link) => over_ssm::run_batch(runner, link, batch, cancel).await,
    };
    for line in reports.iter().filter(|r| r.result == HostResult::Failed) {
        if let Some(error) = line.error.as_deref().filter(|e| e.starts_with(INTERNAL)) {
            runner
                .printer
                .status(&format!("[{}] FAILED: {error}", line.host));
        }
    }
    reports
}

/// How the report words a host task that panicked.
const INTERNAL: &str = "internal error";

/// Runs `host` for every target at once; a task that panicked (or vanished) is a failed line
/// saying so, in its place.
async fn join_hosts<F, Fut>(batch: Vec<Target>, host: F) -> Vec<HostReport>
where
    F: Fn(Target) -> Fut,
    Fut: Future<Output = HostReport> + Send + 'static,
{
    fan_out::each_host(batch, host, |target, why| {
        let mut line = unstarted(target, HostResult::Failed);
        line.error = Some(format!(
            "{INTERNAL}: {why}; the host may be part-way through"
        ));
        line
    })
    .await
}

/// `release install N … --started-by VIA --push-id P [--host-id I]` (the default), or the
/// rendered `--command` template; `via` is the transport's word (`ssh`, `ssm`), recorded in the
/// host's report.
pub(crate) fn remote_command(
    rollout: &Rollout,
    target: &Target,
    via: &str,
) -> Result<RemoteCommand> {
    if let Some(template) = &rollout.template {
        let values: BTreeMap<&str, String> = [
            ("artifact", rollout.artifact.clone()),
            ("version", rollout.version.to_string()),
            ("bucket", rollout.bucket.clone()),
            ("stage", rollout.stage.clone()),
            ("host", target.host.clone()),
            ("address", target.address.clone()),
            ("instance", target.instance.clone().unwrap_or_default()),
            ("push_id", rollout.push_id.clone()),
        ]
        .into_iter()
        .collect();
        return Ok(RemoteCommand::Shell(template::render(template, &values)?));
    }
    let version = rollout.version.to_string();
    let mut args = vec![
        "--artifact",
        &rollout.artifact,
        "--bucket",
        &rollout.bucket,
        "--stage",
        &rollout.stage,
        "--started-by",
        via,
        "--push-id",
        &rollout.push_id,
    ];
    if let Some(instance) = &target.instance {
        args.extend(["--host-id", instance.as_str()]);
    }
    Ok(rollout.remote.command("install", &[&version], &args))
}

/// How `release` runs on the hosts: `[sudo -n] BINARY SUBCOMMAND … --output json [--dir D]`.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    /// `sudo -n` in front.
    pub(crate) sudo: bool,
    /// `release` on the hosts.
    pub(crate) binary: String,
    /// `--dir` for the hosts, if given; else each host's own default.
    pub(crate) dir: Option<PathBuf>,
}

impl Remote {
    /// The remote `release SUBCOMMAND POSITIONAL… OPTIONS… --output json [--dir D]`, each word
    /// quoted on its own.
    pub(crate) fn command(
        &self,
        subcommand: &str,
        positional: &[&str],
        options: &[&str],
    ) -> RemoteCommand {
        let mut words: Vec<String> = Vec::new();
        if self.sudo {
            words.extend(["sudo".into(), "-n".into()]);
        }
        words.push(self.binary.clone());
        words.push(subcommand.to_owned());
        words.extend(positional.iter().chain(options).map(|w| (*w).to_owned()));
        words.extend(["--output".into(), "json".into()]);
        if let Some(dir) = &self.dir {
            words.extend(["--dir".into(), dir.display().to_string()]);
        }
        RemoteCommand::Words(words)
    }
}

fn unstarted(target: &Target, result: HostResult) -> HostReport {
    HostReport {
        host: target.host.clone(),
        instance: target.instance.clone(),
        group: target.group.clone(),
        lifecycle: target.lifecycle.clone(),
        zone: target.zone.clone(),
        before: None,
        after: None,
        result,
        error: None,
        log: None,
        seconds: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str) -> Target {
        Target {
            host: host.to_owned(),
            address: host.to_owned(),
            instance: None,
            group: None,
            lifecycle: None,
            zone: None,
        }
    }

    /// A host task that panics still has its line, failed, in its place.
    #[tokio::test]
    async fn a_panicking_host_task_keeps_its_line() {
        let batch = vec![target("a"), target("b"), target("c")];
        let reports = join_hosts(batch, |t| async move {
            if t.host == "b" {
                panic!("boom on {}", t.host);
            }
            let mut line = unstarted(&t, HostResult::Ok);
            line.after = Some(7);
            line
        })
        .await;
        let lines: Vec<(&str, HostResult)> = reports
            .iter()
            .map(|r| (r.host.as_str(), r.result))
            .collect();
        assert_eq!(
            lines,
            [
                ("a", HostResult::Ok),
                ("b", HostResult::Failed),
                ("c", HostResult::Ok)
            ]
        );
        let error = reports[1].error.as_deref().unwrap();
        assert!(error.starts_with("internal error: boom on b"), "{error}");
    }
}
