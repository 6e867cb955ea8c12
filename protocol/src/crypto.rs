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
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{RngCore, SeedableRng};

    #[test]
    fn key_material_is_overwritten_when_dropped() {
        // Compile-time: without the `aes` crate's `zeroize` feature the ciphers inside
        // `Aes256Gcm` would keep their key schedules after a session.
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        wiped_on_drop::<aes::Aes256>();
        wiped_on_drop::<SessionCipher>();
        wiped_on_drop::<crate::DataKey>();
    }

    /// 0x00, 0x01, … 0x3f: distinct halves, so a swapped half is always detected.
    fn data_key() -> Vec<u8> {
        (0u8..64).collect()
    }

    fn rng(seed: u64) -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(seed)
    }

    fn pair() -> (SessionCipher, SessionCipher, ChaCha20Rng) {
        let mut rng = rng(7);
        let client = SessionCipher::new(&data_key(), Role::Client, &mut rng).unwrap();
        let agent = SessionCipher::new(&data_key(), Role::Agent, &mut rng).unwrap();
        (client, agent, rng)
    }

    fn counter(words: [u32; 3]) -> AgentNonceCounter {
        AgentNonceCounter { words }
    }

    #[test]
    fn rejects_data_keys_that_are_not_64_bytes() {
        for len in [0, 32, 63, 65] {
            let err = SessionCipher::new(&vec![0; len], Role::Client, &mut rng(1)).unwrap_err();
            assert_eq!(err, CryptoError::DataKeyLength { len });
        }
    }

    #[test]
    fn blob_is_plaintext_plus_28_bytes() {
        // §15: 27 → 55 and 2 → 30.
        let (mut client, mut agent, mut rng) = pair();
        for (len, expected) in [(27, 55), (2, 30), (0, 28)] {
            assert_eq!(client.encrypt(&vec![b'x'; len], &mut rng).len(), expected);
            assert_eq!(agent.encrypt(&vec![b'x'; len], &mut rng).len(), expected);
        }
    }

    #[test]
    fn client_to_agent_round_trip() {
        let (mut client, agent, mut rng) = pair();
        let blob = client.encrypt(b"ls -la\r", &mut rng);
        assert_eq!(agent.decrypt(&blob).unwrap(), b"ls -la\r");
    }

    #[test]
    fn agent_to_client_round_trip() {
        let (client, mut agent, mut rng) = pair();
        let blob = agent.encrypt(b"total 0\r\n", &mut rng);
        assert_eq!(client.decrypt(&blob).unwrap(), b"total 0\r\n");
    }

    #[test]
    fn empty_plaintext_round_trips() {
        let (client, mut agent, mut rng) = pair();
        assert_eq!(client.decrypt(&agent.encrypt(b"", &mut rng)).unwrap(), b"");
    }

    #[test]
    fn own_blobs_do_not_decrypt_with_the_other_half() {
        // Each side decrypts with the half the *peer* encrypts with, so its own output must fail.
        let (mut client, mut agent, mut rng) = pair();
        let from_client = client.encrypt(b"hello", &mut rng);
        let from_agent = agent.encrypt(b"hello", &mut rng);
        assert_eq!(
            client.decrypt(&from_client),
            Err(CryptoError::Authentication)
        );
        assert_eq!(agent.decrypt(&from_agent), Err(CryptoError::Authentication));
    }

    #[test]
    fn halves_follow_section_8_2() {
        // The client encrypts with key[32..64], the agent with key[0..32]: check against ciphers
        // built directly from those halves.
        let (mut client, mut agent, mut rng) = pair();
        let key = data_key();
        let check = |key: &[u8], blob: &[u8], expected: &[u8]| {
            let (nonce, rest) = blob.split_at(NONCE_LEN);
            let mut buf = rest[..rest.len() - TAG_LEN].to_vec();
            Aes256Gcm::new_from_slice(key)
                .unwrap()
                .decrypt_in_place_detached(
                    Nonce::<Aes256Gcm>::from_slice(nonce),
                    &[],
                    &mut buf,
                    Tag::from_slice(&rest[rest.len() - TAG_LEN..]),
                )
                .unwrap();
            assert_eq!(buf, expected);
        };
        check(&key[32..], &client.encrypt(b"c", &mut rng), b"c");
        check(&key[..32], &agent.encrypt(b"a", &mut rng), b"a");
    }

    #[test]
    fn different_data_key_fails_to_decrypt() {
        let (mut client, _, mut rng) = pair();
        let other_key: Vec<u8> = (100u8..164).collect();
        let agent = SessionCipher::new(&other_key, Role::Agent, &mut rng).unwrap();
        let blob = client.encrypt(b"secret", &mut rng);
        assert_eq!(agent.decrypt(&blob), Err(CryptoError::Authentication));
    }

    #[test]
    fn tampering_with_any_byte_is_rejected() {
        let (mut client, agent, mut rng) = pair();
        let blob = client.encrypt(b"some shell input", &mut rng);
        for i in 0..blob.len() {
            let mut tampered = blob.clone();
            tampered[i] ^= 0x01;
            assert_eq!(
                agent.decrypt(&tampered),
                Err(CryptoError::Authentication),
                "byte {i}"
            );
        }
        // Dropping or adding a byte is tampering too.
        assert_eq!(
            agent.decrypt(&blob[..blob.len() - 1]),
            Err(CryptoError::Authentication)
        );
        let mut longer = blob.clone();
        longer.push(0);
        assert_eq!(agent.decrypt(&longer), Err(CryptoError::Authentication));
    }

    #[test]
    fn blobs_shorter_than_nonce_and_tag_are_rejected_without_panicking() {
        let (client, _, _) = pair();
        for len in 0..OVERHEAD {
            assert_eq!(
                client.decrypt(&vec![0; len]),
                Err(CryptoError::BlobTooShort { len })
            );
        }
        // Exactly 28 bytes is a well-formed (empty) blob, so it reaches the tag check.
        assert_eq!(
            client.decrypt(&[0; OVERHEAD]),
            Err(CryptoError::Authentication)
        );
    }

    #[test]
    fn agent_counter_returns_current_value_then_increments() {
        // nonce_test.go TestUpdateNonce: [1, 2, 3] → returns LE bytes of [1, 2, 3], state [2, 2, 3].
        let mut c = counter([1, 2, 3]);
        assert_eq!(c.next(), [1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(c, counter([2, 2, 3]));
    }

    #[test]
    fn agent_counter_carries_like_the_go_agent() {
        let cases = [
            ([0xffff_ffff, 0, 0], [0, 1, 0]),
            // nonce_test.go TestUpdateNonceCarry.
            ([0xffff_ffff, 2, 3], [0, 3, 3]),
            ([0xffff_ffff, 0xffff_ffff, 5], [0, 0, 6]),
            (
                [0xffff_fffe, 0xffff_ffff, 0xffff_ffff],
                [0xffff_ffff, 0xffff_ffff, 0xffff_ffff],
            ),
            // nonce_test.go TestUpdateNonceRollover: all ones wraps to zero.
            ([0xffff_ffff, 0xffff_ffff, 0xffff_ffff], [0, 0, 0]),
        ];
        for (before, after) in cases {
            let mut c = counter(before);
            c.next();
            assert_eq!(c, counter(after), "from {before:x?}");
        }
    }

    #[test]
    fn agent_nonces_are_consecutive_and_seeded_at_construction() {
        let mut seed_rng = rng(42);
        let mut expected = [0u8; NONCE_LEN];
        seed_rng.clone().fill_bytes(&mut expected);
        let mut agent = SessionCipher::new(&data_key(), Role::Agent, &mut seed_rng).unwrap();

        // The rng passed to encrypt is irrelevant for the agent.
        let first = agent.encrypt(b"a", &mut rng(1));
        let second = agent.encrypt(b"b", &mut rng(1));
        assert_eq!(first[..NONCE_LEN], expected);

        let mut c = AgentNonceCounter::random(&mut rng(42));
        assert_eq!(c.next(), expected);
        assert_eq!(second[..NONCE_LEN], c.next());
    }

    #[test]
    fn client_nonces_come_fresh_from_the_callers_rng() {
        let (mut client, _, _) = pair();
        let mut rng = rng(9);
        let mut expected = [0u8; NONCE_LEN];
        rng.clone().fill_bytes(&mut expected);
        let first = client.encrypt(b"same", &mut rng);
        let second = client.encrypt(b"same", &mut rng);
        assert_eq!(first[..NONCE_LEN], expected);
        assert_ne!(first[..NONCE_LEN], second[..NONCE_LEN]);
        assert_ne!(first, second);
    }

    // Expected values computed independently with Python's `cryptography` (OpenSSL):
    //   AESGCM(bytes(range(64))[:32]).encrypt(struct.pack('<3I', 1, 2, 3), b"hello from the agent", None)
    //   AESGCM(bytes(range(64))[32:]).encrypt(bytes(range(0xa0, 0xac)), b"hello from the client", None)
    // each prefixed with its nonce.
    #[test]
    fn agent_known_answer_matches_independent_aes_gcm() {
        let mut agent = SessionCipher::new(&data_key(), Role::Agent, &mut rng(0)).unwrap();
        agent.nonces = NonceSource::Counter(counter([1, 2, 3]));
        let blob = agent.encrypt(b"hello from the agent", &mut rng(0));
        assert_eq!(
            hex::encode(&blob),
            "010000000200000003000000\
             6c160602459d7bef5e9e59fdc7c9589b061f6d3f\
             f82c0cd3fe16bf4a71f04db4a13eee6d"
        );
        let client = SessionCipher::new(&data_key(), Role::Client, &mut rng(0)).unwrap();
        assert_eq!(client.decrypt(&blob).unwrap(), b"hello from the agent");
    }

    #[test]
    fn client_known_answer_matches_independent_aes_gcm() {
        let client = SessionCipher::new(&data_key(), Role::Client, &mut rng(0)).unwrap();
        let nonce: [u8; NONCE_LEN] = std::array::from_fn(|i| 0xa0 + i as u8);
        let blob = client.seal(nonce, b"hello from the client");
        assert_eq!(
            hex::encode(&blob),
            "a0a1a2a3a4a5a6a7a8a9aaab\
             1659c858abf7e6d8ce458dce4e3856c5fd16a46948\
             3ab848895d6f1d47d9e58909cf391f9d"
        );
    }

    #[test]
    fn challenge_round_trip_succeeds() {
        let (mut client, mut agent, mut rng) = pair();
        let (original, challenge_blob) = agent.make_challenge(&mut rng);
        assert_eq!(challenge_blob.len(), CHALLENGE_LEN + OVERHEAD);
        let response = client.answer_challenge(&challenge_blob, &mut rng).unwrap();
        assert_ne!(response, challenge_blob);
        assert_eq!(agent.verify_challenge(&original, &response), Ok(()));
    }

    #[test]
    fn challenge_survives_base64_json_transport() {
        let (mut client, mut agent, mut rng) = pair();
        let (original, blob) = agent.make_challenge(&mut rng);
        let received = b64_decode(&b64_encode(&blob)).unwrap();
        let response = client.answer_challenge(&received, &mut rng).unwrap();
        let received = b64_decode(&b64_encode(&response)).unwrap();
        assert_eq!(agent.verify_challenge(&original, &received), Ok(()));
    }

    #[test]
    fn challenge_mismatch_is_detected() {
        let (mut client, mut agent, mut rng) = pair();
        let (mut original, blob) = agent.make_challenge(&mut rng);
        let response = client.answer_challenge(&blob, &mut rng).unwrap();
        original[0] ^= 0xff;
        let err = agent.verify_challenge(&original, &response).unwrap_err();
        assert_eq!(err, CryptoError::ChallengeMismatch);
        assert_eq!(err.to_string(), "Encryption challenge does not match");
    }

    #[test]
    fn challenge_echoed_without_reencryption_is_rejected() {
        // A client without the key can only echo the blob; the agent decrypts with the other half.
        let (_, mut agent, mut rng) = pair();
        let (original, blob) = agent.make_challenge(&mut rng);
        assert_eq!(
            agent.verify_challenge(&original, &blob),
            Err(CryptoError::Authentication)
        );
    }

    #[test]
    fn client_with_wrong_key_cannot_answer_challenge() {
        let (_, mut agent, mut rng) = pair();
        let other_key: Vec<u8> = (100u8..164).collect();
        let mut client = SessionCipher::new(&other_key, Role::Client, &mut rng).unwrap();
        let (_, blob) = agent.make_challenge(&mut rng);
        assert_eq!(
            client.answer_challenge(&blob, &mut rng),
            Err(CryptoError::Authentication)
        );
        assert_eq!(
            client.answer_challenge(&blob[..5], &mut rng),
            Err(CryptoError::BlobTooShort { len: 5 })
        );
    }

    #[test]
    fn encryption_context_has_challenge_only_when_opted_in() {
        let plain = encryption_context("sess-1", "i-0123", None);
        assert_eq!(plain.len(), 2);
        assert_eq!(plain["aws:ssm:SessionId"], "sess-1");
        assert_eq!(plain["aws:ssm:TargetId"], "i-0123");

        let with = encryption_context("sess-1", "i-0123", Some("q83vEjRWeJA="));
        assert_eq!(with.len(), 3);
        assert_eq!(with["aws:ssm:RandomChallenge"], "q83vEjRWeJA=");
    }

    #[test]
    fn kms_random_challenge_is_base64_of_16_bytes() {
        let challenge = kms_random_challenge(&mut rng(3));
        assert_eq!(challenge.len(), 24);
        assert_eq!(
            b64_decode(&challenge).unwrap().len(),
            KMS_RANDOM_CHALLENGE_LEN
        );
    }

    #[test]
    fn base64_matches_go_json_bytes() {
        // §15: base64("cipher-text-key").
        assert_eq!(b64_encode(b"cipher-text-key"), "Y2lwaGVyLXRleHQta2V5");
        assert_eq!(
            b64_decode("Y2lwaGVyLXRleHQta2V5").unwrap(),
            b"cipher-text-key"
        );
        assert!(matches!(
            b64_decode("not base64!"),
            Err(CryptoError::InvalidBase64(_))
        ));
    }

    #[test]
    fn debug_output_hides_key_material() {
        let (client, _, _) = pair();
        assert_eq!(format!("{client:?}"), "SessionCipher { role: Client, .. }");
    }
}
