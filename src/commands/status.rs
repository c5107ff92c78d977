//! `release status`: which build each host runs, against latest-stable; drift is flagged.

use std::sync::Arc;

use anyhow::{Context as _, Result};
use serde_json::json;

use super::Context;
use crate::bucket::resolve;
use crate::cli::StatusArgs;
use crate::config::reach::{reach, remote};
use crate::output::{self, Outcome};
use crate::rollout::fan_out::{self, Connections};
use crate::rollout::ssh::{self, RemoteCommand};
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
    let (found, _, _) = ctx.targets(&reach.source).await?;
    let command = remote(&args.remote, &ctx.settings.file.push).command(
        "current",
        &[],
        &["--artifact", layout.artifact()],
    );
    let connections = Arc::new(Connections::new(reach.ssh, reach.max_connections)?);
    let command = Arc::new(command);
    let versions = fan_out::each_host(
        found.clone(),
        |target| {
            let (connections, command) = (Arc::clone(&connections), Arc::clone(&command));
            async move { current_on(&connections, &command, &target).await }
        },
        // A host whose task died still gets its line: a missing host would read as fine.
        |_, why| Err(anyhow::anyhow!("status task failed: {why}")),
    )
    .await;
    Ok(outcome(layout.artifact(), stable, found, versions))
}

/// One row per host against `stable`; a host is drifting unless it runs exactly that build.
fn outcome(
    artifact: &str,
    stable: Option<u64>,
    found: Vec<Target>,
    versions: Vec<Result<Option<u64>>>,
) -> Outcome {
    let mut rows = vec![
        ["HOST", "INSTANCE", "BUILD", "STATE"]
            .map(str::to_owned)
            .to_vec(),
    ];
    let mut hosts = Vec::new();
    let mut drifted = 0;
    for (target, version) in found.into_iter().zip(versions) {
        let (build, state) = match &version {
            Ok(Some(n)) if Some(*n) == stable => (Some(*n), "stable".to_owned()),
            Ok(Some(n)) => (Some(*n), "DRIFT".to_owned()),
            Ok(None) => (None, "EMPTY".to_owned()),
            Err(err) => (None, format!("UNREACHABLE: {err:#}")),
        };
        if state != "stable" {
            drifted += 1;
        }
        rows.push(vec![
            target.host.clone(),
            target.instance.clone().unwrap_or_else(|| "-".into()),
            build.map_or("-".into(), |n| n.to_string()),
            state.clone(),
        ]);
        hosts.push(json!({"host": target.host, "instance": target.instance, "group": target.group, "version": build, "drift": state != "stable", "state": state}));
    }
    let mut text = output::table(&rows);
    text.push_str(&format!(
        "latest-stable: {}; {drifted} host(s) not on it",
        stable.map_or("none".into(), |n| n.to_string())
    ));
    Outcome {
        text,
        json: json!({"artifact": artifact, "stable": stable, "drifted": drifted, "hosts": hosts}),
    }
}

async fn current_on(
    connections: &Connections,
    command: &RemoteCommand,
    target: &Target,
) -> Result<Option<u64>> {
    let session = connections.connect(target).await?;
    let finished = ssh::run(&session, command, |_| {}).await;
    let _ = session.close().await;
    let finished = finished?;
    if finished.code != Some(0) {
        anyhow::bail!("`{command}` failed: {}", finished.stderr_tail.join(" / "));
    }
    let doc: serde_json::Value = serde_json::from_str(finished.stdout.trim())?;
    Ok(doc["version"].as_u64())
}
