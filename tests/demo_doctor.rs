//! `rssm demo doctor` as a new user runs it: every instance of the simulator's fleet, each
//! broken one failing the check its name says with the fix a user would follow, the demo
//! instance passing everything; and `rssm doctor` against the simulator's API exits 1 exactly
//! when a check fails.

mod common;

use std::process::Output;
use std::time::Duration;

use common::{rssm, run_bounded, Sim};
use serde_json::Value;

fn demo_doctor(args: &[&str]) -> Output {
    let mut cmd = rssm();
    cmd.args(["-q", "demo", "doctor"]).args(args);
    run_bounded(cmd, Duration::from_secs(60))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The reports of `rssm demo doctor --output json`, by target id.
struct Reports(Vec<Value>);

impl Reports {
    fn of(&self, id: &str) -> &[Value] {
        let report = self
            .0
            .iter()
            .find(|r| r["target"] == id)
            .unwrap_or_else(|| panic!("no report for {id}: {:#?}", self.0));
        report["checks"].as_array().expect("checks")
    }

    fn row<'a>(&'a self, id: &str, check: &str) -> &'a Value {
        self.of(id)
            .iter()
            .find(|r| r["check"] == check)
            .unwrap_or_else(|| panic!("{id}: no row {check}: {:#?}", self.of(id)))
    }

    /// Asserts the row failed and its fix contains `fix`.
    fn fails(&self, id: &str, check: &str, fix: &str) {
        let row = self.row(id, check);
        assert_eq!(row["verdict"], "fail", "{id} {check}: {row:#}");
        let actual = row["fix"].as_str().unwrap_or("");
        assert!(
            actual.contains(fix),
            "{id} {check}: fix {actual:?} lacks {fix:?}"
        );
    }

    /// The checks that failed.
    fn failed(&self, id: &str) -> Vec<&str> {
        self.of(id)
            .iter()
            .filter(|r| r["verdict"] == "fail")
            .filter_map(|r| r["check"].as_str())
            .collect()
    }
}

const DEMO: &str = "i-0123456789abcdef0";
const OFFLINE: &str = "i-0fedcba9876543210";
const NO_ROLE: &str = "i-0123456789abcdef1";
const NO_ENDPOINT: &str = "i-0123456789abcdef2";
const NO_443: &str = "i-0123456789abcdef3";
const NO_ROUTE: &str = "i-0123456789abcdef4";

#[test]
fn demo_doctor_walks_the_fleet_and_names_each_failure_and_its_fix() {
    let out = demo_doctor(&["--output", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let reports: Vec<Value> = serde_json::from_slice(&out.stdout).expect("a JSON array");
    let r = Reports(reports);

    // The demo instance: every row ok, the credentials the simulator's own.
    let not_ok: Vec<&Value> = r.of(DEMO).iter().filter(|c| c["verdict"] != "ok").collect();
    assert!(not_ok.is_empty(), "demo: {not_ok:#?}");
    let names: Vec<&str> = r
        .of(DEMO)
        .iter()
        .filter_map(|c| c["check"].as_str())
        .collect();
    for check in [
        "credentials",
        "instance",
        "agent",
        "instance role",
        "route",
        "endpoint ssm",
        "endpoint ssmmessages",
        "endpoint ec2messages",
        "VPC DNS",
        "instance SG egress",
        "endpoint SG ingress",
        "network ACLs",
        "caller permissions",
        "client reach",
    ] {
        assert!(names.contains(&check), "demo lacks {check}: {names:?}");
    }
    let who = r.row(DEMO, "credentials")["evidence"]
        .as_str()
        .unwrap_or("");
    assert!(
        who.starts_with("arn:aws:iam::123456789012:user/rssm-sim"),
        "{who}"
    );

    // Stopped agent, healthy network: only the agent row.
    assert_eq!(r.failed(OFFLINE), ["agent"]);
    r.fails(OFFLINE, "agent", "sudo systemctl restart amazon-ssm-agent");

    r.fails(
        NO_ROLE,
        "instance role",
        &format!("aws ec2 associate-iam-instance-profile --instance-id {NO_ROLE}"),
    );
    r.fails(NO_ROLE, "agent", "the agent never reached SSM");
    assert_eq!(r.failed(NO_ROLE), ["agent", "instance role"]);

    r.fails(
        NO_ENDPOINT,
        "endpoint ssmmessages",
        "--service-name com.amazonaws.us-east-1.ssmmessages",
    );
    r.fails(NO_ENDPOINT, "route", "--destination-cidr-block 0.0.0.0/0");
    assert_eq!(r.row(NO_ENDPOINT, "endpoint ssm")["verdict"], "ok");
    // Its endpoints' security group admits the instance through a prefix list.
    let ingress = r.row(NO_ENDPOINT, "endpoint SG ingress");
    assert_eq!(ingress["verdict"], "ok", "{ingress:#}");
    let evidence = ingress["evidence"].as_str().unwrap_or("");
    assert!(evidence.contains("from pl-0a1b2c3d4e5f60020"), "{evidence}");

    r.fails(
        NO_443,
        "instance SG egress",
        "aws ec2 authorize-security-group-egress --group-id sg-0a1b2c3d4e5f60012 --protocol tcp --port 443",
    );
    assert_eq!(r.failed(NO_443), ["agent", "instance SG egress"]);

    r.fails(
        NO_ROUTE,
        "route",
        "aws ec2 create-route --route-table-id rtb-0a1b2c3d4e5f60031",
    );
    let evidence = r.row(NO_ROUTE, "route")["evidence"].as_str().unwrap_or("");
    assert!(
        evidence.contains("(associated) has no route 0.0.0.0/0"),
        "{evidence}"
    );

    // ECS tasks are not doctor's; the hybrid node is.
    assert!(r
        .0
        .iter()
        .all(|d| !d["target"].as_str().unwrap_or("").starts_with("ecs:")));
    assert!(r.failed("mi-0123456789abcdef0").is_empty());
}

#[test]
fn demo_doctor_on_the_demo_instance_finds_no_problem() {
    let out = demo_doctor(&["demo"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("{DEMO}: no problems found")),
        "{stdout}"
    );
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn doctor_exits_1_when_a_check_fails_and_0_when_none_does() {
    let sim = Sim::start();
    let doctor = |target: &str| {
        let mut cmd = sim.rssm();
        // The simulator's environment names it for STS and IAM too.
        cmd.args(["doctor", target]);
        run_bounded(cmd, Duration::from_secs(30))
    };
    let broken = doctor("no-443");
    let stdout = text(&broken.stdout);
    assert_eq!(
        broken.status.code(),
        Some(1),
        "{stdout}{}",
        text(&broken.stderr)
    );
    assert!(
        stdout.contains(&format!("{NO_443}: 2 check(s) failed")),
        "{stdout}"
    );
    let healthy = doctor("demo");
    let stdout = text(&healthy.stdout);
    assert_eq!(
        healthy.status.code(),
        Some(0),
        "{stdout}{}",
        text(&healthy.stderr)
    );
    assert!(stdout.contains("no problems found"), "{stdout}");
}
