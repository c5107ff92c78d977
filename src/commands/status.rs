//! `release status`: which build each host runs, against latest-stable; drift is flagged.

use std::sync::Arc;

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::Context;
use crate::bucket::hosts::InstallResult;
use crate::bucket::layout::Layout;
use crate::bucket::resolve;
use crate::bucket::store::Store;
use crate::cli::{StatusArgs, StatusVia};
use crate::config::reach::{Reach, reach, remote};
use crate::error::ExitError;
use crate::output::{self, Outcome};
use crate::rollout::fan_out::{self, Connections};
use crate::rollout::ssh::{self, RemoteCommand};
use crate::rollout::targets::{Source, Target};

mod bucket;

/// How long a host may go without reporting before its row is STALE.
const DEFAULT_STALE_AFTER: &str = "30d";

/// Runs `release status`: from the bucket's host reports (the default with `--asg`), or by
/// asking each host over SSH (the default with `--hosts`).
pub(crate) async fn run(ctx: &Context, args: StatusArgs) -> Result<Outcome> {
    let layout = ctx.layout()?;
    let reach = reach(&args.target, &ctx.settings.file.push)?;
    let via = match (&reach.source, args.via) {
        (Source::Hosts(_), Some(StatusVia::Bucket)) => {
            return Err(ExitError::Usage(
                "--via bucket needs --asg: host reports are named by instance id, and only the \
                 groups say which instances to expect; use --via ssh with --hosts"
                    .into(),
            )
            .into());
        }
        (Source::Hosts(_), _) => StatusVia::Ssh,
        (Source::Groups { .. }, via) => via.unwrap_or(StatusVia::Bucket),
    };
    let stale_after = args
        .stale_after
        .clone()
        .or(ctx.settings.file.status.stale_after.clone());
    let stale_after =
        bucket::parse_duration(stale_after.as_deref().unwrap_or(DEFAULT_STALE_AFTER))?;
    let store = ctx.store(None).await;
    let stable = stable_build(&store, &layout).await?;
    match (via, &reach.source) {
        (StatusVia::Bucket, Source::Groups { names, .. }) => {
            let options = bucket::Options {
                stale_after,
                keep_reports: args.keep_reports,
            };
            bucket::run(ctx, &store, &layout, stable, names, options).await
        }
        _ => via_ssh(ctx, &layout, stable, &reach, &args).await,
    }
}

/// latest-stable's build number. Only a latest-stable.txt that does not exist means "no
/// stable build": one that cannot be read (access denied, garbage, a lying manifest) is the
/// command's error, or every host would be reported as drifting from nothing.
async fn stable_build(store: &Store, layout: &Layout) -> Result<Option<u64>> {
    Ok(
        resolve::pointer_build(store, layout, &layout.latest_stable())
            .await
            .context("cannot tell which build is stable, so no host was asked")?
            .map(|b| b.number),
    )
}

/// Asks every host over SSH which build is current (the disk's truth).
async fn via_ssh(
    ctx: &Context,
    layout: &Layout,
    stable: Option<u64>,
    reach: &Reach,
    args: &StatusArgs,
) -> Result<Outcome> {
    let (found, _, _) = ctx.targets(&reach.source).await?;
    let command = remote(&args.remote, &ctx.settings.file.push).command(
        "current",
        &[],
        &["--artifact", layout.artifact()],
    );
    let connections = Arc::new(Connections::new(reach.ssh.clone(), reach.max_connections)?);
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
    let hosts = found
        .into_iter()
        .zip(versions)
        .map(|(target, version)| host_status(target, version, stable))
        .collect();
    Ok(outcome(
        layout.artifact(),
        stable,
        StatusVia::Ssh,
        hosts,
        Vec::new(),
    ))
}

/// Where a host stands against latest-stable (`state` in the JSON document).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum State {
    /// Runs the stable build.
    Stable,
    /// Runs another build.
    Drift,
    /// Its last install failed (bucket mode).
    Failed,
    /// Never reported (bucket mode).
    NoReport,
    /// Its last report is older than `--stale-after` (bucket mode): ask it over SSH.
    Stale,
    /// Has no build installed.
    Empty,
    /// `current` was switched, but that install has not finished (ssh mode: `release
    /// current` says `unfinished`); bucket mode: an install started (its start marker is the
    /// newest) and did not report its end.
    Unfinished,
    /// Could not be asked; `error` says why.
    Unreachable,
}

impl State {
    fn label(self) -> &'static str {
        match self {
            Self::Stable => "on stable",
            Self::Drift => "DRIFT",
            Self::Failed => "FAILED",
            Self::NoReport => "NO REPORT",
            Self::Stale => "STALE",
            Self::Empty => "EMPTY",
            Self::Unfinished => "UNFINISHED",
            Self::Unreachable => "UNREACHABLE",
        }
    }
}

/// One host's line (docs/output.md, `status`).
/// The same keys in both modes, `null` where a mode does not know.
#[derive(Debug, Serialize)]
struct HostStatus {
    host: String,
    instance: Option<String>,
    group: Option<String>,
    /// Auto Scaling lifecycle state (`InService`, `Pending`, …; bucket mode).
    lifecycle_state: Option<String>,
    /// Availability zone.
    zone: Option<String>,
    /// The build it runs, if it could be asked and runs one.
    version: Option<u64>,
    /// `ok` or `failed`: how its last install ended (bucket mode; `null` when unfinished).
    result: Option<InstallResult>,
    /// When it last reported, RFC 3339 (bucket mode).
    reported: Option<String>,
    /// Seconds since then (bucket mode).
    age_seconds: Option<u64>,
    /// Not on the stable build (any state but `stable`).
    drift: bool,
    state: State,
    /// Why the host could not be asked, or its report not read; for an unfinished host in
    /// bucket mode, which install started when, and what to do.
    error: Option<String>,
}

/// `release status`'s document.
#[derive(Debug, Serialize)]
struct StatusReport<'a> {
    artifact: &'a str,
    stable: Option<u64>,
    /// `bucket` or `ssh`.
    via: &'static str,
    /// Hosts not on the stable build.
    drifted: usize,
    hosts: Vec<HostStatus>,
    /// Instance ids whose reports were removed as their instances are terminated.
    removed: Vec<String>,
}

fn host_status(target: Target, on_host: Result<OnHost>, stable: Option<u64>) -> HostStatus {
    let (version, state, error) = match on_host {
        Ok(OnHost {
            version: Some(n),
            unfinished: true,
        }) => (Some(n), State::Unfinished, None),
        Ok(OnHost {
            version: Some(n), ..
        }) if Some(n) == stable => (Some(n), State::Stable, None),
        Ok(OnHost {
            version: Some(n), ..
        }) => (Some(n), State::Drift, None),
        Ok(OnHost { version: None, .. }) => (None, State::Empty, None),
        Err(err) => (None, State::Unreachable, Some(format!("{err:#}"))),
    };
    HostStatus {
        host: target.host,
        instance: target.instance,
        group: target.group,
        lifecycle_state: None,
        zone: target.zone,
        version,
        result: None,
        reported: None,
        age_seconds: None,
        drift: state != State::Stable,
        state,
        error,
    }
}

/// The table and the document; a host is drifting unless it runs exactly the stable build.
fn outcome(
    artifact: &str,
    stable: Option<u64>,
    via: StatusVia,
    hosts: Vec<HostStatus>,
    removed: Vec<String>,
) -> Outcome {
    let drifted = hosts.iter().filter(|h| h.drift).count();
    let mut text = output::table(&rows(via, &hosts));
    text.push_str(&format!(
        "latest-stable: {}; {drifted} host(s) not on it",
        stable.map_or("none".into(), |n| n.to_string())
    ));
    let report = StatusReport {
        artifact,
        stable,
        via: match via {
            StatusVia::Bucket => "bucket",
            StatusVia::Ssh => "ssh",
        },
        drifted,
        hosts,
        removed,
    };
    Outcome::new(text, &report)
}

/// The text table: what each mode knows.
fn rows(via: StatusVia, hosts: &[HostStatus]) -> Vec<Vec<String>> {
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let state = |h: &HostStatus| match &h.error {
        Some(error) => format!("{}: {error}", h.state.label()),
        None => h.state.label().to_owned(),
    };
    let build = |h: &HostStatus| h.version.map_or("-".into(), |n| n.to_string());
    let header: &[&str] = match via {
        StatusVia::Ssh => &["HOST", "INSTANCE", "BUILD", "STATE"],
        StatusVia::Bucket => &[
            "GROUP",
            "INSTANCE",
            "LIFECYCLE",
            "ZONE",
            "BUILD",
            "RESULT",
            "AGE",
            "STATE",
        ],
    };
    let mut rows = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    rows.extend(hosts.iter().map(|h| match via {
        StatusVia::Ssh => vec![h.host.clone(), dash(&h.instance), build(h), state(h)],
        StatusVia::Bucket => vec![
            dash(&h.group),
            dash(&h.instance),
            dash(&h.lifecycle_state),
            dash(&h.zone),
            build(h),
            h.result.map_or("-".into(), |r| r.as_str().to_owned()),
            h.age_seconds.map_or("-".into(), bucket::age),
            state(h),
        ],
    }));
    rows
}

/// What `release current` on a host said.
struct OnHost {
    /// The build `current` points to.
    version: Option<u64>,
    /// Its install has not finished (an `unfinished` object; hosts with an older `release`
    /// do not send the key).
    unfinished: bool,
}

async fn current_on(
    connections: &Connections,
    command: &RemoteCommand,
    target: &Target,
) -> Result<OnHost> {
    let session = connections.connect(target).await?;
    let finished = ssh::run(&session, command, |_| {}).await;
    let _ = session.close().await;
    let finished = finished?;
    if finished.code != Some(0) {
        anyhow::bail!("`{command}` failed: {}", finished.stderr_tail.join(" / "));
    }
    let doc: serde_json::Value = serde_json::from_str(finished.stdout.trim())?;
    Ok(OnHost {
        version: doc["version"].as_u64(),
        unfinished: doc["unfinished"].is_object(),
    })
}
