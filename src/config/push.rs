//! `release push`'s settings: flags (and their env twins) over `[push]` over the defaults.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use super::PushFile;
use super::reach::{Reach, reach, remote};
use crate::bucket::resolve::BuildRef;
use crate::cli::PushArgs;
use crate::error::ExitError;
use crate::rollout::health::HealthCheck;
use crate::rollout::plan::BatchSize;
use crate::rollout::{Remote, template};

/// Seconds a host has to become healthy without `--health-timeout`.
const DEFAULT_HEALTH_TIMEOUT: u64 = 60;

/// Everything `push` needs besides the global settings, checked before anything is touched.
pub(crate) struct PushConfig {
    pub(crate) reach: Reach,
    /// `--build`, else latest-stable.
    pub(crate) reference: BuildRef,
    /// `--command`, already checked.
    pub(crate) template: Option<String>,
    /// `--batch` [default: 25%].
    pub(crate) batch: BatchSize,
    /// `--canary`: hosts in a first batch of their own [default: 0].
    pub(crate) canary: usize,
    pub(crate) health: HealthCheck,
    pub(crate) health_timeout: Duration,
    /// `--max-failures` over the whole push [default: 0].
    pub(crate) max_failures: usize,
    pub(crate) remote: Remote,
    pub(crate) log_dir: Option<PathBuf>,
}

impl PushConfig {
    /// Merges the layers; a bad value is a usage error (exit 2).
    pub(crate) fn resolve(args: PushArgs, file: &PushFile) -> Result<Self> {
        let reach = reach(&args.target, file)?;
        let template = args.command.or(file.command.clone());
        if let Some(t) = &template {
            template::check(t)?;
        }
        let batch: BatchSize = args
            .batch
            .or(file.batch.clone())
            .as_deref()
            .unwrap_or("25%")
            .parse()?;
        let health = health_check(
            args.health_url.or(file.health_url.clone()),
            args.health_command.or(file.health_command.clone()),
        )?;
        let reference: BuildRef = args.build.as_deref().unwrap_or("latest-stable").parse()?;
        Ok(Self {
            reach,
            reference,
            template,
            batch,
            canary: args.canary.or(file.canary).unwrap_or(0),
            health,
            health_timeout: Duration::from_secs(
                args.health_timeout
                    .or(file.health_timeout)
                    .unwrap_or(DEFAULT_HEALTH_TIMEOUT),
            ),
            max_failures: args.max_failures.or(file.max_failures).unwrap_or(0),
            remote: remote(&args.remote, file),
            log_dir: args.log_dir.or(file.log_dir.clone()),
        })
    }
}

fn health_check(url: Option<String>, command: Option<String>) -> Result<HealthCheck> {
    Ok(match (url, command) {
        (Some(_), Some(_)) => {
            return Err(
                ExitError::Usage("give --health-url or --health-command, not both".into()).into(),
            );
        }
        (Some(url), None) => HealthCheck::Url(url),
        (None, Some(command)) => HealthCheck::Command(command),
        (None, None) => HealthCheck::None,
    })
}
