//! `release push`'s settings: flags (and their env twins) over `[push]` over the defaults.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use super::PushFile;
use super::reach::{Reach, reach, remote};
use crate::bucket::resolve::BuildRef;
use crate::cli::PushArgs;
use crate::error::ExitError;
use crate::rollout::health::HealthCheck;
use crate::rollout::plan::BatchSize;
use crate::rollout::targets::Source;
use crate::rollout::{Remote, Via, template};
use release_fleet::ssm::OutputLocation;

/// Where docs/user-data.md installs `release` on instances: the SSM agent's PATH is not a login
/// shell's, so `--via ssm` names the binary by its absolute path.
const SSM_REMOTE_BINARY: &str = "/usr/local/bin/release";

/// Seconds a host has to become healthy without `--health-timeout`.
const DEFAULT_HEALTH_TIMEOUT: u64 = 60;

/// Everything `push` needs besides the global settings, checked before anything is touched.
pub(crate) struct PushConfig {
    pub(crate) reach: Reach,
    /// `--build`, else latest-stable.
    pub(crate) reference: BuildRef,
    /// `--command`, already checked.
    pub(crate) template: Option<String>,
    /// `--batch` [default: 25%].
    pub(crate) batch: BatchSize,
    /// `--canary`: hosts in a first batch of their own [default: 0].
    pub(crate) canary: usize,
    pub(crate) health: HealthCheck,
    pub(crate) health_timeout: Duration,
    /// `--max-failures` over the whole push [default: 0].
    pub(crate) max_failures: usize,
    pub(crate) remote: Remote,
    pub(crate) log_dir: Option<PathBuf>,
    /// `--via` [default: ssh].
    pub(crate) via: Via,
    /// `--ssm-output`, with `--via ssm` only.
    pub(crate) ssm_output: Option<OutputLocation>,
}

impl PushConfig {
    /// Merges the layers; a bad value is a usage error (exit 2).
    pub(crate) fn resolve(args: PushArgs, file: &PushFile) -> Result<Self> {
        let mut reach = reach(&args.target, file)?;
        let via: Via = args
            .via
            .clone()
            .or(file.via.clone())
            .as_deref()
            .unwrap_or("ssh")
            .parse()?;
        let binary_given = args.remote.remote_binary.is_some() || file.remote_binary.is_some();
        let mut remote = remote(&args.remote, file);
        let ssm_output = match via {
            Via::Ssh => {
                if args.ssm_output.is_some() {
                    return Err(usage("--ssm-output applies to --via ssm only"));
                }
                None
            }
            Via::Ssm => {
                over_ssm(&mut reach.source, &remote)?;
                if !binary_given {
                    SSM_REMOTE_BINARY.clone_into(&mut remote.binary);
                }
                args.ssm_output
                    .or(file.ssm_output.clone())
                    .map(|url| ssm_output(&url))
                    .transpose()?
            }
        };
        let template = args.command.or(file.command.clone());
        if let Some(t) = &template {
            template::check(t)?;
        }
        let batch: BatchSize = args
            .batch
            .or(file.batch.clone())
            .as_deref()
            .unwrap_or("25%")
            .parse()?;
        let health = health_check(
            args.health_url.or(file.health_url.clone()),
            args.health_command.or(file.health_command.clone()),
        )?;
        let reference: BuildRef = args.build.as_deref().unwrap_or("latest-stable").parse()?;
        Ok(Self {
            reach,
            reference,
            template,
            batch,
            canary: args.canary.or(file.canary).unwrap_or(0),
            health,
            health_timeout: Duration::from_secs(
                args.health_timeout
                    .or(file.health_timeout)
                    .unwrap_or(DEFAULT_HEALTH_TIMEOUT),
            ),
            max_failures: args.max_failures.or(file.max_failures).unwrap_or(0),
            remote,
            log_dir: args.log_dir.or(file.log_dir.clone()),
            via,
            ssm_output,
        })
    }
}

fn usage(message: &str) -> anyhow::Error {
    ExitError::Usage(message.to_owned()).into()
}

/// What `--via ssm` refuses, and hosts named by instance id.
fn over_ssm(source: &mut Source, remote: &Remote) -> Result<()> {
    if remote.sudo {
        return Err(usage(
            "--sudo does not apply to --via ssm: the SSM agent runs commands as root",
        ));
    }
    match source {
        Source::Hosts(_) => Err(usage("SSM reaches instances by id; use --asg")),
        Source::Groups { by_instance, .. } => {
            *by_instance = true;
            Ok(())
        }
    }
}

/// `s3://bucket[/prefix]`: a bucket name by S3's rules, no user or port, a prefix of printable
/// characters. Checked here so that a typo fails before the lock, not in every SendCommand.
pub(crate) fn ssm_output(url: &str) -> Result<OutputLocation, ExitError> {
    let bad = |why: &str| {
        ExitError::Usage(format!(
            "invalid --ssm-output `{}`: {why}; give s3://BUCKET or s3://BUCKET/PREFIX",
            url.escape_debug()
        ))
    };
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| bad("it is not an s3:// URL"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.contains(['@', ':']) {
        return Err(bad("a bucket has no user or port"));
    }
    check_bucket_name(bucket).map_err(|why| bad(&why))?;
    let prefix = prefix.trim_matches('/');
    if prefix.chars().any(|c| c.is_control()) || prefix.contains("//") {
        return Err(bad("the prefix has control characters or an empty part"));
    }
    if prefix.len() > 500 {
        return Err(bad("the prefix is longer than 500 characters"));
    }
    Ok(OutputLocation {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
    })
}

/// S3's bucket naming rules: 3-63 lowercase letters, digits, `.` and `-`, starting and ending
/// with a letter or digit, no `..`, not an IPv4 address.
fn check_bucket_name(name: &str) -> Result<(), String> {
    let allowed = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ends = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !(3..=63).contains(&name.len())
        || !allowed
        || !ends(name.bytes().next())
        || !ends(name.bytes().last())
        || name.contains("..")
        || name.parse::<std::net::Ipv4Addr>().is_ok()
    {
        return Err(format!(
            "`{}` is not an S3 bucket name (3-63 lowercase letters, digits, `.`, `-`, starting              and ending with a letter or digit)",
            name.escape_debug()
        ));
    }
    Ok(())
}

fn health_check(url: Option<String>, command: Option<String>) -> Result<HealthCheck> {
    Ok(match (url, command) {
        (Some(_), Some(_)) => {
            return Err(
                ExitError::Usage("give --health-url or --health-command, not both".into()).into(),
            );
        }
        (Some(url), None) => HealthCheck::Url(url),
        (None, Some(command)) => HealthCheck::Command(command),
        (None, None) => HealthCheck::None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};

    fn resolve(args: &[&str]) -> Result<PushConfig> {
        use clap::Parser;
        let cli = Cli::try_parse_from([&["release", "push"][..], args].concat()).unwrap();
        let Command::Push(push) = cli.command else {
            unreachable!()
        };
        PushConfig::resolve(push, &PushFile::default())
    }

    #[test]
    fn ssm_names_the_binary_by_path_and_hosts_by_instance() {
        let ssm = resolve(&["--via", "ssm", "--asg", "web"]).unwrap();
        assert_eq!(ssm.remote.binary, "/usr/local/bin/release");
        assert!(matches!(
            ssm.reach.source,
            Source::Groups {
                by_instance: true,
                ..
            }
        ));
        let given = resolve(&["--via", "ssm", "--asg", "web", "--remote-binary", "/opt/r"]);
        assert_eq!(given.unwrap().remote.binary, "/opt/r");
        let ssh = resolve(&["--asg", "web"]).unwrap();
        assert_eq!((ssh.via, ssh.remote.binary.as_str()), (Via::Ssh, "release"));
        for refused in [
            &["--via", "ssm", "--asg", "web", "--sudo"][..],
            &["--via", "ssm", "--hosts", "h1"],
            &["--asg", "web", "--ssm-output", "s3://logs"],
            &["--via", "smoke-signals", "--asg", "web"],
        ] {
            let err = resolve(refused).err().unwrap();
            assert!(
                err.downcast_ref::<ExitError>().is_some(),
                "{refused:?}: {err}"
            );
        }
    }

    #[test]
    fn ssm_output_urls() {
        let ok = ssm_output("s3://my-logs/release/web/").unwrap();
        assert_eq!(
            (ok.bucket.as_str(), ok.prefix.as_str()),
            ("my-logs", "release/web")
        );
        let bare = ssm_output("s3://my.logs").unwrap();
        assert_eq!(
            (bare.bucket.as_str(), bare.prefix.as_str()),
            ("my.logs", "")
        );
        for bad in [
            "my-logs/x",
            "https://my-logs/x",
            "s3://",
            "s3://user@my-logs/x",
            "s3://my-logs:443/x",
            "s3://My-Logs",
            "s3://ab",
            "s3://-logs",
            "s3://logs-",
            "s3://a..b",
            "s3://192.168.1.10",
            "s3://my_logs",
            "s3://my-logs/a\nb",
            "s3://my-logs/a//b",
        ] {
            let bad = bad.replace("\\n", "\n");
            assert!(ssm_output(&bad).is_err(), "{bad:?}");
        }
    }
}
