//! `rssm cp` against the simulator, whose agent runs real shells and commands on this machine:
//! a remote path is a local path here, so every copy is checked byte for byte on both sides.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{run_bounded, Sim, TempDir, DEMO};
use rssm_sim::{FaultConfig, Fleet, SimConfig, Target};
use rssm_testkit::{pattern::pattern, wait};

const LIMIT: Duration = Duration::from_secs(180);

fn cp(sim: &Sim, args: &[&str]) -> Output {
    let mut cmd = sim.rssm();
    cmd.arg("cp").args(args);
    run_bounded(cmd, LIMIT)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `DEMO:PATH`.
fn remote(p: &Path) -> String {
    format!("{DEMO}:{}", p.display())
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

/// Names in `dir` (hidden ones included): what a copy left behind.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn assert_one_line_error(o: &Output, code: i32, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "{needle:?} in {err}");
}

#[test]
fn files_of_every_awkward_size_and_name_go_up_and_come_back_byte_exact() {
    let sim = Sim::uncapped();
    let here = TempDir::new("cp-here");
    let there = TempDir::new("cp-there");
    let back = TempDir::new("cp-back");
    // Around base64's 3-byte groups and the 1024-byte messages, and endings that begin a
    // UTF-8 sequence (the agent holds such bytes back and drops them at the end of a stream).
    let mut files: Vec<(String, Vec<u8>)> = [0usize, 1, 767, 768, 1023, 1024, 1025, 2048, 3073]
        .iter()
        .map(|&n| (format!("size {n}.bin"), pattern(n as u64 + 1, n)))
        .collect();
    for (i, tail) in [&b"\xc3"[..], b"\xe2\x82", b"\xf0\x9f\x98"]
        .iter()
        .enumerate()
    {
        let mut data = pattern(100 + i as u64, 5000);
        data.extend_from_slice(tail);
        files.push((format!("utf8 cut {i}.bin"), data));
    }
    files.push((
        "it's a \"quoted\" $name;`x`.txt".into(),
        b"quotes\n".to_vec(),
    ));
    // The agent turns every U+FFFD (EF BF BD) in a command's output into the lone byte EF:
    // random data holds one in 16 MiB, this file four, two in one 64 KiB block.
    let mut fffd = pattern(200, 200_000);
    for at in [0, 5000, 9000, 199_997] {
        fffd[at..at + 3].copy_from_slice(b"\xef\xbf\xbd");
    }
    files.push(("replacement characters.bin".into(), fffd));
    let mut sources = Vec::new();
    for (i, (name, data)) in files.iter().enumerate() {
        let p = here.0.join(name);
        std::fs::write(&p, data).unwrap();
        let m = if i % 2 == 0 { 0o640 } else { 0o755 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
        sources.push(p.display().to_string());
    }
    let mut args: Vec<&str> = sources.iter().map(String::as_str).collect();
    let dest = format!("{}/", remote(&there.0));
    args.push(&dest);
    let up = cp(&sim, &args);
    assert_eq!(up.status.code(), Some(0), "{}", stderr(&up));

    let remotes: Vec<String> = files
        .iter()
        .map(|(n, _)| remote(&there.0.join(n)))
        .collect();
    let mut args: Vec<&str> = remotes.iter().map(String::as_str).collect();
    let back_dir = back.0.display().to_string();
    args.push(&back_dir);
    let down = cp(&sim, &args);
    assert_eq!(down.status.code(), Some(0), "{}", stderr(&down));

    for (name, data) in &files {
        let a = here.0.join(name);
        for copy in [there.0.join(name), back.0.join(name)] {
            assert_eq!(&std::fs::read(&copy).unwrap(), data, "{}", copy.display());
            assert_eq!(mode(&copy), mode(&a), "mode of {}", copy.display());
        }
    }
    // No temporary file is left on either side.
    assert_eq!(names(&there.0).len(), files.len(), "{:?}", names(&there.0));
    assert_eq!(names(&back.0).len(), files.len(), "{:?}", names(&back.0));
}

#[test]
fn a_16_mib_file_goes_over_one_and_over_four_sessions() {
    let sim = Sim::uncapped();
    let here = TempDir::new("cp-big");
    let data = pattern(16, 16 << 20);
    let src = here.0.join("big.iso");
    std::fs::write(&src, &data).unwrap();
    let src = src.display().to_string();
    for (sessions, name) in [("1", "up1"), ("4", "up4")] {
        let dest = remote(&here.0.join(name));
        let o = cp(&sim, &["--sessions", sessions, &src, &dest]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(std::fs::read(here.0.join(name)).unwrap() == data, "{name}");
    }
    let from = remote(&here.0.join("big.iso"));
    for (sessions, name) in [("1", "down1"), ("4", "down4")] {
        let dest = here.0.join(name).display().to_string();
        let o = cp(&sim, &["--sessions", sessions, &from, &dest]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(std::fs::read(here.0.join(name)).unwrap() == data, "{name}");
    }
    // Four sessions means four sessions: the simulator saw them start.
    let started = sim.logs.text().matches("session started").count();
    // Up: one, then prepare + 4 parts + finish; down: probe + one, then probe + 4 parts.
    assert_eq!(started, 1 + 6 + 2 + 5, "sessions:\n{}", sim.logs.text());
}

/// A tree with a nested empty directory, a symlink, odd names and modes.
fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub dir/empty")).unwrap();
    std::fs::create_dir_all(root.join("also-empty")).unwrap();
    std::fs::write(root.join("sub dir/it's.bin"), pattern(7, 70_000)).unwrap();
    std::fs::write(root.join("top.txt"), b"top\n").unwrap();
    std::fs::set_permissions(root.join("top.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(root.join("sub dir"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("sub dir/it's.bin", root.join("link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", root.join("dangling")).unwrap();
}

/// Every entry under `root`: relative path, kind, mode and content (or link target).
fn describe(root: &Path) -> Vec<(PathBuf, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_owned();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let m = meta.permissions().mode() & 0o777;
            if meta.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                out.push((rel, format!("link -> {}", t.display())));
            } else if meta.is_dir() {
                out.push((rel, format!("dir {m:o}")));
                walk(root, &p, out);
            } else {
                use sha2::Digest;
                let digest = sha2::Sha256::digest(std::fs::read(&p).unwrap());
                out.push((rel, format!("file {m:o} {digest:x}")));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[test]
fn a_tree_with_symlinks_and_empty_directories_goes_up_and_comes_back() {
    let sim = Sim::uncapped();
    let here = TempDir::new("cp-tree");
    let src = here.0.join("conf");
    make_tree(&src);
    let want = describe(&src);
    // Up to a new name, then down to a new name.
    let up = cp(
        &sim,
        &[
            "-r",
            &src.display().to_string(),
            &remote(&here.0.join("up")),
        ],
    );
    assert_eq!(up.status.code(), Some(0), "{}", stderr(&up));
    assert_eq!(describe(&here.0.join("up")), want);
    let down_dest = here.0.join("down");
    let down = cp(
        &sim,
        &[
            "-r",
            &remote(&here.0.join("up")),
            &down_dest.display().to_string(),
        ],
    );
    assert_eq!(down.status.code(), Some(0), "{}", stderr(&down));
    assert_eq!(describe(&down_dest), want);
    // Into an existing directory: under the source's name there, as scp does.
    let into = here.0.join("into");
    std::fs::create_dir(&into).unwrap();
    let o = cp(&sim, &["-r", &remote(&src), &into.display().to_string()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(describe(&into.join("conf")), want);
    assert_eq!(names(&into), vec!["conf".to_owned()]);
    assert_eq!(names(&here.0), ["conf", "down", "into", "up"]);
}

#[test]
fn a_websocket_killed_mid_transfer_costs_a_retry_not_the_copy() {
    // The gateway pauses the agent while the client is away (the default): a download's
    // command output stops for good, so its range is fetched again from where it stopped. An
    // upload's terminal input survives the reconnect.
    let sim = Sim::with_config(SimConfig {
        agent_read_pause: Duration::ZERO,
        faults: FaultConfig {
            kill_after_messages: Some(1000),
            ..Default::default()
        },
        ..Default::default()
    });
    let here = TempDir::new("cp-kill");
    let data = pattern(9, 800_000);
    std::fs::write(here.0.join("a.bin"), &data).unwrap();
    let down = here.0.join("down.bin");
    let o = cp(
        &sim,
        &[&remote(&here.0.join("a.bin")), &down.display().to_string()],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(std::fs::read(&down).unwrap() == data);
    assert!(err.contains("reconnecting"), "{err}");
    assert!(err.contains("fetching the rest"), "{err}");

    let o = cp(
        &sim,
        &[
            &here.0.join("a.bin").display().to_string(),
            &remote(&here.0.join("up.bin")),
        ],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(std::fs::read(here.0.join("up.bin")).unwrap() == data);
    assert!(err.contains("resumed after"), "{err}");
    assert_eq!(names(&here.0), ["a.bin", "down.bin", "up.bin"]);
}

/// A PATH with everything this machine has but `missing`.
fn path_without(dir: &Path, missing: &[&str]) -> String {
    for bin in ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
        let Ok(entries) = std::fs::read_dir(bin) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let link = dir.join(&name);
            if missing.iter().any(|m| name == **m) || link.exists() {
                continue;
            }
            let _ = std::os::unix::fs::symlink(e.path(), link);
        }
    }
    dir.display().to_string()
}

#[test]
fn a_missing_remote_tool_is_named_and_nothing_is_written() {
    let bin = TempDir::new("cp-bin");
    let sim = Sim::with_config(SimConfig {
        agent_read_pause: Duration::ZERO,
        agent_path: Some(path_without(&bin.0, &["base64", "tar"])),
        ..Default::default()
    });
    let here = TempDir::new("cp-missing");
    std::fs::write(here.0.join("a.txt"), b"hello\n").unwrap();
    let o = cp(
        &sim,
        &[
            &here.0.join("a.txt").display().to_string(),
            &remote(&here.0.join("b.txt")),
        ],
    );
    assert_one_line_error(&o, 1, "no `base64`");
    std::fs::create_dir(here.0.join("d")).unwrap();
    let o = cp(
        &sim,
        &[
            "-r",
            &remote(&here.0.join("d")),
            &here.0.join("e").display().to_string(),
        ],
    );
    assert_one_line_error(&o, 1, "no `tar`");
    assert_eq!(names(&here.0), ["a.txt", "d"]);
    // What needs neither still works.
    let o = cp(
        &sim,
        &[
            &remote(&here.0.join("a.txt")),
            &here.0.join("c.txt").display().to_string(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn bad_paths_get_one_line_each() {
    let sim = Sim::uncapped();
    let here = TempDir::new("cp-bad");
    std::fs::write(here.0.join("a.txt"), b"a").unwrap();
    std::fs::create_dir(here.0.join("dir")).unwrap();
    let a = here.0.join("a.txt").display().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                remote(&here.0.join("nope")),
                here.0.join("x").display().to_string(),
            ],
            "no such file or directory",
        ),
        (
            vec![a.clone(), remote(&here.0.join("nodir/x"))],
            "no such file or directory: directory",
        ),
        (
            vec![
                remote(&here.0.join("dir")),
                here.0.join("y").display().to_string(),
            ],
            "is a directory (copy directories with -r)",
        ),
        (
            vec![
                here.0.join("dir").display().to_string(),
                remote(&here.0.join("z")),
            ],
            "is a directory",
        ),
        (
            vec![a.clone(), remote(Path::new("/dev/null"))],
            "not a regular file",
        ),
        (
            vec![remote(&here.0.join("a.txt")), "/nonexistent-dir/x".into()],
            "no such file or directory",
        ),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = cp(&sim, &args);
        assert_one_line_error(&o, 1, needle);
    }
    assert_eq!(names(&here.0), ["a.txt", "dir"]);
    let o = cp(&sim, &[&a, "elsewhere"]);
    assert_one_line_error(&o, 255, "neither side names a target");
}

#[test]
fn a_windows_target_is_refused_before_any_session() {
    let mut fleet = Fleet::default();
    let mut t = Target::new("i-0aaaaaaaaaaaaaaa1");
    t.platform_type = "Windows".into();
    t.platform_name = "Microsoft Windows Server 2022 Datacenter".into();
    fleet.targets.push(t);
    let sim = Sim::with_config(SimConfig {
        fleet,
        ..Default::default()
    });
    let o = cp(&sim, &["i-0aaaaaaaaaaaaaaa1:C:/x.txt", "."]);
    assert_one_line_error(&o, 1, "runs Windows");
    assert!(
        !sim.logs.text().contains("session started"),
        "{}",
        sim.logs.text()
    );
}

/// Starts `rssm cp ARGS`, waits for `ready` to see the copy under way, sends SIGINT, and
/// returns rssm's exit status and stderr.
fn interrupt(sim: &Sim, args: &[&str], ready: impl Fn() -> bool) -> (Option<i32>, String) {
    let mut cmd = sim.rssm();
    cmd.arg("cp")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    wait::until_true("the copy under way", LIMIT, &ready);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let (tx, rx) = std::sync::mpsc::channel();
    let mut err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        let _ = tx.send(s);
    });
    let err = rx.recv_timeout(LIMIT).expect("rssm exits after Ctrl-C");
    (child.wait().unwrap().code(), err)
}

/// The size of the file in `dir` whose name contains `part`, if there is one.
fn part_size(dir: &Path, part: &str) -> Option<u64> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .find(|e| e.file_name().to_string_lossy().contains(part))
        .and_then(|e| e.metadata().ok())
        .map(|m| m.len())
}

#[test]
fn ctrl_c_leaves_no_file_under_the_final_name_on_either_side() {
    // Under the service-like cap, so the copies take long enough to interrupt.
    let sim = capped_sim();
    let here = TempDir::new("cp-intr");
    let there = TempDir::new("cp-intr-there");
    std::fs::write(here.0.join("a.bin"), pattern(3, 8 << 20)).unwrap();
    let src = here.0.join("a.bin").display().to_string();
    let (code, err) = interrupt(&sim, &[&src, &remote(&there.0.join("b.bin"))], || {
        part_size(&there.0, ".rssm-cp-").is_some_and(|n| n > 100_000)
    });
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(names(&there.0).is_empty(), "{:?}", names(&there.0));

    let (code, err) = interrupt(
        &sim,
        &[
            &remote(&here.0.join("a.bin")),
            &there.0.join("c.bin").display().to_string(),
        ],
        || part_size(&there.0, ".rssm-cp.part").is_some_and(|n| n > 100_000),
    );
    assert_eq!(code, Some(130), "{err}");
    assert!(names(&there.0).is_empty(), "{:?}", names(&there.0));
}

#[test]
fn under_the_service_like_cap_a_small_copy_is_not_throttled() {
    let sim = capped_sim();
    let here = TempDir::new("cp-capped");
    let data = pattern(11, 300_000);
    std::fs::write(here.0.join("a.bin"), &data).unwrap();
    let o = cp(
        &sim,
        &[
            "--sessions",
            "2",
            &here.0.join("a.bin").display().to_string(),
            &remote(&here.0.join("b.bin")),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = cp(
        &sim,
        &[
            &remote(&here.0.join("b.bin")),
            &here.0.join("c.bin").display().to_string(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(std::fs::read(here.0.join("c.bin")).unwrap() == data);
    // Every session's relay says how many frames it throttled: none.
    let logs = sim.logs.text();
    let counts: Vec<&str> = logs
        .split("throttled=")
        .skip(1)
        .map(|rest| rest.split_whitespace().next().unwrap_or(""))
        .collect();
    assert!(
        !counts.is_empty() && counts.iter().all(|c| *c == "0"),
        "{logs}"
    );
}

/// The service-like cap: 1000 messages a second per session each way, the agent's 1 ms pause.
fn capped_sim() -> Sim {
    Sim::with_config(SimConfig {
        faults: FaultConfig {
            rate_limit: Some(1000),
            ..Default::default()
        },
        ..Default::default()
    })
}

/// `rssm cp SRC DIR/` as a shell command line, for a wrapper (a namespace, another user).
fn cp_line(src: &str, dir: &Path) -> String {
    format!(
        "'{}' cp '{}' '{}/'",
        common::rssm_path().display(),
        src,
        dir.display()
    )
}

/// `unshare` into a user and mount namespace with a 64 KiB tmpfs at `dir`, then `cmd`.
fn in_small_tmpfs(dir: &Path, cmd: &str) -> Command {
    let mut c = Command::new("unshare");
    c.args(["-rm", "sh", "-c"]).arg(format!(
        "mount -t tmpfs -o size=64k none '{}' && exec {cmd}",
        dir.display()
    ));
    c
}

#[test]
fn a_full_disk_is_said_so_on_either_side() {
    let sim = Sim::uncapped();
    let here = TempDir::new("cp-full");
    let data = pattern(5, 300_000);
    std::fs::write(here.0.join("a.bin"), &data).unwrap();
    let small = here.0.join("small");
    std::fs::create_dir(&small).unwrap();
    // Here: rssm in a namespace where `small` is a 64 KiB tmpfs.
    let mut cmd = in_small_tmpfs(&small, &cp_line(&remote(&here.0.join("a.bin")), &small));
    sim.apply_env(&mut cmd);
    let o = run_bounded(cmd, LIMIT);
    assert_one_line_error(&o, 1, "no space left on the device");

    // There: a simulator in such a namespace.
    let (server, env) = serve_sim(|line| in_small_tmpfs(&small, &line));
    let mut cmd = common::rssm();
    cmd.envs(env).env("RSSM_MAX_MSG_RATE", "0").args([
        "cp",
        &here.0.join("a.bin").display().to_string(),
        &remote(&small),
    ]);
    let o = run_bounded(cmd, LIMIT);
    drop(server);
    assert_one_line_error(&o, 1, "no space left on the device");
}

/// `rssm-sim serve` (uncapped) started through `wrap`, which gets its command line (a namespace,
/// another user), and the environment that points rssm at it.
fn serve_sim(wrap: impl FnOnce(String) -> Command) -> (KillOnDrop, Vec<(String, String)>) {
    let sim_bin = PathBuf::from(env!("CARGO_BIN_EXE_rssm")).with_file_name("rssm-sim");
    assert!(
        sim_bin.exists(),
        "{} (build the workspace)",
        sim_bin.display()
    );
    let line = format!(
        "'{}' serve --listen 127.0.0.1:0 --agent-read-pause-ms 0",
        sim_bin.display()
    );
    let mut serve = wrap(line);
    serve.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut server = KillOnDrop(serve.spawn().unwrap());
    let mut lines = rssm_testkit::lines::Lines::read(server.0.stdout.take().unwrap());
    // Its eleven export lines (endpoints, region, keys), as `rssm-sim serve` prints them.
    lines.wait_count("export", 11, LIMIT, |l| l.starts_with("export "));
    let env = lines
        .seen
        .iter()
        .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    (server, env)
}

/// `setpriv` to the user nobody, then `line` (a shell command line).
fn as_nobody(line: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "sh",
        "-c",
    ])
    .arg(format!("exec {line}"));
    c
}

#[test]
fn permission_denied_is_said_so_on_either_side() {
    let here = TempDir::new("cp-perm");
    std::fs::set_permissions(&here.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(here.0.join("secret.txt"), b"root only\n").unwrap();
    std::fs::set_permissions(
        here.0.join("secret.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(here.0.join("open.txt"), b"anyone\n").unwrap();
    std::fs::set_permissions(
        here.0.join("open.txt"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let locked = here.0.join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();

    // There: an agent that runs commands as nobody (the real one runs them as ssm-user).
    let (server, env) = serve_sim(|line| as_nobody(&line));
    let run = |args: &[String]| {
        let mut cmd = common::rssm();
        cmd.envs(env.clone())
            .env("RSSM_MAX_MSG_RATE", "0")
            .arg("cp")
            .args(args);
        run_bounded(cmd, LIMIT)
    };
    let o = run(&[
        remote(&here.0.join("secret.txt")),
        here.0.join("x").display().to_string(),
    ]);
    assert_one_line_error(&o, 1, "permission denied");
    let o = run(&[
        here.0.join("open.txt").display().to_string(),
        format!("{}/", remote(&locked)),
    ]);
    assert_one_line_error(&o, 1, "permission denied");
    drop(server);

    // Here: rssm as nobody, writing into a directory it may not write to.
    let sim = Sim::uncapped();
    let mut cmd = as_nobody(&cp_line(&remote(&here.0.join("open.txt")), &locked));
    sim.apply_env(&mut cmd);
    let o = run_bounded(cmd, LIMIT);
    assert_one_line_error(&o, 1, "permission denied");
    assert!(names(&locked).is_empty(), "{:?}", names(&locked));
}

/// A child process killed (and reaped) however the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_terminal_gets_a_progress_bar_and_a_pipe_or_quiet_gets_nothing() {
    // Under the service-like cap, so the bar has time to draw.
    let sim = Sim::start();
    let here = TempDir::new("cp-bar");
    std::fs::write(here.0.join("a.bin"), pattern(4, 1_500_000)).unwrap();
    let src = here.0.join("a.bin").display().to_string();
    let mut cmd = sim.rssm();
    cmd.args(["cp", &src, &remote(&here.0.join("b.bin"))]);
    let mut term = common::term::Term::spawn(cmd);
    // Name, bytes of the total, rate and ETA.
    term.expect(r"a\.bin +[0-9.]+ [KM]iB / 1\.43 MiB .* ETA ");
    assert_eq!(term.wait_exit(LIMIT), 0, "{}", term.text());
    assert!(std::fs::read(here.0.join("b.bin")).unwrap() == pattern(4, 1_500_000));

    // In a pipe: nothing on stderr at all; -q on a terminal: nothing either.
    let o = cp(
        &sim,
        &[
            &remote(&here.0.join("b.bin")),
            &here.0.join("c.bin").display().to_string(),
        ],
    );
    assert_eq!(o.status.code(), Some(0));
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
    let mut cmd = sim.rssm();
    cmd.args(["-q", "cp", &src, &remote(&here.0.join("d.bin"))]);
    let mut term = common::term::Term::spawn(cmd);
    assert_eq!(term.wait_exit(LIMIT), 0, "{}", term.text());
    assert!(!term.text().contains("ETA"), "{}", term.text());
}

/// A PATH of busybox applets and nothing else: a minimal (Alpine-like) image.
fn busybox_path(dir: &Path) -> String {
    let busybox = Path::new("/usr/bin/busybox");
    assert!(
        busybox.exists(),
        "busybox is missing (scripts/test.sh installs it)"
    );
    let list = Command::new(busybox).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        std::os::unix::fs::symlink(busybox, dir.join(applet)).unwrap();
    }
    dir.display().to_string()
}

#[test]
fn a_busybox_only_target_copies_files_and_trees_both_ways() {
    let bin = TempDir::new("cp-busybox");
    let sim = Sim::with_config(SimConfig {
        agent_read_pause: Duration::ZERO,
        agent_path: Some(busybox_path(&bin.0)),
        ..Default::default()
    });
    // The tools the agent's commands find are busybox's.
    let mut probe = sim.rssm();
    probe.args(["exec", DEMO, "--", "command -v tar; command -v stty"]);
    let o = run_bounded(probe, LIMIT);
    let found = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        found.lines().count() == 2
            && found
                .lines()
                .all(|l| l.starts_with(&*bin.0.to_string_lossy())),
        "{found}"
    );
    let here = TempDir::new("cp-bb");
    // With U+FFFD sequences, so the repair path (dd | base64) runs too.
    let mut data = pattern(21, 300_000);
    data[70_000..70_003].copy_from_slice(b"\xef\xbf\xbd");
    std::fs::write(here.0.join("a.bin"), &data).unwrap();
    let a = here.0.join("a.bin").display().to_string();
    let o = cp(
        &sim,
        &["--sessions", "2", &a, &remote(&here.0.join("up.bin"))],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(std::fs::read(here.0.join("up.bin")).unwrap() == data);
    let down = here.0.join("down.bin").display().to_string();
    let o = cp(
        &sim,
        &["--sessions", "2", &remote(&here.0.join("a.bin")), &down],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(std::fs::read(&down).unwrap() == data);

    let src = here.0.join("conf");
    make_tree(&src);
    let want = describe(&src);
    let up = here.0.join("tree-up");
    let o = cp(&sim, &["-r", &src.display().to_string(), &remote(&up)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(describe(&up), want);
    let back = here.0.join("tree-back");
    let o = cp(&sim, &["-r", &remote(&up), &back.display().to_string()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(describe(&back), want);
}
