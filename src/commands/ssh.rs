//! `rssm ssh [USER@]TARGET [SSH ARGS…]`: a real SSH session with no setup. rssm runs the system
//! `ssh` with `ProxyCommand` pointing at itself (`rssm proxy %h %p`), `HostKeyAlias` set to the
//! instance id (host keys stick to the instance, not to a name or an address), and, unless told
//! otherwise, a fresh ed25519 key made in memory and pushed with EC2 Instance Connect
//! `SendSSHPublicKey` (valid 60 s), handed to ssh for this connection only: `IdentitiesOnly`, a
//! private temporary file removed however ssh ends, nothing in `~/.ssh`. The exit status is
//! ssh's.

use std::path::Path;

use anyhow::{bail, Result};

use crate::aws::Aws;
use crate::cli::{Cli, SshArgs};

use super::signals::Signals;
use super::EXIT_ERROR;

/// `[USER@]TARGET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub user: Option<String>,
    pub target: String,
}

impl std::str::FromStr for Destination {
    type Err = String;

    fn from_str(s: &str) -> Result<Destination, String> {
        let (user, target) = match s.rsplit_once('@') {
            Some((u, t)) if !u.is_empty() => (Some(u.to_owned()), t),
            Some(_) => return Err("an empty user name before @".into()),
            None => (None, s),
        };
        if target.is_empty() {
            return Err("no target".into());
        }
        Ok(Destination {
            user,
            target: target.to_owned(),
        })
    }
}

/// The login name a platform's images come with (`PlatformName` of
/// DescribeInstanceInformation); `ec2-user` when it is not known.
pub fn default_user(platform: Option<&str>) -> &'static str {
    let p = platform.unwrap_or("").to_ascii_lowercase();
    const USERS: [(&str, &str); 9] = [
        ("ubuntu", "ubuntu"),
        ("debian", "admin"),
        ("centos", "centos"),
        ("rocky", "rocky"),
        ("fedora", "fedora"),
        ("bitnami", "bitnami"),
        ("freebsd", "ec2-user"),
        ("suse", "ec2-user"),
        ("red hat", "ec2-user"),
    ];
    USERS
        .iter()
        .find(|(name, _)| p.contains(name))
        .map_or("ec2-user", |(_, user)| user)
}

/// rssm's own flags that the ProxyCommand must repeat (the environment it inherits anyway).
pub fn proxy_flags(cli: &Cli) -> Vec<String> {
    let mut v = Vec::new();
    let mut add = |flag: &str, value: &Option<String>| {
        if let Some(value) = value {
            v.push(format!("--{flag}={value}"));
        }
    };
    add("profile", &cli.profile);
    add("region", &cli.region);
    add("endpoint-url", &cli.endpoint_url);
    add("proxy", &cli.proxy);
    add(
        "config",
        &cli.config.as_ref().map(|p| p.display().to_string()),
    );
    v.push(format!("--alive-timeout={}", cli.alive_timeout));
    v.push(format!("--max-msg-rate={}", cli.max_msg_rate));
    v
}

/// Runs ssh; returns its exit status (255 when rssm cannot start it).
pub async fn run(aws: &Aws, args: &SshArgs, flags: &[String]) -> Result<u8> {
    match connect(aws, args, flags).await {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("rssm: ssh: {e:#}");
            Ok(EXIT_ERROR)
        }
    }
}

async fn connect(aws: &Aws, args: &SshArgs, flags: &[String]) -> Result<u8> {
    let ssh = which("ssh").ok_or_else(|| {
        anyhow::anyhow!("no `ssh` on PATH: install OpenSSH's client (openssh-client, openssh)")
    })?;
    let id = &args.destination.target;
    let own_key = gives_identity(&args.ssh_args);
    let send_key = !args.no_send_key && !own_key;
    let user = match (&args.user, &args.destination.user) {
        (Some(u), _) | (None, Some(u)) => u.clone(),
        (None, None) => {
            let platform = crate::inventory::managed_nodes(aws, Some(id))
                .await
                .ok()
                .and_then(|nodes| nodes.into_iter().find_map(|n| n.platform));
            let user = default_user(platform.as_deref()).to_owned();
            tracing::info!(
                "logging in as {user}, the default user of {}",
                platform.as_deref().unwrap_or("an unknown platform")
            );
            user
        }
    };
    let key_dir = tempfile::Builder::new().prefix("rssm-ssh-").tempdir()?;
    let mut options = vec![
        "-o".to_owned(),
        format!("ProxyCommand={}", proxy_command(flags)?),
        "-o".to_owned(),
        format!("HostKeyAlias={id}"),
        "-l".to_owned(),
        user.clone(),
    ];
    if send_key {
        if !id.starts_with("i-") {
            bail!(
                "{id} is not an EC2 instance: EC2 Instance Connect pushes keys to EC2 instances \
                 only. Log in with a key the node trusts (-i KEY) or --no-send-key"
            );
        }
        let key_path = key_dir.path().join("id_ed25519");
        let public = throwaway_key(&key_path)?;
        push_key(aws, id, &user, &public).await?;
        options.extend([
            "-i".to_owned(),
            key_path.display().to_string(),
            "-o".to_owned(),
            "IdentitiesOnly=yes".to_owned(),
        ]);
    }
    let mut cmd = tokio::process::Command::new(ssh);
    cmd.args(&options).arg(id).args(&args.ssh_args);
    tracing::debug!(?options, "running ssh");
    // ssh owns the terminal now: Ctrl-C and friends are its to handle, not ours.
    let _signals = Signals::new()?;
    let status = cmd.status().await?;
    drop(key_dir);
    let code = status.code().map_or(EXIT_ERROR, |c| c as u8);
    if code == 255 && send_key {
        eprintln!(
            "rssm: ssh: if ssh said \"Permission denied (publickey)\", {id} may not have EC2 \
             Instance Connect (package ec2-instance-connect; Amazon Linux and Ubuntu images have \
             it), or {user} is not a user there: pass -i KEY for a key it trusts"
        );
    }
    Ok(code)
}

/// Whether ssh's options (before any `--`: after it comes the remote command) name a key.
fn gives_identity(ssh_args: &[String]) -> bool {
    ssh_args
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| a.starts_with("-i") || a.to_ascii_lowercase().starts_with("identityfile"))
}

/// `rssm [flags] proxy %h %p`, quoted for the shell ssh runs it with.
fn proxy_command(flags: &[String]) -> Result<String> {
    let exe = std::env::current_exe()?;
    let mut words = vec![super::shell_quote(&exe.display().to_string())];
    words.extend(flags.iter().map(|f| super::shell_quote(f)));
    words.extend(["proxy".to_owned(), "%h".to_owned(), "%p".to_owned()]);
    Ok(words.join(" "))
}

/// Makes an ed25519 key pair, writes the private half to `path` (mode 0600) and returns the
/// public half as an OpenSSH line.
fn throwaway_key(path: &Path) -> Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key = ssh_key::PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519)?;
    let private = key.to_openssh(ssh_key::LineEnding::LF)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(private.as_bytes())?;
    Ok(key.public_key().to_openssh()?)
}

/// SendSSHPublicKey for `user` on `id`; a refusal says which permission is missing.
async fn push_key(aws: &Aws, id: &str, user: &str, public: &str) -> Result<()> {
    use aws_sdk_ec2instanceconnect::error::ProvideErrorMetadata;
    let sent = aws
        .instance_connect()
        .send_ssh_public_key()
        .instance_id(id)
        .instance_os_user(user)
        .ssh_public_key(public)
        .send()
        .await;
    match sent {
        Ok(_) => {
            tracing::info!("pushed a throwaway key for {user} to {id} (valid 60 s)");
            Ok(())
        }
        Err(e) => {
            let e = e.into_service_error();
            let message = e.message().unwrap_or("").to_owned();
            match e.code() {
                Some("AuthException") => bail!(
                    "not allowed to send a key to {id}: your credentials need \
                     ec2-instance-connect:SendSSHPublicKey on it ({message}); or log in with \
                     -i KEY / --no-send-key"
                ),
                Some(code) => bail!("EC2 Instance Connect refused the key: {code}: {message}"),
                None => bail!("EC2 Instance Connect SendSSHPublicKey failed: {e}"),
            }
        }
    }
}

/// The first `name` on PATH.
fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_split_at_the_last_at() {
        let d: Destination = "admin@10.0.1.23".parse().unwrap();
        assert_eq!(d.user.as_deref(), Some("admin"));
        assert_eq!(d.target, "10.0.1.23");
        let d: Destination = "web-1".parse().unwrap();
        assert_eq!((d.user, d.target.as_str()), (None, "web-1"));
        assert!("@web-1".parse::<Destination>().is_err());
        assert!("admin@".parse::<Destination>().is_err());
    }

    #[test]
    fn only_ssh_options_before_the_command_count_as_a_key() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(gives_identity(&v(&["-i", "k"])));
        assert!(gives_identity(&v(&["-ik", "--", "x"])));
        assert!(gives_identity(&v(&["-o", "IdentityFile=k"])));
        assert!(!gives_identity(&v(&[
            "-L", "1:h:2", "--", "find", "-iname", "x"
        ])));
        assert!(!gives_identity(&v(&[])));
    }

    #[test]
    fn platforms_give_their_default_users() {
        assert_eq!(default_user(Some("Amazon Linux 2023")), "ec2-user");
        assert_eq!(default_user(Some("Ubuntu 24.04")), "ubuntu");
        assert_eq!(default_user(Some("Debian GNU/Linux 12")), "admin");
        assert_eq!(
            default_user(Some("Red Hat Enterprise Linux 9.4")),
            "ec2-user"
        );
        assert_eq!(default_user(None), "ec2-user");
    }

    #[test]
    fn a_throwaway_key_is_private_and_openssh_shaped() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let public = throwaway_key(&path).unwrap();
        assert!(public.starts_with("ssh-ed25519 AAAA"), "{public}");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
    }
}
