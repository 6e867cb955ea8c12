use super::instances::{matches, reservations};
use super::*;
use crate::fleet::{Fleet, Target};
use crate::SimConfig;
use std::collections::BTreeMap;

fn state() -> SimState {
    SimState::new(SimConfig::default(), ([127, 0, 0, 1], 0).into())
}

fn params(pairs: &[(&str, &str)]) -> Params {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn filters_and_globs() {
    let network = Fleet::default().network;
    let mut t = Target::new("i-1");
    t.tags.insert("Name".into(), "web-1".into());
    let m = |name: &str, value: &str| matches(&t, &network, "eu-west-1", name, &[value.into()]);
    assert!(m("tag:Name", "web-*"));
    assert!(!m("tag:Role", "db"));
    assert!(m("private-ip-address", "10.0.0.10"));
    assert!(m(
        "private-dns-name",
        "ip-10-0-0-10.eu-west-1.compute.internal"
    ));
    assert!(m("vpc-id", "vpc-0a1b2c3d4e5f60001"));
    let params: BTreeMap<String, String> = params(&[
        ("Filter.1.Name", "tag:Name"),
        ("Filter.1.Value.1", "a"),
        ("Filter.1.Value.2", "b"),
    ]);
    assert_eq!(
        filters(&params),
        vec![("tag:Name".into(), vec!["a".into(), "b".into()])]
    );
    let xml = reservations(&[&t], &network, "eu-west-1", "123456789012");
    assert!(xml.contains("<key>Name</key><value>web-1</value>"), "{xml}");
    assert!(xml.contains("<name>running</name>"));
    assert!(
        xml.contains("<subnetId>subnet-0a1b2c3d4e5f60010</subnetId>"),
        "{xml}"
    );
    assert!(
        xml.contains("<availabilityZone>eu-west-1a</availabilityZone>"),
        "{xml}"
    );
    assert!(
        xml.contains("<arn>arn:aws:iam::123456789012:instance-profile/rssm-demo-ssm</arn>"),
        "{xml}"
    );
}

#[test]
fn describes_select_by_vpc_and_reject_unknown_ids_and_filters() {
    let s = state();
    let vpc = [
        ("Filter.1.Name", "vpc-id"),
        ("Filter.1.Value.1", "vpc-0a1b2c3d4e5f60002"),
    ];
    let subnets = vpc::describe_subnets(&s, &params(&vpc)).unwrap();
    assert_eq!(subnets.matches("<subnetId>").count(), 2, "{subnets}");
    let endpoints = vpc::describe_vpc_endpoints(&s, &params(&vpc)).unwrap();
    assert!(
        endpoints.contains("com.amazonaws.us-east-1.ssm<"),
        "{endpoints}"
    );
    assert!(!endpoints.contains("ssmmessages"), "{endpoints}");
    let missing = vpc::describe_subnets(&s, &params(&[("SubnetId.1", "subnet-nope")]));
    assert_eq!(missing.unwrap_err().code, "InvalidSubnetID.NotFound");
    let bad = vpc::describe_route_tables(&s, &params(&[("Filter.1.Name", "colour")]));
    assert_eq!(bad.unwrap_err().code, "InvalidParameterValue");
    let gone = instances::describe(&s, &params(&[("InstanceId.1", "i-0000000000000000f")]));
    assert_eq!(gone.unwrap_err().code, "InvalidInstanceID.NotFound");
}

#[test]
fn route_tables_show_main_and_explicit_associations() {
    let s = state();
    let vpc = [
        ("Filter.1.Name", "vpc-id"),
        ("Filter.1.Value.1", "vpc-0a1b2c3d4e5f60003"),
    ];
    let xml = vpc::describe_route_tables(&s, &params(&vpc)).unwrap();
    assert!(xml.contains("<main>true</main>"), "{xml}");
    assert!(
        xml.contains("<main>false</main><subnetId>subnet-0a1b2c3d4e5f60031</subnetId>"),
        "{xml}"
    );
    assert!(
        xml.contains("<gatewayId>igw-0a1b2c3d4e5f60030</gatewayId>"),
        "{xml}"
    );
    let attr = vpc::describe_vpc_attribute(
        &s,
        &params(&[
            ("VpcId", "vpc-0a1b2c3d4e5f60001"),
            ("Attribute", "enableDnsHostnames"),
        ]),
    )
    .unwrap();
    assert!(
        attr.contains("<enableDnsHostnames><value>true</value></enableDnsHostnames>"),
        "{attr}"
    );
}

#[test]
fn default_acls_list_their_vpcs_subnets() {
    let s = state();
    let vpc = [
        ("Filter.1.Name", "vpc-id"),
        ("Filter.1.Value.1", "vpc-0a1b2c3d4e5f60001"),
    ];
    let xml = vpc::describe_network_acls(&s, &params(&vpc)).unwrap();
    assert_eq!(xml.matches("<subnetId>").count(), 2, "{xml}");
    assert!(
        xml.contains(
            "<ruleNumber>32767</ruleNumber><protocol>-1</protocol><ruleAction>deny</ruleAction>"
        ),
        "{xml}"
    );
}
