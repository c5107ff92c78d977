//! How `push` and `status` reach hosts: `--asg`/`--hosts`, the SSH options and the remote
//! command, merged from flags (and their env twins) and `[push]` in release.toml.

use std::time::Duration;

use anyhow::Result;

use super::PushFile;
use crate::cli::{RemoteArgs, TargetArgs};
use crate::error::ExitError;
use crate::rollout::Remote;
use crate::rollout::ssh::{self, SshOptions};
use crate::rollout::targets::{self, AddressKind, Source};

/// Default cap on new SSH connections at once: under sshd's MaxStartups (10), bastions too.
const DEFAULT_MAX_CONNECTIONS: usize = 8;

/// Where the hosts are and how to reach them, merged from flags and `[push]`.
pub(crate) struct Reach {
    /// Where targets come from.
    pub(crate) source: Source,
    /// SSH options.
    pub(crate) ssh: SshOptions,
    /// New-connection cap.
    pub(crate) max_connections: usize,
}

/// Resolves `--asg`/`--hosts` and the SSH options.
pub(crate) fn reach(args: &TargetArgs, file: &PushFile) -> Result<Reach> {
    let groups = if args.asg.is_empty() {
        file.asg.clone().unwrap_or_default()
    } else {
        args.asg.clone()
    };
    let (hosts, origin) = if args.hosts.is_empty() {
        (
            file.hosts.clone().unwrap_or_default(),
            "`hosts` in release.toml",
        )
    } else {
        (args.hosts.clone(), "--hosts")
    };
    let hosts: Vec<String> = hosts
        .into_iter()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .collect();
    for host in &hosts {
        targets::check_host(host).map_err(|why| {
            ExitError::Usage(format!(
                "invalid host `{}` in {origin}: {why}",
                host.escape_debug()
            ))
        })?;
    }
    let address: AddressKind = args
        .address
        .clone()
        .or(file.address.clone())
        .as_deref()
        .unwrap_or("private")
        .parse()?;
    let source = match (groups.is_empty(), hosts.is_empty()) {
        (false, true) => Source::Groups {
            names: groups,
            address,
            // `push --via ssm` turns it on.
            by_instance: false,
        },
        (true, false) => Source::Hosts(hosts),
        (true, true) => {
            return Err(ExitError::Usage(
                "no targets: give --asg NAME (repeatable) or --hosts H,H".into(),
            )
            .into());
        }
        (false, false) => {
            return Err(ExitError::Usage("give --asg or --hosts, not both".into()).into());
        }
    };
    let policy = args
        .strict_host_keys
        .clone()
        .or(file.strict_host_keys.clone());
    Ok(Reach {
        source,
        ssh: SshOptions {
            user: args.ssh_user.clone().or(file.ssh_user.clone()),
            port: args.ssh_port.or(file.ssh_port),
            config: args.ssh_config.clone().or(file.ssh_config.clone()),
            identity: args.identity.clone().or(file.identity.clone()),
            host_keys: ssh::host_key_policy(policy.as_deref().unwrap_or("yes"))?,
            connect_timeout: Duration::from_secs(10),
        },
        max_connections: args
            .max_connections
            .or(file.max_connections)
            .unwrap_or(DEFAULT_MAX_CONNECTIONS),
    })
}

/// `--sudo`, `--remote-binary`, `--dir` merged with `[push]`.
pub(crate) fn remote(args: &RemoteArgs, file: &PushFile) -> Remote {
    Remote {
        sudo: args.sudo || file.sudo.unwrap_or(false),
        binary: args
            .remote_binary
            .clone()
            .or(file.remote_binary.clone())
            .unwrap_or_else(|| "release".into()),
        dir: args.dir.clone().or(file.dir.clone()),
    }
}
