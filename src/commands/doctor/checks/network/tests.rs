use super::*;
use crate::commands::doctor::checks::fixture::{add_nat, healthy, net, row};
use crate::commands::doctor::checks::{all, any_failed};
use crate::commands::doctor::facts::Route;
use crate::inventory::ManagedNode;

fn rows(f: &Facts) -> Vec<Check> {
    checks(f)
}

#[test]
fn healthy_endpoints_pass_everything() {
    let f = healthy();
    let all_rows = all(&f);
    assert!(!any_failed(&all_rows), "{all_rows:#?}");
    let r = rows(&f);
    assert_eq!(row(&r, "route").verdict, Verdict::Ok);
    assert!(row(&r, "route")
        .evidence
        .contains("not needed: VPC endpoints"));
    assert_eq!(row(&r, "endpoint ssmmessages").verdict, Verdict::Ok);
    assert_eq!(row(&r, "VPC DNS").verdict, Verdict::Ok);
    // A current agent does not need ec2messages.
    assert!(row(&r, "endpoint ec2messages")
        .evidence
        .contains("not needed"));
}

#[test]
fn no_endpoints_and_no_nat_fails_with_the_create_command() {
    let mut f = healthy();
    net(&mut f).endpoints = Ok(vec![]);
    let r = rows(&f);
    assert_eq!(row(&r, "route").verdict, Verdict::Fail);
    let ssm = row(&r, "endpoint ssm");
    assert_eq!(ssm.verdict, Verdict::Fail);
    assert!(ssm.fix.starts_with(
        "add an interface endpoint com.amazonaws.eu-west-1.ssm to vpc-1 with private DNS enabled"
    ), "{ssm:?}");
    assert!(ssm.fix.contains("--subnet-ids subnet-app"));
    assert_eq!(row(&r, "endpoint ssmmessages").verdict, Verdict::Fail);
}

#[test]
fn only_the_ssm_endpoint_fails_ssmmessages() {
    let mut f = healthy();
    if let Ok(e) = &mut net(&mut f).endpoints {
        e.retain(|e| e.service_name.ends_with(".ssm"));
    }
    let r = rows(&f);
    assert_eq!(row(&r, "endpoint ssm").verdict, Verdict::Ok);
    let m = row(&r, "endpoint ssmmessages");
    assert_eq!(m.verdict, Verdict::Fail);
    assert!(m.fix.contains("com.amazonaws.eu-west-1.ssmmessages"));
    assert_eq!(row(&r, "route").verdict, Verdict::Fail);
}

#[test]
fn a_nat_route_needs_no_endpoints() {
    let mut f = healthy();
    net(&mut f).endpoints = Ok(vec![]);
    add_nat(&mut f);
    let r = rows(&f);
    assert_eq!(row(&r, "route").verdict, Verdict::Ok);
    assert_eq!(
        row(&r, "route").evidence,
        "rtb-main (main) routes 0.0.0.0/0 to nat-1"
    );
    assert_eq!(
        row(&r, "endpoint ssm").evidence,
        "no endpoint; reached through nat-1"
    );
    assert!(!any_failed(&all(&f)), "{:#?}", all(&f));
}

#[test]
fn explicit_association_beats_the_main_table() {
    let mut f = healthy();
    net(&mut f).endpoints = Ok(vec![]);
    add_nat(&mut f);
    if let Ok(t) = &mut net(&mut f).route_tables {
        t.push(RouteTable {
            id: "rtb-private".into(),
            main: false,
            subnets: vec!["subnet-app".into()],
            routes: vec![],
        });
    }
    let r = rows(&f);
    let route = row(&r, "route");
    assert_eq!(route.verdict, Verdict::Fail);
    assert!(
        route
            .evidence
            .contains("rtb-private (associated) has no route 0.0.0.0/0"),
        "{route:?}"
    );
    assert!(route.fix.contains("--route-table-id rtb-private"));
}

#[test]
fn an_internet_gateway_needs_a_public_ip() {
    let mut f = healthy();
    net(&mut f).endpoints = Ok(vec![]);
    if let Ok(t) = &mut net(&mut f).route_tables {
        t[0].routes.push(Route {
            destination: "0.0.0.0/0".into(),
            target: "igw-1".into(),
            active: true,
        });
    }
    assert_eq!(row(&rows(&f), "route").verdict, Verdict::Fail);
    if let Ok(Some(i)) = &mut f.instance {
        i.public_ip = Some("3.3.3.3".into());
    }
    assert_eq!(row(&rows(&f), "route").verdict, Verdict::Ok);
}

#[test]
fn a_blackhole_route_does_not_count() {
    let mut f = healthy();
    net(&mut f).endpoints = Ok(vec![]);
    add_nat(&mut f);
    if let Ok(t) = &mut net(&mut f).route_tables {
        t[0].routes[1].active = false;
    }
    let route = row(&rows(&f), "route").clone();
    assert_eq!(route.verdict, Verdict::Fail);
    assert!(route.evidence.contains("blackhole"));
}

#[test]
fn endpoint_without_private_dns() {
    let mut f = healthy();
    if let Ok(e) = &mut net(&mut f).endpoints {
        e[1].private_dns = false;
    }
    let r = rows(&f);
    let m = row(&r, "endpoint ssmmessages");
    assert_eq!(m.verdict, Verdict::Fail);
    assert_eq!(m.evidence, "vpce-2 has private DNS disabled");
    assert_eq!(
        m.fix,
        "enable private DNS on vpce-2: aws ec2 modify-vpc-endpoint --vpc-endpoint-id vpce-2 --private-dns-enabled"
    );
    // With a NAT the endpoint is merely unused.
    add_nat(&mut f);
    let r = rows(&f);
    assert_eq!(row(&r, "endpoint ssmmessages").verdict, Verdict::Warn);
}

#[test]
fn vpc_dns_hostnames_off() {
    let mut f = healthy();
    net(&mut f).dns_hostnames = Ok(false);
    let r = rows(&f);
    let dns = row(&r, "VPC DNS");
    assert_eq!(dns.verdict, Verdict::Fail);
    assert_eq!(
        dns.fix,
        "aws ec2 modify-vpc-attribute --vpc-id vpc-1 --enable-dns-hostnames '{\"Value\":true}'"
    );
    assert_eq!(row(&r, "endpoint ssm").verdict, Verdict::Fail);
    net(&mut f).dns_support = Ok(false);
    assert!(row(&rows(&f), "VPC DNS")
        .fix
        .contains("--enable-dns-support"));
    // Without endpoints, hostnames do not matter.
    net(&mut f).endpoints = Ok(vec![]);
    net(&mut f).dns_support = Ok(true);
    add_nat(&mut f);
    assert_eq!(row(&rows(&f), "VPC DNS").verdict, Verdict::Ok);
}

#[test]
fn old_agents_need_ec2messages() {
    let mut f = healthy();
    if let Ok(e) = &mut net(&mut f).endpoints {
        e.retain(|e| !e.service_name.ends_with("ec2messages"));
    }
    assert_eq!(row(&rows(&f), "endpoint ec2messages").verdict, Verdict::Ok);
    f.node = Ok(Some(ManagedNode {
        id: "i-1".into(),
        ping_status: "ConnectionLost".into(),
        agent_version: Some("3.2.582.0".into()),
        ..Default::default()
    }));
    let r = rows(&f);
    let e = row(&r, "endpoint ec2messages");
    assert_eq!(e.verdict, Verdict::Fail);
    assert!(e.fix.contains("com.amazonaws.eu-west-1.ec2messages"));
    // Unknown version (not registered): a warning, since it may be needed.
    f.node = Ok(None);
    assert_eq!(
        row(&rows(&f), "endpoint ec2messages").verdict,
        Verdict::Warn
    );
}

#[test]
fn endpoint_in_another_az_is_a_warning() {
    let mut f = healthy();
    if let Ok(s) = &mut net(&mut f).subnets {
        s[1].az = "eu-west-1b".into();
    }
    let e = row(&rows(&f), "endpoint ssm").clone();
    assert_eq!(e.verdict, Verdict::Warn);
    assert!(e.fix.contains("--add-subnet-ids subnet-app"));
}

#[test]
fn missing_permissions_are_unknown_not_errors() {
    let mut f = healthy();
    net(&mut f).endpoints = Err(Unavailable::Denied("ec2:DescribeVpcEndpoints".into()));
    net(&mut f).route_tables = Err(Unavailable::Denied("ec2:DescribeRouteTables".into()));
    let r = rows(&f);
    assert_eq!(
        row(&r, "endpoint ssm").evidence,
        "unknown (needs ec2:DescribeVpcEndpoints)"
    );
    assert_eq!(
        row(&r, "route").evidence,
        "unknown (needs ec2:DescribeRouteTables)"
    );
    net(&mut f).route_tables = healthy().network.unwrap().route_tables;
    let route = row(&rows(&f), "route").clone();
    assert_eq!(route.verdict, Verdict::Unknown);
    assert!(
        route
            .evidence
            .ends_with("VPC endpoints: needs ec2:DescribeVpcEndpoints)"),
        "{route:?}"
    );
    f.instance = Err(Unavailable::Denied("ec2:DescribeInstances".into()));
    let r = rows(&f);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].verdict, Verdict::Unknown);
}
