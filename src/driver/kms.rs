//! KMS GenerateDataKey for sessions whose document asks for encryption (§8.1), run beside the
//! driver loop so that acknowledgements and pings keep flowing while KMS answers.

use rssm_protocol::crypto::CONTEXT_TARGET_ID;
use rssm_protocol::handshake::RESPONSE_DEADLINE;
use rssm_protocol::{DataKey, DataKeyRequest};
use tokio::sync::oneshot;
use tokio::time::Instant;

use rssm_protocol::send_queue::FINISH_GRACE;

use super::Driver;

/// What a KMS GenerateDataKey call running beside the driver loop hands back.
pub(super) type DataKeyResult = Result<DataKey, String>;

impl Driver {
    /// Starts KMS GenerateDataKey beside the loop (the answer arrives in [`Self::on_data_key`]).
    pub(super) fn request_data_key(&mut self, req: DataKeyRequest) {
        tracing::debug!(key = %req.key_id, "KMS data key requested");
        let (tx, rx) = oneshot::channel();
        self.data_key = Some(rx);
        let aws = self.context.as_ref().map(|c| c.aws.clone());
        tokio::spawn(async move {
            let _ = tx.send(generate_data_key(aws, &req).await);
        });
    }

    /// Hands the data key to the session, which then answers the handshake. Without a key the
    /// agent is told why (a failed KMSEncryption action ends the session on its side) and we
    /// end with the reason, whatever the channel says afterwards.
    pub(super) fn on_data_key(&mut self, result: DataKeyResult) {
        self.data_key = None;
        match result {
            Ok(key) => {
                tracing::debug!("KMS data key received");
                self.session.provide_data_key(Ok(key));
            }
            Err(why) => {
                self.session.provide_data_key(Err(why.clone()));
                self.failure = Some(format!(
                    "{why}; the session document requires KMS encryption"
                ));
                self.finishing.get_or_insert(Instant::now() + FINISH_GRACE);
            }
        }
    }
}

/// KMS GenerateDataKey for `req`, as one line on failure. Never logs key material.
async fn generate_data_key(aws: Option<crate::aws::Aws>, req: &DataKeyRequest) -> DataKeyResult {
    let Some(aws) = aws else {
        return Err("no AWS configuration to call KMS with".into());
    };
    if req
        .encryption_context
        .get(CONTEXT_TARGET_ID)
        .is_none_or(|t| t.is_empty())
    {
        // The legacy 4-argument plugin call carries no target for the encryption context; the
        // official plugin refuses the same way (§7.4, §11).
        return Err("Installed version of CLI does not support Session Manager encryption feature. Please upgrade to the latest version of your CLI (e.g., AWS CLI).".into());
    }
    match tokio::time::timeout(RESPONSE_DEADLINE, aws.generate_data_key(req)).await {
        Ok(Ok(key)) => Ok(key),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err(format!(
            "KMS GenerateDataKey for key {} timed out after {} s",
            req.key_id,
            RESPONSE_DEADLINE.as_secs()
        )),
    }
}

/// The answer of the KMS call in flight; pending forever when there is none.
pub(super) async fn recv_data_key(
    rx: &mut Option<oneshot::Receiver<DataKeyResult>>,
) -> DataKeyResult {
    match rx {
        Some(rx) => rx
            .await
            .unwrap_or_else(|_| Err("the KMS call ended without an answer".into())),
        None => std::future::pending().await,
    }
}
