//! Target resolution: what a user types (`web-1`, `tag:Role=db`, `10.0.1.23`, an instance id)
//! becomes the id StartSession needs.
//!
//! The decisions are pure functions over already-fetched instances ([`parse`], [`choose`]) so
//! they are unit-tested without AWS; [`resolve`] is the thin layer that asks EC2.

use std::net::Ipv4Addr;

use anyhow::{bail, Result};

use crate::aws::Aws;
use crate::inventory::{self, Ec2Instance};

/// What a target argument asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// `i-…`, `mi-…` or an ECS target StartSession takes as it is (`ecs:CLUSTER_TASK_RUNTIME`).
    Id(String),
    /// `ecs:CLUSTER/TASK[/CONTAINER]`: needs the container's runtime id from ECS.
    EcsTask {
        /// Cluster name or ARN.
        cluster: String,
        /// Task id or ARN.
        task: String,
        /// Container name; the task's only container when omitted.
        container: Option<String>,
    },
    /// `tag:KEY=VALUE`.
    Tag {
        /// Tag key.
        key: String,
        /// Tag value.
        value: String,
    },
    /// A private IPv4 address.
    PrivateIp(Ipv4Addr),
    /// A private DNS name (`ip-10-0-1-23.eu-west-1.compute.internal`).
    PrivateDns(String),
    /// Anything else: the `Name` tag.
    Name(String),
}

impl TargetSpec {
    /// True when resolving needs no API call.
    pub fn is_id(&self) -> bool {
        matches!(self, TargetSpec::Id(_))
    }

    /// The EC2 DescribeInstances filter (name, value) that finds candidates.
    pub fn ec2_filter(&self) -> Option<(String, String)> {
        match self {
            TargetSpec::Tag { key, value } => Some((format!("tag:{key}"), value.clone())),
            TargetSpec::PrivateIp(ip) => Some(("private-ip-address".into(), ip.to_string())),
            TargetSpec::PrivateDns(name) => Some(("private-dns-name".into(), name.clone())),
            TargetSpec::Name(name) => Some(("tag:Name".into(), name.clone())),
            TargetSpec::Id(_) | TargetSpec::EcsTask { .. } => None,
        }
    }

    /// How the user would say it, for messages.
    pub fn describe(&self) -> String {
        match self {
            TargetSpec::Id(id) => id.clone(),
            TargetSpec::EcsTask { cluster, task, .. } => format!("ECS task {cluster}/{task}"),
            TargetSpec::Tag { key, value } => format!("tag {key}={value}"),
            TargetSpec::PrivateIp(ip) => format!("private IP {ip}"),
            TargetSpec::PrivateDns(n) => format!("private DNS name {n}"),
            TargetSpec::Name(n) => format!("Name tag {n:?}"),
        }
    }
}

/// `i-` or `mi-` followed by hex digits.
pub fn is_instance_id(s: &str) -> bool {
    ["i-", "mi-"].iter().any(|p| {
        s.strip_prefix(p)
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_hexdigit()))
    })
}

/// Classifies a target argument.
pub fn parse(text: &str) -> Result<TargetSpec> {
    let text = text.trim();
    if text.is_empty() {
        bail!("empty target: give an instance id, a Name tag, tag:KEY=VALUE or a private IP");
    }
    if is_instance_id(text) {
        return Ok(TargetSpec::Id(text.to_owned()));
    }
    if let Some(rest) = text.strip_prefix("ecs:") {
        // The SSM form joins with `_`; ours uses `/` so ARNs and names read naturally.
        if !rest.contains('/') {
            return Ok(TargetSpec::Id(text.to_owned()));
        }
        let mut parts = rest.splitn(3, '/');
        let cluster = parts.next().unwrap_or_default().to_owned();
        let task = parts.next().unwrap_or_default().to_owned();
        let container = parts.next().filter(|c| !c.is_empty()).map(str::to_owned);
        if cluster.is_empty() || task.is_empty() {
            bail!("{text:?}: expected ecs:CLUSTER/TASK[/CONTAINER]");
        }
        return Ok(TargetSpec::EcsTask {
            cluster,
            task,
            container,
        });
    }
    if let Some(rest) = text.strip_prefix("tag:") {
        let Some((key, value)) = rest.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            bail!("{text:?}: expected tag:KEY=VALUE");
        };
        return Ok(TargetSpec::Tag {
            key: key.to_owned(),
            value: value.to_owned(),
        });
    }
    if let Ok(ip) = text.parse::<Ipv4Addr>() {
        return Ok(TargetSpec::PrivateIp(ip));
    }
    if text.ends_with(".internal") && text.contains('.') {
        return Ok(TargetSpec::PrivateDns(text.to_owned()));
    }
    Ok(TargetSpec::Name(text.to_owned()))
}

/// The outcome of matching candidates against a spec.
#[derive(Debug, Clone, PartialEq)]
pub enum Choice {
    /// Exactly one instance.
    One(String),
    /// None at all.
    NoMatch,
    /// More than one: the user must say which.
    Ambiguous(Vec<Ec2Instance>),
}

/// Picks among the instances EC2 returned for the spec's filter. Terminated instances never
/// count (they linger in DescribeInstances for an hour and can never be reached).
pub fn choose(candidates: &[Ec2Instance]) -> Choice {
    let live: Vec<&Ec2Instance> = candidates
        .iter()
        .filter(|i| !matches!(i.state.as_str(), "terminated" | "shutting-down"))
        .collect();
    match live.as_slice() {
        [] => Choice::NoMatch,
        [one] => Choice::One(one.id.clone()),
        many => Choice::Ambiguous(many.iter().map(|i| (*i).clone()).collect()),
    }
}

/// One line per instance, for ambiguity errors and the picker.
pub fn candidate_line(i: &Ec2Instance) -> String {
    format!(
        "{}  {}  {}  {}",
        i.id,
        i.name.as_deref().unwrap_or("-"),
        i.state,
        i.private_ip.as_deref().unwrap_or("-")
    )
}

/// The error for several matches: every candidate listed, and how to choose.
pub fn ambiguity_error(spec: &TargetSpec, matches: &[Ec2Instance]) -> anyhow::Error {
    let list: Vec<String> = matches.iter().map(candidate_line).collect();
    anyhow::anyhow!(
        "{} matches {} instances: {}; use an instance id, or --pick to choose",
        spec.describe(),
        matches.len(),
        list.join("; ")
    )
}

/// Resolves a target argument to the id StartSession takes. `pick` allows an interactive
/// choice among several matches when stdin and stderr are terminals.
pub async fn resolve(aws: &Aws, text: &str, pick: bool) -> Result<String> {
    let spec = parse(text)?;
    if let TargetSpec::Id(id) = spec {
        return Ok(id);
    }
    if let TargetSpec::EcsTask {
        cluster,
        task,
        container,
    } = &spec
    {
        return ecs_target(aws, cluster, task, container.as_deref()).await;
    }
    let Some((name, value)) = spec.ec2_filter() else {
        bail!("cannot resolve {}", spec.describe());
    };
    let found = inventory::describe_instances(aws, &[(name, value)]).await?;
    match choose(&found) {
        Choice::One(id) => {
            tracing::info!(target = %text, %id, "target resolved");
            Ok(id)
        }
        Choice::NoMatch => bail!(
            "no instance with {} in region {} (check --region, or use the instance id)",
            spec.describe(),
            aws.region()
        ),
        Choice::Ambiguous(matches) => {
            if pick && interactive() {
                pick_one(&matches)
            } else {
                Err(ambiguity_error(&spec, &matches))
            }
        }
    }
}

/// The ECS task's container as StartSession names it: `ecs:CLUSTER_TASKID_RUNTIMEID`.
async fn ecs_target(
    aws: &Aws,
    cluster: &str,
    task: &str,
    container: Option<&str>,
) -> Result<String> {
    let out = aws
        .ecs()
        .describe_tasks()
        .cluster(cluster)
        .tasks(task)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "ECS DescribeTasks {cluster}/{task}: {}",
                inventory::unavailable("ecs:DescribeTasks", e)
            )
        })?;
    let Some(found) = out.tasks().first() else {
        bail!(
            "no task {task} in ECS cluster {cluster} (region {})",
            aws.region()
        );
    };
    let containers: Vec<(&str, &str)> = found
        .containers()
        .iter()
        .filter_map(|c| Some((c.name()?, c.runtime_id()?)))
        .collect();
    let runtime = pick_container(&containers, container)
        .map_err(|e| anyhow::anyhow!("ECS task {cluster}/{task}: {e}"))?;
    // Names and ARNs both work in the call; the target wants the bare cluster name and task id.
    let cluster_name = cluster.rsplit('/').next().unwrap_or(cluster);
    let task_id = found
        .task_arn()
        .and_then(|a| a.rsplit('/').next())
        .unwrap_or_else(|| task.rsplit('/').next().unwrap_or(task));
    Ok(format!("ecs:{cluster_name}_{task_id}_{runtime}"))
}

/// The runtime id of the named container, or of the only one when no name is given.
pub fn pick_container<'c>(containers: &[(&str, &'c str)], name: Option<&str>) -> Result<&'c str> {
    let names = || {
        containers
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(want) => containers
            .iter()
            .find(|(n, _)| *n == want)
            .map(|(_, r)| *r)
            .ok_or_else(|| anyhow::anyhow!("no container {want:?} (it has: {})", names())),
        None => match containers {
            [(_, runtime)] => Ok(runtime),
            [] => bail!("no running container with a runtime id"),
            _ => bail!(
                "several containers ({}): name one, ecs:CLUSTER/TASK/CONTAINER",
                names()
            ),
        },
    }
}

fn interactive() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// A fuzzy picker on the terminal (dialoguer): type to filter, Enter to choose, Esc to give up.
fn pick_one(matches: &[Ec2Instance]) -> Result<String> {
    let items: Vec<String> = matches.iter().map(candidate_line).collect();
    let chosen = dialoguer::FuzzySelect::new()
        .with_prompt("Which instance?")
        .items(&items)
        .default(0)
        .interact_opt()
        .map_err(|e| anyhow::anyhow!("picker failed: {e}"))?;
    match chosen {
        Some(i) => Ok(matches[i].id.clone()),
        None => bail!("no instance chosen"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_target_text_is_parsed_or_refused_in_one_line(text in "(?s).*") {
            if let Err(e) = parse(&text) {
                let line = format!("{e:#}");
                proptest::prop_assert!(!line.contains('\n'), "{line}");
            }
        }
    }

    fn inst(id: &str, name: &str, state: &str) -> Ec2Instance {
        Ec2Instance {
            id: id.into(),
            name: Some(name.into()),
            state: state.into(),
            private_ip: Some("10.0.0.1".into()),
            ..Default::default()
        }
    }

    #[test]
    fn ids_need_no_lookup() {
        assert!(parse("i-0123456789abcdef0").unwrap().is_id());
        assert!(parse("mi-0123456789abcdef0").unwrap().is_id());
        assert!(parse("ecs:c_t_r").unwrap().is_id());
        // Not hex: a Name tag that happens to look like an id.
        assert_eq!(parse("i-web").unwrap(), TargetSpec::Name("i-web".into()));
        assert_eq!(parse("i-").unwrap(), TargetSpec::Name("i-".into()));
    }

    #[test]
    fn every_form_is_recognised() {
        assert_eq!(parse("web-1").unwrap(), TargetSpec::Name("web-1".into()));
        assert_eq!(
            parse("tag:Role=db").unwrap(),
            TargetSpec::Tag {
                key: "Role".into(),
                value: "db".into()
            }
        );
        assert_eq!(
            parse("10.0.1.23").unwrap(),
            TargetSpec::PrivateIp("10.0.1.23".parse().unwrap())
        );
        assert_eq!(
            parse("ip-10-0-1-23.eu-west-1.compute.internal").unwrap(),
            TargetSpec::PrivateDns("ip-10-0-1-23.eu-west-1.compute.internal".into())
        );
        assert_eq!(
            parse("ecs:prod/0123abcd/app").unwrap(),
            TargetSpec::EcsTask {
                cluster: "prod".into(),
                task: "0123abcd".into(),
                container: Some("app".into())
            }
        );
        assert!(parse("tag:=x").is_err());
        assert!(parse("tag:novalue").is_err());
        assert!(parse("ecs:/t").is_err());
        assert!(parse("  ").is_err());
    }

    #[test]
    fn filters_match_the_spec() {
        assert_eq!(
            parse("web-1").unwrap().ec2_filter(),
            Some(("tag:Name".into(), "web-1".into()))
        );
        assert_eq!(
            parse("10.0.1.23").unwrap().ec2_filter(),
            Some(("private-ip-address".into(), "10.0.1.23".into()))
        );
        assert_eq!(parse("i-0abc").unwrap().ec2_filter(), None);
    }

    #[test]
    fn one_live_match_wins_and_terminated_ones_do_not_count() {
        assert_eq!(choose(&[]), Choice::NoMatch);
        assert_eq!(
            choose(&[inst("i-1", "web", "running")]),
            Choice::One("i-1".into())
        );
        assert_eq!(
            choose(&[
                inst("i-1", "web", "terminated"),
                inst("i-2", "web", "stopped")
            ]),
            Choice::One("i-2".into())
        );
        assert_eq!(choose(&[inst("i-1", "web", "terminated")]), Choice::NoMatch);
    }

    #[test]
    fn containers_are_chosen_by_name_or_when_alone() {
        let one = [("app", "r1")];
        assert_eq!(pick_container(&one, None).unwrap(), "r1");
        let two = [("app", "r1"), ("sidecar", "r2")];
        assert_eq!(pick_container(&two, Some("sidecar")).unwrap(), "r2");
        let e = pick_container(&two, None).unwrap_err().to_string();
        assert!(e.contains("app, sidecar"), "{e}");
        assert!(pick_container(&two, Some("db")).is_err());
        assert!(pick_container(&[], None).is_err());
    }

    #[test]
    fn several_matches_are_listed() {
        let many = [inst("i-1", "web", "running"), inst("i-2", "web", "stopped")];
        let Choice::Ambiguous(m) = choose(&many) else {
            panic!("expected ambiguity")
        };
        let msg = ambiguity_error(&parse("web").unwrap(), &m).to_string();
        assert!(msg.contains("matches 2 instances"), "{msg}");
        assert!(msg.contains("i-1  web  running  10.0.0.1"), "{msg}");
        assert!(msg.contains("i-2"), "{msg}");
        assert!(msg.contains("--pick"), "{msg}");
    }
}
