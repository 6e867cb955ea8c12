//! A tiny KMS: `GenerateDataKey` and `Decrypt` with encryption-context binding.
//!
//! Every well-formed key id, alias or ARN exists; a malformed one is `NotFoundException`
//! ("Invalid keyId"), as KMS answers, which lets tests make GenerateDataKey fail. A ciphertext blob is `"RSSMKMS1" ‖ len(u16 BE) ‖ key ARN ‖ nonce(12)
//! ‖ AES-256-GCM(master, plaintext, aad = key ARN ‖ sorted context)`, so Decrypt fails exactly when
//! the real one would: another context, a tampered blob, or the wrong key id.

use crate::config::SimConfig;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

const MAGIC: &[u8] = b"RSSMKMS1";

/// KMS errors with the service's `__type`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KmsError {
    /// Blob malformed, tampered, or context mismatch.
    #[error("")]
    InvalidCiphertext,
    /// `KeyId` given to Decrypt differs from the key that encrypted.
    #[error("The key ID in the request does not identify a CMK that can perform this operation.")]
    IncorrectKey,
    /// Bad request values.
    #[error("{0}")]
    Validation(String),
    /// The key id is not a key id, alias or ARN.
    #[error("Invalid keyId '{0}'")]
    NotFound(String),
}

impl KmsError {
    /// `__type` of the error.
    pub fn error_type(&self) -> &'static str {
        match self {
            KmsError::InvalidCiphertext => "InvalidCiphertextException",
            KmsError::IncorrectKey => "IncorrectKeyException",
            KmsError::Validation(_) => "ValidationException",
            KmsError::NotFound(_) => "NotFoundException",
        }
    }
}

/// Result of GenerateDataKey.
#[derive(Debug, Clone)]
pub struct DataKey {
    /// Key ARN.
    pub key_arn: String,
    /// The data key.
    pub plaintext: Vec<u8>,
    /// The wrapped data key.
    pub ciphertext_blob: Vec<u8>,
}

/// The simulated KMS.
pub struct Kms {
    master: Aes256Gcm,
    region: String,
    account: String,
}

impl Kms {
    /// A KMS whose master key is derived from the simulator's secret and seed.
    pub fn new(config: &SimConfig) -> Kms {
        let mut h = Sha256::new();
        h.update(b"rssm-sim kms master key");
        h.update(config.credentials.secret_access_key.as_bytes());
        h.update(config.seed.to_le_bytes());
        let key = h.finalize();
        Kms {
            master: Aes256Gcm::new_from_slice(&key).expect("32-byte key"),
            region: config.region.clone(),
            account: config.account_id.clone(),
        }
    }

    /// Normalizes a key id, alias or ARN into a key ARN (aliases map to a stable key id).
    pub fn key_arn(&self, key_id: &str) -> Result<String, KmsError> {
        let not_found = || KmsError::NotFound(key_id.to_owned());
        if let Some((_, id)) = key_id
            .strip_prefix("arn:aws:kms:")
            .and_then(|rest| rest.split_once(":key/"))
        {
            return is_key_id(id)
                .then(|| key_id.to_owned())
                .ok_or_else(not_found);
        }
        let name = key_id
            .rsplit_once(":alias/")
            .map(|(_, a)| format!("alias/{a}"))
            .unwrap_or_else(|| key_id.to_owned());
        let id = if let Some(alias) = name.strip_prefix("alias/") {
            let valid = !alias.is_empty()
                && alias
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b));
            if !valid {
                return Err(not_found());
            }
            let d = Sha256::digest(name.as_bytes());
            let mut b = [0u8; 16];
            b.copy_from_slice(&d[..16]);
            uuid::Builder::from_random_bytes(b).into_uuid().to_string()
        } else if is_key_id(&name) {
            name
        } else {
            return Err(not_found());
        };
        Ok(format!(
            "arn:aws:kms:{}:{}:key/{id}",
            self.region, self.account
        ))
    }

    /// GenerateDataKey with `bytes` of key material bound to `context`.
    pub fn generate_data_key(
        &self,
        key_id: &str,
        bytes: usize,
        context: &BTreeMap<String, String>,
    ) -> Result<DataKey, KmsError> {
        if key_id.is_empty() {
            return Err(KmsError::Validation("KeyId is required".into()));
        }
        if !(1..=1024).contains(&bytes) {
            return Err(KmsError::Validation(format!(
                "1 validation error detected: Value '{bytes}' at 'numberOfBytes' failed to satisfy constraint: Member must have value less than or equal to 1024"
            )));
        }
        let key_arn = self.key_arn(key_id)?;
        let mut plaintext = vec![0u8; bytes];
        OsRng.fill_bytes(&mut plaintext);
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let aad = aad(&key_arn, context);
        let sealed = self
            .master
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| KmsError::InvalidCiphertext)?;
        let mut blob = MAGIC.to_vec();
        blob.extend_from_slice(&(key_arn.len() as u16).to_be_bytes());
        blob.extend_from_slice(key_arn.as_bytes());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        Ok(DataKey {
            key_arn,
            plaintext,
            ciphertext_blob: blob,
        })
    }

    /// Decrypt: returns (key ARN, plaintext).
    pub fn decrypt(
        &self,
        blob: &[u8],
        key_id: Option<&str>,
        context: &BTreeMap<String, String>,
    ) -> Result<(String, Vec<u8>), KmsError> {
        let rest = blob
            .strip_prefix(MAGIC)
            .ok_or(KmsError::InvalidCiphertext)?;
        let (len, rest) = rest
            .split_at_checked(2)
            .ok_or(KmsError::InvalidCiphertext)?;
        let len = u16::from_be_bytes([len[0], len[1]]) as usize;
        let (arn, rest) = rest
            .split_at_checked(len)
            .ok_or(KmsError::InvalidCiphertext)?;
        let key_arn = std::str::from_utf8(arn).map_err(|_| KmsError::InvalidCiphertext)?;
        if let Some(k) = key_id {
            if self.key_arn(k)? != key_arn {
                return Err(KmsError::IncorrectKey);
            }
        }
        let (nonce, sealed) = rest
            .split_at_checked(12)
            .ok_or(KmsError::InvalidCiphertext)?;
        let plaintext = self
            .master
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad(key_arn, context),
                },
            )
            .map_err(|_| KmsError::InvalidCiphertext)?;
        Ok((key_arn.to_owned(), plaintext))
    }
}

/// A key id proper: a UUID, or a multi-Region key's `mrk-` and 32 hex digits.
fn is_key_id(id: &str) -> bool {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (id.len() == 36 && uuid::Uuid::try_parse(id).is_ok())
        || id.strip_prefix("mrk-").is_some_and(|h| hex(h, 32))
}

fn aad(key_arn: &str, context: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = key_arn.as_bytes().to_vec();
    for (k, v) in context {
        out.push(0);
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decrypt_requires_the_same_context_and_key() {
        let kms = Kms::new(&SimConfig::default());
        let ctx: BTreeMap<String, String> =
            [("aws:ssm:SessionId".to_string(), "s-1".to_string())].into();
        let dk = kms.generate_data_key("alias/rssm-sim", 64, &ctx).unwrap();
        assert_eq!(dk.plaintext.len(), 64);
        let (arn, pt) = kms
            .decrypt(&dk.ciphertext_blob, Some("alias/rssm-sim"), &ctx)
            .unwrap();
        assert_eq!(pt, dk.plaintext);
        assert_eq!(arn, dk.key_arn);
        assert_eq!(
            kms.decrypt(&dk.ciphertext_blob, None, &BTreeMap::new()),
            Err(KmsError::InvalidCiphertext)
        );
        assert_eq!(
            kms.decrypt(&dk.ciphertext_blob, Some("alias/other"), &ctx),
            Err(KmsError::IncorrectKey)
        );
        assert_eq!(
            kms.decrypt(b"garbage", None, &ctx),
            Err(KmsError::InvalidCiphertext)
        );
    }

    #[test]
    fn malformed_key_ids_are_not_found() {
        let kms = Kms::new(&SimConfig::default());
        let ctx = BTreeMap::new();
        for ok in [
            "alias/rssm-sim",
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "mrk-1234abcd12ab34cd56ef1234567890ab",
            "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-east-1:123456789012:alias/rssm-sim",
        ] {
            assert!(kms.generate_data_key(ok, 64, &ctx).is_ok(), "{ok}");
        }
        for bad in [
            "no-such-key",
            "alias/",
            "alias/with space",
            "arn:aws:kms:us-east-1:1:key/x",
        ] {
            assert_eq!(
                kms.generate_data_key(bad, 64, &ctx).unwrap_err(),
                KmsError::NotFound(bad.into()),
                "{bad}"
            );
        }
        assert_eq!(
            KmsError::NotFound("k".into()).to_string(),
            "Invalid keyId 'k'"
        );
    }
}
