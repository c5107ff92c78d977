//! The AWS SDK's shared configuration: the standard chain (env, profiles, instance role) with
//! an optional region, and the timeouts every AWS call gets.
//!
//! Without timeouts, an endpoint that accepts a connection and never answers holds a command
//! forever (the SDK sets only a connect timeout by default). A call's answer must start within
//! the read timeout and the whole call, retries included, end within the operation timeout;
//! a streamed body is judged by its progress instead (the SDK's stalled-stream protection), so
//! a large download is never cut for taking long.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

/// Default seconds to open a connection.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: u64 = 10;
/// Default seconds for an answer to start (after the request, body included, was sent).
pub(crate) const DEFAULT_READ_TIMEOUT: u64 = 60;
/// Default seconds for a whole call, retries included.
pub(crate) const DEFAULT_OPERATION_TIMEOUT: u64 = 300;

/// Timeouts of every AWS call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    /// Opening a connection.
    pub(crate) connect: Duration,
    /// From sending a request to the first byte of its answer.
    pub(crate) read: Duration,
    /// A whole call, retries included (a streamed body excepted).
    pub(crate) operation: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(DEFAULT_CONNECT_TIMEOUT),
            read: Duration::from_secs(DEFAULT_READ_TIMEOUT),
            operation: Duration::from_secs(DEFAULT_OPERATION_TIMEOUT),
        }
    }
}

impl Timeouts {
    /// The SDK's form.
    pub(crate) fn sdk(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.connect)
            .read_timeout(self.read)
            .operation_timeout(self.operation)
            .build()
    }

    /// For a request whose body is large (an 8 MiB upload part): the read timeout would count
    /// the time spent sending it, so the operation's limit stands in for it.
    pub(crate) fn sdk_for_large_body(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.connect)
            .read_timeout(self.operation)
            .operation_timeout(self.operation)
            .build()
    }
}

/// Loads the standard configuration chain with `region` (if given) and `timeouts`.
pub(crate) async fn sdk_config(region: Option<String>, timeouts: &Timeouts) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts.sdk());
    if let Some(region) = region {
        loader = loader.region(Region::new(region));
    }
    loader.load().await
}
