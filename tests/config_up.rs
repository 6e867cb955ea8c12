//! The config file end to end: `rssm up` bringing named forwards up and moving data through
//! them, host aliases standing in for targets, `[defaults]`, and `rssm config check|path`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::forward::{round_trip, Forward, Forwarding, Pipe};
use common::{run_bounded, Sim, TempDir, DEMO};
use rssm_testkit::net::echo_server;
use rssm_testkit::pattern;

const LIMIT: Duration = Duration::from_secs(120);

/// A config file in a fresh directory.
struct File {
    dir: TempDir,
    path: PathBuf,
}

fn file(text: &str) -> File {
    let dir = TempDir::new("config");
    let path = dir.0.join("config.toml");
    std::fs::write(&path, text).expect("write config");
    File { dir, path }
}

fn rssm_with(sim: &Sim, config: &Path) -> Command {
    let mut cmd = sim.rssm();
    cmd.env("RSSM_CONFIG", config);
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The `Forwarding …` line of the forward named `name`.
fn forwarding_of(fwd: &mut Forward, name: &str) -> Forwarding {
    let tag = format!("forward {name}");
    let line = fwd.wait_line(name, |l| l.starts_with("Forwarding ") && l.contains(&tag));
    Forwarding::parse(&line)
}

#[test]
fn up_brings_every_named_forward_up_and_carries_data_through_each() {
    let sim = Sim::start();
    let a = echo_server(b"A\n");
    let b = echo_server(b"B\n");
    let config = file(&format!(
        "[hosts.demo-box]\ntarget = \"demo\"\n\n\
         [forwards.alpha]\nvia = \"demo-box\"\nlisten = \"127.0.0.1:0\"\nto = \"127.0.0.1:{a}\"\n\n\
         [forwards.beta]\nvia = \"{DEMO}\"\nlisten = 0\nto = \"localhost:{b}\"\nsessions = 2\n"
    ));
    let mut cmd = rssm_with(&sim, &config.path);
    cmd.arg("up");
    let mut fwd = Forward::spawn(cmd, Pipe::Stderr);
    let alpha = forwarding_of(&mut fwd, "alpha");
    let beta = forwarding_of(&mut fwd, "beta");
    assert_eq!(alpha.remote, format!("127.0.0.1:{a}"));
    assert_eq!(beta.remote, format!("localhost:{b}"));
    let data = pattern(3, 200_000);
    assert!(round_trip(alpha.local, &data)[..2] == *b"A\n");
    let back = round_trip(beta.local, &data);
    assert!(back[..2] == *b"B\n" && back[2..] == data[..], "beta echoes");
    // Both of beta's sessions come up behind its one listener.
    fwd.wait_line("beta's second session", |l| {
        l.contains("forward beta, session 2 of 2")
    });
    fwd.ctrl_c_ends_cleanly();
}

#[test]
fn up_with_names_brings_up_only_those() {
    let sim = Sim::start();
    let a = echo_server(b"");
    let config = file(&format!(
        "[forwards.one]\nvia = \"demo\"\nlisten = 0\nto = \"127.0.0.1:{a}\"\n\
         [forwards.two]\nvia = \"demo\"\nlisten = 0\nto = \"127.0.0.1:{a}\"\n"
    ));
    let mut cmd = rssm_with(&sim, &config.path);
    cmd.args(["up", "two"]);
    let mut fwd = Forward::spawn(cmd, Pipe::Stderr);
    let two = forwarding_of(&mut fwd, "two");
    assert_eq!(round_trip(two.local, b"ping"), b"ping");
    fwd.ctrl_c_ends_cleanly();
    assert!(
        !fwd.out.seen.iter().any(|l| l.contains("forward one")),
        "{:?}",
        fwd.out.seen
    );

    let out = run_bounded(
        {
            let mut cmd = rssm_with(&sim, &config.path);
            cmd.args(["up", "three"]);
            cmd
        },
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(255));
    let err = text(&out.stderr);
    assert!(
        err.contains("no forward named \"three\"") && err.contains("there are: one, two"),
        "{err}"
    );
}

#[test]
fn a_forward_that_cannot_start_is_named_in_its_error() {
    let sim = Sim::start();
    let a = echo_server(b"");
    let config = file(&format!(
        "[forwards.down]\nvia = \"offline\"\nlisten = 0\nto = \"127.0.0.1:{a}\"\n"
    ));
    let mut cmd = rssm_with(&sim, &config.path);
    cmd.arg("up");
    let out = run_bounded(cmd, LIMIT);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("rssm: forward down: "))
        .unwrap_or_else(|| panic!("no line naming the forward: {err}"));
    assert!(line.contains("TargetNotConnected"), "{line}");
}

#[test]
fn a_host_alias_stands_in_for_a_target_and_defaults_fill_in() {
    let sim = Sim::start();
    let region = sim.sim.config().region.clone();
    let config = file(&format!(
        "[defaults]\nregion = \"{region}\"\n[hosts.box]\ntarget = \"{DEMO}\"\n"
    ));
    let mut cmd = rssm_with(&sim, &config.path);
    // The region comes from [defaults] alone.
    cmd.env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION");
    cmd.args(["exec", "box", "--", "echo", "alias-$((6*7))"]);
    let out = run_bounded(cmd, LIMIT);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "alias-42\n");
}

#[test]
fn a_bad_file_stops_commands_with_one_line_naming_file_line_and_key() {
    let sim = Sim::start();
    let config = file("[forwards.pg]\nvia = \"demo\"\nlisten = 5432\nto = 5432\nsesions = 2\n");
    let shown = config.path.display().to_string();
    for args in [&["config", "check"][..], &["exec", DEMO, "--", "true"][..]] {
        let mut cmd = rssm_with(&sim, &config.path);
        cmd.args(args);
        let out = run_bounded(cmd, LIMIT);
        let err = text(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(&format!("{shown}:5: forwards.pg: unknown field `sesions`")),
            "{args:?}: {err}"
        );
    }
    std::fs::write(
        &config.path,
        "[forwards.pg]\nvia = \"demo\"\nlisten = 5432\nto = \"db.internal:5432\"\nsessions = 2\n",
    )
    .unwrap();
    let mut cmd = rssm_with(&sim, &config.path);
    cmd.args(["config", "check"]);
    let out = run_bounded(cmd, LIMIT);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(
        report.contains(&format!("{shown}: ok (0 host aliases, 1 forward)")),
        "{report}"
    );
    assert!(
        report.contains("forward pg: 127.0.0.1:5432 -> db.internal:5432 via demo (2 sessions)"),
        "{report}"
    );
    drop(config.dir);
}

#[test]
fn config_path_follows_the_flag_the_variable_and_xdg() {
    let xdg = TempDir::new("xdg");
    let mut cmd = common::rssm();
    cmd.env_remove("RSSM_CONFIG")
        .env("XDG_CONFIG_HOME", &xdg.0)
        .args(["config", "path"]);
    let out = run_bounded(cmd, LIMIT);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        xdg.0.join("rssm/config.toml").display().to_string()
    );
    assert!(text(&out.stderr).contains("no file there yet"));

    let mut cmd = common::rssm();
    cmd.env("RSSM_CONFIG", "/etc/rssm-elsewhere.toml").args([
        "--config",
        "/tmp/flag.toml",
        "config",
        "path",
    ]);
    let out = run_bounded(cmd, LIMIT);
    assert_eq!(text(&out.stdout).trim(), "/tmp/flag.toml", "the flag wins");

    // A named file must exist; the default one need not.
    let mut cmd = common::rssm();
    cmd.env("RSSM_CONFIG", "/nonexistent/rssm.toml")
        .args(["exec", DEMO, "--", "true"]);
    let out = run_bounded(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(255));
    assert!(text(&out.stderr).contains("cannot read the config file /nonexistent/rssm.toml"));
}
