//! The path from the instance to the service (DOCTOR.md 3): a default route to a NAT or internet
//! gateway, or interface endpoints with private DNS for `ssm`, `ssmmessages` (and `ec2messages`
//! for agents older than 3.3.40.0), and the VPC DNS attributes those need.

use super::instance::{agent_version, needs_ec2messages};
use super::{Check, Verdict};
use crate::commands::doctor::facts::{Endpoint, Facts, NetworkFacts, RouteTable};
use crate::inventory::{Ec2Instance, Unavailable};

/// The services the agent talks to, in check order.
pub const SERVICES: [&str; 3] = ["ssm", "ssmmessages", "ec2messages"];

/// The instance and its network, when both are known.
pub struct Scope<'a> {
    /// The instance.
    pub instance: &'a Ec2Instance,
    /// Its VPC.
    pub net: &'a NetworkFacts,
    /// The region (endpoint service names contain it).
    pub region: &'a str,
}

impl<'a> Scope<'a> {
    /// `None` for hybrid nodes and instances that could not be looked up.
    pub fn of(facts: &'a Facts) -> Option<Scope<'a>> {
        match (&facts.instance, &facts.network) {
            (Ok(Some(instance)), Some(net)) => Some(Scope {
                instance,
                net,
                region: &facts.region,
            }),
            _ => None,
        }
    }

    /// The instance's subnet id.
    pub fn subnet(&self) -> &str {
        self.instance.subnet_id.as_deref().unwrap_or("")
    }

    /// The interface endpoint for `service` in the VPC, if any.
    pub fn endpoint(&self, service: &str) -> Result<Option<&'a Endpoint>, Unavailable> {
        let suffix = format!(".{}.{service}", self.region);
        match &self.net.endpoints {
            Ok(list) => Ok(list.iter().find(|e| e.service_name.ends_with(&suffix))),
            Err(e) => Err(e.clone()),
        }
    }

    /// Both VPC DNS attributes on (needed for an endpoint's private DNS names to resolve).
    pub fn vpc_dns_on(&self) -> bool {
        matches!(
            (&self.net.dns_support, &self.net.dns_hostnames),
            (Ok(true), Ok(true))
        )
    }
}

/// How traffic to the internet leaves the instance's subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternetRoute {
    /// `rtb-…`.
    pub table: String,
    /// Whether the subnet uses the table by explicit association (else it is the main table).
    pub explicit: bool,
    /// `nat-…`, `igw-…`, `tgw-…`, …
    pub target: String,
    /// The route is usable: active, and for an internet gateway, the instance has a public IP.
    pub usable: bool,
    /// Why not, or what it means.
    pub note: String,
}

impl InternetRoute {
    /// e.g. `rtb-1 (main) routes 0.0.0.0/0 to nat-1`.
    pub fn describe(&self) -> String {
        let how = if self.explicit { "associated" } else { "main" };
        format!(
            "{} ({how}) routes 0.0.0.0/0 to {}{}",
            self.table, self.target, self.note
        )
    }
}

/// The route table a subnet uses: its explicit association, else the VPC's main table.
pub fn table_for<'t>(tables: &'t [RouteTable], subnet: &str) -> Option<(&'t RouteTable, bool)> {
    tables
        .iter()
        .find(|t| t.subnets.iter().any(|s| s == subnet))
        .map(|t| (t, true))
        .or_else(|| tables.iter().find(|t| t.main).map(|t| (t, false)))
}

/// The subnet's default route, if any.
pub fn internet_route(scope: &Scope) -> Result<Option<InternetRoute>, Unavailable> {
    let tables = scope.net.route_tables.as_ref().map_err(Clone::clone)?;
    let Some((table, explicit)) = table_for(tables, scope.subnet()) else {
        return Ok(None);
    };
    let Some(route) = table.routes.iter().find(|r| r.destination == "0.0.0.0/0") else {
        return Ok(None);
    };
    let (usable, note) = if !route.active {
        (false, " (blackhole: the target is gone)".to_owned())
    } else if route.target.starts_with("nat-") {
        (true, String::new())
    } else if route.target.starts_with("igw-") {
        match &scope.instance.public_ip {
            Some(ip) => (true, format!(" (public IP {ip})")),
            None => (
                false,
                " but the instance has no public IP (an internet gateway needs one; use a NAT gateway)"
                    .to_owned(),
            ),
        }
    } else {
        (
            true,
            " (not a NAT or internet gateway: make sure it reaches the internet)".to_owned(),
        )
    };
    Ok(Some(InternetRoute {
        table: table.id.clone(),
        explicit,
        target: route.target.clone(),
        usable,
        note,
    }))
}

/// Whether the agent needs `service`: `Some(true/false)`, or `None` when the agent's version
/// is unknown (only `ec2messages` depends on it).
pub fn required(facts: &Facts, service: &str) -> Option<bool> {
    if service != "ec2messages" {
        return Some(true);
    }
    agent_version(facts).and_then(needs_ec2messages)
}

/// Where the agent's traffic for one service goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via<'a> {
    /// An interface endpoint whose private DNS name answers for the service.
    Endpoint(&'a Endpoint),
    /// Out through the default route.
    Internet(InternetRoute),
    /// Nowhere.
    Nowhere,
}

/// The path for `service`: an endpoint with working private DNS wins over the default route.
pub fn via<'a>(scope: &Scope<'a>, service: &str) -> Via<'a> {
    if let Ok(Some(ep)) = scope.endpoint(service) {
        if ep.private_dns && ep.state == "available" && scope.vpc_dns_on() {
            return Via::Endpoint(ep);
        }
    }
    match internet_route(scope) {
        Ok(Some(r)) if r.usable => Via::Internet(r),
        _ => Via::Nowhere,
    }
}

/// The rows: `route`, one `endpoint …` per service, `VPC DNS`.
pub fn checks(facts: &Facts) -> Vec<Check> {
    let Some(scope) = Scope::of(facts) else {
        return match &facts.instance {
            Err(e) if !facts.target.starts_with("mi-") => vec![Check::unknown("network", e)],
            _ => Vec::new(),
        };
    };
    let mut rows = vec![route(facts, &scope)];
    rows.extend(SERVICES.iter().map(|s| endpoint(facts, &scope, s)));
    rows.push(vpc_dns(&scope));
    rows
}

fn route(facts: &Facts, scope: &Scope) -> Check {
    const NAME: &str = "route";
    let internet = match internet_route(scope) {
        Ok(r) => r,
        Err(e) => return Check::unknown(NAME, e),
    };
    match internet {
        Some(r) if r.usable => Check::ok(NAME, r.describe()),
        other => {
            let used = scope
                .net
                .route_tables
                .as_ref()
                .ok()
                .and_then(|t| table_for(t, scope.subnet()));
            let evidence = match (&other, used) {
                (Some(r), _) => r.describe(),
                (None, Some((t, explicit))) => format!(
                    "{} ({}) has no route 0.0.0.0/0 for {}",
                    t.id,
                    if explicit { "associated" } else { "main" },
                    scope.subnet()
                ),
                (None, None) => format!("no route table for {}", scope.subnet()),
            };
            let all_via_endpoints = SERVICES
                .iter()
                .filter(|s| required(facts, s) != Some(false))
                .all(|s| matches!(via(scope, s), Via::Endpoint(_)));
            if all_via_endpoints {
                Check::ok(
                    NAME,
                    format!("{evidence}; not needed: VPC endpoints serve the agent"),
                )
            } else if let Err(e) = &scope.net.endpoints {
                // Without the endpoints we cannot tell whether the missing route matters.
                Check::unknown(NAME, format!("{evidence}; VPC endpoints: {e}"))
            } else {
                let table = used
                    .map(|(t, _)| t.id.clone())
                    .unwrap_or_else(|| "the subnet's route table".into());
                Check::new(
                    NAME,
                    Verdict::Fail,
                    evidence,
                    format!(
                        "add a route 0.0.0.0/0 to a NAT gateway in {table} (aws ec2 create-route \
                         --route-table-id {table} --destination-cidr-block 0.0.0.0/0 --nat-gateway-id nat-…), \
                         or the VPC endpoints below"
                    ),
                )
            }
        }
    }
}

fn endpoint(facts: &Facts, scope: &Scope, service: &str) -> Check {
    let name = format!("endpoint {service}");
    let full = format!("com.amazonaws.{}.{service}", scope.region);
    let vpc = &scope.net.vpc_id;
    let ep = match scope.endpoint(service) {
        Ok(ep) => ep,
        Err(e) => return Check::unknown(&name, e),
    };
    let need = required(facts, service);
    if need == Some(false) {
        let version = agent_version(facts).unwrap_or("?");
        return Check::ok(
            &name,
            format!("not needed: agent {version} is 3.3.40.0 or newer"),
        );
    }
    let internet = match via(scope, service) {
        Via::Internet(r) => Some(r),
        _ => None,
    };
    let create = format!(
        "add an interface endpoint {full} to {vpc} with private DNS enabled: aws ec2 create-vpc-endpoint \
         --vpc-id {vpc} --vpc-endpoint-type Interface --service-name {full} --subnet-ids {} \
         --security-group-ids SG_ALLOWING_443_FROM_THE_INSTANCE --private-dns-enabled",
        scope.subnet()
    );
    let maybe = if need.is_none() {
        " (needed only for agents older than 3.3.40.0; the agent's version is unknown)"
    } else {
        ""
    };
    let Some(ep) = ep else {
        return match internet {
            Some(r) => Check::ok(&name, format!("no endpoint; reached through {}", r.target)),
            None if need.is_none() => Check::new(
                &name,
                Verdict::Warn,
                format!("no {full} endpoint and no internet route{maybe}"),
                create,
            ),
            None => Check::new(
                &name,
                Verdict::Fail,
                format!("no {full} endpoint in {vpc}, and no internet route"),
                create,
            ),
        };
    };
    let fail_or_warn = |evidence: String, fix: String| match &internet {
        Some(r) => Check::new(
            &name,
            Verdict::Warn,
            format!("{evidence}; unused: traffic goes through {}", r.target),
            fix,
        ),
        None => Check::new(&name, Verdict::Fail, evidence, fix),
    };
    if ep.state != "available" {
        return fail_or_warn(
            format!("{} is {}", ep.id, ep.state),
            "wait for it to become available, or recreate it".into(),
        );
    }
    if !ep.private_dns {
        return fail_or_warn(
            format!("{} has private DNS disabled", ep.id),
            format!(
                "enable private DNS on {0}: aws ec2 modify-vpc-endpoint --vpc-endpoint-id {0} --private-dns-enabled",
                ep.id
            ),
        );
    }
    if !scope.vpc_dns_on() {
        return fail_or_warn(
            format!(
                "{} has private DNS, but {vpc} does not resolve it (see VPC DNS)",
                ep.id
            ),
            "turn on the VPC's DNS attributes (see VPC DNS)".into(),
        );
    }
    let subnets = scope.net.subnets.as_ref().map(Vec::as_slice).unwrap_or(&[]);
    let in_az = scope.instance.az.as_deref().is_none_or(|az| {
        ep.subnets
            .iter()
            .any(|s| subnets.iter().any(|sub| &sub.id == s && sub.az == az))
    });
    let evidence = format!(
        "{} available, private DNS on, subnets {}",
        ep.id,
        ep.subnets.join(", ")
    );
    if in_az || subnets.is_empty() {
        Check::ok(&name, evidence)
    } else {
        Check::new(
            &name,
            Verdict::Warn,
            format!(
                "{evidence}; none in {} (cross-AZ traffic works but costs more)",
                scope.instance.az.as_deref().unwrap_or("?")
            ),
            format!(
                "add a subnet in the instance's AZ: aws ec2 modify-vpc-endpoint --vpc-endpoint-id {} --add-subnet-ids {}",
                ep.id,
                scope.subnet()
            ),
        )
    }
}

fn vpc_dns(scope: &Scope) -> Check {
    const NAME: &str = "VPC DNS";
    let vpc = &scope.net.vpc_id;
    let (support, hostnames) = match (&scope.net.dns_support, &scope.net.dns_hostnames) {
        (Ok(s), Ok(h)) => (*s, *h),
        (Err(e), _) | (_, Err(e)) => return Check::unknown(NAME, e),
    };
    let uses_private_dns = SERVICES.iter().any(|s| {
        scope
            .endpoint(s)
            .ok()
            .flatten()
            .is_some_and(|e| e.private_dns)
    });
    let evidence = format!("{vpc}: enableDnsSupport {support}, enableDnsHostnames {hostnames}");
    let fix_for = |attr: &str| {
        format!("aws ec2 modify-vpc-attribute --vpc-id {vpc} --{attr} '{{\"Value\":true}}'")
    };
    match (support, hostnames) {
        (true, true) => Check::ok(NAME, evidence),
        (false, _) if uses_private_dns => {
            let mut fix = fix_for("enable-dns-support");
            if !hostnames {
                fix = format!("{fix}; {}", fix_for("enable-dns-hostnames"));
            }
            Check::new(NAME, Verdict::Fail, format!("{evidence}: endpoint private DNS names do not resolve"), fix)
        }
        (true, false) if uses_private_dns => Check::new(
            NAME,
            Verdict::Fail,
            format!("{evidence}: endpoint private DNS names do not resolve"),
            fix_for("enable-dns-hostnames"),
        ),
        (false, _) => Check::new(
            NAME,
            Verdict::Warn,
            format!("{evidence}: the Amazon DNS server is off, the agent cannot resolve endpoints without your own DNS"),
            fix_for("enable-dns-support"),
        ),
        (true, false) => Check::ok(NAME, format!("{evidence} (hostnames matter only for endpoint private DNS)")),
    }
}

#[cfg(test)]
mod tests;
