//! The data-channel websocket endpoint `/v1/data-channel/{SessionId}?role=publish_subscribe`
//! (PROTOCOL.md §5, §13.2): SigV4 check of the upgrade (service `ssmmessages`), the OpenDataChannel
//! text frame and its token, then frames to and from the session's relay. Pings are answered by the
//! websocket library with pongs, except on a blackholed connection ([`ClientOut::Blackhole`]).

use crate::relay::{ClientOut, RelayCommand, CHANNEL_CAPACITY};
use crate::sigv4;
use crate::state::SimState;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use rssm_protocol::payload::OpenDataChannelInput;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;

/// How long a client has to send OpenDataChannel after the upgrade.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for the peer's half of the closing handshake.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// Close code for authentication failures (policy violation).
const CLOSE_POLICY: u16 = 1008;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Handles the websocket upgrade.
pub async fn data_channel(
    State(state): State<Arc<SimState>>,
    Path(session_id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let role_ok = uri
        .query()
        .unwrap_or("")
        .split('&')
        .any(|p| p == "role=publish_subscribe");
    if !role_ok {
        return (StatusCode::BAD_REQUEST, "role must be publish_subscribe").into_response();
    }
    let signed = headers.contains_key("authorization")
        || uri.query().is_some_and(|q| q.contains("X-Amz-Signature="));
    if state.config.require_signed_websocket || signed {
        if let Err(e) = sigv4::verify(
            &state.credentials(),
            &state.config.region,
            "ssmmessages",
            sigv4::Received {
                method: &method,
                uri: &uri,
                headers: &headers,
                body: b"",
            },
            SystemTime::now(),
        ) {
            tracing::info!(session = %session_id, "data channel upgrade rejected: {e}");
            let body = serde_json::json!({ "__type": e.error_type(), "message": e.to_string() });
            return (StatusCode::FORBIDDEN, body.to_string()).into_response();
        }
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => return e.into_response(),
    };
    ws.on_upgrade(move |socket| connection(state, session_id, socket))
}

async fn close(mut socket: WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
    finish_close(&mut socket).await;
}

/// Completes the closing handshake: reads (and discards) until the peer's Close or EOF, briefly.
/// Dropping the socket while the peer is still sending would make the kernel answer with RST, and
/// an RST makes the peer discard frames it has received but not yet read — `channel_closed`
/// among them.
async fn finish_close(socket: &mut WebSocket) {
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        while let Some(Ok(msg)) = socket.recv().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

async fn connection(state: Arc<SimState>, session_id: String, mut socket: WebSocket) {
    let first = tokio::time::timeout(OPEN_TIMEOUT, socket.recv()).await;
    let open: OpenDataChannelInput = match first {
        Ok(Some(Ok(Message::Text(t)))) => match serde_json::from_str(t.as_str()) {
            Ok(o) => o,
            Err(_) => return close(socket, CLOSE_POLICY, "invalid OpenDataChannel request").await,
        },
        Ok(Some(Ok(Message::Binary(b)))) => match serde_json::from_slice(&b) {
            Ok(o) => o,
            Err(_) => return close(socket, CLOSE_POLICY, "invalid OpenDataChannel request").await,
        },
        _ => return close(socket, CLOSE_POLICY, "OpenDataChannel request expected").await,
    };
    let relay = match state.check_token(&session_id, &open.token_value, Instant::now()) {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(session = %session_id, "data channel token refused: {e}");
            return close(socket, CLOSE_POLICY, &format!("Authentication failed: {e}")).await;
        }
    };
    tracing::info!(session = %session_id, client_version = ?open.client_version, "client opened data channel");
    let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let (outbox, mut outbox_rx) = mpsc::channel(CHANNEL_CAPACITY);
    if relay
        .send(RelayCommand::ClientAttached { conn, outbox })
        .await
        .is_err()
    {
        return close(socket, 1000, "session ended").await;
    }
    let mut pending: Option<Bytes> = None;
    loop {
        let has_pending = pending.is_some();
        tokio::select! {
            permit = relay.reserve(), if has_pending => match (permit, pending.take()) {
                (Ok(p), Some(frame)) => p.send(RelayCommand::ClientFrame { conn, frame }),
                _ => break,
            },
            msg = socket.recv(), if !has_pending => match msg {
                Some(Ok(Message::Binary(b))) => pending = Some(b),
                // Both ends accept text frames as messages too (§5.4).
                Some(Ok(Message::Text(t))) => pending = Some(Bytes::copy_from_slice(t.as_str().as_bytes())),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            },
            out = outbox_rx.recv() => match out {
                Some(ClientOut::Frame(f)) => {
                    if socket.send(Message::Binary(f)).await.is_err() {
                        break;
                    }
                }
                Some(ClientOut::Close(code, reason)) => {
                    let _ = socket.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
                    finish_close(&mut socket).await;
                    break;
                }
                Some(ClientOut::Blackhole) => {
                    tracing::info!(session = %session_id, conn, "data channel blackholed");
                    // Not reading also means not answering pings (the websocket library replies
                    // while it reads); the kernel keeps the TCP connection up meanwhile.
                    while let Some(ClientOut::Frame(_) | ClientOut::Blackhole) = outbox_rx.recv().await {}
                    drop(socket);
                    drop(outbox_rx);
                    let _ = relay.send(RelayCommand::ClientDetached { conn }).await;
                    return;
                }
                Some(ClientOut::Kill) | None => {
                    drop(socket);
                    drop(outbox_rx);
                    let _ = relay.send(RelayCommand::ClientDetached { conn }).await;
                    return;
                }
            },
        }
    }
    drop(outbox_rx);
    let _ = relay.send(RelayCommand::ClientDetached { conn }).await;
}
