//! One module per command; each reads like the steps it takes.

pub mod build;
pub mod current;
pub mod history;
pub mod install;
pub mod key;
pub mod list;
pub mod promote;
pub mod push;
pub mod rollback;
pub mod show;
pub mod status;
pub mod unlock;

use anyhow::Result;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::layout::Layout;
use crate::output::Printer;
use crate::store::{Store, WritePolicy};

/// What every command gets.
#[derive(Debug)]
pub struct Context {
    /// Resolved global settings.
    pub settings: Settings,
    /// Where output goes (shared with the tasks of a push).
    pub printer: std::sync::Arc<Printer>,
    /// Cancelled by SIGINT/SIGTERM.
    pub cancel: CancellationToken,
}

impl Context {
    /// The bucket layout of the configured artifact and stage.
    pub fn layout(&self) -> Result<Layout> {
        Ok(Layout::new(self.settings.artifact()?, &self.settings.stage))
    }

    /// The AWS configuration: the standard chain, `--region` and the timeouts.
    pub async fn aws_config(&self) -> aws_config::SdkConfig {
        crate::aws::sdk_config(self.settings.region.clone(), &self.settings.timeouts).await
    }

    /// Opens the configured store; `storage_class` applies to archives only.
    pub async fn store(&self, storage_class: Option<String>) -> Store {
        let policy = WritePolicy {
            sse: self.settings.sse,
            kms_key_id: self.settings.sse_kms_key_id.clone(),
            storage_class,
        };
        Store::open(&self.settings, policy).await
    }
}
