//! Security groups and network ACLs on the agent's path (DOCTOR.md 4–6).
//!
//! Every rule is evaluated against one concrete address per peer: the instance's private IP,
//! the endpoint's first usable address in its subnet, or — for the internet path — a public
//! address of the AWS range (52.94.0.1). A rule matches a peer by CIDR, by referenced security
//! group, or by a prefix list whose entries contain the address.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::network::{via, Scope, Via, SERVICES};
use super::{Check, Verdict};
use crate::commands::doctor::facts::{Facts, Nacl, PrefixList, SecurityGroup, SgRule};

/// HTTPS: the agent's only port.
pub const HTTPS: u16 = 443;
/// Representative public address for "the internet" (an AWS public range).
pub const PUBLIC_PROBE: Ipv4Addr = Ipv4Addr::new(52, 94, 0, 1);
/// Linux's ephemeral port range ends; replies come back to these (AWS advises 1024–65535).
pub const EPHEMERAL: [u16; 2] = [32768, 60999];

/// The other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The address rules are evaluated against.
    pub ip: Ipv4Addr,
    /// Its security groups.
    pub groups: Vec<String>,
    /// The CIDR a fix should name.
    pub cidr: String,
    /// For evidence, e.g. `vpce-1 (10.0.2.0/24)`.
    pub label: String,
}

fn net(cidr: &str) -> Option<Ipv4Net> {
    cidr.parse().ok()
}

fn contains(cidr: &str, ip: Ipv4Addr) -> bool {
    net(cidr).is_some_and(|n| n.contains(&ip))
}

/// Whether a security group rule lets TCP `port` through to/from `peer`.
pub fn sg_rule_matches(rule: &SgRule, port: u16, peer: &Peer, lists: &[PrefixList]) -> bool {
    let proto = matches!(rule.protocol.as_str(), "-1" | "tcp" | "6");
    let ports = rule.protocol == "-1"
        || match (rule.from_port, rule.to_port) {
            (Some(from), Some(to)) => {
                (from..=to).contains(&i32::from(port)) || (from == -1 && to == -1)
            }
            _ => true,
        };
    let who = rule.cidrs.iter().any(|c| contains(c, peer.ip))
        || rule.groups.iter().any(|g| peer.groups.contains(g))
        || rule.prefix_lists.iter().any(|pl| {
            lists
                .iter()
                .find(|l| &l.id == pl)
                .is_some_and(|l| l.cidrs.iter().any(|c| contains(c, peer.ip)))
        });
    proto && ports && who
}

/// The first group and rule allowing it, as evidence; `None` when nothing does.
pub fn sg_allows(
    groups: &[&SecurityGroup],
    egress: bool,
    port: u16,
    peer: &Peer,
    lists: &[PrefixList],
) -> Option<String> {
    for g in groups {
        let rules = if egress { &g.egress } else { &g.ingress };
        if let Some(rule) = rules.iter().find(|r| sg_rule_matches(r, port, peer, lists)) {
            let what = rule
                .cidrs
                .iter()
                .chain(&rule.groups)
                .chain(&rule.prefix_lists)
                .cloned()
                .collect::<Vec<_>>()
                .join(",");
            let ports = match (rule.protocol.as_str(), rule.from_port, rule.to_port) {
                ("-1", _, _) => "all traffic".to_owned(),
                (_, Some(a), Some(b)) if a == b => format!("tcp {a}"),
                (_, Some(a), Some(b)) => format!("tcp {a}-{b}"),
                _ => "tcp".to_owned(),
            };
            let dir = if egress { "to" } else { "from" };
            return Some(format!("{} allows {ports} {dir} {what}", g.id));
        }
    }
    None
}

/// The ACL a subnet uses: its association, else the VPC's default.
pub fn nacl_for<'n>(nacls: &'n [Nacl], subnet: &str) -> Option<&'n Nacl> {
    nacls
        .iter()
        .find(|n| n.subnets.iter().any(|s| s == subnet))
        .or_else(|| nacls.iter().find(|n| n.default))
}

/// Network ACLs are evaluated in rule-number order, first match wins, `*` denies the rest.
/// Returns (allowed, the deciding rule's number — `None` for the implicit `*`).
pub fn nacl_decision(nacl: &Nacl, egress: bool, port: u16, ip: Ipv4Addr) -> (bool, Option<i32>) {
    let mut entries: Vec<_> = nacl.entries.iter().filter(|e| e.egress == egress).collect();
    entries.sort_by_key(|e| e.number);
    for e in entries {
        let proto = matches!(e.protocol.as_str(), "-1" | "6" | "tcp");
        let ports = e.protocol == "-1"
            || e.ports
                .is_none_or(|(from, to)| (from..=to).contains(&i32::from(port)));
        if proto && ports && contains(&e.cidr, ip) {
            // 32767 is the API's number for the `*` rule.
            return (e.allow, (e.number != 32767).then_some(e.number));
        }
    }
    (false, None)
}

/// Where the agent's connections go, one peer per distinct destination.
fn destinations(facts: &Facts, scope: &Scope) -> Vec<(Peer, Option<String>)> {
    let mut out: Vec<(Peer, Option<String>)> = Vec::new();
    for service in SERVICES {
        if super::network::required(facts, service) == Some(false) {
            continue;
        }
        let peer = match via(scope, service) {
            Via::Endpoint(ep) => {
                let subnets = scope.net.subnets.as_ref().map(Vec::as_slice).unwrap_or(&[]);
                let mine = scope.instance.az.as_deref();
                let chosen = ep
                    .subnets
                    .iter()
                    .filter_map(|id| subnets.iter().find(|s| &s.id == id))
                    .max_by_key(|s| Some(s.az.as_str()) == mine);
                let Some(sub) = chosen else { continue };
                let Some(n) = net(&sub.cidr) else { continue };
                // AWS reserves the first four addresses of a subnet.
                let ip = n.hosts().nth(3).unwrap_or(n.network());
                let groups = endpoint_groups(scope, &ep.security_groups);
                (
                    Peer {
                        ip,
                        groups,
                        cidr: sub.cidr.clone(),
                        label: format!("{} ({})", ep.id, sub.cidr),
                    },
                    Some(sub.id.clone()),
                )
            }
            Via::Internet(_) => (
                Peer {
                    ip: PUBLIC_PROBE,
                    groups: Vec::new(),
                    cidr: "0.0.0.0/0".into(),
                    label: "the internet (0.0.0.0/0)".into(),
                },
                None,
            ),
            Via::Nowhere => continue,
        };
        if !out.iter().any(|(p, _)| p.label == peer.0.label) {
            out.push(peer);
        }
    }
    out
}

/// An endpoint's groups; an endpoint created without any gets the VPC's `default` group.
fn endpoint_groups(scope: &Scope, groups: &[String]) -> Vec<String> {
    if !groups.is_empty() {
        return groups.to_vec();
    }
    scope
        .net
        .security_groups
        .as_ref()
        .map(|all| {
            all.iter()
                .filter(|g| g.name == "default")
                .map(|g| g.id.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// The rows: `instance SG egress`, `endpoint SG ingress`, `network ACLs`.
pub fn checks(facts: &Facts) -> Vec<Check> {
    let Some(scope) = Scope::of(facts) else {
        return Vec::new();
    };
    let dests = destinations(facts, &scope);
    vec![
        instance_egress(&scope, &dests),
        endpoint_ingress(&scope, &dests),
        acls(&scope, &dests),
    ]
}

fn groups<'g>(all: &'g [SecurityGroup], ids: &[String]) -> Vec<&'g SecurityGroup> {
    all.iter().filter(|g| ids.contains(&g.id)).collect()
}

fn instance_peer(scope: &Scope) -> Option<Peer> {
    let ip: Ipv4Addr = scope.instance.private_ip.as_deref()?.parse().ok()?;
    Some(Peer {
        ip,
        groups: scope.instance.security_groups.clone(),
        cidr: format!("{ip}/32"),
        label: format!("{} ({ip})", scope.instance.id),
    })
}

fn instance_egress(scope: &Scope, dests: &[(Peer, Option<String>)]) -> Check {
    const NAME: &str = "instance SG egress";
    let all = match &scope.net.security_groups {
        Ok(g) => g,
        Err(e) => return Check::unknown(NAME, e),
    };
    let lists = scope.net.prefix_lists.as_deref().unwrap_or(&[]);
    if dests.is_empty() {
        return Check::unknown(NAME, "no path to the service to check (see route)");
    }
    let mine = groups(all, &scope.instance.security_groups);
    let mut ok = Vec::new();
    for (peer, _) in dests {
        match sg_allows(&mine, true, HTTPS, peer, lists) {
            Some(e) if ok.contains(&e) => {}
            Some(e) => ok.push(e),
            None => {
                let sg = scope
                    .instance
                    .security_groups
                    .first()
                    .cloned()
                    .unwrap_or_default();
                return Check::new(
                    NAME,
                    Verdict::Fail,
                    format!(
                        "{} ({}) allow no TCP 443 to {}",
                        scope.instance.security_groups.join(", "),
                        scope.instance.id,
                        peer.label
                    ),
                    format!(
                        "aws ec2 authorize-security-group-egress --group-id {sg} --protocol tcp --port 443 --cidr {}",
                        peer.cidr
                    ),
                );
            }
        }
    }
    Check::ok(NAME, ok.join("; "))
}

fn endpoint_ingress(scope: &Scope, dests: &[(Peer, Option<String>)]) -> Check {
    const NAME: &str = "endpoint SG ingress";
    let endpoints: Vec<&(Peer, Option<String>)> = dests
        .iter()
        .filter(|(_, subnet)| subnet.is_some())
        .collect();
    if endpoints.is_empty() {
        return Check::ok(NAME, "not used: no VPC endpoint on the path");
    }
    let all = match &scope.net.security_groups {
        Ok(g) => g,
        Err(e) => return Check::unknown(NAME, e),
    };
    let lists = scope.net.prefix_lists.as_deref().unwrap_or(&[]);
    let Some(me) = instance_peer(scope) else {
        return Check::unknown(NAME, "the instance has no private IPv4 address");
    };
    let mut ok = Vec::new();
    for (peer, _) in endpoints {
        let theirs = groups(all, &peer.groups);
        match sg_allows(&theirs, false, HTTPS, &me, lists) {
            Some(e) if ok.contains(&e) => {}
            Some(e) => ok.push(e),
            None => {
                let sg = peer.groups.first().cloned().unwrap_or_else(|| "SG".into());
                let source = match scope.instance.security_groups.first() {
                    Some(g) => format!("--source-group {g}"),
                    None => format!("--cidr {}", me.cidr),
                };
                return Check::new(
                    NAME,
                    Verdict::Fail,
                    format!(
                        "{} of {} allow no TCP 443 from {}",
                        peer.groups.join(", "),
                        peer.label,
                        me.label
                    ),
                    format!(
                        "aws ec2 authorize-security-group-ingress --group-id {sg} --protocol tcp --port 443 {source}"
                    ),
                );
            }
        }
    }
    Check::ok(NAME, ok.join("; "))
}

fn acls(scope: &Scope, dests: &[(Peer, Option<String>)]) -> Check {
    const NAME: &str = "network ACLs";
    let nacls = match &scope.net.nacls {
        Ok(n) => n,
        Err(e) => return Check::unknown(NAME, e),
    };
    if dests.is_empty() {
        return Check::unknown(NAME, "no path to the service to check (see route)");
    }
    let Some(me) = instance_peer(scope) else {
        return Check::unknown(NAME, "the instance has no private IPv4 address");
    };
    let mut used = Vec::new();
    for (peer, endpoint_subnet) in dests {
        if endpoint_subnet.as_deref() == Some(scope.subnet()) {
            // Traffic inside one subnet never crosses its ACL.
            continue;
        }
        // (subnet, egress?, port, remote) for both ends of the connection.
        let mut legs = vec![(scope.subnet().to_owned(), true, HTTPS, peer)];
        for p in EPHEMERAL {
            legs.push((scope.subnet().to_owned(), false, p, peer));
        }
        if let Some(sub) = endpoint_subnet {
            legs.push((sub.clone(), false, HTTPS, &me));
            for p in EPHEMERAL {
                legs.push((sub.clone(), true, p, &me));
            }
        }
        for (subnet, egress, port, remote) in legs {
            let Some(acl) = nacl_for(nacls, &subnet) else {
                continue;
            };
            if !used.contains(&acl.id) {
                used.push(acl.id.clone());
            }
            let (allowed, rule) = nacl_decision(acl, egress, port, remote.ip);
            if !allowed {
                let dir = if egress { "outbound" } else { "inbound" };
                let to = if egress { "to" } else { "from" };
                let by = rule
                    .map(|n| format!("rule {n}"))
                    .unwrap_or_else(|| "the final * rule".into());
                let number = rule.map(|n| (n - 1).max(1)).unwrap_or(100);
                let range = if port == HTTPS {
                    "From=443,To=443"
                } else {
                    "From=1024,To=65535"
                };
                let flag = if egress { "--egress" } else { "--ingress" };
                return Check::new(
                    NAME,
                    Verdict::Fail,
                    format!(
                        "{} ({subnet}) denies {dir} TCP {port} {to} {} ({by})",
                        acl.id, remote.label
                    ),
                    format!(
                        "aws ec2 create-network-acl-entry --network-acl-id {} {flag} --rule-number {number} \
                         --protocol tcp --port-range {range} --cidr-block {} --rule-action allow",
                        acl.id, remote.cidr
                    ),
                );
            }
        }
    }
    if used.is_empty() {
        return Check::ok(
            NAME,
            "not crossed: the endpoints share the instance's subnet",
        );
    }
    Check::ok(
        NAME,
        format!("{} allow 443 out and the replies in", used.join(", ")),
    )
}

#[cfg(test)]
mod tests;
