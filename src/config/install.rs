//! `release install`'s settings: flags (and their env twins) over `[install]` over the
//! defaults.

use std::path::PathBuf;

use anyhow::Result;

use super::Settings;
use crate::bucket::resolve::BuildRef;
use crate::cli::InstallArgs;
use crate::config;
use crate::error::ExitError;
use crate::signing;

/// Releases kept by default.
const DEFAULT_KEEP: usize = 5;

/// Install settings after merging flags, env and release.toml.
#[derive(Debug)]
pub(crate) struct InstallConfig {
    pub(crate) reference: BuildRef,
    /// Absolute: hooks run inside the release and get paths below it.
    pub(crate) dir: PathBuf,
    pub(crate) keep: usize,
    pub(crate) check: Option<String>,
    pub(crate) run: Option<String>,
    pub(crate) force: bool,
    pub(crate) health_file: Option<PathBuf>,
    /// Builds must be signed by one of these; none: builds are not verified.
    pub(crate) trusted_keys: Vec<signing::TrustedKey>,
}

impl InstallConfig {
    pub(crate) fn resolve(settings: &Settings, args: InstallArgs) -> Result<Self> {
        let file = &settings.file.install;
        let artifact = settings.artifact()?;
        let keep = args.keep.or(file.keep).unwrap_or(DEFAULT_KEEP);
        if keep == 0 {
            return Err(ExitError::Usage("--keep must be at least 1".into()).into());
        }
        let dir = config::install_dir(args.dir.or(file.dir.clone()), artifact);
        let dir = std::path::absolute(&dir).map_err(|e| {
            ExitError::Usage(format!(
                "invalid install directory `{}`: {e}",
                dir.display()
            ))
        })?;
        Ok(Self {
            reference: args.build.as_deref().unwrap_or("latest-stable").parse()?,
            dir,
            keep,
            check: args.check.or(file.check.clone()),
            run: args.run.or(file.run.clone()),
            force: args.force,
            health_file: args.health_file.or(file.health_file.clone()),
            trusted_keys: signing::configured(args.trusted_keys, &file.trusted_keys)?,
        })
    }
}
