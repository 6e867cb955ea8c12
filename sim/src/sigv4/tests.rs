use super::*;

fn signed_request(creds: &SimCredentials, service: &str) -> (HeaderMap, Uri, Vec<u8>) {
    let body = br#"{"Target":"i-1"}"#.to_vec();
    let url = "http://127.0.0.1:4567/";
    let base = [
        ("host", "127.0.0.1:4567"),
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", "AmazonSSM.StartSession"),
    ];
    let add = sign_headers(
        creds,
        "us-east-1",
        service,
        ToSign {
            method: "POST",
            url,
            headers: &base,
            body: &body,
        },
        SystemTime::now(),
    )
    .unwrap();
    let mut headers = HeaderMap::new();
    for (k, v) in base {
        headers.insert(k, v.parse().unwrap());
    }
    headers.insert("user-agent", "test/1".parse().unwrap());
    for (k, v) in add {
        headers.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    (headers, "/".parse().unwrap(), body)
}

#[test]
fn accepts_a_correct_signature_and_rejects_tampering() {
    let creds = SimCredentials::default();
    let (headers, uri, body) = signed_request(&creds, "ssm");
    let now = SystemTime::now();
    let check = |h: &HeaderMap, b: &[u8], svc: &str| {
        let req = Received {
            method: &Method::POST,
            uri: &uri,
            headers: h,
            body: b,
        };
        verify(&creds, "us-east-1", svc, req, now)
    };
    assert_eq!(check(&headers, &body, "ssm"), Ok(()));
    assert_eq!(
        check(&headers, b"{}", "ssm"),
        Err(AuthError::BadSignature),
        "body changed"
    );
    assert!(matches!(
        check(&headers, &body, "kms"),
        Err(AuthError::WrongService(_))
    ));
    let mut no_auth = headers.clone();
    no_auth.remove("authorization");
    assert_eq!(check(&no_auth, &body, "ssm"), Err(AuthError::Missing));

    let wrong_secret = SimCredentials {
        secret_access_key: "nope".into(),
        ..creds.clone()
    };
    let (h2, _, b2) = signed_request(&wrong_secret, "ssm");
    assert_eq!(check(&h2, &b2, "ssm"), Err(AuthError::BadSignature));
    let wrong_key = SimCredentials {
        access_key_id: "AKIAOTHER".into(),
        ..creds.clone()
    };
    let (h3, _, b3) = signed_request(&wrong_key, "ssm");
    assert_eq!(check(&h3, &b3, "ssm"), Err(AuthError::UnknownAccessKey));
    assert_eq!(
        AuthError::UnknownAccessKey.error_type(),
        "UnrecognizedClientException"
    );
}

#[test]
fn rejects_stale_dates() {
    let creds = SimCredentials::default();
    let (headers, uri, body) = signed_request(&creds, "ssm");
    let later = SystemTime::now() + Duration::from_secs(3600);
    let req = Received {
        method: &Method::POST,
        uri: &uri,
        headers: &headers,
        body: &body,
    };
    let r = verify(&creds, "us-east-1", "ssm", req, later);
    assert!(matches!(r, Err(AuthError::Expired { .. })), "{r:?}");
}

#[test]
fn amz_dates_round_trip() {
    let t = parse_amz_date("20261125T001505Z").unwrap();
    assert_eq!(format_amz_date(t), "20261125T001505Z");
    assert_eq!(parse_amz_date("19700101T000000Z").unwrap(), UNIX_EPOCH);
    assert!(parse_amz_date("2026-11-25").is_none());
}
