//! Which hosts a push or status talks to: given hosts, or the InService, Healthy instances of
//! Auto Scaling Groups (with every instance left out, and why).

use anyhow::Result;
use release_fleet::{Addresses, Fleet};
use serde::Serialize;

use crate::error::Problem;

/// One host to update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// What to call it in reports: its address.
    pub host: String,
    /// Where to connect.
    pub address: String,
    /// EC2 instance id, for ASG targets.
    pub instance: Option<String>,
    /// Its group.
    pub group: Option<String>,
    /// `spot` or `on-demand`.
    pub lifecycle: Option<String>,
    /// Availability zone.
    pub zone: Option<String>,
}

/// An instance that was left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Its id.
    pub instance: String,
    /// Its group.
    pub group: String,
    /// Why.
    pub reason: String,
}

/// Which address of an instance to connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    /// Private IPv4 (the default: controllers usually run inside the VPC).
    Private,
    /// Public IPv4.
    Public,
    /// DNS name.
    Dns,
}

impl std::str::FromStr for AddressKind {
    type Err = Problem;

    fn from_str(text: &str) -> Result<Self, Problem> {
        match text {
            "private" => Ok(Self::Private),
            "public" => Ok(Self::Public),
            "dns" => Ok(Self::Dns),
            other => Err(Problem::Usage(format!(
                "invalid --address `{other}`: use private, public or dns"
            ))),
        }
    }
}

/// Where the targets come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// `--hosts`: as given, in order.
    Hosts(Vec<String>),
    /// `--asg`: looked up each time.
    Groups {
        /// The groups, in order.
        names: Vec<String>,
        /// Which address.
        address: AddressKind,
    },
}

/// Resolves targets; `fleet` is only used for groups.
pub async fn resolve(
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
        Source::Groups { names, address } => (names, *address),
    };
    let fleet = fleet.ok_or_else(|| anyhow::anyhow!("no AWS client for Auto Scaling"))?;
    let members = fleet.members(names).await.map_err(|e| match e {
        release_fleet::FleetError::NoSuchGroup(_) => {
            anyhow::Error::from(Problem::Usage(e.to_string()))
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
    let ids: Vec<String> = wanted.iter().map(|m| m.instance_id.clone()).collect();
    let addresses = fleet.addresses(&ids).await?;
    let mut targets = Vec::new();
    for member in wanted {
        let found = addresses
            .iter()
            .find(|(id, _)| *id == member.instance_id)
            .map(|(_, a)| a);
        match found.and_then(|a| pick(a, kind)) {
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

fn pick(addresses: &Addresses, kind: AddressKind) -> Option<String> {
    match kind {
        AddressKind::Private => addresses.private_ip.clone(),
        AddressKind::Public => addresses.public_ip.clone(),
        AddressKind::Dns => addresses.dns.clone(),
    }
}

fn skip(instance: &str, group: &str, reason: &str) -> Skipped {
    Skipped {
        instance: instance.to_owned(),
        group: group.to_owned(),
        reason: reason.to_owned(),
    }
}
