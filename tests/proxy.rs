//! HTTP proxies, as corporate networks have them: the API calls and the data-channel websocket
//! go through a real HTTP CONNECT proxy (tinyproxy) named by HTTPS_PROXY/HTTP_PROXY or
//! `--proxy`, with basic auth; NO_PROXY goes around it; a proxy that refuses is one clear line.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::forward::{round_trip, Forward, Pipe};
use common::term::Term;
use common::tinyproxy::Tinyproxy;
use common::{run_bounded, Sim, DEMO};
use rssm_sim::SimConfig;
use rssm_testkit::net::{echo_server, free_port};

const LIMIT: Duration = Duration::from_secs(120);
const LOGIN: Option<(&str, &str)> = Some(("alice", "s3cret"));

/// `rssm` for `sim` (no proxy variables but) with `vars` set.
fn rssm(sim: &Sim, vars: &[(&str, &str)]) -> Command {
    let mut cmd = sim.rssm();
    for (name, value) in vars {
        cmd.env(name, value);
    }
    cmd
}

fn exec(mut cmd: Command, extra: &[&str]) -> Output {
    cmd.args(extra)
        .args(["exec", DEMO, "--", "echo", "via-$((6*7))"]);
    run_bounded(cmd, LIMIT)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The simulator's port, which both its API and its data channel listen on.
fn sim_port(sim: &Sim) -> String {
    sim.sim
        .endpoint()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_matches('/')
        .to_owned()
}

#[test]
fn exec_goes_through_the_proxy_named_by_the_environment_with_basic_auth() {
    let sim = Sim::start();
    let proxy = Tinyproxy::start(LOGIN);
    let url = proxy.url(LOGIN);
    let out = exec(
        rssm(&sim, &[("HTTPS_PROXY", &url), ("HTTP_PROXY", &url)]),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "via-42\n");
    let port = sim_port(&sim);
    // The websocket tunnelled with CONNECT; the API calls (plain http to the simulator) went as
    // absolute-form requests.
    proxy.wait_log(&["Request", &format!("CONNECT 127.0.0.1:{port} ")]);
    proxy.wait_log(&["Request", &format!("POST http://127.0.0.1:{port}/")]);
    assert!(!text(&out.stderr).contains("s3cret"));
}

#[test]
fn a_shell_goes_through_the_proxy_flag() {
    let sim = Sim::with_config(SimConfig {
        shell: Some("/bin/sh".into()),
        ..SimConfig::default()
    });
    let proxy = Tinyproxy::start(LOGIN);
    let mut cmd = rssm(&sim, &[]);
    cmd.args(["--proxy", &proxy.url(LOGIN), "shell", DEMO]);
    let mut t = Term::spawn(cmd);
    t.expect(r"[#$] $");
    t.send("echo shell-$((6*7))\r");
    t.expect("shell-42");
    t.send("exit\r");
    assert_eq!(t.wait_exit(LIMIT), 0, "{}", t.text());
    proxy.wait_log(&["Request", &format!("CONNECT 127.0.0.1:{} ", sim_port(&sim))]);
}

#[test]
fn a_forward_carries_its_connections_through_the_proxy() {
    let sim = Sim::start();
    let proxy = Tinyproxy::start(None);
    let echo = echo_server(b"");
    let url = proxy.url(None);
    let mut cmd = rssm(&sim, &[("https_proxy", &url), ("http_proxy", &url)]);
    cmd.args(["forward", DEMO, "-L", &format!("0:127.0.0.1:{echo}")]);
    let mut fwd = Forward::spawn(cmd, Pipe::Stderr);
    let f = fwd.forwarding(0);
    for round in 0..3u8 {
        let data = vec![b'a' + round; 50_000];
        assert!(round_trip(f.local, &data) == data, "round {round}");
    }
    proxy.wait_log(&["Request", &format!("CONNECT 127.0.0.1:{} ", sim_port(&sim))]);
    fwd.ctrl_c_ends_cleanly();
}

#[test]
fn no_proxy_goes_around_the_proxy() {
    let sim = Sim::start();
    // Nothing listens here: a connection through it would fail.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let out = exec(
        rssm(
            &sim,
            &[
                ("HTTPS_PROXY", &dead),
                ("HTTP_PROXY", &dead),
                ("NO_PROXY", "example.invalid, 127.0.0.0/8"),
            ],
        ),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "via-42\n");
    // The flag replaces the variables, not NO_PROXY.
    let out = exec(
        rssm(&sim, &[("no_proxy", "127.0.0.1")]),
        &["--proxy", &dead],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// The one line rssm printed, checked to be one line naming the proxy.
fn one_line(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    lines[0].to_owned()
}

#[test]
fn a_proxy_that_refuses_is_one_clear_line() {
    let sim = Sim::start();
    let proxy = Tinyproxy::start(LOGIN);
    let port = proxy.port;

    let wrong = proxy.url(Some(("alice", "wrong")));
    let line = one_line(&exec(rssm(&sim, &[]), &["--proxy", &wrong]));
    assert!(
        line.contains(&format!("proxy at http://127.0.0.1:{port}")),
        "{line}"
    );
    // tinyproxy answers wrong credentials on a forwarded request with 401, none with 407.
    assert!(
        line.contains("refused the credentials in --proxy"),
        "{line}"
    );
    assert!(!line.contains("wrong"), "credentials shown: {line}");

    let line = one_line(&exec(rssm(&sim, &[]), &["--proxy", &proxy.url(None)]));
    assert!(line.contains("wants credentials (HTTP 407)"), "{line}");

    let dead = free_port();
    let url = format!("http://127.0.0.1:{dead}");
    let line = one_line(&exec(
        rssm(&sim, &[("HTTPS_PROXY", &url), ("HTTP_PROXY", &url)]),
        &[],
    ));
    assert!(
        line.contains(&format!("proxy at http://127.0.0.1:{dead}")),
        "{line}"
    );

    let line = one_line(&exec(
        rssm(&sim, &[("HTTPS_PROXY", "socks5://127.0.0.1:1080")]),
        &[],
    ));
    assert!(line.contains("HTTPS_PROXY"), "{line}");
}

#[test]
fn doctor_says_which_proxy_it_used() {
    let sim = Sim::start();
    let proxy = Tinyproxy::start(LOGIN);
    let url = proxy.url(LOGIN);
    let mut cmd = rssm(&sim, &[("HTTP_PROXY", &url)]);
    cmd.env("COLUMNS", "300").args(["doctor", "demo"]);
    let out = run_bounded(cmd, LIMIT);
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{report}{}", text(&out.stderr));
    let row = report
        .lines()
        .find(|l| l.contains("client reach"))
        .unwrap_or_else(|| panic!("no client reach row: {report}"));
    assert!(
        row.contains(&format!("via http://127.0.0.1:{} (HTTP_PROXY)", proxy.port)),
        "{row}"
    );
    // The probe went through the proxy as a session would: CONNECT.
    proxy.wait_log(&["Request", &format!("CONNECT 127.0.0.1:{} ", sim_port(&sim))]);

    // A proxy that cannot be reached fails the row with the fix.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut cmd = rssm(&sim, &[]);
    cmd.env("COLUMNS", "300")
        .args(["--proxy", &dead, "doctor", "demo"]);
    let out = run_bounded(cmd, LIMIT);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_ne!(out.status.code(), Some(0), "{all}");
    assert!(all.contains(&format!("proxy at {dead}")), "{all}");
}
