//! Instance state (DOCTOR.md 7) and agent registration (DOCTOR.md 1).

use super::{Check, Verdict};
use crate::commands::doctor::facts::Facts;

/// Agents older than this still talk to `ec2messages` (DOCTOR.md 3).
pub const EC2MESSAGES_UNTIL: [u32; 4] = [3, 3, 40, 0];

/// Whether an agent of `version` needs the `ec2messages` endpoint; `None` when unparsable.
pub fn needs_ec2messages(version: &str) -> Option<bool> {
    let parts: Vec<u32> = version
        .trim()
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<Vec<u32>>>()?;
    if parts.is_empty() {
        return None;
    }
    let mut padded = [0u32; 4];
    for (slot, p) in padded.iter_mut().zip(parts) {
        *slot = p;
    }
    Some(padded < EC2MESSAGES_UNTIL)
}

/// The agent's version as SSM reports it, when registered.
pub fn agent_version(facts: &Facts) -> Option<&str> {
    match &facts.node {
        Ok(Some(n)) => n.agent_version.as_deref(),
        _ => None,
    }
}

/// `instance`: exists in this region and is running.
pub fn state(facts: &Facts) -> Check {
    const NAME: &str = "instance";
    let id = &facts.target;
    if id.starts_with("mi-") {
        return Check::ok(
            NAME,
            format!("{id} is a hybrid managed node (no EC2 checks)"),
        );
    }
    match &facts.instance {
        Err(e) => Check::unknown(NAME, e),
        Ok(None) => Check::new(
            NAME,
            Verdict::Fail,
            format!("no instance {id} in region {}", facts.region),
            "check the id and --region",
        ),
        Ok(Some(i)) if i.state == "running" => {
            let platform = i
                .platform
                .as_deref()
                .map(|p| format!(", {p}"))
                .unwrap_or_default();
            Check::ok(
                NAME,
                format!(
                    "{id} running in {}{platform}",
                    i.az.as_deref().unwrap_or("?")
                ),
            )
        }
        Ok(Some(i)) if matches!(i.state.as_str(), "stopped" | "stopping") => Check::new(
            NAME,
            Verdict::Fail,
            format!("{id} is {}", i.state),
            format!("start it: aws ec2 start-instances --instance-ids {id}"),
        ),
        Ok(Some(i)) if i.state == "pending" => Check::new(
            NAME,
            Verdict::Warn,
            format!("{id} is pending"),
            "wait a minute for it to boot and the agent to register",
        ),
        Ok(Some(i)) => Check::new(
            NAME,
            Verdict::Fail,
            format!("{id} is {}", i.state),
            "it cannot come back: use another instance",
        ),
    }
}

/// `agent`: registered with SSM and online.
pub fn agent(facts: &Facts) -> Check {
    const NAME: &str = "agent";
    match &facts.node {
        Err(e) => Check::unknown(NAME, e),
        Ok(None) => Check::new(
            NAME,
            Verdict::Fail,
            format!("{} is not registered with SSM (DescribeInstanceInformation)", facts.target),
            "the agent never reached SSM: fix the failing checks below; if they pass, make sure \
             amazon-ssm-agent is installed and running (sudo systemctl enable --now amazon-ssm-agent)",
        ),
        Ok(Some(n)) => {
            let version = n.agent_version.as_deref().unwrap_or("?");
            let last = n
                .last_ping
                .as_deref()
                .map(|t| format!(", last ping {t}"))
                .unwrap_or_default();
            let evidence = format!("PingStatus {}, agent {version}{last}", n.ping_status);
            match n.ping_status.as_str() {
                "Online" => Check::ok(NAME, evidence),
                "ConnectionLost" => Check::new(
                    NAME,
                    Verdict::Fail,
                    evidence,
                    "the agent stopped reaching SSM: fix the failing checks below, or restart it \
                     (sudo systemctl restart amazon-ssm-agent)",
                ),
                _ => Check::new(
                    NAME,
                    Verdict::Fail,
                    evidence,
                    "the node is inactive: start the instance or re-register the agent",
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{Ec2Instance, ManagedNode, Unavailable};

    fn facts() -> Facts {
        Facts {
            target: "i-1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn ec2messages_is_needed_only_before_3_3_40() {
        assert_eq!(needs_ec2messages("3.3.39.9"), Some(true));
        assert_eq!(needs_ec2messages("3.2.582.0"), Some(true));
        assert_eq!(needs_ec2messages("2.3.1"), Some(true));
        assert_eq!(needs_ec2messages("3.3.40.0"), Some(false));
        assert_eq!(needs_ec2messages("3.3.1802.0"), Some(false));
        assert_eq!(needs_ec2messages("3.4"), Some(false));
        assert_eq!(needs_ec2messages("x"), None);
        assert_eq!(needs_ec2messages(""), None);
    }

    #[test]
    fn instance_states() {
        let mut f = facts();
        let with = |state: &str| {
            Ok(Some(Ec2Instance {
                id: "i-1".into(),
                state: state.into(),
                ..Default::default()
            }))
        };
        f.instance = with("running");
        assert_eq!(state(&f).verdict, Verdict::Ok);
        f.instance = with("stopped");
        let c = state(&f);
        assert_eq!(c.verdict, Verdict::Fail);
        assert_eq!(
            c.fix,
            "start it: aws ec2 start-instances --instance-ids i-1"
        );
        f.instance = with("pending");
        assert_eq!(state(&f).verdict, Verdict::Warn);
        f.instance = with("terminated");
        assert_eq!(state(&f).verdict, Verdict::Fail);
        f.instance = Ok(None);
        assert!(state(&f)
            .evidence
            .contains("no instance i-1 in region eu-west-1"));
        f.instance = Err(Unavailable::Denied("ec2:DescribeInstances".into()));
        let c = state(&f);
        assert_eq!(c.verdict, Verdict::Unknown);
        assert_eq!(c.evidence, "unknown (needs ec2:DescribeInstances)");
        f.target = "mi-1".into();
        assert_eq!(state(&f).verdict, Verdict::Ok);
    }

    #[test]
    fn agent_registration() {
        let mut f = facts();
        f.node = Ok(None);
        let c = agent(&f);
        assert_eq!(c.verdict, Verdict::Fail);
        assert!(c.evidence.contains("not registered"));
        let node = |ping: &str| {
            Ok(Some(ManagedNode {
                id: "i-1".into(),
                ping_status: ping.into(),
                agent_version: Some("3.3.1802.0".into()),
                ..Default::default()
            }))
        };
        f.node = node("Online");
        assert_eq!(agent(&f).verdict, Verdict::Ok);
        assert_eq!(agent_version(&f), Some("3.3.1802.0"));
        f.node = node("ConnectionLost");
        assert_eq!(agent(&f).verdict, Verdict::Fail);
        f.node = node("Inactive");
        assert_eq!(agent(&f).verdict, Verdict::Fail);
        f.node = Err(Unavailable::Denied(
            "ssm:DescribeInstanceInformation".into(),
        ));
        assert_eq!(agent(&f).verdict, Verdict::Unknown);
    }
}
