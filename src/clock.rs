//! Timer helpers for the async loops.

use tokio::time::Instant;

/// Sleeps until `t`; forever when there is no deadline (a `select!` arm that never fires).
pub async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
