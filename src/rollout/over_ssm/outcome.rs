//! A finished (or never started) invocation turned into its host's report line: the output
//! read whole when SSM cut it, shown and logged, the status explained, install's JSON
//! document read, and the controller's health check.

use std::io::Write as _;

use anyhow::Result;
use release_fleet::ssm::{Invocation, OutputLocation, Status};

use super::{EXECUTION_TIMEOUT, Ended, Link};
use crate::rollout::health::{self, HealthCheck};
use crate::rollout::targets::Target;
use crate::rollout::{HostReport, HostResult, Rollout, Runner, Transport, unstarted};

/// AWS's line between stdout and stderr in a plugin's inline output.
const ERROR_SEPARATOR: &str = "----------ERROR-------";
/// AWS's mark at the end of inline output that was cut.
const TRUNCATED: &str = "---Output truncated---";
/// Lines of stderr a failed line quotes.
const TAIL_LINES: usize = 5;

/// One instance's report line from how it ended.
pub(super) async fn finish(runner: &Runner, target: Target, ended: Option<Ended>) -> HostReport {
    let mut line = unstarted(&target, HostResult::Failed);
    let outcome = match ended {
        Some(Ended::Unreachable(why)) => Err(why),
        Some(Ended::NotSent(result, why)) => {
            line.result = result;
            Err(why)
        }
        Some(Ended::Lost(why)) => Err(why),
        Some(Ended::Finished {
            command_id,
            invocation,
            seconds,
        }) => {
            line.seconds = seconds;
            let done = finished(runner, &target, &command_id, &invocation, &mut line).await;
            done.map_err(|e| format!("{e:#}"))
        }
        None => Err("internal error: no outcome for this instance".to_owned()),
    };
    match outcome {
        Ok(()) => {
            line.result = HostResult::Ok;
            runner
                .printer
                .status(&format!("[{}] ok in {:.1}s", target.host, line.seconds));
        }
        Err(text) => {
            if line.result == HostResult::Failed {
                runner
                    .printer
                    .status(&format!("[{}] FAILED: {text}", target.host));
            }
            line.error = Some(text);
        }
    }
    line
}

/// A finished invocation: its output read (from S3 when cut and `--ssm-output` is given),
/// shown, logged; then its status, install's document and the controller's health check.
async fn finished(
    runner: &Runner,
    target: &Target,
    command_id: &str,
    invocation: &Invocation,
    line: &mut HostReport,
) -> Result<()> {
    let rollout = &runner.rollout;
    let link = match &runner.transport {
        Transport::Ssm(link) => link,
        Transport::Ssh(_) => anyhow::bail!("internal error: not an SSM push"),
    };
    if let Some(location) = &rollout.ssm_output {
        let key = location.key(command_id, &invocation.instance_id, "stdout");
        line.log = Some(format!("s3://{}/{key}", location.bucket));
    }
    let (stdout, stderr) = outputs(rollout, link, command_id, invocation).await?;
    show(runner, target, &stdout, &stderr);
    check_status(rollout, invocation, &stderr)?;
    if rollout.template.is_none() {
        let doc = install_document(&stdout, rollout.ssm_output.is_some())?;
        line.before = doc["previous"].as_u64();
        line.after = doc["version"].as_u64();
    }
    if let HealthCheck::Url(url) = &rollout.health {
        health::wait_url(url, &target.host, &target.address, rollout.health_timeout).await?;
    }
    Ok(())
}

/// stdout and stderr, as far as the report needs them. The listing's inline output is cut at
/// 2,500 characters; when what is needed was cut (install's JSON on stdout; stderr's tail of a
/// failure), it is read whole from `--ssm-output`, else from GetCommandInvocation (24,000 and
/// 8,000 characters). Nothing more is asked for hosts whose listing says it all, so requests
/// stay per command, not per host.
async fn outputs(
    rollout: &Rollout,
    link: &Link,
    command_id: &str,
    invocation: &Invocation,
) -> Result<(String, String)> {
    let (stdout, stderr) = split_output(&invocation.output);
    let stdout_cut = is_truncated(&stdout);
    let need_stdout = stdout_cut && rollout.template.is_none();
    let need_stderr = invocation.status != Status::Success && (stdout_cut || is_truncated(&stderr));
    if !need_stdout && !need_stderr {
        return Ok((stdout, stderr));
    }
    let Some(location) = &rollout.ssm_output else {
        return link.output(command_id, &invocation.instance_id).await;
    };
    let stdout = if need_stdout {
        read_full(link, location, command_id, invocation, "stdout").await?
    } else {
        stdout
    };
    let stderr = if need_stderr {
        read_full(link, location, command_id, invocation, "stderr").await?
    } else {
        stderr
    };
    Ok((stdout, stderr))
}

/// Install's stderr (and a `--command`'s stdout) for people, as over SSH; the whole output in
/// the `--log-dir` file.
fn show(runner: &Runner, target: &Target, stdout: &str, stderr: &str) {
    for text in stderr.lines().filter(|l| !l.trim().is_empty()) {
        runner.printer.status(&format!("[{}] {text}", target.host));
    }
    if runner.rollout.template.is_some() {
        for text in stdout.lines().filter(|l| !l.trim().is_empty()) {
            runner.printer.status(&format!("[{}] {text}", target.host));
        }
    }
    if let Some(dir) = &runner.rollout.log_dir {
        let path = dir.join(format!("{}.log", target.host));
        let written = fs_err::File::create(&path)
            .and_then(|mut f| f.write_all(format!("{stderr}{stdout}").as_bytes()));
        if let Err(err) = written {
            runner.printer.warn(&format!("cannot write the log: {err}"));
        }
    }
}

/// Ok for Success; otherwise an error naming the status, what it means, the exit code and the
/// tail of stderr.
fn check_status(rollout: &Rollout, invocation: &Invocation, stderr: &str) -> Result<()> {
    let status = &invocation.status;
    let meaning = match status {
        Status::Success => return Ok(()),
        Status::Failed => "the script failed".to_owned(),
        Status::TimedOut => format!(
            "the script ran longer than its execution timeout ({}s)",
            EXECUTION_TIMEOUT + rollout.health_timeout.as_secs()
        ),
        Status::Cancelled => "the command was cancelled".to_owned(),
        Status::DeliveryTimedOut => {
            "the agent never picked the command up (is it running, and can it reach SSM?)"
                .to_owned()
        }
        Status::Undeliverable => {
            "SSM could not deliver it (the instance is gone or unknown)".into()
        }
        Status::Terminated => "the instance stopped while the command ran".to_owned(),
        Status::Running | Status::Other(_) => format!("unexpected status ({})", invocation.details),
    };
    let code = match invocation.exit_code {
        Some(code) if code >= 0 => format!(", exit code {code}"),
        _ => String::new(),
    };
    let mut tail = stderr_tail(stderr);
    if is_truncated(stderr) && rollout.ssm_output.is_none() {
        tail.push_str(" (stderr was truncated by SSM; give --ssm-output for all of it)");
    }
    anyhow::bail!("SSM status {}: {meaning}{code}: {tail}", status.as_str())
}

/// Install's `--output json` document from stdout.
fn install_document(stdout: &str, full: bool) -> Result<serde_json::Value> {
    if is_truncated(stdout) && !full {
        anyhow::bail!(
            "SSM says Success, but the output was truncated (SSM returns 24,000 characters of \
             stdout) and install's JSON document with it: give --ssm-output s3://BUCKET/PREFIX \
             to read the whole output"
        );
    }
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    serde_json::from_str::<serde_json::Value>(stdout.trim())
        .or_else(|_| serde_json::from_str(last.trim()))
        .map_err(|err| {
            anyhow::anyhow!(
                "SSM says Success, but stdout is not install's JSON document ({err}): `{}`",
                last.chars().take(200).collect::<String>()
            )
        })
}

/// The full stdout or stderr SSM wrote under `--ssm-output`.
async fn read_full(
    link: &Link,
    location: &OutputLocation,
    command_id: &str,
    invocation: &Invocation,
    stream: &str,
) -> Result<String> {
    let key = location.key(command_id, &invocation.instance_id, stream);
    let url = format!("s3://{}/{key}", location.bucket);
    let store = link
        .logs
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("internal error: no client for {url}"))?;
    match store.get(&key).await {
        Ok(Some(object)) => Ok(String::from_utf8_lossy(&object.body).into_owned()),
        Ok(None) => anyhow::bail!(
            "the output was truncated and {url} does not exist (can the instance profile write \
             to the --ssm-output bucket?)"
        ),
        Err(err) => anyhow::bail!("the output was truncated and reading {url} failed: {err}"),
    }
}

/// stdout and stderr from a plugin's inline output (AWS puts stderr after its separator line).
pub(crate) fn split_output(output: &str) -> (String, String) {
    match output.split_once(ERROR_SEPARATOR) {
        Some((out, err)) => (
            out.strip_suffix('\n').unwrap_or(out).to_owned(),
            err.strip_prefix('\n').unwrap_or(err).to_owned(),
        ),
        None => (output.to_owned(), String::new()),
    }
}

/// Whether SSM cut this text.
pub(crate) fn is_truncated(text: &str) -> bool {
    text.trim_end().ends_with(TRUNCATED)
}

/// The last lines of stderr, joined for one report line.
fn stderr_tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && l.trim() != TRUNCATED)
        .collect();
    let tail = &lines[lines.len().saturating_sub(TAIL_LINES)..];
    if tail.is_empty() {
        "(no stderr)".to_owned()
    } else {
        tail.join(" / ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_output_splits_at_the_error_line_and_knows_truncation() {
        let (out, err) = split_output("{\"a\":1}\n----------ERROR-------\nwarn\nboom");
        assert_eq!((out.as_str(), err.as_str()), ("{\"a\":1}", "warn\nboom"));
        let (out, err) = split_output("only out\n");
        assert_eq!((out.as_str(), err.as_str()), ("only out\n", ""));
        assert!(is_truncated("xxxx\n---Output truncated---"));
        assert!(!is_truncated("xxxx"));
        assert_eq!(
            stderr_tail("a\nb\nc\nd\ne\nf\n---Output truncated---"),
            "b / c / d / e / f"
        );
        assert_eq!(stderr_tail(""), "(no stderr)");
    }
}
