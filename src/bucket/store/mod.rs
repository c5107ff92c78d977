//! The artifact store: an S3 bucket, or a local directory with the same guarantees.
//!
//! Both offer what the commands need and nothing more: whole small objects with an ETag,
//! ranged reads, listing, put-if-absent and compare-and-swap writes, and a streamed multipart
//! upload that never overwrites and leaves nothing behind when it fails or is interrupted.

mod dir;
mod s3;

use std::fmt;
use std::path::PathBuf;

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::aws::Timeouts;

pub(crate) use dir::DirStore;
pub(crate) use s3::S3Store;

/// A condition on a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Precondition {
    /// Write unconditionally.
    None,
    /// Write only if no object has the key (`If-None-Match: *`).
    IfAbsent,
    /// Write only if the object still has this ETag (`If-Match`).
    IfMatch(String),
}

/// What kind of object is written: only archives take the configured storage class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjectKind {
    /// A build archive.
    Archive,
    /// Manifests, pointers, claims, history, locks: tiny and read often, always STANDARD.
    Small,
}

/// A whole object and its version tag.
#[derive(Debug, Clone)]
pub(crate) struct Object {
    pub(crate) body: Bytes,
    /// Opaque version tag for compare-and-swap.
    pub(crate) etag: String,
}

/// An object's size and version tag.
#[derive(Debug, Clone)]
pub(crate) struct ObjectMeta {
    /// Size in bytes.
    pub(crate) size: u64,
    /// Opaque version tag.
    pub(crate) etag: String,
}

/// A key found by listing.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    /// The full key.
    pub(crate) key: String,
    /// Size in bytes.
    pub(crate) size: u64,
    /// When it was last written (S3's LastModified, a file's mtime), if the store says.
    pub(crate) modified: Option<jiff::Timestamp>,
}

/// A part of an object to read.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ByteRange {
    /// The last `n` bytes.
    Tail(u64),
}

/// Server-side encryption of the objects written: `--sse`, `sse` in release.toml. The clap
/// and serde names are the values S3 itself uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
pub enum Sse {
    /// SSE-S3, AES-256.
    #[value(name = "AES256", alias = "aes256")]
    #[serde(rename = "AES256", alias = "aes256")]
    Aes256,
    /// SSE-KMS with `--sse-kms-key-id` (or the account's default key).
    #[value(name = "aws:kms")]
    #[serde(rename = "aws:kms")]
    Kms,
}

/// Where the builds are kept.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) enum StoreLocation {
    /// An S3 bucket.
    S3 {
        /// Bucket name.
        bucket: String,
    },
    /// A local directory (`file://DIR`).
    Dir {
        /// The directory.
        root: PathBuf,
    },
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::S3 { bucket } => write!(f, "s3://{bucket}"),
            Self::Dir { root } => write!(f, "file://{}", root.display()),
        }
    }
}

/// Encryption and storage class applied to writes.
#[derive(Debug, Clone)]
pub(crate) struct WritePolicy {
    /// Server-side encryption.
    pub(crate) sse: Sse,
    /// KMS key for `aws:kms`.
    pub(crate) kms_key_id: Option<String>,
    /// Storage class for archives (`None`: STANDARD).
    pub(crate) storage_class: Option<String>,
}

/// What a store operation was doing, for error messages.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    /// GET.
    Read,
    Head,
    /// PUT.
    Write,
    List,
    Delete,
    /// Multipart upload.
    Upload,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Read => "reading",
            Op::Head => "checking",
            Op::Write => "writing",
            Op::List => "listing",
            Op::Delete => "deleting",
            Op::Upload => "uploading",
        })
    }
}

/// A store failure, naming the object and the step.
#[derive(Debug, Error)]
pub(crate) enum StoreError {
    /// The bucket is not there.
    #[error(
        "bucket `{bucket}` does not exist or is not visible to these credentials \
         (check --bucket / RELEASE_BUCKET and the region)"
    )]
    NoSuchBucket { bucket: String },
    /// No credentials could be found.
    #[error(
        "no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run \
         with an instance role (or use --bucket file://DIR to work without AWS)"
    )]
    NoCredentials {
        /// The SDK's words.
        #[source]
        source: Detail,
    },
    /// The credentials may not do this.
    #[error("access denied {op} `{key}` in {location}: the IAM policy must allow it (docs/iam.md)")]
    AccessDenied {
        op: Op,
        /// Where.
        location: String,
        key: String,
    },
    /// The condition of a conditional write was false.
    #[error("`{key}` in {location} was changed by someone else while {op} it")]
    PreconditionFailed {
        op: Op,
        /// Where.
        location: String,
        key: String,
    },
    /// No answer in time.
    #[error(
        "no answer {op} `{key}` in {location} in time ({detail}): check the endpoint and the \
         network, or raise --read-timeout / --operation-timeout"
    )]
    TimedOut {
        op: Op,
        /// Where.
        location: String,
        key: String,
        /// Which limit, in the SDK's words.
        detail: String,
    },
    /// The service could not be reached at all.
    #[error(
        "cannot reach the S3 service for {location} ({detail}): check the region (--region, \
         AWS_REGION), any endpoint setting (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3) and the network"
    )]
    Unreachable {
        /// Where.
        location: String,
        /// The innermost cause, e.g. "Connection refused (os error 111)".
        detail: String,
    },
    /// No region is configured.
    #[error(
        "no AWS region: pass --region, set AWS_REGION, or set `region` in the AWS profile or \
         release.toml"
    )]
    NoRegion,
    /// Stopped by a signal.
    #[error("interrupted by {signal}")]
    Interrupted {
        /// SIGINT or SIGTERM.
        signal: &'static str,
    },
    /// Anything else.
    #[error("{op} `{key}` in {location} failed")]
    Request {
        op: Op,
        /// Where.
        location: String,
        /// The key or prefix.
        key: String,
        /// What the server or client said.
        #[source]
        source: Detail,
    },
}

/// The underlying error's text (the SDK's errors are not `Sync`; their text is all we keep).
#[derive(Debug, Error)]
#[error("{0}")]
pub(crate) struct Detail(pub String);

/// The store the settings name.
#[derive(Debug)]
pub(crate) enum Store {
    /// S3 or an S3-compatible service.
    S3(S3Store),
    /// A local directory.
    Dir(DirStore),
}

impl Store {
    /// Opens the store at `location`; `region` (else the AWS chain's) and `timeouts` apply to
    /// S3 only.
    pub(crate) async fn open(
        location: &StoreLocation,
        region: Option<String>,
        timeouts: Timeouts,
        policy: WritePolicy,
    ) -> Self {
        match location {
            StoreLocation::S3 { bucket } => {
                let shared = crate::aws::sdk_config(region, &timeouts);
                Self::S3(S3Store::new(
                    &shared.await,
                    timeouts,
                    bucket.clone(),
                    policy,
                ))
            }
            StoreLocation::Dir { root } => Self::Dir(DirStore::new(root.clone())),
        }
    }

    /// `s3://bucket/key` or `file://dir/key`, for messages.
    pub(crate) fn url(&self, key: &str) -> String {
        match self {
            Self::S3(s) => format!("s3://{}/{key}", s.bucket()),
            Self::Dir(d) => format!("file://{}", d.path_of(key).display()),
        }
    }

    /// A whole object, or `None` if there is none at `key`.
    pub(crate) async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        match self {
            Self::S3(s) => s.get(key).await,
            Self::Dir(d) => d.get(key),
        }
    }

    /// Part of an object, or `None` if there is none at `key`.
    pub(crate) async fn get_range(
        &self,
        key: &str,
        range: ByteRange,
    ) -> Result<Option<Bytes>, StoreError> {
        match self {
            Self::S3(s) => s.get_range(key, range).await,
            Self::Dir(d) => d.get_range(key, range),
        }
    }

    /// Size and version tag, or `None` if there is no object at `key`.
    pub(crate) async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        match self {
            Self::S3(s) => s.head(key).await,
            Self::Dir(d) => d.head(key),
        }
    }

    /// Every key under `prefix`.
    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<Listed>, StoreError> {
        match self {
            Self::S3(s) => s.list(prefix).await,
            Self::Dir(d) => d.list(prefix),
        }
    }

    /// The first level of names in the bucket (the artifacts), from one LIST with a delimiter:
    /// at most one page, for a hint, never a full walk.
    pub(crate) async fn top_level(&self) -> Result<Vec<String>, StoreError> {
        match self {
            Self::S3(s) => s.top_level().await,
            Self::Dir(d) => d.top_level(),
        }
    }

    /// Writes a small object under a condition; a false condition is `PreconditionFailed`.
    ///
    /// A write whose answer was lost (and whose retry then met its own write) is recognised by
    /// reading the object back: if it holds exactly `body`, the write happened.
    pub(crate) async fn put(
        &self,
        key: &str,
        body: Bytes,
        when: Precondition,
    ) -> Result<(), StoreError> {
        let result = match self {
            Self::S3(s) => s.put(key, body.clone(), &when).await,
            Self::Dir(d) => d.put(key, &body, &when),
        };
        match result {
            Ok(()) => Ok(()),
            Err(
                err @ (StoreError::NoSuchBucket { .. }
                | StoreError::NoCredentials { .. }
                | StoreError::Unreachable { .. }
                | StoreError::NoRegion),
            ) => Err(err),
            Err(err) => match self.get(key).await {
                Ok(Some(found)) if found.body == body && when != Precondition::None => Ok(()),
                _ => Err(err),
            },
        }
    }

    /// Deletes an object (no error if it is not there).
    pub(crate) async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self {
            Self::S3(s) => s.delete(key).await,
            Self::Dir(d) => d.delete(key),
        }
    }

    /// Deletes the object only if it still has `etag`; a changed or missing object is
    /// `PreconditionFailed` and nothing is deleted.
    ///
    /// S3 checks `If-Match` on DeleteObject atomically (moto 5.2.5 checks it too); an
    /// S3-compatible store that ignores the header is still covered by the HEAD that compares
    /// the ETag first, with a window of one round trip between the HEAD and the DELETE.
    pub(crate) async fn delete_if_match(&self, key: &str, etag: &str) -> Result<(), StoreError> {
        match self {
            Self::S3(s) => s.delete_if_match(key, etag).await,
            Self::Dir(d) => d.delete_if_match(key, etag),
        }
    }

    /// Streams `parts` into a new object at `key`, which must not exist yet.
    ///
    /// Returns the object's size. On error, or when `cancel` fires, no object is left at `key`
    /// and no incomplete upload is left open.
    pub(crate) async fn upload(
        &self,
        key: &str,
        parts: mpsc::Receiver<Bytes>,
        cancel: &CancellationToken,
    ) -> Result<u64, StoreError> {
        match self {
            Self::S3(s) => s.upload(key, parts, cancel).await,
            Self::Dir(d) => d.upload(key, parts, cancel).await,
        }
    }

    /// Streams the object at `key` into `chunks`; returns its size.
    ///
    /// A body cut mid-stream (which the SDK reports but does not retry) is resumed from the
    /// last byte received, with `If-Match` on the first answer's ETag so that two versions are
    /// never stitched together, at most `DOWNLOAD_RESUMES` times. A missing object is `Ok(None)`.
    pub(crate) async fn download(
        &self,
        key: &str,
        chunks: mpsc::Sender<Bytes>,
    ) -> Result<Option<u64>, StoreError> {
        match self {
            Self::S3(s) => s.download(key, chunks).await,
            Self::Dir(d) => d.download(key, chunks).await,
        }
    }
}

/// How many times one download resumes after its body was cut.
pub(crate) const DOWNLOAD_RESUMES: usize = 5;
