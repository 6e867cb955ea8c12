//! What to forward: `PORT` and `-L [BIND:]LPORT:HOST:RPORT`, ssh's spelling, and which SSM document
//! asks the agent for it (PROTOCOL.md §9.4).

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{bail, Context, Result};

use crate::cli::ForwardArgs;

/// Forwards to a port on the target itself.
pub const DOCUMENT: &str = "AWS-StartPortForwardingSession";
/// Forwards to another host reachable from the target (`host` parameter).
pub const REMOTE_HOST_DOCUMENT: &str = "AWS-StartPortForwardingSessionToRemoteHost";

/// One forward: listen on `bind:local_port`, connect to `host:remote_port` from the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardSpec {
    /// Local address to listen on; loopback unless the user names another.
    pub bind: IpAddr,
    /// Local port; 0 lets the OS pick one.
    pub local_port: u16,
    /// Destination as the agent dials it (IPv6 without brackets).
    pub host: String,
    /// Destination port.
    pub remote_port: u16,
}

/// Every forward the command line asks for, in order: `PORT` first, then each `-L`.
pub fn from_args(args: &ForwardArgs) -> Result<Vec<ForwardSpec>> {
    let mut specs = Vec::new();
    if let Some(port) = args.port {
        if port == 0 {
            bail!("PORT must be 1-65535 (use -L 0:localhost:PORT for a free local port)");
        }
        specs.push(ForwardSpec {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            local_port: port,
            host: "localhost".into(),
            remote_port: port,
        });
    }
    for l in &args.local {
        specs.push(ForwardSpec::parse(l)?);
    }
    if specs.is_empty() {
        bail!(
            "nothing to forward: give a PORT (`rssm forward TARGET 3389`) or -L LPORT:HOST:RPORT"
        );
    }
    Ok(specs)
}

impl ForwardSpec {
    /// Parses `[BIND:]LPORT:HOST:RPORT`. BIND and HOST may be bracketed IPv6 (`[::1]`); BIND may
    /// also be `localhost` or `*` (every interface, as with ssh's GatewayPorts).
    pub fn parse(spec: &str) -> Result<ForwardSpec> {
        let usage = || {
            format!(
                "-L {}: expected [BIND:]LPORT:HOST:RPORT, e.g. 5432:db.internal:5432 or \
                 127.0.0.1:0:localhost:80",
                shown(spec)
            )
        };
        let fields = split_fields(spec).with_context(usage)?;
        let (bind, rest) = match fields.as_slice() {
            [l, h, r] => (IpAddr::V4(Ipv4Addr::LOCALHOST), [*l, *h, *r]),
            [b, l, h, r] => (parse_bind(b).with_context(usage)?, [*l, *h, *r]),
            _ => bail!(usage()),
        };
        let [local, host, remote] = rest;
        let local_port = local
            .parse::<u16>()
            .ok()
            .with_context(|| format!("{}: LPORT {local:?} is not 0-65535", usage()))?;
        let remote_port = remote
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .with_context(|| format!("{}: RPORT {remote:?} is not 1-65535", usage()))?;
        let host = unbracket(host);
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
            bail!("{}: HOST {host:?} is not a host name or address", usage());
        }
        Ok(ForwardSpec {
            bind,
            local_port,
            host: host.to_owned(),
            remote_port,
        })
    }

    /// The local address to bind.
    pub fn bind_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.local_port)
    }

    /// Whether the destination is the target itself (no `host` parameter needed).
    fn is_target_itself(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
    }

    /// The default document: the remote-host one only when HOST is not `localhost`.
    pub fn document(&self) -> &'static str {
        if self.is_target_itself() {
            DOCUMENT
        } else {
            REMOTE_HOST_DOCUMENT
        }
    }

    /// StartSession parameters for [`document`](Self::document); `local_port` is the port
    /// actually bound (the agent only records it).
    pub fn parameters(&self, local_port: u16) -> HashMap<String, Vec<String>> {
        let mut p = HashMap::from([
            ("portNumber".to_owned(), vec![self.remote_port.to_string()]),
            ("localPortNumber".to_owned(), vec![local_port.to_string()]),
        ]);
        if !self.is_target_itself() {
            p.insert("host".to_owned(), vec![self.host.clone()]);
        }
        p
    }

    /// `HOST:RPORT` for messages, IPv6 bracketed.
    pub fn remote(&self) -> Remote<'_> {
        Remote(self)
    }
}

/// Displays a spec's destination as `host:port` (`[v6]:port`).
pub struct Remote<'a>(&'a ForwardSpec);

impl fmt::Display for Remote<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ForwardSpec {
            host, remote_port, ..
        } = self.0;
        if host.contains(':') {
            write!(f, "[{host}]:{remote_port}")
        } else {
            write!(f, "{host}:{remote_port}")
        }
    }
}

/// Splits on `:` outside `[...]`.
/// `text` as typed, or quoted with escapes when it holds control characters (a newline would
/// break the one-line error it goes into).
fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(char::is_control) {
        format!("{text:?}").into()
    } else {
        text.into()
    }
}

/// Parses `[BIND:]PORT` (a listening address, as `ssh -D` takes it): BIND as in `-L`,
/// 127.0.0.1 when left out; PORT 0 lets the OS pick one.
pub fn parse_listen(text: &str) -> Result<SocketAddr> {
    let usage = || {
        let text = shown(text);
        format!("{text}: expected [BIND:]PORT, e.g. 1080 or 127.0.0.1:1080")
    };
    let fields = split_fields(text).with_context(usage)?;
    let (bind, port) = match fields.as_slice() {
        [p] => (IpAddr::V4(Ipv4Addr::LOCALHOST), *p),
        [b, p] => (parse_bind(b).with_context(usage)?, *p),
        _ => bail!(usage()),
    };
    let port = port
        .parse::<u16>()
        .ok()
        .with_context(|| format!("{}: PORT {port:?} is not 0-65535", usage()))?;
    Ok(SocketAddr::new(bind, port))
}

fn split_fields(spec: &str) -> Result<Vec<&str>> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut in_brackets = false;
    for (i, c) in spec.char_indices() {
        match c {
            '[' if !in_brackets => in_brackets = true,
            ']' if in_brackets => in_brackets = false,
            '[' | ']' => bail!("unbalanced brackets"),
            ':' if !in_brackets => {
                fields.push(&spec[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_brackets {
        bail!("unbalanced brackets");
    }
    fields.push(&spec[start..]);
    Ok(fields)
}

fn unbracket(s: &str) -> &str {
    s.strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s)
}

fn parse_bind(s: &str) -> Result<IpAddr> {
    match s {
        "localhost" => Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        "*" => Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        _ => unbracket(s)
            .parse()
            .ok()
            .with_context(|| format!("BIND {s:?} is not an IP address, `localhost` or `*`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_a_spec_are_escaped_in_its_one_line_error() {
        // Found by the forward_spec fuzz target: the error quoted a newline as it was.
        let e = format!("{:#}", ForwardSpec::parse("80\n").unwrap_err());
        assert!(e.starts_with(r#"-L "80\n": expected"#), "{e}");
        let e = format!("{:#}", parse_listen("\n").unwrap_err());
        assert!(!e.contains('\n'), "{e}");
        let e = format!("{:#}", ForwardSpec::parse("x").unwrap_err());
        assert!(
            e.starts_with("-L x: expected"),
            "plain text stays as typed: {e}"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_forward_spec_is_parsed_or_refused_in_one_line(text in "(?s).*") {
            for result in [ForwardSpec::parse(&text).map(|_| ()), parse_listen(&text).map(|_| ())] {
                if let Err(e) = result {
                    let line = format!("{e:#}");
                    proptest::prop_assert!(!line.contains('\n'), "{line}");
                }
            }
        }
    }

    fn spec(bind: &str, local_port: u16, host: &str, remote_port: u16) -> ForwardSpec {
        ForwardSpec {
            bind: bind.parse().unwrap(),
            local_port,
            host: host.into(),
            remote_port,
        }
    }

    #[test]
    fn parses_listening_addresses() {
        assert_eq!(parse_listen("1080").unwrap().to_string(), "127.0.0.1:1080");
        assert_eq!(parse_listen("*:0").unwrap().to_string(), "0.0.0.0:0");
        assert_eq!(
            parse_listen("[::1]:1080").unwrap().to_string(),
            "[::1]:1080"
        );
        assert!(parse_listen("1080:x").is_err());
        assert!(parse_listen("70000").is_err());
        assert!(parse_listen("a:b:c").is_err());
    }

    #[test]
    fn parses_ssh_style_specs() {
        let p = |s| ForwardSpec::parse(s).unwrap();
        assert_eq!(
            p("5432:db.internal:5432"),
            spec("127.0.0.1", 5432, "db.internal", 5432)
        );
        assert_eq!(p("0:localhost:80"), spec("127.0.0.1", 0, "localhost", 80));
        assert_eq!(
            p("0.0.0.0:8080:10.0.0.5:80"),
            spec("0.0.0.0", 8080, "10.0.0.5", 80)
        );
        assert_eq!(p("[::1]:0:[fd00::5]:443"), spec("::1", 0, "fd00::5", 443));
        assert_eq!(p("localhost:1:h:2"), spec("127.0.0.1", 1, "h", 2));
        assert_eq!(p("*:1:h:2"), spec("0.0.0.0", 1, "h", 2));
    }

    #[test]
    fn rejects_malformed_specs() {
        for bad in [
            "",
            "80",
            "80:host",
            "a:b:c:d:e",
            "x:80:host:80",
            "70000:host:80",
            "80:host:0",
            "80::80",
            "80:ho st:80",
            "[::1:80:h:80",
            "db.internal:80:h:80",
        ] {
            assert!(
                ForwardSpec::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn localhost_uses_the_plain_document_and_others_the_remote_host_one() {
        let local = spec("127.0.0.1", 0, "localhost", 80);
        assert_eq!(local.document(), DOCUMENT);
        assert_eq!(
            local.parameters(4000),
            HashMap::from([
                ("portNumber".into(), vec!["80".into()]),
                ("localPortNumber".into(), vec!["4000".into()]),
            ])
        );
        let remote = spec("127.0.0.1", 0, "fd00::5", 80);
        assert_eq!(remote.document(), REMOTE_HOST_DOCUMENT);
        assert_eq!(remote.parameters(1)["host"], vec!["fd00::5".to_owned()]);
        assert_eq!(remote.remote().to_string(), "[fd00::5]:80");
    }
}
