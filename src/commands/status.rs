//! `release status`: which build each host runs, against latest-stable; drift is flagged.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::Context;
use super::push::{reach, remote, resolve_targets};
use crate::cli::StatusArgs;
use crate::output::Outcome;
use crate::resolve;
use crate::rollout::ssh::{self, RemoteCommand, SshOptions};
use crate::rollout::targets::Target;

/// Runs `release status`.
pub(crate) async fn run(ctx: &Context, args: StatusArgs) -> Result<Outcome> {
    let layout = ctx.layout()?;
    let reach = reach(&args.target, &ctx.settings.file.push)?;
    let store = ctx.store(None).await;
    // Only a latest-stable.txt that does not exist means "no stable build": one that cannot
    // be read (access denied, garbage, a lying manifest) is the command's error, or every
    // host would be reported as drifting from nothing.
    let stable = resolve::pointer_build(&store, &layout, &layout.latest_stable())
        .await
        .context("cannot tell which build is stable, so no host was asked")?
        .map(|b| b.number);
    let (found, _, _) = resolve_targets(ctx, &reach.source).await?;
    let command = remote(&args.remote, &ctx.settings.file.push).command(
        "current",
        &[],
        &["--artifact", layout.artifact()],
    );
    let control_dir = tempfile::Builder::new().prefix("rls").tempdir_in("/tmp")?;
    let shared = Arc::new((
        reach.ssh,
        command,
        Semaphore::new(reach.max_connections.max(1)),
        control_dir,
    ));
    let mut running = JoinSet::new();
    let mut tasks = HashMap::new();
    for (index, target) in found.into_iter().enumerate() {
        let shared = Arc::clone(&shared);
        let task_target = target.clone();
        let handle = running.spawn(async move {
            let (options, command, connects, dir) = &*shared;
            let version = current_on(options, command, connects, dir.path(), &task_target).await;
            (index, task_target, version)
        });
        tasks.insert(handle.id(), (index, target));
    }
    let mut rows = Vec::new();
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok(row) => rows.push(row),
            // A host whose task died still gets its line: a missing host would read as fine.
            Err(err) => {
                if let Some((index, target)) = tasks.remove(&err.id()) {
                    rows.push((
                        index,
                        target,
                        Err(anyhow::anyhow!("status task failed: {err}")),
                    ));
                }
            }
        }
    }
    rows.sort_by_key(|(index, _, _)| *index);
    let mut text = format!(
        "{:<16} {:<20} {:>8} {:<8}\n",
        "HOST", "INSTANCE", "BUILD", "STATE"
    );
    let mut hosts = Vec::new();
    let mut drifted = 0;
    for (_, target, version) in rows {
        let (build, state) = match &version {
            Ok(Some(n)) if Some(*n) == stable => (Some(*n), "stable".to_owned()),
            Ok(Some(n)) => (Some(*n), "DRIFT".to_owned()),
            Ok(None) => (None, "EMPTY".to_owned()),
            Err(err) => (None, format!("UNREACHABLE: {err:#}")),
        };
        if state != "stable" {
            drifted += 1;
        }
        text.push_str(&format!(
            "{:<16} {:<20} {:>8} {}\n",
            target.host,
            target.instance.clone().unwrap_or_else(|| "-".into()),
            build.map_or("-".into(), |n| n.to_string()),
            state
        ));
        hosts.push(json!({"host": target.host, "instance": target.instance, "group": target.group, "version": build, "drift": state != "stable", "state": state}));
    }
    text.push_str(&format!(
        "latest-stable: {}; {drifted} host(s) not on it",
        stable.map_or("none".into(), |n| n.to_string())
    ));
    Ok(Outcome {
        text,
        json: json!({"artifact": layout.artifact(), "stable": stable, "drifted": drifted, "hosts": hosts}),
    })
}

async fn current_on(
    options: &SshOptions,
    command: &RemoteCommand,
    connects: &Semaphore,
    control_dir: &std::path::Path,
    target: &Target,
) -> Result<Option<u64>> {
    let session = {
        let _permit = connects.acquire().await?;
        ssh::connect(options, &target.address, control_dir).await?
    };
    let finished = ssh::run(&session, command, |_| {}).await;
    let _ = session.close().await;
    let finished = finished?;
    if finished.code != Some(0) {
        anyhow::bail!("`{command}` failed: {}", finished.stderr_tail.join(" / "));
    }
    let doc: serde_json::Value = serde_json::from_str(finished.stdout.trim())?;
    Ok(doc["version"].as_u64())
}
