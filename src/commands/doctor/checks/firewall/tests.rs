use super::*;
use crate::commands::doctor::checks::fixture::{add_nat, healthy, net, row};
use crate::commands::doctor::facts::NaclEntry;
use crate::inventory::Unavailable;

fn peer(ip: &str, groups: &[&str]) -> Peer {
    Peer {
        ip: ip.parse().unwrap(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        cidr: format!("{ip}/32"),
        label: ip.into(),
    }
}

fn tcp(from: i32, to: i32) -> SgRule {
    SgRule {
        protocol: "tcp".into(),
        from_port: Some(from),
        to_port: Some(to),
        ..Default::default()
    }
}

fn security_groups(f: &mut Facts) -> &mut Vec<SecurityGroup> {
    net(f).security_groups.as_mut().unwrap()
}

#[test]
fn sg_rules_match_by_cidr_group_and_prefix_list() {
    let p = peer("10.0.2.4", &["sg-ep"]);
    let lists = [PrefixList {
        id: "pl-1".into(),
        cidrs: vec!["10.0.2.0/24".into()],
    }];
    let by_cidr = SgRule {
        cidrs: vec!["10.0.0.0/16".into()],
        ..tcp(443, 443)
    };
    let by_group = SgRule {
        groups: vec!["sg-ep".into()],
        ..tcp(0, 65535)
    };
    let by_list = SgRule {
        prefix_lists: vec!["pl-1".into()],
        ..tcp(443, 443)
    };
    for r in [&by_cidr, &by_group, &by_list] {
        assert!(sg_rule_matches(r, 443, &p, &lists), "{r:?}");
    }
    let wrong_port = SgRule {
        cidrs: vec!["0.0.0.0/0".into()],
        ..tcp(80, 80)
    };
    let wrong_net = SgRule {
        cidrs: vec!["192.168.0.0/16".into()],
        ..tcp(443, 443)
    };
    let udp = SgRule {
        protocol: "udp".into(),
        cidrs: vec!["0.0.0.0/0".into()],
        ..tcp(443, 443)
    };
    for r in [&wrong_port, &wrong_net, &udp] {
        assert!(!sg_rule_matches(r, 443, &p, &lists), "{r:?}");
    }
    assert!(!sg_rule_matches(&by_list, 443, &p, &[]));
}

#[test]
fn nacl_rules_are_evaluated_in_order() {
    let entry = |number, allow, ports: Option<(i32, i32)>, cidr: &str| NaclEntry {
        number,
        egress: true,
        protocol: "6".into(),
        ports,
        cidr: cidr.into(),
        allow,
    };
    let acl = Nacl {
        id: "acl-1".into(),
        default: true,
        subnets: vec![],
        entries: vec![
            entry(200, true, None, "0.0.0.0/0"),
            entry(100, false, Some((443, 443)), "10.0.2.0/24"),
        ],
    };
    let ip = "10.0.2.4".parse().unwrap();
    assert_eq!(nacl_decision(&acl, true, 443, ip), (false, Some(100)));
    assert_eq!(nacl_decision(&acl, true, 80, ip), (true, Some(200)));
    assert_eq!(nacl_decision(&acl, false, 443, ip), (false, None));
}

#[test]
fn healthy_setup_passes() {
    let r = checks(&healthy());
    for name in ["instance SG egress", "endpoint SG ingress", "network ACLs"] {
        assert_eq!(row(&r, name).verdict, Verdict::Ok, "{r:#?}");
    }
    assert_eq!(
        row(&r, "instance SG egress").evidence,
        "sg-app allows all traffic to 0.0.0.0/0"
    );
}

#[test]
fn instance_sg_without_outbound_443() {
    let mut f = healthy();
    security_groups(&mut f)[0].egress = vec![SgRule {
        cidrs: vec!["0.0.0.0/0".into()],
        ..tcp(80, 80)
    }];
    let c = row(&checks(&f), "instance SG egress").clone();
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(
        c.evidence
            .contains("allow no TCP 443 to vpce-1 (10.0.2.0/24)"),
        "{c:?}"
    );
    assert_eq!(
        c.fix,
        "aws ec2 authorize-security-group-egress --group-id sg-app --protocol tcp --port 443 --cidr 10.0.2.0/24"
    );
    // Through a NAT the destination is the internet.
    net(&mut f).endpoints = Ok(vec![]);
    add_nat(&mut f);
    let c = row(&checks(&f), "instance SG egress").clone();
    assert!(c.fix.ends_with("--cidr 0.0.0.0/0"), "{c:?}");
}

#[test]
fn egress_to_the_endpoint_group_counts() {
    let mut f = healthy();
    security_groups(&mut f)[0].egress = vec![SgRule {
        groups: vec!["sg-ep".into()],
        ..tcp(443, 443)
    }];
    assert_eq!(row(&checks(&f), "instance SG egress").verdict, Verdict::Ok);
}

#[test]
fn endpoint_sg_without_inbound_443() {
    let mut f = healthy();
    security_groups(&mut f)[1].ingress = vec![];
    let c = row(&checks(&f), "endpoint SG ingress").clone();
    assert_eq!(c.verdict, Verdict::Fail);
    assert_eq!(
        c.fix,
        "aws ec2 authorize-security-group-ingress --group-id sg-ep --protocol tcp --port 443 --source-group sg-app"
    );
    // Allowing the instance's group is enough.
    security_groups(&mut f)[1].ingress = vec![SgRule {
        groups: vec!["sg-app".into()],
        ..tcp(443, 443)
    }];
    assert_eq!(row(&checks(&f), "endpoint SG ingress").verdict, Verdict::Ok);
}

#[test]
fn endpoints_without_groups_use_the_default_group() {
    let mut f = healthy();
    if let Ok(e) = &mut net(&mut f).endpoints {
        for ep in e.iter_mut() {
            ep.security_groups.clear();
        }
    }
    security_groups(&mut f)[1].name = "default".into();
    assert_eq!(row(&checks(&f), "endpoint SG ingress").verdict, Verdict::Ok);
}

#[test]
fn nacl_denying_443() {
    let mut f = healthy();
    if let Ok(n) = &mut net(&mut f).nacls {
        n[0].entries.push(NaclEntry {
            number: 50,
            egress: true,
            protocol: "6".into(),
            ports: Some((443, 443)),
            cidr: "0.0.0.0/0".into(),
            allow: false,
        });
    }
    let c = row(&checks(&f), "network ACLs").clone();
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(
        c.evidence
            .contains("acl-1 (subnet-app) denies outbound TCP 443 to vpce-1"),
        "{c:?}"
    );
    assert!(c.evidence.contains("rule 50"));
    assert!(c.fix.contains("--egress --rule-number 49"), "{c:?}");
}

#[test]
fn nacl_without_ephemeral_return_ports() {
    let mut f = healthy();
    if let Ok(n) = &mut net(&mut f).nacls {
        n[0].entries.retain(|e| e.egress);
        n[0].entries.push(NaclEntry {
            number: 100,
            egress: false,
            protocol: "6".into(),
            ports: Some((443, 443)),
            cidr: "0.0.0.0/0".into(),
            allow: true,
        });
    }
    let c = row(&checks(&f), "network ACLs").clone();
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(c.evidence.contains("denies inbound TCP 32768"), "{c:?}");
    assert!(c.fix.contains("From=1024,To=65535"));
}

#[test]
fn missing_permissions_are_unknown() {
    let mut f = healthy();
    net(&mut f).security_groups = Err(Unavailable::Denied("ec2:DescribeSecurityGroups".into()));
    net(&mut f).nacls = Err(Unavailable::Denied("ec2:DescribeNetworkAcls".into()));
    let r = checks(&f);
    assert_eq!(
        row(&r, "instance SG egress").evidence,
        "unknown (needs ec2:DescribeSecurityGroups)"
    );
    assert_eq!(
        row(&r, "network ACLs").evidence,
        "unknown (needs ec2:DescribeNetworkAcls)"
    );
}
