//! `rssm doctor` against real AWS API shapes: moto (EC2/VPC/IAM/STS) for the infrastructure,
//! built per scenario with boto3, and the simulator for SSM (agent registration). Each test
//! asserts the verdict and the fix text a user would follow.

mod common;
#[path = "common/moto.rs"]
mod moto;

use std::process::Output;
use std::time::Duration;

use common::{run_bounded, Sim};
use moto::Moto;
use rssm_sim::fleet::PingStatus;
use rssm_sim::{Fleet, SimConfig, Target};
use serde_json::Value;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/common/doctor_scenarios.py"
);

/// How the instance's agent appears to SSM.
enum Agent {
    Online,
    Lost(&'static str),
    NotRegistered,
}

/// A built scenario and doctor's verdicts on it.
struct Run {
    ids: Value,
    code: Option<i32>,
    rows: Vec<Value>,
    stderr: String,
}

impl Run {
    fn row(&self, name: &str) -> &Value {
        self.rows
            .iter()
            .find(|r| r["check"] == name)
            .unwrap_or_else(|| panic!("no row {name}: {:#?}", self.rows))
    }

    /// Asserts a row's verdict and that its fix contains `fix`.
    fn expect(&self, name: &str, verdict: &str, fix: &str) {
        let row = self.row(name);
        assert_eq!(row["verdict"], verdict, "{name}: {row:#}");
        let actual = row["fix"].as_str().unwrap_or("");
        assert!(actual.contains(fix), "{name}: fix {actual:?} lacks {fix:?}");
    }

    fn id(&self, key: &str) -> String {
        self.ids[key].as_str().unwrap_or_default().to_owned()
    }
}

fn start(scenario: &str, agent: Agent) -> (Moto, Sim, Value) {
    start_with(scenario, agent, SimConfig::default())
}

fn start_with(scenario: &str, agent: Agent, config: SimConfig) -> (Moto, Sim, Value) {
    let moto = Moto::start();
    let region = SimConfig::default().region;
    let ids = moto.build(SCRIPT, &[scenario], &region);
    let instance = ids["instance"].as_str().expect("instance id").to_owned();
    let mut fleet = Fleet::default();
    let mut node = Target::new(&instance);
    match agent {
        Agent::Online => fleet.targets.push(node),
        Agent::Lost(version) => {
            node.ping_status = PingStatus::ConnectionLost;
            node.agent_version = version.to_owned();
            fleet.targets.push(node);
        }
        Agent::NotRegistered => {}
    }
    let sim = Sim::with_config(SimConfig { fleet, ..config });
    (moto, sim, ids)
}

fn doctor_cmd(moto: &Moto, sim: &Sim, args: &[&str]) -> Output {
    let mut cmd = sim.rssm();
    for var in [
        "AWS_ENDPOINT_URL_EC2",
        "AWS_ENDPOINT_URL_IAM",
        "AWS_ENDPOINT_URL_STS",
    ] {
        cmd.env(var, &moto.url);
    }
    cmd.arg("doctor").args(args);
    run_bounded(cmd, Duration::from_secs(60))
}

fn doctor(scenario: &str, agent: Agent) -> Run {
    let (moto, sim, ids) = start(scenario, agent);
    run_json(&moto, &sim, ids)
}

fn run_json(moto: &Moto, sim: &Sim, ids: Value) -> Run {
    let instance = ids["instance"].as_str().unwrap_or_default().to_owned();
    let out = doctor_cmd(moto, sim, &[&instance, "--output", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}); stderr: {stderr}"));
    Run {
        ids,
        code: out.status.code(),
        rows: doc["checks"].as_array().cloned().unwrap_or_default(),
        stderr,
    }
}

#[test]
fn healthy_endpoint_setup_passes_every_check() {
    let r = doctor("healthy", Agent::Online);
    assert_eq!(r.code, Some(0), "{:#?} {}", r.rows, r.stderr);
    for name in [
        "credentials",
        "instance",
        "agent",
        "instance role",
        "route",
        "endpoint ssm",
        "endpoint ssmmessages",
        "VPC DNS",
        "instance SG egress",
        "endpoint SG ingress",
        "network ACLs",
        "client reach",
    ] {
        assert_eq!(r.row(name)["verdict"], "ok", "{name}: {:#}", r.row(name));
    }
    assert!(r.row("route")["evidence"]
        .as_str()
        .unwrap()
        .contains("not needed: VPC endpoints"));
    assert!(r.row("endpoint ec2messages")["evidence"]
        .as_str()
        .unwrap()
        .contains("not needed: agent 3.3.1802.0"));
    // moto has no SimulatePrincipalPolicy: that check is unknown, never a crash.
    assert_eq!(r.row("caller permissions")["verdict"], "unknown");
}

#[test]
fn nat_route_needs_no_endpoints() {
    let r = doctor("nat", Agent::Online);
    assert_eq!(r.code, Some(0), "{:#?}", r.rows);
    let route = r.row("route");
    assert_eq!(route["verdict"], "ok");
    let evidence = route["evidence"].as_str().unwrap();
    assert!(
        evidence.contains("(associated) routes 0.0.0.0/0 to nat-"),
        "{evidence}"
    );
    assert!(r.row("endpoint ssmmessages")["evidence"]
        .as_str()
        .unwrap()
        .contains("reached through nat-"));
    assert_eq!(
        r.row("endpoint SG ingress")["evidence"],
        "not used: no VPC endpoint on the path"
    );
}

#[test]
fn no_role() {
    let r = doctor("no-role", Agent::NotRegistered);
    assert_eq!(r.code, Some(1));
    r.expect(
        "instance role",
        "fail",
        &format!(
            "aws ec2 associate-iam-instance-profile --instance-id {}",
            r.id("instance")
        ),
    );
    r.expect("agent", "fail", "fix the failing checks below");
}

#[test]
fn role_without_the_policy() {
    let r = doctor("role-without-policy", Agent::NotRegistered);
    assert_eq!(r.code, Some(1));
    r.expect("instance role", "fail", &format!(
        "aws iam attach-role-policy --role-name {} --policy-arn arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
        r.id("role")
    ));
    let evidence = r.row("instance role")["evidence"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        evidence.contains("does not allow ssm:UpdateInstanceInformation"),
        "{evidence}"
    );
}

#[test]
fn no_endpoints_and_no_nat() {
    let r = doctor("no-endpoints-no-nat", Agent::NotRegistered);
    assert_eq!(r.code, Some(1));
    r.expect("route", "fail", "add a route 0.0.0.0/0 to a NAT gateway");
    let region = SimConfig::default().region;
    for svc in ["ssm", "ssmmessages"] {
        r.expect(
            &format!("endpoint {svc}"),
            "fail",
            &format!(
            "add an interface endpoint com.amazonaws.{region}.{svc} to {} with private DNS enabled",
            r.id("vpc")
        ),
        );
    }
}

#[test]
fn only_the_ssm_endpoint() {
    let r = doctor("only-ssm", Agent::NotRegistered);
    assert_eq!(r.code, Some(1));
    r.expect("endpoint ssm", "ok", "");
    r.expect(
        "endpoint ssmmessages",
        "fail",
        &format!("com.amazonaws.{}.ssmmessages", SimConfig::default().region),
    );
}

#[test]
fn endpoint_without_private_dns() {
    let r = doctor("no-private-dns", Agent::NotRegistered);
    assert_eq!(r.code, Some(1));
    let ep = r.ids["endpoints"]["ssmmessages"]
        .as_str()
        .unwrap()
        .to_owned();
    r.expect(
        "endpoint ssmmessages",
        "fail",
        &format!("aws ec2 modify-vpc-endpoint --vpc-endpoint-id {ep} --private-dns-enabled"),
    );
}

#[test]
fn vpc_dns_hostnames_off() {
    let r = doctor("dns-hostnames-off", Agent::NotRegistered);
    assert_eq!(r.code, Some(1));
    r.expect(
        "VPC DNS",
        "fail",
        &format!(
            "aws ec2 modify-vpc-attribute --vpc-id {} --enable-dns-hostnames",
            r.id("vpc")
        ),
    );
}

#[test]
fn old_agent_without_ec2messages_endpoint() {
    let r = doctor("old-agent", Agent::Lost("3.2.582.0"));
    assert_eq!(r.code, Some(1));
    r.expect("agent", "fail", "restart");
    r.expect(
        "endpoint ec2messages",
        "fail",
        &format!(
            "add an interface endpoint com.amazonaws.{}.ec2messages",
            SimConfig::default().region
        ),
    );
    r.expect("endpoint ssmmessages", "ok", "");
}

#[test]
fn instance_sg_without_outbound_443() {
    let r = doctor("instance-sg-no-443", Agent::NotRegistered);
    assert_eq!(r.code, Some(1));
    r.expect("instance SG egress", "fail", &format!(
        "aws ec2 authorize-security-group-egress --group-id {} --protocol tcp --port 443 --cidr 10.0.2.0/24",
        r.id("sg_app")
    ));
}

#[test]
fn endpoint_sg_without_inbound_443() {
    let r = doctor("endpoint-sg-no-443", Agent::NotRegistered);
    assert_eq!(r.code, Some(1));
    r.expect("endpoint SG ingress", "fail", &format!(
        "aws ec2 authorize-security-group-ingress --group-id {} --protocol tcp --port 443 --source-group {}",
        r.id("sg_ep"),
        r.id("sg_app")
    ));
}

#[test]
fn nacl_denying_443() {
    let r = doctor("nacl-deny-443", Agent::NotRegistered);
    assert_eq!(r.code, Some(1));
    r.expect(
        "network ACLs",
        "fail",
        "--egress --rule-number 49 --protocol tcp --port-range From=443,To=443",
    );
    let evidence = r.row("network ACLs")["evidence"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        evidence.contains("denies outbound TCP 443") && evidence.contains("rule 50"),
        "{evidence}"
    );
}

#[test]
fn stopped_instance() {
    let r = doctor("stopped", Agent::NotRegistered);
    assert_eq!(r.code, Some(1));
    r.expect(
        "instance",
        "fail",
        &format!(
            "aws ec2 start-instances --instance-ids {}",
            r.id("instance")
        ),
    );
}

#[test]
fn instance_not_registered() {
    let r = doctor("healthy", Agent::NotRegistered);
    assert_eq!(r.code, Some(1));
    let agent = r.row("agent");
    assert_eq!(agent["verdict"], "fail");
    assert!(agent["evidence"]
        .as_str()
        .unwrap()
        .contains("not registered with SSM"));
    assert!(agent["fix"].as_str().unwrap().contains("amazon-ssm-agent"));
    // Everything else is fine, so the agent itself is the suspect.
    assert_eq!(
        r.rows.iter().filter(|r| r["verdict"] == "fail").count(),
        1,
        "{:#?}",
        r.rows
    );
}

#[test]
fn a_name_tag_target_prints_a_table() {
    let (moto, sim, ids) = start("healthy", Agent::Online);
    let out = doctor_cmd(&moto, &sim, &["web-1"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for word in [
        "CHECK",
        "VERDICT",
        "EVIDENCE",
        "FIX",
        "endpoint ssmmessages",
        "no problems found",
    ] {
        assert!(stdout.contains(word), "{word} missing: {stdout}");
    }
    assert!(stdout.contains(ids["instance"].as_str().unwrap()));
    assert!(!stdout.contains('\u{1b}'), "colours only on a terminal");
    if let Ok(path) = std::env::var("RSSM_DOCTOR_SAMPLE") {
        let _ = std::fs::write(path, stdout.as_bytes());
    }
}

#[test]
fn an_unknown_target_is_one_line_and_255() {
    let (moto, sim, _) = start("healthy", Agent::Online);
    let out = doctor_cmd(&moto, &sim, &["no-such-name"]);
    assert_eq!(out.status.code(), Some(255));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no instance with Name tag"), "{err}");
}

#[test]
fn a_permission_the_caller_lacks_makes_that_check_unknown() {
    // The sim (SSM) accepts the same key pair moto's limited user signs with.
    let moto = Moto::start();
    let region = SimConfig::default().region;
    let ids = moto.build(SCRIPT, &["denied-endpoints"], &region);
    let keys = &ids["keys"];
    let credentials = rssm_sim::SimCredentials {
        access_key_id: keys["access_key_id"].as_str().unwrap().to_owned(),
        secret_access_key: keys["secret_access_key"].as_str().unwrap().to_owned(),
    };
    let mut fleet = Fleet::default();
    fleet
        .targets
        .push(Target::new(ids["instance"].as_str().unwrap()));
    let sim = Sim::with_config(SimConfig {
        fleet,
        credentials,
        ..SimConfig::default()
    });
    let r = run_json(&moto, &sim, ids);
    assert_eq!(
        r.code,
        Some(0),
        "unknown is not a failure: {:#?} {}",
        r.rows,
        r.stderr
    );
    for svc in ["ssm", "ssmmessages"] {
        let row = r.row(&format!("endpoint {svc}"));
        assert_eq!(row["verdict"], "unknown");
        assert_eq!(row["evidence"], "unknown (needs ec2:DescribeVpcEndpoints)");
    }
    assert_eq!(r.row("route")["verdict"], "unknown");
    // The rest still ran.
    assert_eq!(r.row("instance role")["verdict"], "ok");
    assert_eq!(r.row("VPC DNS")["verdict"], "ok");
    assert_eq!(r.row("agent")["verdict"], "ok");
}
