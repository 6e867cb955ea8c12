//! Everything doctor looks at, as plain data. `fetch.rs` fills it from the APIs; the checks
//! read it and never call anything, so every verdict is unit-testable with hand-made facts.

use crate::inventory::{Ec2Instance, ManagedNode, Unavailable};

/// A fact, or why it could not be fetched (a missing permission becomes "unknown", not a crash).
pub type Fetched<T> = Result<T, Unavailable>;

/// All the facts about one target.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The region in use.
    pub region: String,
    /// The resolved target id.
    pub target: String,
    /// STS GetCallerIdentity.
    pub caller: Fetched<Caller>,
    /// SSM's view: `None` when the node never registered.
    pub node: Fetched<Option<ManagedNode>>,
    /// EC2's view: `None` when there is no such instance in the region (or it is a `mi-` node).
    pub instance: Fetched<Option<Ec2Instance>>,
    /// The instance profile and its role; `None` when no profile is attached.
    pub role: Fetched<Option<RoleFacts>>,
    /// The network around the instance; `None` for non-EC2 targets and missing instances.
    pub network: Option<NetworkFacts>,
    /// Can the caller start sessions (IAM SimulatePrincipalPolicy)?
    pub caller_permissions: Fetched<Vec<Decision>>,
    /// Can this machine reach the SSM API (and ssmmessages, when not overridden)?
    pub reach: Vec<Reach>,
}

/// The caller's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// e.g. `arn:aws:sts::123456789012:assumed-role/Admin/alice`.
    pub arn: String,
    /// 12-digit account id.
    pub account: String,
}

/// One simulated action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// e.g. `ssm:StartSession`.
    pub action: String,
    /// `allowed`, `explicitDeny`, `implicitDeny`.
    pub decision: String,
}

/// The instance profile, its role and the role's policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleFacts {
    /// The profile name (from its ARN).
    pub profile: String,
    /// The role in the profile; `None` when the profile is empty.
    pub role: Option<String>,
    /// Names of the managed policies attached to the role.
    pub attached: Fetched<Vec<String>>,
    /// Policy documents (JSON) of the role: inline ones and attached managed ones.
    pub documents: Fetched<Vec<String>>,
}

/// The result of the client-side reachability probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// The endpoint probed (URL or host:port).
    pub endpoint: String,
    /// Ok(connect time in ms) or the error.
    pub result: Result<u128, String>,
    /// How the connection went: `via http://proxy:3128 (HTTPS_PROXY)`, `direct (…)`.
    pub route: String,
    /// Whether it went through a proxy.
    pub proxied: bool,
}

/// The VPC-side facts of an instance.
#[derive(Debug, Clone)]
pub struct NetworkFacts {
    /// The instance's VPC.
    pub vpc_id: String,
    /// `enableDnsSupport`.
    pub dns_support: Fetched<bool>,
    /// `enableDnsHostnames`.
    pub dns_hostnames: Fetched<bool>,
    /// Every subnet of the VPC.
    pub subnets: Fetched<Vec<Subnet>>,
    /// Every route table of the VPC.
    pub route_tables: Fetched<Vec<RouteTable>>,
    /// Every interface endpoint of the VPC.
    pub endpoints: Fetched<Vec<Endpoint>>,
    /// Every security group of the VPC.
    pub security_groups: Fetched<Vec<SecurityGroup>>,
    /// Every network ACL of the VPC.
    pub nacls: Fetched<Vec<Nacl>>,
    /// Entries of the managed prefix lists the security groups reference.
    pub prefix_lists: Fetched<Vec<PrefixList>>,
}

impl Default for Facts {
    fn default() -> Facts {
        fn none<T>() -> Fetched<T> {
            Err(Unavailable::Failed("not fetched".into()))
        }
        Facts {
            region: "eu-west-1".into(),
            target: String::new(),
            caller: none(),
            node: none(),
            instance: none(),
            role: none(),
            network: None,
            caller_permissions: none(),
            reach: Vec::new(),
        }
    }
}

/// A subnet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subnet {
    /// `subnet-…`.
    pub id: String,
    /// IPv4 CIDR.
    pub cidr: String,
    /// Availability zone.
    pub az: String,
}

/// A route table and where it applies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    /// `rtb-…`.
    pub id: String,
    /// The VPC's main table (used by subnets without an explicit association).
    pub main: bool,
    /// Subnets explicitly associated.
    pub subnets: Vec<String>,
    /// Its routes.
    pub routes: Vec<Route>,
}

/// One route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route {
    /// Destination CIDR (or prefix list id).
    pub destination: String,
    /// `nat-…`, `igw-…`, `local`, `tgw-…`, `eni-…`, …
    pub target: String,
    /// `active` or `blackhole`.
    pub active: bool,
}

/// An interface VPC endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// `vpce-…`.
    pub id: String,
    /// e.g. `com.amazonaws.eu-west-1.ssmmessages`.
    pub service_name: String,
    /// Private DNS enabled.
    pub private_dns: bool,
    /// `available`, `pending`, …
    pub state: String,
    /// Its subnets (one per AZ).
    pub subnets: Vec<String>,
    /// Its security groups.
    pub security_groups: Vec<String>,
}

/// A security group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityGroup {
    /// `sg-…`.
    pub id: String,
    /// Group name (`default` is the one endpoints without groups get).
    pub name: String,
    /// Inbound rules.
    pub ingress: Vec<SgRule>,
    /// Outbound rules.
    pub egress: Vec<SgRule>,
}

/// One security group rule (the API's IpPermission).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SgRule {
    /// `-1` (all), `tcp`/`6`, `udp`, …
    pub protocol: String,
    /// First port (absent for all traffic).
    pub from_port: Option<i32>,
    /// Last port.
    pub to_port: Option<i32>,
    /// IPv4 CIDRs.
    pub cidrs: Vec<String>,
    /// Referenced security groups.
    pub groups: Vec<String>,
    /// Referenced prefix lists.
    pub prefix_lists: Vec<String>,
}

/// A network ACL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Nacl {
    /// `acl-…`.
    pub id: String,
    /// The VPC's default ACL (used by subnets without an association).
    pub default: bool,
    /// Associated subnets.
    pub subnets: Vec<String>,
    /// Its rules.
    pub entries: Vec<NaclEntry>,
}

/// One network ACL rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NaclEntry {
    /// Rule number: lower numbers are evaluated first.
    pub number: i32,
    /// Outbound rule.
    pub egress: bool,
    /// `-1` (all) or a protocol number (`6` = TCP).
    pub protocol: String,
    /// Port range (absent = all ports).
    pub ports: Option<(i32, i32)>,
    /// IPv4 CIDR.
    pub cidr: String,
    /// Allow (true) or deny.
    pub allow: bool,
}

/// A managed prefix list's entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixList {
    /// `pl-…`.
    pub id: String,
    /// Its CIDRs.
    pub cidrs: Vec<String>,
}
