//! Install hooks: commands run around the switch of `current`.
//!
//! Before the switch: `deploy/before-switch` if the archive ships it, then `--check CMD`.
//! After: `deploy/after-switch`, then `--run CMD`. Each runs in the release directory with
//! `sh` (commands with `sh -c`), its output on stderr (stdout carries results only), and these
//! variables: RELEASE_ARTIFACT, RELEASE_BUILD, RELEASE_DIR, RELEASE_PREVIOUS_BUILD (empty if
//! none).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

/// What a hook is told.
#[derive(Debug, Clone)]
pub struct HookEnv {
    /// The artifact.
    pub artifact: String,
    /// The build the hook is for.
    pub build: u64,
    /// That build's release directory.
    pub dir: PathBuf,
    /// The build that was current before, if any.
    pub previous: Option<u64>,
}

/// The hooks run before switching; an error means: do not switch.
pub fn before_switch(env: &HookEnv, check: Option<&str>) -> Result<()> {
    run_shipped(env, "deploy/before-switch")?;
    if let Some(command) = check {
        run(env, "--check", command)?;
    }
    Ok(())
}

/// The hooks run after switching; an error means: switch back.
pub fn after_switch(env: &HookEnv, run_command: Option<&str>) -> Result<()> {
    run_shipped(env, "deploy/after-switch")?;
    if let Some(command) = run_command {
        run(env, "--run", command)?;
    }
    Ok(())
}

fn run_shipped(env: &HookEnv, relative: &str) -> Result<()> {
    let script = env.dir.join(relative);
    if !script.is_file() {
        return Ok(());
    }
    let mut command = Command::new("sh");
    command.arg(&script);
    execute(env, relative, command)
}

fn run(env: &HookEnv, what: &str, shell_command: &str) -> Result<()> {
    let mut command = Command::new("sh");
    command.arg("-c").arg(shell_command);
    execute(env, &format!("{what} `{shell_command}`"), command)
}

fn execute(env: &HookEnv, what: &str, mut command: Command) -> Result<()> {
    let status = command
        .current_dir(&env.dir)
        .env("RELEASE_ARTIFACT", &env.artifact)
        .env("RELEASE_BUILD", env.build.to_string())
        .env("RELEASE_DIR", &env.dir)
        .env(
            "RELEASE_PREVIOUS_BUILD",
            env.previous.map(|p| p.to_string()).unwrap_or_default(),
        )
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("cannot run {what} for build {}", env.build))?;
    if !status.success() {
        bail!("{what} failed for build {} ({status})", env.build);
    }
    Ok(())
}
