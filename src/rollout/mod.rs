//! Rolling a build onto hosts: batches run one after another, the hosts of a batch at once;
//! each host gets the remote command over SSH, then its health check. Failures are counted
//! over the whole push; once they exceed the limit no new batch starts. Groups are re-read
//! before each batch and swept at the end, so instances that joined meanwhile are not left
//! behind.

pub mod health;
pub mod lock;
pub mod plan;
pub mod ssh;
pub mod targets;
pub mod template;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use release_fleet::Fleet;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::output::Printer;
use health::HealthCheck;
use plan::BatchSize;
use ssh::{RemoteCommand, SshOptions};
use targets::{Skipped, Source, Target};

/// Everything a push needs to know, resolved.
#[derive(Debug, Clone)]
pub struct Rollout {
    /// The artifact.
    pub artifact: String,
    /// The build number every host gets.
    pub version: u64,
    /// The bucket as the controller was given it (passed on to the hosts).
    pub bucket: String,
    /// The stage.
    pub stage: String,
    /// How `release` runs on the hosts.
    pub remote: Remote,
    /// `--command` template, instead of `release install`.
    pub template: Option<String>,
    /// Health check.
    pub health: HealthCheck,
    /// Health timeout.
    pub health_timeout: Duration,
    /// Failures tolerated over the whole push.
    pub max_failures: usize,
    /// Batch size.
    pub batch: BatchSize,
    /// Canary hosts.
    pub canary: usize,
    /// SSH options.
    pub ssh: SshOptions,
    /// New connections at once.
    pub max_connections: usize,
    /// Per-host logs.
    pub log_dir: Option<PathBuf>,
}

/// How one host ended.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    /// Host name (its address).
    pub host: String,
    /// Instance id.
    pub instance: Option<String>,
    /// Group.
    pub group: Option<String>,
    /// spot / on-demand.
    pub lifecycle: Option<String>,
    /// Availability zone.
    pub zone: Option<String>,
    /// Build before.
    pub before: Option<u64>,
    /// Build after.
    pub after: Option<u64>,
    /// `ok`, `failed`, `not-started` or `left` (the instance left its group before its batch).
    pub result: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Seconds spent on it.
    pub seconds: f64,
}

/// The whole push.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// One entry per host, in the order they were planned.
    pub hosts: Vec<HostReport>,
    /// Instances left out of the groups, and why.
    pub skipped: Vec<Skipped>,
    /// Batches run.
    pub batches: usize,
    /// Whether a signal stopped it.
    pub interrupted: bool,
}

impl Report {
    /// Hosts that failed.
    pub fn failed(&self) -> usize {
        self.hosts.iter().filter(|h| h.result == "failed").count()
    }

    /// Hosts that are on the build and healthy.
    pub fn ok(&self) -> usize {
        self.hosts.iter().filter(|h| h.result == "ok").count()
    }
}

/// Shared by the hosts of a push.
struct Runner {
    rollout: Rollout,
    connects: Semaphore,
    control_dir: tempfile::TempDir,
    printer: Arc<Printer>,
}

/// Runs the batches; never returns early: every host planned gets a line in the report.
pub async fn run(
    rollout: Rollout,
    batches: Vec<Vec<Target>>,
    source: &Source,
    fleet: Option<&Fleet>,
    printer: Arc<Printer>,
    cancel: &CancellationToken,
) -> Result<Report> {
    // Short: the control sockets live here, and Unix sockets allow about 100 bytes.
    let control_dir = tempfile::Builder::new().prefix("rls").tempdir_in("/tmp")?;
    if let Some(dir) = &rollout.log_dir {
        fs_err::create_dir_all(dir)?;
    }
    let runner = Arc::new(Runner {
        connects: Semaphore::new(rollout.max_connections.max(1)),
        rollout,
        control_dir,
        printer,
    });
    let mut report = Report::default();
    let mut attempted: BTreeSet<String> = BTreeSet::new();
    let mut queue: std::collections::VecDeque<Vec<Target>> = batches.into();
    let mut sweeps = 0;
    loop {
        let Some(mut batch) = queue.pop_front() else {
            // The sweep: instances that joined the groups during the push.
            if !matches!(source, Source::Groups { .. })
                || sweeps >= 3
                || stopped(&runner, &report, cancel)
            {
                break;
            }
            sweeps += 1;
            let (now, _) = targets::resolve(source, fleet).await?;
            let joined: Vec<Target> = now
                .into_iter()
                .filter(|t| !attempted.contains(&key(t)))
                .collect();
            if joined.is_empty() {
                break;
            }
            runner.printer.status(&format!(
                "{} instance(s) joined during the push",
                joined.len()
            ));
            queue.extend(plan::batches(&joined, runner.rollout.batch, 0));
            continue;
        };
        if stopped(&runner, &report, cancel) {
            report.interrupted |= cancel.is_cancelled();
            for target in batch.into_iter().chain(queue.drain(..).flatten()) {
                report.hosts.push(unstarted(&target, "not-started"));
            }
            break;
        }
        if matches!(source, Source::Groups { .. }) {
            let (now, _) = targets::resolve(source, fleet).await?;
            let present: BTreeSet<String> = now.iter().map(key).collect();
            let (stay, left): (Vec<Target>, Vec<Target>) =
                batch.into_iter().partition(|t| present.contains(&key(t)));
            report
                .hosts
                .extend(left.iter().map(|t| unstarted(t, "left")));
            batch = stay;
        }
        report.batches += 1;
        runner.printer.status(&format!(
            "batch {}: {}",
            report.batches,
            batch
                .iter()
                .map(|t| t.host.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        attempted.extend(batch.iter().map(key));
        report.hosts.extend(run_batch(&runner, batch).await);
    }
    Ok(report)
}

fn stopped(runner: &Runner, report: &Report, cancel: &CancellationToken) -> bool {
    cancel.is_cancelled() || report.failed() > runner.rollout.max_failures
}

fn key(target: &Target) -> String {
    target
        .instance
        .clone()
        .unwrap_or_else(|| target.host.clone())
}

/// The hosts of one batch at once; their reports in the batch's order.
async fn run_batch(runner: &Arc<Runner>, batch: Vec<Target>) -> Vec<HostReport> {
    let mut running = JoinSet::new();
    for (index, target) in batch.into_iter().enumerate() {
        let runner = Arc::clone(runner);
        running.spawn(async move { (index, push_host(&runner, target).await) });
    }
    let mut done: BTreeMap<usize, HostReport> = BTreeMap::new();
    while let Some(joined) = running.join_next().await {
        if let Ok((index, report)) = joined {
            done.insert(index, report);
        }
    }
    done.into_values().collect()
}

/// One host: connect, run, check health. Never fails: failures go into the report.
async fn push_host(runner: &Runner, target: Target) -> HostReport {
    let started = Instant::now();
    let mut report = unstarted(&target, "failed");
    let outcome = update(runner, &target, &mut report).await;
    report.seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    match outcome {
        Ok(()) => {
            report.result = "ok".into();
            runner
                .printer
                .status(&format!("[{}] ok in {:.1}s", target.host, report.seconds));
        }
        Err(err) => {
            let text = format!("{err:#}");
            runner
                .printer
                .status(&format!("[{}] FAILED: {text}", target.host));
            report.error = Some(text);
        }
    }
    report
}

async fn update(runner: &Runner, target: &Target, report: &mut HostReport) -> Result<()> {
    let rollout = &runner.rollout;
    let session = {
        let _permit = runner.connects.acquire().await?;
        ssh::connect(&rollout.ssh, &target.address, runner.control_dir.path()).await?
    };
    let command = remote_command(rollout, target)?;
    let mut log = match &rollout.log_dir {
        Some(dir) => Some(fs_err::File::create(
            dir.join(format!("{}.log", target.host)),
        )?),
        None => None,
    };
    let printer = Arc::clone(&runner.printer);
    let host = target.host.clone();
    let finished = ssh::run(&session, &command, |line| {
        printer.status(&format!("[{host}] {line}"));
        if let Some(log) = &mut log {
            let _ = writeln!(log, "{line}");
        }
    })
    .await;
    let finished = match finished {
        Ok(finished) => finished,
        Err(err) => {
            let _ = session.close().await;
            return Err(err);
        }
    };
    if let Some(log) = &mut log {
        let _ = log.write_all(finished.stdout.as_bytes());
    }
    if finished.code != Some(0) {
        let _ = session.close().await;
        anyhow::bail!(
            "`{command}` exited with {}: {}",
            finished.code.map_or("a signal".into(), |c| c.to_string()),
            finished.stderr_tail.join(" / ")
        );
    }
    // `release install --output json` says what was there before and what is there now.
    if rollout.template.is_none()
        && let Ok(doc) = serde_json::from_str::<serde_json::Value>(finished.stdout.trim())
    {
        report.before = doc["previous"].as_u64();
        report.after = doc["version"].as_u64();
    }
    let healthy = health::wait_healthy(
        &rollout.health,
        &session,
        &target.host,
        &target.address,
        rollout.health_timeout,
    )
    .await;
    let _ = session.close().await;
    healthy
}

/// `release install N …` (the default), or the rendered `--command` template.
fn remote_command(rollout: &Rollout, target: &Target) -> Result<RemoteCommand> {
    if let Some(template) = &rollout.template {
        let values: BTreeMap<&str, String> = [
            ("artifact", rollout.artifact.clone()),
            ("version", rollout.version.to_string()),
            ("bucket", rollout.bucket.clone()),
            ("stage", rollout.stage.clone()),
            ("host", target.host.clone()),
            ("address", target.address.clone()),
            ("instance", target.instance.clone().unwrap_or_default()),
        ]
        .into_iter()
        .collect();
        return Ok(RemoteCommand::Shell(template::render(template, &values)?));
    }
    let version = rollout.version.to_string();
    let args = [
        "--artifact",
        &rollout.artifact,
        "--bucket",
        &rollout.bucket,
        "--stage",
        &rollout.stage,
    ];
    Ok(rollout.remote.command("install", &[&version], &args))
}

/// How `release` runs on the hosts: `[sudo -n] BINARY SUBCOMMAND … --output json [--dir D]`.
#[derive(Debug, Clone)]
pub struct Remote {
    /// `sudo -n` in front.
    pub sudo: bool,
    /// `release` on the hosts.
    pub binary: String,
    /// `--dir` for the hosts, if given; else each host's own default.
    pub dir: Option<PathBuf>,
}

impl Remote {
    /// The remote `release SUBCOMMAND POSITIONAL… OPTIONS… --output json [--dir D]`, each word
    /// quoted on its own.
    pub fn command(
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

fn unstarted(target: &Target, result: &str) -> HostReport {
    HostReport {
        host: target.host.clone(),
        instance: target.instance.clone(),
        group: target.group.clone(),
        lifecycle: target.lifecycle.clone(),
        zone: target.zone.clone(),
        before: None,
        after: None,
        result: result.to_owned(),
        error: None,
        seconds: 0.0,
    }
}
