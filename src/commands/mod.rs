//! One module per command; each reads like the steps it takes.

pub(crate) mod build;
pub(crate) mod current;
pub(crate) mod history;
pub(crate) mod install;
pub(crate) mod key;
pub(crate) mod list;
pub(crate) mod promote;
pub(crate) mod push;
pub(crate) mod rollback;
pub(crate) mod show;
pub(crate) mod status;
pub(crate) mod unlock;

use anyhow::Result;
use release_fleet::Fleet;
use tokio_util::sync::CancellationToken;

use crate::bucket::layout::Layout;
use crate::bucket::store::{Store, WritePolicy};
use crate::config::Settings;
use crate::error::ExitError;
use crate::output::Printer;
use crate::rollout::targets::{self, Source, Target};

/// What every command gets.
#[derive(Debug)]
pub(crate) struct Context {
    /// Resolved global settings.
    pub(crate) settings: Settings,
    /// Where output goes (shared with the tasks of a push).
    pub(crate) printer: std::sync::Arc<Printer>,
    /// Cancelled by SIGINT/SIGTERM.
    pub(crate) cancel: CancellationToken,
}

impl Context {
    /// The bucket layout of the configured artifact and stage.
    pub(crate) fn layout(&self) -> Result<Layout> {
        Ok(Layout::new(self.settings.artifact()?, &self.settings.stage))
    }

    /// The AWS configuration: the standard chain, `--region` and the timeouts.
    pub(crate) async fn aws_config(&self) -> aws_config::SdkConfig {
        crate::aws::sdk_config(self.settings.region.clone(), &self.settings.timeouts).await
    }

    /// Opens the configured store; `storage_class` applies to archives only.
    pub(crate) async fn store(&self, storage_class: Option<String>) -> Store {
        let policy = WritePolicy {
            sse: self.settings.sse,
            kms_key_id: self.settings.sse_kms_key_id.clone(),
            storage_class,
        };
        Store::open(
            &self.settings.store,
            self.settings.region.clone(),
            self.settings.timeouts,
            policy,
        )
        .await
    }

    /// Resolves the targets once, saying which instances were left out.
    pub(crate) async fn targets(
        &self,
        source: &Source,
    ) -> Result<(Vec<Target>, Option<Fleet>, Vec<targets::Skipped>)> {
        let fleet = match source {
            Source::Groups { .. } => Some(Fleet::new(&self.aws_config().await)),
            Source::Hosts(_) => None,
        };
        let (found, skipped) = targets::resolve(source, fleet.as_ref()).await?;
        for s in &skipped {
            self.printer.warn(&format!(
                "skipping {} in {}: {}",
                s.instance, s.group, s.reason
            ));
        }
        if found.is_empty() {
            let what = match source {
                Source::Groups { names, .. } => {
                    format!("Auto Scaling Group(s) {}", names.join(", "))
                }
                Source::Hosts(_) => "--hosts".into(),
            };
            return Err(ExitError::Usage(format!(
                "{what}: no InService, Healthy instance to reach"
            ))
            .into());
        }
        Ok((found, fleet, skipped))
    }
}
