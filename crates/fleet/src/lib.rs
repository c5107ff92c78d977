//! The fleet as AWS describes it: Auto Scaling Groups, their instances, and addresses.
//!
//! A crate of its own because aws-sdk-ec2 takes minutes to compile: edits to the binary never
//! rebuild it, and its generic code is instantiated here, once.

use aws_sdk_autoscaling::error::DisplayErrorContext;

pub mod kms;
pub mod ssm;

/// One instance of a group, as Auto Scaling reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The group.
    pub group: String,
    /// `i-…`.
    pub instance_id: String,
    /// `InService`, `Pending`, `Standby`, `Terminating`, ….
    pub lifecycle_state: String,
    /// `Healthy` or `Unhealthy`.
    pub health: String,
    /// Availability zone.
    pub zone: String,
}

/// Addresses and purchase model of an instance, as EC2 reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addresses {
    /// Private IPv4 address.
    pub private_ip: Option<String>,
    /// Public IPv4 address.
    pub public_ip: Option<String>,
    /// Public DNS name (or private DNS name when there is no public one).
    pub dns: Option<String>,
    /// `spot` or `on-demand`.
    pub lifecycle: String,
}

/// A failed lookup, naming what was looked up.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The group does not exist.
    #[error("Auto Scaling Group `{0}` does not exist (check the name and --region)")]
    NoSuchGroup(String),
    /// Anything else the API said.
    #[error("{what} failed: {detail}")]
    Api {
        /// The call.
        what: String,
        /// The SDK's words.
        detail: String,
    },
}

/// Instances per DescribeInstances call: its answer runs to kilobytes per instance, and the
/// parsed page is held whole, so a bounded chunk keeps the controller's memory flat in the size
/// of the fleet (AWS accepts up to 1,000 ids per call).
const ADDRESSES_PER_CALL: usize = 100;

/// Clients for Auto Scaling and EC2 from the standard AWS configuration chain.
#[derive(Debug, Clone)]
pub struct Fleet {
    autoscaling: aws_sdk_autoscaling::Client,
    ec2: aws_sdk_ec2::Client,
}

impl Fleet {
    /// Clients from a loaded AWS configuration (region, credentials, timeouts).
    pub fn new(shared: &aws_config::SdkConfig) -> Self {
        Self {
            autoscaling: aws_sdk_autoscaling::Client::new(shared),
            ec2: aws_sdk_ec2::Client::new(shared),
        }
    }

    /// The instances of each named group, in the order the names are given; a missing group
    /// is an error.
    pub async fn members(&self, groups: &[String]) -> Result<Vec<Member>, FleetError> {
        let mut found: Vec<Member> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        let mut pages = self
            .autoscaling
            .describe_auto_scaling_groups()
            .set_auto_scaling_group_names(Some(groups.to_vec()))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| FleetError::Api {
                what: "DescribeAutoScalingGroups".into(),
                detail: DisplayErrorContext(&e).to_string(),
            })?;
            for group in page.auto_scaling_groups() {
                let name = group
                    .auto_scaling_group_name()
                    .unwrap_or_default()
                    .to_owned();
                for instance in group.instances() {
                    found.push(Member {
                        group: name.clone(),
                        instance_id: instance.instance_id().unwrap_or_default().to_owned(),
                        lifecycle_state: instance
                            .lifecycle_state()
                            .map(|s| s.as_str().to_owned())
                            .unwrap_or_default(),
                        health: instance.health_status().unwrap_or_default().to_owned(),
                        zone: instance.availability_zone().unwrap_or_default().to_owned(),
                    });
                }
                seen.push(name);
            }
        }
        if let Some(missing) = groups.iter().find(|g| !seen.contains(g)) {
            return Err(FleetError::NoSuchGroup(missing.clone()));
        }
        // Group by group in the order given, then by instance id.
        found.sort_by(|a, b| {
            let rank = |m: &Member| groups.iter().position(|g| *g == m.group);
            rank(a)
                .cmp(&rank(b))
                .then(a.instance_id.cmp(&b.instance_id))
        });
        Ok(found)
    }

    /// Addresses of the given instances, by instance id.
    pub async fn addresses(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<(String, Addresses)>, FleetError> {
        if instance_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for chunk in instance_ids.chunks(ADDRESSES_PER_CALL) {
            self.addresses_of(chunk, &mut out).await?;
        }
        Ok(out)
    }

    /// [`Fleet::addresses`] of at most [`ADDRESSES_PER_CALL`] instances, appended to `out`.
    async fn addresses_of(
        &self,
        instance_ids: &[String],
        out: &mut Vec<(String, Addresses)>,
    ) -> Result<(), FleetError> {
        let request = self
            .ec2
            .describe_instances()
            .set_instance_ids(Some(instance_ids.to_vec()));
        each_instance(request, |instance| {
            let non_empty = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_owned);
            let lifecycle = match instance.instance_lifecycle() {
                Some(kind) => kind.as_str().to_owned(),
                None => "on-demand".to_owned(),
            };
            out.push((
                instance.instance_id().unwrap_or_default().to_owned(),
                Addresses {
                    private_ip: non_empty(instance.private_ip_address()),
                    public_ip: non_empty(instance.public_ip_address()),
                    dns: non_empty(instance.public_dns_name())
                        .or_else(|| non_empty(instance.private_dns_name())),
                    lifecycle,
                },
            ));
        })
        .await
    }

    /// The state (`running`, `terminated`, …) of each given instance EC2 still knows, by
    /// instance id. An `instance-id` filter, not `InstanceIds`: one id EC2 no longer knows
    /// must not fail the call; it is simply absent from the answer.
    pub async fn instance_states(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<(String, String)>, FleetError> {
        let mut out = Vec::new();
        // At most 200 values per filter.
        for chunk in instance_ids.chunks(200) {
            let filter = aws_sdk_ec2::types::Filter::builder()
                .name("instance-id")
                .set_values(Some(chunk.to_vec()))
                .build();
            let request = self.ec2.describe_instances().filters(filter);
            each_instance(request, |instance| {
                let state = instance
                    .state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_owned())
                    .unwrap_or_default();
                out.push((instance.instance_id().unwrap_or_default().to_owned(), state));
            })
            .await?;
        }
        Ok(out)
    }
}

/// Every instance a DescribeInstances `request` answers, over all its pages, handed to `visit`
/// one page at a time (a page is dropped before the next is asked for).
async fn each_instance(
    request: aws_sdk_ec2::operation::describe_instances::builders::DescribeInstancesFluentBuilder,
    mut visit: impl FnMut(&aws_sdk_ec2::types::Instance),
) -> Result<(), FleetError> {
    let mut pages = request.into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| FleetError::Api {
            what: "DescribeInstances".into(),
            detail: aws_sdk_ec2::error::DisplayErrorContext(&e).to_string(),
        })?;
        for instance in page.reservations().iter().flat_map(|r| r.instances()) {
            visit(instance);
        }
    }
    Ok(())
}
