//! The caller's side (DOCTOR.md 8–10): valid credentials, permission to start sessions, and
//! this machine's own reach to the SSM API.

use super::{Check, Verdict};
use crate::commands::doctor::facts::{Decision, Facts};

/// What a session needs from the caller.
pub const SESSION_ACTIONS: [&str; 3] = [
    "ssm:StartSession",
    "ssm:TerminateSession",
    "ssm:ResumeSession",
];

/// What `rssm ssh` needs to push its throwaway key (EC2 instances only).
pub const KEY_PUSH_ACTION: &str = "ec2-instance-connect:SendSSHPublicKey";

/// `credentials`.
pub fn credentials(facts: &Facts) -> Check {
    const NAME: &str = "credentials";
    match &facts.caller {
        Ok(c) => Check::ok(
            NAME,
            format!("{} (account {}, region {})", c.arn, c.account, facts.region),
        ),
        Err(e) => Check::new(
            NAME,
            Verdict::Fail,
            e.to_string(),
            "refresh or configure credentials (aws sso login, aws configure, --profile)",
        ),
    }
}

/// The IAM principal to simulate for a caller ARN: an assumed role's session becomes its role.
pub fn principal_arn(caller_arn: &str) -> String {
    // arn:aws:sts::123456789012:assumed-role/ROLE/SESSION → arn:aws:iam::123456789012:role/ROLE
    if let Some((head, rest)) = caller_arn.split_once(":assumed-role/") {
        let role = rest.split('/').next().unwrap_or(rest);
        let head = head.replacen(":sts:", ":iam:", 1);
        return format!("{head}:role/{role}");
    }
    caller_arn.to_owned()
}

/// `caller permissions`: ssm:StartSession and friends on the target.
pub fn permissions(facts: &Facts) -> Check {
    const NAME: &str = "caller permissions";
    match &facts.caller_permissions {
        Err(e) => Check::unknown(NAME, format!("could not simulate: {e}")),
        Ok(decisions) => {
            let session: Vec<&Decision> = decisions
                .iter()
                .filter(|d| SESSION_ACTIONS.contains(&d.action.as_str()))
                .collect();
            let denied: Vec<String> = session
                .iter()
                .filter(|d| d.decision != "allowed")
                .map(|d| format!("{} ({})", d.action, d.decision))
                .collect();
            if denied.is_empty() {
                let actions: Vec<&str> = session.iter().map(|d| d.action.as_str()).collect();
                Check::ok(NAME, format!("allowed: {}", actions.join(", ")))
            } else {
                let who = principal(facts);
                Check::new(
                    NAME,
                    Verdict::Fail,
                    format!("denied: {}", denied.join(", ")),
                    format!(
                        "grant {who} ssm:StartSession on the instance and the document, and \
                         ssm:TerminateSession/ssm:ResumeSession on its own sessions"
                    ),
                )
            }
        }
    }
}

/// Whom a fix asks to grant a permission: the caller as IAM knows it.
fn principal(facts: &Facts) -> String {
    facts
        .caller
        .as_ref()
        .map(|c| principal_arn(&c.arn))
        .unwrap_or_else(|_| "your principal".into())
}

/// `ssh key push`: whether `rssm ssh` can push its throwaway key (EC2 Instance Connect): the
/// target must be an EC2 instance, and the caller may call SendSSHPublicKey on it. Only `warn`:
/// Session Manager itself does not need it.
pub fn ssh_key_push(facts: &Facts) -> Check {
    const NAME: &str = "ssh key push";
    if !facts.target.starts_with("i-") {
        return Check::new(
            NAME,
            Verdict::Warn,
            format!(
                "{} is not an EC2 instance: EC2 Instance Connect cannot push keys to it",
                facts.target
            ),
            "for rssm ssh, log in with a key the node trusts: rssm ssh TARGET -i KEY",
        );
    }
    match &facts.caller_permissions {
        Err(e) => Check::unknown(NAME, format!("could not simulate: {e}")),
        Ok(decisions) => match decisions.iter().find(|d| d.action == KEY_PUSH_ACTION) {
            None => Check::unknown(NAME, format!("{KEY_PUSH_ACTION} was not simulated")),
            Some(d) if d.decision == "allowed" => {
                Check::ok(NAME, format!("allowed: {KEY_PUSH_ACTION}"))
            }
            Some(d) => {
                let who = principal(facts);
                Check::new(
                    NAME,
                    Verdict::Warn,
                    format!("denied: {KEY_PUSH_ACTION} ({})", d.decision),
                    format!(
                        "for rssm ssh, grant {who} {KEY_PUSH_ACTION} on the instance, or log in \
                         with a key it trusts (-i KEY)"
                    ),
                )
            }
        },
    }
}

/// `client reach`: TCP connections from here to the SSM API (and the `ssmmessages` endpoint
/// the data channel uses, unless the SSM endpoint is overridden).
pub fn reach(facts: &Facts) -> Check {
    const NAME: &str = "client reach";
    if facts.reach.is_empty() {
        return Check::unknown(NAME, "not probed");
    }
    if let Some(bad) = facts.reach.iter().find(|r| r.result.is_err()) {
        let e = bad.result.as_ref().err().map(String::as_str).unwrap_or("");
        let fix = if bad.proxied {
            "check the proxy (its address, credentials and whether it allows CONNECT to port 443), \
             or list the endpoint in NO_PROXY if it is reachable directly"
        } else {
            "check your proxy settings (HTTPS_PROXY, NO_PROXY, --proxy), VPN or firewall: HTTPS to \
             the ssm and ssmmessages endpoints must be allowed"
        };
        return Check::new(
            NAME,
            Verdict::Fail,
            format!("cannot connect to {} {}: {e}", bad.endpoint, bad.route),
            fix,
        );
    }
    let seen: Vec<String> = facts
        .reach
        .iter()
        .map(|r| {
            let ms = r.result.as_ref().unwrap_or(&0);
            format!("{} in {ms} ms, {}", r.endpoint, r.route)
        })
        .collect();
    Check::ok(NAME, format!("connected to {}", seen.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::doctor::facts::{Caller, Decision, Reach};
    use crate::inventory::Unavailable;

    #[test]
    fn assumed_roles_are_simulated_as_their_role() {
        assert_eq!(
            principal_arn("arn:aws:sts::123456789012:assumed-role/Admin/alice"),
            "arn:aws:iam::123456789012:role/Admin"
        );
        assert_eq!(
            principal_arn("arn:aws:iam::123456789012:user/bob"),
            "arn:aws:iam::123456789012:user/bob"
        );
    }

    #[test]
    fn credentials_and_permissions() {
        let mut f = Facts::default();
        assert_eq!(credentials(&f).verdict, Verdict::Fail);
        f.caller = Ok(Caller {
            arn: "arn:aws:sts::1:assumed-role/R/s".into(),
            account: "1".into(),
        });
        assert_eq!(credentials(&f).verdict, Verdict::Ok);
        f.caller_permissions = Err(Unavailable::Denied("iam:SimulatePrincipalPolicy".into()));
        let c = permissions(&f);
        assert_eq!(c.verdict, Verdict::Unknown);
        assert!(c.evidence.contains("needs iam:SimulatePrincipalPolicy"));
        f.caller_permissions = Ok(vec![
            Decision {
                action: "ssm:StartSession".into(),
                decision: "implicitDeny".into(),
            },
            Decision {
                action: "ssm:TerminateSession".into(),
                decision: "allowed".into(),
            },
        ]);
        let c = permissions(&f);
        assert_eq!(c.verdict, Verdict::Fail);
        assert_eq!(c.evidence, "denied: ssm:StartSession (implicitDeny)");
        assert!(c.fix.contains("arn:aws:iam::1:role/R"));
    }

    #[test]
    fn ssh_key_push_needs_an_ec2_instance_and_the_permission() {
        let mut f = Facts {
            target: "mi-0123456789abcdef0".into(),
            ..Facts::default()
        };
        let c = ssh_key_push(&f);
        assert_eq!(c.verdict, Verdict::Warn);
        assert!(c.evidence.contains("not an EC2 instance"));
        f.target = "i-0123456789abcdef0".into();
        let decide = |d: &str| {
            vec![
                Decision {
                    action: "ssm:StartSession".into(),
                    decision: "allowed".into(),
                },
                Decision {
                    action: KEY_PUSH_ACTION.into(),
                    decision: d.into(),
                },
            ]
        };
        f.caller_permissions = Ok(decide("allowed"));
        assert_eq!(ssh_key_push(&f).verdict, Verdict::Ok);
        assert_eq!(permissions(&f).verdict, Verdict::Ok);
        f.caller_permissions = Ok(decide("implicitDeny"));
        let c = ssh_key_push(&f);
        assert_eq!(c.verdict, Verdict::Warn);
        assert!(c.fix.contains(KEY_PUSH_ACTION));
        // A denied key push is not a Session Manager failure.
        assert_eq!(permissions(&f).verdict, Verdict::Ok);
        assert_eq!(permissions(&f).evidence, "allowed: ssm:StartSession");
    }

    #[test]
    fn reach_probe() {
        let mut f = Facts::default();
        assert_eq!(reach(&f).verdict, Verdict::Unknown);
        f.reach = vec![
            Reach {
                endpoint: "https://ssm.eu-west-1.amazonaws.com".into(),
                result: Ok(12),
                route: "direct (NO_PROXY lists ssm.eu-west-1.amazonaws.com)".into(),
                proxied: false,
            },
            Reach {
                endpoint: "wss://ssmmessages.eu-west-1.amazonaws.com".into(),
                result: Ok(14),
                route: "via http://proxy:3128 (HTTPS_PROXY)".into(),
                proxied: true,
            },
        ];
        let c = reach(&f);
        assert_eq!(c.verdict, Verdict::Ok);
        assert!(
            c.evidence.ends_with(
                "wss://ssmmessages.eu-west-1.amazonaws.com in 14 ms, via http://proxy:3128 (HTTPS_PROXY)"
            ),
            "{c:?}"
        );
        f.reach[1].result = Err("connection refused".into());
        let c = reach(&f);
        assert_eq!(c.verdict, Verdict::Fail);
        assert!(c.evidence.contains("ssmmessages"), "{c:?}");
        assert!(c.evidence.contains("via http://proxy:3128"), "{c:?}");
        assert!(c.fix.contains("NO_PROXY"), "{c:?}");
    }
}
