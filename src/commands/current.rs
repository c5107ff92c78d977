//! `release current`: what a host runs, read from its install directory.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use super::Context;
use crate::cli::CurrentArgs;
use crate::config;
use crate::error::ExitError;
use crate::install_dir::{InstallView, Pending};
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
            unfinished: None,
        };
        let text = format!("nothing is installed in {}", dir.display());
        return Ok(Outcome::new(text, &doc));
    };
    let manifest = view.manifest(number).unwrap_or_default();
    let field = |key| manifest.get(key).map(str::to_owned);
    let artifact = artifact.or_else(|| field(manifest::MODULE));
    let pending = view.pending();
    let mut text = format!(
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
    if let Some(pending) = pending {
        text.push('\n');
        text.push_str(&unfinished_text(
            artifact.as_deref().unwrap_or("?"),
            pending,
        ));
    }
    let doc = Current {
        artifact,
        dir: &dir,
        version: Some(number),
        git_commit: field(manifest::GIT_COMMIT),
        sha256: field(manifest::SHA256),
        timestamp: field(manifest::TIMESTAMP),
        releases,
        unfinished: pending.map(Unfinished::from),
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
    /// The install that switched `current` and has not finished (its after-switch hooks or
    /// health file did not succeed), `null` if none.
    unfinished: Option<Unfinished>,
}

/// `current`'s `unfinished` object: what the install's pending mark records.
#[derive(Serialize)]
struct Unfinished {
    /// The build `current` was switched to (always `version`).
    build: u64,
    /// The build current before that switch (`null` if none).
    previous: Option<u64>,
    /// `current` was switched back to `build` after `previous` failed its hooks.
    switched_back: bool,
}

impl From<Pending> for Unfinished {
    fn from(p: Pending) -> Self {
        Self {
            build: p.build,
            previous: p.previous,
            switched_back: p.switched_back,
        }
    }
}

/// The line that says a host is half-deployed, and how to finish it.
fn unfinished_text(artifact: &str, p: Pending) -> String {
    let n = p.build;
    let what = match (p.switched_back, p.previous) {
        (true, Some(failed)) => format!(
            "build {failed} failed after its switch and `current` was switched back to {n}, \
             but the after-switch hooks of {n} did not finish"
        ),
        _ => format!(
            "the install of {n} was interrupted after the switch (its after-switch hooks or \
             health file did not succeed)"
        ),
    };
    let again = if p.switched_back { "" } else { " again" };
    format!(
        "{artifact} {n} UNFINISHED: {what}; run `release install {n}`{again} (with the same \
         hook options) to finish it"
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unfinished_line_says_what_to_run() {
        let interrupted = Pending {
            build: 42,
            previous: Some(41),
            switched_back: false,
        };
        assert_eq!(
            unfinished_text("web", interrupted),
            "web 42 UNFINISHED: the install of 42 was interrupted after the switch (its \
             after-switch hooks or health file did not succeed); run `release install 42` again \
             (with the same hook options) to finish it"
        );
        let back = Pending {
            build: 41,
            previous: Some(42),
            switched_back: true,
        };
        assert_eq!(
            unfinished_text("web", back),
            "web 41 UNFINISHED: build 42 failed after its switch and `current` was switched back \
             to 41, but the after-switch hooks of 41 did not finish; run `release install 41` \
             (with the same hook options) to finish it"
        );
    }
}
