//! Settings: flag > environment > release.toml > default.
//!
//! clap already prefers a flag to its environment twin; this module adds the file layer and the
//! defaults. `release.toml` has the global keys at its top and one table per command whose keys
//! are the long flag names with `_` for `-`. Unknown keys are an error, so a typo is not silence.

pub(crate) mod build;
pub(crate) mod install;
pub(crate) mod promote;
pub(crate) mod push;
pub(crate) mod reach;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::aws::Timeouts;
use crate::bucket::store::{Sse, StoreLocation};
use crate::cli::{CompressionArg, GlobalArgs, OutputFormat};
use crate::names;

/// The file read when `--config` is not given.
pub(crate) const DEFAULT_CONFIG: &str = "release.toml";
/// Default bucket, as in the old jobs.
pub(crate) const DEFAULT_BUCKET: &str = "build";
/// Default stage, as in the old jobs.
pub(crate) const DEFAULT_STAGE: &str = "prod";

/// A configuration problem (exit 2).
#[derive(Debug, Error)]
pub(crate) enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file `{path}`")]
    Read {
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("invalid config file `{path}`: {message}")]
    Parse {
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A required setting is missing.
    #[error("no {what}: {fix}")]
    Missing {
        /// The setting.
        what: &'static str,
        /// How to give it.
        fix: &'static str,
    },
    /// An artifact or stage name that is not allowed.
    #[error(transparent)]
    Name(#[from] names::InvalidName),
    /// A setting has a value out of range.
    #[error("invalid {what}: {message}")]
    Invalid {
        /// The setting.
        what: &'static str,
        /// Why.
        message: String,
    },
}

/// `release.toml`, every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// Global `artifact`.
    pub(crate) artifact: Option<String>,
    /// Global `bucket`.
    pub(crate) bucket: Option<String>,
    /// Global `stage`.
    pub(crate) stage: Option<String>,
    /// Global `region`.
    pub(crate) region: Option<String>,
    /// Global `sse`.
    pub(crate) sse: Option<Sse>,
    /// Global `sse_kms_key_id`.
    pub(crate) sse_kms_key_id: Option<String>,
    /// Global `output`.
    pub(crate) output: Option<OutputFormat>,
    /// Global `dry_run`.
    pub(crate) dry_run: Option<bool>,
    /// Global `connect_timeout`, seconds.
    pub(crate) connect_timeout: Option<u64>,
    /// Global `read_timeout`, seconds.
    pub(crate) read_timeout: Option<u64>,
    /// Global `operation_timeout`, seconds.
    pub(crate) operation_timeout: Option<u64>,
    /// `[build]`.
    #[serde(default)]
    pub(crate) build: BuildFile,
    /// `[promote]`.
    #[serde(default)]
    pub(crate) promote: PromoteFile,
    /// `[install]`.
    #[serde(default)]
    pub(crate) install: InstallFile,
    /// `[push]`.
    #[serde(default)]
    pub(crate) push: PushFile,
    /// `[status]`.
    #[serde(default)]
    pub(crate) status: StatusFile,
}

/// `[build]` of release.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BuildFile {
    /// Paths to archive.
    pub(crate) paths: Option<Vec<PathBuf>>,
    /// Exclude globs (added to those given with `--exclude`).
    pub(crate) exclude: Option<Vec<String>>,
    pub(crate) compression: Option<CompressionArg>,
    /// Compression level.
    pub(crate) level: Option<u32>,
    /// Storage class of archives.
    pub(crate) storage_class: Option<String>,
    /// Local copy of the archive.
    pub(crate) keep_local: Option<PathBuf>,
    /// `sign`: `kms:KEY` or `key:FILE`.
    pub(crate) sign: Option<String>,
    /// SEMVER recorded in every build until the file changes (the repository's version).
    pub(crate) semver: Option<String>,
    /// Archive git-ignored files too.
    pub(crate) include_ignored: Option<bool>,
    /// Build a tree of directories only.
    pub(crate) allow_empty: Option<bool>,
    /// Refuse a dirty tree.
    pub(crate) require_clean: Option<bool>,
}

/// `[promote]` of release.toml (also read by rollback).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PromoteFile {
    /// Tag name.
    pub(crate) tag: Option<String>,
    /// Remote name.
    pub(crate) remote: Option<String>,
    /// Repository directory.
    pub(crate) repo: Option<PathBuf>,
    /// Skip git.
    pub(crate) no_tag: Option<bool>,
    /// `trusted_keys`: promote only builds signed by one of these public keys.
    pub(crate) trusted_keys: Option<Vec<PathBuf>>,
}

/// `[install]` of release.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InstallFile {
    /// Install directory.
    pub(crate) dir: Option<PathBuf>,
    /// Releases kept.
    pub(crate) keep: Option<usize>,
    /// Check command.
    pub(crate) check: Option<String>,
    /// Run command.
    pub(crate) run: Option<String>,
    pub(crate) health_file: Option<PathBuf>,
    /// `trusted_keys`: public key files; builds not signed by one are refused.
    pub(crate) trusted_keys: Option<Vec<PathBuf>>,
    /// `report = false`: write no host report (`--no-report`).
    pub(crate) report: Option<bool>,
}

/// `[status]` of release.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatusFile {
    /// `stale_after`, e.g. `30d`: older reports are STALE.
    pub(crate) stale_after: Option<String>,
}

/// `[push]` of release.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PushFile {
    /// Auto Scaling Groups.
    pub(crate) asg: Option<Vec<String>>,
    pub(crate) hosts: Option<Vec<String>>,
    /// Batch size.
    pub(crate) batch: Option<String>,
    /// Canary hosts.
    pub(crate) canary: Option<usize>,
    /// Failures tolerated.
    pub(crate) max_failures: Option<usize>,
    /// Health URL template.
    pub(crate) health_url: Option<String>,
    pub(crate) health_command: Option<String>,
    /// Health timeout in seconds.
    pub(crate) health_timeout: Option<u64>,
    /// Remote command template.
    pub(crate) command: Option<String>,
    /// Use sudo.
    pub(crate) sudo: Option<bool>,
    pub(crate) remote_binary: Option<String>,
    /// Remote install directory.
    pub(crate) dir: Option<PathBuf>,
    /// Per-host log directory.
    pub(crate) log_dir: Option<PathBuf>,
    pub(crate) ssh_user: Option<String>,
    pub(crate) ssh_port: Option<u16>,
    /// SSH config file.
    pub(crate) ssh_config: Option<PathBuf>,
    /// SSH identity.
    pub(crate) identity: Option<PathBuf>,
    /// Host key policy.
    pub(crate) strict_host_keys: Option<String>,
    /// New-connection cap.
    pub(crate) max_connections: Option<usize>,
    /// Address kind.
    pub(crate) address: Option<String>,
    /// `ssh` or `ssm`.
    pub(crate) via: Option<String>,
    /// `s3://bucket/prefix` for SSM's full outputs.
    pub(crate) ssm_output: Option<String>,
}

/// Resolved global settings.
#[derive(Debug)]
pub(crate) struct Settings {
    /// Artifact name, if any layer gave one (checked by the commands that need it).
    pub(crate) artifact: Option<String>,
    pub(crate) store: StoreLocation,
    /// Stage prefix.
    pub(crate) stage: String,
    /// Region override.
    pub(crate) region: Option<String>,
    /// Server-side encryption.
    pub(crate) sse: Sse,
    /// KMS key for `aws:kms`.
    pub(crate) sse_kms_key_id: Option<String>,
    /// Output format.
    pub(crate) output: OutputFormat,
    /// Plan only.
    pub(crate) dry_run: bool,
    /// Timeouts of every AWS call.
    pub(crate) timeouts: Timeouts,
    /// The file layer, for the per-command tables.
    pub(crate) file: FileConfig,
    /// Where the file layer came from, if anywhere.
    pub(crate) file_path: Option<PathBuf>,
    /// Warnings for the user (a config file ignored, and why).
    pub(crate) warnings: Vec<String>,
}

impl Settings {
    /// Merges flags/env with release.toml and defaults.
    pub(crate) fn resolve(args: &GlobalArgs) -> Result<Self, ConfigError> {
        let (file, file_path, warnings) = load_file(args.config.as_deref())?;
        let bucket = args
            .bucket
            .clone()
            .or(file.bucket.clone())
            .unwrap_or_else(|| DEFAULT_BUCKET.to_owned());
        let stage = args
            .stage
            .clone()
            .or(file.stage.clone())
            .unwrap_or_else(|| DEFAULT_STAGE.to_owned());
        names::check("stage", &stage)?;
        let artifact = args.artifact.clone().or(file.artifact.clone());
        if let Some(artifact) = &artifact {
            names::check("artifact", artifact)?;
        }
        Ok(Self {
            artifact,
            store: parse_store(&bucket)?,
            stage,
            region: args.region.clone().or(file.region.clone()),
            sse: args.sse.or(file.sse).unwrap_or(Sse::Aes256),
            sse_kms_key_id: args.sse_kms_key_id.clone().or(file.sse_kms_key_id.clone()),
            output: args.output.or(file.output).unwrap_or(OutputFormat::Text),
            dry_run: args.dry_run.or(file.dry_run).unwrap_or(false),
            timeouts: timeouts(args, &file)?,
            file,
            file_path,
            warnings,
        })
    }

    /// The artifact, or the error that says how to give one.
    pub(crate) fn artifact(&self) -> Result<&str, ConfigError> {
        self.artifact.as_deref().ok_or(ConfigError::Missing {
            what: "artifact",
            fix: "pass --artifact NAME, set ARTIFACT, or put `artifact = \"NAME\"` in release.toml",
        })
    }

    /// The resolved settings as JSON, for `--show-config`.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let shown = ShownConfig {
            artifact: self.artifact.as_deref(),
            store: self.store.to_string(),
            stage: &self.stage,
            region: self.region.as_deref(),
            sse: format!("{:?}", self.sse),
            sse_kms_key_id: self.sse_kms_key_id.as_deref(),
            output: format!("{:?}", self.output).to_lowercase(),
            dry_run: self.dry_run,
            connect_timeout: self.timeouts.connect.as_secs(),
            read_timeout: self.timeouts.read.as_secs(),
            operation_timeout: self.timeouts.operation.as_secs(),
            config_file: self.file_path.as_deref(),
        };
        serde_json::to_value(shown).unwrap_or_default()
    }
}

/// `--show-config`'s document (docs/output.md); timeouts in seconds.
#[derive(Serialize)]
struct ShownConfig<'a> {
    artifact: Option<&'a str>,
    store: String,
    stage: &'a str,
    region: Option<&'a str>,
    sse: String,
    sse_kms_key_id: Option<&'a str>,
    output: String,
    dry_run: bool,
    connect_timeout: u64,
    read_timeout: u64,
    operation_timeout: u64,
    config_file: Option<&'a std::path::Path>,
}

/// The AWS timeouts: flag or env, else release.toml, else the defaults; zero is refused (it
/// would fail every call).
fn timeouts(args: &GlobalArgs, file: &FileConfig) -> Result<Timeouts, ConfigError> {
    let defaults = Timeouts::default();
    let pick = |what: &'static str, given: Option<u64>, in_file: Option<u64>, default: Duration| {
        match given.or(in_file) {
            Some(0) => Err(ConfigError::Invalid {
                what,
                message: "0 seconds would fail every AWS call; give at least 1".into(),
            }),
            Some(secs) => Ok(Duration::from_secs(secs)),
            None => Ok(default),
        }
    };
    Ok(Timeouts {
        connect: pick(
            "--connect-timeout",
            args.connect_timeout,
            file.connect_timeout,
            defaults.connect,
        )?,
        read: pick(
            "--read-timeout",
            args.read_timeout,
            file.read_timeout,
            defaults.read,
        )?,
        operation: pick(
            "--operation-timeout",
            args.operation_timeout,
            file.operation_timeout,
            defaults.operation,
        )?,
    })
}

/// Reads `path`, or `./release.toml` if it exists; a file others could have written is
/// ignored, with a warning (returned third).
fn load_file(
    path: Option<&Path>,
) -> Result<(FileConfig, Option<PathBuf>, Vec<String>), ConfigError> {
    let path = match path {
        Some(path) => path.to_owned(),
        None if Path::new(DEFAULT_CONFIG).is_file() => PathBuf::from(DEFAULT_CONFIG),
        None => return Ok((FileConfig::default(), None, Vec::new())),
    };
    let read_error = |source| ConfigError::Read {
        path: path.clone(),
        source,
    };
    // The checks look at the file that is read (its descriptor), not at a name that could
    // be swapped in between.
    let mut opened = fs_err::File::open(&path).map_err(read_error)?;
    let meta = opened.metadata().map_err(read_error)?;
    if let Some(why) = untrusted(&meta) {
        let warning = format!(
            "ignoring config file `{}`: {why}; only files owned by you or root and writable by \
             no one else are read",
            path.display()
        );
        return Ok((FileConfig::default(), None, vec![warning]));
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut opened, &mut text).map_err(read_error)?;
    let file = toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.clone(),
        message: e.to_string(),
    })?;
    Ok((file, Some(path), Vec::new()))
}

/// Why a config file is not to be trusted: another user could have written it (run as root
/// in a world-writable directory, `./release.toml` could be anyone's).
fn untrusted(meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let me = rustix::process::geteuid().as_raw();
    let mode = meta.mode() & 0o777;
    if meta.uid() != me && meta.uid() != 0 {
        Some(format!("it is owned by user {}", meta.uid()))
    } else if mode & 0o022 != 0 {
        let who = if mode & 0o002 != 0 {
            "everyone"
        } else {
            "its group"
        };
        Some(format!("it is writable by {who} (mode {mode:o})"))
    } else {
        None
    }
}

/// `file://DIR` is a directory store; anything else must be a bucket name.
pub(crate) fn parse_store(bucket: &str) -> Result<StoreLocation, ConfigError> {
    if let Some(path) = bucket.strip_prefix("file://") {
        if path.is_empty() {
            return Err(ConfigError::Invalid {
                what: "bucket",
                message: "`file://` needs a directory, e.g. file:///var/builds or file://builds"
                    .into(),
            });
        }
        return Ok(StoreLocation::Dir {
            root: PathBuf::from(path),
        });
    }
    // The old jobs' scripts write bucket URLs: `s3://NAME` (or `s3://NAME/`) is bucket NAME.
    let bucket = match bucket.strip_prefix("s3://") {
        Some(rest) => {
            let name = rest.strip_suffix('/').unwrap_or(rest);
            if name.contains('/') {
                return Err(ConfigError::Invalid {
                    what: "bucket",
                    message: format!(
                        "`{bucket}` names a path inside a bucket: give the bucket only \
                         (`s3://{}`); the keys under it are always {{artifact}}/{{stage}}/",
                        name.split('/').next().unwrap_or_default()
                    ),
                });
            }
            name
        }
        None => bucket,
    };
    // S3's bucket naming rules, loosely: lowercase letters, digits, dots, hyphens.
    let valid = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if !valid {
        return Err(ConfigError::Invalid {
            what: "bucket",
            message: format!(
                "`{bucket}` is not an S3 bucket name (3-63 lowercase letters, digits, `.`, `-`) \
                 nor a file:// directory"
            ),
        });
    }
    Ok(StoreLocation::S3 {
        bucket: bucket.to_owned(),
    })
}

/// `--dir`, else `RELEASE_INSTALL_DIR` (clap's env twin), else release.toml, else `/opt/{artifact}`.
pub(crate) fn install_dir(given: Option<PathBuf>, artifact: &str) -> PathBuf {
    given.unwrap_or_else(|| Path::new("/opt").join(artifact))
}

/// Rows `list` and `history` show without `--limit`.
pub(crate) const DEFAULT_LIST_LIMIT: usize = 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_locations() {
        assert_eq!(
            parse_store("build").unwrap(),
            StoreLocation::S3 {
                bucket: "build".into()
            }
        );
        assert_eq!(
            parse_store("file:///tmp/b").unwrap(),
            StoreLocation::Dir {
                root: PathBuf::from("/tmp/b")
            }
        );
        for url in ["s3://build", "s3://build/", "build"] {
            assert_eq!(
                parse_store(url).unwrap(),
                StoreLocation::S3 {
                    bucket: "build".into()
                }
            );
        }
        assert!(parse_store("s3://build/obelix").is_err());
        assert!(parse_store("s3://").is_err());
        assert_eq!(
            parse_store("file:///tmp/b").unwrap(),
            StoreLocation::Dir {
                root: "/tmp/b".into()
            }
        );
        assert!(parse_store("Bad_Bucket").is_err());
        assert!(parse_store("file://").is_err());
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = toml::from_str::<FileConfig>("artifact = \"x\"\n[build]\nexclued = []\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("exclued"), "{err}");
    }

    #[test]
    fn tables_use_flag_names() {
        let file: FileConfig = toml::from_str(
            "artifact = \"web\"\nsse = \"aws:kms\"\n[build]\nexclude = [\"*.log\"]\n\
             compression = \"zstd\"\n[push]\nmax_failures = 1\nasg = [\"a\", \"b\"]\n",
        )
        .unwrap();
        assert_eq!(file.sse, Some(Sse::Kms));
        assert_eq!(file.build.compression, Some(CompressionArg::Zstd));
        assert_eq!(file.push.max_failures, Some(1));
        assert_eq!(file.push.asg.unwrap(), ["a", "b"]);
    }
}
