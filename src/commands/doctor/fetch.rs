//! Fills [`Facts`] from the APIs, every independent call at once. A failed call becomes
//! `Err(Unavailable)` in its slot (e.g. "needs ec2:DescribeVpcEndpoints"), never an error.

use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;

use super::facts::*;
use crate::aws::Aws;
use crate::inventory::{self, unavailable, Ec2Instance, Unavailable};

/// Everything about `target` (an id).
pub async fn facts(aws: &Aws, target: &str) -> Facts {
    let region = aws.region();
    let is_ec2 = target.starts_with("i-");
    let (caller, node, instance, reach) = tokio::join!(
        caller(aws),
        node(aws, target),
        async {
            if is_ec2 {
                inventory::describe_instances_by(aws, &[], &[target.to_owned()])
                    .await
                    .map(|v| v.into_iter().next())
                    .or_else(|e| match e {
                        // EC2 answers an unknown id with an error, not an empty list.
                        Unavailable::Failed(m) if m.contains("InvalidInstanceID") => Ok(None),
                        other => Err(other),
                    })
            } else {
                Ok(None)
            }
        },
        reach(aws),
    );
    let found = instance.as_ref().ok().cloned().flatten();
    let (role, network, caller_permissions) = tokio::join!(
        async {
            match (&instance, &found) {
                (_, Some(i)) => role(aws, i).await,
                // Without the instance, its profile is as unknown as it is.
                (Err(e), _) => Err(e.clone()),
                _ => Ok(None),
            }
        },
        async {
            match &found {
                Some(i) => network(aws, i).await,
                None => None,
            }
        },
        permissions(aws, &caller, target, &region),
    );
    Facts {
        region,
        target: target.to_owned(),
        caller,
        node,
        instance,
        role,
        network,
        caller_permissions,
        reach,
    }
}

async fn caller(aws: &Aws) -> Fetched<Caller> {
    let out = aws
        .sts()
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| unavailable("sts:GetCallerIdentity", e))?;
    Ok(Caller {
        arn: out.arn.unwrap_or_default(),
        account: out.account.unwrap_or_default(),
    })
}

async fn node(aws: &Aws, target: &str) -> Fetched<Option<inventory::ManagedNode>> {
    let nodes = inventory::managed_nodes(aws, Some(target)).await?;
    Ok(nodes.into_iter().find(|n| n.id == target))
}

/// TCP connects, 5 s at most each, to the SSM API endpoint in use and — when it is the default
/// one — to `ssmmessages`, which carries the data channel.
async fn reach(aws: &Aws) -> Vec<Reach> {
    let proxy = aws.proxy();
    let mut targets = vec![aws.ssm_endpoint()];
    if aws.ssm_endpoint_override().is_none() {
        // The data channel's websocket: the route a session would take.
        targets.push(format!("wss://ssmmessages.{}.amazonaws.com", aws.region()));
    }
    let probes = targets.into_iter().map(|endpoint| async move {
        let uri = endpoint.parse::<http::Uri>().ok();
        let route = uri.as_ref().and_then(|u| proxy.route(u));
        let result = match host_port(&endpoint) {
            None => Err("not a URL".to_owned()),
            Some((host, port)) => {
                let start = Instant::now();
                // Through the proxy the probe is what a session does: CONNECT to the endpoint.
                let connect = async {
                    match &route {
                        Some(route) => crate::http_proxy::connect::tunnel(route, &host, port)
                            .await
                            .map(drop)
                            .map_err(|e| crate::one_line(&e)),
                        None => tokio::net::TcpStream::connect((host.as_str(), port))
                            .await
                            .map(drop)
                            .map_err(|e| e.to_string()),
                    }
                };
                match tokio::time::timeout(Duration::from_secs(5), connect).await {
                    Ok(Ok(())) => Ok(start.elapsed().as_millis()),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err("timed out after 5 s".to_owned()),
                }
            }
        };
        Reach {
            route: proxy.describe(&endpoint),
            proxied: route.is_some(),
            endpoint,
            result,
        }
    });
    futures_util::future::join_all(probes).await
}

/// Host and port of a URL (80 for http and ws, else 443); IPv6 hosts without brackets.
fn host_port(url: &str) -> Option<(String, u16)> {
    let uri: http::Uri = url.parse().ok()?;
    let host = uri
        .host()?
        .trim_matches(|c| c == '[' || c == ']')
        .to_owned();
    let plain = matches!(uri.scheme_str(), Some("http" | "ws"));
    let port = uri.port_u16().unwrap_or(if plain { 80 } else { 443 });
    Some((host, port))
}

async fn permissions(
    aws: &Aws,
    caller: &Fetched<Caller>,
    target: &str,
    region: &str,
) -> Fetched<Vec<Decision>> {
    let caller = caller.as_ref().map_err(Clone::clone)?;
    let resource = if target.starts_with("mi-") {
        format!(
            "arn:aws:ssm:{region}:{}:managed-instance/{target}",
            caller.account
        )
    } else {
        format!("arn:aws:ec2:{region}:{}:instance/{target}", caller.account)
    };
    let out = aws
        .iam()
        .simulate_principal_policy()
        .policy_source_arn(super::checks::caller::principal_arn(&caller.arn))
        .set_action_names(Some({
            let mut actions: Vec<String> = super::checks::caller::SESSION_ACTIONS
                .iter()
                .map(|s| s.to_string())
                .collect();
            // What `rssm ssh` needs: EC2 instances only.
            if target.starts_with("i-") {
                actions.push(super::checks::caller::KEY_PUSH_ACTION.to_owned());
            }
            actions
        }))
        .resource_arns(resource)
        .send()
        .await
        .map_err(|e| unavailable("iam:SimulatePrincipalPolicy", e))?;
    Ok(out
        .evaluation_results()
        .iter()
        .map(|r| Decision {
            action: r.eval_action_name().to_owned(),
            decision: r.eval_decision().as_str().to_owned(),
        })
        .collect())
}

/// The instance profile, its role, and the role's policies.
async fn role(aws: &Aws, instance: &Ec2Instance) -> Fetched<Option<RoleFacts>> {
    let Some(arn) = &instance.instance_profile_arn else {
        return Ok(None);
    };
    let profile = arn.rsplit('/').next().unwrap_or(arn).to_owned();
    let iam = aws.iam();
    let out = iam
        .get_instance_profile()
        .instance_profile_name(&profile)
        .send()
        .await
        .map_err(|e| unavailable("iam:GetInstanceProfile", e))?;
    let role = out
        .instance_profile()
        .and_then(|p| p.roles().first())
        .map(|r| r.role_name().to_owned());
    let Some(role_name) = role.clone() else {
        return Ok(Some(RoleFacts {
            profile,
            role: None,
            attached: Ok(Vec::new()),
            documents: Ok(Vec::new()),
        }));
    };
    let attached = iam
        .list_attached_role_policies()
        .role_name(&role_name)
        .send()
        .await
        .map_err(|e| unavailable("iam:ListAttachedRolePolicies", e))
        .map(|o| {
            o.attached_policies()
                .iter()
                .filter_map(|p| Some((p.policy_name()?.to_owned(), p.policy_arn()?.to_owned())))
                .collect::<Vec<_>>()
        });
    let documents = match &attached {
        Ok(list) => documents(&iam, &role_name, list).await,
        Err(e) => Err(e.clone()),
    };
    Ok(Some(RoleFacts {
        profile,
        role,
        attached: attached.map(|l| l.into_iter().map(|(name, _)| name).collect()),
        documents,
    }))
}

/// The inline policies and the default versions of the attached ones, decoded.
async fn documents(
    iam: &aws_sdk_iam::Client,
    role: &str,
    attached: &[(String, String)],
) -> Fetched<Vec<String>> {
    let mut docs = Vec::new();
    let names = iam
        .list_role_policies()
        .role_name(role)
        .send()
        .await
        .map_err(|e| unavailable("iam:ListRolePolicies", e))?;
    for name in names.policy_names() {
        let p = iam
            .get_role_policy()
            .role_name(role)
            .policy_name(name)
            .send()
            .await
            .map_err(|e| unavailable("iam:GetRolePolicy", e))?;
        docs.push(decode(p.policy_document()));
    }
    for (name, arn) in attached {
        if name == super::checks::iam::CORE_POLICY {
            continue;
        }
        let policy = iam
            .get_policy()
            .policy_arn(arn)
            .send()
            .await
            .map_err(|e| unavailable("iam:GetPolicy", e))?;
        let Some(version) = policy.policy().and_then(|p| p.default_version_id()) else {
            continue;
        };
        let v = iam
            .get_policy_version()
            .policy_arn(arn)
            .version_id(version)
            .send()
            .await
            .map_err(|e| unavailable("iam:GetPolicyVersion", e))?;
        if let Some(doc) = v.policy_version().and_then(|v| v.document()) {
            docs.push(decode(doc));
        }
    }
    Ok(docs)
}

/// IAM returns policy documents URL-encoded (RFC 3986).
fn decode(doc: &str) -> String {
    percent_encoding::percent_decode_str(doc)
        .decode_utf8_lossy()
        .into_owned()
}

fn vpc_filter(vpc: &str) -> Filter {
    Filter::builder().name("vpc-id").values(vpc).build()
}

/// The VPC around the instance.
async fn network(aws: &Aws, instance: &Ec2Instance) -> Option<NetworkFacts> {
    let vpc = instance.vpc_id.clone()?;
    let ec2 = aws.ec2();
    let attribute = |name: aws_sdk_ec2::types::VpcAttributeName| {
        let ec2 = ec2.clone();
        let vpc = vpc.clone();
        async move {
            let out = ec2
                .describe_vpc_attribute()
                .vpc_id(&vpc)
                .attribute(name.clone())
                .send()
                .await
                .map_err(|e| unavailable("ec2:DescribeVpcAttribute", e))?;
            let value = match name {
                aws_sdk_ec2::types::VpcAttributeName::EnableDnsSupport => out.enable_dns_support(),
                _ => out.enable_dns_hostnames(),
            };
            Ok(value.and_then(|v| v.value()).unwrap_or(false))
        }
    };
    let (dns_support, dns_hostnames, subnets, route_tables, endpoints, security_groups, nacls) = tokio::join!(
        attribute(aws_sdk_ec2::types::VpcAttributeName::EnableDnsSupport),
        attribute(aws_sdk_ec2::types::VpcAttributeName::EnableDnsHostnames),
        subnets(&ec2, &vpc),
        route_tables(&ec2, &vpc),
        endpoints(&ec2, &vpc),
        security_groups(&ec2, &vpc),
        nacls(&ec2, &vpc),
    );
    let prefix_lists = match &security_groups {
        Ok(groups) => prefix_lists(&ec2, groups).await,
        Err(e) => Err(e.clone()),
    };
    Some(NetworkFacts {
        vpc_id: vpc,
        dns_support,
        dns_hostnames,
        subnets,
        route_tables,
        endpoints,
        security_groups,
        nacls,
        prefix_lists,
    })
}

async fn subnets(ec2: &aws_sdk_ec2::Client, vpc: &str) -> Fetched<Vec<Subnet>> {
    let out = ec2
        .describe_subnets()
        .filters(vpc_filter(vpc))
        .send()
        .await
        .map_err(|e| unavailable("ec2:DescribeSubnets", e))?;
    Ok(out
        .subnets()
        .iter()
        .map(|s| Subnet {
            id: s.subnet_id().unwrap_or_default().to_owned(),
            cidr: s.cidr_block().unwrap_or_default().to_owned(),
            az: s.availability_zone().unwrap_or_default().to_owned(),
        })
        .collect())
}

async fn route_tables(ec2: &aws_sdk_ec2::Client, vpc: &str) -> Fetched<Vec<RouteTable>> {
    let out = ec2
        .describe_route_tables()
        .filters(vpc_filter(vpc))
        .send()
        .await
        .map_err(|e| unavailable("ec2:DescribeRouteTables", e))?;
    Ok(out
        .route_tables()
        .iter()
        .map(|t| RouteTable {
            id: t.route_table_id().unwrap_or_default().to_owned(),
            main: t.associations().iter().any(|a| a.main() == Some(true)),
            subnets: t
                .associations()
                .iter()
                .filter_map(|a| a.subnet_id().map(str::to_owned))
                .collect(),
            routes: t
                .routes()
                .iter()
                .map(|r| Route {
                    destination: r
                        .destination_cidr_block()
                        .or(r.destination_prefix_list_id())
                        .unwrap_or_default()
                        .to_owned(),
                    target: r
                        .nat_gateway_id()
                        .or(r.gateway_id())
                        .or(r.transit_gateway_id())
                        .or(r.network_interface_id())
                        .or(r.vpc_peering_connection_id())
                        .or(r.instance_id())
                        .unwrap_or("unknown")
                        .to_owned(),
                    active: r.state().map(|s| s.as_str()) != Some("blackhole"),
                })
                .collect(),
        })
        .collect())
}

async fn endpoints(ec2: &aws_sdk_ec2::Client, vpc: &str) -> Fetched<Vec<Endpoint>> {
    let out = ec2
        .describe_vpc_endpoints()
        .filters(vpc_filter(vpc))
        .send()
        .await
        .map_err(|e| unavailable("ec2:DescribeVpcEndpoints", e))?;
    Ok(out
        .vpc_endpoints()
        .iter()
        .filter(|e| e.vpc_endpoint_type().map(|t| t.as_str()) != Some("Gateway"))
        .map(|e| Endpoint {
            id: e.vpc_endpoint_id().unwrap_or_default().to_owned(),
            service_name: e.service_name().unwrap_or_default().to_owned(),
            private_dns: e.private_dns_enabled().unwrap_or(false),
            state: e
                .state()
                .map(|s| s.as_str().to_lowercase())
                .unwrap_or_else(|| "unknown".into()),
            subnets: e.subnet_ids().to_vec(),
            security_groups: e
                .groups()
                .iter()
                .filter_map(|g| g.group_id().map(str::to_owned))
                .collect(),
        })
        .collect())
}

fn rules(perms: &[aws_sdk_ec2::types::IpPermission]) -> Vec<SgRule> {
    perms
        .iter()
        .map(|p| SgRule {
            protocol: p.ip_protocol().unwrap_or("-1").to_owned(),
            from_port: p.from_port(),
            to_port: p.to_port(),
            cidrs: p
                .ip_ranges()
                .iter()
                .filter_map(|r| r.cidr_ip().map(str::to_owned))
                .collect(),
            groups: p
                .user_id_group_pairs()
                .iter()
                .filter_map(|g| g.group_id().map(str::to_owned))
                .collect(),
            prefix_lists: p
                .prefix_list_ids()
                .iter()
                .filter_map(|l| l.prefix_list_id().map(str::to_owned))
                .collect(),
        })
        .collect()
}

async fn security_groups(ec2: &aws_sdk_ec2::Client, vpc: &str) -> Fetched<Vec<SecurityGroup>> {
    let out = ec2
        .describe_security_groups()
        .filters(vpc_filter(vpc))
        .send()
        .await
        .map_err(|e| unavailable("ec2:DescribeSecurityGroups", e))?;
    Ok(out
        .security_groups()
        .iter()
        .map(|g| SecurityGroup {
            id: g.group_id().unwrap_or_default().to_owned(),
            name: g.group_name().unwrap_or_default().to_owned(),
            ingress: rules(g.ip_permissions()),
            egress: rules(g.ip_permissions_egress()),
        })
        .collect())
}

async fn nacls(ec2: &aws_sdk_ec2::Client, vpc: &str) -> Fetched<Vec<Nacl>> {
    let out = ec2
        .describe_network_acls()
        .filters(vpc_filter(vpc))
        .send()
        .await
        .map_err(|e| unavailable("ec2:DescribeNetworkAcls", e))?;
    Ok(out
        .network_acls()
        .iter()
        .map(|n| Nacl {
            id: n.network_acl_id().unwrap_or_default().to_owned(),
            default: n.is_default().unwrap_or(false),
            subnets: n
                .associations()
                .iter()
                .filter_map(|a| a.subnet_id().map(str::to_owned))
                .collect(),
            entries: n
                .entries()
                .iter()
                .map(|e| NaclEntry {
                    number: e.rule_number().unwrap_or(32767),
                    egress: e.egress().unwrap_or(false),
                    protocol: e.protocol().unwrap_or("-1").to_owned(),
                    ports: e.port_range().and_then(|p| Some((p.from()?, p.to()?))),
                    cidr: e.cidr_block().unwrap_or_default().to_owned(),
                    allow: e.rule_action().map(|a| a.as_str()) == Some("allow"),
                })
                .collect(),
        })
        .collect())
}

/// Entries of every prefix list the groups reference.
async fn prefix_lists(
    ec2: &aws_sdk_ec2::Client,
    groups: &[SecurityGroup],
) -> Fetched<Vec<PrefixList>> {
    let mut ids: Vec<&String> = groups
        .iter()
        .flat_map(|g| g.ingress.iter().chain(&g.egress))
        .flat_map(|r| &r.prefix_lists)
        .collect();
    ids.sort();
    ids.dedup();
    let mut out = Vec::new();
    for id in ids {
        let entries = ec2
            .get_managed_prefix_list_entries()
            .prefix_list_id(id)
            .send()
            .await
            .map_err(|e| unavailable("ec2:GetManagedPrefixListEntries", e))?;
        out.push(PrefixList {
            id: id.clone(),
            cidrs: entries
                .entries()
                .iter()
                .filter_map(|e| e.cidr().map(str::to_owned))
                .collect(),
        });
    }
    Ok(out)
}
