//! What the account has: EC2 instances (DescribeInstances) and SSM managed nodes
//! (DescribeInstanceInformation) as plain structs, shared by target resolution, `rssm list` and
//! `rssm doctor`. The SDK types stop here.

use anyhow::Result;
use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};

use crate::aws::{error_chain, Aws};

/// An EC2 instance, as much of it as rssm uses.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Ec2Instance {
    /// `i-…`.
    pub id: String,
    /// The `Name` tag.
    pub name: Option<String>,
    /// `pending`, `running`, `stopped`, …
    pub state: String,
    /// Primary private IPv4 address.
    pub private_ip: Option<String>,
    /// e.g. `ip-10-0-1-23.eu-west-1.compute.internal`.
    pub private_dns: Option<String>,
    /// Public IPv4 address, if any.
    pub public_ip: Option<String>,
    /// `Linux/UNIX`, `Windows`, …
    pub platform: Option<String>,
    /// `vpc-…`.
    pub vpc_id: Option<String>,
    /// `subnet-…`.
    pub subnet_id: Option<String>,
    /// Availability zone.
    pub az: Option<String>,
    /// Security group ids of the primary interface.
    pub security_groups: Vec<String>,
    /// The attached instance profile's ARN.
    pub instance_profile_arn: Option<String>,
}

/// An SSM managed node, as DescribeInstanceInformation reports it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ManagedNode {
    /// `i-…` or `mi-…`.
    pub id: String,
    /// `Online`, `ConnectionLost`, `Inactive`.
    pub ping_status: String,
    /// e.g. `3.3.1802.0`.
    pub agent_version: Option<String>,
    /// e.g. `Amazon Linux 2023`.
    pub platform: Option<String>,
    /// The IP the agent reports.
    pub ip: Option<String>,
    /// Host name the agent reports.
    pub computer_name: Option<String>,
    /// The name given at activation (hybrid nodes).
    pub name: Option<String>,
    /// Last ping, RFC 3339.
    pub last_ping: Option<String>,
}

/// Why a piece of information could not be fetched: the permission the caller lacks, or the
/// error. Doctor turns it into an "unknown" verdict instead of failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// Access denied: the named IAM action is missing.
    Denied(String),
    /// Any other failure, one line.
    Failed(String),
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::Denied(action) => write!(f, "needs {action}"),
            Unavailable::Failed(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Unavailable {}

/// Classifies an SDK error for the IAM action `action` (e.g. `ec2:DescribeVpcEndpoints`).
pub fn unavailable<E>(
    action: &str,
    e: SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> Unavailable
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let SdkError::ServiceError(se) = &e {
        let code = se.err().code().unwrap_or("");
        if matches!(
            code,
            "UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException"
        ) {
            return Unavailable::Denied(action.to_owned());
        }
        let msg = se.err().message().unwrap_or("").trim();
        if code.is_empty() && msg.is_empty() {
            let status = se.raw().status().as_u16();
            return Unavailable::Failed(format!("{action} failed with HTTP {status}"));
        }
        return Unavailable::Failed(format!("{action}: {code} {msg}").trim().to_owned());
    }
    Unavailable::Failed(format!("{action}: {}", error_chain(&e)))
}

/// EC2 DescribeInstances with `filters` (name, value), every page.
pub async fn describe_instances(
    aws: &Aws,
    filters: &[(String, String)],
) -> Result<Vec<Ec2Instance>> {
    describe_instances_by(aws, filters, &[])
        .await
        .map_err(|e| anyhow::anyhow!("cannot look instances up: {e}"))
}

/// DescribeInstances by filters and/or ids.
pub async fn describe_instances_by(
    aws: &Aws,
    filters: &[(String, String)],
    ids: &[String],
) -> Result<Vec<Ec2Instance>, Unavailable> {
    let ec2 = aws.ec2();
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut call = ec2.describe_instances().set_next_token(token.take());
        for (name, value) in filters {
            call = call.filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name(name)
                    .values(value)
                    .build(),
            );
        }
        if !ids.is_empty() {
            call = call.set_instance_ids(Some(ids.to_vec()));
        }
        let page = call
            .send()
            .await
            .map_err(|e| unavailable("ec2:DescribeInstances", e))?;
        for r in page.reservations() {
            out.extend(r.instances().iter().map(instance_from_sdk));
        }
        match page.next_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => break,
        }
    }
    Ok(out)
}

fn instance_from_sdk(i: &aws_sdk_ec2::types::Instance) -> Ec2Instance {
    let name = i
        .tags()
        .iter()
        .find(|t| t.key() == Some("Name"))
        .and_then(|t| t.value().map(str::to_owned));
    Ec2Instance {
        id: i.instance_id().unwrap_or_default().to_owned(),
        name,
        state: i
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_owned())
            .unwrap_or_else(|| "unknown".into()),
        private_ip: i.private_ip_address().map(str::to_owned),
        private_dns: i
            .private_dns_name()
            .filter(|d| !d.is_empty())
            .map(str::to_owned),
        public_ip: i.public_ip_address().map(str::to_owned),
        platform: i.platform_details().map(str::to_owned),
        vpc_id: i.vpc_id().map(str::to_owned),
        subnet_id: i.subnet_id().map(str::to_owned),
        az: i
            .placement()
            .and_then(|p| p.availability_zone())
            .map(str::to_owned),
        security_groups: i
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_owned))
            .collect(),
        instance_profile_arn: i
            .iam_instance_profile()
            .and_then(|p| p.arn())
            .map(str::to_owned),
    }
}

/// SSM DescribeInstanceInformation, every page; `id` narrows it to one node.
pub async fn managed_nodes(aws: &Aws, id: Option<&str>) -> Result<Vec<ManagedNode>, Unavailable> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut call = aws
            .ssm()
            .describe_instance_information()
            .set_next_token(token.take());
        if let Some(id) = id {
            call = call.filters(
                aws_sdk_ssm::types::InstanceInformationStringFilter::builder()
                    .key("InstanceIds")
                    .values(id)
                    .build()
                    .map_err(|e| Unavailable::Failed(e.to_string()))?,
            );
        }
        let page = call
            .send()
            .await
            .map_err(|e| unavailable("ssm:DescribeInstanceInformation", e))?;
        for n in page.instance_information_list() {
            out.push(ManagedNode {
                id: n.instance_id().unwrap_or_default().to_owned(),
                ping_status: n
                    .ping_status()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_else(|| "Unknown".into()),
                agent_version: n.agent_version().map(str::to_owned),
                platform: match (n.platform_name(), n.platform_version()) {
                    (Some(name), Some(v)) => Some(format!("{name} {v}")),
                    (Some(name), None) => Some(name.to_owned()),
                    _ => n.platform_type().map(|t| t.as_str().to_owned()),
                },
                ip: n.ip_address().map(str::to_owned),
                computer_name: n.computer_name().map(str::to_owned),
                name: n.name().map(str::to_owned),
                last_ping: n.last_ping_date_time().map(|t| t.to_string()),
            });
        }
        match page.next_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => break,
        }
    }
    Ok(out)
}
