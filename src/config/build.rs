//! `release build`'s settings: flags (and their env twins) over `[build]` over the defaults.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::BuildFile;
use crate::archive::Compression;
use crate::cli::{BuildArgs, CompressionArg};
use crate::error::ExitError;
use crate::signing::{self, SignWith};

/// Build settings after merging flags, env and release.toml.
#[derive(Debug)]
pub(crate) struct BuildConfig {
    pub(crate) paths: Vec<PathBuf>,
    pub(crate) exclude: Vec<String>,
    pub(crate) compression: Compression,
    pub(crate) level: u32,
    pub(crate) semver: Option<semver::Version>,
    pub(crate) keep_local: Option<PathBuf>,
    pub(crate) storage_class: Option<String>,
    pub(crate) sign: Option<SignWith>,
    pub(crate) include_ignored: bool,
    pub(crate) allow_empty: bool,
    pub(crate) require_clean: bool,
    pub(crate) list: bool,
}

impl BuildConfig {
    pub(crate) fn resolve(args: BuildArgs, file: &BuildFile) -> Result<Self> {
        let compression = match args.compression.or(file.compression) {
            Some(CompressionArg::Zstd) => Compression::Zstd,
            Some(CompressionArg::None) => Compression::None,
            Some(CompressionArg::Gzip) | None => Compression::Gzip,
        };
        let level = args
            .level
            .or(file.level)
            .unwrap_or(compression.default_level());
        compression
            .check_level(level)
            .map_err(|e| ExitError::Usage(format!("invalid --level: {e}")))?;
        let semver = resolve_semver(args.semver, file.semver.clone())?;
        let mut exclude = file.exclude.clone().unwrap_or_default();
        exclude.extend(args.exclude);
        let sign: Option<SignWith> = args
            .sign
            .or(file.sign.clone())
            .map(|text| text.parse())
            .transpose()?;
        // A key that cannot sign fails here, before a number is claimed or a byte uploaded.
        if let Some(with) = &sign {
            signing::preflight(with)?;
        }
        Ok(Self {
            paths: if args.paths.is_empty() {
                file.paths.clone().unwrap_or_default()
            } else {
                args.paths
            },
            exclude,
            compression,
            level,
            semver,
            keep_local: check_keep_local(args.keep_local.or(file.keep_local.clone()))?,
            storage_class: args.storage_class.or(file.storage_class.clone()),
            sign,
            // A boolean flag wins both ways (`--include-ignored=false` over a file's `true`).
            include_ignored: args
                .include_ignored
                .or(file.include_ignored)
                .unwrap_or(false),
            allow_empty: args.allow_empty.or(file.allow_empty).unwrap_or(false),
            require_clean: args.require_clean.or(file.require_clean).unwrap_or(false),
            list: args.list,
        })
    }
}

/// `--semver`, else `[build] semver`; checked before a build number is claimed, and the
/// message says which of the two is wrong.
fn resolve_semver(flag: Option<String>, file: Option<String>) -> Result<Option<semver::Version>> {
    let (given, text) = match (flag, file) {
        (Some(text), _) => ("--semver", text),
        (None, Some(text)) => ("`semver` of [build] in the config file", text),
        (None, None) => return Ok(None),
    };
    let version = semver::Version::parse(&text)
        .map_err(|e| ExitError::Usage(format!("invalid {given} `{text}` ({e}): use X.Y.Z")))?;
    Ok(Some(version))
}

/// `--keep-local` is checked before a build number is claimed: a directory that is not there
/// would otherwise fail the build after its number was taken.
fn check_keep_local(path: Option<PathBuf>) -> Result<Option<PathBuf>> {
    let Some(path) = path else { return Ok(None) };
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(ExitError::Usage(format!(
            "--keep-local `{}`: the directory `{}` does not exist; create it first (nothing was \
             built)",
            path.display(),
            parent.display()
        ))
        .into());
    }
    if path.is_dir() {
        return Err(ExitError::Usage(format!(
            "--keep-local `{}` is a directory: give a file name, e.g. `{}`",
            path.display(),
            path.join("build.tar.gz").display()
        ))
        .into());
    }
    Ok(Some(path))
}
