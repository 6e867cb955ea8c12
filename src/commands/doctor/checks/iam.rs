//! The instance role (DOCTOR.md 2): a profile attached, and a role allowing the agent's calls.

use serde_json::Value;

use super::instance::{agent_version, needs_ec2messages};
use super::{Check, Verdict};
use crate::commands::doctor::facts::Facts;

/// The AWS managed policy made for this.
pub const CORE_POLICY: &str = "AmazonSSMManagedInstanceCore";

/// What every agent calls.
const AGENT_ACTIONS: [&str; 5] = [
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
];

/// What agents older than 3.3.40.0 call too.
const EC2MESSAGES_ACTIONS: [&str; 3] = [
    "ec2messages:GetMessages",
    "ec2messages:AcknowledgeMessage",
    "ec2messages:SendReply",
];

/// `instance role`.
pub fn instance_role(facts: &Facts) -> Check {
    const NAME: &str = "instance role";
    let id = &facts.target;
    if id.starts_with("mi-") {
        return Check::ok(NAME, "hybrid node: uses its activation's service role");
    }
    if matches!(facts.instance, Ok(None)) {
        return Check::unknown(NAME, "no such instance");
    }
    let attach_fix = format!(
        "attach an instance profile whose role has the AWS managed policy {CORE_POLICY}: \
         aws ec2 associate-iam-instance-profile --instance-id {id} --iam-instance-profile Name=PROFILE"
    );
    let role = match &facts.role {
        Err(e) => return Check::unknown(NAME, e),
        Ok(None) => {
            return Check::new(
                NAME,
                Verdict::Fail,
                "no instance profile attached",
                attach_fix,
            )
        }
        Ok(Some(r)) => r,
    };
    let Some(role_name) = &role.role else {
        return Check::new(
            NAME,
            Verdict::Fail,
            format!("instance profile {} contains no role", role.profile),
            format!(
                "aws iam add-role-to-instance-profile --instance-profile-name {} --role-name ROLE \
                 (a role with {CORE_POLICY})",
                role.profile
            ),
        );
    };
    let policy_fix = format!(
        "aws iam attach-role-policy --role-name {role_name} --policy-arn arn:aws:iam::aws:policy/{CORE_POLICY}"
    );
    if let Ok(attached) = &role.attached {
        if attached.iter().any(|p| p == CORE_POLICY) {
            return Check::ok(NAME, format!("role {role_name} has {CORE_POLICY}"));
        }
    }
    let documents = match &role.documents {
        Ok(d) => d,
        Err(e) => return Check::unknown(NAME, format!("role {role_name}: {e}")),
    };
    let mut required: Vec<&str> = AGENT_ACTIONS.to_vec();
    let old_agent = agent_version(facts).and_then(needs_ec2messages) == Some(true);
    if old_agent {
        required.extend(EC2MESSAGES_ACTIONS);
    }
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|a| !allowed(documents, a))
        .collect();
    let attached = role
        .attached
        .as_ref()
        .map(|a| {
            if a.is_empty() {
                "none".to_owned()
            } else {
                a.join(", ")
            }
        })
        .unwrap_or_else(|e| e.to_string());
    if missing.is_empty() {
        Check::ok(
            NAME,
            format!("role {role_name} allows the agent's calls (policies: {attached})"),
        )
    } else {
        Check::new(
            NAME,
            Verdict::Fail,
            format!(
                "role {role_name} (attached: {attached}) does not allow {}",
                missing.join(", ")
            ),
            policy_fix,
        )
    }
}

/// Whether the policy documents allow `action` on any resource: some Allow statement matches
/// and no Deny does. Conditions and resources are not evaluated (the agent's actions are on `*`).
pub fn allowed(documents: &[String], action: &str) -> bool {
    let mut allow = false;
    for doc in documents {
        let Ok(v) = serde_json::from_str::<Value>(doc) else {
            continue;
        };
        let statements = match &v["Statement"] {
            Value::Array(a) => a.clone(),
            s @ Value::Object(_) => vec![s.clone()],
            _ => continue,
        };
        for s in &statements {
            if !list(&s["Action"]).iter().any(|p| action_matches(p, action)) {
                continue;
            }
            match s["Effect"].as_str() {
                Some("Allow") => allow = true,
                Some("Deny") => return false,
                _ => {}
            }
        }
    }
    allow
}

fn list(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// IAM action patterns: case-insensitive, `*` any run, `?` one character.
pub fn action_matches(pattern: &str, action: &str) -> bool {
    fn go(p: &[u8], a: &[u8]) -> bool {
        match (p.first(), a.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], a) || (!a.is_empty() && go(p, &a[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &a[1..]),
            (Some(x), Some(y)) if x.eq_ignore_ascii_case(y) => go(&p[1..], &a[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), action.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::doctor::facts::RoleFacts;
    use crate::inventory::{Ec2Instance, ManagedNode, Unavailable};

    fn facts(role: Option<RoleFacts>) -> Facts {
        Facts {
            target: "i-1".into(),
            instance: Ok(Some(Ec2Instance {
                id: "i-1".into(),
                ..Default::default()
            })),
            role: Ok(role),
            ..Default::default()
        }
    }

    fn role(attached: &[&str], docs: &[&str]) -> RoleFacts {
        RoleFacts {
            profile: "p".into(),
            role: Some("r".into()),
            attached: Ok(attached.iter().map(|s| s.to_string()).collect()),
            documents: Ok(docs.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn patterns() {
        assert!(action_matches("ssm:*", "ssm:UpdateInstanceInformation"));
        assert!(action_matches("*", "ssmmessages:OpenDataChannel"));
        assert!(action_matches(
            "SSMMESSAGES:open*",
            "ssmmessages:OpenDataChannel"
        ));
        assert!(action_matches(
            "ssm:UpdateInstance?nformation",
            "ssm:UpdateInstanceInformation"
        ));
        assert!(!action_matches("ssm:*", "ssmmessages:OpenDataChannel"));
        assert!(!action_matches("ssm:Get*", "ssm:UpdateInstanceInformation"));
    }

    #[test]
    fn no_profile_fails_with_the_attach_command() {
        let c = instance_role(&facts(None));
        assert_eq!(c.verdict, Verdict::Fail);
        assert_eq!(c.evidence, "no instance profile attached");
        assert!(c
            .fix
            .contains("aws ec2 associate-iam-instance-profile --instance-id i-1"));
        assert!(c.fix.contains(CORE_POLICY));
    }

    #[test]
    fn the_core_policy_is_enough() {
        let c = instance_role(&facts(Some(role(&[CORE_POLICY], &[]))));
        assert_eq!(c.verdict, Verdict::Ok, "{c:?}");
    }

    #[test]
    fn equivalent_statements_are_enough_and_gaps_are_named() {
        let ok = r#"{"Statement":[{"Effect":"Allow","Action":["ssm:UpdateInstanceInformation","ssmmessages:*"],"Resource":"*"}]}"#;
        assert_eq!(
            instance_role(&facts(Some(role(&["Mine"], &[ok])))).verdict,
            Verdict::Ok
        );
        let partial = r#"{"Statement":{"Effect":"Allow","Action":"ssmmessages:*","Resource":"*"}}"#;
        let c = instance_role(&facts(Some(role(&["Mine"], &[partial]))));
        assert_eq!(c.verdict, Verdict::Fail);
        assert!(
            c.evidence
                .contains("does not allow ssm:UpdateInstanceInformation"),
            "{c:?}"
        );
        assert_eq!(
            c.fix,
            "aws iam attach-role-policy --role-name r --policy-arn arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
        );
        let denied = r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},{"Effect":"Deny","Action":"ssmmessages:Open*","Resource":"*"}]}"#;
        let c = instance_role(&facts(Some(role(&[], &[denied]))));
        assert_eq!(c.verdict, Verdict::Fail);
        assert!(c.evidence.contains("ssmmessages:OpenControlChannel"));
        let c = instance_role(&facts(Some(role(&[], &[]))));
        assert!(c.evidence.contains("attached: none"), "{c:?}");
    }

    #[test]
    fn old_agents_need_ec2messages_too() {
        let doc = r#"{"Statement":[{"Effect":"Allow","Action":["ssm:*","ssmmessages:*"],"Resource":"*"}]}"#;
        let mut f = facts(Some(role(&[], &[doc])));
        assert_eq!(instance_role(&f).verdict, Verdict::Ok);
        f.node = Ok(Some(ManagedNode {
            agent_version: Some("3.2.582.0".into()),
            ..Default::default()
        }));
        let c = instance_role(&f);
        assert_eq!(c.verdict, Verdict::Fail);
        assert!(c.evidence.contains("ec2messages:GetMessages"));
    }

    #[test]
    fn missing_permissions_make_it_unknown() {
        let mut f = facts(None);
        f.role = Err(Unavailable::Denied("iam:GetInstanceProfile".into()));
        assert_eq!(
            instance_role(&f).evidence,
            "unknown (needs iam:GetInstanceProfile)"
        );
        let mut r = role(&["Mine"], &[]);
        r.documents = Err(Unavailable::Denied("iam:GetPolicyVersion".into()));
        let c = instance_role(&facts(Some(r)));
        assert_eq!(c.verdict, Verdict::Unknown);
        assert!(c.evidence.contains("needs iam:GetPolicyVersion"));
        let mut r = role(&[], &[]);
        r.role = None;
        assert_eq!(instance_role(&facts(Some(r))).verdict, Verdict::Fail);
    }
}
