//! HTTP CONNECT (RFC 9110 §9.3.6): a TCP connection to the proxy that, once the proxy answers
//! 2xx, carries bytes to and from the destination as if dialled directly.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{authority, Route};

/// Longest wait for the proxy's answer to CONNECT (its own dial to the destination included).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer head read: a proxy's CONNECT answer is a status line and a few headers.
const MAX_HEAD: usize = 16 * 1024;

/// Dials `route`'s proxy and asks it for a tunnel to `host:port`.
pub async fn tunnel(route: &Route, host: &str, port: u16) -> Result<TcpStream> {
    let mut tcp = TcpStream::connect((route.host.as_str(), route.port))
        .await
        .with_context(|| {
            format!(
                "cannot reach the proxy at {} ({})",
                route.shown, route.source
            )
        })?;
    tcp.set_nodelay(true).ok();
    let target = authority(host.trim_matches(|c| c == '[' || c == ']'), port);
    tcp.write_all(request(&target, route.authorization.as_ref()).as_bytes())
        .await
        .with_context(|| format!("the proxy at {} closed the connection", route.shown))?;
    let head = tokio::time::timeout(ANSWER_TIMEOUT, read_head(&mut tcp))
        .await
        .map_err(|_| {
            anyhow!(
                "the proxy at {} did not answer CONNECT {target} within {} s",
                route.shown,
                ANSWER_TIMEOUT.as_secs()
            )
        })?
        .with_context(|| format!("the proxy at {} failed CONNECT {target}", route.shown))?;
    check_answer(&head, route, &target)?;
    Ok(tcp)
}

/// The CONNECT request, with the credentials if the proxy URL had them.
fn request(target: &str, authorization: Option<&http::HeaderValue>) -> String {
    let mut text = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(value) = authorization.and_then(|v| v.to_str().ok()) {
        text.push_str(&format!("Proxy-Authorization: {value}\r\n"));
    }
    text.push_str("\r\n");
    text
}

/// Reads the answer up to and including its blank line, and not a byte further: what follows
/// belongs to the destination.
async fn read_head(tcp: &mut TcpStream) -> Result<Vec<u8>> {
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            bail!("its answer has no end within {MAX_HEAD} bytes");
        }
        if tcp.read(&mut byte).await? == 0 {
            bail!("it closed the connection without an answer");
        }
        head.push(byte[0]);
    }
    Ok(head)
}

/// Accepts a 2xx answer; anything else becomes one line saying what to change.
fn check_answer(head: &[u8], route: &Route, target: &str) -> Result<()> {
    let text = String::from_utf8_lossy(head);
    let status_line = text.lines().next().unwrap_or_default();
    let mut words = status_line.splitn(3, ' ');
    let version = words.next().unwrap_or_default();
    let code = words.next().and_then(|c| c.parse::<u16>().ok());
    let reason: String = words
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(80)
        .collect();
    let (true, Some(code)) = (version.starts_with("HTTP/1."), code) else {
        bail!(
            "the proxy at {} answered CONNECT with something other than HTTP",
            route.shown
        );
    };
    match code {
        200..=299 => Ok(()),
        _ => Err(refusal(route, code, &reason, &format!("CONNECT {target}"))),
    }
}

/// The line for a proxy's refusal of `what` (`CONNECT host:port`, a request) with HTTP `code`.
pub fn refusal(route: &Route, code: u16, reason: &str, what: &str) -> anyhow::Error {
    let shown = &route.shown;
    let source = route.source;
    let status = format!("HTTP {code} {reason}");
    let status = status.trim_end();
    match code {
        401 | 407 if route.authorization.is_some() => {
            anyhow!("the proxy at {shown} refused the credentials in {source} ({status})")
        }
        401 | 407 => anyhow!(
            "the proxy at {shown} wants credentials ({status}): put them in {source}, as http://USER:PASS@HOST:PORT"
        ),
        _ => anyhow!("the proxy at {shown} refused {what}: {status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(auth: bool) -> Route {
        Route {
            host: "127.0.0.1".into(),
            port: 3128,
            authorization: auth.then(|| http::HeaderValue::from_static("Basic dTpw")),
            shown: "http://127.0.0.1:3128".into(),
            source: "HTTPS_PROXY",
        }
    }

    #[test]
    fn the_request_names_the_target_and_carries_credentials_only_when_given() {
        let auth = http::HeaderValue::from_static("Basic dTpw");
        assert_eq!(
            request("[::1]:443", Some(&auth)),
            "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\nProxy-Authorization: Basic dTpw\r\n\r\n"
        );
        assert_eq!(
            request("ssmmessages.eu-west-1.amazonaws.com:443", None),
            "CONNECT ssmmessages.eu-west-1.amazonaws.com:443 HTTP/1.1\r\nHost: ssmmessages.eu-west-1.amazonaws.com:443\r\n\r\n"
        );
    }

    #[test]
    fn answers_become_one_line_that_says_what_to_change() {
        let ok = check_answer(
            b"HTTP/1.1 200 Connection established\r\n\r\n",
            &route(false),
            "h:1",
        );
        assert!(ok.is_ok());
        assert!(check_answer(b"HTTP/1.0 200 OK\r\nVia: x\r\n\r\n", &route(false), "h:1").is_ok());
        let err = |head: &[u8], auth| {
            check_answer(head, &route(auth), "h:1")
                .unwrap_err()
                .to_string()
        };
        let wants = err(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", false);
        assert!(wants.contains("wants credentials"), "{wants}");
        assert!(wants.contains("HTTPS_PROXY"), "{wants}");
        let refused = err(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", true);
        assert!(refused.contains("refused the credentials"), "{refused}");
        assert!(!refused.contains("dTpw"), "{refused}");
        let denied = err(b"HTTP/1.1 403 Access violation\r\n\r\n", false);
        assert_eq!(
            denied,
            "the proxy at http://127.0.0.1:3128 refused CONNECT h:1: HTTP 403 Access violation"
        );
        let garbage = err(b"SSH-2.0-OpenSSH\r\n\r\n", false);
        assert!(garbage.contains("other than HTTP"), "{garbage}");
        let control = err(b"HTTP/1.1 502 bad\x1b[2Jgateway\r\n\r\n", false);
        assert!(!control.contains('\x1b'), "{control}");
    }

    #[tokio::test]
    async fn the_head_is_read_to_its_blank_line_and_no_further() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut peer, _) = listener.accept().await.unwrap();
            peer.write_all(b"HTTP/1.1 200 OK\r\n\r\nfirst bytes of the destination")
                .await
                .unwrap();
        });
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let head = read_head(&mut tcp).await.unwrap();
        assert_eq!(head, b"HTTP/1.1 200 OK\r\n\r\n");
        let mut rest = String::new();
        tcp.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "first bytes of the destination");
        server.await.unwrap();
    }
}
