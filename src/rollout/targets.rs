//! Which hosts a push or status talks to: given hosts, or the InService, Healthy instances of
//! Auto Scaling Groups (with every instance left out, and why).

use std::collections::HashMap;

use anyhow::Result;
use release_fleet::{Addresses, Fleet};
use serde::Serialize;

use crate::error::ExitError;

/// One host to update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Target {
    /// What to call it in reports: its address.
    pub(crate) host: String,
    /// Where to connect.
    pub(crate) address: String,
    /// EC2 instance id, for ASG targets.
    pub(crate) instance: Option<String>,
    pub(crate) group: Option<String>,
    /// `spot` or `on-demand`.
    pub(crate) lifecycle: Option<String>,
    /// Availability zone.
    pub(crate) zone: Option<String>,
}

/// An instance that was left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Skipped {
    /// Its id.
    pub(crate) instance: String,
    pub(crate) group: String,
    /// Why.
    pub(crate) reason: String,
}

/// Which address of an instance to connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddressKind {
    /// Private IPv4 (the default: controllers usually run inside the VPC).
    Private,
    /// Public IPv4.
    Public,
    /// DNS name.
    Dns,
}

impl std::str::FromStr for AddressKind {
    type Err = ExitError;

    fn from_str(text: &str) -> Result<Self, ExitError> {
        match text {
            "private" => Ok(Self::Private),
            "public" => Ok(Self::Public),
            "dns" => Ok(Self::Dns),
            other => Err(ExitError::Usage(format!(
                "invalid --address `{other}`: use private, public or dns"
            ))),
        }
    }
}

/// Where the targets come from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// `--hosts`: as given, in order.
    Hosts(Vec<String>),
    /// `--asg`: looked up each time.
    Groups {
        /// The groups, in order.
        names: Vec<String>,
        /// Which address.
        address: AddressKind,
        /// Name each host by its instance id and keep it even without a usable address: SSM
        /// reaches instances by id (the address only serves `--health-url`).
        by_instance: bool,
    },
}

/// Resolves targets; `fleet` is only used for groups.
pub(crate) async fn resolve(
    source: &Source,
    fleet: Option<&Fleet>,
) -> Result<(Vec<Target>, Vec<Skipped>)> {
    let (names, kind) = match source {
        Source::Hosts(hosts) => {
            let targets = hosts
                .iter()
                .map(|h| Target {
                    host: h.clone(),
                    address: h.clone(),
                    instance: None,
                    group: None,
                    lifecycle: None,
                    zone: None,
                })
                .collect();
            return Ok((targets, Vec::new()));
        }
        Source::Groups {
            names,
            address,
            by_instance,
        } => (names, (*address, *by_instance)),
    };
    let (kind, by_instance) = kind;
    let fleet = fleet.ok_or_else(|| anyhow::anyhow!("no AWS client for Auto Scaling"))?;
    let (wanted, mut skipped) = in_service(names, fleet).await?;
    let ids: Vec<String> = wanted.iter().map(|m| m.instance_id.clone()).collect();
    let addresses: HashMap<String, Addresses> = fleet.addresses(&ids).await?.into_iter().collect();
    let mut targets = Vec::new();
    for member in wanted {
        let found = addresses.get(&member.instance_id);
        let address = found.and_then(|a| pick(a, kind));
        if by_instance {
            match check_host(&member.instance_id) {
                Ok(()) => targets.push(by_id(member, found, address)),
                Err(why) => skipped.push(skip(
                    &member.instance_id,
                    &member.group,
                    &format!("unusable instance id: {why}"),
                )),
            }
            continue;
        }
        if let Some(bad) = address
            .as_deref()
            .and_then(|a| check_host(a).err().map(|e| (a, e)))
        {
            skipped.push(skip(
                &member.instance_id,
                &member.group,
                &format!("unusable address `{}`: {}", bad.0.escape_debug(), bad.1),
            ));
            continue;
        }
        match address {
            Some(address) => targets.push(Target {
                host: address.clone(),
                address,
                instance: Some(member.instance_id),
                group: Some(member.group),
                lifecycle: found.map(|a| a.lifecycle.clone()),
                zone: Some(member.zone),
            }),
            None => skipped.push(skip(
                &member.instance_id,
                &member.group,
                &format!("no {kind:?} address").to_lowercase(),
            )),
        }
    }
    Ok((targets, skipped))
}

/// The InService, Healthy members of the groups (DescribeAutoScalingGroups only), and the
/// others as skipped. Enough to tell who is still in the groups: the re-read before each batch
/// needs no addresses.
pub(crate) async fn in_service(
    names: &[String],
    fleet: &Fleet,
) -> Result<(Vec<release_fleet::Member>, Vec<Skipped>)> {
    let members = fleet.members(names).await.map_err(|e| match e {
        release_fleet::FleetError::NoSuchGroup(_) => {
            anyhow::Error::from(ExitError::Usage(e.to_string()))
        }
        other => anyhow::Error::from(other),
    })?;
    let mut skipped = Vec::new();
    let mut wanted = Vec::new();
    for member in members {
        if member.lifecycle_state != "InService" {
            skipped.push(skip(
                &member.instance_id,
                &member.group,
                &member.lifecycle_state,
            ));
        } else if member.health != "Healthy" {
            skipped.push(skip(&member.instance_id, &member.group, &member.health));
        } else {
            wanted.push(member);
        }
    }
    Ok((wanted, skipped))
}

/// A target reached by instance id: named by it, its address (else its id) only for
/// `--health-url`'s `{address}`.
fn by_id(
    member: release_fleet::Member,
    found: Option<&Addresses>,
    address: Option<String>,
) -> Target {
    let address = address
        .filter(|a| check_host(a).is_ok())
        .unwrap_or_else(|| member.instance_id.clone());
    Target {
        host: member.instance_id.clone(),
        address,
        instance: Some(member.instance_id),
        group: Some(member.group),
        lifecycle: found.map(|a| a.lifecycle.clone()),
        zone: Some(member.zone),
    }
}

fn pick(addresses: &Addresses, kind: AddressKind) -> Option<String> {
    match kind {
        AddressKind::Private => addresses.private_ip.clone(),
        AddressKind::Public => addresses.public_ip.clone(),
        AddressKind::Dns => addresses.dns.clone(),
    }
}

/// Refuses a host that could not be a host name: `[user@]host`, where the user is letters,
/// digits, `.`, `_` and `-`, and the host a DNS name, an ssh config alias, an IPv4 or an IPv6
/// address (letters, digits, `.`, `_`, `-`, `:`), neither starting with `-`.
///
/// The openssh crate passes the host to `ssh` as its last argument with no `--` before it (it
/// offers no way to add one), so a leading `-` would be read as an option (`-oProxyCommand=…`
/// runs a command on the controller). The host also names the per-host log file, so no `/`.
pub(crate) fn check_host(value: &str) -> Result<(), String> {
    let (user, host) = match value.rsplit_once('@') {
        Some((user, host)) => (Some(user), host),
        None => (None, value),
    };
    let word = |text: &str, what: &str, extra: &[char]| -> Result<(), String> {
        if text.is_empty() {
            return Err(format!("its {what} is empty"));
        }
        if text.starts_with('-') {
            return Err(format!(
                "its {what} starts with `-`, which ssh would read as an option"
            ));
        }
        match text.chars().find(|c| {
            !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') || extra.contains(c))
        }) {
            Some(c) => Err(format!(
                "its {what} contains {c:?}: a host is `[user@]host` with letters, digits, `.`, `_`, `-` (and `:` for IPv6)"
            )),
            None => Ok(()),
        }
    };
    if let Some(user) = user {
        word(user, "user", &[])?;
    }
    word(host, "host name", &[':'])?;
    if host.len() > 253 {
        return Err("its host name is longer than 253 characters".into());
    }
    Ok(())
}

fn skip(instance: &str, group: &str, reason: &str) -> Skipped {
    Skipped {
        instance: instance.to_owned(),
        group: group.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_that_ssh_could_read_as_options_are_refused() {
        for good in [
            "127.0.1.4",
            "web-1.prod.example.com",
            "ec2-user@10.0.0.7",
            "bastion_alias",
            "fe80::1",
            "2001:db8::7",
        ] {
            assert_eq!(check_host(good), Ok(()), "{good}");
        }
        for bad in [
            "-V",
            "-oProxyCommand=touch /tmp/x",
            "user@-V",
            "-l@host",
            "",
            "a b",
            "a\tb",
            "web\n1",
            "../../etc/x",
            "ssh://host:22",
            "host;id",
            "@host",
        ] {
            assert!(check_host(bad).is_err(), "{bad:?}");
        }
        assert!(check_host(&"a".repeat(254)).is_err());
    }
}
