//! A real OpenSSH server on loopback for the ProxyCommand tests: throwaway host and user keys,
//! the user running the tests, killed on drop.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::TempDir;

/// A throwaway sshd on 127.0.0.1, killed on drop.
pub struct Sshd {
    child: Child,
    pub port: u16,
    pub dir: TempDir,
    pub user: String,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The absolute path of an OpenSSH tool; panics with what to install when it is missing.
pub fn require(tool: &str) -> String {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return p.to_string_lossy().into_owned();
        }
    }
    panic!("{tool} is required for this test: install openssh-server and openssh-client (.ci/run does)");
}

fn keygen(path: &Path) {
    let ok = Command::new(require("ssh-keygen"))
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs")
        .success();
    assert!(ok, "ssh-keygen failed");
}

/// Starts sshd on a free loopback port and waits until it accepts connections.
pub fn start_sshd() -> Sshd {
    start_sshd_with("")
}

/// [`start_sshd`] with `extra` config lines first (sshd keeps a keyword's first value, so
/// these win over the defaults).
pub fn start_sshd_with(extra: &str) -> Sshd {
    let sshd = require("sshd");
    let dir = TempDir::new("sshd");
    let d = &dir.0;
    keygen(&d.join("host_key"));
    keygen(&d.join("user_key"));
    std::fs::copy(d.join("user_key.pub"), d.join("authorized_keys")).unwrap();
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_owned();
    // sshd refuses to start without its privilege-separation directory.
    let _ = std::fs::create_dir_all("/run/sshd");
    let port = rssm_testkit::net::free_port();
    let config = format!(
        "{extra}Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
         AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
         PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
         PermitRootLogin yes\nSubsystem sftp internal-sftp\nLogLevel ERROR\n",
        d = d.display()
    );
    std::fs::write(d.join("sshd_config"), config).unwrap();
    let child = Command::new(&sshd)
        .args(["-D", "-e", "-f"])
        .arg(d.join("sshd_config"))
        .stdin(Stdio::null())
        .spawn()
        .expect("sshd starts");
    rssm_testkit::net::connect_when_listening(
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_secs(30),
    );
    Sshd {
        child,
        port,
        dir,
        user,
    }
}

/// ssh/scp options for reaching `sshd` through `proxy_command` (an OpenSSH `ProxyCommand`
/// value, `%h`/`%p` expanded by ssh), with no config, agent or known-hosts file of the machine.
pub fn ssh_opts(sshd: &Sshd, proxy_command: &str) -> Vec<String> {
    let d = sshd.dir.0.display();
    vec![
        "-F".into(),
        "/dev/null".into(),
        "-i".into(),
        format!("{d}/user_key"),
        "-o".into(),
        "IdentitiesOnly=yes".into(),
        "-o".into(),
        "StrictHostKeyChecking=no".into(),
        "-o".into(),
        "UserKnownHostsFile=/dev/null".into(),
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        "LogLevel=ERROR".into(),
        "-o".into(),
        format!("ProxyCommand={proxy_command}"),
    ]
}
