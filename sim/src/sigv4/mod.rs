//! SigV4 verification of incoming requests: API calls and the data-channel websocket upgrade.
//!
//! We re-sign a reconstruction of the received request (method, path, query, exactly the headers the
//! client listed in `SignedHeaders`, the body, the `X-Amz-Date` time) with the configured secret using
//! the `aws-sigv4` crate, and compare signatures in constant time. Errors carry the real services'
//! `__type` and message so SDKs surface the same error a user would see against AWS.

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningParams, SigningSettings,
};
use aws_sigv4::sign::v4;
use http::{HeaderMap, Method, Uri};
use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The access key pair the simulator accepts.
#[derive(Clone, PartialEq, Eq)]
pub struct SimCredentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
}

impl std::fmt::Debug for SimCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl Default for SimCredentials {
    /// The well-known example key pair from AWS documentation: obviously not a real secret.
    fn default() -> Self {
        SimCredentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        }
    }
}

impl SimCredentials {
    /// A fresh random key pair, for a simulator other local users must not be able to use:
    /// `rssm demo` and `rssm-sim serve` (whose agent starts real shells as the user running it)
    /// take one per run unless told otherwise.
    pub fn random() -> SimCredentials {
        use rand_core::{OsRng, RngCore};
        const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        const SECRET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let pick = |alphabet: &[u8], n: usize| -> String {
            (0..n)
                .map(|_| alphabet[(OsRng.next_u32() as usize) % alphabet.len()] as char)
                .collect()
        };
        SimCredentials {
            access_key_id: format!("ASIA{}", pick(UPPER, 16)),
            secret_access_key: pick(SECRET, 40),
        }
    }
}

/// Why a request was not authenticated; `error_type`/`message` are what AWS answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header and no presigned query.
    #[error("Missing Authentication Token")]
    Missing,
    /// The header did not parse.
    #[error("Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters. Authorization={0}")]
    Malformed(String),
    /// Unknown access key id.
    #[error("The security token included in the request is invalid.")]
    UnknownAccessKey,
    /// Credential scope names another service.
    #[error("Credential should be scoped to correct service: '{0}'. ")]
    WrongService(String),
    /// Credential scope names another region.
    #[error("Credential should be scoped to a valid region. ")]
    WrongRegion,
    /// The signature differs.
    #[error("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")]
    BadSignature,
    /// `X-Amz-Date` too far from now.
    #[error("Signature expired: {signed} is now earlier than {earliest} ({now} - 5 min.)")]
    Expired {
        /// The request's X-Amz-Date.
        signed: String,
        /// now − 5 min, formatted.
        earliest: String,
        /// now, formatted.
        now: String,
    },
}

impl AuthError {
    /// The `__type` the service puts in the error body.
    pub fn error_type(&self) -> &'static str {
        match self {
            AuthError::Missing => "MissingAuthenticationTokenException",
            AuthError::Malformed(_) => "IncompleteSignatureException",
            AuthError::UnknownAccessKey => "UnrecognizedClientException",
            AuthError::WrongService(_)
            | AuthError::WrongRegion
            | AuthError::BadSignature
            | AuthError::Expired { .. } => "InvalidSignatureException",
        }
    }
}

/// The parsed `Authorization` header or presigned query.
struct Parsed {
    access_key: String,
    date: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signature: String,
    presigned: Option<Presigned>,
}

struct Presigned {
    expires: u64,
    /// The query with `X-Amz-*` signing parameters removed (aws-sigv4 adds them back).
    remaining_query: String,
}

/// Maximum clock skew AWS accepts.
const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// A request as received, for verification.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// HTTP method.
    pub method: &'a Method,
    /// Path and query as received.
    pub uri: &'a Uri,
    /// All request headers.
    pub headers: &'a HeaderMap,
    /// The body bytes.
    pub body: &'a [u8],
}

/// A request to sign (tests and client helpers).
#[derive(Debug, Clone, Copy)]
pub struct ToSign<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Absolute URL.
    pub url: &'a str,
    /// Headers to sign (must include `host`).
    pub headers: &'a [(&'a str, &'a str)],
    /// The body bytes.
    pub body: &'a [u8],
}

/// Verifies a request for `service` in `region` against `creds`.
pub fn verify(
    creds: &SimCredentials,
    region: &str,
    service: &str,
    req: Received<'_>,
    now: SystemTime,
) -> Result<(), AuthError> {
    let Received {
        method,
        uri,
        headers,
        body,
    } = req;
    let parsed = parse(uri, headers)?;
    if parsed.access_key != creds.access_key_id {
        return Err(AuthError::UnknownAccessKey);
    }
    if parsed.service != service {
        return Err(AuthError::WrongService(service.to_owned()));
    }
    if parsed.region != region {
        return Err(AuthError::WrongRegion);
    }
    let signed_at = parse_amz_date(&parsed.date).ok_or(AuthError::BadSignature)?;
    let skew = match now.duration_since(signed_at) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    let window = match &parsed.presigned {
        Some(p) => MAX_SKEW + Duration::from_secs(p.expires),
        None => MAX_SKEW,
    };
    if skew > window {
        return Err(AuthError::Expired {
            signed: parsed.date.clone(),
            earliest: format_amz_date(now - MAX_SKEW),
            now: format_amz_date(now),
        });
    }

    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let mut header_pairs: Vec<(&str, String)> = Vec::new();
    for name in &parsed.signed_headers {
        let values: Vec<&str> = headers
            .get_all(name.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if values.is_empty() {
            // A header listed as signed but absent: the signature cannot match.
            return Err(AuthError::BadSignature);
        }
        header_pairs.push((name.as_str(), values.join(",")));
    }
    let path = uri.path();
    let query = match &parsed.presigned {
        Some(p) => p.remaining_query.clone(),
        None => uri.query().unwrap_or("").to_owned(),
    };
    let rebuilt = if query.is_empty() {
        format!("http://{host}{path}")
    } else {
        format!("http://{host}{path}?{query}")
    };

    let identity = identity_of(creds);
    let mut settings = SigningSettings::default();
    // Sign exactly what the client listed, nothing excluded, nothing added.
    settings.excluded_headers = Some(vec![Cow::Borrowed("authorization")]);
    if let Some(p) = &parsed.presigned {
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(Duration::from_secs(p.expires));
    }
    let params: SigningParams = v4::SigningParams::builder()
        .identity(&identity)
        .region(&parsed.region)
        .name(&parsed.service)
        .time(signed_at)
        .settings(settings)
        .build()
        .map_err(|_| AuthError::BadSignature)?
        .into();
    let body = match headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
    {
        Some(h) if h == "UNSIGNED-PAYLOAD" || h.len() == 64 => SignableBody::Precomputed(h.into()),
        _ if parsed.presigned.is_some() => SignableBody::UnsignedPayload,
        _ => SignableBody::Bytes(body),
    };
    let request = SignableRequest::new(
        method.as_str(),
        rebuilt,
        header_pairs.iter().map(|(k, v)| (*k, v.as_str())),
        body,
    )
    .map_err(|_| AuthError::BadSignature)?;
    let output = sign(request, &params).map_err(|_| AuthError::BadSignature)?;
    if constant_time_eq(output.signature().as_bytes(), parsed.signature.as_bytes()) {
        Ok(())
    } else {
        Err(AuthError::BadSignature)
    }
}

/// The SDK signer's identity for `creds`.
fn identity_of(creds: &SimCredentials) -> aws_smithy_runtime_api::client::identity::Identity {
    Credentials::new(
        creds.access_key_id.clone(),
        creds.secret_access_key.clone(),
        None,
        None,
        "rssm-sim",
    )
    .into()
}

fn parse(uri: &Uri, headers: &HeaderMap) -> Result<Parsed, AuthError> {
    if let Some(auth) = headers.get(http::header::AUTHORIZATION) {
        let auth = auth
            .to_str()
            .map_err(|_| AuthError::Malformed(String::new()))?;
        let malformed = || AuthError::Malformed(auth.to_owned());
        let rest = auth
            .strip_prefix("AWS4-HMAC-SHA256")
            .ok_or_else(malformed)?
            .trim();
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix("Credential=") {
                credential = Some(v);
            } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
                signed = Some(v);
            } else if let Some(v) = part.strip_prefix("Signature=") {
                signature = Some(v);
            }
        }
        let (credential, signed, signature) = (
            credential.ok_or_else(malformed)?,
            signed.ok_or_else(malformed)?,
            signature.ok_or_else(malformed)?,
        );
        let date = headers
            .get("x-amz-date")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(malformed)?
            .to_owned();
        let (access_key, region, service) = parse_credential(credential).ok_or_else(malformed)?;
        return Ok(Parsed {
            access_key,
            date,
            region,
            service,
            signed_headers: signed.split(';').map(str::to_owned).collect(),
            signature: signature.to_owned(),
            presigned: None,
        });
    }
    // Presigned URL: the signature travels in the query string.
    let query = uri.query().unwrap_or("");
    let mut fields = std::collections::HashMap::new();
    let mut remaining = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k.starts_with("X-Amz-") {
            fields.insert(k.to_owned(), percent_decode(v));
        } else {
            remaining.push(pair);
        }
    }
    let Some(signature) = fields.get("X-Amz-Signature") else {
        return Err(AuthError::Missing);
    };
    let malformed = || AuthError::Malformed(query.to_owned());
    let credential = fields.get("X-Amz-Credential").ok_or_else(malformed)?;
    let (access_key, region, service) = parse_credential(credential).ok_or_else(malformed)?;
    Ok(Parsed {
        access_key,
        date: fields.get("X-Amz-Date").ok_or_else(malformed)?.clone(),
        region,
        service,
        signed_headers: fields
            .get("X-Amz-SignedHeaders")
            .ok_or_else(malformed)?
            .split(';')
            .map(str::to_owned)
            .collect(),
        signature: signature.clone(),
        presigned: Some(Presigned {
            expires: fields
                .get("X-Amz-Expires")
                .and_then(|e| e.parse().ok())
                .ok_or_else(malformed)?,
            remaining_query: remaining.join("&"),
        }),
    })
}

/// The service a request's credential scope names (`ssm`, `ec2`, `sts`, `iam`, …), without
/// verifying anything: for endpoints that serve several services and must pick one first.
pub fn scope_service(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    parse(uri, headers).ok().map(|p| p.service)
}

/// `AKID/20261125/us-east-1/ssm/aws4_request` → (key, region, service).
fn parse_credential(c: &str) -> Option<(String, String, String)> {
    let mut it = c.split('/');
    let key = it.next()?;
    let _date = it.next()?;
    let region = it.next()?;
    let service = it.next()?;
    (it.next()? == "aws4_request").then(|| (key.to_owned(), region.to_owned(), service.to_owned()))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parses `YYYYMMDDTHHMMSSZ`.
pub fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Formats a time as `YYYYMMDDTHHMMSSZ`.
pub fn format_amz_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// Howard Hinnant's civil-date algorithms.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Signs a request the way an AWS SDK would; used by tests and by the in-process helpers that
/// play the client. Returns the headers to add (`authorization`, `x-amz-date`).
pub fn sign_headers(
    creds: &SimCredentials,
    region: &str,
    service: &str,
    req: ToSign<'_>,
    now: SystemTime,
) -> Result<Vec<(String, String)>, String> {
    let ToSign {
        method,
        url,
        headers,
        body,
    } = req;
    let identity = identity_of(creds);
    let params: SigningParams = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let request = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _sig) = sign(request, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

#[cfg(test)]
mod tests;
