//! KMS session encryption (PROTOCOL.md §8): the AES-256-GCM framing both ends share, the agent's
//! counter nonces, the challenge exchange and the KMS encryption context.
//!
//! Only the cryptography lives here. Calling KMS (`GenerateDataKey` on the client, `Decrypt` on the
//! agent) is I/O and belongs to the driver, which hands us the 64-byte plaintext data key. Randomness
//! also comes from the caller, so every path is reproducible with a seeded RNG in tests.

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::aead::{AeadInPlace, KeyInit, Nonce};
use aes_gcm::{Aes256Gcm, Tag};
use base64::Engine as _;
use rand_core::CryptoRngCore;

use crate::Role;

/// Length of the plaintext KMS data key: both implementations ask KMS for 64 bytes and split it into
/// two AES-256 keys, one per direction (§8.2).
pub const DATA_KEY_LEN: usize = 64;

/// Length of the AES-GCM nonce that prefixes every encrypted payload (§8.3).
pub const NONCE_LEN: usize = 12;

/// Length of the AES-GCM authentication tag that ends every encrypted payload (§8.3).
pub const TAG_LEN: usize = 16;

/// How many bytes encryption adds to a payload (nonce + tag), e.g. for size limits (§12).
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Length of the plaintext challenge the agent sends in `EncryptionChallengeRequest` (§8.5).
pub const CHALLENGE_LEN: usize = 64;

/// Length of the raw random bytes behind the agent's `KMSEncryption` `Challenge` string (§7.3).
pub const KMS_RANDOM_CHALLENGE_LEN: usize = 16;

/// KMS encryption-context key binding the data key to one session (§8.1).
pub const CONTEXT_SESSION_ID: &str = "aws:ssm:SessionId";

/// KMS encryption-context key binding the data key to one target instance (§8.1).
pub const CONTEXT_TARGET_ID: &str = "aws:ssm:TargetId";

/// KMS encryption-context key for the agent's random challenge, present only when the client opts in
/// with `ChallengeAcknowledgement: true` (§8.1).
pub const CONTEXT_RANDOM_CHALLENGE: &str = "aws:ssm:RandomChallenge";

/// Why a cryptographic step of the session failed.
///
/// Every variant is fatal for the session: both real implementations cancel the session on any
/// decryption or challenge failure (§8.5), so callers only need to report which one happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// KMS handed back a data key that cannot be split into two AES-256 keys.
    #[error("KMS data key must be {DATA_KEY_LEN} bytes, got {len}")]
    DataKeyLength {
        /// The length we received.
        len: usize,
    },
    /// The encrypted payload cannot even hold a nonce and a tag (the Go code would panic here).
    #[error("encrypted payload is {len} bytes, shorter than the {OVERHEAD}-byte nonce and tag")]
    BlobTooShort {
        /// The length we received.
        len: usize,
    },
    /// The GCM tag did not verify: wrong key half, or the bytes were altered in transit.
    #[error("encrypted payload failed authentication (wrong key or tampered data)")]
    Authentication,
    /// The client's answer decrypted fine but is not the challenge we sent (§8.5).
    #[error("Encryption challenge does not match")]
    ChallengeMismatch,
    /// A base64 field (`Challenge`, `KMSCipherTextKey`) is not valid standard base64.
    #[error("invalid base64: {0}")]
    InvalidBase64(#[from] base64::DecodeError),
}

/// Builds the KMS encryption context for `GenerateDataKey` (client) or `Decrypt` (agent).
///
/// Both sides must present the same context or KMS refuses to decrypt, which is what binds the data
/// key to this session and target. `challenge` is the agent's `KMSEncryption` `Challenge` string,
/// passed only when the client acknowledges it (§8.1); the plugin never does, a newer client may.
pub fn encryption_context(
    session_id: &str,
    target_id: &str,
    challenge: Option<&str>,
) -> BTreeMap<String, String> {
    let mut context = BTreeMap::new();
    context.insert(CONTEXT_SESSION_ID.to_owned(), session_id.to_owned());
    context.insert(CONTEXT_TARGET_ID.to_owned(), target_id.to_owned());
    if let Some(challenge) = challenge {
        context.insert(CONTEXT_RANDOM_CHALLENGE.to_owned(), challenge.to_owned());
    }
    context
}

/// Makes the agent's `KMSEncryption` `Challenge` string: base64 of 16 random bytes (§7.3).
///
/// Only a simulated agent needs this; the string is used verbatim as an encryption-context value.
pub fn kms_random_challenge(rng: &mut (impl CryptoRngCore + ?Sized)) -> String {
    let mut bytes = [0u8; KMS_RANDOM_CHALLENGE_LEN];
    rng.fill_bytes(&mut bytes);
    b64_encode(&bytes)
}

/// Encodes bytes the way Go's `encoding/json` encodes a `[]byte` field: standard alphabet, padded.
///
/// Both `Challenge` fields (§8.5) and `KMSCipherTextKey` (§7.4) are Go `[]byte` on the wire.
pub fn b64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes a Go `[]byte` JSON field (standard alphabet, padded); the inverse of [`b64_encode`].
///
/// # Errors
///
/// [`CryptoError::InvalidBase64`] if `text` is not canonical padded standard base64.
pub fn b64_decode(text: &str) -> Result<Vec<u8>, CryptoError> {
    Ok(base64::engine::general_purpose::STANDARD.decode(text)?)
}

/// Where the next encryption nonce comes from; the two real implementations differ (§8.3).
enum NonceSource {
    /// The plugin draws 12 fresh random bytes for every message.
    Random,
    /// The agent counts up from a random start, which avoids birthday collisions on long sessions.
    Counter(AgentNonceCounter),
}

/// The agent's nonce: a 96-bit counter held as three `u32` words, least significant first, and
/// serialized little-endian (`A:agent/session/crypto/nonce.go NonceGenerator`).
///
/// We reproduce it exactly so the simulator's blobs look like a real agent's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AgentNonceCounter {
    words: [u32; 3],
}

impl AgentNonceCounter {
    /// Seeds the counter like `InitializeNonce`: 12 random bytes read as little-endian words.
    fn random(rng: &mut (impl CryptoRngCore + ?Sized)) -> Self {
        let mut bytes = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut bytes);
        let word =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        Self {
            words: [word(0), word(4), word(8)],
        }
    }

    /// Returns the current nonce and then increments, like `GenerateNonce`: each word is bumped and
    /// the carry stops at the first word that did not wrap to zero; all-ones wraps to all-zeros.
    fn next(&mut self) -> [u8; NONCE_LEN] {
        let mut nonce = [0u8; NONCE_LEN];
        for (chunk, word) in nonce.chunks_exact_mut(4).zip(self.words) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        for word in &mut self.words {
            *word = word.wrapping_add(1);
            if *word != 0 {
                break;
            }
        }
        nonce
    }
}

/// The per-session AES-256-GCM state of one end of the data channel (§8.2–8.3).
///
/// Built once the plaintext data key is known; from then on every encrypted payload in either
/// direction goes through [`encrypt`](Self::encrypt) / [`decrypt`](Self::decrypt). The key halves are
/// chosen from the [`Role`], so the client and agent built from the same key talk to each other.
pub struct SessionCipher {
    role: Role,
    encrypt: Aes256Gcm,
    decrypt: Aes256Gcm,
    nonces: NonceSource,
}

/// Both AES-256 key schedules and GHASH keys are overwritten when the cipher is dropped (the
/// `zeroize` features of `aes`, `aes-gcm` and `polyval`); the nonce counter is no secret.
impl zeroize::ZeroizeOnDrop for SessionCipher {}

impl fmt::Debug for SessionCipher {
    // Hand-written so key material can never end up in a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionCipher")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl SessionCipher {
    /// Splits the 64-byte plaintext data key for `role`: `key[0..32]` encrypts agent → client,
    /// `key[32..64]` encrypts client → agent (§8.2).
    ///
    /// An agent draws its random initial nonce counter from `rng` here; a client does not use it
    /// (it draws a fresh nonce per message in [`encrypt`](Self::encrypt)).
    ///
    /// # Errors
    ///
    /// [`CryptoError::DataKeyLength`] unless `data_key` is exactly 64 bytes.
    pub fn new(
        data_key: &[u8],
        role: Role,
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<Self, CryptoError> {
        if data_key.len() != DATA_KEY_LEN {
            return Err(CryptoError::DataKeyLength {
                len: data_key.len(),
            });
        }
        let (agent_key, client_key) = data_key.split_at(DATA_KEY_LEN / 2);
        let (encrypt_key, decrypt_key) = match role {
            Role::Agent => (agent_key, client_key),
            Role::Client => (client_key, agent_key),
        };
        let cipher = |key: &[u8]| {
            Aes256Gcm::new_from_slice(key).map_err(|_| CryptoError::DataKeyLength {
                len: data_key.len(),
            })
        };
        let nonces = match role {
            Role::Agent => NonceSource::Counter(AgentNonceCounter::random(rng)),
            Role::Client => NonceSource::Random,
        };
        Ok(Self {
            role,
            encrypt: cipher(encrypt_key)?,
            decrypt: cipher(decrypt_key)?,
            nonces,
        })
    }

    /// Which end this cipher belongs to (decides key halves and nonce scheme).
    pub fn role(&self) -> Role {
        self.role
    }

    /// Encrypts one payload with our encrypt key: `nonce(12) ‖ ciphertext ‖ tag(16)` (§8.3).
    ///
    /// A client takes the nonce from `rng`; an agent takes it from its counter and ignores `rng`.
    ///
    /// # Panics
    ///
    /// Only if `plaintext` exceeds AES-GCM's limit of 64 GiB, far beyond any message (§12).
    #[must_use]
    pub fn encrypt(
        &mut self,
        plaintext: &[u8],
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Vec<u8> {
        let nonce = match &mut self.nonces {
            NonceSource::Random => {
                let mut nonce = [0u8; NONCE_LEN];
                rng.fill_bytes(&mut nonce);
                nonce
            }
            NonceSource::Counter(counter) => counter.next(),
        };
        self.seal(nonce, plaintext)
    }

    /// Encrypts with an explicit nonce; split out of [`encrypt`](Self::encrypt) so known-answer tests
    /// can pin the nonce.
    fn seal(&self, nonce: [u8; NONCE_LEN], plaintext: &[u8]) -> Vec<u8> {
        let mut blob = Vec::with_capacity(plaintext.len() + OVERHEAD);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(plaintext);
        let tag = self
            .encrypt
            .encrypt_in_place_detached(
                Nonce::<Aes256Gcm>::from_slice(&nonce),
                &[],
                &mut blob[NONCE_LEN..],
            )
            .expect("AES-GCM only rejects plaintexts over 64 GiB");
        blob.extend_from_slice(&tag);
        blob
    }

    /// Decrypts one payload from the peer with our decrypt key; the nonce is read from the blob, so
    /// it works for both nonce schemes.
    ///
    /// # Errors
    ///
    /// [`CryptoError::BlobTooShort`] below 28 bytes, [`CryptoError::Authentication`] if the tag does
    /// not verify (wrong key half, different data key, or altered bytes).
    pub fn decrypt(&self, blob: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if blob.len() < OVERHEAD {
            return Err(CryptoError::BlobTooShort { len: blob.len() });
        }
        let (nonce, rest) = blob.split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut plaintext = ciphertext.to_vec();
        self.decrypt
            .decrypt_in_place_detached(
                Nonce::<Aes256Gcm>::from_slice(nonce),
                &[],
                &mut plaintext,
                Tag::from_slice(tag),
            )
            .map_err(|_| CryptoError::Authentication)?;
        Ok(plaintext)
    }

    /// Agent side of §8.5 step 1: 64 random bytes and their encryption under the agent's key.
    ///
    /// Keep the plaintext for [`verify_challenge`](Self::verify_challenge); send the 92-byte blob as
    /// `{"Challenge":"<base64>"}`. Uses the same nonce counter as data, as the agent does.
    #[must_use]
    pub fn make_challenge(
        &mut self,
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> ([u8; CHALLENGE_LEN], Vec<u8>) {
        let mut challenge = [0u8; CHALLENGE_LEN];
        rng.fill_bytes(&mut challenge);
        let blob = self.encrypt(&challenge, rng);
        (challenge, blob)
    }

    /// Client side of §8.5 step 2: decrypt the agent's challenge and re-encrypt it with our own key,
    /// proving we hold both halves of the data key.
    ///
    /// # Errors
    ///
    /// Whatever [`decrypt`](Self::decrypt) reports for `challenge_blob`.
    pub fn answer_challenge(
        &mut self,
        challenge_blob: &[u8],
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<Vec<u8>, CryptoError> {
        let challenge = self.decrypt(challenge_blob)?;
        Ok(self.encrypt(&challenge, rng))
    }

    /// Agent side of §8.5 step 3: the client's answer must decrypt to exactly the bytes we sent,
    /// otherwise the session fails.
    ///
    /// # Errors
    ///
    /// [`decrypt`](Self::decrypt)'s errors for `response_blob`, or [`CryptoError::ChallengeMismatch`].
    pub fn verify_challenge(
        &self,
        original: &[u8],
        response_blob: &[u8],
    ) -> Result<(), CryptoError> {
        if self.decrypt(response_blob)? == original {
            Ok(())
        } else {
            Err(CryptoError::ChallengeMismatch)
        }
    }
}

#[cfg(test)]
mod tests;
