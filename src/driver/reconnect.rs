//! Resuming a session whose websocket broke (§5.6, §14.19): ResumeSession for a fresh token,
//! then the same StreamUrl again. Sequence numbers and unacknowledged messages survive, and
//! retransmission fills the gap. When to try is [`rssm_protocol::liveness`]'s decision.

use std::time::Duration;

use rand_core::RngCore;
use rssm_protocol::liveness::{reconnect_delay, Liveness, RECONNECT_ATTEMPTS};
use tokio::time::Instant;

use super::{Driver, Output};
use crate::aws::ServiceError;
use crate::transport::{self, close_quickly};

impl Driver {
    /// Opens a new websocket for the session, or says why it cannot go on.
    pub(super) async fn reconnect(&mut self, why: &str) -> Result<(), String> {
        let Some(resume) = &self.context else {
            return Err(format!("the data channel failed: {why}"));
        };
        let started = Instant::now();
        self.config
            .notice(&format!("connection lost ({why}); reconnecting…"));
        // The first attempt goes at once, as the official client's retryer does (§17.4): every
        // agent message the gateway drops meanwhile costs a 100 ms resend tick later. The old
        // websocket is closed beside the new one, not waited for.
        let jitter = u64::from(rand_core::OsRng.next_u32());
        let mut last = String::new();
        for attempt in 1..=RECONNECT_ATTEMPTS {
            tokio::time::sleep(reconnect_delay(attempt, jitter)).await;
            // Credentials as they are now: the ones the session started with may have expired.
            let creds = match resume.aws.current_credentials().await {
                Ok(c) => c,
                Err(e) => {
                    last = format!("{e:#}");
                    continue;
                }
            };
            self.auth.credentials = Some(creds.clone());
            // ResumeSession and the new websocket's handshakes (TCP, TLS, the signed upgrade)
            // run side by side: only the OpenDataChannel frame needs the new token.
            let (token, dialed) = tokio::join!(
                resume.aws.resume_session(&resume.session_id, &creds),
                transport::connect(&self.auth)
            );
            let token = match token {
                Ok(Some(token)) => token,
                Ok(None) => {
                    return Err("the session has ended meanwhile and cannot be resumed".into())
                }
                Err(e) if is_permanent(&e) => {
                    return Err(format!("the session cannot be resumed: {e:#}"))
                }
                Err(e) => {
                    last = format!("{e:#}");
                    tracing::debug!(attempt, "reconnect failed: {last}");
                    continue;
                }
            };
            self.auth.token = token;
            let opened = match dialed {
                Ok(mut ws) => transport::authenticate(&mut ws, &self.auth)
                    .await
                    .map(|()| ws),
                Err(e) => Err(e),
            };
            match opened {
                Ok(ws) => {
                    let mut old = std::mem::replace(&mut self.ws, ws);
                    tokio::spawn(async move { close_quickly(&mut old).await });
                    self.on_new_websocket();
                    self.config.notice(&format!(
                        "resumed after {}",
                        human_duration(started.elapsed())
                    ));
                    let _ = self.output.send(Output::Resumed).await;
                    return Ok(());
                }
                Err(e) => last = format!("{e:#}"),
            }
            tracing::debug!(attempt, "reconnect failed: {last}");
        }
        Err(format!(
            "lost the data channel ({why}) and could not reconnect: {last}"
        ))
    }

    /// Starts the new websocket's bookkeeping afresh; the session resends what is unacknowledged.
    fn on_new_websocket(&mut self) {
        if let Some(b) = &mut self.read_batcher {
            b.reset();
        }
        self.mark_to_set = None;
        let now = Instant::now();
        let acks = self.session.stats().acks_received;
        self.liveness = Liveness::new(self.config.alive_timeout, now.into_std(), acks);
        self.session.on_reconnect(now.into_std());
    }
}

/// Errors after which asking ResumeSession again is pointless (by the service's error code).
fn is_permanent(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ServiceError>()
        .is_some_and(ServiceError::is_permanent)
}

/// `12 ms` under a second, `1.3 s` above.
fn human_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_the_unit_that_fits() {
        assert_eq!(human_duration(Duration::from_millis(12)), "12 ms");
        assert_eq!(human_duration(Duration::from_millis(1340)), "1.3 s");
    }

    #[test]
    fn only_service_answers_that_retrying_cannot_change_are_permanent() {
        let service = |code: &str| {
            anyhow::Error::new(ServiceError::for_tests(code)).context("ResumeSession s-1 failed")
        };
        assert!(is_permanent(&service("DoesNotExistException")));
        assert!(is_permanent(&service("AccessDeniedException")));
        assert!(!is_permanent(&service("ThrottlingException")));
        assert!(!is_permanent(&service("ExpiredTokenException")));
        // A message that merely mentions a code is not the service saying it.
        assert!(!is_permanent(&anyhow::anyhow!(
            "cannot reach the endpoint (AccessDeniedException in a proxy page)"
        )));
    }
}
