//! The shell script each instance runs over SSM: its own remote command (one `case` arm per
//! instance on `AWS_SSM_INSTANCE_ID` when the commands differ), every value quoted as one
//! word, then the health command retried until its timeout.

use std::time::Duration;

use anyhow::Result;

use super::id;
use crate::rollout::health::HealthCheck;
use crate::rollout::targets::Target;
use crate::rollout::template::quote;
use crate::rollout::{Rollout, remote_command};

/// The script every instance of `targets` runs: its own remote command (chosen by the id the
/// agent puts in `AWS_SSM_INSTANCE_ID` when the commands differ), then the health command.
/// Every value is one quoted word: the command itself is `eval`ed from a single-quoted
/// variable, so nothing in it can change the script around it.
pub(crate) fn script(rollout: &Rollout, targets: &[&Target]) -> Result<Vec<String>> {
    let mut commands: Vec<(String, String)> = Vec::new();
    for target in targets {
        commands.push((
            id(target),
            remote_command(rollout, target, "ssm")?.to_string(),
        ));
    }
    let mut lines = vec!["set -u".to_owned()];
    let first = commands.first().map(|(_, c)| c.clone()).unwrap_or_default();
    if commands.iter().all(|(_, c)| *c == first) {
        lines.push(format!("release_command={}", quote(&first)));
    } else {
        lines.push("case \"${AWS_SSM_INSTANCE_ID:-}\" in".to_owned());
        for (id, command) in &commands {
            lines.push(format!(
                "  {}) release_command={} ;;",
                quote(id),
                quote(command)
            ));
        }
        lines.push(
            "  *) echo \"release push: no command for instance '${AWS_SSM_INSTANCE_ID:-?}' \
             (the SSM agent sets AWS_SSM_INSTANCE_ID)\" >&2; exit 125 ;;"
                .to_owned(),
        );
        lines.push("esac".to_owned());
    }
    lines.push("eval \"$release_command\"".to_owned());
    lines.push("release_status=$?".to_owned());
    lines.push("[ \"$release_status\" -eq 0 ] || exit \"$release_status\"".to_owned());
    if let HealthCheck::Command(check) = &rollout.health {
        lines.extend(health_lines(check, rollout.health_timeout));
    }
    Ok(lines)
}

/// The health command on the host, retried every second until `timeout`; its stdout goes to
/// stderr so that stdout stays install's JSON document.
fn health_lines(check: &str, timeout: Duration) -> Vec<String> {
    let secs = timeout.as_secs();
    vec![
        format!("release_health={}", quote(check)),
        format!("release_deadline=$(( $(date +%s) + {secs} ))"),
        "while :; do".to_owned(),
        "  ( eval \"$release_health\" ) >&2".to_owned(),
        "  release_status=$?".to_owned(),
        "  [ \"$release_status\" -eq 0 ] && break".to_owned(),
        "  if [ \"$(date +%s)\" -ge \"$release_deadline\" ]; then".to_owned(),
        format!(
            "    echo \"release push: not healthy after {secs}s: the health command exited \
             $release_status\" >&2"
        ),
        "    exit \"$release_status\"".to_owned(),
        "  fi".to_owned(),
        "  sleep 1".to_owned(),
        "done".to_owned(),
    ]
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::Instant;

    use super::*;
    use crate::rollout::over_ssm::fixtures::{rollout, target};

    /// Runs `lines` as SSM would (`bash -c`, lines joined), as instance `id`, in `dir`.
    fn run(lines: &[String], id: &str, dir: &std::path::Path) -> std::process::Output {
        Command::new("bash")
            .arg("-c")
            .arg(lines.join("\n"))
            .env("AWS_SSM_INSTANCE_ID", id)
            .current_dir(dir)
            .output()
            .unwrap()
    }

    /// Hostile values (spaces, quotes, `$(…)`, `;`, backticks) stay single words: what runs
    /// gets each as one argument, and nothing they spell is executed.
    #[test]
    fn hostile_values_stay_single_words_in_the_script() {
        let dir = tempfile::tempdir().unwrap();
        let hostile = "a b'c\"d;touch MARK1;$(touch MARK2)`touch MARK3`";
        let mut plain = rollout(None, HealthCheck::None);
        plain.stage = hostile.to_owned();
        // A "release" that prints its arguments one per line.
        let echo = dir.path().join("args.sh");
        fs_err::write(
            &echo,
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n",
        )
        .unwrap();
        rustix::fs::chmod(&echo, rustix::fs::Mode::from_raw_mode(0o755)).unwrap();
        plain.remote.binary = echo.display().to_string();
        let lines = script(&plain, &[&target("i-1")]).unwrap();
        let ran = run(&lines, "i-1", dir.path());
        assert!(ran.status.success(), "{ran:?}");
        let args = String::from_utf8(ran.stdout).unwrap();
        let args: Vec<&str> = args.lines().collect();
        assert_eq!(args[..2], ["install", "7"], "{args:?}");
        let stage = args.iter().position(|a| *a == "--stage").unwrap();
        assert_eq!(args[stage + 1], hostile, "{args:?}");
        assert_eq!(args[args.len() - 2..], ["--output", "json"], "{args:?}");
        let templated = rollout(Some("printf '%s\\n' {stage} {instance}"), HealthCheck::None);
        let mut templated = templated;
        templated.stage = hostile.to_owned();
        let lines = script(&templated, &[&target("i-1")]).unwrap();
        let ran = run(&lines, "i-1", dir.path());
        assert_eq!(
            String::from_utf8_lossy(&ran.stdout),
            format!("{hostile}\ni-1\n")
        );
        for mark in ["MARK1", "MARK2", "MARK3"] {
            assert!(!dir.path().join(mark).exists(), "{mark} was created");
        }
    }

    /// Commands that differ per instance are chosen by the agent's AWS_SSM_INSTANCE_ID; an
    /// instance with none of them fails rather than run another's.
    #[test]
    fn each_instance_runs_its_own_command() {
        let dir = tempfile::tempdir().unwrap();
        let per_host = rollout(Some("echo {instance}"), HealthCheck::None);
        let (one, two) = (target("i-1"), target("i-2"));
        let lines = script(&per_host, &[&one, &two]).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&run(&lines, "i-2", dir.path()).stdout),
            "i-2\n"
        );
        assert_eq!(
            String::from_utf8_lossy(&run(&lines, "i-1", dir.path()).stdout),
            "i-1\n"
        );
        let stranger = run(&lines, "i-3", dir.path());
        assert_eq!(stranger.status.code(), Some(125));
        // The same command everywhere needs no dispatch.
        let same = script(&rollout(Some("true"), HealthCheck::None), &[&one, &two]).unwrap();
        assert!(!same.join("\n").contains("AWS_SSM_INSTANCE_ID"));
    }

    /// Install's failure is the script's exit code; the health command runs after a good
    /// install, its stdout kept off stdout, and its failure ends the script non-zero in time.
    #[test]
    fn the_health_command_runs_after_the_install_in_the_same_script() {
        let dir = tempfile::tempdir().unwrap();
        let failing = rollout(Some("exit 3"), HealthCheck::Command("touch HEALTH".into()));
        let ran = run(
            &script(&failing, &[&target("i-1")]).unwrap(),
            "i-1",
            dir.path(),
        );
        assert_eq!(ran.status.code(), Some(3));
        assert!(
            !dir.path().join("HEALTH").exists(),
            "health ran after a failed install"
        );
        let healthy = rollout(
            Some("echo '{{\"version\":7}}'"),
            HealthCheck::Command("echo checking; test -e ok".into()),
        );
        fs_err::write(dir.path().join("ok"), "").unwrap();
        let ran = run(
            &script(&healthy, &[&target("i-1")]).unwrap(),
            "i-1",
            dir.path(),
        );
        assert!(ran.status.success(), "{ran:?}");
        assert_eq!(String::from_utf8_lossy(&ran.stdout), "{\"version\":7}\n");
        assert!(String::from_utf8_lossy(&ran.stderr).contains("checking"));
        fs_err::remove_file(dir.path().join("ok")).unwrap();
        let started = Instant::now();
        let ran = run(
            &script(&healthy, &[&target("i-1")]).unwrap(),
            "i-1",
            dir.path(),
        );
        assert_eq!(ran.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&ran.stderr).contains("not healthy after 2s"),
            "{ran:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(6));
    }
}
