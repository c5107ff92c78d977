//! `release status`: which build each host runs, against latest-stable; drift is flagged.

use std::sync::Arc;

use anyhow::{Context as _, Result};
use serde::Serialize;

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

/// Where a host stands against latest-stable (`state` in the JSON document).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum State {
    /// Runs the stable build.
    Stable,
    /// Runs another build.
    Drift,
    /// Has no build installed.
    Empty,
    /// Could not be asked; `error` says why.
    Unreachable,
}

impl State {
    fn label(self) -> &'static str {
        match self {
            Self::Stable => "stable",
            Self::Drift => "DRIFT",
            Self::Empty => "EMPTY",
            Self::Unreachable => "UNREACHABLE",
        }
    }
}

/// One host's line (docs/output.md, `status`).
#[derive(Debug, Serialize)]
struct HostStatus {
    host: String,
    instance: Option<String>,
    group: Option<String>,
    /// The build it runs, if it could be asked and runs one.
    version: Option<u64>,
    /// Not on the stable build (any state but `stable`).
    drift: bool,
    state: State,
    /// Why the host could not be asked (state `unreachable` only).
    error: Option<String>,
}

/// `release status`'s document.
#[derive(Debug, Serialize)]
struct StatusReport<'a> {
    artifact: &'a str,
    stable: Option<u64>,
    /// Hosts not on the stable build.
    drifted: usize,
    hosts: Vec<HostStatus>,
}

fn host_status(target: Target, version: Result<Option<u64>>, stable: Option<u64>) -> HostStatus {
    let (version, state, error) = match version {
        Ok(Some(n)) if Some(n) == stable => (Some(n), State::Stable, None),
        Ok(Some(n)) => (Some(n), State::Drift, None),
        Ok(None) => (None, State::Empty, None),
        Err(err) => (None, State::Unreachable, Some(format!("{err:#}"))),
    };
    HostStatus {
        host: target.host,
        instance: target.instance,
        group: target.group,
        version,
        drift: state != State::Stable,
        state,
        error,
    }
}

/// One row per host against `stable`; a host is drifting unless it runs exactly that build.
fn outcome(
    artifact: &str,
    stable: Option<u64>,
    found: Vec<Target>,
    versions: Vec<Result<Option<u64>>>,
) -> Outcome {
    let hosts: Vec<HostStatus> = found
        .into_iter()
        .zip(versions)
        .map(|(target, version)| host_status(target, version, stable))
        .collect();
    let mut rows = vec![
        ["HOST", "INSTANCE", "BUILD", "STATE"]
            .map(str::to_owned)
            .to_vec(),
    ];
    rows.extend(hosts.iter().map(|h| {
        let state = match &h.error {
            Some(error) => format!("{}: {error}", h.state.label()),
            None => h.state.label().to_owned(),
        };
        vec![
            h.host.clone(),
            h.instance.clone().unwrap_or_else(|| "-".into()),
            h.version.map_or("-".into(), |n| n.to_string()),
            state,
        ]
    }));
    let drifted = hosts.iter().filter(|h| h.drift).count();
    let mut text = output::table(&rows);
    text.push_str(&format!(
        "latest-stable: {}; {drifted} host(s) not on it",
        stable.map_or("none".into(), |n| n.to_string())
    ));
    let report = StatusReport {
        artifact,
        stable,
        drifted,
        hosts,
    };
    Outcome {
        text,
        json: serde_json::to_value(&report).unwrap_or_default(),
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
