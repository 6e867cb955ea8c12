//! `rssm help TOPIC`, `rssm help COMMAND` and `rssm manpages`, as a user runs them.

mod common;

use std::time::Duration;

use common::{rssm, run_bounded, TempDir};

const LIMIT: Duration = Duration::from_secs(60);

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = rssm();
    cmd.args(args);
    let out = run_bounded(cmd, LIMIT);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_covers_topics_and_commands() {
    let (code, out, _) = run(&["help"]);
    assert_eq!(code, Some(0));
    for topic in ["targets", "exit-codes", "environment", "config"] {
        assert!(out.contains(&format!("  {topic} ")), "{topic}: {out}");
    }
    let (code, out, _) = run(&["help", "targets"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("tag:Role=bastion") && out.contains("host alias"),
        "{out}"
    );
    let (_, out, _) = run(&["help", "environment"]);
    assert!(
        out.contains("HTTPS_PROXY") && out.contains("RSSM_CONFIG"),
        "{out}"
    );
    let (code, out, _) = run(&["help", "config", "check"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("Usage: rssm config check"), "{out}");
    let (code, _, err) = run(&["help", "no-such-thing"]);
    assert_eq!(code, Some(255));
    assert!(
        err.contains("no help topic or command \"no-such-thing\""),
        "{err}"
    );
}

#[test]
fn manpages_are_written_for_every_command() {
    let dir = TempDir::new("man");
    let (code, out, err) = run(&["manpages", "--dir", dir.0.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let listed: Vec<&str> = out.lines().collect();
    for page in [
        "rssm.1",
        "rssm-shell.1",
        "rssm-forward.1",
        "rssm-up.1",
        "rssm-doctor.1",
    ] {
        let path = dir.0.join(page);
        assert!(listed.contains(&path.to_str().unwrap()), "{page}: {out}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(".SH NAME"), "{page}");
    }
    let main = std::fs::read_to_string(dir.0.join("rssm.1")).unwrap();
    assert!(main.contains("EXIT STATUS") && main.contains("HTTPS_PROXY"));
}
