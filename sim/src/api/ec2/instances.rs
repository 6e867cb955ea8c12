//! `DescribeInstances` (EC2 API reference): the fleet's `i-…` targets with their placement,
//! subnet, VPC, security groups and instance profile from [`crate::fleet::Network`] and
//! [`crate::fleet::Iam`].

use super::super::query::{el, esc, Params};
use super::{filters, glob, group_set, items, list, Ec2Error};
use crate::fleet::{Network, ResourceKind, Target};
use crate::state::SimState;

/// Answers `DescribeInstances`: the `reservationSet`.
pub(super) fn describe(state: &SimState, params: &Params) -> Result<String, Ec2Error> {
    let filters = filters(params);
    let ids = list(params, "InstanceId");
    let config = &state.config;
    let network = &config.fleet.network;
    let ec2: Vec<&Target> = config
        .fleet
        .targets
        .iter()
        .filter(|t| t.kind() == ResourceKind::Ec2Instance)
        .collect();
    // EC2 answers an unknown id with an error, not an empty list.
    if let Some(missing) = ids.iter().find(|id| !ec2.iter().any(|t| &t.id == *id)) {
        return Err(Ec2Error::new(
            "InvalidInstanceID.NotFound",
            format!("The instance ID '{missing}' does not exist"),
        ));
    }
    let matching: Vec<&Target> = ec2
        .into_iter()
        .filter(|t| ids.is_empty() || ids.contains(&t.id))
        .filter(|t| {
            filters
                .iter()
                .all(|(name, values)| matches(t, network, &config.region, name, values))
        })
        .collect();
    Ok(reservations(
        &matching,
        network,
        &config.region,
        &config.account_id,
    ))
}

/// The instance's private DNS name, as EC2 derives it from the IP.
pub(super) fn private_dns(t: &Target, region: &str) -> String {
    let host = format!("ip-{}", t.ip_address.replace('.', "-"));
    if region == "us-east-1" {
        format!("{host}.ec2.internal")
    } else {
        format!("{host}.{region}.compute.internal")
    }
}

/// The instance's VPC, through its subnet.
fn vpc_id<'n>(t: &Target, network: &'n Network) -> Option<&'n str> {
    network.subnet(&t.subnet_id).map(|s| s.vpc_id.as_str())
}

pub(super) fn matches(
    t: &Target,
    network: &Network,
    region: &str,
    name: &str,
    values: &[String],
) -> bool {
    let actual = match name {
        "instance-id" => Some(t.id.clone()),
        "private-ip-address" => Some(t.ip_address.clone()),
        "private-dns-name" => Some(private_dns(t, region)),
        "instance-state-name" => Some(t.state.clone()),
        "subnet-id" => Some(t.subnet_id.clone()),
        "vpc-id" => vpc_id(t, network).map(str::to_owned),
        _ => match name.strip_prefix("tag:") {
            Some(key) => t.tags.get(key).cloned(),
            None => return true,
        },
    };
    actual.is_some_and(|a| values.iter().any(|v| glob(v, &a)))
}

fn state_code(state: &str) -> u16 {
    match state {
        "pending" => 0,
        "running" => 16,
        "shutting-down" => 32,
        "terminated" => 48,
        "stopping" => 64,
        _ => 80,
    }
}

/// Where the instance sits: subnet, VPC, zone and security groups.
fn placement(t: &Target, network: &Network, region: &str) -> String {
    let Some(subnet) = network.subnet(&t.subnet_id) else {
        return format!("<placement><availabilityZone>{region}a</availabilityZone></placement>");
    };
    let groups = group_set(network, &t.security_groups);
    format!(
        "<placement><availabilityZone>{region}{}</availabilityZone></placement>{}{}{groups}",
        esc(&subnet.zone),
        el("subnetId", &subnet.id),
        el("vpcId", &subnet.vpc_id),
    )
}

pub(super) fn reservations(
    targets: &[&Target],
    network: &Network,
    region: &str,
    account: &str,
) -> String {
    let mut out = String::new();
    for t in targets {
        let tags = items("tagSet", &t.tags, |(k, v)| {
            format!("{}{}", el("key", k), el("value", v))
        });
        let platform = if t.platform_type == "Windows" {
            "Windows"
        } else {
            "Linux/UNIX"
        };
        let profile = t
            .profile()
            .map(|p| {
                format!(
                    "<iamInstanceProfile>{}{}</iamInstanceProfile>",
                    el(
                        "arn",
                        &format!("arn:aws:iam::{account}:instance-profile/{p}")
                    ),
                    el("id", &super::super::iam::unique_id("AIPA", p))
                )
            })
            .unwrap_or_default();
        // One reservation per instance, as when each was launched on its own.
        out.push_str(&format!(
            "<item><reservationId>r-{rid}</reservationId><ownerId>{account}</ownerId><instancesSet><item>\
             {id}<instanceState><code>{code}</code>{state}</instanceState>\
             {dns}{ip}{placement}{profile}{platform}{tags}\
             </item></instancesSet></item>",
            rid = esc(t.id.trim_start_matches("i-")),
            id = el("instanceId", &t.id),
            code = state_code(&t.state),
            state = el("name", &t.state),
            dns = el("privateDnsName", &private_dns(t, region)),
            ip = el("privateIpAddress", &t.ip_address),
            placement = placement(t, network, region),
            platform = el("platformDetails", platform),
        ));
    }
    format!("<reservationSet>{out}</reservationSet>")
}
