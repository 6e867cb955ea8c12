//! The VPC describe calls of the EC2 API reference that `rssm doctor` makes, from
//! [`crate::fleet::Network`]: `DescribeVpcAttribute`, `DescribeSubnets`, `DescribeRouteTables`,
//! `DescribeVpcEndpoints`, `DescribeSecurityGroups`, `DescribeNetworkAcls`, and
//! `GetManagedPrefixListEntries` for the prefix lists security group rules name. Each takes its ids
//! (`SubnetId.N`, …) and `Filter.N` like EC2: an unknown id or filter name is an error, a filter
//! value may hold `*` and `?`.

use super::super::query::{el, Params};
use super::{filters, glob, group_set, items, list, Ec2Error};
use crate::fleet::network::{
    AclEntry, NetworkAcl, Route, RouteTable, SecurityGroup, SgRule, Subnet, VpcEndpoint,
};
use crate::state::SimState;

/// How to select one kind of resource: its id parameter, its not-found error, its filters.
struct Kind<T> {
    /// `SubnetId` for `SubnetId.1`, …
    id_param: &'static str,
    /// e.g. `InvalidSubnetID.NotFound`.
    not_found: &'static str,
    /// e.g. `subnet ID`, for the message.
    noun: &'static str,
    id: fn(&T) -> &str,
    /// The values a filter name sees on a resource in a region; `None` for a name EC2 does
    /// not know here.
    field: fn(&T, &str, &str) -> Option<Vec<String>>,
}

fn select<'a, T>(
    kind: &Kind<T>,
    all: &'a [T],
    params: &Params,
    region: &str,
) -> Result<Vec<&'a T>, Ec2Error> {
    let ids = list(params, kind.id_param);
    if let Some(missing) = ids
        .iter()
        .find(|id| !all.iter().any(|r| (kind.id)(r) == *id))
    {
        return Err(Ec2Error::new(
            kind.not_found,
            format!("The {} '{missing}' does not exist", kind.noun),
        ));
    }
    let filters = filters(params);
    let mut out = Vec::new();
    for r in all {
        if !ids.is_empty() && !ids.iter().any(|id| id == (kind.id)(r)) {
            continue;
        }
        let mut keep = true;
        for (name, values) in &filters {
            let actual = if name.starts_with("tag:") {
                // The simulated network resources carry no tags.
                Some(Vec::new())
            } else {
                (kind.field)(r, name, region)
            };
            let Some(actual) = actual else {
                return Err(Ec2Error::new(
                    "InvalidParameterValue",
                    format!("The filter '{name}' is invalid"),
                ));
            };
            keep &= actual.iter().any(|a| values.iter().any(|v| glob(v, a)));
        }
        if keep {
            out.push(r);
        }
    }
    Ok(out)
}

fn one(s: &str) -> Option<Vec<String>> {
    Some(vec![s.to_owned()])
}

/// `DescribeVpcAttribute` for `enableDnsSupport` or `enableDnsHostnames`.
pub(super) fn describe_vpc_attribute(
    state: &SimState,
    params: &Params,
) -> Result<String, Ec2Error> {
    let id = params.get("VpcId").map(String::as_str).unwrap_or("");
    let vpc = state.config.fleet.network.vpc(id).ok_or_else(|| {
        Ec2Error::new(
            "InvalidVpcID.NotFound",
            format!("The vpc ID '{id}' does not exist"),
        )
    })?;
    let attribute = params.get("Attribute").map(String::as_str).unwrap_or("");
    let value = match attribute {
        "enableDnsSupport" => vpc.dns_support,
        "enableDnsHostnames" => vpc.dns_hostnames,
        _ => {
            return Err(Ec2Error::new(
                "InvalidParameterValue",
                format!(
                    "Value ({attribute}) for parameter attribute is invalid. Unknown attribute."
                ),
            ))
        }
    };
    Ok(format!(
        "{}<{attribute}><value>{value}</value></{attribute}>",
        el("vpcId", &vpc.id)
    ))
}

const SUBNET: Kind<Subnet> = Kind {
    id_param: "SubnetId",
    not_found: "InvalidSubnetID.NotFound",
    noun: "subnet ID",
    id: |s| &s.id,
    field: |s, name, _region| match name {
        "subnet-id" => one(&s.id),
        "vpc-id" => one(&s.vpc_id),
        "cidr-block" | "cidr" => one(&s.cidr),
        "state" => one("available"),
        _ => None,
    },
};

/// `DescribeSubnets`.
pub(super) fn describe_subnets(state: &SimState, params: &Params) -> Result<String, Ec2Error> {
    let region = &state.config.region;
    let account = &state.config.account_id;
    let subnets = select(&SUBNET, &state.config.fleet.network.subnets, params, region)?;
    Ok(items("subnetSet", subnets, |s| {
        format!(
            "{}<state>available</state>{}{}{}<availabilityZone>{region}{}</availabilityZone>\
             <availableIpAddressCount>250</availableIpAddressCount><defaultForAz>false</defaultForAz>\
             <mapPublicIpOnLaunch>false</mapPublicIpOnLaunch>{}",
            el("subnetId", &s.id),
            el("vpcId", &s.vpc_id),
            el("cidrBlock", &s.cidr),
            el("ownerId", account),
            super::super::query::esc(&s.zone),
            el("subnetArn", &format!("arn:aws:ec2:{region}:{account}:subnet/{}", s.id)),
        )
    }))
}

const ROUTE_TABLE: Kind<RouteTable> = Kind {
    id_param: "RouteTableId",
    not_found: "InvalidRouteTableID.NotFound",
    noun: "routeTable ID",
    id: |t| &t.id,
    field: |t, name, _region| match name {
        "route-table-id" => one(&t.id),
        "vpc-id" => one(&t.vpc_id),
        "association.main" => one(if t.main { "true" } else { "false" }),
        "association.subnet-id" => Some(t.subnets.clone()),
        _ => None,
    },
};

/// The element a route's target goes in, by the target's id prefix.
fn route_target(r: &Route) -> String {
    let tag = match r.target.split('-').next().unwrap_or("") {
        "nat" => "natGatewayId",
        "tgw" => "transitGatewayId",
        "eni" => "networkInterfaceId",
        "pcx" => "vpcPeeringConnectionId",
        "i" => "instanceId",
        // `local`, `igw-…`, `vgw-…`.
        _ => "gatewayId",
    };
    el(tag, &r.target)
}

/// `DescribeRouteTables`.
pub(super) fn describe_route_tables(state: &SimState, params: &Params) -> Result<String, Ec2Error> {
    let (region, account) = (&state.config.region, &state.config.account_id);
    let tables = select(
        &ROUTE_TABLE,
        &state.config.fleet.network.route_tables,
        params,
        region,
    )?;
    Ok(items("routeTableSet", tables, |t| {
        let routes = items("routeSet", &t.routes, |r| {
            let origin = if r.target == "local" {
                "CreateRouteTable"
            } else {
                "CreateRoute"
            };
            let state = if r.blackhole { "blackhole" } else { "active" };
            format!(
                "{}{}<state>{state}</state><origin>{origin}</origin>",
                el("destinationCidrBlock", &r.destination),
                route_target(r)
            )
        });
        let association = |n: usize, subnet: Option<&String>| {
            let which = match subnet {
                Some(s) => format!("<main>false</main>{}", el("subnetId", s)),
                None => "<main>true</main>".to_owned(),
            };
            format!(
                "<routeTableAssociationId>rtbassoc-{}{n:x}</routeTableAssociationId>{}{which}\
                 <associationState><state>associated</state></associationState>",
                t.id.trim_start_matches("rtb-"),
                el("routeTableId", &t.id)
            )
        };
        let mut links: Vec<String> = t
            .subnets
            .iter()
            .enumerate()
            .map(|(n, s)| association(n + 1, Some(s)))
            .collect();
        if t.main {
            links.push(association(0, None));
        }
        format!(
            "{}{}{}{routes}{}<propagatingVgwSet/><tagSet/>",
            el("routeTableId", &t.id),
            el("vpcId", &t.vpc_id),
            el("ownerId", account),
            items("associationSet", links, |a| a)
        )
    }))
}

const ENDPOINT: Kind<VpcEndpoint> = Kind {
    id_param: "VpcEndpointId",
    not_found: "InvalidVpcEndpointId.NotFound",
    noun: "Vpc Endpoint Id",
    id: |e| &e.id,
    field: |e, name, region| match name {
        "vpc-endpoint-id" => one(&e.id),
        "vpc-id" => one(&e.vpc_id),
        "vpc-endpoint-type" => one("Interface"),
        "vpc-endpoint-state" => one("available"),
        "service-name" => Some(vec![format!("com.amazonaws.{region}.{}", e.service)]),
        _ => None,
    },
};

/// `DescribeVpcEndpoints` (interface endpoints only: the fleet has no gateway endpoints).
pub(super) fn describe_vpc_endpoints(
    state: &SimState,
    params: &Params,
) -> Result<String, Ec2Error> {
    let region = &state.config.region;
    let network = &state.config.fleet.network;
    let endpoints = select(&ENDPOINT, &network.endpoints, params, region)?;
    Ok(items("vpcEndpointSet", endpoints, |e| {
        let service = format!("com.amazonaws.{region}.{}", e.service);
        let groups = group_set(network, &e.security_groups);
        let dns_name = format!("{}.{}.{region}.vpce.amazonaws.com", e.id, e.service);
        format!(
            "{}<vpcEndpointType>Interface</vpcEndpointType>{}{}<state>available</state>\
             <routeTableIdSet/>{}{groups}<privateDnsEnabled>{}</privateDnsEnabled>\
             <requesterManaged>false</requesterManaged>{}\
             <creationTimestamp>2026-01-01T00:00:00.000Z</creationTimestamp>{}",
            el("vpcEndpointId", &e.id),
            el("vpcId", &e.vpc_id),
            el("serviceName", &service),
            items("subnetIdSet", &e.subnets, |s| super::super::query::esc(s)),
            e.private_dns,
            items("dnsEntrySet", [dns_name], |d| el("dnsName", &d)),
            el("ownerId", &state.config.account_id),
        )
    }))
}

const SECURITY_GROUP: Kind<SecurityGroup> = Kind {
    id_param: "GroupId",
    not_found: "InvalidGroup.NotFound",
    noun: "security group",
    id: |g| &g.id,
    field: |g, name, _region| match name {
        "group-id" => one(&g.id),
        "group-name" => one(&g.name),
        "vpc-id" => one(&g.vpc_id),
        _ => None,
    },
};

/// One `IpPermission`.
fn permission(r: &SgRule, account: &str) -> String {
    let ports = match (r.from_port, r.to_port) {
        (Some(from), Some(to)) => format!("<fromPort>{from}</fromPort><toPort>{to}</toPort>"),
        _ => String::new(),
    };
    format!(
        "{}{ports}{}{}<ipv6Ranges/>{}",
        el("ipProtocol", &r.protocol),
        items("groups", &r.groups, |g| format!(
            "{}{}",
            el("userId", account),
            el("groupId", g)
        )),
        items("ipRanges", &r.cidrs, |c| el("cidrIp", c)),
        items("prefixListIds", &r.prefix_lists, |l| el("prefixListId", l)),
    )
}

/// `GetManagedPrefixListEntries`: one list's CIDRs.
pub(super) fn get_managed_prefix_list_entries(
    state: &SimState,
    params: &Params,
) -> Result<String, Ec2Error> {
    let id = params.get("PrefixListId").map(String::as_str).unwrap_or("");
    let list = state.config.fleet.network.prefix_list(id).ok_or_else(|| {
        Ec2Error::new(
            "InvalidPrefixListID.NotFound",
            format!("The prefix list ID '{id}' does not exist"),
        )
    })?;
    Ok(items("entrySet", &list.cidrs, |c| el("cidr", c)))
}

/// `DescribeSecurityGroups`.
pub(super) fn describe_security_groups(
    state: &SimState,
    params: &Params,
) -> Result<String, Ec2Error> {
    let (region, account) = (&state.config.region, &state.config.account_id);
    let groups = select(
        &SECURITY_GROUP,
        &state.config.fleet.network.security_groups,
        params,
        region,
    )?;
    Ok(items("securityGroupInfo", groups, |g| {
        format!(
            "{}{}{}{}{}{}{}<tagSet/>",
            el("ownerId", account),
            el("groupId", &g.id),
            el("groupName", &g.name),
            el("groupDescription", &g.name),
            el("vpcId", &g.vpc_id),
            items("ipPermissions", &g.ingress, |r| permission(r, account)),
            items("ipPermissionsEgress", &g.egress, |r| permission(r, account)),
        )
    }))
}

const NETWORK_ACL: Kind<NetworkAcl> = Kind {
    id_param: "NetworkAclId",
    not_found: "InvalidNetworkAclID.NotFound",
    noun: "networkAcl ID",
    id: |n| &n.id,
    field: |n, name, _region| match name {
        "network-acl-id" => one(&n.id),
        "vpc-id" => one(&n.vpc_id),
        "default" => one(if n.default { "true" } else { "false" }),
        "association.subnet-id" => Some(n.subnets.clone()),
        _ => None,
    },
};

fn acl_entry(e: &AclEntry) -> String {
    let ports = e
        .ports
        .map(|(from, to)| format!("<portRange><from>{from}</from><to>{to}</to></portRange>"))
        .unwrap_or_default();
    let action = if e.allow { "allow" } else { "deny" };
    format!(
        "<ruleNumber>{}</ruleNumber>{}<ruleAction>{action}</ruleAction><egress>{}</egress>{}{ports}",
        e.number,
        el("protocol", &e.protocol),
        e.egress,
        el("cidrBlock", &e.cidr),
    )
}

/// `DescribeNetworkAcls`. A default ACL lists every subnet of its VPC that no other ACL has,
/// as EC2 shows the implicit associations.
pub(super) fn describe_network_acls(state: &SimState, params: &Params) -> Result<String, Ec2Error> {
    let network = &state.config.fleet.network;
    let acls = select(
        &NETWORK_ACL,
        &network.network_acls,
        params,
        &state.config.region,
    )?;
    Ok(items("networkAclSet", acls, |n| {
        let mut subnets = n.subnets.clone();
        if n.default {
            subnets.extend(
                network
                    .subnets
                    .iter()
                    .filter(|s| s.vpc_id == n.vpc_id)
                    .filter(|s| {
                        !network
                            .network_acls
                            .iter()
                            .any(|a| a.subnets.contains(&s.id))
                    })
                    .map(|s| s.id.clone()),
            );
        }
        let associations = items("associationSet", subnets.iter().enumerate(), |(i, s)| {
            format!(
                "<networkAclAssociationId>aclassoc-{}{i:x}</networkAclAssociationId>{}{}",
                n.id.trim_start_matches("acl-"),
                el("networkAclId", &n.id),
                el("subnetId", s)
            )
        });
        format!(
            "{}{}<default>{}</default>{}{associations}<tagSet/>{}",
            el("networkAclId", &n.id),
            el("vpcId", &n.vpc_id),
            n.default,
            items("entrySet", &n.entries, acl_entry),
            el("ownerId", &state.config.account_id),
        )
    }))
}
