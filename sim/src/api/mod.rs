//! The AWS API endpoint: SSM, ECS ExecuteCommand, KMS and EC2 Instance Connect (JSON 1.1, dispatched by
//! `X-Amz-Target`) and EC2, STS and IAM (query protocol: a form body, no `X-Amz-Target`,
//! dispatched by the service the SigV4 credential scope names) on one URL, every call
//! SigV4-verified against the simulator's credentials.

mod ec2;
mod ecs;
mod eic;
mod iam;
mod kms;
mod query;
mod ssm;
mod sts;

use crate::sigv4;
use crate::state::SimState;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// An API error in the shape SDKs parse: HTTP status, `__type`, message.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status (400 for client errors, as the JSON services answer).
    pub status: StatusCode,
    /// `__type`.
    pub error_type: String,
    /// Human text.
    pub message: String,
    /// `Message` (SSM-modelled errors) or `message` (auth, ECS, KMS).
    pub capital_message: bool,
}

impl ApiError {
    /// A 400 error with a modelled SSM shape (`Message`).
    pub fn ssm(error_type: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            error_type: error_type.to_owned(),
            message: message.into(),
            capital_message: true,
        }
    }

    /// A 400 error with a lower-case `message` (ECS, KMS, auth).
    pub fn lower(error_type: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            error_type: error_type.to_owned(),
            message: message.into(),
            capital_message: false,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let key = if self.capital_message {
            "Message"
        } else {
            "message"
        };
        serde_json::json!({ "__type": self.error_type, key: self.message })
    }
}

impl From<sigv4::AuthError> for ApiError {
    fn from(e: sigv4::AuthError) -> Self {
        let status = match e {
            sigv4::AuthError::Missing | sigv4::AuthError::Malformed(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError {
            status,
            error_type: e.error_type().to_owned(),
            message: e.to_string(),
            capital_message: false,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, json_bytes(&self.body())).into_response();
        let h = resp.headers_mut();
        h.insert("content-type", HeaderValue::from_static(JSON_CONTENT_TYPE));
        if let Ok(v) = HeaderValue::from_str(&self.error_type) {
            h.insert("x-amzn-errortype", v);
        }
        resp
    }
}

const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";

fn json_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// Handles `POST /` for every service.
pub async fn handle(
    state: Arc<SimState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = uuid::Uuid::from_u64_pair(state.random_u64(), state.random_u64()).to_string();
    // The query protocol: a form body with no X-Amz-Target, XML back.
    if !headers.contains_key("x-amz-target") && body.starts_with(b"Action=") {
        return query_service(&state, &method, &uri, &headers, &body, &request_id);
    }
    let mut resp = match dispatch(&state, &method, &uri, &headers, &body).await {
        Ok(v) => {
            let mut r = (StatusCode::OK, json_bytes(&v)).into_response();
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static(JSON_CONTENT_TYPE));
            r
        }
        Err(e) => {
            tracing::info!(error_type = %e.error_type, message = %e.message, "API call rejected");
            e.into_response()
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

async fn dispatch(
    state: &Arc<SimState>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, ApiError> {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (prefix, op) = target.split_once('.').unwrap_or(("", ""));
    let service = match prefix {
        "AmazonSSM" => "ssm",
        "AmazonEC2ContainerServiceV20141113" => "ecs",
        "TrentService" => "kms",
        "AWSEC2InstanceConnectService" => "ec2-instance-connect",
        _ => {
            return Err(ApiError::lower(
                "UnknownOperationException",
                format!("Unknown operation {target}"),
            ))
        }
    };
    authenticate(state, service, method, uri, headers, body)?;
    tracing::debug!(%target, "API call");
    if let Some((slow, delay)) = &state.config.faults.delay_api {
        if slow == op {
            tokio::time::sleep(*delay).await;
        }
    }
    if state.config.faults.hang_api.iter().any(|o| o == op) {
        tracing::info!(%target, "fault: the call is never answered");
        std::future::pending::<()>().await;
    }
    match service {
        "ssm" => ssm::call(state, op, body),
        "ecs" => ecs::call(state, op, body),
        "ec2-instance-connect" => eic::call(state, op, body),
        _ => kms::call(state, op, body),
    }
}

/// A query service's handler of one verified request.
type QueryCall = fn(&SimState, &query::Params, &str) -> Response;

/// One endpoint serves every query service, so the signature's scope says which one was meant
/// (an SDK scopes its signature to the service it calls); unsigned requests go to EC2, whose
/// answer says what is missing.
fn query_service(
    state: &SimState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    request_id: &str,
) -> Response {
    let service = sigv4::scope_service(uri, headers).unwrap_or_else(|| "ec2".into());
    let (xmlns, call): (&str, QueryCall) = match service.as_str() {
        "sts" => (sts::XMLNS, sts::call),
        "iam" => (iam::XMLNS, iam::call),
        _ => return ec2::handle(state, method, uri, headers, body, request_id),
    };
    let mut verified = authenticate(state, &service, method, uri, headers, body);
    if service == "iam" && matches!(verified, Err(sigv4::AuthError::WrongRegion)) {
        // IAM is global: SDKs sign it for us-east-1 whatever region they are in.
        verified = authenticate_in(state, "us-east-1", "iam", method, uri, headers, body);
    }
    if let Err(e) = verified {
        return query::QueryError::from(e).response(xmlns, request_id);
    }
    let params = query::params(body);
    tracing::debug!(%service, action = params.get("Action").map(String::as_str), "API call");
    call(state, &params, request_id)
}

/// Checks a request's SigV4 signature for `service` against the simulator's credentials, now.
pub(crate) fn authenticate(
    state: &SimState,
    service: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), sigv4::AuthError> {
    authenticate_in(
        state,
        &state.config.region,
        service,
        method,
        uri,
        headers,
        body,
    )
}

/// [`authenticate`] for a signature scoped to `region`.
fn authenticate_in(
    state: &SimState,
    region: &str,
    service: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), sigv4::AuthError> {
    let request = sigv4::Received {
        method,
        uri,
        headers,
        body,
    };
    sigv4::verify(
        &state.credentials(),
        region,
        service,
        request,
        SystemTime::now(),
    )
}

/// Parses a request body (empty = `{}`) into `T`, answering `SerializationException` like the
/// services do on malformed input.
pub(crate) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.is_empty() {
        b"{}" as &[u8]
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| ApiError::lower("SerializationException", e.to_string()))
}

/// A `SystemTime` as an AWS JSON timestamp (epoch seconds, fractional).
pub(crate) fn timestamp(t: SystemTime) -> Value {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let ms = d.as_millis() as f64 / 1000.0;
    serde_json::json!(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimConfig;

    /// Sends a form body signed for `service` in `region` through the query dispatcher.
    async fn query(state: &SimState, service: &str, region: &str, body: &str) -> (u16, String) {
        let url = "http://sim/";
        let base = [
            ("host", "sim"),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        let signed = sigv4::sign_headers(
            &state.credentials(),
            region,
            service,
            sigv4::ToSign {
                method: "POST",
                url,
                headers: &base,
                body: body.as_bytes(),
            },
            SystemTime::now(),
        )
        .unwrap();
        let mut headers = HeaderMap::new();
        for (k, v) in base
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain(signed)
        {
            headers.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(&v).unwrap(),
            );
        }
        let uri: Uri = "/".parse().unwrap();
        let resp = query_service(state, &Method::POST, &uri, &headers, body.as_bytes(), "r-1");
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn query_services_are_picked_by_the_signature_scope() {
        let config = SimConfig {
            region: "eu-west-1".into(),
            ..SimConfig::default()
        };
        let state = SimState::new(config, ([127, 0, 0, 1], 0).into());
        let (status, body) = query(
            &state,
            "sts",
            "eu-west-1",
            "Action=AssumeRole&Version=2011-06-15",
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body.starts_with(&format!("<ErrorResponse xmlns=\"{}\">", sts::XMLNS)),
            "{body}"
        );
        assert!(body.contains("<Code>InvalidAction</Code>"), "{body}");
        // IAM is global: a signature for us-east-1 is what SDKs send from any region.
        let list = "Action=ListRolePolicies&Version=2010-05-08&RoleName=rssm-demo-ssm";
        let (status, body) = query(&state, "iam", "us-east-1", list).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains("<ListRolePoliciesResult><PolicyNames></PolicyNames>"),
            "{body}"
        );
        let (status, body) = query(&state, "sts", "us-east-1", "Action=GetCallerIdentity").await;
        assert_eq!(status, 403, "{body}");
        assert!(
            body.contains("<Code>SignatureDoesNotMatch</Code>"),
            "{body}"
        );
        let (status, body) = query(&state, "ec2", "eu-west-1", "Action=RunInstances").await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("<Code>InvalidAction</Code>"), "{body}");
    }
}
