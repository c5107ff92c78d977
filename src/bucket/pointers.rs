//! The bucket's pointers and build numbers: reading `latest.txt`/`latest-stable.txt`,
//! claiming the next build number, and moving a pointer by compare-and-swap.
//!
//! Claim protocol: the next number is one more than the highest of latest.txt's VERSION and
//! every number the bucket names (archives, manifests, claims). It is claimed by writing
//! `claims/{N}` with `If-None-Match: *` and a token unique to this build, then reading it back
//! (some S3-compatible stores check the condition without atomicity: of two racing writers
//! both may "win", but only one token remains). A lost claim moves on to N+1.

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;

use crate::bucket::layout::Layout;
use crate::bucket::store::{Object, Precondition, Store, StoreError};
use crate::error::ExitError;
use crate::manifest::Manifest;

/// How many numbers one build tries before giving up (each loss means another build won one).
const CLAIM_ATTEMPTS: u64 = 200;
/// How many times a pointer move re-reads after losing a race.
const MOVE_ATTEMPTS: usize = 50;

/// A pointer as read: its manifest and the ETag to compare-and-swap against.
#[derive(Debug, Clone)]
pub(crate) struct Pointer {
    /// The manifest it holds.
    pub(crate) manifest: Manifest,
    /// Its version tag.
    pub(crate) etag: String,
}

/// Reads a pointer (`latest.txt` or `latest-stable.txt`); garbage is an input error, never
/// mistaken for "no builds yet" (the old build job's worst bug restarted numbering at 1).
pub(crate) async fn read(store: &Store, key: &str) -> Result<Option<Pointer>> {
    let Some(Object { body, etag }) = store.get(key).await? else {
        return Ok(None);
    };
    let manifest = Manifest::parse_build(&body).map_err(|e| {
        ExitError::Usage(format!(
            "`{}` is not a RELEASE manifest ({e}); nothing was changed: fix or delete it \
             (the next build number is computed from it and must not be guessed)",
            store.url(key)
        ))
    })?;
    Ok(Some(Pointer { manifest, etag }))
}

/// The number the next build should try first.
pub(crate) async fn next_candidate(store: &Store, layout: &Layout) -> Result<u64> {
    let latest = read(store, &layout.latest()).await?;
    let from_pointer = latest.and_then(|p| p.manifest.version()).unwrap_or(0);
    let listed = store.list(&layout.prefix()).await?;
    let from_keys = listed
        .iter()
        .filter_map(|object| layout.build_number_of(&object.key))
        .max()
        .unwrap_or(0);
    Ok(from_pointer.max(from_keys) + 1)
}

/// Claims the first free number from `first` on; returns it.
pub(crate) async fn claim(store: &Store, layout: &Layout, first: u64, token: &str) -> Result<u64> {
    let body = Bytes::from(format!("{token}\n"));
    for number in first..first + CLAIM_ATTEMPTS {
        let key = layout.claim(number);
        match store.put(&key, body.clone(), Precondition::IfAbsent).await {
            Ok(()) => {}
            Err(StoreError::PreconditionFailed { .. }) => continue,
            Err(err) => {
                return Err(err).with_context(|| format!("claiming build number {number}"));
            }
        }
        let held = store
            .get(&key)
            .await
            .with_context(|| format!("reading back the claim on build number {number}"))?;
        if held.is_some_and(|object| object.body == body) {
            return Ok(number);
        }
        tracing::debug!(
            number,
            "claim overwritten by a concurrent build; trying the next"
        );
    }
    bail!(
        "could not claim a build number from {first} to {} in {}: too many concurrent builds",
        first + CLAIM_ATTEMPTS - 1,
        store.url(&layout.claims_prefix())
    )
}

/// Whether a pointer moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Moved {
    /// It now holds the new manifest.
    Yes,
    /// It already named a build at least this new; it was left alone.
    AlreadyNewer(u64),
}

/// Moves `key` to `manifest` by compare-and-swap, never to a lower VERSION than it holds.
pub(crate) async fn advance(store: &Store, key: &str, manifest: &Manifest) -> Result<Moved> {
    let number = manifest.version().unwrap_or(0);
    let body = Bytes::from(manifest.to_text());
    for _ in 0..MOVE_ATTEMPTS {
        let current = read(store, key).await?;
        let condition = match &current {
            Some(pointer) => {
                let held = pointer.manifest.version().unwrap_or(0);
                if held >= number {
                    return Ok(Moved::AlreadyNewer(held));
                }
                Precondition::IfMatch(pointer.etag.clone())
            }
            None => Precondition::IfAbsent,
        };
        match store.put(key, body.clone(), condition).await {
            Ok(()) => return Ok(Moved::Yes),
            Err(StoreError::PreconditionFailed { .. }) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    bail!(
        "`{}` kept changing while moving it to {number}",
        store.url(key)
    )
}
