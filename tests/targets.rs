//! Targets by Name tag, IP and DNS name, ambiguity, and `rssm list`, end to end against the
//! simulator's SSM and EC2 APIs.

mod common;

use std::process::Output;
use std::time::Duration;

use common::{run_bounded, Sim, DEMO};
use rssm_sim::{Fleet, SimConfig, Target};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn run(sim: &Sim, args: &[&str]) -> Output {
    let mut cmd = sim.rssm();
    cmd.args(args);
    run_bounded(cmd, Duration::from_secs(30))
}

#[test]
fn a_name_tag_an_ip_and_a_dns_name_reach_the_instance() {
    let sim = Sim::start();
    let region = sim.sim.config().region.clone();
    let dns = format!("ip-10-0-0-10.{region}.compute.internal");
    let dns = if region == "us-east-1" {
        "ip-10-0-0-10.ec2.internal".to_owned()
    } else {
        dns
    };
    for target in ["demo", "10.0.0.10", "tag:Name=demo", dns.as_str()] {
        let out = run(&sim, &["exec", target, "--", "echo", "hello"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{target}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), "hello\n", "{target}");
    }
}

#[test]
fn an_unknown_name_is_one_line_and_255() {
    let sim = Sim::start();
    let out = run(&sim, &["exec", "no-such-host", "--", "true"]);
    assert_eq!(out.status.code(), Some(255));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("no instance with Name tag \"no-such-host\""),
        "{err}"
    );
}

#[test]
fn an_ambiguous_name_lists_the_matches_and_fails() {
    let mut fleet = Fleet::default();
    for id in ["i-0aaaaaaaaaaaaaaa1", "i-0aaaaaaaaaaaaaaa2"] {
        let mut t = Target::new(id);
        t.tags.insert("Name".into(), "web".into());
        fleet.targets.push(t);
    }
    let sim = Sim::with_config(SimConfig {
        fleet,
        ..SimConfig::default()
    });
    // Not a terminal: --pick cannot ask, so the list is the answer.
    let out = run(&sim, &["--pick", "exec", "web", "--", "true"]);
    assert_eq!(out.status.code(), Some(255));
    let err = text(&out.stderr);
    assert!(
        err.contains("Name tag \"web\" matches 2 instances"),
        "{err}"
    );
    assert!(
        err.contains("i-0aaaaaaaaaaaaaaa1") && err.contains("i-0aaaaaaaaaaaaaaa2"),
        "{err}"
    );
    assert!(err.contains("--pick"), "{err}");
}

#[test]
fn list_joins_ssm_and_ec2() {
    let sim = Sim::start();
    let out = run(&sim, &["list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let demo = table
        .lines()
        .find(|l| l.contains(DEMO))
        .unwrap_or_else(|| panic!("{table}"));
    for word in [
        "demo",
        "running",
        "Amazon Linux 2023",
        "3.3.1802.0",
        "Online",
        "10.0.0.10",
    ] {
        assert!(demo.contains(word), "{word} missing in {demo:?}");
    }
    assert!(table.contains("ConnectionLost"), "{table}");
    assert!(table.contains("mi-0123456789abcdef0"), "{table}");

    let out = run(&sim, &["list", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let demo = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == DEMO)
        .expect("demo listed");
    assert_eq!(demo["name"], "demo");
    assert_eq!(demo["state"], "running");
    assert_eq!(demo["ping_status"], "Online");
    assert_eq!(demo["private_ip"], "10.0.0.10");
}

/// Two instances named `web`: the first online, the second not connected.
fn twin_fleet() -> Sim {
    let mut fleet = Fleet::default();
    for (id, ip) in [
        ("i-0aaaaaaaaaaaaaaa1", "10.0.3.1"),
        ("i-0aaaaaaaaaaaaaaa2", "10.0.3.2"),
    ] {
        let mut t = Target::new(id);
        t.tags.insert("Name".into(), "web".into());
        t.ip_address = ip.into();
        if id.ends_with('2') {
            t.ping_status = rssm_sim::fleet::PingStatus::ConnectionLost;
        }
        fleet.targets.push(t);
    }
    Sim::with_config(SimConfig {
        fleet,
        ..SimConfig::default()
    })
}

#[test]
fn pick_chooses_among_matches_on_a_terminal() {
    let sim = twin_fleet();
    // Enter takes the first match, which is online: the command runs.
    let mut cmd = sim.rssm();
    cmd.args(["--pick", "exec", "web", "--", "echo", "picked-$((40+2))"]);
    let mut term = common::term::Term::spawn(cmd);
    term.expect("Which instance");
    term.expect("i-0aaaaaaaaaaaaaaa2");
    term.send("\r");
    term.expect("picked-42");
    assert_eq!(
        term.wait_exit(Duration::from_secs(30)),
        0,
        "{}",
        term.text()
    );

    // Down, Enter takes the second: StartSession names it.
    let mut cmd = sim.rssm();
    cmd.args(["--pick", "exec", "web", "--", "true"]);
    let mut term = common::term::Term::spawn(cmd);
    term.expect("i-0aaaaaaaaaaaaaaa2");
    term.send("\x1b[B");
    // The picker has taken the key once it redraws with the second line active (`> `).
    term.expect(r"> [^\r\n]*i-0aaaaaaaaaaaaaaa2");
    term.send("\r");
    term.expect("TargetNotConnected");
    term.expect("run: rssm doctor i-0aaaaaaaaaaaaaaa2");
    assert_eq!(term.wait_exit(Duration::from_secs(30)), 255);
}

#[test]
fn an_ecs_task_container_is_resolved_through_describe_tasks() {
    let sim = Sim::start();
    let task = "0123456789abcdef0123456789abcdef";
    for target in [
        format!("ecs:demo-cluster/{task}"),
        format!("ecs:demo-cluster/{task}/app"),
    ] {
        let out = run(&sim, &["exec", &target, "--", "echo", "in-task"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{target}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), "in-task\n");
    }
    let out = run(
        &sim,
        &["exec", &format!("ecs:demo-cluster/{task}/db"), "--", "true"],
    );
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("no container \"db\" (it has: app)"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&sim, &["exec", "ecs:demo-cluster/nope", "--", "true"]);
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("no task nope in ECS cluster demo-cluster"),
        "{}",
        text(&out.stderr)
    );
}
