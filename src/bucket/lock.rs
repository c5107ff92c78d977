//! The push lock: `{artifact}/{stage}/push.lock`, written with `If-None-Match: *`, so two
//! pushes of one artifact never interleave. It says who holds it, since when, for what, and
//! when it expires. A push renews it (compare-and-swap on its ETag) while it runs, so a long
//! push never outlives its own lock; `release unlock` removes a stale or damaged one, and only
//! the version it read (a conditional delete on its ETag).

use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::bucket::layout::Layout;
use crate::bucket::store::{Precondition, Store, StoreError};
use crate::env_vars;
use crate::error::ExitError;
use crate::output::Printer;
use crate::rollout::Halt;

/// How long a lock is honoured: longer than any sane push, short enough to recover from a
/// controller that died without unlocking. A running push renews it every quarter of this.
pub(crate) const LOCK_TTL_SECONDS: i64 = 2 * 3600;

/// The lock's lifetime, and whether the test-only variable changed it.
///
/// `RELEASE_TEST_LOCK_TTL_SECONDS` exists so tests can prove renewal without waiting two hours;
/// it is not meant for operators (a push warns when it is set).
pub(crate) fn lifetime() -> Result<(SignedDuration, bool)> {
    let Some(text) = std::env::var_os(env_vars::TEST_LOCK_TTL) else {
        return Ok((SignedDuration::from_secs(LOCK_TTL_SECONDS), false));
    };
    match text.to_str().and_then(|t| t.trim().parse::<i64>().ok()) {
        Some(seconds) if (1..=LOCK_TTL_SECONDS).contains(&seconds) => {
            Ok((SignedDuration::from_secs(seconds), true))
        }
        _ => Err(ExitError::Usage(format!(
            "{} must be a number of seconds from 1 to {LOCK_TTL_SECONDS}, not `{}`",
            env_vars::TEST_LOCK_TTL,
            text.to_string_lossy()
        ))
        .into()),
    }
}

/// What the lock object holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct LockInfo {
    /// `user@host`.
    pub(crate) holder: String,
    /// Process id on that host.
    pub(crate) pid: u32,
    /// When it was taken (RFC 3339).
    pub(crate) since: String,
    /// When it stops counting (RFC 3339); moved forward by each renewal.
    pub(crate) expires: String,
    /// What is being pushed.
    pub(crate) what: String,
    /// A token unique to this push.
    pub(crate) token: String,
}

impl LockInfo {
    /// Whether it has expired.
    pub(crate) fn is_expired(&self) -> bool {
        self.expires
            .parse::<Timestamp>()
            .map_or(true, |at| at < Timestamp::now())
    }

    /// `holder since … (what), until …`, for messages.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} since {} ({}), until {}",
            self.holder, self.since, self.what, self.expires
        )
    }
}

/// What is at the lock's key.
#[derive(Debug, Clone)]
pub(crate) enum Current {
    /// A push lock, with the ETag it was read at.
    Held {
        info: LockInfo,
        /// Its version, for a conditional delete.
        etag: String,
    },
    /// Something no push writes (empty, truncated, not JSON), with the ETag it was read at.
    Damaged {
        /// Why it is not a lock.
        why: String,
        /// Its version, for a conditional delete.
        etag: String,
    },
}

/// What is at the lock's key now, if anything.
pub(crate) async fn current(store: &Store, layout: &Layout) -> Result<Option<Current>> {
    let key = layout.push_lock();
    let Some(object) = store.get(&key).await? else {
        return Ok(None);
    };
    Ok(Some(
        match serde_json::from_slice::<LockInfo>(&object.body) {
            Ok(info) => Current::Held {
                info,
                etag: object.etag,
            },
            Err(err) => Current::Damaged {
                why: if object.body.is_empty() {
                    "it is empty".to_owned()
                } else {
                    format!("it is not a push lock: {err}")
                },
                etag: object.etag,
            },
        },
    ))
}

/// A held lock: renew it with [`PushLock::keep`] while the push runs, `release` it when done.
#[derive(Debug)]
pub(crate) struct PushLock {
    key: String,
    url: String,
    info: LockInfo,
    etag: String,
    ttl: SignedDuration,
}

fn stamp(at: Timestamp) -> String {
    at.round(jiff::Unit::Second).unwrap_or(at).to_string()
}

/// Takes the lock for `ttl`, or fails with exit 3 naming the holder.
pub(crate) async fn acquire(
    store: &Store,
    layout: &Layout,
    holder: &str,
    what: &str,
    ttl: SignedDuration,
) -> Result<PushLock> {
    let key = layout.push_lock();
    let url = store.url(&key);
    let now = Timestamp::now();
    let info = LockInfo {
        holder: holder.to_owned(),
        pid: std::process::id(),
        since: stamp(now),
        expires: stamp(now + ttl),
        what: what.to_owned(),
        token: uuid::Uuid::new_v4().to_string(),
    };
    let body = Bytes::from(serde_json::to_vec_pretty(&info)?);
    match store.put(&key, body.clone(), Precondition::IfAbsent).await {
        Ok(()) => {}
        Err(StoreError::PreconditionFailed { .. }) => {
            let message = match current(store, layout).await.ok().flatten() {
                Some(Current::Held { info: h, .. }) if h.is_expired() => format!(
                    "another push holds `{url}`: {} since {} ({}), EXPIRED at {}: if that push \
                     is gone, run `release unlock`",
                    h.holder, h.since, h.what, h.expires
                ),
                Some(Current::Held { info: h, .. }) => format!(
                    "another push holds `{url}`: {}; wait for it, or `release unlock --force` \
                     if it is dead",
                    h.describe()
                ),
                Some(Current::Damaged { why, .. }) => format!(
                    "`{url}` is damaged ({why}): no push wrote it like this; \
                     `release unlock --force` removes it"
                ),
                None => format!("another push holds `{url}` (the lock could not be read)"),
            };
            return Err(ExitError::Conflict(message).into());
        }
        Err(err) => return Err(err).context("taking the push lock"),
    }
    // The ETag the renewals compare against: read back, and ours only if it holds our body.
    match store.get(&key).await? {
        Some(object) if object.body == body => Ok(PushLock {
            key,
            url,
            info,
            etag: object.etag,
            ttl,
        }),
        _ => Err(ExitError::Conflict(format!(
            "`{url}` was replaced right after this push took it (`release unlock --force` \
             elsewhere?); nothing was pushed"
        ))
        .into()),
    }
}

impl PushLock {
    /// Renews the lock every quarter of its lifetime until `done` fires. If it was removed or
    /// taken over meanwhile, or could not be renewed before it expired, `halt` says so and no new
    /// batch starts.
    pub(crate) async fn keep(
        &mut self,
        store: &Store,
        done: &CancellationToken,
        halt: &Halt,
        printer: &Printer,
    ) {
        let every = (self.ttl / 4)
            .unsigned_abs()
            .max(Duration::from_millis(200));
        loop {
            tokio::select! {
                () = done.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            match self.renew(store).await {
                Ok(()) => {}
                Err(Renewal::Lost(why)) => {
                    halt.set(why);
                    return;
                }
                Err(Renewal::Failed(err)) if self.info.is_expired() => {
                    halt.set(format!(
                        "the push lock `{}` expired: it could not be renewed: {err:#}",
                        self.url
                    ));
                    return;
                }
                Err(Renewal::Failed(err)) => printer.warn(&format!(
                    "could not renew the push lock `{}` (trying again): {err:#}",
                    self.url
                )),
            }
        }
    }

    /// One compare-and-swap of the lock with a later expiry.
    async fn renew(&mut self, store: &Store) -> Result<(), Renewal> {
        let mut info = self.info.clone();
        info.expires = stamp(Timestamp::now() + self.ttl);
        let body = serde_json::to_vec_pretty(&info)
            .map(Bytes::from)
            .map_err(|e| Renewal::Failed(e.into()))?;
        let written = store
            .put(
                &self.key,
                body.clone(),
                Precondition::IfMatch(self.etag.clone()),
            )
            .await;
        match written {
            Ok(()) => {}
            Err(StoreError::PreconditionFailed { .. }) => return Err(self.lost(store).await),
            Err(err) => return Err(Renewal::Failed(err.into())),
        }
        match store.get(&self.key).await {
            Ok(Some(object)) if object.body == body => {
                self.etag = object.etag;
                self.info = info;
                Ok(())
            }
            Ok(_) => Err(self.lost(store).await),
            Err(err) => Err(Renewal::Failed(err.into())),
        }
    }

    /// Says who holds the lock now that it is no longer ours.
    async fn lost(&self, store: &Store) -> Renewal {
        let now = match store.get(&self.key).await {
            Ok(Some(object)) => match serde_json::from_slice::<LockInfo>(&object.body) {
                Ok(other) => format!("it is now held by {}", other.describe()),
                Err(_) => "it now holds something that is not a push lock".to_owned(),
            },
            Ok(None) => "it was removed (`release unlock`)".to_owned(),
            Err(err) => format!("it could not be read: {err}"),
        };
        Renewal::Lost(format!(
            "the push lock `{}` was lost: {now}; another push may be running",
            self.url
        ))
    }

    /// Removes the lock if it is still ours (same token), and only the version read.
    pub(crate) async fn release(self, store: &Store) -> Result<()> {
        let Some(object) = store.get(&self.key).await? else {
            return Ok(());
        };
        let ours = serde_json::from_slice::<LockInfo>(&object.body)
            .is_ok_and(|info| info.token == self.info.token);
        if !ours {
            return Ok(());
        }
        match store.delete_if_match(&self.key, &object.etag).await {
            // Changed since it was read: no longer ours to remove.
            Ok(()) | Err(StoreError::PreconditionFailed { .. }) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}

/// Why a renewal did not happen.
enum Renewal {
    /// Someone removed or replaced the lock.
    Lost(String),
    /// The store did not answer as it should; the next renewal may work.
    Failed(anyhow::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::store::DirStore;

    /// Renewal, loss and release against the directory store (S3 is covered by
    /// tests/it/hardening_push.rs against moto).
    #[tokio::test]
    async fn renewed_by_compare_and_swap_and_released_only_while_ours() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::Dir(DirStore::new(root.path().to_path_buf()));
        let layout = Layout::new("web", "prod");
        let ttl = SignedDuration::from_secs(60);
        let mut held = acquire(&store, &layout, "me@here", "push web 1", ttl)
            .await
            .unwrap();
        let taken = acquire(&store, &layout, "other@there", "push web 2", ttl).await;
        assert!(taken.is_err(), "a second push is refused");

        let before = held.etag.clone();
        held.info.expires = "2000-01-01T00:00:00Z".into();
        assert!(held.renew(&store).await.is_ok());
        assert_ne!(held.etag, before, "the renewal wrote a new version");
        let Some(Current::Held { info, .. }) = current(&store, &layout).await.unwrap() else {
            panic!("no lock after renewal");
        };
        assert!(!info.is_expired(), "the expiry moved: {info:?}");
        assert_eq!(info.token, held.info.token);

        // Someone removes it and another push takes it: the next renewal finds it lost.
        store.delete(&layout.push_lock()).await.unwrap();
        let theirs = acquire(&store, &layout, "other@there", "push web 2", ttl)
            .await
            .unwrap();
        match held.renew(&store).await {
            Err(Renewal::Lost(why)) => assert!(why.contains("other@there"), "{why}"),
            _ => panic!("the renewal did not see the lock taken"),
        }
        held.release(&store).await.unwrap();
        let Some(Current::Held { info, .. }) = current(&store, &layout).await.unwrap() else {
            panic!("the other push's lock was removed");
        };
        assert_eq!(info.holder, "other@there");
        theirs.release(&store).await.unwrap();
        assert!(current(&store, &layout).await.unwrap().is_none());
    }
}
