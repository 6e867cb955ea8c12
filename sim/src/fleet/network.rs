//! The VPCs around the fleet's EC2 instances: subnets, route tables, interface endpoints,
//! security groups and network ACLs, as EC2's `Describe*` calls report them. These are the facts
//! `rssm doctor` judges (docs/doctor.md 3–6); the simulator serves them, it does not route packets
//! by them: an instance's agent is online or not as its [`super::Target::ping_status`] says.

use serde::{Deserialize, Serialize};

/// Every network resource of the simulated account, in one region.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// The VPCs.
    #[serde(default, rename = "vpc")]
    pub vpcs: Vec<Vpc>,
    /// Their subnets.
    #[serde(default, rename = "subnet")]
    pub subnets: Vec<Subnet>,
    /// Their route tables.
    #[serde(default, rename = "route_table")]
    pub route_tables: Vec<RouteTable>,
    /// Interface endpoints.
    #[serde(default, rename = "endpoint")]
    pub endpoints: Vec<VpcEndpoint>,
    /// Security groups.
    #[serde(default, rename = "security_group")]
    pub security_groups: Vec<SecurityGroup>,
    /// Network ACLs.
    #[serde(default, rename = "network_acl")]
    pub network_acls: Vec<NetworkAcl>,
    /// Customer-managed prefix lists, which security group rules may name.
    #[serde(default, rename = "prefix_list")]
    pub prefix_lists: Vec<PrefixList>,
}

/// A managed prefix list: a named set of CIDRs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixList {
    /// `pl-…`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its entries.
    pub cidrs: Vec<String>,
}

/// A VPC and the two DNS attributes endpoint private DNS needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vpc {
    /// `vpc-…`.
    pub id: String,
    /// IPv4 CIDR.
    pub cidr: String,
    /// `enableDnsSupport` (on by default in AWS).
    #[serde(default = "yes")]
    pub dns_support: bool,
    /// `enableDnsHostnames` (off by default in a new non-default VPC).
    #[serde(default = "yes")]
    pub dns_hostnames: bool,
}

fn yes() -> bool {
    true
}

/// A subnet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subnet {
    /// `subnet-…`.
    pub id: String,
    /// Its VPC.
    pub vpc_id: String,
    /// IPv4 CIDR.
    pub cidr: String,
    /// The Availability Zone's letter: the zone is the simulator's region plus this.
    #[serde(default = "zone_a")]
    pub zone: String,
}

fn zone_a() -> String {
    "a".to_owned()
}

/// A route table: the VPC's main one, or one associated with subnets explicitly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTable {
    /// `rtb-…`.
    pub id: String,
    /// Its VPC.
    pub vpc_id: String,
    /// The main table serves every subnet without an association.
    #[serde(default)]
    pub main: bool,
    /// Subnets explicitly associated.
    #[serde(default)]
    pub subnets: Vec<String>,
    /// Its routes (the `local` route of the VPC's CIDR included).
    #[serde(default, rename = "route")]
    pub routes: Vec<Route>,
}

/// One route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Destination CIDR.
    pub destination: String,
    /// `local`, `igw-…`, `nat-…`, `tgw-…`, `eni-…`, `pcx-…`.
    pub target: String,
    /// The target was deleted: EC2 shows the route as `blackhole`.
    #[serde(default)]
    pub blackhole: bool,
}

/// An interface VPC endpoint for one AWS service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VpcEndpoint {
    /// `vpce-…`.
    pub id: String,
    /// Its VPC.
    pub vpc_id: String,
    /// The service's short name (`ssm`, `ssmmessages`, `ec2messages`); the service name is
    /// `com.amazonaws.<region>.<service>`.
    pub service: String,
    /// Private DNS: the service's public name resolves to the endpoint inside the VPC.
    #[serde(default = "yes")]
    pub private_dns: bool,
    /// Its subnets (one network interface in each).
    #[serde(default)]
    pub subnets: Vec<String>,
    /// Its security groups (none: the VPC's `default` group).
    #[serde(default)]
    pub security_groups: Vec<String>,
}

/// A security group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroup {
    /// `sg-…`.
    pub id: String,
    /// Its VPC.
    pub vpc_id: String,
    /// Group name (each VPC has one named `default`).
    pub name: String,
    /// Inbound rules.
    #[serde(default)]
    pub ingress: Vec<SgRule>,
    /// Outbound rules.
    #[serde(default)]
    pub egress: Vec<SgRule>,
}

/// One security group rule (EC2's `IpPermission`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SgRule {
    /// `-1` (all traffic), `tcp`, `udp`, `icmp`.
    pub protocol: String,
    /// First port (none for all traffic).
    #[serde(default)]
    pub from_port: Option<i32>,
    /// Last port.
    #[serde(default)]
    pub to_port: Option<i32>,
    /// IPv4 CIDRs.
    #[serde(default)]
    pub cidrs: Vec<String>,
    /// Referenced security groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Referenced prefix lists.
    #[serde(default)]
    pub prefix_lists: Vec<String>,
}

impl SgRule {
    /// All traffic to or from `cidr`.
    pub fn all(cidr: &str) -> SgRule {
        SgRule {
            protocol: "-1".into(),
            from_port: None,
            to_port: None,
            cidrs: vec![cidr.into()],
            groups: Vec::new(),
            prefix_lists: Vec::new(),
        }
    }

    /// TCP `port` to or from `cidr`.
    pub fn tcp(port: i32, cidr: &str) -> SgRule {
        SgRule {
            protocol: "tcp".into(),
            from_port: Some(port),
            to_port: Some(port),
            cidrs: vec![cidr.into()],
            groups: Vec::new(),
            prefix_lists: Vec::new(),
        }
    }
}

/// A network ACL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkAcl {
    /// `acl-…`.
    pub id: String,
    /// Its VPC.
    pub vpc_id: String,
    /// The VPC's default ACL serves every subnet without an association.
    #[serde(default)]
    pub default: bool,
    /// Associated subnets.
    #[serde(default)]
    pub subnets: Vec<String>,
    /// Its rules, the final `*` deny (number 32767) included.
    #[serde(default, rename = "entry")]
    pub entries: Vec<AclEntry>,
}

impl NetworkAcl {
    /// What a new VPC's default ACL holds: allow everything both ways, then the `*` denies.
    pub fn allow_all(id: &str, vpc_id: &str) -> NetworkAcl {
        let entry = |number, egress, allow| AclEntry {
            number,
            egress,
            protocol: "-1".into(),
            ports: None,
            cidr: "0.0.0.0/0".into(),
            allow,
        };
        NetworkAcl {
            id: id.into(),
            vpc_id: vpc_id.into(),
            default: true,
            subnets: Vec::new(),
            entries: vec![
                entry(100, false, true),
                entry(32767, false, false),
                entry(100, true, true),
                entry(32767, true, false),
            ],
        }
    }
}

/// One network ACL rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclEntry {
    /// Rule number; 32767 is the `*` rule.
    pub number: i32,
    /// Outbound.
    #[serde(default)]
    pub egress: bool,
    /// `-1` (all) or a protocol number (`6` = TCP).
    pub protocol: String,
    /// Port range (none = all ports).
    #[serde(default)]
    pub ports: Option<(i32, i32)>,
    /// IPv4 CIDR.
    pub cidr: String,
    /// Allow (true) or deny.
    pub allow: bool,
}

impl Network {
    /// The subnet with this id.
    pub fn subnet(&self, id: &str) -> Option<&Subnet> {
        self.subnets.iter().find(|s| s.id == id)
    }

    /// The VPC with this id.
    pub fn vpc(&self, id: &str) -> Option<&Vpc> {
        self.vpcs.iter().find(|v| v.id == id)
    }

    /// The prefix list with this id.
    pub fn prefix_list(&self, id: &str) -> Option<&PrefixList> {
        self.prefix_lists.iter().find(|l| l.id == id)
    }

    /// The security group with this id.
    pub fn security_group(&self, id: &str) -> Option<&SecurityGroup> {
        self.security_groups.iter().find(|g| g.id == id)
    }
}
