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
