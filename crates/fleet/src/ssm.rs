//! Systems Manager Run Command, as `push --via ssm` needs it: which agents are online, send a
//! shell script to instances by id, read back each instance's invocation, cancel.
//!
//! Plain structs and enums only in the public API, so the binary never names an SDK type (and
//! never instantiates the SDK's generics).

use aws_sdk_ssm::config::retry::RetryConfig;
use aws_sdk_ssm::error::DisplayErrorContext;
use aws_sdk_ssm::types::{CommandInvocationStatus, InstanceInformationStringFilter};

use crate::FleetError;

/// The most instance ids SendCommand and one DescribeInstanceInformation filter take.
/// SendCommand's TimeoutSeconds: an instance whose agent has not picked the command up by then
/// ends DeliveryTimedOut. SSM's default is an hour; a rolling push would rather report the host
/// failed after ten minutes than hold its batch that long.
const DELIVERY_TIMEOUT_SECS: i32 = 600;

pub const MAX_IDS_PER_CALL: usize = 50;

/// The document every command runs: a shell script, as root.
pub const DOCUMENT: &str = "AWS-RunShellScript";

/// What DescribeInstanceInformation says of an instance's agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Agent {
    /// Online: commands sent to it run.
    Online,
    /// Registered but not Online (`ConnectionLost`, `Inactive`): its PingStatus.
    Offline(String),
    /// Not registered with Systems Manager at all (no agent, no instance profile, no route).
    NotRegistered,
}

/// Where SSM writes each invocation's full output (`--ssm-output s3://bucket/prefix`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLocation {
    /// Bucket.
    pub bucket: String,
    /// Key prefix, without a trailing `/` (may be empty).
    pub prefix: String,
}

impl OutputLocation {
    /// The key of an invocation's full stdout or stderr (`stream`), in SSM's layout for
    /// AWS-RunShellScript.
    pub fn key(&self, command_id: &str, instance_id: &str, stream: &str) -> String {
        let tail =
            format!("{command_id}/{instance_id}/awsrunShellScript/0.awsrunShellScript/{stream}");
        if self.prefix.is_empty() {
            tail
        } else {
            format!("{}/{tail}", self.prefix)
        }
    }
}

/// One SendCommand: a script for at most [`MAX_IDS_PER_CALL`] instances.
#[derive(Debug, Clone)]
pub struct Send<'a> {
    /// Instance ids (at most 50).
    pub instance_ids: &'a [String],
    /// The script's lines (`commands` of AWS-RunShellScript).
    pub commands: Vec<String>,
    /// `executionTimeout`, seconds: the agent kills the script after this.
    pub execution_timeout: u64,
    /// Full output to S3, if wanted.
    pub output: Option<&'a OutputLocation>,
    /// Shown in the console and ListCommands (at most 100 characters).
    pub comment: String,
}

/// Where an invocation is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Pending, InProgress, Delayed, Cancelling: not finished.
    Running,
    /// Success.
    Success,
    /// Failed: the script exited non-zero.
    Failed,
    /// Cancelled (by CancelCommand).
    Cancelled,
    /// TimedOut: the script ran past executionTimeout.
    TimedOut,
    /// DeliveryTimedOut: the agent never picked it up.
    DeliveryTimedOut,
    /// Undeliverable: the instance is unknown or gone.
    Undeliverable,
    /// Terminated: the instance stopped while it ran.
    Terminated,
    /// A status this client does not know (as SSM words it): treated as finished.
    Other(String),
}

impl Status {
    /// Whether the invocation will not change any more.
    pub fn is_terminal(&self) -> bool {
        !matches!(self, Self::Running)
    }

    /// SSM's word for it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Running => "InProgress",
            Self::Success => "Success",
            Self::Failed => "Failed",
            Self::Cancelled => "Cancelled",
            Self::TimedOut => "TimedOut",
            Self::DeliveryTimedOut => "DeliveryTimedOut",
            Self::Undeliverable => "Undeliverable",
            Self::Terminated => "Terminated",
            Self::Other(word) => word,
        }
    }

    /// From an invocation's `Status` (AWS's coarse enum) and `StatusDetails`, which tells the
    /// terminal states apart: TimedOut is DeliveryTimedOut or ExecutionTimedOut, Failed may be
    /// Undeliverable or Terminated.
    pub fn of(status: &str, details: &str) -> Self {
        match (status, details) {
            ("Pending" | "InProgress" | "Delayed" | "Cancelling", _) => Self::Running,
            ("Success", _) => Self::Success,
            ("Cancelled", _) => Self::Cancelled,
            (_, "DeliveryTimedOut") | ("DeliveryTimedOut", _) => Self::DeliveryTimedOut,
            (_, "Undeliverable") | ("Undeliverable", _) => Self::Undeliverable,
            (_, "Terminated") | ("Terminated", _) => Self::Terminated,
            ("TimedOut", _) => Self::TimedOut,
            ("Failed", _) => Self::Failed,
            (other, _) => Self::Other(other.to_owned()),
        }
    }
}

/// One instance's invocation of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// `i-…`.
    pub instance_id: String,
    pub status: Status,
    /// The script's exit code (the plugin's ResponseCode; -1 when it never ran).
    pub exit_code: Option<i32>,
    /// The plugin's output as ListCommandInvocations returns it: stdout, then stderr after
    /// SSM's `----------ERROR-------` line, cut at 2,500 characters (then ending with
    /// `---Output truncated---`).
    pub output: String,
    /// SSM's StatusDetails (e.g. `DeliveryTimedOut`, `Failed`).
    pub details: String,
    /// Where the full stdout is, if the command had an S3 output location.
    pub stdout_url: Option<String>,
}

/// The Run Command client.
#[derive(Debug, Clone)]
pub struct Ssm {
    client: aws_sdk_ssm::Client,
}

fn api(what: &str, err: impl std::error::Error) -> FleetError {
    FleetError::Api {
        what: what.into(),
        detail: DisplayErrorContext(&err).to_string(),
    }
}

impl Ssm {
    /// A client from the shared configuration with the adaptive retry mode: on throttling it
    /// slows itself down (client-side rate limiting) instead of only retrying, which is what
    /// polling many commands needs.
    pub fn new(shared: &aws_config::SdkConfig) -> Self {
        let config = aws_sdk_ssm::config::Builder::from(shared)
            .retry_config(RetryConfig::adaptive())
            .build();
        Self {
            client: aws_sdk_ssm::Client::from_conf(config),
        }
    }

    /// The agent of each id, in the order given; one DescribeInstanceInformation (paged) per
    /// 50 ids. An id SSM does not list is `NotRegistered`.
    pub async fn agents(&self, ids: &[String]) -> Result<Vec<(String, Agent)>, FleetError> {
        let mut seen: Vec<(String, String)> = Vec::new();
        for chunk in ids.chunks(MAX_IDS_PER_CALL) {
            let filter = InstanceInformationStringFilter::builder()
                .key("InstanceIds")
                .set_values(Some(chunk.to_vec()))
                .build()
                .map_err(|e| api("DescribeInstanceInformation", e))?;
            let mut pages = self
                .client
                .describe_instance_information()
                .filters(filter)
                .max_results(50)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| api("DescribeInstanceInformation", e))?;
                for info in page.instance_information_list() {
                    let ping = info.ping_status().map(|p| p.as_str().to_owned());
                    if let Some(id) = info.instance_id() {
                        seen.push((id.to_owned(), ping.unwrap_or_default()));
                    }
                }
            }
        }
        Ok(ids
            .iter()
            .map(|id| {
                let agent = match seen.iter().find(|(s, _)| s == id) {
                    Some((_, ping)) if ping == "Online" => Agent::Online,
                    Some((_, ping)) => Agent::Offline(ping.clone()),
                    None => Agent::NotRegistered,
                };
                (id.clone(), agent)
            })
            .collect())
    }

    /// Sends the script; the command id. More than 50 ids is refused here, before AWS would.
    pub async fn send(&self, send: &Send<'_>) -> Result<String, FleetError> {
        if send.instance_ids.len() > MAX_IDS_PER_CALL {
            return Err(FleetError::Api {
                what: "SendCommand".into(),
                detail: format!(
                    "{} instance ids in one call (at most {MAX_IDS_PER_CALL})",
                    send.instance_ids.len()
                ),
            });
        }
        let comment: String = send.comment.chars().take(100).collect();
        let mut request = self
            .client
            .send_command()
            .document_name(DOCUMENT)
            .set_instance_ids(Some(send.instance_ids.to_vec()))
            .parameters("commands", send.commands.clone())
            .parameters("executionTimeout", vec![send.execution_timeout.to_string()])
            // SSM's own limits would stop a batch half-sent (MaxErrors defaults to 0: one failure
            // and the rest of the call's instances never get the command); the planner's
            // --max-failures decides instead, between batches.
            .max_concurrency("100%")
            .max_errors("100%")
            .timeout_seconds(DELIVERY_TIMEOUT_SECS)
            .comment(comment);
        if let Some(output) = send.output {
            request = request.output_s3_bucket_name(&output.bucket);
            if !output.prefix.is_empty() {
                request = request.output_s3_key_prefix(&output.prefix);
            }
        }
        let sent = request.send().await.map_err(|e| api("SendCommand", e))?;
        sent.command()
            .and_then(|c| c.command_id())
            .map(str::to_owned)
            .ok_or_else(|| FleetError::Api {
                what: "SendCommand".into(),
                detail: "the answer has no command id".into(),
            })
    }

    /// Every invocation of `command_id` so far (ListCommandInvocations with details, paged).
    /// Empty right after SendCommand: SSM lists invocations only once it has fanned out.
    pub async fn invocations(&self, command_id: &str) -> Result<Vec<Invocation>, FleetError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_command_invocations()
            .command_id(command_id)
            .details(true)
            .max_results(50)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| api("ListCommandInvocations", e))?;
            out.extend(page.command_invocations().iter().map(invocation));
        }
        Ok(out)
    }

    /// An instance's stdout and stderr as GetCommandInvocation returns them: the first 24,000
    /// and 8,000 characters (more than the listing's 2,500), for outputs the listing cut.
    pub async fn output(
        &self,
        command_id: &str,
        instance_id: &str,
    ) -> Result<(String, String), FleetError> {
        let got = self
            .client
            .get_command_invocation()
            .command_id(command_id)
            .instance_id(instance_id)
            .send()
            .await
            .map_err(|e| api("GetCommandInvocation", e))?;
        Ok((
            got.standard_output_content().unwrap_or_default().to_owned(),
            got.standard_error_content().unwrap_or_default().to_owned(),
        ))
    }

    /// Asks SSM to stop `command_id` on every instance still running it.
    pub async fn cancel(&self, command_id: &str) -> Result<(), FleetError> {
        self.client
            .cancel_command()
            .command_id(command_id)
            .send()
            .await
            .map_err(|e| api("CancelCommand", e))?;
        Ok(())
    }
}

fn invocation(raw: &aws_sdk_ssm::types::CommandInvocation) -> Invocation {
    let details = raw.status_details().unwrap_or_default();
    let status = raw
        .status()
        .map_or(Status::Running, |s: &CommandInvocationStatus| {
            Status::of(s.as_str(), details)
        });
    // AWS-RunShellScript has one plugin: its code and output are the script's.
    let plugin = raw.command_plugins().first();
    Invocation {
        instance_id: raw.instance_id().unwrap_or_default().to_owned(),
        exit_code: plugin.map(|p| p.response_code()),
        output: plugin
            .and_then(|p| p.output())
            .unwrap_or_default()
            .to_owned(),
        details: details.to_owned(),
        stdout_url: plugin
            .and_then(|p| p.standard_output_url())
            .or(raw.standard_output_url())
            .filter(|u| !u.is_empty())
            .map(str::to_owned),
        status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_terminal_or_not() {
        for running in ["Pending", "InProgress", "Delayed", "Cancelling"] {
            assert_eq!(Status::of(running, running), Status::Running, "{running}");
        }
        // (Status, StatusDetails) as AWS sends them, and what they mean.
        let cases = [
            ("Success", "Success", Status::Success),
            ("Failed", "Failed", Status::Failed),
            ("Cancelled", "Cancelled", Status::Cancelled),
            ("TimedOut", "ExecutionTimedOut", Status::TimedOut),
            ("TimedOut", "DeliveryTimedOut", Status::DeliveryTimedOut),
            ("Failed", "Undeliverable", Status::Undeliverable),
            ("Failed", "Terminated", Status::Terminated),
            ("Undeliverable", "", Status::Undeliverable),
            ("SomethingNew", "", Status::Other("SomethingNew".into())),
        ];
        for (status, details, want) in cases {
            let got = Status::of(status, details);
            assert!(got.is_terminal(), "{status}/{details}");
            assert_eq!(got, want, "{status}/{details}");
        }
    }

    #[test]
    fn output_keys_follow_ssm_layout() {
        let with = OutputLocation {
            bucket: "logs".into(),
            prefix: "push/web".into(),
        };
        assert_eq!(
            with.key("c-1", "i-1", "stdout"),
            "push/web/c-1/i-1/awsrunShellScript/0.awsrunShellScript/stdout"
        );
        let bare = OutputLocation {
            bucket: "logs".into(),
            prefix: String::new(),
        };
        assert_eq!(
            bare.key("c-1", "i-1", "stderr"),
            "c-1/i-1/awsrunShellScript/0.awsrunShellScript/stderr"
        );
    }
}
