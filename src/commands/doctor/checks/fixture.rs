//! Hand-made facts for the verdict tests: a healthy private instance reached through VPC
//! endpoints, which each test then breaks in one way.

use crate::commands::doctor::facts::*;
use crate::inventory::{Ec2Instance, ManagedNode};

/// `sg-app` allows everything out; `sg-ep` allows 443 in from the VPC.
pub fn healthy() -> Facts {
    let endpoint = |svc: &str, n: u8| Endpoint {
        id: format!("vpce-{n}"),
        service_name: format!("com.amazonaws.eu-west-1.{svc}"),
        private_dns: true,
        state: "available".into(),
        subnets: vec!["subnet-ep".into()],
        security_groups: vec!["sg-ep".into()],
    };
    let all_out = SgRule {
        protocol: "-1".into(),
        cidrs: vec!["0.0.0.0/0".into()],
        ..Default::default()
    };
    let https_in = SgRule {
        protocol: "tcp".into(),
        from_port: Some(443),
        to_port: Some(443),
        cidrs: vec!["10.0.0.0/16".into()],
        ..Default::default()
    };
    let allow_all = |egress| NaclEntry {
        number: 100,
        egress,
        protocol: "-1".into(),
        ports: None,
        cidr: "0.0.0.0/0".into(),
        allow: true,
    };
    let deny_rest = |egress| NaclEntry {
        number: 32767,
        egress,
        protocol: "-1".into(),
        ports: None,
        cidr: "0.0.0.0/0".into(),
        allow: false,
    };
    Facts {
        region: "eu-west-1".into(),
        target: "i-1".into(),
        caller: Ok(Caller {
            arn: "arn:aws:iam::123456789012:user/alice".into(),
            account: "123456789012".into(),
        }),
        node: Ok(Some(ManagedNode {
            id: "i-1".into(),
            ping_status: "Online".into(),
            agent_version: Some("3.3.1802.0".into()),
            ..Default::default()
        })),
        instance: Ok(Some(Ec2Instance {
            id: "i-1".into(),
            state: "running".into(),
            private_ip: Some("10.0.1.10".into()),
            vpc_id: Some("vpc-1".into()),
            subnet_id: Some("subnet-app".into()),
            az: Some("eu-west-1a".into()),
            security_groups: vec!["sg-app".into()],
            ..Default::default()
        })),
        role: Ok(Some(RoleFacts {
            profile: "app".into(),
            role: Some("app".into()),
            attached: Ok(vec!["AmazonSSMManagedInstanceCore".into()]),
            documents: Ok(vec![]),
        })),
        network: Some(NetworkFacts {
            vpc_id: "vpc-1".into(),
            dns_support: Ok(true),
            dns_hostnames: Ok(true),
            subnets: Ok(vec![
                Subnet {
                    id: "subnet-app".into(),
                    cidr: "10.0.1.0/24".into(),
                    az: "eu-west-1a".into(),
                },
                Subnet {
                    id: "subnet-ep".into(),
                    cidr: "10.0.2.0/24".into(),
                    az: "eu-west-1a".into(),
                },
            ]),
            route_tables: Ok(vec![RouteTable {
                id: "rtb-main".into(),
                main: true,
                subnets: vec![],
                routes: vec![Route {
                    destination: "10.0.0.0/16".into(),
                    target: "local".into(),
                    active: true,
                }],
            }]),
            endpoints: Ok(vec![
                endpoint("ssm", 1),
                endpoint("ssmmessages", 2),
                endpoint("ec2messages", 3),
            ]),
            security_groups: Ok(vec![
                SecurityGroup {
                    id: "sg-app".into(),
                    name: "app".into(),
                    ingress: vec![],
                    egress: vec![all_out],
                },
                SecurityGroup {
                    id: "sg-ep".into(),
                    name: "endpoints".into(),
                    ingress: vec![https_in],
                    egress: vec![],
                },
            ]),
            nacls: Ok(vec![Nacl {
                id: "acl-1".into(),
                default: true,
                subnets: vec![],
                entries: vec![
                    allow_all(true),
                    deny_rest(true),
                    allow_all(false),
                    deny_rest(false),
                ],
            }]),
            prefix_lists: Ok(vec![]),
        }),
        caller_permissions: Ok(vec![Decision {
            action: "ssm:StartSession".into(),
            decision: "allowed".into(),
        }]),
        reach: vec![Reach {
            endpoint: "https://ssm.eu-west-1.amazonaws.com".into(),
            result: Ok(5),
            route: "direct (no proxy configured)".into(),
            proxied: false,
        }],
    }
}

/// The network facts, to break.
pub fn net(f: &mut Facts) -> &mut NetworkFacts {
    f.network.as_mut().expect("fixture has a network")
}

/// A NAT route in the main table.
pub fn add_nat(f: &mut Facts) {
    if let Ok(tables) = &mut net(f).route_tables {
        tables[0].routes.push(Route {
            destination: "0.0.0.0/0".into(),
            target: "nat-1".into(),
            active: true,
        });
    }
}

/// The verdict of the named row.
pub fn row<'r>(
    rows: &'r [crate::commands::doctor::checks::Check],
    name: &str,
) -> &'r crate::commands::doctor::checks::Check {
    rows.iter()
        .find(|r| r.check == name)
        .unwrap_or_else(|| panic!("no row {name} in {rows:#?}"))
}
