//! What `release install` tells the bucket about itself: right before its switch, that it
//! started (a start marker); once it is done, who it is (host id), how it was started, and how
//! it ended (docs/output.md, "host report"). Writing is best effort: a failed write is a
//! warning, never a failed install.

use std::sync::OnceLock;
use std::time::Duration;

use crate::bucket::hosts::{self, HostReport, InstallResult};
use crate::bucket::layout::Layout;
use crate::bucket::store::Store;
use crate::cli::{InstallArgs, StartedBy};
use crate::error::ExitError;
use crate::identity;
use crate::output::Printer;

/// Per request to the instance metadata service: off EC2 nothing answers, and an install must
/// not wait for it.
const IMDS_TIMEOUT: Duration = Duration::from_secs(1);
/// The metadata service's address unless `AWS_EC2_METADATA_SERVICE_ENDPOINT` says otherwise.
const IMDS_ENDPOINT: &str = "http://169.254.169.254";

/// How this install reports, checked before anything is touched.
#[derive(Debug, Clone)]
pub(crate) struct Reporting {
    /// `--host-id`, if given (else discovered when the report is written).
    host_id: Option<String>,
    started_by: StartedBy,
    push_id: Option<String>,
    /// The host id once looked for (`None` inside: none valid), so the metadata service is
    /// asked and a bad id warned about once per install.
    host: OnceLock<Option<String>>,
}

impl Reporting {
    /// `None` with `--no-report` or `report = false`; a bad `--host-id` or `--push-id` is a
    /// usage error (exit 2).
    pub(crate) fn from_args(
        args: &InstallArgs,
        file_report: Option<bool>,
    ) -> Result<Option<Self>, ExitError> {
        for (flag, value) in [("--host-id", &args.host_id), ("--push-id", &args.push_id)] {
            if let Some(value) = value.as_deref().filter(|v| !hosts::valid_id(v)) {
                return Err(ExitError::Usage(format!(
                    "{flag} `{}` is not a valid id: it must be 1 to 128 letters, digits, `.`, \
                     `_` or `-`, starting with a letter or digit",
                    value.escape_debug()
                )));
            }
        }
        if args.no_report || file_report == Some(false) {
            return Ok(None);
        }
        Ok(Some(Self {
            host_id: args.host_id.clone(),
            started_by: args.started_by.unwrap_or(StartedBy::Manual),
            push_id: args.push_id.clone(),
            host: OnceLock::new(),
        }))
    }

    /// `--host-id`, else the discovered one (looked for once).
    fn host(&self, printer: &Printer) -> Option<String> {
        self.host
            .get_or_init(|| match &self.host_id {
                Some(id) => Some(id.clone()),
                None => discovered_host_id(printer),
            })
            .clone()
    }
}

/// Writes the start marker of `build` (`release status` from the bucket shows the host
/// UNFINISHED until the install's end is written); a failure is a warning.
pub(crate) async fn write_started(
    printer: &Printer,
    store: &Store,
    layout: &Layout,
    reporting: &Reporting,
    build: u64,
) {
    let Some(host) = reporting.host(printer) else {
        return;
    };
    if let Err(failure) = hosts::write_started(store, layout, &host, build).await {
        printer.warn(&format!(
            "{failure}; the install goes on (were it interrupted, `release status` from the \
             bucket could not tell, only `--via ssh`)"
        ));
    }
}

/// What the install did, for its report.
#[derive(Debug)]
pub(crate) struct Ended {
    pub(crate) before: Option<u64>,
    pub(crate) after: Option<u64>,
    pub(crate) sha256: Option<String>,
    /// The step that failed and its message.
    pub(crate) failed: Option<(&'static str, String)>,
}

/// Writes the report and its marker; returns the report's key if it was written. Failures are
/// warnings naming the object.
pub(crate) async fn write(
    printer: &Printer,
    store: &Store,
    layout: &Layout,
    reporting: &Reporting,
    ended: Ended,
) -> Option<String> {
    let host = reporting.host(printer)?;
    let (result, step, error) = match ended.failed {
        None => (InstallResult::Ok, None, None),
        Some((step, error)) => (InstallResult::Failed, Some(step.to_owned()), Some(error)),
    };
    let report = HostReport {
        schema: 1,
        artifact: layout.artifact().to_owned(),
        stage: layout.stage().to_owned(),
        host: host.clone(),
        hostname: identity::hostname(),
        before: ended.before,
        after: ended.after,
        sha256: ended.sha256,
        result,
        step,
        error,
        started_by: reporting.started_by.as_str().to_owned(),
        push_id: reporting.push_id.clone(),
        time: jiff::Timestamp::now().to_string(),
        release_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let failures = hosts::write(store, layout, &report).await;
    for failure in &failures {
        printer.warn(&format!(
            "{failure}; the install itself is not affected (`release status` shows this host's \
             older state until its next report)"
        ));
    }
    let key = layout.host_report(&host);
    let written = !failures.iter().any(|f| f.contains(&store.url(&key)));
    written.then_some(key)
}

/// The EC2 instance id from IMDSv2, else the hostname; a discovered id that is not a valid
/// host id is a warning and no report.
fn discovered_host_id(printer: &Printer) -> Option<String> {
    let id = tokio::task::block_in_place(instance_id).unwrap_or_else(identity::hostname);
    if hosts::valid_id(&id) {
        return Some(id);
    }
    printer.warn(&format!(
        "no host report written: this host's id `{}` (hostname) is not a valid host id; give \
         one with --host-id or RELEASE_HOST_ID",
        id.escape_debug()
    ));
    None
}

/// IMDSv2: a session token (PUT), then the instance id (GET), one second each. Never asked
/// when `AWS_EC2_METADATA_DISABLED=true`, as the AWS SDKs do (the tests set it).
fn instance_id() -> Option<String> {
    let disabled = std::env::var("AWS_EC2_METADATA_DISABLED")
        .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if disabled {
        return None;
    }
    let base = std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .unwrap_or_else(|_| IMDS_ENDPOINT.to_owned());
    let base = base.trim_end_matches('/');
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(IMDS_TIMEOUT))
        .build()
        .into();
    let token = agent
        .put(format!("{base}/latest/api/token"))
        .header("X-aws-ec2-metadata-token-ttl-seconds", "60")
        .send_empty()
        .ok()?
        .body_mut()
        .read_to_string()
        .ok()?;
    let id = agent
        .get(format!("{base}/latest/meta-data/instance-id"))
        .header("X-aws-ec2-metadata-token", token.trim())
        .call()
        .ok()?
        .body_mut()
        .read_to_string()
        .ok()?;
    Some(id.trim().to_owned()).filter(|id| !id.is_empty())
}
