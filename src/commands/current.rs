//! `release current`: what a host runs, read from its install directory.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use super::Context;
use crate::cli::CurrentArgs;
use crate::config;
use crate::error::ExitError;
use crate::install_dir::InstallView;
use crate::manifest;
use crate::output::Outcome;

/// Runs `release current`.
pub(crate) async fn run(ctx: &Context, args: CurrentArgs) -> Result<Outcome> {
    let dir = install_dir(ctx, args.dir)?;
    let view = InstallView::new(&dir);
    let artifact = artifact_of(ctx, &view, &dir)?;
    let releases = view.releases();
    let Some(number) = view.current() else {
        let doc = Current {
            artifact,
            dir: &dir,
            version: None,
            git_commit: None,
            sha256: None,
            timestamp: None,
            releases,
        };
        let text = format!("nothing is installed in {}", dir.display());
        return Ok(Outcome::new(text, &doc));
    };
    let manifest = view.manifest(number).unwrap_or_default();
    let field = |key| manifest.get(key).map(str::to_owned);
    let artifact = artifact.or_else(|| field(manifest::MODULE));
    let text = format!(
        "{} {number} in {} (commit {}, sha256 {}); on disk: {}",
        artifact.as_deref().unwrap_or("?"),
        dir.display(),
        field(manifest::GIT_COMMIT).unwrap_or_else(|| "?".into()),
        field(manifest::SHA256).unwrap_or_else(|| "?".into()),
        releases
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let doc = Current {
        artifact,
        dir: &dir,
        version: Some(number),
        git_commit: field(manifest::GIT_COMMIT),
        sha256: field(manifest::SHA256),
        timestamp: field(manifest::TIMESTAMP),
        releases,
    };
    Ok(Outcome::new(text, &doc))
}

/// `current`'s document (docs/output.md): the same keys whether a build is installed or not.
#[derive(Serialize)]
struct Current<'a> {
    artifact: Option<String>,
    dir: &'a std::path::Path,
    /// The build `current` points to, `null` if none.
    version: Option<u64>,
    git_commit: Option<String>,
    sha256: Option<String>,
    timestamp: Option<String>,
    /// Builds on disk, oldest first.
    releases: Vec<u64>,
}

/// `--dir`, else `RELEASE_INSTALL_DIR`, else release.toml `[install] dir`, else
/// `/opt/{artifact}` when an artifact is known; with none of them there is nothing to look at.
fn install_dir(ctx: &Context, given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(dir) = given.or(ctx.settings.file.install.dir.clone()) {
        return Ok(dir);
    }
    match ctx.settings.artifact.as_deref() {
        Some(artifact) => Ok(config::install_dir(None, artifact)),
        None => Err(ExitError::Usage(
            "which install directory? pass --dir DIR, set RELEASE_INSTALL_DIR, or put `dir` \
             under [install] in release.toml (or give --artifact NAME for /opt/NAME)"
                .into(),
        )
        .into()),
    }
}

/// The artifact the directory holds (what an install wrote in it). `--artifact` (or ARTIFACT,
/// release.toml) is only checked against it, so a wrong one cannot make `current` misname a
/// host's service.
fn artifact_of(ctx: &Context, view: &InstallView, dir: &std::path::Path) -> Result<Option<String>> {
    let given = ctx.settings.artifact.as_deref();
    match (view.artifact(), given) {
        (Some(held), Some(given)) if held != given => Err(ExitError::Usage(format!(
            "`{}` holds artifact `{held}`, not `{given}`: drop --artifact (the directory knows \
             its own) or give the directory of `{given}`",
            dir.display()
        ))
        .into()),
        (Some(held), _) => Ok(Some(held)),
        (None, given) => Ok(given.map(str::to_owned)),
    }
}
