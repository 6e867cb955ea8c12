//! The simulated fleet: which targets exist, whether their agent is online, and what they report.
//!
//! Loaded from a TOML or JSON file (`--fleet`) or the built-in default. The fields mirror what
//! `DescribeInstanceInformation` returns for a real managed node, so tools that list instances see
//! a believable fleet.

mod demo;
pub mod iam;
pub mod network;

pub use iam::Iam;
pub use network::Network;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Errors reading a fleet file.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The file could not be read.
    #[error("cannot read fleet file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML did not parse.
    #[error("invalid TOML fleet file: {0}")]
    Toml(#[from] toml::de::Error),
    /// The JSON did not parse.
    #[error("invalid JSON fleet file: {0}")]
    Json(#[from] serde_json::Error),
    /// Two targets share an id.
    #[error("duplicate target id {0}")]
    Duplicate(String),
    /// A target names a subnet, security group or instance profile the fleet does not have.
    #[error("target {target}: no {what} {id} in the fleet")]
    Dangling {
        /// The target.
        target: String,
        /// `subnet`, `security group`, `instance profile`.
        what: &'static str,
        /// The missing id.
        id: String,
    },
}

/// Agent reachability, as `PingStatus` in `DescribeInstanceInformation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum PingStatus {
    /// The agent is connected: sessions can start.
    #[default]
    Online,
    /// The agent stopped pinging: StartSession fails with `TargetNotConnected`.
    ConnectionLost,
    /// The node is deregistered/stopped.
    Inactive,
}

impl PingStatus {
    /// The API string.
    pub fn as_str(self) -> &'static str {
        match self {
            PingStatus::Online => "Online",
            PingStatus::ConnectionLost => "ConnectionLost",
            PingStatus::Inactive => "Inactive",
        }
    }
}

/// One simulated target (EC2 instance, on-premises managed instance, or ECS task container).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// `i-…`, `mi-…` or `ecs:<cluster>_<task>_<runtimeId>`.
    pub id: String,
    /// Agent reachability.
    #[serde(default)]
    pub ping_status: PingStatus,
    /// False when the agent never reached SSM (no instance role, no path to the service):
    /// DescribeInstanceInformation does not list the node at all, whatever `ping_status` says.
    #[serde(default = "registered")]
    pub registered: bool,
    /// Reported agent version; also the `AgentVersion` in handshakes.
    #[serde(default = "default_agent_version")]
    pub agent_version: String,
    /// `Linux`, `Windows` or `MacOS`.
    #[serde(default = "default_platform_type")]
    pub platform_type: String,
    /// e.g. `Amazon Linux`.
    #[serde(default = "default_platform_name")]
    pub platform_name: String,
    /// e.g. `2023`.
    #[serde(default = "default_platform_version")]
    pub platform_version: String,
    /// Private IP address shown in the listing.
    #[serde(default = "default_ip")]
    pub ip_address: String,
    /// Host name shown in the listing.
    #[serde(default)]
    pub computer_name: Option<String>,
    /// Tags (the `Name` tag is what users search by).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// When true, StartSession on this target answers `AccessDeniedException`.
    #[serde(default)]
    pub deny_sessions: bool,
    /// When true, EC2 Instance Connect SendSSHPublicKey for this instance answers
    /// `AuthException` (the caller lacks `ec2-instance-connect:SendSSHPublicKey`).
    #[serde(default)]
    pub deny_instance_connect: bool,
    /// EC2 instance state shown by DescribeInstances (`running`, `stopped`, …).
    #[serde(default = "default_state")]
    pub state: String,
    /// The EC2 instance's subnet (its VPC follows), from [`Fleet::network`].
    #[serde(default = "default_subnet")]
    pub subnet_id: String,
    /// The EC2 instance's security groups.
    #[serde(default = "default_security_groups")]
    pub security_groups: Vec<String>,
    /// The attached instance profile's name, from [`Fleet::iam`]; `""` for none (a plain
    /// string, so that "none" survives a file that leaves the field out for the default).
    #[serde(default = "default_profile")]
    pub instance_profile: String,
}

fn registered() -> bool {
    true
}
fn default_agent_version() -> String {
    "3.3.1802.0".to_owned()
}
fn default_platform_type() -> String {
    "Linux".to_owned()
}
fn default_platform_name() -> String {
    "Amazon Linux".to_owned()
}
fn default_platform_version() -> String {
    "2023".to_owned()
}
fn default_state() -> String {
    "running".to_owned()
}
fn default_ip() -> String {
    "10.0.0.10".to_owned()
}
fn default_subnet() -> String {
    demo::APP_SUBNET.to_owned()
}
fn default_security_groups() -> Vec<String> {
    vec![demo::APP_SG.to_owned()]
}
fn default_profile() -> String {
    demo::PROFILE.to_owned()
}

/// What kind of resource a target id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    /// `i-…`.
    Ec2Instance,
    /// `mi-…`.
    ManagedInstance,
    /// `ecs:…`.
    EcsTask,
}

impl Target {
    /// A target with default attributes.
    pub fn new(id: impl Into<String>) -> Target {
        Target {
            id: id.into(),
            ping_status: PingStatus::Online,
            registered: true,
            agent_version: default_agent_version(),
            platform_type: default_platform_type(),
            platform_name: default_platform_name(),
            platform_version: default_platform_version(),
            ip_address: default_ip(),
            computer_name: None,
            tags: BTreeMap::new(),
            deny_sessions: false,
            deny_instance_connect: false,
            state: default_state(),
            subnet_id: default_subnet(),
            security_groups: default_security_groups(),
            instance_profile: default_profile(),
        }
    }

    /// The resource kind, from the id prefix.
    pub fn kind(&self) -> ResourceKind {
        if self.id.starts_with("mi-") {
            ResourceKind::ManagedInstance
        } else if self.id.starts_with("ecs:") {
            ResourceKind::EcsTask
        } else {
            ResourceKind::Ec2Instance
        }
    }

    /// The `Name` tag, if any.
    pub fn name(&self) -> Option<&str> {
        self.tags.get("Name").map(String::as_str)
    }

    /// The attached instance profile's name, if any.
    pub fn profile(&self) -> Option<&str> {
        Some(self.instance_profile.as_str()).filter(|p| !p.is_empty())
    }

    /// True when sessions can be started.
    pub fn is_online(&self) -> bool {
        self.registered && self.ping_status == PingStatus::Online
    }

    /// For ECS targets `ecs:<cluster>_<taskId>_<runtimeId>`: (cluster, task id, runtime id).
    pub fn ecs_parts(&self) -> Option<(&str, &str, &str)> {
        let rest = self.id.strip_prefix("ecs:")?;
        let mut it = rest.splitn(3, '_');
        Some((it.next()?, it.next()?, it.next()?))
    }
}

/// The set of targets the simulator knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fleet {
    /// All targets, in listing order.
    #[serde(rename = "target", alias = "targets", default)]
    pub targets: Vec<Target>,
    /// The VPCs the EC2 instances live in (the demo's when the file has none).
    #[serde(default = "demo::network")]
    pub network: Network,
    /// Instance profiles and roles (the demo's when the file has none).
    #[serde(default = "demo::iam")]
    pub iam: Iam,
}

impl Fleet {
    /// Reads a fleet file: JSON if the name ends in `.json` (or the text starts with `{`), TOML otherwise.
    ///
    /// TOML shape: `[[target]]` tables with the [`Target`] fields; JSON: `{"targets": [...]}`.
    pub fn load(path: &Path) -> Result<Fleet, FleetError> {
        let text = std::fs::read_to_string(path).map_err(|source| FleetError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let is_json =
            path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
        let fleet: Fleet = if is_json {
            serde_json::from_str(&text)?
        } else {
            toml::from_str(&text)?
        };
        fleet.check()?;
        Ok(fleet)
    }

    /// Rejects duplicate ids, and EC2 instances naming a subnet, security group or instance
    /// profile the fleet does not have.
    pub fn check(&self) -> Result<(), FleetError> {
        let mut seen = std::collections::HashSet::new();
        for t in &self.targets {
            if !seen.insert(t.id.as_str()) {
                return Err(FleetError::Duplicate(t.id.clone()));
            }
            if t.kind() != ResourceKind::Ec2Instance {
                continue;
            }
            let dangling = |what, id: &str| FleetError::Dangling {
                target: t.id.clone(),
                what,
                id: id.to_owned(),
            };
            if self.network.subnet(&t.subnet_id).is_none() {
                return Err(dangling("subnet", &t.subnet_id));
            }
            if let Some(g) = t
                .security_groups
                .iter()
                .find(|g| self.network.security_group(g).is_none())
            {
                return Err(dangling("security group", g));
            }
            if let Some(p) = t.profile().filter(|p| self.iam.profile(p).is_none()) {
                return Err(dangling("instance profile", p));
            }
        }
        Ok(())
    }

    /// Looks a target up by id.
    pub fn get(&self, id: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.id == id)
    }

    /// Looks an ECS task container up by cluster name/ARN tail and task id/ARN tail.
    pub fn find_ecs(&self, cluster: &str, task: &str) -> Option<&Target> {
        let cluster = cluster.rsplit('/').next().unwrap_or(cluster);
        let task = task.rsplit('/').next().unwrap_or(task);
        self.targets.iter().find(|t| {
            t.ecs_parts()
                .is_some_and(|(c, k, _)| c == cluster && k == task)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_fleet_has_the_documented_targets() {
        let f = Fleet::default();
        f.check().unwrap();
        let demo = f.get("i-0123456789abcdef0").unwrap();
        assert_eq!(demo.name(), Some("demo"));
        assert!(demo.is_online());
        assert!(f.targets.iter().any(|t| !t.is_online()));
        assert_eq!(demo.profile(), Some(demo::PROFILE));
        for broken in ["no-role", "no-endpoint", "no-443", "no-route"] {
            let t = f.targets.iter().find(|t| t.name() == Some(broken)).unwrap();
            assert!(!t.is_online(), "{broken}");
        }
        assert!(f
            .targets
            .iter()
            .any(|t| t.kind() == ResourceKind::ManagedInstance));
        let ecs = f
            .targets
            .iter()
            .find(|t| t.kind() == ResourceKind::EcsTask)
            .unwrap();
        let (c, task, _) = ecs.ecs_parts().unwrap();
        assert_eq!(
            f.find_ecs(&format!("arn:aws:ecs:us-east-1:1:cluster/{c}"), task)
                .map(|t| &t.id),
            Some(&ecs.id)
        );
    }

    #[test]
    fn the_default_fleet_round_trips_through_toml() {
        let f = Fleet::default();
        let text = toml::to_string(&f).unwrap();
        assert!(text.contains("[[network.route_table.route]]"), "{text}");
        let back: Fleet = toml::from_str(&text).unwrap();
        assert_eq!(back, f);
        back.check().unwrap();
    }

    #[test]
    fn parses_toml_and_json_fleets() {
        let dir = std::env::temp_dir().join(format!("rssm-sim-fleet-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let toml_path = dir.join("fleet.toml");
        std::fs::write(
            &toml_path,
            "[[target]]\nid = \"i-1\"\nping_status = \"ConnectionLost\"\ntags = { Name = \"x\" }\n",
        )
        .unwrap();
        let f = Fleet::load(&toml_path).unwrap();
        assert_eq!(f.targets[0].ping_status, PingStatus::ConnectionLost);
        assert_eq!(f.targets[0].name(), Some("x"));
        assert_eq!(f.network, demo::network());
        std::fs::write(
            &toml_path,
            "[[target]]\nid = \"i-1\"\ninstance_profile = \"\"\n",
        )
        .unwrap();
        assert_eq!(Fleet::load(&toml_path).unwrap().targets[0].profile(), None);
        std::fs::write(
            &toml_path,
            "[[target]]\nid = \"i-1\"\nsubnet_id = \"subnet-x\"\n",
        )
        .unwrap();
        assert!(matches!(
            Fleet::load(&toml_path),
            Err(FleetError::Dangling { what: "subnet", .. })
        ));
        let json_path = dir.join("fleet.json");
        std::fs::write(&json_path, r#"{"targets":[{"id":"mi-2"},{"id":"mi-2"}]}"#).unwrap();
        assert!(matches!(
            Fleet::load(&json_path),
            Err(FleetError::Duplicate(_))
        ));
    }
}
