//! The SSH transport: every host of a batch at once, each over its own OpenSSH session (new
//! connections limited by `--max-connections`): connect, run the remote command with its
//! stderr streamed to the controller, read install's JSON from stdout, check health.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;

use super::fan_out::Connections;
use super::targets::Target;
use super::{HostReport, HostResult, Runner, health, join_hosts, remote_command, ssh, unstarted};
use crate::output;

/// The hosts of one batch at once; their reports in the batch's order.
pub(super) async fn run_batch(
    runner: &Arc<Runner>,
    connections: &Arc<Connections>,
    batch: Vec<Target>,
) -> Vec<HostReport> {
    join_hosts(batch, |target| {
        let runner = Arc::clone(runner);
        let connections = Arc::clone(connections);
        async move { push_host(&runner, &connections, target).await }
    })
    .await
}

/// One host: connect, run, check health. Never fails: failures go into the report.
async fn push_host(runner: &Runner, connections: &Connections, target: Target) -> HostReport {
    let started = Instant::now();
    let mut report = unstarted(&target, HostResult::Failed);
    let outcome = update(runner, connections, &target, &mut report).await;
    report.seconds = output::seconds_since(started);
    match outcome {
        Ok(()) => {
            report.result = HostResult::Ok;
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

async fn update(
    runner: &Runner,
    connections: &Connections,
    target: &Target,
    report: &mut HostReport,
) -> Result<()> {
    let rollout = &runner.rollout;
    let session = { connections.connect(target).await? };
    let command = remote_command(rollout, target, "ssh")?;
    let mut log = match &rollout.log_dir {
        Some(dir) => {
            let path = dir.join(format!("{}.log", target.host));
            report.log = Some(path.display().to_string());
            Some(fs_err::File::create(path)?)
        }
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
    // A `--command`'s output is for people, like install's stderr; install's own stdout is the
    // JSON document read below.
    if rollout.template.is_some() {
        for line in finished.stdout.lines().filter(|l| !l.trim().is_empty()) {
            runner.printer.status(&format!("[{}] {line}", target.host));
        }
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
