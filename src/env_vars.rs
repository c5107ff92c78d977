//! Every environment variable the tool reads, in one place.
//!
//! `RELEASE_*` names are the tool's own; the others are set by Jenkins (or its plugins) and are
//! read where the old shell jobs read them.

/// Artifact (service) name, the old jobs' `ARTIFACT` parameter.
pub(crate) const ARTIFACT: &str = "ARTIFACT";
/// Bucket name or `file://` directory store.
pub(crate) const BUCKET: &str = "RELEASE_BUCKET";
/// Stage prefix inside the bucket (`prod` by default).
pub(crate) const STAGE: &str = "RELEASE_STAGE";
/// Output format: `text` or `json`.
pub(crate) const OUTPUT: &str = "RELEASE_OUTPUT";
/// Plan only, write nothing (true/false/1/0).
pub(crate) const DRY_RUN: &str = "RELEASE_DRY_RUN";
/// Path of the configuration file (default `./release.toml`).
pub(crate) const CONFIG: &str = "RELEASE_CONFIG";
/// Server-side encryption of every write: `AES256` or `aws:kms`.
pub(crate) const SSE: &str = "RELEASE_SSE";
/// KMS key id for `aws:kms` server-side encryption.
pub(crate) const SSE_KMS_KEY_ID: &str = "RELEASE_SSE_KMS_KEY_ID";
/// Seconds to open a connection to AWS.
pub(crate) const CONNECT_TIMEOUT: &str = "RELEASE_CONNECT_TIMEOUT";
/// Seconds for an AWS answer to start.
pub(crate) const READ_TIMEOUT: &str = "RELEASE_READ_TIMEOUT";
/// Seconds for a whole AWS call, retries included.
pub(crate) const OPERATION_TIMEOUT: &str = "RELEASE_OPERATION_TIMEOUT";
/// `tracing` filter for logs on stderr, e.g. `release=debug`.
pub(crate) const LOG: &str = "RELEASE_LOG";
/// Install directory on a host (default `/opt/{artifact}`).
pub(crate) const INSTALL_DIR: &str = "RELEASE_INSTALL_DIR";
/// This host's id in the bucket's host reports (`install --host-id`).
pub(crate) const HOST_ID: &str = "RELEASE_HOST_ID";
/// How an install was started: boot, ssh, ssm or manual (`install --started-by`).
pub(crate) const STARTED_BY: &str = "RELEASE_STARTED_BY";
/// The push an install belongs to (`install --push-id`).
pub(crate) const PUSH_ID: &str = "RELEASE_PUSH_ID";
/// Where `status` learns the hosts' state: bucket or ssh (`status --via`).
pub(crate) const STATUS_VIA: &str = "RELEASE_STATUS_VIA";
/// The key builds are signed with (`kms:KEY` or `key:FILE`).
pub(crate) const SIGN: &str = "RELEASE_SIGN";
/// Password of an encrypted minisign secret key given as `key:FILE`.
pub(crate) const SIGN_PASSWORD: &str = "RELEASE_SIGN_PASSWORD";
/// Trusted public key files, comma-separated.
pub(crate) const TRUSTED_KEYS: &str = "RELEASE_TRUSTED_KEYS";
/// How `push` reaches hosts: `ssh` or `ssm`.
pub(crate) const PUSH_VIA: &str = "RELEASE_PUSH_VIA";
/// For tests only: the push lock's lifetime in seconds (default 7200), so that renewal can be
/// proven without a two-hour push. A push warns when it is set.
pub(crate) const TEST_LOCK_TTL: &str = "RELEASE_TEST_LOCK_TTL_SECONDS";

/// Jenkins: the job's build number, recorded as `BUILD`.
pub(crate) const BUILD_NUMBER: &str = "BUILD_NUMBER";
/// Jenkins git plugin: the commit being built.
pub(crate) const GIT_COMMIT: &str = "GIT_COMMIT";
/// Jenkins git plugin: the branch being built, often `origin/x`.
pub(crate) const GIT_BRANCH: &str = "GIT_BRANCH";
/// Jenkins build-timestamp plugin: free text, recorded as `TIMESTAMP`.
pub(crate) const BUILD_TIMESTAMP: &str = "BUILD_TIMESTAMP";
/// Promote job parameter: the build to promote (`latest` or N).
pub(crate) const RELEASE_VERSION: &str = "RELEASE_VERSION";
/// Promote job parameter: the git tag to move.
pub(crate) const GIT_TAG_NAME: &str = "GIT_TAG_NAME";
/// reproducible-builds.org: the mtime of every archive entry, in seconds since the epoch.
pub(crate) const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";
/// Jenkins build-user-vars plugin: the id of the user who started the job, recorded as the
/// `user` of a promotion.
pub(crate) const BUILD_USER_ID: &str = "BUILD_USER_ID";
/// The login name, the `user` of a promotion outside Jenkins.
pub(crate) const USER: &str = "USER";
