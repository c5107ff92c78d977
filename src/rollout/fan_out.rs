//! Asking many hosts at once, shared by `push` and `status`: one task per host, new SSH
//! connections limited by `--max-connections`, control sockets in one short temporary
//! directory, and one result per host in the hosts' order, even for a task that panicked.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;

use anyhow::Result;
use openssh::Session;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::ssh::{self, SshOptions};
use super::targets::Target;

/// What the hosts of one command share to connect.
#[derive(Debug)]
pub(crate) struct Connections {
    options: SshOptions,
    /// Limits connections being opened at once, not sessions open.
    opening: Semaphore,
    control_dir: tempfile::TempDir,
}

impl Connections {
    /// Creates the control-socket directory; `max_connections` below 1 counts as 1.
    pub(crate) fn new(options: SshOptions, max_connections: usize) -> Result<Self> {
        // Short: the control sockets live here, and Unix sockets allow about 100 bytes.
        let control_dir = tempfile::Builder::new().prefix("rls").tempdir_in("/tmp")?;
        Ok(Self {
            options,
            opening: Semaphore::new(max_connections.max(1)),
            control_dir,
        })
    }

    /// Opens a session to `target`, waiting for a free connection slot first.
    pub(crate) async fn connect(&self, target: &Target) -> Result<Session> {
        let _permit = self.opening.acquire().await?;
        ssh::connect(&self.options, &target.address, self.control_dir.path()).await
    }
}

/// Runs `host` for every target at once and returns one result per target, in their order: a
/// task that panicked, was cancelled or vanished gives `lost(target, why)`, never a missing line.
pub(crate) async fn each_host<T, F, Fut>(
    targets: Vec<Target>,
    host: F,
    lost: impl Fn(&Target, String) -> T,
) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Target) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let mut running = JoinSet::new();
    let mut planned: HashMap<tokio::task::Id, (usize, Target)> = HashMap::new();
    for (index, target) in targets.into_iter().enumerate() {
        let handle = running.spawn(host(target.clone()));
        planned.insert(handle.id(), (index, target));
    }
    let mut done: BTreeMap<usize, T> = BTreeMap::new();
    while let Some(joined) = running.join_next_with_id().await {
        let (id, outcome) = match joined {
            Ok((id, result)) => (id, Ok(result)),
            Err(err) => (err.id(), Err(err)),
        };
        let Some((index, target)) = planned.remove(&id) else {
            continue;
        };
        let result = outcome.unwrap_or_else(|err| {
            let why = if err.is_panic() {
                panic_text(err.into_panic())
            } else {
                "its task was cancelled".to_owned()
            };
            lost(&target, why)
        });
        done.insert(index, result);
    }
    for (index, target) in planned.into_values() {
        done.insert(index, lost(&target, "its task vanished".to_owned()));
    }
    done.into_values().collect()
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map_or_else(|| "a panic".to_owned(), |text| (*text).to_owned()),
    }
}
