//! moto in server mode on a free loopback port: the EC2/VPC/IAM/STS APIs for the doctor tests.
//! Started per test, killed on drop. A missing moto fails the test loudly (scripts/test.sh
//! installs it); it never skips.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rssm_testkit::wait;

/// A running `moto_server`.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The Python that runs moto (it has boto3).
    pub python: PathBuf,
}

/// `moto_server` on PATH, resolved to its real file (so its venv's python is found).
fn moto_server() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("moto_server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "moto_server not found on PATH: install it with `pip install 'moto[server]'` \
                 (scripts/test.sh does this in a venv under target/)"
            )
        })
}

impl Moto {
    /// Starts moto and waits until it accepts connections.
    pub fn start() -> Moto {
        let server = moto_server();
        // The venv's python sits next to moto_server; pyenv shims and system installs use python3.
        let python = ["python3", "python"]
            .iter()
            .map(|n| server.with_file_name(n))
            .find(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("python3"));
        let port = rssm_testkit::net::free_port();
        let child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // AWS managed policies (AmazonSSMManagedInstanceCore) exist only when asked for.
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", server.display()));
        let mut moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
            python,
        };
        wait::until_true("moto_server listening", Duration::from_secs(60), || {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited at start: {status}");
            }
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        moto
    }

    /// Runs `script` (Python, with boto3 clients `ec2`, `iam` pointed at moto) with `args`;
    /// returns its stdout parsed as JSON.
    pub fn build(&self, script: &str, args: &[&str], region: &str) -> serde_json::Value {
        let out = Command::new(&self.python)
            .arg(script)
            .args(args)
            .env("MOTO_URL", &self.url)
            .env("AWS_DEFAULT_REGION", region)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_PROFILE")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.python.display()));
        assert!(
            out.status.success(),
            "{script} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{script} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
