//! The checks of DOCTOR.md as pure functions: facts in, one row per check out.
//!
//! - `instance.rs`: instance state and agent registration (DOCTOR.md 1, 7)
//! - `iam.rs`: the instance role (2)
//! - `network.rs`: routes, VPC endpoints, VPC DNS (3)
//! - `firewall.rs`: security groups and network ACLs (4–6)
//! - `caller.rs`: credentials, session permissions, the client's own reach (8–10)

pub mod caller;
pub mod firewall;
#[cfg(test)]
pub mod fixture;
pub mod iam;
pub mod instance;
pub mod network;

use super::facts::Facts;

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Nothing to do.
    Ok,
    /// Works, but worth a look.
    Warn,
    /// Breaks Session Manager: follow the fix.
    Fail,
    /// Could not be checked (the evidence says why, e.g. the permission needed).
    Unknown,
}

impl Verdict {
    /// The word shown in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
            Verdict::Unknown => "unknown",
        }
    }
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// What was checked, e.g. `endpoint ssmmessages`.
    pub check: String,
    /// The outcome.
    pub verdict: Verdict,
    /// What was seen.
    pub evidence: String,
    /// What to do; empty when nothing.
    pub fix: String,
}

impl Check {
    /// A row.
    pub fn new(
        check: &str,
        verdict: Verdict,
        evidence: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            check: check.to_owned(),
            verdict,
            evidence: evidence.into(),
            fix: fix.into(),
        }
    }

    /// An ok row.
    pub fn ok(check: &str, evidence: impl Into<String>) -> Check {
        Check::new(check, Verdict::Ok, evidence, "")
    }

    /// An unknown row: `why` is e.g. "needs ec2:DescribeVpcEndpoints".
    pub fn unknown(check: &str, why: impl std::fmt::Display) -> Check {
        Check::new(check, Verdict::Unknown, format!("unknown ({why})"), "")
    }
}

/// Every check, in the order a person would walk them.
pub fn all(facts: &Facts) -> Vec<Check> {
    let mut rows = vec![
        caller::credentials(facts),
        instance::state(facts),
        instance::agent(facts),
    ];
    rows.push(iam::instance_role(facts));
    rows.extend(network::checks(facts));
    rows.extend(firewall::checks(facts));
    rows.push(caller::permissions(facts));
    rows.push(caller::ssh_key_push(facts));
    rows.push(caller::reach(facts));
    rows
}

/// True when any check failed (exit status 1).
pub fn any_failed(rows: &[Check]) -> bool {
    rows.iter().any(|r| r.verdict == Verdict::Fail)
}
