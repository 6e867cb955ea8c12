//! The AWS query protocol shared by EC2, STS and IAM: a form-encoded body
//! (`Action=…&Version=…&Param.member.1=…`) in, XML out. STS and IAM wrap results in
//! `<{Action}Response><{Action}Result>…</{Action}Result><ResponseMetadata>…` and answer errors as
//! `<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/>` (the `awsQuery`
//! protocol of the Smithy models); EC2 (`ec2Query`) has its own shapes, in `ec2/`.

use crate::sigv4::AuthError;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;

/// A request's form parameters.
pub(crate) type Params = BTreeMap<String, String>;

/// Decodes a form body.
pub(crate) fn params(body: &[u8]) -> Params {
    form_urlencoded::parse(body).into_owned().collect()
}

/// The members of a list parameter: `{name}.member.1`, `{name}.member.2`, … (awsQuery lists).
pub(crate) fn members(params: &Params, name: &str) -> Vec<String> {
    (1..)
        .map_while(|n| params.get(&format!("{name}.member.{n}")).cloned())
        .collect()
}

/// Escapes text for an XML element or attribute.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A 200 `text/xml` response.
pub(crate) fn xml(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/xml;charset=UTF-8"),
    );
    r
}

/// An awsQuery error (STS, IAM).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QueryError {
    /// HTTP status.
    pub status: StatusCode,
    /// `Sender` (the caller's fault) or `Receiver`.
    pub sender: bool,
    /// `Code`, e.g. `NoSuchEntity`.
    pub code: String,
    /// `Message`.
    pub message: String,
}

impl QueryError {
    /// A `Sender` error.
    pub fn sender(status: StatusCode, code: &str, message: impl Into<String>) -> QueryError {
        QueryError {
            status,
            sender: true,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// The answer to an action the service does not have, for API `version` (STS and IAM).
    pub fn invalid_action(action: &str, version: &str) -> QueryError {
        QueryError::sender(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            format!("Could not find operation {action} for version {version}"),
        )
    }

    /// A required parameter is absent.
    pub fn missing(name: &str) -> QueryError {
        QueryError::sender(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            format!("1 validation error detected: Value null at '{name}' failed to satisfy constraint: Member must not be null"),
        )
    }

    /// The XML response, in the service's namespace.
    pub fn response(&self, xmlns: &str, request_id: &str) -> Response {
        let kind = if self.sender { "Sender" } else { "Receiver" };
        let body = format!(
            "<ErrorResponse xmlns=\"{xmlns}\"><Error><Type>{kind}</Type><Code>{}</Code>\
             <Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
            esc(&self.code),
            esc(&self.message)
        );
        xml(self.status, body)
    }
}

impl From<AuthError> for QueryError {
    /// The codes STS and IAM answer for signing failures (403, unlike the JSON services).
    fn from(e: AuthError) -> QueryError {
        let (status, code) = match &e {
            AuthError::Missing => (StatusCode::FORBIDDEN, "MissingAuthenticationToken"),
            AuthError::Malformed(_) => (StatusCode::BAD_REQUEST, "IncompleteSignature"),
            AuthError::UnknownAccessKey => (StatusCode::FORBIDDEN, "InvalidClientTokenId"),
            _ => (StatusCode::FORBIDDEN, "SignatureDoesNotMatch"),
        };
        QueryError::sender(status, code, e.to_string())
    }
}

/// A successful awsQuery response: `<{action}Response><{action}Result>{result}</…>` and the
/// request id in `ResponseMetadata`.
pub(crate) fn success(xmlns: &str, action: &str, result: &str, request_id: &str) -> Response {
    xml(
        StatusCode::OK,
        format!(
            "<{action}Response xmlns=\"{xmlns}\"><{action}Result>{result}</{action}Result>\
             <ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>"
        ),
    )
}

/// `<name>text</name>`, escaped.
pub(crate) fn el(name: &str, text: &str) -> String {
    format!("<{name}>{}</{name}>", esc(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_members_stop_at_the_first_gap() {
        let p = params(b"Action=X&A.member.1=a&A.member.2=b%2Fc&A.member.4=d");
        assert_eq!(members(&p, "A"), vec!["a".to_owned(), "b/c".to_owned()]);
        assert_eq!(el("Arn", "a<b"), "<Arn>a&lt;b</Arn>");
    }
}
