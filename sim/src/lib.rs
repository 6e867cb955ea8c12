//! rssm-sim: a local, faithful stand-in for AWS Session Manager — the SSM API (plus ECS
//! ExecuteCommand and KMS), the data-channel gateway (MGS) and a simulated SSM agent per target —
//! with seeded fault injection. Everything in rssm is tested against it, and users can try rssm
//! with it before they have AWS.
//!
//! Map (section numbers refer to PROTOCOL.md):
//! - [`api`]: the AWS JSON 1.1 endpoint, dispatched by `X-Amz-Target`, SigV4-verified ([`sigv4`]);
//! - [`gateway`]: the data-channel websocket (§5, §13.2); [`relay`]: one task per session between
//!   client and agent, applying [`faults`];
//! - [`agent`]: the simulated agent (§7, §9, §13.1) on `rssm_protocol::Session`;
//! - [`fleet`], [`documents`], [`kms`], [`state`], [`config`]: what exists and how it is configured.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let sim = rssm_sim::Simulator::start(rssm_sim::SimConfig::default()).await?;
//! println!("SSM endpoint: {}", sim.endpoint());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

pub mod agent;
pub mod api;
pub mod config;
pub mod documents;
pub mod faults;
pub mod fleet;
pub mod gateway;
pub mod kms;
pub mod launch;
pub mod relay;
pub mod sigv4;
pub mod state;

pub use config::{FaultConfig, Hostile, SimConfig};
pub use fleet::{Fleet, Target};
pub use sigv4::SimCredentials;

use axum::extract::State;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use state::SimState;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;

/// A running simulator (HTTP API and websocket gateway on one listener).
pub struct Simulator {
    state: Arc<SimState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn api_route(
    State(state): State<Arc<SimState>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    api::handle(state, method, uri, headers, body).await
}

/// What an instance's metadata service answers the `ec2-instance-connect` package: the keys
/// sent for `user` in the last 60 s, one per line (the real answer also carries signed lines
/// the package checks). `AuthorizedKeysCommand /usr/bin/curl -sf URL/%u/` in an sshd config
/// makes a test's sshd accept them.
async fn instance_connect_keys(
    State(state): State<Arc<SimState>>,
    axum::extract::Path((instance, user)): axum::extract::Path<(String, String)>,
) -> String {
    let mut text = String::new();
    for key in state.instance_connect_keys(&instance, &user) {
        text.push_str(&key);
        text.push('\n');
    }
    text
}

impl Simulator {
    /// Binds `config.listen` and starts serving in the background.
    pub async fn start(config: SimConfig) -> std::io::Result<Simulator> {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(SimState::new(config, addr));
        let app = Router::new()
            .route("/", post(api_route))
            .route("/v1/data-channel/{session_id}", get(gateway::data_channel))
            .route(
                "/imds/{instance}/latest/meta-data/managed-ssh-keys/active-keys/{user}/",
                get(instance_connect_keys),
            )
            .with_state(state.clone());
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            // Frames are small and latency matters (keystrokes, acks): no Nagle delay.
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                tracing::error!("server error: {e}");
            }
        });
        tracing::info!(%addr, "rssm-sim listening");
        Ok(Simulator {
            state,
            shutdown: Some(tx),
            task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.state.addr
    }

    /// `http://127.0.0.1:PORT`: the endpoint for SSM, ECS and KMS alike.
    pub fn endpoint(&self) -> String {
        self.state.endpoint()
    }

    /// The configuration in force.
    pub fn config(&self) -> &SimConfig {
        &self.state.config
    }

    /// The shared state (session table, KMS) for tests that look inside.
    pub fn state(&self) -> &Arc<SimState> {
        &self.state
    }

    /// The environment a client needs: endpoints, region and credentials.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let c = &self.state.config;
        let credentials = self.state.credentials();
        vec![
            ("AWS_ENDPOINT_URL_SSM", self.endpoint()),
            ("AWS_ENDPOINT_URL_ECS", self.endpoint()),
            ("AWS_ENDPOINT_URL_KMS", self.endpoint()),
            ("AWS_REGION", c.region.clone()),
            // AWS CLI v1 / botocore read only this one.
            ("AWS_DEFAULT_REGION", c.region.clone()),
            ("AWS_ACCESS_KEY_ID", credentials.access_key_id),
            ("AWS_SECRET_ACCESS_KEY", credentials.secret_access_key),
            // Last, so readers of the first seven lines (older scripts) are unaffected.
            ("AWS_ENDPOINT_URL_EC2", self.endpoint()),
            // `rssm doctor`'s identity and IAM calls.
            ("AWS_ENDPOINT_URL_STS", self.endpoint()),
            ("AWS_ENDPOINT_URL_IAM", self.endpoint()),
            ("AWS_ENDPOINT_URL_EC2_INSTANCE_CONNECT", self.endpoint()),
        ]
    }

    /// Stops accepting connections and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Open websockets keep graceful shutdown waiting; do not hang on them.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), &mut self.task).await;
        self.task.abort();
    }
}
