//! `rssm list`: every managed node joined with its EC2 facts (Name, state, private IP), plus
//! running EC2 instances that never registered with SSM — those are the ones people ask about.

use anyhow::Result;
use comfy_table::{presets, Table};

use crate::aws::Aws;
use crate::cli::OutputFormat;
use crate::inventory::{self, Ec2Instance, ManagedNode, Unavailable};

/// One row of the listing.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Row {
    /// `i-…` or `mi-…`.
    pub id: String,
    /// EC2 `Name` tag (or the activation name of a hybrid node).
    pub name: Option<String>,
    /// EC2 state (`running`, `stopped`…); `None` for hybrid nodes.
    pub state: Option<String>,
    /// Platform as the agent reports it, else as EC2 does.
    pub platform: Option<String>,
    /// SSM agent version.
    pub agent_version: Option<String>,
    /// SSM `PingStatus`; `NotRegistered` for EC2 instances SSM does not know.
    pub ping_status: String,
    /// Private IPv4 address.
    pub private_ip: Option<String>,
}

/// Runs `rssm list`.
pub async fn run(aws: &Aws, output: OutputFormat, quiet: bool) -> Result<u8> {
    // Both calls at once; EC2 is optional (hybrid-only accounts, missing permission).
    let (nodes, instances) = tokio::join!(
        inventory::managed_nodes(aws, None),
        inventory::describe_instances_by(aws, &[], &[])
    );
    let nodes = nodes.map_err(|e| anyhow::anyhow!("cannot list managed nodes: {e}"))?;
    let instances = match instances {
        Ok(i) => i,
        Err(e) => {
            let why = match &e {
                Unavailable::Denied(_) => e.to_string(),
                Unavailable::Failed(m) => m.clone(),
            };
            if !quiet {
                crate::notice(&format!("EC2 details left out ({why})"));
            }
            Vec::new()
        }
    };
    let rows = join(&nodes, &instances);
    match output {
        OutputFormat::Json => print_out(&serde_json::to_string_pretty(&rows)?)?,
        OutputFormat::Table => {
            let text = table(&rows).to_string();
            let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
            print_out(&lines.join("\n"))?
        }
    }
    Ok(0)
}

/// A line on stdout; a reader that went away (`rssm list | head`) is not an error.
pub fn print_out(text: &str) -> Result<()> {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Joins managed nodes with EC2 instances by id: managed nodes first (in the service's order),
/// then live EC2 instances without an agent registration.
pub fn join(nodes: &[ManagedNode], instances: &[Ec2Instance]) -> Vec<Row> {
    let by_id = |id: &str| instances.iter().find(|i| i.id == id);
    let mut rows: Vec<Row> = nodes
        .iter()
        .map(|n| {
            let ec2 = by_id(&n.id);
            Row {
                id: n.id.clone(),
                name: ec2.and_then(|i| i.name.clone()).or_else(|| n.name.clone()),
                state: ec2.map(|i| i.state.clone()),
                platform: n
                    .platform
                    .clone()
                    .or_else(|| ec2.and_then(|i| i.platform.clone())),
                agent_version: n.agent_version.clone(),
                ping_status: n.ping_status.clone(),
                private_ip: ec2
                    .and_then(|i| i.private_ip.clone())
                    .or_else(|| n.ip.clone()),
            }
        })
        .collect();
    for i in instances {
        if i.state == "terminated" || nodes.iter().any(|n| n.id == i.id) {
            continue;
        }
        rows.push(Row {
            id: i.id.clone(),
            name: i.name.clone(),
            state: Some(i.state.clone()),
            platform: i.platform.clone(),
            agent_version: None,
            ping_status: "NotRegistered".into(),
            private_ip: i.private_ip.clone(),
        });
    }
    rows
}

/// The human table.
pub fn table(rows: &[Row]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING).set_header(vec![
        "ID",
        "NAME",
        "STATE",
        "PLATFORM",
        "AGENT",
        "PING",
        "PRIVATE IP",
    ]);
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    for r in rows {
        t.add_row(vec![
            r.id.clone(),
            dash(&r.name),
            dash(&r.state),
            dash(&r.platform),
            dash(&r.agent_version),
            r.ping_status.clone(),
            dash(&r.private_ip),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_nodes_with_instances_and_adds_unregistered_ones() {
        let nodes = vec![
            ManagedNode {
                id: "i-1".into(),
                ping_status: "Online".into(),
                agent_version: Some("3.3.1802.0".into()),
                platform: Some("Amazon Linux 2023".into()),
                ip: Some("10.0.0.9".into()),
                ..Default::default()
            },
            ManagedNode {
                id: "mi-2".into(),
                ping_status: "ConnectionLost".into(),
                name: Some("build-box".into()),
                ..Default::default()
            },
        ];
        let instances = vec![
            Ec2Instance {
                id: "i-1".into(),
                name: Some("web-1".into()),
                state: "running".into(),
                private_ip: Some("10.0.0.10".into()),
                ..Default::default()
            },
            Ec2Instance {
                id: "i-3".into(),
                state: "running".into(),
                ..Default::default()
            },
            Ec2Instance {
                id: "i-4".into(),
                state: "terminated".into(),
                ..Default::default()
            },
        ];
        let rows = join(&nodes, &instances);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].name.as_deref(), Some("web-1"));
        assert_eq!(rows[0].private_ip.as_deref(), Some("10.0.0.10"));
        assert_eq!(rows[0].state.as_deref(), Some("running"));
        assert_eq!(rows[1].name.as_deref(), Some("build-box"));
        assert_eq!(rows[1].state, None);
        assert_eq!(rows[2].id, "i-3");
        assert_eq!(rows[2].ping_status, "NotRegistered");
        let text = table(&rows).to_string();
        assert!(text.contains("PING"), "{text}");
        assert!(text.contains("web-1"), "{text}");
    }
}
