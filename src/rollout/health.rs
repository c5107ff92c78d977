//! Health checks after a host is updated: an HTTP URL polled from the controller (2xx within
//! the timeout), or a command run on the host (exit 0 within the timeout).

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use openssh::Session;

use super::ssh::{self, RemoteCommand};

/// Pause between attempts.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// How a host proves it is healthy.
#[derive(Debug, Clone)]
pub(crate) enum HealthCheck {
    /// No check.
    None,
    /// GET this URL template (`{address}`, `{host}`), expect 2xx.
    Url(String),
    /// Run this shell command on the host, expect exit 0.
    Command(String),
}

/// Polls until healthy or `timeout` has passed.
pub(crate) async fn wait_healthy(
    check: &HealthCheck,
    session: &Session,
    host: &str,
    address: &str,
    timeout: Duration,
) -> Result<()> {
    let started = Instant::now();
    loop {
        let attempt = match check {
            HealthCheck::None => return Ok(()),
            HealthCheck::Url(template) => {
                let url = template
                    .replace("{address}", address)
                    .replace("{host}", host);
                probe_url(url).await
            }
            HealthCheck::Command(command) => {
                let remote = RemoteCommand::Shell(command.clone());
                match ssh::run(session, &remote, |_| {}).await {
                    Ok(done) if done.code == Some(0) => Ok(()),
                    Ok(done) => Err(anyhow::anyhow!(
                        "`{command}` exited {:?}: {}",
                        done.code,
                        done.stderr_tail.join(" / ")
                    )),
                    Err(err) => Err(err),
                }
            }
        };
        let last = match attempt {
            Ok(()) => return Ok(()),
            Err(err) => format!("{err:#}"),
        };
        if started.elapsed() + POLL_EVERY > timeout {
            bail!("not healthy after {}s: {last}", timeout.as_secs());
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Polls a `--health-url` template from the controller until it answers 2xx or `timeout` has
/// passed: the SSM transport's check, where no session to the host exists.
pub(crate) async fn wait_url(
    template: &str,
    host: &str,
    address: &str,
    timeout: Duration,
) -> Result<()> {
    let started = Instant::now();
    let url = template
        .replace("{address}", address)
        .replace("{host}", host);
    loop {
        let last = match probe_url(url.clone()).await {
            Ok(()) => return Ok(()),
            Err(err) => format!("{err:#}"),
        };
        if started.elapsed() + POLL_EVERY > timeout {
            bail!("not healthy after {}s: {last}", timeout.as_secs());
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

async fn probe_url(url: String) -> Result<()> {
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .build()
            .into();
        let response = agent
            .get(&url)
            .call()
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            bail!("{url} answered {status}")
        }
    })
    .await?
}
