//! The data-channel websocket: dial the StreamUrl with a SigV4-signed upgrade and authenticate with
//! the OpenDataChannel text frame (PROTOCOL.md §5.1–§5.2, and the 2025 signing requirement in its
//! header note).

use std::time::SystemTime;

use anyhow::{anyhow, bail, Context, Result};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use futures_util::SinkExt;
use rssm_protocol::payload::OpenDataChannelInput;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::http_proxy::{self, ProxyRules};

/// Bytes read from the websocket at a time (see [`open`]).
const READ_BUFFER: usize = 16 * 1024;
/// Largest websocket message (and frame) accepted. Agent messages carry at most 1024 payload
/// bytes (a few more encrypted, §12); handshake JSON and `channel_closed` texts are a few KiB.
/// tungstenite's default is 64 MiB, which a hostile or broken peer could make us buffer.
pub const MAX_MESSAGE: usize = 256 * 1024;

/// The websocket type every session uses.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the upgrade needs to authenticate.
#[derive(Clone)]
pub struct ChannelAuth {
    /// The session's `StreamUrl` (kept across reconnects, §5.6).
    pub stream_url: String,
    /// The current `TokenValue` (StartSession or ResumeSession).
    pub token: String,
    /// Random per process, reused on reconnect.
    pub client_id: String,
    /// Credentials to sign the upgrade with; `None` sends it unsigned (presigned URLs, old
    /// gateways) — the simulator rejects that.
    pub credentials: Option<Credentials>,
    /// Region to sign for when the URL's host does not name one (loopback simulators).
    pub region: String,
    /// Which HTTP proxy, if any, the websocket goes through.
    pub proxy: ProxyRules,
}

impl std::fmt::Debug for ChannelAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelAuth")
            .field("stream_url", &redact_url(&self.stream_url))
            .field("token", &"<redacted>")
            .field("client_id", &self.client_id)
            .field("region", &self.region)
            .field("proxy", &self.proxy)
            .finish()
    }
}

/// Opens the websocket and sends OpenDataChannel. No response frame is awaited (§5.2).
pub async fn open(auth: &ChannelAuth) -> Result<Ws> {
    let mut ws = connect(auth).await?;
    authenticate(&mut ws, auth).await?;
    Ok(ws)
}

/// Dials the StreamUrl with the signed upgrade, without authenticating yet: the token is only
/// needed for [`authenticate`], so a reconnect can dial while ResumeSession fetches it.
pub async fn connect(auth: &ChannelAuth) -> Result<Ws> {
    let mut request = auth
        .stream_url
        .as_str()
        .into_client_request()
        .with_context(|| format!("invalid StreamUrl {}", redact_url(&auth.stream_url)))?;
    let presigned = request
        .uri()
        .query()
        .is_some_and(|q| q.contains("X-Amz-Signature="));
    if let (Some(creds), false) = (&auth.credentials, presigned) {
        let uri = request.uri().clone();
        let host = uri
            .authority()
            .ok_or_else(|| anyhow!("StreamUrl has no host"))?
            .as_str()
            .to_owned();
        let region = region_from_host(&host).unwrap_or_else(|| auth.region.clone());
        for (name, value) in sign_upgrade(creds, &region, &uri.to_string(), &host)? {
            request.headers_mut().insert(
                http::HeaderName::from_bytes(name.as_bytes())?,
                http::HeaderValue::from_str(&value)?,
            );
        }
    }
    // Frames are small and latency matters (keystrokes, acks): no Nagle delay. tungstenite
    // zero-fills its whole read buffer before every read, and frames arrive about a thousand a
    // second: the buffer is kept small ([`READ_BUFFER`]) rather than the default 128 KiB.
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let uri = request.uri().clone();
    let (ws, _response) = match auth.proxy.route(&uri) {
        Some(route) => {
            let host = uri.host().unwrap_or_default();
            let tls = uri.scheme_str() == Some("wss");
            let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
            tracing::info!("data channel through the proxy at {}", route.shown);
            let tcp = http_proxy::connect::tunnel(&route, host, port).await?;
            tokio_tungstenite::client_async_tls_with_config(request, tcp, Some(config), None).await
        }
        None => tokio_tungstenite::connect_async_with_config(request, Some(config), true).await,
    }
    .map_err(|e| describe_connect_error(&auth.stream_url, e))?;
    Ok(ws)
}

/// Sends OpenDataChannel with the current token on a connected websocket (§5.2).
pub async fn authenticate(ws: &mut Ws, auth: &ChannelAuth) -> Result<()> {
    let open = OpenDataChannelInput {
        message_schema_version: "1.0".into(),
        request_id: uuid::Uuid::new_v4().to_string(),
        token_value: auth.token.clone(),
        client_instance_id: None,
        client_id: auth.client_id.clone(),
        client_version: Some(rssm_protocol::CLIENT_VERSION.into()),
    };
    let text = serde_json::to_string(&open).expect("plain struct serializes");
    ws.send(Message::text(text))
        .await
        .context("the data channel closed while authenticating")?;
    Ok(())
}

/// SigV4 headers for the upgrade `GET`, service `ssmmessages`.
fn sign_upgrade(
    creds: &Credentials,
    region: &str,
    url: &str,
    host: &str,
) -> Result<Vec<(String, String)>> {
    let identity = creds.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("ssmmessages")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| anyhow!("cannot sign the data-channel request: {e}"))?
        .into();
    let headers = [("host", host)];
    let signable = SignableRequest::new("GET", url, headers.into_iter(), SignableBody::Bytes(&[]))
        .map_err(|e| anyhow!("cannot sign the data-channel request: {e}"))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| anyhow!("cannot sign the data-channel request: {e}"))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// `ssmmessages.eu-west-1.amazonaws.com` → `eu-west-1`.
fn region_from_host(host: &str) -> Option<String> {
    let host = host.split(':').next()?;
    let mut parts = host.split('.');
    if parts.next()? != "ssmmessages" {
        return None;
    }
    let region = parts.next()?;
    (!region.is_empty() && region.contains('-')).then(|| region.to_owned())
}

/// Longest wait for our close frame to go out.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Closes the websocket politely, but never waits long: on a dead path the close frame may never
/// leave.
pub async fn close_quickly(ws: &mut Ws) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(None)).await;
}

/// A StreamUrl as it may be shown: scheme, host and path, never the query (where presigned
/// URLs carry their signature and the service its routing data).
pub fn redact_url(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

fn describe_connect_error(url: &str, e: tokio_tungstenite::tungstenite::Error) -> anyhow::Error {
    use tokio_tungstenite::tungstenite::Error as E;
    let shown = redact_url(url);
    match e {
        E::Http(resp) => {
            let status = resp.status();
            let body = resp
                .body()
                .as_deref()
                .map(|b| {
                    String::from_utf8_lossy(b)
                        .chars()
                        .take(200)
                        .collect::<String>()
                })
                .unwrap_or_default();
            anyhow!("the data channel at {shown} refused the connection: HTTP {status} {body}")
        }
        E::Io(io) => anyhow!("cannot reach the data channel at {shown}: {io}"),
        other => anyhow!("cannot open the data channel at {shown}: {other}"),
    }
}

/// Fails unless `url` is a websocket URL we are willing to use: `wss://` anywhere, `ws://` only
/// to loopback (simulators).
pub fn check_stream_url(url: &str) -> Result<()> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("invalid StreamUrl {}", redact_url(url)))?;
    match uri.scheme_str() {
        Some("wss") => Ok(()),
        Some("ws") => {
            let host = uri.host().unwrap_or("");
            let loopback = host == "localhost"
                || host
                    .trim_matches(|c| c == '[' || c == ']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(())
            } else {
                bail!("refusing unencrypted ws:// StreamUrl to non-loopback host {host}")
            }
        }
        _ => bail!("StreamUrl must be wss:// (got {})", redact_url(url)),
    }
}

/// Sets the websocket's TCP receive low-water mark: the kernel reports the socket readable only
/// once `bytes` are queued (see [`rssm_protocol::read_batch`]). Lowering it makes what is queued readable
/// at once (Linux signals readiness from the `setsockopt` itself). Linux only; elsewhere an
/// error, and the driver reads every frame as it comes.
pub fn set_read_low_water(ws: &Ws, bytes: u32) -> std::io::Result<()> {
    let tcp = match ws.get_ref() {
        MaybeTlsStream::Plain(tcp) => tcp,
        MaybeTlsStream::Rustls(tls) => tls.get_ref().0,
        _ => return Err(std::io::ErrorKind::Unsupported.into()),
    };
    set_rcvlowat(tcp, bytes)
}

#[cfg(target_os = "linux")]
fn set_rcvlowat(tcp: &TcpStream, bytes: u32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: the descriptor belongs to `tcp`, which outlives the call; the option value is a
    // c_int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_rcvlowat(_tcp: &TcpStream, _bytes: u32) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_peer_that_sends_an_oversized_message_is_refused_not_buffered() {
        use futures_util::StreamExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let _ = ws.send(Message::binary(vec![7u8; 4 * MAX_MESSAGE])).await;
            let _ = ws.next().await;
        });
        let auth = ChannelAuth {
            proxy: ProxyRules::direct(),
            stream_url: format!("ws://127.0.0.1:{port}/v1/data-channel/s"),
            token: "t".into(),
            client_id: "c".into(),
            credentials: None,
            region: "us-east-1".into(),
        };
        let mut ws = connect(&auth).await.unwrap();
        match ws.next().await {
            Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(_))) => {}
            other => panic!("expected a capacity error, got {other:?}"),
        }
    }

    #[test]
    fn region_comes_from_the_service_host() {
        assert_eq!(
            region_from_host("ssmmessages.ap-northeast-1.amazonaws.com").as_deref(),
            Some("ap-northeast-1")
        );
        assert_eq!(region_from_host("127.0.0.1:4000"), None);
        assert_eq!(region_from_host("ssmmessages.amazonaws.com"), None);
    }

    #[test]
    fn plain_websockets_only_to_loopback() {
        assert!(
            check_stream_url("wss://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/s").is_ok()
        );
        assert!(check_stream_url("ws://127.0.0.1:9/v1/data-channel/s").is_ok());
        assert!(check_stream_url("ws://[::1]:9/v1/data-channel/s").is_ok());
        assert!(check_stream_url("ws://localhost:9/x").is_ok());
        assert!(check_stream_url("ws://10.0.0.1:9/x").is_err());
        assert!(check_stream_url("https://example.com/x").is_err());
    }
}
