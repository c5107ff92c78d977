//! `release current`: what a host runs, read from its install directory.

use anyhow::Result;
use serde_json::json;

use super::Context;
use super::install::default_dir;
use crate::cli::CurrentArgs;
use crate::install_dir::InstallView;
use crate::manifest;
use crate::output::Outcome;

/// Runs `release current`.
pub async fn run(ctx: &Context, args: CurrentArgs) -> Result<Outcome> {
    let artifact = ctx.settings.artifact()?;
    let dir = default_dir(args.dir.or(ctx.settings.file.install.dir.clone()), artifact);
    let view = InstallView::new(&dir);
    let releases = view.releases();
    let Some(number) = view.current() else {
        return Ok(Outcome {
            text: format!("nothing is installed in {}", dir.display()),
            json: json!({"artifact": artifact, "dir": dir, "version": null, "releases": releases}),
        });
    };
    let manifest = view.manifest(number).unwrap_or_default();
    let field = |key| manifest.get(key).map(str::to_owned);
    Ok(Outcome {
        text: format!(
            "{artifact} {number} in {} (commit {}, sha256 {}); on disk: {}",
            dir.display(),
            field(manifest::GIT_COMMIT).unwrap_or_else(|| "?".into()),
            field(manifest::SHA256).unwrap_or_else(|| "?".into()),
            releases
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        ),
        json: json!({
            "artifact": artifact,
            "dir": dir,
            "version": number,
            "git_commit": field(manifest::GIT_COMMIT),
            "sha256": field(manifest::SHA256),
            "timestamp": field(manifest::TIMESTAMP),
            "releases": releases,
        }),
    })
}
