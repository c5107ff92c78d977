//! `release push`: roll one build onto the hosts of Auto Scaling Groups (or given hosts), in
//! batches, health-checked, under the push lock, ending with a per-host report.

use std::sync::Arc;

use anyhow::Result;
use release_fleet::Fleet;
use release_fleet::ssm::Ssm;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::Context;
use crate::bucket::history::{self, Record};
use crate::bucket::layout::Layout;
use crate::bucket::lock;
use crate::bucket::resolve;
use crate::bucket::store::{Store, StoreLocation, WritePolicy};
use crate::cli::PushArgs;
use crate::config::push::PushConfig;
use crate::env_vars;
use crate::error::{ExitStatus, FailedWithOutcome};
use crate::identity;
use crate::output::{self, Outcome};
use crate::rollout::over_ssm;
use crate::rollout::plan;
use crate::rollout::targets::{Skipped, Source, Target};
use crate::rollout::{self, Halt, HostReport, HostResult, Report, Rollout, Transport, Via};
use crate::signals::{self, Cleanup};

/// Runs `release push`.
pub(crate) async fn run(ctx: &Context, args: PushArgs) -> Result<Outcome> {
    let layout = ctx.layout()?;
    let config = PushConfig::resolve(args, &ctx.settings.file.push)?;
    let store = ctx.store(None).await;
    // Once, here: every host gets this number even if someone promotes mid-push.
    let build = resolve::resolve(&store, &layout, &config.reference).await?;
    let (found, fleet, skipped) = ctx.targets(&config.reach.source).await?;
    let batches = plan::batches(&found, config.batch, config.canary);
    let source = config.reach.source.clone();
    let rollout = rollout_of(ctx, &layout, config, build.number);
    if ctx.settings.dry_run {
        return Ok(plan_outcome(&rollout, &batches));
    }
    ctx.printer.status(&format!(
        "pushing {} {} to {} host(s) in {} batch(es)",
        rollout.artifact,
        rollout.version,
        found.len(),
        batches.len()
    ));
    let what = format!(
        "push {} {} to {} host(s)",
        rollout.artifact,
        rollout.version,
        found.len()
    );
    let pushing = Pushing {
        ctx,
        store: &store,
        layout: &layout,
        source: &source,
        fleet: fleet.as_ref(),
    };
    let mut report = pushing.under_lock(&rollout, batches, &what).await?;
    report.skipped = skipped;
    pushing.record(&rollout, &report).await;
    finish(&rollout, report)
}

/// The rollout's settings: `config` with the build and where the hosts fetch it.
fn rollout_of(ctx: &Context, layout: &Layout, config: PushConfig, version: u64) -> Rollout {
    Rollout {
        artifact: layout.artifact().to_owned(),
        version,
        push_id: new_push_id(),
        bucket: ctx
            .settings
            .store
            .to_string()
            .trim_start_matches("s3://")
            .to_owned(),
        stage: ctx.settings.stage.clone(),
        remote: config.remote,
        template: config.template,
        health: config.health,
        health_timeout: config.health_timeout,
        max_failures: config.max_failures,
        batch: config.batch,
        ssh: config.reach.ssh,
        max_connections: config.reach.max_connections,
        log_dir: config.log_dir,
        via: config.via,
        ssm_output: config.ssm_output,
    }
}

/// `{UTC time yyyymmddThhmmssZ}-{8 hex}`: sorts by time, unique per push.
fn new_push_id() -> String {
    let time = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ");
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{time}-{}", &random[..8])
}

/// What the steps of one push share.
struct Pushing<'a> {
    ctx: &'a Context,
    store: &'a Store,
    layout: &'a Layout,
    source: &'a Source,
    fleet: Option<&'a Fleet>,
}

impl Pushing<'_> {
    /// Takes the push lock, runs the batches while keeping the lock alive, releases it.
    async fn under_lock(
        &self,
        rollout: &Rollout,
        batches: Vec<Vec<Target>>,
        what: &str,
    ) -> Result<Report> {
        let ctx = self.ctx;
        let holder = format!("{}@{}", identity::user(), identity::hostname());
        let (ttl, ttl_overridden) = lock::lifetime()?;
        if ttl_overridden {
            ctx.printer.warn(&format!(
                "the push lock lives {}s ({}, meant for tests only)",
                ttl.as_secs(),
                env_vars::TEST_LOCK_TTL
            ));
        }
        // Before the lock: a failure here has touched nothing.
        let transport = self.transport(rollout).await?;
        let runner = rollout::Runner::new(rollout.clone(), transport, Arc::clone(&ctx.printer))?;
        signals::step(
            "taking the push lock",
            "no host was touched (if a later push finds the lock held, `release unlock` removes it)",
            Cleanup::None,
        );
        let mut held = lock::acquire(self.store, self.layout, &holder, what, ttl).await?;
        let leaves = match rollout.via {
            Via::Ssh => "no new host is started; those running finish and the report says which",
            Via::Ssm => {
                "no new host is started; SSM commands still running are cancelled and the \
                 report says which"
            }
        };
        signals::step(
            format!("pushing build {}", rollout.version),
            leaves,
            Cleanup::Finish,
        );
        let halt = Halt::default();
        let done = CancellationToken::new();
        let (report, ()) = tokio::join!(
            async {
                let report =
                    rollout::run(runner, batches, self.source, self.fleet, &ctx.cancel, &halt)
                        .await;
                done.cancel();
                report
            },
            held.keep(self.store, &done, &halt, &ctx.printer),
        );
        if let Err(err) = held.release(self.store).await {
            ctx.printer.warn(&format!(
                "could not remove the push lock: {err:#}; run `release unlock`"
            ));
        }
        Ok(report)
    }

    /// How batches reach their hosts: SSH sessions, or the SSM client (and a reader of
    /// `--ssm-output`'s bucket, for outputs SSM cut).
    async fn transport(&self, rollout: &Rollout) -> Result<Transport> {
        if rollout.via == Via::Ssh {
            return Transport::ssh(rollout);
        }
        let ctx = self.ctx;
        let ssm = Ssm::new(&ctx.aws_config().await);
        let logs = match &rollout.ssm_output {
            Some(location) => Some(
                Store::open(
                    &StoreLocation::S3 {
                        bucket: location.bucket.clone(),
                    },
                    ctx.settings.region.clone(),
                    ctx.settings.timeouts,
                    WritePolicy {
                        sse: ctx.settings.sse,
                        kms_key_id: ctx.settings.sse_kms_key_id.clone(),
                        storage_class: None,
                    },
                )
                .await,
            ),
            None => None,
        };
        Ok(Transport::Ssm(over_ssm::Link::new(ssm, logs)))
    }

    /// Appends the push's history record; a failure is a warning, the push already happened.
    async fn record(&self, rollout: &Rollout, report: &Report) {
        let mut record = Record::now(history::Kind::Push, self.layout);
        record.to_version = Some(rollout.version);
        record
            .extra
            .insert("push_id".into(), rollout.push_id.clone().into());
        record.extra.insert(
            "hosts".into(),
            serde_json::to_value(
                report
                    .hosts
                    .iter()
                    .map(|h| RecordedHost {
                        host: &h.host,
                        instance: h.instance.as_deref(),
                        result: h.result,
                    })
                    .collect::<Vec<_>>(),
            )
            .unwrap_or_default(),
        );
        if let Err(err) = history::append(self.store, self.layout, &record).await {
            self.ctx
                .printer
                .warn(&format!("could not write the history record: {err:#}"));
        }
    }
}

fn finish(rollout: &Rollout, report: Report) -> Result<Outcome> {
    let (ok, failed, total) = (report.ok(), report.failed(), report.hosts.len());
    let summary = format!(
        "{} {}: {ok} of {total} host(s) ok, {failed} failed",
        rollout.artifact, rollout.version
    );
    let outcome = Outcome::new(
        format!("{}\n{summary}", table(&report)),
        &PushReport {
            artifact: &rollout.artifact,
            version: rollout.version,
            via: rollout.via,
            push_id: &rollout.push_id,
            ok,
            failed,
            dry_run: false,
            batches: report.batches,
            interrupted: report.interrupted,
            stopped: report.stopped.as_deref(),
            hosts: &report.hosts,
            skipped: &report.skipped,
        },
    );
    if ok == total && report.stopped.is_none() {
        return Ok(outcome);
    }
    let status = if ok > 0 {
        ExitStatus::Partial
    } else {
        ExitStatus::Failure
    };
    let why = why_incomplete(rollout, &report, failed);
    Err(FailedWithOutcome {
        status,
        message: format!("push incomplete: {summary}; {why}"),
        outcome,
    }
    .into())
}

/// Why a push that did not put every host on the build ended so.
fn why_incomplete(rollout: &Rollout, report: &Report, failed: usize) -> String {
    if report.interrupted {
        match rollout.via {
            Via::Ssh => "interrupted: no new host was started".to_owned(),
            Via::Ssm => {
                "interrupted: no new host was started, SSM commands still running were cancelled"
                    .to_owned()
            }
        }
    } else if let Some(reason) = &report.stopped {
        format!("stopped: {reason}")
    } else if failed > rollout.max_failures {
        let left = report
            .hosts
            .iter()
            .filter(|h| h.result == HostResult::NotStarted)
            .count();
        if left > 0 {
            format!(
                "failures exceeded --max-failures {}: no new batch was started ({left} host(s) \
                 left as they were)",
                rollout.max_failures
            )
        } else {
            format!("failures exceeded --max-failures {}", rollout.max_failures)
        }
    } else {
        "some hosts are not on the build".to_owned()
    }
}

fn table(report: &Report) -> String {
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let num = |v: Option<u64>| v.map_or("-".into(), |n| n.to_string());
    // Over SSM hosts are named by their instance id: one column says it.
    let by_instance = report
        .hosts
        .iter()
        .all(|h| h.instance.as_deref() == Some(h.host.as_str()));
    let mut header = vec![
        "HOST",
        "INSTANCE",
        "LIFECYCLE",
        "ZONE",
        "BEFORE",
        "AFTER",
        "RESULT",
        "SECONDS",
    ];
    if by_instance {
        header.remove(0);
    }
    let mut rows = vec![header.into_iter().map(str::to_owned).collect::<Vec<_>>()];
    rows.extend(report.hosts.iter().map(|h| {
        let mut row = vec![
            h.host.clone(),
            dash(&h.instance),
            dash(&h.lifecycle),
            dash(&h.zone),
            num(h.before),
            num(h.after),
            h.result.as_str().to_owned(),
            format!("{:.1}", h.seconds),
        ];
        if by_instance {
            row.remove(0);
        }
        row
    }));
    // Columns as wide as their widest cell, whatever the host names, so the header stays over
    // its column.
    let mut out = output::table(&rows);
    let errors: Vec<String> = report
        .hosts
        .iter()
        .filter_map(|h| h.error.as_ref().map(|e| format!("  {}: {e}\n", h.host)))
        .collect();
    out.push_str(&errors.concat());
    out
}

fn plan_outcome(rollout: &Rollout, batches: &[Vec<Target>]) -> Outcome {
    let lines: Vec<String> = batches
        .iter()
        .enumerate()
        .map(|(i, b)| {
            format!(
                "batch {}: {}",
                i + 1,
                b.iter()
                    .map(|t| t.host.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .collect();
    let text = format!(
        "dry run: would push {} {} ({} host(s), via {}); nothing was changed\n{}",
        rollout.artifact,
        rollout.version,
        batches.iter().map(Vec::len).sum::<usize>(),
        rollout.via.as_str(),
        lines.join("\n")
    );
    Outcome::new(
        text,
        &PushPlan {
            dry_run: true,
            via: rollout.via,
            artifact: &rollout.artifact,
            version: rollout.version,
            batches: batches.len(),
            plan: batches,
        },
    )
}

/// `push`'s document (docs/output.md).
#[derive(Serialize)]
struct PushReport<'a> {
    artifact: &'a str,
    version: u64,
    /// How the hosts were reached.
    via: Via,
    /// This push's id, also in each host's report (`push_id`).
    push_id: &'a str,
    ok: usize,
    failed: usize,
    dry_run: bool,
    /// Batches started.
    batches: usize,
    interrupted: bool,
    stopped: Option<&'a str>,
    hosts: &'a [HostReport],
    skipped: &'a [Skipped],
}

/// `push --dry-run`'s document: `batches` is a count as in the report, the hosts of each batch
/// are under `plan`.
#[derive(Serialize)]
struct PushPlan<'a> {
    dry_run: bool,
    /// How the hosts would be reached.
    via: Via,
    artifact: &'a str,
    version: u64,
    /// Batches that would run.
    batches: usize,
    plan: &'a [Vec<Target>],
}

/// One host of a push's history record.
#[derive(Serialize)]
struct RecordedHost<'a> {
    host: &'a str,
    instance: Option<&'a str>,
    result: HostResult,
}

#[cfg(test)]
mod tests {
    use super::table;
    use crate::rollout::{HostReport, HostResult, Report};

    fn host(name: &str, result: HostResult) -> HostReport {
        HostReport {
            host: name.into(),
            instance: Some("i-0123456789abcdef0".into()),
            group: None,
            lifecycle: Some("on-demand".into()),
            zone: Some("eu-west-1a".into()),
            before: Some(1),
            after: Some(2),
            result,
            error: None,
            log: None,
            seconds: 12.5,
        }
    }

    /// Over SSM a host's name is its instance id: the table says it once.
    #[test]
    fn hosts_named_by_instance_id_have_one_column() {
        let by_id = Report {
            hosts: vec![host("i-0123456789abcdef0", HostResult::Ok)],
            ..Report::default()
        };
        let text = table(&by_id);
        assert!(text.starts_with("INSTANCE "), "{text}");
        assert_eq!(text.matches("i-0123456789abcdef0").count(), 1, "{text}");
        let by_address = Report {
            hosts: vec![host("10.0.0.7", HostResult::Ok)],
            ..Report::default()
        };
        assert!(
            table(&by_address).starts_with("HOST "),
            "{}",
            table(&by_address)
        );
    }

    #[test]
    fn the_report_header_stays_over_its_columns() {
        let report = Report {
            hosts: vec![
                host("ip-10-0-1-23.eu-west-1.compute.internal", HostResult::Ok),
                host("10.0.0.7", HostResult::NotStarted),
            ],
            ..Report::default()
        };
        let text = table(&report);
        let lines: Vec<&str> = text.lines().collect();
        for column in ["INSTANCE", "ZONE", "RESULT"] {
            let at = lines[0].find(column).unwrap();
            for line in &lines[1..] {
                // The cell starts exactly under its header.
                assert_ne!(line.as_bytes()[at], b' ', "{column} in:\n{text}");
                assert_eq!(line.as_bytes()[at - 1], b' ', "{column} in:\n{text}");
            }
        }
    }
}
