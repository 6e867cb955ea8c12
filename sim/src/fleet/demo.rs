//! The built-in fleet: the demo instance, an instance whose agent stopped, an on-premises node,
//! an ECS task, and one instance for each way `rssm doctor` finds an instance unreachable
//! (docs/doctor.md 2–4), each named after what is broken.
//!
//! Three VPCs:
//! - `demo` (10.0.0.0/16): private, reaches the service through interface endpoints for `ssm`,
//!   `ssmmessages` and `ec2messages` with private DNS. The demo instance lives here, and so do
//!   `offline`, `no-role` (no instance profile) and `no-443` (its security group lets nothing
//!   out on 443).
//! - `no-endpoint` (10.1.0.0/16): endpoints for `ssm` and `ec2messages` but none for
//!   `ssmmessages`, and no route to the internet.
//! - `no-route` (10.2.0.0/16): a NAT gateway in its public subnet, but the private subnet's route
//!   table has no default route to it, and no endpoints.

use super::iam::{Iam, InstanceProfile, Role, CORE_POLICY};
use super::network::*;
use super::{Fleet, PingStatus, Target};

/// The demo instance's subnet: the default for targets that name none.
pub const APP_SUBNET: &str = "subnet-0a1b2c3d4e5f60010";
/// The demo instance's security group: all traffic out, nothing in.
pub const APP_SG: &str = "sg-0a1b2c3d4e5f60010";
/// The demo instance's profile (role of the same name, with [`CORE_POLICY`]).
pub const PROFILE: &str = "rssm-demo-ssm";

const VPC: &str = "vpc-0a1b2c3d4e5f60001";
const ENDPOINT_SUBNET: &str = "subnet-0a1b2c3d4e5f60011";
const ENDPOINT_SG: &str = "sg-0a1b2c3d4e5f60011";
const NO_443_SG: &str = "sg-0a1b2c3d4e5f60012";

const NO_ENDPOINT_VPC: &str = "vpc-0a1b2c3d4e5f60002";
const NO_ENDPOINT_SUBNET: &str = "subnet-0a1b2c3d4e5f60020";
const NO_ENDPOINT_ENDPOINT_SUBNET: &str = "subnet-0a1b2c3d4e5f60021";
const NO_ENDPOINT_SG: &str = "sg-0a1b2c3d4e5f60020";
const NO_ENDPOINT_ENDPOINT_SG: &str = "sg-0a1b2c3d4e5f60021";
const APP_SUBNETS: &str = "pl-0a1b2c3d4e5f60020";

const NO_ROUTE_VPC: &str = "vpc-0a1b2c3d4e5f60003";
const NO_ROUTE_PUBLIC_SUBNET: &str = "subnet-0a1b2c3d4e5f60030";
const NO_ROUTE_SUBNET: &str = "subnet-0a1b2c3d4e5f60031";
const NO_ROUTE_SG: &str = "sg-0a1b2c3d4e5f60030";

impl Default for Fleet {
    /// `i-0123456789abcdef0` (Name `demo`, online), `i-0fedcba9876543210` (`offline`: its agent
    /// stopped), `mi-0123456789abcdef0` (on-premises), one ECS task container, and the broken
    /// instances `no-role` (never registered), `no-endpoint`, `no-443` and `no-route`
    /// (ConnectionLost, as an agent that can no longer reach the service shows).
    fn default() -> Fleet {
        let mut demo = Target::new("i-0123456789abcdef0");
        demo.tags.insert("Name".into(), "demo".into());
        demo.computer_name = Some("ip-10-0-0-10.ec2.internal".into());
        let mut offline = Target::new("i-0fedcba9876543210");
        offline.tags.insert("Name".into(), "offline".into());
        offline.ping_status = PingStatus::ConnectionLost;
        offline.ip_address = "10.0.0.11".into();
        let mut onprem = Target::new("mi-0123456789abcdef0");
        onprem.platform_name = "Ubuntu".into();
        onprem.platform_version = "24.04".into();
        onprem.ip_address = "192.168.1.20".into();
        onprem.computer_name = Some("build-box".into());
        onprem.tags.insert("Name".into(), "build-box".into());
        let mut ecs = Target::new("ecs:demo-cluster_0123456789abcdef0123456789abcdef_0123456789abcdef0123456789abcdef-1234567890");
        ecs.ip_address = "10.0.1.5".into();
        ecs.tags.insert("Name".into(), "web".into());
        let broken = |id: &str, name: &str, ip: &str, subnet: &str, sg: &str| {
            let mut t = Target::new(id);
            t.tags.insert("Name".into(), name.into());
            t.ping_status = PingStatus::ConnectionLost;
            t.ip_address = ip.into();
            t.subnet_id = subnet.into();
            t.security_groups = vec![sg.into()];
            t
        };
        let mut no_role = broken(
            "i-0123456789abcdef1",
            "no-role",
            "10.0.0.12",
            APP_SUBNET,
            APP_SG,
        );
        no_role.instance_profile.clear();
        // Without a role the agent cannot even register.
        no_role.registered = false;
        Fleet {
            targets: vec![
                demo,
                offline,
                onprem,
                ecs,
                no_role,
                broken(
                    "i-0123456789abcdef2",
                    "no-endpoint",
                    "10.1.0.10",
                    NO_ENDPOINT_SUBNET,
                    NO_ENDPOINT_SG,
                ),
                broken(
                    "i-0123456789abcdef3",
                    "no-443",
                    "10.0.0.13",
                    APP_SUBNET,
                    NO_443_SG,
                ),
                broken(
                    "i-0123456789abcdef4",
                    "no-route",
                    "10.2.1.10",
                    NO_ROUTE_SUBNET,
                    NO_ROUTE_SG,
                ),
            ],
            network: network(),
            iam: iam(),
        }
    }
}

/// The instance profile of every instance but `no-role`.
pub fn iam() -> Iam {
    Iam {
        instance_profiles: vec![InstanceProfile {
            name: PROFILE.into(),
            role: Some(PROFILE.into()),
        }],
        roles: vec![Role {
            name: PROFILE.into(),
            managed_policies: vec![CORE_POLICY.into()],
            inline_policies: Default::default(),
        }],
    }
}

fn subnet(id: &str, vpc_id: &str, cidr: &str) -> Subnet {
    Subnet {
        id: id.into(),
        vpc_id: vpc_id.into(),
        cidr: cidr.into(),
        zone: "a".into(),
    }
}

fn route(destination: &str, target: &str) -> Route {
    Route {
        destination: destination.into(),
        target: target.into(),
        blackhole: false,
    }
}

fn table(id: &str, vpc_id: &str, main: bool, subnets: &[&str], routes: Vec<Route>) -> RouteTable {
    RouteTable {
        id: id.into(),
        vpc_id: vpc_id.into(),
        main,
        subnets: subnets.iter().map(|s| s.to_string()).collect(),
        routes,
    }
}

fn endpoint(id: &str, vpc_id: &str, service: &str, subnet: &str, sg: &str) -> VpcEndpoint {
    VpcEndpoint {
        id: id.into(),
        vpc_id: vpc_id.into(),
        service: service.into(),
        private_dns: true,
        subnets: vec![subnet.into()],
        security_groups: vec![sg.into()],
    }
}

fn group(
    id: &str,
    vpc_id: &str,
    name: &str,
    ingress: Vec<SgRule>,
    egress: Vec<SgRule>,
) -> SecurityGroup {
    SecurityGroup {
        id: id.into(),
        vpc_id: vpc_id.into(),
        name: name.into(),
        ingress,
        egress,
    }
}

/// A VPC's `default` security group: all traffic in from its own members, all out.
fn default_group(id: &str, vpc_id: &str) -> SecurityGroup {
    let from_members = SgRule {
        protocol: "-1".into(),
        from_port: None,
        to_port: None,
        cidrs: Vec::new(),
        groups: vec![id.into()],
        prefix_lists: Vec::new(),
    };
    group(
        id,
        vpc_id,
        "default",
        vec![from_members],
        vec![SgRule::all("0.0.0.0/0")],
    )
}

fn vpc(id: &str, cidr: &str) -> Vpc {
    Vpc {
        id: id.into(),
        cidr: cidr.into(),
        dns_support: true,
        dns_hostnames: true,
    }
}

/// The three VPCs of the module doc.
pub fn network() -> Network {
    Network {
        vpcs: vec![
            vpc(VPC, "10.0.0.0/16"),
            vpc(NO_ENDPOINT_VPC, "10.1.0.0/16"),
            vpc(NO_ROUTE_VPC, "10.2.0.0/16"),
        ],
        subnets: vec![
            subnet(APP_SUBNET, VPC, "10.0.0.0/24"),
            subnet(ENDPOINT_SUBNET, VPC, "10.0.2.0/24"),
            subnet(NO_ENDPOINT_SUBNET, NO_ENDPOINT_VPC, "10.1.0.0/24"),
            subnet(NO_ENDPOINT_ENDPOINT_SUBNET, NO_ENDPOINT_VPC, "10.1.2.0/24"),
            subnet(NO_ROUTE_PUBLIC_SUBNET, NO_ROUTE_VPC, "10.2.0.0/24"),
            subnet(NO_ROUTE_SUBNET, NO_ROUTE_VPC, "10.2.1.0/24"),
        ],
        route_tables: vec![
            table(
                "rtb-0a1b2c3d4e5f60010",
                VPC,
                true,
                &[],
                vec![route("10.0.0.0/16", "local")],
            ),
            table(
                "rtb-0a1b2c3d4e5f60020",
                NO_ENDPOINT_VPC,
                true,
                &[],
                vec![route("10.1.0.0/16", "local")],
            ),
            // The public subnet uses the main table, with the internet gateway the NAT
            // gateway needs; the private subnet's own table was never given the NAT route.
            table(
                "rtb-0a1b2c3d4e5f60030",
                NO_ROUTE_VPC,
                true,
                &[],
                vec![
                    route("10.2.0.0/16", "local"),
                    route("0.0.0.0/0", "igw-0a1b2c3d4e5f60030"),
                ],
            ),
            table(
                "rtb-0a1b2c3d4e5f60031",
                NO_ROUTE_VPC,
                false,
                &[NO_ROUTE_SUBNET],
                vec![route("10.2.0.0/16", "local")],
            ),
        ],
        endpoints: vec![
            endpoint(
                "vpce-0a1b2c3d4e5f60011",
                VPC,
                "ssm",
                ENDPOINT_SUBNET,
                ENDPOINT_SG,
            ),
            endpoint(
                "vpce-0a1b2c3d4e5f60012",
                VPC,
                "ssmmessages",
                ENDPOINT_SUBNET,
                ENDPOINT_SG,
            ),
            endpoint(
                "vpce-0a1b2c3d4e5f60013",
                VPC,
                "ec2messages",
                ENDPOINT_SUBNET,
                ENDPOINT_SG,
            ),
            endpoint(
                "vpce-0a1b2c3d4e5f60021",
                NO_ENDPOINT_VPC,
                "ssm",
                NO_ENDPOINT_ENDPOINT_SUBNET,
                NO_ENDPOINT_ENDPOINT_SG,
            ),
            endpoint(
                "vpce-0a1b2c3d4e5f60023",
                NO_ENDPOINT_VPC,
                "ec2messages",
                NO_ENDPOINT_ENDPOINT_SUBNET,
                NO_ENDPOINT_ENDPOINT_SG,
            ),
        ],
        security_groups: vec![
            default_group("sg-0a1b2c3d4e5f6000a", VPC),
            group(
                APP_SG,
                VPC,
                "rssm-demo-app",
                Vec::new(),
                vec![SgRule::all("0.0.0.0/0")],
            ),
            group(
                ENDPOINT_SG,
                VPC,
                "rssm-demo-endpoints",
                vec![SgRule::tcp(443, "10.0.0.0/16")],
                vec![SgRule::all("0.0.0.0/0")],
            ),
            // Only the database port out: the agent's HTTPS has nowhere to go.
            group(
                NO_443_SG,
                VPC,
                "rssm-demo-no-443",
                Vec::new(),
                vec![SgRule::tcp(5432, "10.0.0.0/16")],
            ),
            default_group(NO_ENDPOINT_SG, NO_ENDPOINT_VPC),
            // HTTPS in from the application subnets, named by a prefix list.
            group(
                NO_ENDPOINT_ENDPOINT_SG,
                NO_ENDPOINT_VPC,
                "rssm-demo-endpoints",
                vec![SgRule {
                    protocol: "tcp".into(),
                    from_port: Some(443),
                    to_port: Some(443),
                    cidrs: Vec::new(),
                    groups: Vec::new(),
                    prefix_lists: vec![APP_SUBNETS.into()],
                }],
                vec![SgRule::all("0.0.0.0/0")],
            ),
            default_group(NO_ROUTE_SG, NO_ROUTE_VPC),
        ],
        network_acls: vec![
            NetworkAcl::allow_all("acl-0a1b2c3d4e5f60010", VPC),
            NetworkAcl::allow_all("acl-0a1b2c3d4e5f60020", NO_ENDPOINT_VPC),
            NetworkAcl::allow_all("acl-0a1b2c3d4e5f60030", NO_ROUTE_VPC),
        ],
        prefix_lists: vec![PrefixList {
            id: APP_SUBNETS.into(),
            name: "rssm-demo-app-subnets".into(),
            cidrs: vec!["10.1.0.0/24".into()],
        }],
    }
}
