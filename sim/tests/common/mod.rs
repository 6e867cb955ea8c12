//! Test helpers: a SigV4-signing HTTP caller for the JSON API, and a data-channel client built on
//! the protocol crate's client `Session` over a real (loopback) websocket.
#![allow(dead_code)]

pub mod sdk;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rssm_protocol::handshake::DataKey;
use rssm_protocol::smux::{SmuxConfig, SmuxEvent, SmuxRole, SmuxSession, StreamId};
use rssm_protocol::{Event, PayloadType, Session, SessionConfig, SessionType};
use rssm_sim::sigv4::{sign_headers, SimCredentials, ToSign};
use rssm_sim::{Simulator, Target};
use rssm_testkit::pattern;
use rssm_testkit::wait::POLL;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// The built-in fleet's online demo instance.
pub const DEMO: &str = "i-0123456789abcdef0";
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Installs a log subscriber when `RSSM_SIM_TEST_LOG` is set (debugging aid).
pub fn init_logs() {
    if std::env::var_os("RSSM_SIM_TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_test_writer()
            .try_init();
    }
}

/// Calls `X-Amz-Target: <target>` with `body`, signed for `service` with `creds`.
pub async fn call_as(
    sim: &Simulator,
    creds: &SimCredentials,
    service: &str,
    target: &str,
    body: &Value,
) -> (u16, Value) {
    let addr = sim.addr();
    let host = addr.to_string();
    let body = serde_json::to_vec(body).unwrap();
    let base = [
        ("host", host.as_str()),
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", target),
    ];
    let url = format!("http://{host}/");
    let signed = sign_headers(
        creds,
        &sim.config().region,
        service,
        ToSign {
            method: "POST",
            url: &url,
            headers: &base,
            body: &body,
        },
        SystemTime::now(),
    )
    .unwrap();
    let mut req = String::from("POST / HTTP/1.1\r\n");
    for (k, v) in base {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    for (k, v) in signed {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(req.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut resp))
        .await
        .expect("API response in time")
        .unwrap();
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((len, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}

/// SSM call with the simulator's own credentials.
pub async fn ssm(sim: &Simulator, op: &str, body: Value) -> (u16, Value) {
    call_as(
        sim,
        &sim.config().credentials,
        "ssm",
        &format!("AmazonSSM.{op}"),
        &body,
    )
    .await
}

/// StartSession; panics unless it succeeds. Returns the response.
pub async fn start_session(sim: &Simulator, body: Value) -> Value {
    let (status, resp) = ssm(sim, "StartSession", body).await;
    assert_eq!(status, 200, "{resp}");
    resp
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens the data channel websocket (signed for `ssmmessages`) and sends OpenDataChannel.
pub async fn open_ws(sim: &Simulator, stream_url: &str, token: &str) -> Ws {
    let mut req = stream_url.into_client_request().unwrap();
    let host = sim.addr().to_string();
    let http_url = stream_url.replacen("ws://", "http://", 1);
    let signed = sign_headers(
        &sim.config().credentials,
        &sim.config().region,
        "ssmmessages",
        ToSign {
            method: "GET",
            url: &http_url,
            headers: &[("host", host.as_str())],
            body: b"",
        },
        SystemTime::now(),
    )
    .unwrap();
    for (k, v) in signed {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let open = json!({
        "MessageSchemaVersion": "1.0",
        "RequestId": uuid::Uuid::new_v4().to_string(),
        "TokenValue": token,
        "ClientId": "00000000-0000-4000-8000-000000000001",
        "ClientVersion": rssm_protocol::CLIENT_VERSION,
    });
    ws.send(Message::Text(open.to_string().into()))
        .await
        .unwrap();
    ws
}

/// A data-channel client: protocol `Session` (client role) over a websocket, resuming through
/// ResumeSession when the websocket dies.
pub struct Client<'a> {
    pub sim: &'a Simulator,
    pub session_id: String,
    pub stream_url: String,
    pub ws: Option<Ws>,
    pub session: Session,
    pub reconnects: u32,
    pub closed: bool,
}

impl<'a> Client<'a> {
    pub async fn connect(sim: &'a Simulator, resp: &Value, target: &str) -> Client<'a> {
        Self::connect_with(sim, resp, target, rssm_protocol::CLIENT_VERSION).await
    }

    pub async fn connect_with(
        sim: &'a Simulator,
        resp: &Value,
        target: &str,
        client_version: &str,
    ) -> Client<'a> {
        let session_id = resp["SessionId"].as_str().unwrap().to_owned();
        let stream_url = resp["StreamUrl"].as_str().unwrap().to_owned();
        let token = resp["TokenValue"].as_str().unwrap();
        let ws = open_ws(sim, &stream_url, token).await;
        let mut config = SessionConfig::client(session_id.clone(), target);
        config.client_version = client_version.to_owned();
        let now = Instant::now();
        let unix_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        Client {
            sim,
            session_id,
            stream_url,
            ws: Some(ws),
            session: Session::new(config, now, unix_ms, [7; 32]),
            reconnects: 0,
            closed: false,
        }
    }

    async fn resume(&mut self) {
        self.ws = None;
        // The plugin waits 100–199 ms before its first retry (§5.6): this client does as it
        // does (a backoff to imitate, not a wait for something to happen).
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (status, resp) = ssm(
            self.sim,
            "ResumeSession",
            json!({ "SessionId": self.session_id }),
        )
        .await;
        assert_eq!(status, 200, "{resp}");
        let Some(token) = resp["TokenValue"].as_str() else {
            self.closed = true;
            return;
        };
        self.ws = Some(open_ws(self.sim, &self.stream_url, token).await);
        self.reconnects += 1;
        self.session.on_reconnect(Instant::now());
    }

    /// Sends a stream payload.
    pub fn send(&mut self, pt: PayloadType, data: &[u8]) {
        self.session
            .send(pt, Bytes::copy_from_slice(data))
            .expect("send");
    }

    /// Moves frames until `done` returns true for an event (returned with all events seen), or
    /// panics after `limit`.
    pub async fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&Event, &mut Session) -> bool,
    ) -> Vec<Event> {
        self.run_loop(limit, |e, s| e.is_some_and(|e| done(e, s)))
            .await
    }

    /// Moves frames until the Output seen so far contains every one of `needles`; returns it.
    pub async fn run_until_output(&mut self, limit: Duration, needles: &[&str]) -> String {
        let mut seen = String::new();
        self.run_until(limit, |e, _| {
            if let Event::Output(b) = e {
                seen.push_str(&String::from_utf8_lossy(b));
            }
            needles.iter().all(|n| seen.contains(n))
        })
        .await;
        seen
    }

    /// Like [`Client::run_until`], but `f` is also called with `None` on every turn of the loop
    /// (to feed more data once acknowledgements made room).
    pub async fn run_loop(
        &mut self,
        limit: Duration,
        mut f: impl FnMut(Option<&Event>, &mut Session) -> bool,
    ) -> Vec<Event> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut events = Vec::new();
        loop {
            if self.ws.is_none() && !self.closed {
                self.resume().await;
            }
            if let Some(ws) = &mut self.ws {
                let mut failed = false;
                while let Some(frame) = self.session.poll_transmit(Instant::now()) {
                    if ws.send(Message::Binary(frame)).await.is_err() {
                        failed = true;
                        break;
                    }
                }
                if failed {
                    self.ws = None;
                    continue;
                }
            }
            while let Some(ev) = self.session.poll_event() {
                if let Event::DataKeyRequired(req) = &ev {
                    let key = generate_data_key(self.sim, req).await;
                    self.session.provide_data_key(Ok(key));
                }
                let stop = f(Some(&ev), &mut self.session);
                events.push(ev);
                if stop {
                    return events;
                }
            }
            if f(None, &mut self.session) {
                return events;
            }
            if self.session.has_transmit() {
                continue;
            }
            let wake = self
                .session
                .poll_timeout()
                .map(tokio::time::Instant::from_std)
                .unwrap_or(deadline)
                .min(deadline);
            let Some(ws) = &mut self.ws else {
                panic!(
                    "session ended without the expected event: {}",
                    summary(&events)
                );
            };
            tokio::select! {
                msg = ws.next() => match msg {
                    Some(Ok(Message::Binary(b))) => { let _ = self.session.handle_frame(b, Instant::now()); }
                    Some(Ok(Message::Text(t))) => { let _ = self.session.handle_frame(Bytes::copy_from_slice(t.as_bytes()), Instant::now()); }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => { self.ws = None; }
                },
                _ = tokio::time::sleep_until(wake) => {
                    assert!(tokio::time::Instant::now() < deadline, "timed out; events so far: {}; client unacked {} stats {:?}", summary(&events), self.session.unacked(), self.session.stats());
                    self.session.handle_timeout(Instant::now());
                }
            }
        }
    }
}

/// Waits up to `limit` for `ready` to answer true, asking every [`POLL`] without blocking the
/// runtime (the simulator runs on it); panics naming `what` after that.
pub async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    limit: Duration,
    mut ready: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + limit;
    while !ready().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {what} within {limit:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// A short description of what a test saw (full Output dumps are unreadable).
pub fn summary(events: &[Event]) -> String {
    let outputs: usize = events
        .iter()
        .map(|e| match e {
            Event::Output(b) => b.len(),
            _ => 0,
        })
        .sum();
    let others: Vec<String> = events
        .iter()
        .filter(|e| !matches!(e, Event::Output(_)))
        .map(|e| format!("{e:?}").chars().take(200).collect())
        .collect();
    format!("{outputs} Output bytes; other events: {others:?}")
}

/// ECS ExecuteCommand (interactive) of `command` in the built-in fleet's ECS task: the target,
/// the HTTP status and the response.
pub async fn ecs_execute_command(sim: &Simulator, command: &str) -> (Target, u16, Value) {
    let ecs = sim
        .config()
        .fleet
        .targets
        .iter()
        .find(|t| t.id.starts_with("ecs:"))
        .unwrap()
        .clone();
    let (cluster, task, _) = ecs.ecs_parts().unwrap();
    let (status, r) = call_as(
        sim,
        &sim.config().credentials,
        "ecs",
        "AmazonEC2ContainerServiceV20141113.ExecuteCommand",
        &json!({ "cluster": cluster, "task": task, "command": command, "interactive": true }),
    )
    .await;
    (ecs, status, r)
}

/// KMS GenerateDataKey through the API, for KMS-encrypted sessions.
pub async fn generate_data_key(
    sim: &Simulator,
    req: &rssm_protocol::handshake::DataKeyRequest,
) -> DataKey {
    let (status, resp) = call_as(
        sim,
        &sim.config().credentials,
        "kms",
        "TrentService.GenerateDataKey",
        &json!({
            "KeyId": req.key_id,
            "NumberOfBytes": req.number_of_bytes,
            "EncryptionContext": req.encryption_context,
        }),
    )
    .await;
    assert_eq!(status, 200, "{resp}");
    let b64 = |k: &str| rssm_protocol::crypto::b64_decode(resp[k].as_str().unwrap()).unwrap();
    DataKey {
        plaintext: b64("Plaintext"),
        ciphertext_blob: b64("CiphertextBlob"),
    }
}

/// Collects Output bytes from events.
pub fn output_text(events: &[Event]) -> String {
    let mut s = Vec::new();
    for e in events {
        if let Event::Output(b) = e {
            s.extend_from_slice(b);
        }
    }
    String::from_utf8_lossy(&s).into_owned()
}

/// Drives an smux client over the data channel: `streams` connections each sending `size` random
/// bytes to the echo server; every stream's echo must hash the same.
pub async fn smux_echo(c: &mut Client<'_>, streams: usize, size: usize) {
    let now = Instant::now();
    let mut smux = SmuxSession::new(SmuxRole::Client, SmuxConfig::default(), now);
    let mut want: HashMap<StreamId, (Vec<u8>, Vec<u8>)> = HashMap::new();
    for i in 0..streams {
        let id = smux.open_stream().unwrap();
        want.insert(id, (pattern(i as u64, size), Vec::new()));
    }
    // Write in slices so both directions interleave.
    let mut offsets: HashMap<StreamId, usize> = want.keys().map(|k| (*k, 0)).collect();
    let feed = |smux: &mut SmuxSession,
                c: &mut rssm_protocol::Session,
                offsets: &mut HashMap<StreamId, usize>,
                want: &HashMap<StreamId, (Vec<u8>, Vec<u8>)>| {
        for (id, off) in offsets.iter_mut() {
            let data = &want[id].0;
            if *off < data.len() && c.unacked() < 200 {
                let end = (*off + 8192).min(data.len());
                smux.write(*id, &data[*off..end]).unwrap();
                *off = end;
            }
        }
        while c.unacked() < 400 {
            let Some(chunk) = smux.poll_output(1024) else {
                break;
            };
            c.send(PayloadType::Output, chunk).unwrap();
        }
    };
    feed(&mut smux, &mut c.session, &mut offsets, &want);
    let total = streams * size;
    let mut received = 0usize;
    c.run_loop(Duration::from_secs(120), |e, session| {
        if let Some(Event::Output(b)) = e {
            smux.handle_input(b, Instant::now()).unwrap();
            while let Some(ev) = smux.poll_event() {
                if let SmuxEvent::Readable(id) = ev {
                    while let Some(d) = smux.read(id, 65536) {
                        received += d.len();
                        want.get_mut(&id).unwrap().1.extend_from_slice(&d);
                    }
                }
            }
        }
        feed(&mut smux, session, &mut offsets, &want);
        received >= total
    })
    .await;
    for (id, (sent, got)) in &want {
        assert_eq!(
            Sha256::digest(sent),
            Sha256::digest(got),
            "stream {id:?}: {} of {} bytes came back",
            got.len(),
            sent.len()
        );
    }
}

pub async fn port_session<'a>(sim: &'a Simulator, port: u16, client_version: &str) -> Client<'a> {
    let resp = start_session(
        sim,
        json!({
            "Target": DEMO,
            "DocumentName": "AWS-StartPortForwardingSession",
            "Parameters": { "portNumber": [port.to_string()], "localPortNumber": ["0"] },
        }),
    )
    .await;
    let mut c = Client::connect_with(sim, &resp, DEMO, client_version).await;
    let events = c
        .run_until(Duration::from_secs(20), |e, _| {
            matches!(e, Event::HandshakeComplete { .. })
        })
        .await;
    assert!(events.iter().any(|e| matches!(e, Event::SessionType(t) if t.session_type == SessionType::Port && t.property("portNumber") == Some(&port.to_string()))), "{events:?}");
    c
}
