//! The push lock: `{artifact}/{stage}/push.lock`, written with `If-None-Match: *`, so two
//! pushes of one artifact never interleave. It says who holds it, since when, for what, and
//! when it expires; `release unlock` removes a stale one.

use anyhow::{Context as _, Result};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::Problem;
use crate::layout::Layout;
use crate::store::{Precondition, Store, StoreError};

/// How long a lock is honoured: longer than any sane push, short enough to recover from a
/// controller that died without unlocking.
pub const LOCK_TTL_SECONDS: i64 = 2 * 3600;

/// What the lock object holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockInfo {
    /// `user@host`.
    pub holder: String,
    /// Process id on that host.
    pub pid: u32,
    /// When it was taken (RFC 3339).
    pub since: String,
    /// When it stops counting (RFC 3339).
    pub expires: String,
    /// What is being pushed.
    pub what: String,
    /// A token unique to this push.
    pub token: String,
}

impl LockInfo {
    /// Whether it has expired.
    pub fn is_expired(&self) -> bool {
        self.expires
            .parse::<jiff::Timestamp>()
            .map_or(true, |at| at < jiff::Timestamp::now())
    }
}

/// A held lock; `release` it when done.
#[derive(Debug)]
pub struct PushLock {
    key: String,
    body: Bytes,
}

/// Takes the lock, or fails with exit 3 naming the holder.
pub async fn acquire(store: &Store, layout: &Layout, holder: &str, what: &str) -> Result<PushLock> {
    let key = layout.push_lock();
    let now = jiff::Timestamp::now();
    let info = LockInfo {
        holder: holder.to_owned(),
        pid: std::process::id(),
        since: now.round(jiff::Unit::Second).unwrap_or(now).to_string(),
        expires: (now + jiff::SignedDuration::from_secs(LOCK_TTL_SECONDS))
            .round(jiff::Unit::Second)
            .unwrap_or(now)
            .to_string(),
        what: what.to_owned(),
        token: uuid::Uuid::new_v4().to_string(),
    };
    let body = Bytes::from(serde_json::to_vec_pretty(&info)?);
    match store.put(&key, body.clone(), Precondition::IfAbsent).await {
        Ok(()) => Ok(PushLock { key, body }),
        Err(StoreError::PreconditionFailed { .. }) => {
            let held = read(store, layout).await.ok().flatten();
            let who = match held {
                Some(h) if h.is_expired() => format!(
                    "{} since {} ({}), EXPIRED at {}: if that push is gone, run `release unlock`",
                    h.holder, h.since, h.what, h.expires
                ),
                Some(h) => format!(
                    "{} since {} ({}), until {}; wait for it, or `release unlock --force` if it is dead",
                    h.holder, h.since, h.what, h.expires
                ),
                None => "someone (the lock could not be read)".to_owned(),
            };
            Err(
                Problem::Conflict(format!("another push holds `{}`: {who}", store.url(&key)))
                    .into(),
            )
        }
        Err(err) => Err(err).context("taking the push lock"),
    }
}

/// The current lock, if any.
pub async fn read(store: &Store, layout: &Layout) -> Result<Option<LockInfo>> {
    let key = layout.push_lock();
    let Some(object) = store.get(&key).await? else {
        return Ok(None);
    };
    let info = serde_json::from_slice(&object.body)
        .with_context(|| format!("`{}` is not a push lock", store.url(&key)))?;
    Ok(Some(info))
}

impl PushLock {
    /// Removes the lock if it is still ours.
    pub async fn release(self, store: &Store) -> Result<()> {
        match store.get(&self.key).await? {
            Some(object) if object.body == self.body => Ok(store.delete(&self.key).await?),
            _ => Ok(()),
        }
    }
}
