//! KMS `GenerateDataKey` and `Decrypt` (service prefix `TrentService`), enough for KMS-encrypted
//! sessions (PROTOCOL.md §8.1).

use super::{parse, ApiError};
use crate::kms::KmsError;
use crate::state::SimState;
use rssm_protocol::crypto::{b64_decode, b64_encode};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

pub(super) fn call(state: &Arc<SimState>, op: &str, body: &[u8]) -> Result<Value, ApiError> {
    match op {
        "GenerateDataKey" => generate_data_key(state, parse(body)?),
        "Decrypt" => decrypt(state, parse(body)?),
        other => Err(ApiError::lower(
            "UnknownOperationException",
            format!("Unknown operation TrentService.{other}"),
        )),
    }
}

fn kms_error(e: KmsError) -> ApiError {
    ApiError::lower(e.error_type(), e.to_string())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GenerateDataKeyInput {
    key_id: Option<String>,
    number_of_bytes: Option<usize>,
    key_spec: Option<String>,
    #[serde(default)]
    encryption_context: BTreeMap<String, String>,
}

fn generate_data_key(
    state: &Arc<SimState>,
    input: GenerateDataKeyInput,
) -> Result<Value, ApiError> {
    let key_id = input.key_id.unwrap_or_default();
    let bytes = match (input.number_of_bytes, input.key_spec.as_deref()) {
        (Some(n), None) => n,
        (None, Some("AES_256")) => 32,
        (None, Some("AES_128")) => 16,
        _ => {
            return Err(ApiError::lower(
                "ValidationException",
                "Please specify either number of bytes or key spec.",
            ))
        }
    };
    let dk = state
        .kms
        .generate_data_key(&key_id, bytes, &input.encryption_context)
        .map_err(kms_error)?;
    Ok(json!({
        "CiphertextBlob": b64_encode(&dk.ciphertext_blob),
        "Plaintext": b64_encode(&dk.plaintext),
        "KeyId": dk.key_arn,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptInput {
    ciphertext_blob: Option<String>,
    key_id: Option<String>,
    #[serde(default)]
    encryption_context: BTreeMap<String, String>,
}

fn decrypt(state: &Arc<SimState>, input: DecryptInput) -> Result<Value, ApiError> {
    let blob = input
        .ciphertext_blob
        .as_deref()
        .and_then(|b| b64_decode(b).ok())
        .ok_or_else(|| kms_error(KmsError::InvalidCiphertext))?;
    let (key_arn, plaintext) = state
        .kms
        .decrypt(&blob, input.key_id.as_deref(), &input.encryption_context)
        .map_err(kms_error)?;
    Ok(json!({
        "KeyId": key_arn,
        "Plaintext": b64_encode(&plaintext),
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }))
}
