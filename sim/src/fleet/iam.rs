//! The IAM side of the fleet: instance profiles, their roles, and the policies attached to
//! those roles, as IAM's `GetInstanceProfile`, `ListAttachedRolePolicies` and friends report them.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The instance profiles and roles of the simulated account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Iam {
    /// Instance profiles.
    #[serde(default, rename = "instance_profile")]
    pub instance_profiles: Vec<InstanceProfile>,
    /// Roles.
    #[serde(default, rename = "role")]
    pub roles: Vec<Role>,
}

/// An instance profile: the container EC2 attaches, holding at most one role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceProfile {
    /// Profile name.
    pub name: String,
    /// The role inside, if any.
    #[serde(default)]
    pub role: Option<String>,
}

/// An IAM role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// Role name.
    pub name: String,
    /// Names of attached AWS managed policies (see [`aws_managed_policy`]).
    #[serde(default)]
    pub managed_policies: Vec<String>,
    /// Inline policies: name → JSON document.
    #[serde(default)]
    pub inline_policies: BTreeMap<String, String>,
}

/// The AWS managed policy the agent needs (docs/doctor.md 2).
pub const CORE_POLICY: &str = "AmazonSSMManagedInstanceCore";

/// The ARN of an AWS managed policy.
pub fn aws_managed_arn(name: &str) -> String {
    format!("arn:aws:iam::aws:policy/{name}")
}

/// The document of an AWS managed policy the simulator knows: only [`CORE_POLICY`], written
/// here from the actions the agent calls (the agent's source and docs/doctor.md 2), not copied.
pub fn aws_managed_policy(name: &str) -> Option<&'static str> {
    (name == CORE_POLICY).then_some(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ssm:DescribeAssociation","ssm:GetDocument","ssm:DescribeDocument","ssm:GetParameter","ssm:GetParameters","ssm:ListAssociations","ssm:ListInstanceAssociations","ssm:PutInventory","ssm:PutComplianceItems","ssm:UpdateAssociationStatus","ssm:UpdateInstanceAssociationStatus","ssm:UpdateInstanceInformation"],"Resource":"*"},{"Effect":"Allow","Action":["ssmmessages:CreateControlChannel","ssmmessages:CreateDataChannel","ssmmessages:OpenControlChannel","ssmmessages:OpenDataChannel"],"Resource":"*"},{"Effect":"Allow","Action":["ec2messages:AcknowledgeMessage","ec2messages:DeleteMessage","ec2messages:FailMessage","ec2messages:GetEndpoint","ec2messages:GetMessages","ec2messages:SendReply"],"Resource":"*"}]}"#,
    )
}

impl Iam {
    /// The profile with this name.
    pub fn profile(&self, name: &str) -> Option<&InstanceProfile> {
        self.instance_profiles.iter().find(|p| p.name == name)
    }

    /// The role with this name.
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.name == name)
    }
}
